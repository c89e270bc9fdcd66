"""SIFT-Flow's numba kernels against brute-force numpy references, on inputs small enough to
enumerate (and to run as plain Python under mutation testing)."""

import itertools

import numpy as np
import pytest

from alignment import _bp_kernels as k
from alignment.siftflow import _pyramid_kernel


def _brute_message(h, off_p, off_q, w, s, d):
    """m(l_q) = min_lp h(l_p) + min(s |a(l_p) - a(l_q)|, d), minus min h (a = absolute displacement)."""
    n_lab = 2 * w + 1
    a_p = off_p + np.arange(n_lab) - w
    a_q = off_q + np.arange(n_lab) - w
    pair = h[:, None] + np.minimum(s * np.abs(a_p[:, None] - a_q[None, :]), d)
    return pair.min(axis=0) - h.min()


def _cone(n_lab, s):
    return (s * np.abs(np.arange(n_lab)[:, None] - np.arange(n_lab)[None])).astype(np.float32)


@pytest.mark.parametrize("n_lab", [3, 5, 9, 11])
def test_spatial_message_is_truncated_at_d(n_lab):
    # d below a couple of label steps, so the truncation decides most entries of the message
    # (with the defaults, d = 20 alpha, it never acts in a small window).
    rng = np.random.default_rng(10 + n_lab)
    w = (n_lab - 1) // 2
    s, d = np.float32(10.0), np.float32(15.0)
    truncated = 0
    for shift in range(-n_lab - 1, n_lab + 2):
        for _ in range(2):
            h = rng.integers(0, 60, n_lab).astype(np.float32)
            off = np.array([[2, 2 + shift]], np.int32)
            sk = np.zeros((1, 2, 4, n_lab), np.float32)
            k._send(h.copy(), _cone(n_lab, s), sk, off, 0, 0, 0, 1, 0, s, d, n_lab)
            expected = _brute_message(h, 2, 2 + shift, w, s, d)
            np.testing.assert_allclose(sk[0, 1, 0], expected, atol=1e-4, err_msg=f"shift {shift}")
            truncated += int((expected == d).sum())
    assert truncated > 0  # the truncation was exercised


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
    costs = sorted(costs)
    return out, (costs[(len(costs) + 1) // 2 - 1] if costs else 0.0)


@pytest.mark.parametrize("channels", [8, 258])  # 258 x 255 >= 2**16: the 64-bit accumulator
def test_data_term_equals_brute_force_and_returns_the_lower_median(channels):
    rng = np.random.default_rng(channels)
    a = rng.integers(0, 256, (3, 4, channels), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 3, channels), dtype=np.uint8)
    a[0, 0] = 255
    b[:] = np.where(rng.random(b.shape) < 0.5, 0, b)  # large differences: overflow would show
    w = 1
    ox = rng.integers(-1, 2, (3, 4)).astype(np.int32)
    oy = rng.integers(-1, 2, (3, 4)).astype(np.int32)
    out = np.empty((3, 4, 3, 3), np.float32)
    median = k.data_term(a, b, ox, oy, w, out)
    ref, ref_median = _ref_data_term(a, b, ox, oy, w)
    np.testing.assert_array_equal(out, ref)
    assert median == ref_median
    assert (out == -1).any() and (out > 0).any()


def test_data_term_median_of_known_costs_and_of_nothing():
    a = np.zeros((1, 1, 1), np.uint8)
    b = np.array([[[1], [3], [10]]], np.uint8)  # costs 1, 3, 10 at lx = 0, 1, 2
    out = np.empty((1, 1, 3, 3), np.float32)
    assert k.data_term(a, b, np.ones((1, 1), np.int32), np.zeros((1, 1), np.int32), 1, out) == 3.0
    np.testing.assert_array_equal(out[0, 0, 1], [1, 3, 10])
    assert (out[0, 0, 0] == -1).all() and (out[0, 0, 2] == -1).all()
    b2 = np.array([[[1], [3], [10], [12]]], np.uint8)
    out2 = np.empty((1, 1, 5, 5), np.float32)
    # four costs 1, 3, 10, 12: the lower median, 3
    assert k.data_term(a, b2, np.full((1, 1), 2, np.int32), np.zeros((1, 1), np.int32), 2, out2) == 3.0
    far = np.full((1, 1), 50, np.int32)  # every candidate outside image 2
    assert k.data_term(a, b, far, far, 1, out) == 0.0 and (out == -1).all()


def test_finish_data_term_prices_outside_at_the_default_and_truncates():
    out = np.array([[-1.0, 0.0, 5.0], [7.0, 8.0, 100.0]], np.float32)
    k.finish_data_term(out, np.float32(6.0), np.float32(8.0))
    np.testing.assert_array_equal(out, [[6.0, 0.0, 5.0], [7.0, 8.0, 8.0]])
    out = np.array([-1.0, 3.0], np.float32)
    k.finish_data_term(out, np.float32(20.0), np.float32(10.0))  # a default above t is truncated too
    np.testing.assert_array_equal(out, [10.0, 3.0])


@pytest.mark.parametrize("shape", [(7, 5), (6, 8), (1, 3)])
def test_downsample_blurs_decimates_and_rounds(shape):
    rng = np.random.default_rng(sum(shape))
    desc = rng.integers(0, 256, shape + (2,), dtype=np.uint8)
    kernel = _pyramid_kernel()
    got = k.downsample(desc, kernel)
    h, w = shape
    r = (len(kernel) - 2) // 2
    ref = np.zeros(((h + 1) // 2, (w + 1) // 2, 2))
    for y, x in itertools.product(range(ref.shape[0]), range(ref.shape[1])):
        for ty, tx in itertools.product(range(len(kernel)), repeat=2):
            yy = min(max(2 * y + ty - r, 0), h - 1)
            xx = min(max(2 * x + tx - r, 0), w - 1)
            ref[y, x] += kernel[ty] * kernel[tx] * desc[yy, xx]
    assert got.dtype == np.uint8 and got.shape == ref.shape
    diff = np.abs(got.astype(int) - np.rint(ref).astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.9
    flat = np.full(shape + (1,), 255, np.uint8)  # a convex combination of 255 stays 255
    assert (k.downsample(flat, kernel) == 255).all()
    assert (k.downsample(np.full(shape + (1,), 7, np.uint8), kernel) == 7).all()


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


def _problem(seed, hh=3, wd=4, w=1):
    rng = np.random.default_rng(seed)
    n_lab = 2 * w + 1
    D = rng.integers(0, 40, (hh, wd, n_lab, n_lab)).astype(np.float32)
    ox = rng.integers(-1, 2, (hh, wd)).astype(np.int32)
    oy = rng.integers(-1, 2, (hh, wd)).astype(np.int32)
    lab = np.arange(-w, w + 1, dtype=np.float32)
    R = np.empty((2, hh, wd, n_lab), np.float32)
    R[0] = 0.5 * np.abs(ox[..., None] + lab)
    R[1] = 0.5 * np.abs(oy[..., None] + lab)
    return D, R, ox, oy, w


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
    k.bp_level(D, R, ox, oy, w, s, d, 8, X, energy)
    assert X.min() >= 0 and X.max() <= 2 * w
    assert energy[-1] == pytest.approx(_ref_energy(D, R, ox, oy, s, d, X))
    assert (energy > 0).all() and energy.min() <= energy[0]
    # BP's labelling beats the data term's per-pixel choice and a constant labelling
    start = np.zeros_like(X)
    for y, x in itertools.product(*map(range, ox.shape)):
        ly, lx = np.unravel_index(np.argmin(D[y, x]), D[y, x].shape)
        start[:, y, x] = lx, ly
    assert energy[-1] <= _ref_energy(D, R, ox, oy, s, d, start) + 1e-3
    for c in range(2 * w + 1):
        assert energy[-1] <= _ref_energy(D, R, ox, oy, s, d, np.full_like(X, c)) + 1e-3


def _bp_and_enumerated_minimum(seed, hh, wd):
    """BP's final energy and the minimum over every labelling (3 x 3 labels per pixel)."""
    D, R, ox, oy, w = _problem(seed, hh=hh, wd=wd)
    s, d = 6.0, 10.0
    X = np.zeros((2, hh, wd), np.int32)
    energy = np.zeros(16)
    k.bp_level(D, R, ox, oy, w, s, d, 16, X, energy)
    best = min(
        _ref_energy(D, R, ox, oy, s, d, np.array(lab, np.int32).reshape(2, hh, wd))
        for lab in itertools.product(range(3), repeat=2 * hh * wd)
    )
    return energy[-1], best


def test_bp_finds_the_minimum_of_a_tiny_problem():
    # 1 x 3 pixels, 3 x 3 labels each: 729 labellings, enumerated.
    found, best = _bp_and_enumerated_minimum(5, 1, 3)
    assert found == pytest.approx(best)


def test_zero_iterations_take_the_labels_of_the_initial_dual_messages():
    D, R, ox, oy, w = _problem(4, hh=2, wd=2)
    X = np.full((2, 2, 2), -1, np.int32)
    energy = np.zeros(0)
    k.bp_level(D, R, ox, oy, w, 1.0, 100.0, 0, X, energy)
    # no spatial messages: each pixel's labels minimise D + R of both layers jointly
    for y, x in itertools.product(range(2), range(2)):
        joint = D[y, x] + R[0, y, x][None, :] + R[1, y, x][:, None]  # [ly, lx]
        ly, lx = np.unravel_index(np.argmin(joint), joint.shape)
        assert (X[0, y, x], X[1, y, x]) == (lx, ly)


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
    assert found == pytest.approx(best)


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
    base, h = np.zeros(n_lab, np.float32), np.zeros(n_lab, np.float32)
    k._sweep(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, 0, forward, False, s, d, _cone(n_lab, s), base, h)
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
                     s, d, _cone(n_lab, s), z(n_lab), z(n_lab))
            assert Xo[0, 0] == 1  # beliefs 9, 5, 7
