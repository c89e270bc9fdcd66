"""alignment.bilevel's parts against their definitions: the top-K weights, the Eq. 3 proposal
distance and the superpixel step's cost by brute force on small inputs, the superpixel-in-box rule,
the scale of tau, the documented defaults, and every argument check named in its error."""

import inspect

import numpy as np
import pytest

from alignment.bilevel import (
    _edge_topk,
    _membership,
    _proposal_distance,
    _superpixel_cost,
    _topk_weights,
    bilevel_alignment,
    pixel_features,
    siftflow_match,
    superpixel_distance,
)


# --------------------------------------------------------------------------- brute-force definitions


def _topk_brute(cost, k):
    """Weight 1/k' on the k' finite costs among a row's k lowest (k' = 0: no weight)."""
    w = np.zeros(cost.shape)
    for i, row in enumerate(cost):
        lowest = np.argsort(row, kind="stable")[: min(k, row.size)]
        finite = [j for j in lowest if np.isfinite(row[j])]
        for j in finite:
            w[i, j] = 1.0 / len(finite)
    return w


@pytest.mark.parametrize("k", [1, 2, 3, 7, 9])
def test_topk_weights_are_1_over_k_on_the_k_lowest_finite_costs(k):
    rng = np.random.default_rng(k)
    cost = rng.random((40, 7))  # distinct values: the k lowest are one set
    cost[rng.random(cost.shape) < 0.3] = np.inf
    cost[0] = np.inf  # a row with no finite cost gets no weight
    got = _topk_weights(cost, k)
    np.testing.assert_array_equal(got, _topk_brute(cost, k))
    assert got.dtype == np.float64
    assert not got[0].any()


def test_topk_weights_of_a_wide_row_pick_the_true_k_lowest():
    rng = np.random.default_rng(11)
    cost = rng.random((100, 1000))
    for k in (1, 2, 5):
        np.testing.assert_array_equal(_topk_weights(cost, k), _topk_brute(cost, k))


def test_edge_topk_is_the_per_row_top_k_of_the_candidate_edges():
    rng = np.random.default_rng(2)
    n_rows = 9
    ci = np.sort(rng.integers(0, n_rows - 2, 60))  # the last two rows have no candidate
    cost = rng.random(ci.size)
    for k in (1, 2, 4, 20):
        w = _edge_topk(ci, cost, n_rows, k)
        for i in range(n_rows):
            edges = np.flatnonzero(ci == i)
            keep = edges[np.argsort(cost[edges])][:k]
            expected = np.zeros(ci.size)
            expected[keep] = 1.0 / keep.size if keep.size else 0.0
            np.testing.assert_array_equal(w[edges], expected[edges])
        assert np.allclose(np.bincount(ci, w, minlength=n_rows)[: n_rows - 2], 1.0)


def _proposal_brute(ci, cj, dv, w, ma, mb, tau):
    """Eq. 3 as the module notes define g(P_k, P_l), one box pair at a time."""
    n_a, n_b = ma.shape[1], mb.shape[1]
    qm = np.zeros((n_a, n_b))
    qd = np.zeros((n_a, n_b))
    for i, j, d, x in zip(ci, cj, dv, w):
        qm[i, j] += x
        qd[i, j] += x * d
    g = np.zeros((ma.shape[0], mb.shape[0]))
    for k in range(ma.shape[0]):
        in_k = np.flatnonzero(ma[k])
        for l in range(mb.shape[0]):
            in_l = np.flatnonzero(mb[l])
            total = 0.0
            for u in in_k:
                stay = qm[u, in_l].sum()
                total += qd[u, in_l].sum() + tau * (qm[u].sum() - stay)
            for v in in_l:
                if not (qm[in_k, v] > 0).any():
                    total += tau
            g[k, l] = total / max(in_k.size + in_l.size, 1)
    return g


def _random_assignment(seed, n_a=8, n_b=6, v_a=4, v_b=5):
    rng = np.random.default_rng(seed)
    ci, cj = np.nonzero(rng.random((n_a, n_b)) < 0.5)
    dv = rng.random(ci.size) * 3
    w = rng.random(ci.size)
    ma = (rng.random((v_a, n_a)) < 0.4).astype(np.float64)
    mb = (rng.random((v_b, n_b)) < 0.4).astype(np.float64)
    ma[0] = 0  # an empty box of a
    ma[1] = 0
    ma[1, 0] = 1  # a box of a holding one superpixel ...
    mb[0] = 0  # ... and an empty box of b: |P_k| + |P_l| = 1
    return ci, cj, dv, w, ma, mb


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_proposal_distance_is_eq3_as_defined(seed):
    ci, cj, dv, w, ma, mb = _random_assignment(seed)
    tau = 0.7
    got = _proposal_distance(ci, cj, dv, w, ma, mb, tau, ma.shape[1], mb.shape[1])
    np.testing.assert_allclose(got, _proposal_brute(ci, cj, dv, w, ma, mb, tau), rtol=1e-12, atol=1e-12)


def test_a_one_superpixel_box_whose_match_leaves_an_empty_box_costs_tau():
    # P_k = {0}, P_l = {}: superpixel 0's whole match mass leaves P_l, so g = tau / 1
    ma, mb = np.ones((1, 1)), np.zeros((1, 1))
    g = _proposal_distance(np.array([0]), np.array([0]), np.array([0.25]), np.array([1.0]),
                           ma, mb, 0.7, 1, 1)
    assert g[0, 0] == pytest.approx(0.7)


def _cost_brute(ci, cj, dv, wp, ma, mb, tau, lam):
    """cost(i, j) = d + lam [s d + (1 - s) tau], s(i, j) = mean over boxes k holding i of the QP
    mass of k on boxes holding j; d alone for a superpixel in no box."""
    out = np.empty(ci.size)
    for e, (i, j, d) in enumerate(zip(ci, cj, dv)):
        boxes_i = np.flatnonzero(ma[:, i])
        if boxes_i.size == 0:
            out[e] = d
            continue
        s = np.mean([sum(wp[k, l] for l in np.flatnonzero(mb[:, j])) for k in boxes_i])
        out[e] = d + lam * (s * d + (1 - s) * tau)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_superpixel_cost_is_the_module_notes_definition(seed):
    rng = np.random.default_rng(seed)
    n_a, n_b, v_a, v_b = 6, 5, 4, 3
    ci, cj = np.nonzero(rng.random((n_a, n_b)) < 0.6)
    dv = rng.random(ci.size) * 2
    ma = np.zeros((v_a, n_a))
    ma[[0, 1], 0] = 1  # superpixel 0 in two boxes
    ma[2, 1] = 1  # superpixel 1 in one box
    ma[3, 2:4] = 1  # 2 and 3 in one box; 4 and 5 in none
    mb = (rng.random((v_b, n_b)) < 0.5).astype(np.float64)
    wp = rng.random((v_a, v_b))
    wp /= wp.sum(1, keepdims=True)
    for lam in (0.0, 1.0, 2.5):
        got = _superpixel_cost(ci, cj, dv, wp, ma, mb, 0.9, lam)
        np.testing.assert_allclose(got, _cost_brute(ci, cj, dv, wp, ma, mb, 0.9, lam), rtol=1e-12)


# --------------------------------------------------------------------------- superpixel in box


def _blocks():
    # superpixel 1 is the 3 x 3 block rows 2..4, cols 2..4 (centroid (3, 3)); 2 is the single
    # pixel (7, 8); 0 is the rest; 3 is absent
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:5] = 1
    labels[7, 8] = 2
    return labels


@pytest.mark.parametrize("box, inside", [
    ((3, 3, 4, 4), True),     # the centroid on the box's first column and row: inside
    ((0, 0, 3, 10), False),   # col1 = 3: half-open, the centroid's column is outside
    ((0, 0, 10, 3), False),   # row1 = 3: outside
    ((4, 0, 10, 10), False),  # col0 = 4 > 3
    ((0, 4, 10, 10), False),  # row0 = 4 > 3
    ((0, 0, 10, 10), True),
])
def test_a_superpixel_is_in_a_half_open_box_by_its_centroid(box, inside):
    m = _membership(_blocks(), 4, np.array([box]), "boxes")
    assert m.shape == (1, 4) and m.dtype == np.float64
    assert m[0, 1] == float(inside)


def test_a_one_pixel_superpixel_is_present_and_an_absent_trailing_label_is_in_no_box():
    m = _membership(_blocks(), 4, np.array([[8, 7, 9, 8], [0, 0, 10, 10]]), "boxes")
    assert m.shape == (2, 4)
    assert m[0].tolist() == [0, 0, 1, 0]  # the one-pixel superpixel 2 at (7, 8)
    assert m[1, 3] == 0  # label 3 has no pixel


@pytest.mark.parametrize("boxes", [
    [[0, 0, 10, 10]],             # one box, touching every edge
    [[0, 5, 3, 8]],               # col1 <= row0 is fine: columns and rows are separate
    [[9, 9, 10, 10], [0, 0, 1, 1]],
])
def test_valid_boxes_are_accepted(boxes):
    assert _membership(_blocks(), 4, np.array(boxes), "boxes").shape == (len(boxes), 4)


@pytest.mark.parametrize("boxes, message", [
    (np.zeros((0, 4), int), r"^boxes_b: expected \(V, 4\) boxes with V >= 1, got shape \(0, 4\)$"),
    (np.zeros((2, 3), int), r"^boxes_b: expected \(V, 4\) boxes with V >= 1, got shape \(2, 3\)$"),
    (np.array([0, 0, 4, 4]), r"^boxes_b: expected \(V, 4\) boxes with V >= 1, got shape \(4,\)$"),
    (np.array([[-1, 0, 4, 4]]), r"^boxes_b: boxes must be non-empty \(col0, row0, col1, row1\) inside 10x10$"),
    (np.array([[0, -1, 4, 4]]), "^boxes_b: boxes must be non-empty"),
    (np.array([[0, 0, 11, 4]]), "^boxes_b: boxes must be non-empty"),
    (np.array([[0, 0, 4, 11]]), "^boxes_b: boxes must be non-empty"),
    (np.array([[4, 0, 4, 4]]), "^boxes_b: boxes must be non-empty"),  # no column
    (np.array([[0, 4, 4, 4]]), "^boxes_b: boxes must be non-empty"),  # no row
    (np.array([[5, 0, 4, 4]]), "^boxes_b: boxes must be non-empty"),
    (np.array([[0, 5, 4, 4]]), "^boxes_b: boxes must be non-empty"),
])
def test_each_bad_box_array_is_named(boxes, message):
    lab = _blocks()
    z = np.zeros((10, 10))
    f = np.zeros((10, 10, 2), np.float32)
    good = np.array([[0, 0, 10, 10]])
    with pytest.raises(ValueError, match=message):
        bilevel_alignment(lab, lab, good, boxes, z, z, f, f)
    with pytest.raises(ValueError, match=message.replace("boxes_b", "boxes_a")):
        bilevel_alignment(lab, lab, boxes, good, z, z, f, f)


# --------------------------------------------------------------------------- the solver


def _pair(seed=0, h=24, w=30, n=12):
    rng = np.random.default_rng(seed)
    la = (np.indices((h, w))[0] // 6 * 5 + np.indices((h, w))[1] // 6).astype(np.int32)
    lb = np.roll(la, 3, axis=1)
    fa = rng.random((h, w, 4)).astype(np.float32)
    fb = rng.random((h, w, 4)).astype(np.float32)
    vx, vy = rng.normal(0, 2, (h, w)), rng.normal(0, 2, (h, w))
    boxes_a = np.array([[0, 0, 15, 12], [6, 6, 30, 24], [0, 0, 30, 24]])
    boxes_b = np.array([[0, 0, 12, 24], [12, 0, 30, 12], [3, 3, 27, 21], [0, 12, 30, 24], [0, 0, 30, 24]])
    return la, lb, boxes_a, boxes_b, vx, vy, fa, fb


def test_different_proposal_counts_give_one_match_and_its_distance_per_target_box():
    la, lb, ba, bb, vx, vy, fa, fb = _pair()
    r = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb)
    assert r.proposal_match.shape == (3,) and r.proposal_distance.shape == (3,)
    assert r.proposal_match.dtype == np.int64 and ((r.proposal_match >= 0) & (r.proposal_match < 5)).all()
    assert r.k_schedule.dtype == np.int64 and r.objective.dtype == np.float64


def test_matches_and_proposal_distances_do_not_depend_on_the_scale_of_the_features():
    # every d scales with the features, tau (the median d) with it, so g scales too and every
    # argmin is the same; the scales straddle 1 (tau is the median unless every d is 0)
    la, lb, ba, bb, vx, vy, fa, fb = _pair(1)
    base = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb)
    for scale in (0.01, 64.0):
        r = bilevel_alignment(la, lb, ba, bb, vx, vy, fa * scale, fb * scale)
        assert np.array_equal(r.superpixel_match, base.superpixel_match)
        assert np.array_equal(r.proposal_match, base.proposal_match)
        np.testing.assert_allclose(r.proposal_distance, base.proposal_distance * scale, rtol=1e-4)


def test_with_every_distance_zero_tau_is_1():
    # identical features: every d = 0, so tau = 1; the only box of a (left half) and the only box
    # of b (right half) share no aligned superpixel: g = tau (|P_k| + |P_l|) / (|P_k| + |P_l|) = 1
    lab = np.repeat(np.arange(4, dtype=np.int32), 4)[None, :].repeat(8, 0)  # 4 columns of width 4
    z = np.zeros(lab.shape)
    f = np.ones(lab.shape + (2,), np.float32)
    r = bilevel_alignment(lab, lab, np.array([[0, 0, 8, 8]]), np.array([[8, 0, 16, 8]]), z, z, f, f,
                          window=0)
    assert r.proposal_distance.tolist() == [1.0]


def test_the_result_uses_the_window_and_stride_it_is_given():
    la, lb, ba, bb, vx, vy, fa, fb = _pair(2)
    for window, stride in ((2, 1), (6, 3)):
        r = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb, window=window, stride=stride)
        d = superpixel_distance(la, lb, vx, vy, fa, fb, window=window, stride=stride).distance
        np.testing.assert_array_equal(r.superpixel_distance, d[np.arange(d.shape[0]), r.superpixel_match])


def test_a_label_absent_from_the_target_gets_no_match():
    la, lb, ba, bb, vx, vy, fa, fb = _pair(3)
    la = la.copy()
    la[la == 4] = 5  # label 4 has no pixel
    r = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb)
    assert r.superpixel_match[4] == -1 and np.isinf(r.superpixel_distance[4])
    assert (np.delete(r.superpixel_match, 4) >= 0).all()


def test_k_init_1_is_one_binary_iteration_and_a_bad_k_init_is_named():
    la, lb, ba, bb, vx, vy, fa, fb = _pair(4)
    r = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb, k_init=1)
    assert r.k_schedule.tolist() == [1] and r.objective.shape == (1,)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match=f"^k_init must be a positive integer, got {bad}$"):
            bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb, k_init=bad)


def test_defaults_are_the_documented_values():
    # Eq. 1's equal weighting, K = 10 (MIJR), the 4 px window at stride 4 and colour weight 10
    # (module notes)
    p = inspect.signature(bilevel_alignment).parameters
    assert (p["k_init"].default, p["object_weight"].default, p["window"].default, p["stride"].default) \
        == (10, 1.0, 4, 4)
    assert inspect.signature(pixel_features).parameters["colour_weight"].default == 10.0


def test_a_call_with_the_defaults_is_the_call_with_the_documented_values():
    la, lb, ba, bb, vx, vy, fa, fb = _pair(9)
    paper = dict(k_init=10, object_weight=1.0, window=4, stride=4)
    default = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb)
    explicit = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb, **paper)
    for field in ("superpixel_match", "superpixel_distance", "proposal_match", "proposal_distance",
                  "k_schedule", "objective"):
        np.testing.assert_array_equal(getattr(default, field), getattr(explicit, field))
    # and each of those values shows in the result (so the comparison above can fail)
    for change in ({"object_weight": 2.0}, {"window": 5}, {"stride": 5}):
        other = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb, **dict(paper, **change))
        assert not np.array_equal(other.objective, explicit.objective), change
    image = np.random.default_rng(9).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    desc = np.zeros((6, 5, 2), np.uint8)
    np.testing.assert_array_equal(pixel_features(image, desc), pixel_features(image, desc, colour_weight=10.0))
    assert not np.array_equal(pixel_features(image, desc), pixel_features(image, desc, colour_weight=11.0))


# --------------------------------------------------------------------------- Eq. 2 inputs


def test_the_distance_is_computed_in_float32_whatever_the_feature_dtype():
    la, lb, _, _, vx, vy, fa, fb = _pair(5)
    rng = np.random.default_rng(5)
    fa64, fb64 = rng.random(fa.shape) * 3, rng.random(fb.shape) * 3
    d64 = superpixel_distance(la, lb, vx, vy, fa64, fb64)
    d32 = superpixel_distance(la, lb, vx, vy, fa64.astype(np.float32), fb64.astype(np.float32))
    np.testing.assert_array_equal(d64.distance, d32.distance)
    assert d64.votes.dtype == np.int64 and d64.distance.dtype == np.float64


def test_integer_flows_and_a_one_pixel_image_are_accepted():
    la, lb, _, _, vx, vy, fa, fb = _pair(6)
    ivx, ivy = np.rint(vx).astype(np.int32), np.rint(vy).astype(np.int32)
    a = superpixel_distance(la, lb, ivx, ivy, fa, fb)
    b = superpixel_distance(la, lb, ivx.astype(float), ivy.astype(float), fa, fb)
    np.testing.assert_array_equal(a.distance, b.distance)
    one = np.zeros((1, 1), np.int32)
    fm = superpixel_distance(one, one, np.zeros((1, 1)), np.zeros((1, 1)), np.ones((1, 1, 2)),
                             np.ones((1, 1, 2)), window=0)
    assert fm.votes.tolist() == [[1]] and fm.distance.tolist() == [[0.0]]


def test_each_bad_flow_feature_window_and_count_is_named():
    la, lb, _, _, vx, vy, fa, fb = _pair(7)
    sd = superpixel_distance
    with pytest.raises(ValueError, match=r"^vx: expected shape \(24, 30\), got \(24, 29\)$"):
        sd(la, lb, vx[:, 1:], vy, fa, fb)
    with pytest.raises(ValueError, match=r"^vy: expected shape \(24, 30\), got \(23, 30\)$"):
        sd(la, lb, vx, vy[1:], fa, fb)
    with pytest.raises(ValueError, match=r"^vx: expected finite numbers$"):
        sd(la, lb, np.full(vx.shape, "a"), vy, fa, fb)
    with pytest.raises(ValueError, match=r"^vy: expected finite numbers$"):
        sd(la, lb, vx, vy * np.inf, fa, fb)
    with pytest.raises(ValueError, match=r"^features_a: expected shape \(24, 30, 'D'\), got \(24, 30\)$"):
        sd(la, lb, vx, vy, fa[..., 0], fb)
    with pytest.raises(ValueError, match=r"^features_a: expected shape \(24, 30, 'D'\), got \(24, 29, 4\)$"):
        sd(la, lb, vx, vy, fa[:, 1:], fb)
    with pytest.raises(ValueError, match=r"^features_b: expected shape \(24, 30, 4\), got \(24, 30\)$"):
        sd(la, lb, vx, vy, fa, fb[..., 0])
    with pytest.raises(ValueError, match=r"^window must be >= 0 and stride >= 1, got -1, 4$"):
        sd(la, lb, vx, vy, fa, fb, window=-1)
    with pytest.raises(ValueError, match=r"^window must be >= 0 and stride >= 1, got 4, 0$"):
        sd(la, lb, vx, vy, fa, fb, stride=0)
    n_a, n_b = int(la.max()) + 1, int(lb.max()) + 1
    for bad in ({"n_a": n_a - 1}, {"n_b": n_b - 1}, {"n_a": n_a - 1, "n_b": n_b - 1}):
        with pytest.raises(ValueError, match=r"^n_a=\d+, n_b=\d+ smaller than the labels present$"):
            sd(la, lb, vx, vy, fa, fb, **bad)
    with pytest.raises(ValueError, match=r"smaller than the labels present"):
        siftflow_match(la, lb, vx, vy, n_b=n_b - 1)
    with pytest.raises(ValueError, match=r"smaller than the labels present"):
        siftflow_match(la, lb, vx, vy, n_a=n_a - 1)


def test_stride_1_links_every_offset_of_the_window():
    # zero flow, away from the border: window 1 at stride 1 links each pixel to its 3 x 3 block
    la, lb, _, _, _, _, fa, fb = _pair(8)
    z = np.zeros(la.shape)
    fm = superpixel_distance(la, lb, z, z, fa, fb, window=1, stride=1)
    h, w = la.shape
    # per axis: 3 offsets inside, 2 on the two border lines
    assert fm.votes.sum() == (3 * h - 2) * (3 * w - 2)


# --------------------------------------------------------------------------- pixel features


def test_pixel_features_append_the_scaled_lab_colour():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = 255  # white: L = 100, a = b = 0
    image[0, 1] = (255, 0, 0)  # sRGB red: Lab (53.24, 80.09, 67.20)
    image[0, 2] = 119  # sRGB grey 119: L = 50.0
    desc = np.full((2, 3, 5), 7, np.uint8)
    f = pixel_features(image, desc, colour_weight=0.5)
    assert f.shape == (2, 3, 8) and f.dtype == np.float32
    assert (f[..., :5] == 7).all()
    np.testing.assert_allclose(f[0, 0, 5:], [50.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(f[0, 1, 5:], 0.5 * np.array([53.24, 80.09, 67.20]), atol=0.05)
    np.testing.assert_allclose(f[0, 2, 5:], [0.5 * 50.0, 0.0, 0.0], atol=0.1)
    np.testing.assert_allclose(f[1, 1, 5:], [0.0, 0.0, 0.0], atol=1e-3)  # black


def test_each_bad_pixel_features_argument_is_named():
    img = np.zeros((4, 5, 3), np.uint8)
    desc = np.zeros((4, 5, 8), np.uint8)
    bad_image = r"^expected an \(H, W, 3\) uint8 image, got "
    with pytest.raises(ValueError, match=bad_image + r"\(4, 5, 3\) float64$"):
        pixel_features(img.astype(float), desc)
    with pytest.raises(ValueError, match=bad_image + r"\(4, 5\) uint8$"):
        pixel_features(img[..., 0], desc)
    with pytest.raises(ValueError, match=bad_image + r"\(4, 5, 4\) uint8$"):
        pixel_features(np.zeros((4, 5, 4), np.uint8), desc)
    bad_desc = r"^expected \(H, W, D\) descriptors with H, W = \(4, 5\), got "
    with pytest.raises(ValueError, match=bad_desc + r"\(4, 4, 8\)$"):
        pixel_features(img, desc[:, 1:])
    with pytest.raises(ValueError, match=bad_desc + r"\(4, 5\)$"):
        pixel_features(img, desc[..., 0])
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match=r"^colour_weight must be finite and >= 0, got "):
            pixel_features(img, desc, colour_weight=bad)
