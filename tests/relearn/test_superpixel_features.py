"""Two-scale superpixel features (MIJR Sec. III-B) on label maps whose pooled values are known."""

import numpy as np
import pytest
import torch  # noqa: F401  (the torch import at collection, not in the first test's time)
from hypothesis import given, settings
from hypothesis import strategies as st

from relearn import feature_dimension, superpixel_features, superpixel_features_batch
from superpixels import adjacency


def _reference(features, labels, taps):
    """Brute force: nearest-upsample each tap to the label map, average over each region."""
    H, W = labels.shape
    n = labels.max() + 1
    adj = adjacency(labels.astype(np.int32), n) | np.eye(n, dtype=bool)
    centre, surround = [], []
    for t in taps:
        f = features[t].astype(np.float64)
        c, h, w = f.shape
        rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(int), h - 1)
        cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(int), w - 1)
        up = f[:, rows][:, :, cols]  # (C, H, W)
        centre.append(np.stack([up[:, labels == k].mean(1) for k in range(n)]))
        surround.append(np.stack([up[:, np.isin(labels, np.flatnonzero(adj[k]))].mean(1) for k in range(n)]))
    return np.concatenate(centre + surround, axis=1)


def test_two_halves_pool_their_own_cells_and_the_surround_pools_both():
    # a 4x4 label map, left half 0, right half 1; one 2x2 tap with one channel = the cell's number
    labels = np.array([[0, 0, 1, 1]] * 4, np.int32)
    tap = np.arange(4, dtype=np.float32).reshape(1, 2, 2)   # cells 0 1 / 2 3
    xi = superpixel_features({"s2": tap}, labels, taps=("s2",))
    # left half covers cells 0 and 2 equally (mean 1), right half cells 1 and 3 (mean 2); the two
    # halves are adjacent, so both surrounds are the whole image (mean 1.5)
    np.testing.assert_allclose(xi, [[1.0, 1.5], [2.0, 1.5]])


def test_the_surround_is_the_superpixel_and_its_adjacent_ones_weighted_by_pixels():
    # three vertical stripes 0 | 1 | 2 of widths 1, 2, 3: 0 and 2 are not adjacent
    labels = np.array([[0, 1, 1, 2, 2, 2]] * 2, np.int32)
    tap = np.array([[[10.0, 20.0, 20.0, 30.0, 30.0, 30.0]] * 2], np.float32)  # (1, 2, 6): one cell per pixel
    xi = superpixel_features({"a": tap}, labels, taps=("a",))
    np.testing.assert_allclose(xi[:, 0], [10, 20, 30])
    np.testing.assert_allclose(xi[:, 1], [(10 + 2 * 20) / 3, (10 + 40 + 90) / 6, (40 + 90) / 5])


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), th=st.integers(1, 4), tw=st.integers(1, 4),
       n=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_pooling_equals_the_brute_force_average_of_the_upsampled_taps(h, w, th, tw, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n, (h, w)).astype(np.int32)
    labels = np.unique(labels, return_inverse=True)[1].reshape(h, w).astype(np.int32)  # contiguous
    feats = {"x": rng.normal(size=(3, th, tw)).astype(np.float16),
             "y": rng.normal(size=(2, max(1, th // 2), max(1, tw // 2))).astype(np.float32)}
    got = superpixel_features(feats, labels, taps=("x", "y"))
    np.testing.assert_allclose(got, _reference(feats, labels, ("x", "y")), rtol=1e-5, atol=1e-5)


def test_the_dimension_is_twice_the_tap_channels_and_a_batch_equals_single_calls():
    assert feature_dimension([16, 24, 40, 112, 320]) == 1024   # EfficientNet-Lite0 s2..s32
    rng = np.random.default_rng(0)
    chans = {"s2": 16, "s4": 24, "s8": 40, "s16": 112, "s32": 320}
    feats = [{t: rng.normal(size=(c, 64 // int(t[1:]), 64 // int(t[1:]))).astype(np.float16)
              for t, c in chans.items()} for _ in range(2)]
    labels = [rng.integers(0, 6, (20, 30)).astype(np.int32), np.repeat(np.arange(4), 6).reshape(4, 6).astype(np.int32)]
    batch = superpixel_features_batch(feats, labels)
    assert [b.shape for b in batch] == [(6, 1024), (4, 1024)] and batch[0].dtype == np.float32
    for f, lab, b in zip(feats, labels, batch):
        np.testing.assert_array_equal(superpixel_features(f, lab), b)


def test_the_default_taps_are_every_feature_map_of_the_stage_result_in_its_order():
    # a feature stage's cached result: its taps plus the strides and input size stored with them
    rng = np.random.default_rng(1)
    result = {"s4": rng.normal(size=(3, 8, 8)).astype(np.float16), "s8": rng.normal(size=(5, 4, 4)).astype(np.float16),
              "strides": np.array([4, 8]), "size": np.int64(32)}
    labels = np.repeat(np.arange(4), 8).reshape(4, 8).astype(np.int32)
    default = superpixel_features(result, labels)
    np.testing.assert_array_equal(default, superpixel_features(result, labels, taps=("s4", "s8")))
    assert default.shape == (4, feature_dimension([3, 5]))
    with pytest.raises(ValueError, match="no \\(C, h, w\\) entry"):
        superpixel_features({"strides": np.array([4])}, labels)


def test_an_empty_label_gets_zeros():
    labels = np.array([[0, 0], [2, 2]], np.int32)
    xi = superpixel_features({"a": np.ones((1, 1, 1), np.float32)}, labels, taps=("a",), n_superpixels=4)
    np.testing.assert_array_equal(xi, [[1, 1], [0, 0], [1, 1], [0, 0]])


def test_bad_inputs_raise_clear_errors():
    lab = np.zeros((4, 4), np.int32)
    tap = {"s2": np.zeros((2, 2, 2), np.float32)}
    with pytest.raises(ValueError, match="missing s4"):
        superpixel_features(tap, lab, taps=("s2", "s4"))
    with pytest.raises(ValueError, match=r"features\[0\]\['s2'\]: expected a non-empty \(C, h, w\) float"):
        superpixel_features({"s2": np.zeros((2, 2), np.float32)}, lab, taps=("s2",))
    with pytest.raises(ValueError, match="labels"):
        superpixel_features(tap, -lab - 1, taps=("s2",))
    with pytest.raises(ValueError, match="equal lengths"):
        superpixel_features_batch([tap], [lab, lab], taps=("s2",))
    with pytest.raises(ValueError, match="dict of tap name"):
        superpixel_features(np.zeros((2, 2, 2)), lab, taps=("s2",))
