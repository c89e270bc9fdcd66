"""The gist_hog / neighbours stages, called the way the runner calls them."""

import numpy as np
import pytest

from pipeline.registry import ItemContext, get, param_problems
from pipeline.stages.retrieval import (
    GistHogParams,
    NeighboursParams,
    run_gist_hog,
    run_neighbours,
)


def _pool(n, seed=0):
    rng = np.random.default_rng(seed)
    return {f"img{i:02d}": (rng.random((40, 56, 3)) * 255).astype(np.uint8) for i in range(n)}


def _descs(pool):
    return {s: run_gist_hog({"pool": {"image": im}}, GistHogParams(), ItemContext()) for s, im in pool.items()}


def test_registered():
    assert get("gist_hog").granularity == "image"
    assert get("gist_hog").inputs == ("pool",)
    nb = get("neighbours")
    assert nb.granularity == "pool" and nb.inputs == ("gist_hog",)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_neighbours_table_contract(n):
    pool = _pool(n)
    descs = _descs(pool)
    out = run_neighbours({"gist_hog": descs}, NeighboursParams(), ItemContext())
    assert set(out) == {"stems", "index", "distance"}
    assert out["stems"].shape == (n,) and out["stems"].dtype.kind == "U"
    assert out["index"].shape == (n, 5) and out["index"].dtype == np.int64
    assert out["distance"].shape == (n, 5) and out["distance"].dtype == np.float64
    got = min(5, n - 1)
    assert np.all(out["index"][:, :got] >= 0) and np.all(out["index"][:, got:] == -1)
    assert np.all(np.isinf(out["distance"][:, got:]))
    assert not np.any(out["index"] == np.arange(n)[:, None])
    assert list(out["stems"]) == sorted(pool)


def test_duplicate_found_through_stages():
    pool = _pool(6, seed=1)
    pool["zz_copy"] = pool["img03"].copy()
    out = run_neighbours({"gist_hog": _descs(pool)}, NeighboursParams(k=5), ItemContext())
    stems = list(out["stems"])
    a, b = stems.index("img03"), stems.index("zz_copy")
    assert out["index"][a, 0] == b and out["index"][b, 0] == a


def test_params_validation():
    stage = get("neighbours")
    assert param_problems(stage, NeighboursParams(k=0)) == ["neighbours.k = 0: expected a number >= 1, got 0"]
    assert param_problems(stage, NeighboursParams(method="faiss")) == [
        "neighbours.method = 'faiss': expected one of 'exact', 'pca', got 'faiss'"]
    with pytest.raises(ValueError, match="no image has a gist_hog descriptor"):
        run_neighbours({"gist_hog": {}}, NeighboursParams(), ItemContext())
