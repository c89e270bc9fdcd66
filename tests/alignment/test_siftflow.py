"""SIFT-Flow: known shifts are recovered, identical images give zero flow, BP energy decreases."""

import dataclasses
import re
from pathlib import Path

import cv2

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
def test_spatial_message_equals_the_reference_rule_with_the_demo_weight(n_lab):
    # Kernel check at alpha = 2 * 255: distance transform / direct min-convolution, shifted label
    # windows, truncation; and beyond a shift of 2 w (windows that do not overlap) the
    # reference's min(alpha l, min h + d), or (L - 1 - l) alpha from the first pixel.
    from alignment import _bp_kernels as k

    rng = np.random.default_rng(n_lab)
    w = (n_lab - 1) // 2
    s, d = np.float32(510.0), np.float32(3000.0)
    cone = (s * np.abs(np.arange(n_lab)[:, None] - np.arange(n_lab)[None])).astype(np.float32)
    lab = np.arange(n_lab)
    for shift in range(-n_lab - 2, n_lab + 3):
        for p, q in (((0, 0), (0, 1)), ((0, 1), (0, 2))):  # the first pixel sending, and another
            h = rng.integers(0, 6000, n_lab).astype(np.float32)
            off = np.full((1, 3), 3, np.int32)
            off[q] = 3 + shift
            sk = np.zeros((1, 3, 4, n_lab), np.float32)
            k._send(h.copy(), cone, sk, off, *p, *q, 0, s, d, n_lab)
            if abs(shift) > 2 * w:
                expected = s * (n_lab - 1 - lab) if p == (0, 0) else np.minimum(s * lab, h.min() + d)
            else:
                a_p = 3 + lab - w
                a_q = 3 + shift + lab - w
                pair = h[:, None] + np.minimum(s * np.abs(a_p[:, None] - a_q[None, :]), d)
                expected = pair.min(axis=0) - h.min()
            np.testing.assert_array_equal(sk[0, q[1], 0], expected, err_msg=f"shift {shift} from {p}")


def test_bp_energy_matches_an_independent_evaluation(astronaut):
    # The recorded energy is Eq. 3 of the returned labelling (finest level, zero offsets): the
    # L1 data term untruncated, the range term floor(gamma |u|) + floor(gamma |v|).
    from alignment import _bp_kernels as k

    da = dense_sift(astronaut[:48, :48])
    db = dense_sift(np.roll(astronaut, (1, -1), axis=(0, 1))[:48, :48])
    w, n_lab, shape = 2, 5, (48, 48)
    ox = np.zeros(shape, np.int32)
    oy = np.zeros(shape, np.int32)
    dterm = np.empty(shape + (n_lab, n_lab), np.float32)
    default = k.data_term(da, db, ox, oy, w, dterm)
    k.finish_data_term(dterm, np.float32(default))
    gamma = 1.275
    rterm = np.empty((2,) + shape + (n_lab,), np.float32)
    k.range_term(ox, oy, w, gamma, rterm)
    labels = np.empty((2,) + shape, np.int32)
    energy = np.zeros(9)
    S = np.zeros((2,) + shape + (4, n_lab), np.float32)
    M = np.zeros((2,) + shape + (n_lab,), np.float32)
    k.bp_level(dterm, rterm, ox, oy, w, 510.0, 10200.0, 9, labels, energy, S, M)
    u, v = labels[0] - w, labels[1] - w
    assert u.any() and v.any()  # the range term is not zero
    yy, xx = np.indices(shape)
    e = dterm[yy, xx, labels[1], labels[0]].astype(np.int64).sum()
    e += np.floor(gamma * np.abs(u)).sum() + np.floor(gamma * np.abs(v)).sum()
    for f in (u, v):
        e += np.minimum(510 * np.abs(np.diff(f, axis=0)), 10200).sum()
        e += np.minimum(510 * np.abs(np.diff(f, axis=1)), 10200).sum()
    assert energy[-1] == e
    # Out-of-image candidates were priced at the default score, and nothing else changed.
    ref = np.empty_like(dterm)
    k.data_term(da, db, ox, oy, w, ref)
    assert (ref == -1).any()
    np.testing.assert_array_equal(dterm, np.where(ref == -1, np.float32(default), ref))


def test_defaults_are_the_reference_demo_values():
    import inspect

    defaults = {n: p.default for n, p in inspect.signature(sift_flow).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {"alpha": 2 * 255, "d": 40 * 255, "gamma": 0.005 * 255, "n_levels": 4,
                        "window": 2, "top_window": 10, "n_top_iterations": 60, "n_iterations": 30,
                        "record_energy": True}


def _eq3(desc_a, desc_b, vx, vy, alpha, d, gamma, floor=True):
    """SIFT Flow Eq. 3 of a flow whose targets all lie inside image 2, evaluated independently
    as the reference does: L1 data term (not truncated), range term floor(gamma |u|) +
    floor(gamma |v|) per pixel (its int messages), truncated L1 smoothness."""
    yy, xx = np.indices(vx.shape)
    l1 = np.abs(desc_a.astype(np.int64) - desc_b[yy + vy, xx + vx].astype(np.int64)).sum(axis=2)
    if floor:
        small = np.floor(gamma * np.abs(vx)) + np.floor(gamma * np.abs(vy))
    else:
        small = gamma * (np.abs(vx) + np.abs(vy))
    e = l1.sum() + small.sum()
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
    assert res.energy[-1] == reference
    # and a different weight, or the range term without its floors, gives a different energy
    # (the check can fail)
    assert _eq3(da, db, res.vx, res.vy, 255, 40 * 255, 0.005 * 255) != reference
    assert _eq3(da, db, res.vx, res.vy, 2 * 255, 40 * 255, 0.005 * 255, floor=False) != reference
    explicit = sift_flow(da, db, n_levels=2, n_top_iterations=8, n_iterations=8, alpha=510.0, d=10200.0,
                         gamma=1.275)
    np.testing.assert_array_equal(explicit.energy, res.energy)


def test_record_energy_false_keeps_the_flow_and_each_levels_final_energy(astronaut):
    da = dense_sift(astronaut[:48, :48])
    db = dense_sift(np.roll(astronaut, (2, -3), axis=(0, 1))[:48, :48])
    kwargs = dict(n_levels=3, n_top_iterations=6, n_iterations=5)
    full = sift_flow(da, db, **kwargs)
    last = sift_flow(da, db, record_energy=False, **kwargs)
    for name in ("vx", "vy", "cost", "valid"):
        np.testing.assert_array_equal(getattr(last, name), getattr(full, name))
    assert [len(e) for e in full.energy_levels] == [6, 5, 5]
    assert [len(e) for e in last.energy_levels] == [1, 1, 1]
    assert [e[0] for e in last.energy_levels] == [e[-1] for e in full.energy_levels]
    assert last.energy is last.energy_levels[-1]


def test_upsampled_flow_is_matlab_bicubic_times_two_rounded_half_away_from_zero():
    from alignment.siftflow import _upsample_flow

    # By hand, a column (v0, v1) doubled to 4 rows. Output row i lies at input position
    # i / 2 - 1/4; Keys' cubic at distances 1.75, 0.75, 0.25, 1.25 gives -6, 58, 222, -18 (/256),
    # mirrored at the borders: rows 280 v0 - 24 v1, 204 v0 + 52 v1, 52 v0 + 204 v1,
    # -24 v0 + 280 v1, all / 256, then times 2. (-4, 4): -9.5, -4.75, 4.75, 9.5;
    # (2, 10): 2.5, 7.25, 16.75, 21.5; the halves go away from zero.
    for column, expected in (([-4, 4], [-10, -5, 5, 10]), ([2, 10], [3, 7, 17, 22])):
        got = _upsample_flow(np.array(column, np.int32)[:, None], (4, 2))
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, np.repeat(np.array(expected)[:, None], 2, axis=1))
    # A random flow, against the separable product of the same 4-tap rows.
    even = np.array([-6, 58, 222, -18]) / 256  # row 2m: inputs m - 2 .. m + 1
    odd = even[::-1]  # row 2m + 1: inputs m - 1 .. m + 2

    def doubling(n):
        mirror = np.pad(np.arange(n), 8, mode="symmetric")
        A = np.zeros((2 * n, n))
        for i in range(2 * n):
            taps, first = (even, i // 2 - 2) if i % 2 == 0 else (odd, i // 2 - 1)
            for j, c in enumerate(taps):
                A[i, mirror[first + j + 8]] += c
        return A

    v = np.random.default_rng(1).integers(-5, 6, (4, 5)).astype(np.int32)
    up = doubling(4) @ v @ doubling(5).T * 2
    np.testing.assert_array_equal(_upsample_flow(v, (8, 10)), np.sign(up) * np.floor(np.abs(up) + 0.5))


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


REF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "siftflow-ref"


def _final_energy(name):
    for line in (REF / f"{name}_energy.txt").read_text().splitlines():
        if line.startswith("final_energy"):
            return float(line.split()[1])
    raise AssertionError(f"no final_energy in {name}_energy.txt")


@pytest.mark.skipif(not REF.is_dir(), reason="the SIFT-Flow reference outputs are not beside the repository")
@pytest.mark.parametrize("name", ["astronaut_shift", "ecssd_0005_0006"])
def test_flow_and_energy_are_the_cpp_programs(name):
    # Ce Liu's C++ SIFT-Flow (mexDenseSIFT + SIFTflowc2f, demo parameters) on the same PNGs:
    # every pixel's (vx, vy) and the final energy are the reference's.
    def rgb(key):
        return cv2.cvtColor(cv2.imread(str(REF / f"{name}_{key}.png")), cv2.COLOR_BGR2RGB)

    res = sift_flow(dense_sift(rgb("a")), dense_sift(rgb("b")))
    np.testing.assert_array_equal(res.vx, np.load(REF / f"{name}_vx.npy"))
    np.testing.assert_array_equal(res.vy, np.load(REF / f"{name}_vy.npy"))
    assert res.energy[-1] == _final_energy(name)


def _flat_pair(h=16, w=16):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (h, w, 128), dtype=np.uint8)
    return a, np.roll(a, 1, axis=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_levels": 0}, "n_levels must be a positive integer, got 0"),
    ({"n_levels": 1.5}, "n_levels must be a positive integer, got 1.5"),
    ({"window": -1}, "window must be a non-negative integer, got -1"),
    ({"window": 1.5}, "window must be a non-negative integer, got 1.5"),
    ({"top_window": -1}, "top_window must be a non-negative integer, got -1"),
    ({"n_top_iterations": -1}, "n_top_iterations must be a non-negative integer, got -1"),
    ({"n_iterations": -2}, "n_iterations must be a non-negative integer, got -2"),
    ({"alpha": -1.0}, "alpha must be a finite non-negative number, got -1.0"),
    ({"d": np.inf}, "d must be a finite non-negative number, got inf"),
    ({"gamma": np.nan}, "gamma must be a finite non-negative number, got nan"),
])
def test_a_bad_option_is_named_in_the_error(kwargs, message):
    a, b = _flat_pair()
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        sift_flow(a, b, **kwargs)


@pytest.mark.parametrize("name", ["desc_a", "desc_b"])
def test_a_bad_descriptor_image_is_named_in_the_error(name):
    a, b = _flat_pair()
    bad = {"desc_a": a.astype(np.float32), "desc_b": b[..., 0]}[name]
    args = (bad, b) if name == "desc_a" else (a, bad)
    with pytest.raises(ValueError, match=f"^{name} must be an \\(H, W, C\\) uint8 dense-SIFT image"):
        sift_flow(*args)


def test_the_smallest_accepted_options_and_image_run():
    # the lower bounds are inclusive: one level, zero windows and iterations, zero weights, and
    # images of exactly 2 ** (n_levels - 1) pixels per side
    a, b = _flat_pair(8, 8)
    for kwargs in ({"n_levels": 1}, {"window": 0, "top_window": 0}, {"n_top_iterations": 0, "n_iterations": 0},
                   {"alpha": 0.0, "d": 0.0, "gamma": 0.0}, {"alpha": 0.5, "gamma": 0.5}, {"n_levels": 4}):
        res = sift_flow(a, b, **kwargs)
        assert res.vx.shape == (8, 8), kwargs
    with pytest.raises(ValueError, match="^images of side 7 are too small for n_levels=4"):
        sift_flow(a[:7], b, n_levels=4)
    assert len(sift_flow(a, b, n_levels=3).energy_levels) == 3
