"""Tests for alignment.bilevel: Eq. 2 distances, the SIFT-Flow baseline and the Eq. 1 solver."""

import numpy as np
import pytest

from alignment.bilevel import (
    bilevel_alignment,
    pixel_features,
    siftflow_match,
    superpixel_distance,
)


def _grid(h=32, w=32, s=8):
    r, c = np.indices((h, w))
    return ((r // s) * (w // s) + c // s).astype(np.int32)


def _boxes():
    return np.array([[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 32, 32], [8, 8, 24, 24],
                     [0, 0, 32, 32], [16, 16, 32, 32]], np.int32)


def test_d_identical_superpixels_zero_flow_is_zero():
    lab = _grid()
    rng = np.random.default_rng(0)
    z = np.zeros((32, 32))
    # per-pixel features: with QS = the flow alone, every pixel is compared with itself
    f = rng.random((32, 32, 5)).astype(np.float32)
    fm = superpixel_distance(lab, lab, z, z, f, f, window=0)
    assert np.allclose(np.diag(fm.distance), 0.0)
    # with the window, pixel pairs differ: identical superpixels of uniform content give 0
    fc = rng.random((16, 5)).astype(np.float32)[lab]
    fm = superpixel_distance(lab, lab, z, z, fc, fc, window=4)
    assert np.allclose(np.diag(fm.distance), 0.0) and (np.diag(fm.votes) > 0).all()
    assert (fm.distance[~np.eye(16, dtype=bool) & np.isfinite(fm.distance)] > 0).all()
    fm = superpixel_distance(lab, lab, z, z, f, f, window=0)
    off = ~np.eye(16, dtype=bool)
    assert np.isinf(fm.distance[off]).all() and (fm.votes[off] == 0).all()


def test_d_matches_brute_force():
    rng = np.random.default_rng(1)
    la = rng.integers(0, 4, (6, 7)).astype(np.int32)
    lb = rng.integers(0, 3, (5, 6)).astype(np.int32)
    la[0, :4] = np.arange(4)
    lb[0, :3] = np.arange(3)
    vx = rng.integers(-3, 4, (6, 7)).astype(float)
    vy = rng.integers(-3, 4, (6, 7)).astype(float)
    fa = rng.random((6, 7, 3)).astype(np.float32)
    fb = rng.random((5, 6, 3)).astype(np.float32)
    fm = superpixel_distance(la, lb, vx, vy, fa, fb, window=0)
    sums = np.zeros((4, 3))
    cnt = np.zeros((4, 3))
    for r in range(6):
        for c in range(7):
            tr = int(np.clip(r + vy[r, c], 0, 4))
            tc = int(np.clip(c + vx[r, c], 0, 5))
            j = lb[tr, tc]
            sums[la[r, c], j] += np.linalg.norm(fa[r, c] - fb[tr, tc])
            cnt[la[r, c], j] += 1
    assert np.array_equal(fm.votes, cnt)
    ok = cnt > 0
    assert np.allclose(fm.distance[ok], sums[ok] / cnt[ok], atol=1e-5)
    assert np.isinf(fm.distance[~ok]).all()


def test_self_alignment_zero_flow():
    lab = _grid()
    rng = np.random.default_rng(2)
    z = np.zeros((32, 32))
    f = rng.random((32, 32, 4)).astype(np.float32) * 10
    r = bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, f, f, window=0)
    assert np.array_equal(r.superpixel_match, np.arange(16))
    assert np.allclose(r.superpixel_distance, 0.0)
    assert np.array_equal(r.proposal_match, np.arange(6))
    assert np.allclose(r.proposal_distance, 0.0)
    # default flow-guided window: superpixels of distinct uniform content still map to themselves
    fc = rng.random((16, 4)).astype(np.float32)[lab] * 10
    r = bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, fc, fc)
    assert np.array_equal(r.superpixel_match, np.arange(16))
    assert np.allclose(r.superpixel_distance, 0.0)


def test_k_schedule_runs_10_to_1():
    lab = _grid()
    z = np.zeros((32, 32))
    f = np.zeros((32, 32, 2), np.float32)
    r = bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, f, f)
    assert np.array_equal(r.k_schedule, np.arange(10, 0, -1))
    assert r.objective.shape == (10,) and np.isfinite(r.objective).all()
    r3 = bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, f, f, k_init=3)
    assert np.array_equal(r3.k_schedule, [3, 2, 1])


def test_translation_recovered():
    # b is a shifted by one block (8 px) to the right; flow says so
    la = _grid(32, 40)
    lb = np.roll(la, 8, axis=1)
    rng = np.random.default_rng(3)
    fa = rng.random((32, 40, 3)).astype(np.float32)
    fb = np.roll(fa, 8, axis=1)
    vx = np.full((32, 40), 8.0)
    vy = np.zeros((32, 40))
    boxes = np.array([[0, 0, 20, 16], [8, 8, 32, 32], [0, 0, 40, 32]], np.int32)
    r = bilevel_alignment(la, lb, boxes, boxes, vx, vy, fa, fb, window=0)
    inside = np.unique(la[:, :32])  # blocks whose shifted copy stays in the image
    expected = lb[0::8, 8::8].ravel()  # label of b at the block's shifted position
    got = r.superpixel_match.reshape(4, 5)[:, :4].ravel()
    assert np.array_equal(got, expected)
    assert inside.size == 16
    assert np.array_equal(siftflow_match(la, lb, vx, vy).reshape(4, 5)[:, :4].ravel(), expected)


def test_siftflow_match_majority():
    la = np.zeros((4, 4), np.int32)
    lb = np.array([[0, 0, 1, 1]] * 4, np.int32)
    vx = np.zeros((4, 4))
    vx[:, 0] = 2  # column 0 lands in label 1: 8 of 16 pixels -> tie broken to label 0? no: 8 vs 8
    vx[0, 1] = 2  # one more pixel lands in 1: label 1 wins 9 to 7
    assert siftflow_match(la, lb, vx, np.zeros((4, 4)))[0] == 1


def test_pixel_features_shape_and_colour_weight():
    img = np.zeros((5, 6, 3), np.uint8)
    img[:, 3:] = 255
    desc = np.ones((5, 6, 8), np.uint8)
    f = pixel_features(img, desc, colour_weight=10.0)
    assert f.shape == (5, 6, 11) and f.dtype == np.float32
    assert np.allclose(f[..., :8], 1.0)
    assert abs(f[0, 5, 8] - 1000.0) < 1.0  # white: L = 100, x 10
    assert np.allclose(pixel_features(img, desc, colour_weight=0.0)[..., 8:], 0.0)


def test_bad_inputs():
    lab = _grid()
    z = np.zeros((32, 32))
    f = np.zeros((32, 32, 2), np.float32)
    b = _boxes()
    with pytest.raises(ValueError):
        bilevel_alignment(lab[0], lab, b, b, z, z, f, f)
    with pytest.raises(ValueError):
        bilevel_alignment(lab, lab, b, b, z[:5], z, f, f)
    with pytest.raises(ValueError):
        bilevel_alignment(lab, lab, b, b, z + np.nan, z, f, f)
    with pytest.raises(ValueError):
        bilevel_alignment(lab, lab, b, b, z, z, f, f[..., :1])
    with pytest.raises(ValueError):
        bilevel_alignment(lab, lab, np.array([[0, 0, 40, 10]]), b, z, z, f, f)
    with pytest.raises(ValueError):
        bilevel_alignment(lab, lab, b, b, z, z, f, f, k_init=0)
    with pytest.raises(ValueError):
        bilevel_alignment(lab.astype(float), lab, b, b, z, z, f, f)
    with pytest.raises(ValueError):
        pixel_features(np.zeros((5, 6, 3), np.uint8), np.zeros((4, 6, 8)))


def test_object_weight_trades_the_superpixel_distance_for_the_object_term():
    # Random content: the Eq. 2 distances have a unique nearest candidate per superpixel.
    lab = _grid()
    rng = np.random.default_rng(3)
    fa = rng.random((16, 3)).astype(np.float32)[lab]
    fb = rng.random((16, 3)).astype(np.float32)[lab]
    z = np.zeros((32, 32))
    d = superpixel_distance(lab, lab, z, z, fa, fb, window=8).distance
    nearest = np.argmin(d, axis=1)
    runs = {w: bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, fa, fb, window=8, object_weight=w)
            for w in (0.0, 1.0)}
    # Weight 0: the superpixel step sees d alone, so each superpixel takes its nearest candidate.
    assert np.array_equal(runs[0.0].superpixel_match, nearest)
    # Weight 1 (Eq. 1): the object term moves some superpixels off their nearest candidate,
    # at a higher superpixel distance.
    moved = runs[1.0].superpixel_match != nearest
    assert moved.any()
    assert (runs[1.0].superpixel_distance[moved] > runs[0.0].superpixel_distance[moved]).all()
    assert bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, fa, fb, window=8).superpixel_match.tolist() \
        == runs[1.0].superpixel_match.tolist()  # the default is Eq. 1's equal weighting
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="object_weight must be finite and >= 0"):
            bilevel_alignment(lab, lab, _boxes(), _boxes(), z, z, fa, fb, object_weight=bad)


def test_a_superpixel_missing_from_the_label_map_is_in_no_proposal():
    # Label 2 has no pixel (lost when a label map is resampled): its centroid is undefined and it
    # must not count as inside a box that touches the top-left corner.
    from alignment.bilevel import _membership

    labels = np.zeros((8, 8), np.int32)
    labels[:, 4:] = 1
    labels[6:, :] = 3
    boxes = np.array([[0, 0, 4, 4], [4, 0, 8, 6]])
    m = _membership(labels, 4, boxes, "boxes")
    np.testing.assert_array_equal(m[:, 2], [0, 0])
    assert m[0, 0] == 1 and m[1, 1] == 1 and m[0, 3] == 0  # the present ones by their centroids


def test_a_bad_label_map_is_named_in_the_error():
    lab = _grid()
    z = np.zeros((32, 32))
    f = np.zeros((32, 32, 2), np.float32)
    b = _boxes()
    with pytest.raises(ValueError, match=r"^labels_a: expected integer labels, got dtype float64$"):
        bilevel_alignment(lab.astype(float), lab, b, b, z, z, f, f)
    with pytest.raises(ValueError, match=r"^labels_b: labels must be >= 0$"):
        bilevel_alignment(lab, lab - 1, b, b, z, z, f, f)


def test_the_last_objective_is_eq1_of_the_returned_alignment():
    # At K = 1 the assignments are binary: Eq. 1 is then the sum of the distances of the returned
    # superpixel matches plus those of the returned proposal matches.
    la = _grid(32, 40)
    lb = np.roll(la, 8, axis=1)
    rng = np.random.default_rng(5)
    fa = rng.random((32, 40, 3)).astype(np.float32)
    fb = rng.random((32, 40, 3)).astype(np.float32)
    vx, vy = rng.normal(0, 4, (32, 40)), rng.normal(0, 4, (32, 40))
    boxes = np.array([[0, 0, 20, 16], [8, 8, 32, 32], [0, 0, 40, 32]], np.int32)
    r = bilevel_alignment(la, lb, boxes, boxes, vx, vy, fa, fb)
    assert r.k_schedule[-1] == 1
    sd = r.superpixel_distance[np.isfinite(r.superpixel_distance)]
    assert r.proposal_distance.sum() > 0  # the proposal term is not zero here
    assert r.objective[-1] == pytest.approx(sd.sum() + r.proposal_distance.sum(), rel=1e-9)


def test_superpixel_distance_says_which_feature_shape_it_expected():
    lab = _grid()
    z = np.zeros((32, 32))
    f = np.zeros((32, 32, 2), np.float32)
    with pytest.raises(ValueError) as err:
        superpixel_distance(lab, lab, z, z, f, f[:, :, :1])
    assert str(err.value) == "features_b: expected shape (32, 32, 2), got (32, 32, 1)"
