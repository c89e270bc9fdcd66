"""k-NN over the pool: self exclusion, counts, duplicates, ties, and the approximate path."""

import numpy as np
import pytest

from retrieval import Neighbours, nearest_neighbours


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 40])
def test_never_self_and_min_k_n_minus_1(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 16))
    for method in ("exact", "pca"):
        nn = nearest_neighbours(x, 5, method=method, n_components=4)
        assert isinstance(nn, Neighbours)
        kk = min(5, n - 1)
        assert nn.index.shape == nn.distance.shape == (n, kk)
        assert nn.index.dtype == np.int64 and nn.distance.dtype == np.float64
        assert not np.any(nn.index == np.arange(n)[:, None])
        for row in nn.index:
            assert len(set(row.tolist())) == kk
        assert np.all(np.diff(nn.distance, axis=1) >= -1e-12)


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    expected = np.argsort(d, axis=1, kind="stable")[:, :5]
    nn = nearest_neighbours(x, 5)
    np.testing.assert_array_equal(nn.index, expected)
    np.testing.assert_allclose(nn.distance, np.take_along_axis(d, expected, 1), atol=1e-9)


def test_duplicates_are_each_others_nearest():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 10))
    x[7] = x[3]
    x[20] = x[11]
    x = np.vstack([x, x[25]])  # row 30 duplicates row 25
    nn = nearest_neighbours(x, 5)
    for a, b in ((3, 7), (11, 20), (25, 30)):
        assert nn.index[a, 0] == b and nn.index[b, 0] == a
        assert nn.distance[a, 0] == pytest.approx(0.0, abs=1e-6)


def test_many_identical_rows():
    # Eight identical rows: each gets five of the other seven, never itself, all at distance 0.
    x = np.vstack([np.ones((8, 4)), np.arange(12).reshape(3, 4)])
    nn = nearest_neighbours(x, 5)
    for i in range(8):
        assert i not in nn.index[i]
        assert set(nn.index[i]) <= set(range(8))
        assert np.allclose(nn.distance[i], 0.0, atol=1e-6)


def test_pca_recall_on_clustered_data():
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((20, 200)) * 3
    x = centres[rng.integers(0, 20, 500)] + rng.standard_normal((500, 200)) * 0.5
    exact = nearest_neighbours(x, 5)
    approx = nearest_neighbours(x, 5, method="pca", n_components=32)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact.index, approx.index)])
    assert recall > 0.8
    # Re-ranked distances are exact distances.
    d = np.linalg.norm(x[approx.index] - x[:, None], axis=2)
    np.testing.assert_allclose(approx.distance, d, atol=1e-9)


def test_validation():
    with pytest.raises(ValueError):
        nearest_neighbours(np.zeros(5))
    with pytest.raises(ValueError):
        nearest_neighbours(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        nearest_neighbours(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError):
        nearest_neighbours(np.zeros((4, 3)), k=0)
    with pytest.raises(ValueError):
        nearest_neighbours(np.zeros((4, 3)), method="annoy")
    with pytest.raises(ValueError):
        nearest_neighbours(np.array([["a", "b"]]))


def test_blocked_search_equals_one_block_and_sklearn(tmp_path):
    from sklearn.neighbors import NearestNeighbors

    from retrieval import index as index_mod

    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 24)).astype(np.float32)
    x[17] = x[250]  # a duplicate pair across blocks
    mm = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    whole = nearest_neighbours(x, k=5)
    old = index_mod.BLOCK_ROWS
    try:
        index_mod.BLOCK_ROWS = 64  # five query blocks x five pool blocks, a short last block
        blocked = nearest_neighbours(np.load(tmp_path / "d.npy", mmap_mode="r"), k=5)
    finally:
        index_mod.BLOCK_ROWS = old
    np.testing.assert_array_equal(blocked.index, whole.index)
    np.testing.assert_allclose(blocked.distance, whole.distance, rtol=1e-9, atol=1e-9)
    assert blocked.index[17, 0] == 250 and blocked.index[250, 0] == 17
    ref = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(x.astype(np.float64))
    dist, idx = ref.kneighbors(x.astype(np.float64))
    np.testing.assert_allclose(whole.distance, dist[:, 1:], rtol=1e-6, atol=1e-6)
    differs = (whole.index != idx[:, 1:]).any(axis=1)
    assert differs.sum() <= 2  # only the duplicate pair, whose tie sklearn orders its own way
