"""SIFT-Flow: known shifts are recovered, identical images give zero flow, BP energy decreases."""

import dataclasses

import numpy as np
import pytest
from skimage import data, transform

from alignment.dense_sift import dense_sift
from alignment.siftflow import SiftFlowResult, sift_flow


@pytest.fixture(scope="module")
def astronaut():
    img = transform.resize(data.astronaut(), (128, 128), anti_aliasing=True)
    return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shifted_flow(astronaut):
    dx, dy = 3, -2
    # image2(y, x) = image1(y - dy, x - dx): pixel p of image 1 is at p + (dx, dy) in image 2.
    moved = np.roll(astronaut, (dy, dx), axis=(0, 1))
    return dx, dy, sift_flow(dense_sift(astronaut), dense_sift(moved))


def test_recovers_a_known_shift(shifted_flow):
    dx, dy, res = shifted_flow
    inner = (slice(12, -12), slice(12, -12))
    correct = (res.vx[inner] == dx) & (res.vy[inner] == dy)
    assert correct.mean() >= 0.95
    assert res.vx.dtype == np.int32 and res.vy.dtype == np.int32
    assert res.vx.shape == res.vy.shape == res.cost.shape == res.valid.shape == (128, 128)
    # Where the match is right the descriptors coincide (same image content), so the cost is ~0.
    assert np.median(res.cost[inner][correct]) == 0.0
    assert res.valid[inner].all()


def test_identical_images_give_zero_flow(astronaut):
    desc = dense_sift(astronaut)
    res = sift_flow(desc, desc)
    assert not res.vx.any() and not res.vy.any()
    assert not res.cost.any()
    assert res.valid.all()


def test_energy_decreases_over_iterations(shifted_flow):
    _, _, res = shifted_flow
    assert len(res.energy_levels) == 4
    assert res.energy is res.energy_levels[-1]
    assert [len(e) for e in res.energy_levels] == [60, 30, 30, 30]
    for e in res.energy_levels:
        assert np.all(np.isfinite(e)) and np.all(e > 0)
        # Loopy BP is not a descent method: allow tiny rises, require an overall decrease.
        rel_rise = np.diff(e) / e[:-1]
        assert rel_rise.max() <= 5e-3
        assert e[-1] < e[0]
        assert e[-1] <= e.min() * (1 + 5e-3)


def test_energy_on_a_zoomed_pair_and_result_is_frozen(astronaut):
    # A non-rigid pair: a 10% zoom about the centre, so the flow varies over the image.
    zoom = transform.rescale(astronaut, 1.1, channel_axis=2, anti_aliasing=True)[6:134, 6:134]
    zoom = np.round(zoom * 255).astype(np.uint8)
    res = sift_flow(dense_sift(astronaut), dense_sift(zoom), n_iterations=12)
    assert isinstance(res, SiftFlowResult)
    assert res.energy.shape == (12,) and res.energy[-1] < res.energy[0]
    # Zoom about the centre: flow points outwards, vx grows with x (true slope 0.1 per pixel).
    inner = (slice(16, -16), slice(16, -16))
    xs = np.broadcast_to(np.arange(128), (128, 128))[inner]
    slope = np.polyfit(xs.ravel(), res.vx[inner].ravel(), 1)[0]
    assert 0.05 < slope < 0.15
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.vx = None


def test_different_image_sizes_are_accepted(astronaut):
    da = dense_sift(astronaut)
    db = dense_sift(astronaut[:100, :120])
    res = sift_flow(da, db)
    assert res.vx.shape == (128, 128)
    inner = (slice(12, 88), slice(12, 108))
    assert ((res.vx[inner] == 0) & (res.vy[inner] == 0)).mean() >= 0.95
    assert not res.valid.all() or (res.vy + np.arange(128)[:, None] < 100).all()


@pytest.mark.parametrize(
    "a, b, kwargs",
    [
        (np.zeros((16, 16, 128), np.float32), np.zeros((16, 16, 128), np.uint8), {}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 64), np.uint8), {}),
        (np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), {}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 128), np.uint8), {"n_levels": 6}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 128), np.uint8), {"window": -1}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 128), np.uint8), {"alpha": np.nan}),
    ],
)
def test_bad_input_raises(a, b, kwargs):
    with pytest.raises(ValueError):
        sift_flow(a, b, **kwargs)


@pytest.mark.parametrize("n_lab", [5, 11])
def test_spatial_message_equals_brute_force_truncated_l1(n_lab):
    # Kernel check: distance transform / direct min-convolution, shifted label windows, truncation.
    from alignment import _bp_kernels as k

    rng = np.random.default_rng(n_lab)
    w = (n_lab - 1) // 2
    s, d = np.float32(510.0), np.float32(3000.0)
    cone = (s * np.abs(np.arange(n_lab)[:, None] - np.arange(n_lab)[None])).astype(np.float32)
    for shift in range(-n_lab - 2, n_lab + 3):
        h = rng.integers(0, 6000, n_lab).astype(np.float32)
        off = np.array([[3, 3 + shift]], np.int32)  # p = (0, 0), q = (0, 1)
        sk = np.zeros((1, 2, 4, n_lab), np.float32)
        k._send(h.copy(), cone, sk, off, 0, 0, 0, 1, 0, s, d, n_lab)
        a_p = off[0, 0] + np.arange(n_lab) - w
        a_q = off[0, 1] + np.arange(n_lab) - w
        pair = h[:, None] + np.minimum(s * np.abs(a_p[:, None] - a_q[None, :]), d)
        np.testing.assert_allclose(sk[0, 1, 0], pair.min(axis=0) - h.min(), rtol=0, atol=1e-3)


def test_bp_energy_matches_an_independent_evaluation(astronaut):
    # The recorded energy is Eq. 3 of the returned labelling (finest level, zero offsets).
    from alignment import _bp_kernels as k

    da = dense_sift(astronaut[:48, :48])
    db = dense_sift(np.roll(astronaut, (1, -1), axis=(0, 1))[:48, :48])
    w, n_lab, shape = 2, 5, (48, 48)
    ox = np.zeros(shape, np.int32)
    oy = np.zeros(shape, np.int32)
    dterm = np.empty(shape + (n_lab, n_lab), np.float32)
    default = k.data_term(da, db, ox, oy, w, dterm)
    k.finish_data_term(dterm, np.float32(default), np.float32(10200))
    gamma = 1.275
    lab = np.arange(-w, w + 1, dtype=np.float32)
    rterm = np.ascontiguousarray(np.broadcast_to(gamma * np.abs(lab), (2,) + shape + (n_lab,)))
    labels = np.empty((2,) + shape, np.int32)
    energy = np.zeros(9)
    k.bp_level(dterm, rterm, ox, oy, w, 510.0, 10200.0, 9, labels, energy)
    u, v = labels[0] - w, labels[1] - w
    yy, xx = np.indices(shape)
    e = dterm[yy, xx, labels[1], labels[0]].sum() + gamma * (np.abs(u) + np.abs(v)).sum()
    for f in (u, v):
        e += np.minimum(510 * np.abs(np.diff(f, axis=0)), 10200).sum()
        e += np.minimum(510 * np.abs(np.diff(f, axis=1)), 10200).sum()
    assert energy[-1] == pytest.approx(e, rel=1e-5)
    # Out-of-image candidates were priced at the median in-image cost.
    assert np.all(dterm >= 0)


def test_defaults_are_the_reference_demo_values():
    import inspect

    defaults = {n: p.default for n, p in inspect.signature(sift_flow).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {"alpha": 2 * 255, "d": 40 * 255, "gamma": 0.005 * 255, "n_levels": 4,
                        "window": 2, "top_window": 10, "n_top_iterations": 60, "n_iterations": 30}


def _eq3(desc_a, desc_b, vx, vy, alpha, d, gamma):
    """SIFT Flow Eq. 3 of a flow whose targets all lie inside image 2, evaluated independently."""
    yy, xx = np.indices(vx.shape)
    l1 = np.abs(desc_a.astype(np.int64) - desc_b[yy + vy, xx + vx].astype(np.int64)).sum(axis=2)
    e = np.minimum(l1, d).sum() + gamma * (np.abs(vx).sum() + np.abs(vy).sum())
    for f in (vx, vy):
        e += np.minimum(alpha * np.abs(np.diff(f, axis=0)), d).sum()
        e += np.minimum(alpha * np.abs(np.diff(f, axis=1)), d).sum()
    return e


def test_recorded_energy_is_eq3_with_the_reference_weights(astronaut):
    # The defaults alpha = 2 * 255, d = 40 * 255, gamma = 0.005 * 255 are what the solver
    # minimises and records: its energy equals Eq. 3 evaluated here with those numbers.
    # Image 2 is a 10% zoom of a larger crop: the flow varies (the smoothness term is not zero)
    # and every match stays inside image 2.
    da = dense_sift(astronaut[40:88, 40:88])
    zoom = transform.rescale(astronaut[30:98, 30:98], 1.1, channel_axis=2, anti_aliasing=True)
    db = dense_sift(np.round(zoom * 255).astype(np.uint8))
    res = sift_flow(da, db, n_levels=2, n_top_iterations=8, n_iterations=8)
    assert res.valid.all() and len(np.unique(res.vx)) > 1
    reference = _eq3(da, db, res.vx, res.vy, 2 * 255, 40 * 255, 0.005 * 255)
    assert res.energy[-1] == pytest.approx(reference, rel=1e-5)
    # and a different weight gives a different energy (the check can fail)
    assert _eq3(da, db, res.vx, res.vy, 255, 40 * 255, 0.005 * 255) != pytest.approx(reference, rel=1e-5)
    explicit = sift_flow(da, db, n_levels=2, n_top_iterations=8, n_iterations=8, alpha=510.0, d=10200.0,
                         gamma=1.275)
    np.testing.assert_array_equal(explicit.energy, res.energy)


def test_a_call_without_options_uses_the_documented_defaults():
    # Large enough (top level 20 x 22) that the coarsest search window, +-top_window, does not
    # already cover the whole top level: a different radius there gives a different energy.
    img = transform.resize(data.astronaut(), (160, 176), anti_aliasing=True)
    img = np.round(img * 255).astype(np.uint8)
    a, b = dense_sift(img), dense_sift(np.roll(img, 24, axis=1))
    implicit = sift_flow(a, b)
    explicit = sift_flow(a, b, alpha=2 * 255, d=40 * 255, gamma=0.005 * 255, n_levels=4, window=2,
                         top_window=10, n_top_iterations=60, n_iterations=30)
    for e_implicit, e_explicit in zip(implicit.energy_levels, explicit.energy_levels, strict=True):
        np.testing.assert_array_equal(e_implicit, e_explicit)
    np.testing.assert_array_equal(implicit.vx, explicit.vx)
    np.testing.assert_array_equal(implicit.vy, explicit.vy)


def test_the_size_check_names_the_smallest_image_side():
    a = np.zeros((255, 300, 128), np.uint8)
    b = np.zeros((300, 300, 128), np.uint8)
    with pytest.raises(ValueError) as err:
        sift_flow(a, b, n_levels=9)
    assert str(err.value) == "images of side 255 are too small for n_levels=9 (need at least 256 pixels per side)"
