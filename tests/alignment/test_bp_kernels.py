"""SIFT-Flow's numba kernels against brute-force numpy references, on inputs small enough to
enumerate (and to run as plain Python under mutation testing). Every cost here is an integer held
in float32, so the checks are exact."""

import itertools

import numpy as np
import pytest

from alignment import _bp_kernels as k
from alignment.siftflow import _pyramid_kernel, _pyramid_level, _resize_contributions


def _brute_message(h, off_p, off_q, w, s, d, first_pixel=False):
    """The reference's spatial message from p to q (``BPFlow::UpdateSpatialMessage``).

    Label windows that overlap (``|off_q - off_p| <= 2 w``): the truncated-L1 min-convolution
    ``m(l_q) = min_lp h(l_p) + min(s |a(l_p) - a(l_q)|, d)`` (``a`` the absolute displacement),
    minus ``min h`` (the kernel's normalisation; the reference subtracts the message's own minimum,
    the same up to a constant). Windows that do not overlap: the reference writes ``l s`` (``-l s``
    when p is the image's first pixel), caps it at ``min h + d`` and subtracts its minimum.
    """
    n_lab = 2 * w + 1
    lab = np.arange(n_lab)
    if abs(off_q - off_p) > 2 * w:
        m = np.minimum(-s * lab if first_pixel else s * lab, h.min() + d)
        return m - m.min()
    a_p = off_p + lab - w
    a_q = off_q + lab - w
    pair = h[:, None] + np.minimum(s * np.abs(a_p[:, None] - a_q[None, :]), d)
    return pair.min(axis=0) - h.min()


def _cone(n_lab, s):
    return (s * np.abs(np.arange(n_lab)[:, None] - np.arange(n_lab)[None])).astype(np.float32)


@pytest.mark.parametrize("n_lab", [3, 5, 9, 11])
def test_spatial_message_equals_the_reference_rule_at_every_shift(n_lab):
    # d below a couple of label steps, so the truncation decides most entries of the message
    # (with the defaults, d = 20 alpha, it never acts in a small window). Shifts beyond 2 w: the
    # windows do not overlap and the reference's quirk applies, with its own case for the first
    # pixel (0, 0) as sender; the other senders are not at (0, 0) but share its row or column.
    rng = np.random.default_rng(10 + n_lab)
    w = (n_lab - 1) // 2
    s, d = np.float32(10.0), np.float32(15.0)
    routes = [((0, 0), (0, 1), 0), ((0, 0), (1, 0), 2), ((0, 1), (0, 2), 0), ((1, 0), (1, 1), 0),
              ((1, 1), (0, 1), 3)]  # sender, receiver, slot of the receiver
    truncated = capped = uncapped = first = 0
    for shift in range(-n_lab - 1, n_lab + 2):
        for (y, x), (qy, qx), slot in routes:
            h = rng.integers(0, 60, n_lab).astype(np.float32)
            off = np.full((2, 3), 2, np.int32)
            off[qy, qx] = 2 + shift
            sk = np.zeros((2, 3, 4, n_lab), np.float32)
            k._send(h.copy(), _cone(n_lab, s), sk, off, y, x, qy, qx, slot, s, d, n_lab)
            expected = _brute_message(h, 2, 2 + shift, w, s, d, first_pixel=(y, x) == (0, 0))
            np.testing.assert_array_equal(sk[qy, qx, slot], expected, err_msg=f"shift {shift}, {y, x}")
            sk[qy, qx, slot] = 0
            assert not sk.any()  # nothing else written
            if abs(shift) <= 2 * w:
                truncated += int((expected == d).sum())
            elif (y, x) == (0, 0):
                first += 1
            else:
                capped += int((expected < s * np.arange(n_lab)).sum())
                uncapped += int((expected == s * np.arange(n_lab))[1:].sum())
    # every branch exercised: truncation, the quirk capped at min h + d and below it, pixel (0, 0)
    assert truncated > 0 and capped > 0 and uncapped > 0 and first > 0


def test_non_overlapping_windows_send_the_reference_ramp_whatever_the_sign_of_the_shift():
    # By hand: 5 labels (w = 2), offsets 0 and +-9, s = 4, d = 100, min h = 3.
    n_lab, s, d = 5, np.float32(4.0), np.float32(100.0)
    h = np.array([9.0, 3.0, 40.0, 7.0, 5.0], np.float32)
    for shift in (9, -9):
        off = np.array([[0, 0, shift]], np.int32)
        sk = np.zeros((1, 3, 4, n_lab), np.float32)
        k._send(h.copy(), _cone(n_lab, s), sk, off, 0, 1, 0, 2, 0, s, d, n_lab)
        np.testing.assert_array_equal(sk[0, 2, 0], [0, 4, 8, 12, 16])  # l s, not a cone about the shift
        off = np.array([[0, shift, 0]], np.int32)
        k._send(h.copy(), _cone(n_lab, s), sk, off, 0, 0, 0, 1, 0, s, d, n_lab)
        np.testing.assert_array_equal(sk[0, 1, 0], [16, 12, 8, 4, 0])  # from pixel (0, 0): (4 - l) s
    # the cap min h + d = 3 + 5 binds from l = 3 on
    sk = np.zeros((1, 3, 4, n_lab), np.float32)
    k._send(h.copy(), _cone(n_lab, s), sk, np.array([[0, 0, 9]], np.int32), 0, 1, 0, 2, 0, s,
            np.float32(5.0), n_lab)
    np.testing.assert_array_equal(sk[0, 2, 0], [0, 4, 8, 8, 8])


def test_spatial_message_lands_in_the_named_slot_of_the_receiver():
    n_lab, s, d = 3, np.float32(1.0), np.float32(100.0)
    h = np.array([0.0, 5.0, 9.0], np.float32)
    off = np.zeros((2, 2), np.int32)
    sk = np.zeros((2, 2, 4, n_lab), np.float32)
    k._send(h.copy(), _cone(n_lab, s), sk, off, 0, 0, 1, 0, 2, s, d, n_lab)  # (0,0) -> (1,0), slot 2
    np.testing.assert_allclose(sk[1, 0, 2], [0.0, 1.0, 2.0])
    sk[1, 0, 2] = 0
    assert not sk.any()  # nothing else written


def _ref_data_term(a, b, ox, oy, w):
    h, wd, _ = a.shape
    n_lab = 2 * w + 1
    out = np.full((h, wd, n_lab, n_lab), -1.0)
    costs = []
    for y, x, ly, lx in itertools.product(range(h), range(wd), range(n_lab), range(n_lab)):
        ty, tx = y + oy[y, x] + ly - w, x + ox[y, x] + lx - w
        if 0 <= ty < b.shape[0] and 0 <= tx < b.shape[1]:
            out[y, x, ly, lx] = np.abs(a[y, x].astype(int) - b[ty, tx].astype(int)).sum()
            costs.append(out[y, x, ly, lx])
    return out, costs


def _ref_default_score(costs):
    """``DefaultMatchingScore`` of ``BPFlow::ComputeDataTerm``, transcribed: 20000 bins of width
    ``(max - min) / 20000`` counted from 0 (not from min), bin ``min(c / width, 19999)``
    truncated; the first bin where the running share (each bin's count / total, summed in order)
    reaches 1/2 gives ``int(max(bin, 1) * width + min)``."""
    costs = np.asarray(costs, np.int64)
    if costs.size == 0:
        return 0.0
    lo, hi = int(costs.min()), int(costs.max())
    width = (hi - lo) / 20000
    if width == 0:
        return float(lo)  # the reference divides by 0: all in the last bin, 19999 * 0 + min
    bins = np.minimum(costs / width, 20000 - 1).astype(np.int64)
    share = np.bincount(bins, minlength=20000) / costs.size
    first = int(np.argmax(np.cumsum(share) >= 0.5))
    return float(int(max(first, 1) * width + lo))


@pytest.mark.parametrize("channels", [8, 258])  # 258 x 255 >= 2**16: the 64-bit accumulator
def test_data_term_equals_brute_force_and_returns_the_reference_default_score(channels):
    rng = np.random.default_rng(channels)
    a = rng.integers(0, 256, (3, 4, channels), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 3, channels), dtype=np.uint8)
    a[0, 0] = 255
    b[:] = np.where(rng.random(b.shape) < 0.5, 0, b)  # large differences: overflow would show
    w = 1
    ox = rng.integers(-1, 2, (3, 4)).astype(np.int32)
    oy = rng.integers(-1, 2, (3, 4)).astype(np.int32)
    out = np.empty((3, 4, 3, 3), np.float32)
    score = k.data_term(a, b, ox, oy, w, out)
    ref, costs = _ref_data_term(a, b, ox, oy, w)
    np.testing.assert_array_equal(out, ref)
    assert score == _ref_default_score(costs)
    assert score != np.sort(costs)[(len(costs) + 1) // 2 - 1]  # not the lower median
    assert (out == -1).any() and (out > 0).any()


@pytest.mark.parametrize(
    "costs, score",
    [
        # max - min = 625: width 1/32, exact. Bins 320, 640, 960, 1280 and the last; the share
        # reaches 1/2 in bin 960: 960 / 32 + 10 = 40, the median 30 plus the minimum 10.
        ([10, 20, 30, 40, 635], 40),
        ([10, 20, 30, 635], 30),  # exactly 1/2 in bin 640 is enough: 20 + 10
        ([100, 200, 300, 400, 725], 400),  # a large minimum: median 300 + min 100
        # min >= max - min: every c * 32 >= 22400 is cut to the last bin, 19999 / 32 + 700
        ([700, 701, 702, 1325], 1324),
        ([0, 0, 0, 20000], 1),  # width 1, 1/2 reached in bin 0, counted as bin 1: 1 * 1 + 0
        ([1, 3, 10], 3),  # width 9 / 20000: bin 6666, 6666 * 0.00045 + 1 = 3.9997, truncated
        ([7, 7, 7], 7),  # one value: the minimum
        ([], 0),  # no in-image candidate at all
    ],
)
def test_default_score_follows_the_reference_histogram_rule(costs, score):
    hist = np.bincount(np.asarray(costs, np.int64), minlength=128 * 255 + 1)
    assert k._default_matching_score(hist, len(costs)) == score
    assert _ref_default_score(costs) == score


def test_data_term_costs_and_default_of_known_candidates():
    a = np.zeros((1, 1, 1), np.uint8)
    b = np.array([[[10], [20], [250]]], np.uint8)  # costs 10, 20, 250 at lx = 0, 1, 2
    out = np.empty((1, 1, 3, 3), np.float32)
    # width 240 / 20000 = 0.012: bins 833, 1666, last; 1666 * 0.012 + 10 = 29.99 -> 29
    # (about the median 20 plus the minimum 10)
    assert k.data_term(a, b, np.ones((1, 1), np.int32), np.zeros((1, 1), np.int32), 1, out) == 29.0
    np.testing.assert_array_equal(out[0, 0, 1], [10, 20, 250])
    assert (out[0, 0, 0] == -1).all() and (out[0, 0, 2] == -1).all()
    b2 = np.array([[[40], [50], [60]]], np.uint8)
    # min 40 >= max - min 20: all in the last bin, 19999 * 0.001 + 40 = 59.999 -> 59
    assert k.data_term(a, b2, np.ones((1, 1), np.int32), np.zeros((1, 1), np.int32), 1, out) == 59.0
    far = np.full((1, 1), 50, np.int32)  # every candidate outside image 2
    assert k.data_term(a, b, far, far, 1, out) == 0.0 and (out == -1).all()


def test_finish_data_term_prices_outside_at_the_default_and_keeps_every_cost():
    # no truncation: costs above d = 10200, up to the largest L1 distance 128 x 255, stay
    out = np.array([[-1.0, 0.0, 5.0], [7.0, 10201.0, 32640.0]], np.float32)
    k.finish_data_term(out, np.float32(6.0))
    np.testing.assert_array_equal(out, [[6.0, 0.0, 5.0], [7.0, 10201.0, 32640.0]])
    out = np.array([-1.0, 3.0, -1.0], np.float32)
    k.finish_data_term(out, np.float32(20000.0))  # a default above every cost is kept as well
    np.testing.assert_array_equal(out, [20000.0, 3.0, 20000.0])




# MATLAB imresize(.., 0.5, 'bicubic'): 0.5 * cubic(0.5 x) at x = 3.5, 2.5, 1.5, 0.5, 0.5, .. 3.5
# (Keys, a = -0.5: cubic(t) = 1.5 t^3 - 2.5 t^2 + 1 up to 1, -0.5 t^3 + 2.5 t^2 - 4 t + 2 up to 2),
# times 256. They sum to 256.
_HALVE_256 = np.array([-3, -9, 29, 111, 111, 29, -9, -3])


def _mirror(i, n):
    """Index ``i`` of a length-``n`` axis extended by symmetric reflection (``[1:n, n:-1:1]``)."""
    return np.pad(np.arange(n), 8, mode="symmetric")[np.asarray(i) + 8]


@pytest.mark.parametrize("n_in", [1, 2, 3, 7, 8])
def test_halving_weights_are_matlabs_bicubic_taps_with_mirrored_borders(n_in):
    n_out = -(-n_in // 2)
    index, weight = _resize_contributions(n_in, n_out, 0.5)
    # output i is centred between inputs 2i and 2i + 1; its 8 taps are inputs 2i - 3 .. 2i + 4
    taps = 2 * np.arange(n_out)[:, None] - 3 + np.arange(8)[None, :]
    np.testing.assert_array_equal(index, _mirror(taps, n_in))
    np.testing.assert_array_equal(weight * 256, np.broadcast_to(_HALVE_256, (n_out, 8)))


@pytest.mark.parametrize("n_in, n_out, scale", [(8, 4, 0.5), (7, 4, 0.5), (3, 6, 2.0), (5, 10, 2.0),
                                                (5, 9, 1.8), (9, 5, 5 / 9), (6, 7, 7 / 6)])
def test_resize_weights_sum_to_one_and_index_the_input(n_in, n_out, scale):
    index, weight = _resize_contributions(n_in, n_out, scale)
    assert index.shape == weight.shape and index.shape[0] == n_out
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert index.min() >= 0 and index.max() < n_in
    assert np.any(weight != 0, axis=0).all()  # all-zero taps dropped
    if scale in (0.5, 2.0):  # dyadic weights: uint8 arithmetic in 1/256 is exact
        np.testing.assert_array_equal(weight * 256, np.round(weight * 256))


def _ref_blur(desc, g):
    """``imfilter(desc, g' * g, 'same', 'replicate')`` in float64: the 2-D correlation over an
    edge-padded copy, before rounding."""
    r = len(g) // 2
    h, w = desc.shape[:2]
    pad = np.pad(desc.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    acc = np.zeros(desc.shape)
    for t, u in itertools.product(range(len(g)), repeat=2):
        acc += g[t] * g[u] * pad[t:t + h, u:u + w]
    return acc


def _round_u8(x):
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)  # half up, saturated


def test_pyramid_kernel_is_fspecial_gaussian_5_sigma_067():
    x = np.arange(-2, 3)
    ref = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.67**2))
    g = _pyramid_kernel()
    np.testing.assert_allclose(np.outer(g, g), ref / ref.sum(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("shape", [(6, 7), (1, 4), (5, 1)])
def test_gauss_blur_is_the_float64_correlation_rounded_half_up(shape):
    rng = np.random.default_rng(sum(shape))
    desc = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    g = _pyramid_kernel()
    got = k.gauss_blur_u8(desc, g)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, _round_u8(_ref_blur(desc, g)))


def test_gauss_blur_rounds_near_ties_as_float64_does():
    # 32 random 5 x 5 patches whose blurred centre is nearest to n + 1/2 (out of 200000), one per
    # channel of a 5 x 5 image: channel j's centre output is patch j's.
    g = _pyramid_kernel()
    patches = np.random.default_rng(0).integers(0, 256, (200000, 5, 5))
    centre = np.einsum("ntu,tu->n", patches.astype(np.float64), np.outer(g, g))
    near = np.argsort(np.abs(centre - np.floor(centre) - 0.5))[:32]
    img = np.ascontiguousarray(patches[near].transpose(1, 2, 0).astype(np.uint8))
    ref = _round_u8(_ref_blur(img, g))
    np.testing.assert_array_equal(k.gauss_blur_u8(img, g), ref)
    # the check can fail: float32 sums (rows, then columns) round one of these centres the other way
    g32 = g.astype(np.float32)
    f = img.astype(np.float32)
    f32 = sum(g32[t] * sum(g32[u] * f[t, u] for u in range(5)) for t in range(5))
    assert (_round_u8(f32) != ref[2, 2]).any()


def test_gauss_blur_rounds_exact_ties_half_up():
    # A dyadic kernel makes exact ties n + 1/2; half up, not to even
    g = np.array([0.25, 0.5, 0.25])
    desc = np.random.default_rng(4).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    acc = _ref_blur(desc, g)
    ties = acc - np.floor(acc) == 0.5
    assert (ties & (np.floor(acc) % 2 == 0)).any()  # where rounding to even would go down
    np.testing.assert_array_equal(k.gauss_blur_u8(desc, g), _round_u8(acc))
    np.testing.assert_array_equal(k.gauss_blur_u8(desc, np.array([1.0])), desc)  # a 1-tap identity


def _ref_halve(x):
    """``imresize(x, 0.5, 'bicubic')`` along axis 0 of a uint8 image, in integers: the 8 taps
    ``2i - 3 .. 2i + 4`` (mirrored) weighted by ``_HALVE_256``, rounded half up, saturated."""
    n = x.shape[0]
    acc = np.stack([sum(int(c) * x[_mirror(2 * i - 3 + p, n)].astype(np.int64)
                        for p, c in enumerate(_HALVE_256)) for i in range(-(-n // 2))])
    return np.clip((acc + 128) // 256, 0, 255).astype(np.uint8), acc


def _ref_pyramid_level(desc):
    rows, acc_rows = _ref_halve(_round_u8(_ref_blur(desc, _pyramid_kernel())))
    cols, acc_cols = _ref_halve(np.ascontiguousarray(rows.transpose(1, 0, 2)))  # then columns
    return cols.transpose(1, 0, 2), acc_rows, acc_cols


@pytest.mark.parametrize("shape", [(7, 6), (8, 5), (2, 2), (3, 1), (1, 3)])
def test_pyramid_level_is_the_blur_then_bicubic_halving_of_rows_then_columns(shape):
    desc = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    got = _pyramid_level(desc)
    assert got.dtype == np.uint8 and got.shape == (-(-shape[0] // 2), -(-shape[1] // 2), 3)
    np.testing.assert_array_equal(got, _ref_pyramid_level(desc)[0])


def test_pyramid_level_saturates_overshoot_and_rounds_ties_half_up():
    step = np.zeros((6, 6, 1), np.uint8)
    step[:, 3:] = 255  # a step: the bicubic lobes overshoot below 0 and above 255
    noise = np.random.default_rng(0).integers(0, 256, (6, 6, 8), dtype=np.uint8)
    desc = np.ascontiguousarray(np.concatenate([step, noise], axis=2))
    ref, acc_rows, acc_cols = _ref_pyramid_level(desc)
    assert (acc_cols[..., 0] < 0).any() and (acc_cols[..., 0] > 255 * 256).any()
    assert (acc_rows % 256 == 128).any() and (acc_cols % 256 == 128).any()  # ties in both passes
    np.testing.assert_array_equal(_pyramid_level(desc), ref)


@pytest.mark.parametrize("value", [0, 7, 255])
@pytest.mark.parametrize("shape", [(7, 5), (4, 4), (1, 3)])
def test_pyramid_level_keeps_a_constant_image(shape, value):
    got = _pyramid_level(np.full(shape + (2,), value, np.uint8))
    assert got.shape == (-(-shape[0] // 2), -(-shape[1] // 2), 2)
    assert (got == value).all()




def test_range_term_is_floored_like_the_reference_int_messages():
    ox = np.array([[0, 2, -3]], np.int32)
    oy = np.array([[-1, 0, 4]], np.int32)
    w, gamma = 2, 1.275
    out = np.empty((2, 1, 3, 2 * w + 1), np.float32)
    k.range_term(ox, oy, w, gamma, out)
    disp = np.arange(-w, w + 1)
    np.testing.assert_array_equal(out[0], np.floor(gamma * np.abs(ox[..., None] + disp)))
    np.testing.assert_array_equal(out[1], np.floor(gamma * np.abs(oy[..., None] + disp)))
    # by hand: offset 0, |v| = 2, 1, 0, 1, 2 -> 2.55, 1.275, 0, .. -> 2, 1, 0, 1, 2
    np.testing.assert_array_equal(out[0, 0, 0], [2, 1, 0, 1, 2])
    # offset 4, |v| = 2 .. 6 -> 2.55, 3.825, 5.1, 6.375, 7.65
    np.testing.assert_array_equal(out[1, 0, 2], [2, 3, 5, 6, 7])


def _children(shape, yc, xc):
    return [(y, x) for y in (2 * yc, 2 * yc + 1) for x in (2 * xc, 2 * xc + 1)
            if y < shape[0] and x < shape[1]]


def test_reduce_offsets_truncates_the_mean_towards_zero():
    off = np.array([[-1, -1, 3, 2, -5],
                    [-1, 0, 2, 2, 4],
                    [-7, 1, -1, 0, -3]], np.int32)
    # by hand: -3/4 -> 0 (floor: -1), 9/4 -> 2, -1/2 -> 0 | -6/2 -> -3, -1/2 -> 0, -3/1 -> -3
    got = k.reduce_offsets(off)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [[0, 2, 0], [-3, 0, -3]])
    rng = np.random.default_rng(7)
    for shape in [(5, 4), (4, 7), (1, 1), (1, 3)]:
        off = rng.integers(-9, 10, shape).astype(np.int32)
        ref = np.array([[int(sum(off[c] for c in _children(shape, yc, xc)) / len(_children(shape, yc, xc)))
                         for xc in range(-(-shape[1] // 2))] for yc in range(-(-shape[0] // 2))])
        np.testing.assert_array_equal(k.reduce_offsets(off), ref)


def test_reduce_data_term_sums_the_children_per_label():
    shape = (3, 5)
    D = np.random.default_rng(8).integers(0, 500, shape + (3, 3)).astype(np.float32)
    got = k.reduce_data_term(D)
    assert got.shape == (2, 3, 3, 3) and got.dtype == np.float32
    for yc, xc in itertools.product(range(2), range(3)):
        np.testing.assert_array_equal(got[yc, xc], sum(D[c] for c in _children(shape, yc, xc)))


def test_expand_messages_gives_each_node_its_parents_messages():
    rng = np.random.default_rng(9)
    n_lab = 3
    S_c = rng.integers(0, 50, (2, 2, 3, 4, n_lab)).astype(np.float32)
    M_c = rng.integers(0, 50, (2, 2, 3, n_lab)).astype(np.float32)
    S = np.full((2, 3, 5, 4, n_lab), np.nan, np.float32)  # a fine grid of odd sizes
    M = np.full((2, 3, 5, n_lab), np.nan, np.float32)
    k.expand_messages(S_c, M_c, S, M)
    for y, x in itertools.product(range(3), range(5)):
        np.testing.assert_array_equal(S[:, y, x], S_c[:, y // 2, x // 2])
        np.testing.assert_array_equal(M[:, y, x], M_c[:, y // 2, x // 2])


def test_dual_message_is_the_min_over_the_other_layer_normalised():
    rng = np.random.default_rng(3)
    n_lab = 3
    D = rng.integers(0, 50, (1, 2, n_lab, n_lab)).astype(np.float32)  # D[y, x, ly, lx]
    base = rng.integers(0, 20, n_lab).astype(np.float32)
    for kk in (0, 1):
        Mo = np.zeros((1, 2, n_lab), np.float32)
        k._dual(D, base, Mo, kk, 0, 1, n_lab)
        if kk == 0:  # vx -> vy: m(ly) = min_lx D[ly, lx] + base(lx)
            ref = (D[0, 1] + base[None, :]).min(axis=1)
        else:  # vy -> vx: m(lx) = min_ly D[ly, lx] + base(ly)
            ref = (D[0, 1] + base[:, None]).min(axis=0)
        np.testing.assert_allclose(Mo[0, 1], ref - ref.min())
        assert not Mo[0, 0].any()


def _ref_energy(D, R, ox, oy, s, d, X):
    e = 0.0
    hh, wd = ox.shape
    ax, ay = ox + X[0], oy + X[1]
    for y, x in itertools.product(range(hh), range(wd)):
        e += D[y, x, X[1, y, x], X[0, y, x]] + R[0, y, x, X[0, y, x]] + R[1, y, x, X[1, y, x]]
        for qy, qx in ((y, x + 1), (y + 1, x)):
            if qy < hh and qx < wd:
                e += min(s * abs(ax[y, x] - ax[qy, qx]), d) + min(s * abs(ay[y, x] - ay[qy, qx]), d)
    return e


def _problem(seed, hh=3, wd=4, w=1, gamma=1.5):
    """A random level: data term, offsets, and the range term floor(gamma |offset + l - w|)."""
    rng = np.random.default_rng(seed)
    n_lab = 2 * w + 1
    D = rng.integers(0, 40, (hh, wd, n_lab, n_lab)).astype(np.float32)
    ox = rng.integers(-1, 2, (hh, wd)).astype(np.int32)
    oy = rng.integers(-1, 2, (hh, wd)).astype(np.int32)
    lab = np.arange(-w, w + 1)
    R = np.empty((2, hh, wd, n_lab), np.float32)
    R[0] = np.floor(gamma * np.abs(ox[..., None] + lab))
    R[1] = np.floor(gamma * np.abs(oy[..., None] + lab))
    return D, R, ox, oy, w


def _zero_messages(hh, wd, n_lab):
    return np.zeros((2, hh, wd, 4, n_lab), np.float32), np.zeros((2, hh, wd, n_lab), np.float32)


def _belief_minima(R, S, M):
    """Per layer, the label of minimum R + M + the four spatial messages (first one on ties)."""
    return np.argmin(R + M + S.sum(axis=3), axis=-1)


def test_energy_is_eq3_of_the_labelling():
    D, R, ox, oy, w = _problem(0)
    rng = np.random.default_rng(1)
    for s, d in ((3.0, 5.0), (10.0, 1000.0)):
        X = rng.integers(0, 2 * w + 1, (2,) + ox.shape).astype(np.int32)
        assert k._energy(D, R, ox, oy, s, d, X) == pytest.approx(_ref_energy(D, R, ox, oy, s, d, X))


def test_bp_labels_are_belief_minima_and_energy_is_recorded_per_iteration():
    D, R, ox, oy, w = _problem(2)
    s, d = 4.0, 9.0  # truncation active: d < the cost of a two-pixel jump
    X = np.zeros((2,) + ox.shape, np.int32)
    energy = np.zeros(8)
    S, M = _zero_messages(*ox.shape, 2 * w + 1)
    k.bp_level(D, R, ox, oy, w, s, d, 8, X, energy, S, M)
    assert X.min() >= 0 and X.max() <= 2 * w
    np.testing.assert_array_equal(X, _belief_minima(R, S, M))  # of the messages left in S, M
    assert energy[-1] == _ref_energy(D, R, ox, oy, s, d, X)
    assert (energy > 0).all() and energy.min() <= energy[0]
    # BP's labelling beats the data term's per-pixel choice and a constant labelling
    start = np.zeros_like(X)
    for y, x in itertools.product(*map(range, ox.shape)):
        ly, lx = np.unravel_index(np.argmin(D[y, x]), D[y, x].shape)
        start[:, y, x] = lx, ly
    assert energy[-1] <= _ref_energy(D, R, ox, oy, s, d, start)
    for c in range(2 * w + 1):
        assert energy[-1] <= _ref_energy(D, R, ox, oy, s, d, np.full_like(X, c))


def test_energy_is_not_recorded_into_an_empty_array_and_the_labels_are_the_same():
    D, R, ox, oy, w = _problem(3)
    runs = []
    for energy in (np.zeros(6), np.zeros(0)):
        X = np.zeros((2,) + ox.shape, np.int32)
        S, M = _zero_messages(*ox.shape, 2 * w + 1)
        k.bp_level(D, R, ox, oy, w, 4.0, 9.0, 6, X, energy, S, M)
        runs.append((X, S, M))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def _bp_and_enumerated_minimum(seed, hh, wd, w=1):
    """BP's final energy (from zero messages) and the minimum over every labelling
    ((2w + 1)^2 labels per pixel)."""
    D, R, ox, oy, w = _problem(seed, hh=hh, wd=wd, w=w)
    s, d = 6.0, 10.0
    X = np.zeros((2, hh, wd), np.int32)
    energy = np.zeros(16)
    k.bp_level(D, R, ox, oy, w, s, d, 16, X, energy, *_zero_messages(hh, wd, 2 * w + 1))
    best = min(
        _ref_energy(D, R, ox, oy, s, d, np.array(lab, np.int32).reshape(2, hh, wd))
        for lab in itertools.product(range(2 * w + 1), repeat=2 * hh * wd)
    )
    return energy[-1], best


def test_bp_finds_the_minimum_of_a_tiny_problem():
    # 1 x 3 pixels, 3 x 3 labels each: 729 labellings, enumerated.
    found, best = _bp_and_enumerated_minimum(5, 1, 3)
    assert found == best


def test_zero_iterations_take_the_belief_minima_of_the_given_messages():
    D, R, ox, oy, w = _problem(4, hh=2, wd=2)
    rng = np.random.default_rng(4)
    S = rng.integers(0, 30, (2, 2, 2, 4, 3)).astype(np.float32)
    M = rng.integers(0, 30, (2, 2, 2, 3)).astype(np.float32)
    S0, M0 = S.copy(), M.copy()
    X = np.full((2, 2, 2), -1, np.int32)
    k.bp_level(D, R, ox, oy, w, 1.0, 100.0, 0, X, np.zeros(0), S, M)
    np.testing.assert_array_equal(X, _belief_minima(R, S0, M0))
    np.testing.assert_array_equal(S, S0)
    np.testing.assert_array_equal(M, M0)
    # From zero messages nothing is seeded from the data term: the range term alone decides.
    X[:] = -1
    D[:] = 0
    D[:, :, 0, 2] = -1000  # a data term pulling hard towards (lx, ly) = (2, 0)
    k.bp_level(D, R, ox, oy, w, 1.0, 100.0, 0, X, np.zeros(0), *_zero_messages(2, 2, 3))
    np.testing.assert_array_equal(X, np.argmin(R, axis=-1))


def test_the_first_iteration_starts_from_the_given_messages():
    # 1 x 2 pixels. Iteration 0 is a forward sweep of layer 0 with dual messages: pixel (0, 0)
    # sends right from its range + dual + spatial messages, then each pixel sends its dual message
    # to layer 1 from its whole layer-0 belief. The given messages are used and updated in place.
    n_lab, w, s, d = 3, 1, 4.0, 9.0
    rng = np.random.default_rng(11)
    D = rng.integers(0, 40, (1, 2, n_lab, n_lab)).astype(np.float32)
    ox = np.array([[0, 1]], np.int32)
    oy = np.array([[1, 1]], np.int32)
    R = rng.integers(0, 6, (2, 1, 2, n_lab)).astype(np.float32)
    S = np.zeros((2, 1, 2, 4, n_lab), np.float32)
    S[:, 0, 0, 1] = rng.integers(0, 20, (2, n_lab))  # into (0, 0) from the right
    S[:, 0, 1, 0] = rng.integers(0, 20, (2, n_lab))  # into (0, 1) from the left
    M = rng.integers(0, 20, (2, 1, 2, n_lab)).astype(np.float32)
    expected_S, expected_M = S.copy(), M.copy()
    h = R[0, 0, 0] + M[0, 0, 0]  # (0, 0) has no other neighbour than the receiver
    expected_S[0, 0, 1, 0] = _brute_message(h, ox[0, 0], ox[0, 1], w, s, d)
    for x in range(2):
        base = R[0, 0, x] + expected_S[0, 0, x].sum(axis=0)
        m = (D[0, x] + base[None, :]).min(axis=1)  # vx -> vy: min over lx of D[ly, lx] + base
        expected_M[1, 0, x] = m - m.min()
    X = np.full((2, 1, 2), -1, np.int32)
    k.bp_level(D, R, ox, oy, w, s, d, 1, X, np.zeros(1), S, M)
    np.testing.assert_array_equal(S, expected_S)
    np.testing.assert_array_equal(M, expected_M)
    np.testing.assert_array_equal(X, _belief_minima(R, expected_S, expected_M))


def test_labels_take_the_minimum_belief():
    n_lab = 3
    Sk = np.zeros((1, 2, 4, n_lab), np.float32)
    Mk = np.zeros((1, 2, n_lab), np.float32)
    Rk = np.zeros((1, 2, n_lab), np.float32)
    Rk[0, 0] = [5, 1, 3]
    Sk[0, 1, 3] = [1, 2, 0.5]
    Mk[0, 1] = [0, 0, 2]  # pixel (0, 1): beliefs 1, 2, 2.5
    Xk = np.full((1, 2), -1, np.int32)
    k._labels(Sk, Mk, Rk, Xk)
    assert Xk.tolist() == [[1, 0]]


def test_match_cost_is_the_l2_distance_at_the_clamped_target():
    a = np.array([[[0, 0], [3, 4]]], np.uint8)  # (1, 2, 2)
    b = np.array([[[0, 0], [6, 8]]], np.uint8)
    vx = np.array([[1, 5]], np.int32)  # (0,0) -> (0,1); (0,1) -> (0,6): outside, clamped to (0,1)
    vy = np.array([[0, 0]], np.int32)
    cost = np.empty((1, 2), np.float32)
    valid = np.empty((1, 2), np.bool_)
    k.match_cost(a, b, vx, vy, cost, valid)
    np.testing.assert_allclose(cost, [[10.0, 5.0]])
    assert valid.tolist() == [[True, False]]
    vy = np.array([[-1, 0]], np.int32)
    k.match_cost(a, b, np.zeros((1, 2), np.int32), vy, cost, valid)
    assert valid.tolist() == [[False, True]]
    np.testing.assert_allclose(cost, [[0.0, 5.0]])


@pytest.mark.parametrize("seed", [5, 6])
def test_bp_finds_the_minimum_of_a_tiny_grid_with_vertical_neighbours(seed):
    # 2 x 2 pixels (messages in all four directions), 3 x 3 labels each: 6561 labellings.
    found, best = _bp_and_enumerated_minimum(seed, 2, 2)
    assert found == best


@pytest.mark.parametrize("forward", [True, False])
def test_a_sweep_sends_down_into_slot_2_and_up_into_slot_3(forward):
    # Two pixels in a column; the sender's range term is the only non-zero input. A forward sweep
    # sends down (arriving "from above", slot 2), a backward sweep sends up ("from below", slot 3).
    n_lab, s, d = 3, np.float32(1.0), np.float32(100.0)
    hh, wd = 2, 1
    sender, receiver, slot = (0, 1, 2) if forward else (1, 0, 3)
    layer = lambda: (np.zeros((hh, wd, 4, n_lab), np.float32), np.zeros((hh, wd, n_lab), np.float32),
                     np.zeros((hh, wd, n_lab), np.float32), np.zeros((hh, wd), np.int32))
    Sk, Mk, Rk, Xk = layer()
    So, Mo, Ro, Xo = layer()
    Rk[sender, 0] = [0.0, 5.0, 9.0]
    D = np.zeros((hh, wd, n_lab, n_lab), np.float32)
    off = np.zeros((hh, wd), np.int32)
    base, h, h2 = (np.zeros(n_lab, np.float32) for _ in range(3))
    k._sweep(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, 0, forward, False, s, d, _cone(n_lab, s), base, h, h2)
    np.testing.assert_allclose(Sk[receiver, 0, slot], [0.0, 1.0, 2.0])
    Sk[receiver, 0, slot] = 0
    assert not Sk.any()  # nothing else written


def test_a_dual_sweep_labels_the_other_layer_by_its_whole_belief():
    # One pixel; the other layer's belief is R + its four spatial messages + the dual message.
    # R alone picks label 2, R + slot 0 label 0, R + slot 0 + slot 3 label 1.
    n_lab, s, d = 3, np.float32(1.0), np.float32(100.0)
    z = lambda *shape: np.zeros(shape, np.float32)
    Sk, Mk, Rk, Xk = z(1, 1, 4, n_lab), z(1, 1, n_lab), z(1, 1, n_lab), np.zeros((1, 1), np.int32)
    So, Mo, Ro, Xo = z(1, 1, 4, n_lab), z(1, 1, n_lab), z(1, 1, n_lab), np.zeros((1, 1), np.int32)
    Ro[0, 0] = [3.0, 4.0, 0.0]
    So[0, 0, 0] = [0.0, 1.0, 6.0]
    So[0, 0, 3] = [6.0, 0.0, 1.0]
    D = z(1, 1, n_lab, n_lab)  # a zero data term: the dual message is zero
    for forward in (True, False):
        for layer in (0, 1):
            Xo[0, 0] = -1
            k._sweep(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, np.zeros((1, 1), np.int32), layer, forward, True,
                     s, d, _cone(n_lab, s), z(n_lab), z(n_lab), z(n_lab))
            assert Xo[0, 0] == 1  # beliefs 9, 5, 7


@pytest.mark.parametrize("w", [1, 2, 3])
def test_a_forward_sweep_on_a_grid_sends_the_reference_messages_for_every_label_count(w):
    # Iteration 0 (BP_S): layer 0, raster order; each pixel sends right then down from its range +
    # dual + the spatial messages it holds at that moment (those from the left and above just
    # written in this sweep), the receiver's own message left out; then its dual message to
    # layer 1 from its whole layer-0 belief. 5 and 7 labels run the sweep compiled for them.
    n_lab, s, d = 2 * w + 1, 4.0, 9.0
    hh, wd = 2, 3
    rng = np.random.default_rng(20 + w)
    D = rng.integers(0, 40, (hh, wd, n_lab, n_lab)).astype(np.float32)
    ox = rng.integers(-1, 2, (hh, wd)).astype(np.int32)
    ox[1, 2] = ox[1, 1] + 2 * w + 1  # one pair of windows that do not overlap
    oy = rng.integers(-1, 2, (hh, wd)).astype(np.int32)
    R = rng.integers(0, 6, (2, hh, wd, n_lab)).astype(np.float32)
    S = rng.integers(0, 20, (2, hh, wd, 4, n_lab)).astype(np.float32)
    for y, x in itertools.product(range(hh), range(wd)):  # no message from outside the grid
        S[:, y, x, 0] *= x > 0
        S[:, y, x, 1] *= x < wd - 1
        S[:, y, x, 2] *= y > 0
        S[:, y, x, 3] *= y < hh - 1
    M = rng.integers(0, 20, (2, hh, wd, n_lab)).astype(np.float32)
    eS, eM = S.copy(), M.copy()
    for y, x in itertools.product(range(hh), range(wd)):
        held = eS[0, y, x]
        if x + 1 < wd:
            h = R[0, y, x] + M[0, y, x] + held[0] + held[2] + held[3]
            eS[0, y, x + 1, 0] = _brute_message(h, ox[y, x], ox[y, x + 1], w, s, d, (y, x) == (0, 0))
        if y + 1 < hh:
            h = R[0, y, x] + M[0, y, x] + held[0] + held[1] + held[2]
            eS[0, y + 1, x, 2] = _brute_message(h, ox[y, x], ox[y + 1, x], w, s, d, (y, x) == (0, 0))
        base = R[0, y, x] + held.sum(axis=0)
        m = (D[y, x] + base[None, :]).min(axis=1)  # vx -> vy: min over lx of D[ly, lx] + base
        eM[1, y, x] = m - m.min()
    X = np.full((2, hh, wd), -1, np.int32)
    k.bp_level(D, R, ox, oy, w, s, d, 1, X, np.zeros(1), S, M)
    np.testing.assert_array_equal(S, eS)
    np.testing.assert_array_equal(M, eM)
    np.testing.assert_array_equal(X, _belief_minima(R, eS, eM))


@pytest.mark.parametrize("costs", [
    [0, 32640, 32640],                   # the median is the largest possible L1 cost (last entry)
    [5, 32600, 32640, 32640, 32640],     # ... and most costs sit in the last bin
    [0, 30000, 30001, 30002, 30003, 30004, 30006],  # bins 1.5 wide: several costs per bin
    [100, 20200, 20201, 20202, 20203],   # bins just over 1 wide, the median bin shared
])
def test_default_score_at_the_top_of_the_cost_range_and_with_shared_bins(costs):
    hist = np.bincount(np.asarray(costs, np.int64), minlength=128 * 255 + 1)
    assert k._default_matching_score(hist, len(costs)) == _ref_default_score(costs)


def test_random_cost_sets_give_the_reference_default_score():
    rng = np.random.default_rng(5)
    for _ in range(30):
        lo = int(rng.integers(0, 30000))
        costs = rng.integers(lo, min(lo + int(rng.integers(1, 30000)), 32640) + 1, int(rng.integers(1, 40)))
        hist = np.bincount(costs, minlength=128 * 255 + 1)
        assert k._default_matching_score(hist, costs.size) == _ref_default_score(costs), costs


@pytest.mark.parametrize("n_iterations", [10])
def test_the_schedule_is_the_references_bp_s(n_iterations):
    # Iteration t updates layer t % 2 only; forward (messages arrive from the left and above:
    # slots 0, 2) when t % 4 < 2, backward (slots 1, 3) otherwise; the dual message into the other
    # layer changes only when t % 8 < 4. Checked by running 0, 1, ..., n iterations from one start.
    D, R, ox, oy, w = _problem(9, hh=3, wd=4)
    rng = np.random.default_rng(9)
    S0 = rng.integers(0, 30, (2, 3, 4, 4, 3)).astype(np.float32)
    S0[:, :, 0, 0] = S0[:, :, -1, 1] = S0[:, 0, :, 2] = S0[:, -1, :, 3] = 0
    M0 = rng.integers(0, 30, (2, 3, 4, 3)).astype(np.float32)
    states = []
    for n in range(n_iterations + 1):
        S, M = S0.copy(), M0.copy()
        k.bp_level(D, R, ox, oy, w, 4.0, 9.0, n, np.zeros((2, 3, 4), np.int32), np.zeros(0), S, M)
        states.append((S, M))
    for t in range(n_iterations):
        (S_a, M_a), (S_b, M_b) = states[t], states[t + 1]
        layer, other = t % 2, 1 - t % 2
        slots = (0, 2) if t % 4 < 2 else (1, 3)
        changed = [j for j in range(4) if not np.array_equal(S_a[layer, :, :, j], S_b[layer, :, :, j])]
        assert changed == list(slots), (t, changed)
        np.testing.assert_array_equal(S_a[other], S_b[other])
        np.testing.assert_array_equal(M_a[layer], M_b[layer])
        assert (not np.array_equal(M_a[other], M_b[other])) == (t % 8 < 4), t
