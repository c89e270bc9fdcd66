"""alignment.bilevel's inputs and baseline as claims: each bad argument is named, the SIFT-Flow-only
match is the majority of the plain flow targets (brute force), absent superpixels get -1, the
Eq. 2 window defaults, and no floating-point warning escapes for pairs QS never links."""

import warnings

import numpy as np
import pytest

from alignment.bilevel import siftflow_match, superpixel_distance


def _random_case(seed=0, h=20, w=24, n=7):
    rng = np.random.default_rng(seed)
    la = rng.integers(0, n, (h, w)).astype(np.int32)
    lb = rng.integers(0, n, (h + 3, w - 2)).astype(np.int32)
    vx = rng.normal(0, 4, (h, w))
    vy = rng.normal(0, 4, (h, w))
    return la, lb, vx, vy


def _majority(la, lb, vx, vy, n_a, n_b):
    votes = np.zeros((n_a, n_b), np.int64)
    for r in range(la.shape[0]):
        for c in range(la.shape[1]):
            tr = min(max(int(np.rint(r + vy[r, c])), 0), lb.shape[0] - 1)
            tc = min(max(int(np.rint(c + vx[r, c])), 0), lb.shape[1] - 1)
            votes[la[r, c], lb[tr, tc]] += 1
    match = np.argmax(votes, axis=1)  # ties: the lower label
    match[votes.sum(1) == 0] = -1
    return match


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_siftflow_match_is_the_majority_of_the_plain_flow_targets(seed):
    la, lb, vx, vy = _random_case(seed)
    n_a, n_b = int(la.max()) + 3, int(lb.max()) + 2  # two labels absent from la, one from lb
    got = siftflow_match(la, lb, vx, vy, n_a=n_a, n_b=n_b)
    assert got.dtype == np.int64 and got.shape == (n_a,)
    assert np.array_equal(got, _majority(la, lb, vx, vy, n_a, n_b))
    assert np.array_equal(got[-2:], [-1, -1])  # absent superpixels have no match
    assert np.array_equal(siftflow_match(la, lb, vx, vy)[: n_a - 2], got[: n_a - 2])


@pytest.mark.parametrize("fn", ["siftflow_match", "superpixel_distance"])
def test_each_bad_label_map_is_named(fn):
    la, lb, vx, vy = _random_case()
    f_a, f_b = np.zeros(la.shape + (2,), np.float32), np.zeros(lb.shape + (2,), np.float32)

    def call(a, b):
        if fn == "siftflow_match":
            return siftflow_match(a, b, vx, vy)
        return superpixel_distance(a, b, vx, vy, f_a, f_b)

    with pytest.raises(ValueError, match=r"^labels_a: expected a non-empty \(H, W\) label map"):
        call(la[0], lb)
    with pytest.raises(ValueError, match=r"^labels_b: expected a non-empty \(H, W\) label map"):
        call(la, lb[0])
    with pytest.raises(ValueError, match=r"^labels_b: expected integer labels"):
        call(la, lb.astype(float))
    with pytest.raises(ValueError, match=r"^labels_a: labels must be >= 0"):
        call(la - 1, lb)


def test_superpixel_distance_defaults_to_the_4_px_window_at_stride_4():
    la, lb, vx, vy = _random_case(3)
    rng = np.random.default_rng(3)
    f_a = rng.normal(size=la.shape + (3,)).astype(np.float32)
    f_b = rng.normal(size=lb.shape + (3,)).astype(np.float32)
    default = superpixel_distance(la, lb, vx, vy, f_a, f_b)
    explicit = superpixel_distance(la, lb, vx, vy, f_a, f_b, window=4, stride=4)
    assert np.array_equal(default.votes, explicit.votes)
    assert np.array_equal(default.distance, explicit.distance)
    other = superpixel_distance(la, lb, vx, vy, f_a, f_b, window=5, stride=4)
    assert not np.array_equal(default.votes, other.votes)


def test_pairs_never_linked_are_inf_without_a_floating_point_warning():
    la = np.zeros((6, 6), np.int32)
    la[:, 3:] = 1
    lb = np.zeros((6, 6), np.int32)
    lb[:, 3:] = 1
    z = np.zeros((6, 6))
    f = np.ones((6, 6, 2), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0 / 0 for the unlinked pairs would warn
        fm = superpixel_distance(la, lb, z, z, f, f, window=0, n_b=3)
    assert np.isinf(fm.distance[:, 2]).all() and (fm.votes[:, 2] == 0).all()
    assert fm.distance[0, 0] == 0.0 and fm.votes[0, 0] == 18
