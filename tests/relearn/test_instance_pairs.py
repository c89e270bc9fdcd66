"""Instance pairs and the Table I rule (MIJR Sec. IV-B) on hand-built superpixels."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relearn import (
    CONTEXT,
    Neighbour,
    alignment_similarity,
    pair_inputs,
    pair_labels,
    pseudo_gt_fractions,
    sample_pairs,
    similarity_scale,
    target_truth,
)

# A 4 x 4 target of four 2 x 2 superpixels:  0 1 / 2 3
LABELS = np.kron(np.array([[0, 1], [2, 3]]), np.ones((2, 2))).astype(np.int32)


def _target():
    gt = np.zeros((4, 4), bool)
    gt[:, :2] = True                                   # superpixels 0 and 2 salient
    pgt = np.zeros((4, 4), np.int8)
    pgt[:2, :2] = 1                                    # 0: salient, right (easy)
    pgt[2:, :2] = 0                                    # 2: salient in GT, trusted background (hard)
    pgt[:2, 2:] = -1                                   # 1: background in GT, uncertain (hard)
    pgt[3, 3] = -1                                     # 3: background, 3 of 4 trusted: IoU 0.75 (easy)
    return target_truth(pgt, gt, LABELS)


def test_the_t1_iou_is_of_the_gt_class_masks_and_uncertain_pixels_are_never_right():
    t = _target()
    np.testing.assert_array_equal(t.salient, [True, False, True, False])
    np.testing.assert_allclose(t.fraction, [1, 1, 1, 1])
    np.testing.assert_allclose(t.iou, [1.0, 0.0, 0.0, 0.75])


def test_table_one_positive_only_for_a_hard_target_with_a_trustworthy_aligned_instance():
    t = _target()
    # neighbour A's superpixels: 0 trusted salient, 1 trusted background, 2 half salient, 3 95% background
    pa = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 0.95]])
    # neighbour B: 0 salient 90% (IoU exactly 0.9: not > T2), 1 uncertain
    pb = np.array([[0.9, 0.0], [0.0, 0.0]])
    match_a = np.array([0, 1, 0, 1])       # 0->sal (easy target), 1->bg (hard, agrees), 2->sal (hard, agrees), 3->bg
    match_b = np.array([-1, 1, 0, 0])      # 0: no match; 1->uncertain; 2->90% salient; 3->salient (wrong class)
    lab = pair_labels(t, [pa, pb], [match_a, match_b], m_max=3)
    np.testing.assert_array_equal(lab, [[0, -1, -1],    # easy target: never positive; no pair in B
                                        [1, 0, -1],     # hard; A trusted bg = its class; B uncertain
                                        [1, 0, -1],     # hard; A salient = its class; B 0.9 is not > 0.9
                                        [0, 0, -1]])    # easy target
    # a neighbour superpixel that is 95% trusted background matches a background target: IoU 0.95 > 0.9
    lab = pair_labels(t, [pa], [np.array([3, 3, 3, 3])], m_max=1)
    np.testing.assert_array_equal(lab[:, 0], [0, 1, 0, 0])


def test_the_t1_boundary_is_inclusive():
    # one 4 x 5 superpixel, all salient in GT, 3 of its 20 pixels trusted salient: IoU = 0.15 = T1
    labels = np.zeros((4, 5), np.int32)
    gt = np.ones((4, 5), bool)
    pgt = np.full((4, 5), -1, np.int8)
    pgt.flat[:3] = 1
    t = target_truth(pgt, gt, labels)
    assert t.iou[0] == pytest.approx(0.15)
    good = np.array([[1.0, 0.0]])
    assert pair_labels(t, [good], [np.array([0])], m_max=1)[0, 0] == 1
    pgt.flat[3] = 1                                  # 4 / 20 = 0.2 > T1: no longer hard
    assert pair_labels(target_truth(pgt, gt, labels), [good], [np.array([0])], m_max=1)[0, 0] == 0


def _brute_truth(pgt, gt, labels):
    out = []
    for k in range(labels.max() + 1):
        px = labels == k
        sal = gt[px].mean() >= 0.5
        cls_gt = set(np.flatnonzero(px & (gt == sal)))
        cls_p = set(np.flatnonzero(px & (pgt == (1 if sal else 0))))
        union = cls_gt | cls_p
        out.append((sal, len(cls_gt) / px.sum(), len(cls_gt & cls_p) / len(union) if union else 0.0))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 6), n_nb=st.integers(1, 5))
def test_labels_follow_the_written_rule_on_random_superpixels(seed, n, n_nb):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n, (6, 7)).astype(np.int32)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    n = labels.max() + 1
    gt = rng.random((6, 7)) < 0.5
    pgt = rng.integers(-1, 2, (6, 7)).astype(np.int8)
    truth = target_truth(pgt, gt, labels)
    brute = _brute_truth(pgt, gt, labels)
    np.testing.assert_array_equal(truth.salient, [b[0] for b in brute])
    np.testing.assert_allclose(truth.fraction, [b[1] for b in brute])
    np.testing.assert_allclose(truth.iou, [b[2] for b in brute])
    ps = rng.dirichlet([1, 1, 1], n_nb)[:, :2]
    ps[rng.random(n_nb) < 0.3] = [1.0, 0.0]
    matches = rng.integers(-1, n_nb, (2, n))
    lab = pair_labels(truth, [ps, ps[::-1]], list(matches), m_max=3)
    for i in range(n):
        sal, a, iou = brute[i]
        for m, p in enumerate([ps, ps[::-1]]):
            j = matches[m, i]
            if j < 0:
                assert lab[i, m] == -1
                continue
            b = p[j, 0] if sal else p[j, 1]
            trusted = min(a, b) / max(a, b) > 0.9 if max(a, b) > 0 else False
            assert lab[i, m] == int(iou <= 0.15 and trusted)
        assert lab[i, 2] == -1


def test_pseudo_gt_fractions_count_trusted_pixels_only():
    pgt = np.array([[1, 1, 0, -1], [1, -1, 0, 0]], np.int8)
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.int32)
    np.testing.assert_allclose(pseudo_gt_fractions(pgt, labels, 3), [[0.75, 0], [0, 0.75], [0, 0]])


def test_similarity_is_exp_minus_d_over_tau_and_zero_without_alignment():
    np.testing.assert_allclose(alignment_similarity(np.array([0.0, 2.0, np.inf]), 2.0), [1, np.exp(-1), 0],
                               rtol=1e-6)
    assert similarity_scale([np.array([1.0, 3.0, np.inf]), np.array([2.0, 0.0])]) == 2.0
    assert similarity_scale([np.array([np.inf])]) == 1.0


def test_pair_inputs_put_the_target_the_aligned_superpixel_and_the_context_in_order():
    tf = np.arange(6, dtype=np.float32).reshape(3, 2)          # target features, F = 2
    nf = 10 + np.arange(4, dtype=np.float32).reshape(2, 2)      # neighbour features
    nb = Neighbour(nf, np.array([[0.9, 0.1], [0.2, 0.7]]), np.array([1, -1, 0]), np.array([1.0, np.inf, 0.0]))
    prior = np.array([0.1, 0.5, 0.9], np.float32)
    tp = np.array([[0, 1], [0.5, 0.5], [1, 0]], np.float32)
    pi = pair_inputs(tf, prior, tp, [nb], similarity_scale=1.0, m_max=2)
    assert pi.x.shape == (3, 2, 2 * 2 + len(CONTEXT))
    np.testing.assert_array_equal(pi.valid, [[True, False], [False, False], [True, False]])
    np.testing.assert_allclose(pi.x[0, 0], [0, 1, 12, 13, 0.1, 0, 1, 0.2, 0.7, np.exp(-1)], rtol=1e-6)
    np.testing.assert_allclose(pi.x[2, 0], [4, 5, 10, 11, 0.9, 1, 0, 0.9, 0.1, 1.0], rtol=1e-6)
    assert not pi.x[~pi.valid].any()
    np.testing.assert_allclose(pi.similarity[:, 0], [np.exp(-1), 0, 1], rtol=1e-6)
    # rows select target superpixels; context=False is the paper's {xi_i, xi_j}
    sub = pair_inputs(tf, prior, tp, [nb], similarity_scale=1.0, rows=np.array([2]), context=False, m_max=1)
    np.testing.assert_array_equal(sub.x, [[[4, 5, 10, 11]]])


def test_sampling_caps_each_class_and_weights_them_to_the_papers_share():
    labels = np.array([1] * 10 + [0] * 100 + [-1] * 50)
    idx, w = sample_pairs(labels, n_positive=30, n_negative=50)
    assert (labels[idx] == 1).sum() == 10 and (labels[idx] == 0).sum() == 50 and (labels[idx] >= 0).all()
    assert len(np.unique(idx)) == idx.size
    # positives carry 30 / 80 of the total weight, negatives 50 / 80; mean weight 1
    share = w[labels[idx] == 1].sum() / w.sum()
    assert share == pytest.approx(30 / 80) and w.mean() == pytest.approx(1.0)
    idx, w = sample_pairs(labels, n_positive=5, n_negative=20, seed=3)
    assert (labels[idx] == 1).sum() == 5 and (labels[idx] == 0).sum() == 20
    np.testing.assert_allclose(w, 1.0)


def test_bad_inputs_raise_clear_errors():
    t = _target()
    with pytest.raises(ValueError, match=r"matches\[0\].match: expected indices in -1 .. 1"):
        pair_labels(t, [np.zeros((2, 2))], [np.array([0, 1, 2, 0])])
    with pytest.raises(ValueError, match=r"matches\[0\].match: expected an \(4,\) integer array"):
        pair_labels(t, [np.zeros((2, 2))], [np.array([0, 1])])
    with pytest.raises(ValueError, match="at most M = 1"):
        pair_labels(t, [np.zeros((2, 2))] * 2, [np.zeros(4, int)] * 2, m_max=1)
    with pytest.raises(ValueError, match="t1, t2"):
        pair_labels(t, [], [], t2=1.5)
    with pytest.raises(ValueError, match="pseudo_pixels"):
        pseudo_gt_fractions(np.full((4, 4), 2, np.int8), LABELS)
    with pytest.raises(ValueError, match="gt: expected shape"):
        target_truth(np.zeros((4, 4), np.int8), np.zeros((3, 4), bool), LABELS)
    with pytest.raises(ValueError, match="both positive and negative"):
        sample_pairs(np.array([0, 0, -1]))
    nb = Neighbour(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(3, int), np.zeros(3))
    with pytest.raises(ValueError, match=r"neighbours\[0\].features: expected F = 2"):
        pair_inputs(np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)), [nb], similarity_scale=1.0)
    nb = Neighbour(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(3, int), np.array([0, -1.0, 0]))
    with pytest.raises(ValueError, match=r"neighbours\[0\].distance"):
        pair_inputs(np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)), [nb], similarity_scale=1.0)
