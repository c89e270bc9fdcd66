"""Pruning, SLIC smoothing (Eq. 4) and low-level refinement (Eq. 6) of GradSal."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gradsal import prune_normalize, refine, slic_smooth
from superpixels import slic


def _blocks(h, w, seed):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)


def test_slic_smoothing_is_constant_inside_each_superpixel_and_equals_the_mean():
    img = _blocks(64, 96, 0)
    labels = slic(img, n_segments=100, compactness=10.0)
    assert labels.max() >= 10
    rng = np.random.default_rng(1)
    raw = rng.random(labels.shape).astype(np.float32)
    smoothed = slic_smooth(raw, labels)
    assert smoothed.shape == raw.shape and smoothed.dtype == np.float32
    for lab in range(labels.max() + 1):
        inside = labels == lab
        vals = smoothed[inside]
        assert np.ptp(vals) == 0.0                                  # Eq. 4: one value per P_j
        assert np.isclose(vals[0], raw[inside].mean(), atol=1e-6)   # ... the mean over P_j


def test_slic_smoothing_keeps_a_map_already_constant_per_superpixel():
    labels = np.repeat(np.arange(4, dtype=np.int32), 5)[None, :].repeat(3, axis=0)
    values = np.array([0.0, 0.25, 0.5, 1.0], np.float32)[labels]
    np.testing.assert_array_equal(slic_smooth(values, labels), values)


@settings(max_examples=40, deadline=None)
@given(
    smoothed=arrays(np.float32, (6, 7), elements=st.floats(0, 1, width=32)),
    low=arrays(np.float32, (6, 7), elements=st.floats(0, 10, width=32)),
    alpha=st.floats(0, 1),
)
def test_refinement_stays_in_unit_interval(smoothed, low, alpha):
    out = refine(smoothed, low, alpha)
    assert out.dtype == np.float32 and out.shape == (6, 7)
    assert np.all(out >= 0.0) and np.all(out <= 1.0)
    # Eq. 6 only rescales each pixel by a factor in [alpha, 1 + alpha] / (1 + alpha).
    assert np.all(out <= smoothed + 1e-6)
    assert np.all(out >= smoothed * alpha / (1 + alpha) - 1e-6)


def test_refinement_suppresses_where_lowlevel_is_low():
    smoothed = np.full((4, 4), 0.8, np.float32)
    low = np.zeros((4, 4), np.float32)
    low[:2] = 1.0
    out = refine(smoothed, low, 0.2)
    assert np.allclose(out[:2], 0.8)                      # (1 + alpha) / (1 + alpha)
    assert np.allclose(out[2:], 0.8 * 0.2 / 1.2)          # alpha / (1 + alpha)


def test_prune_normalize_thresholds_relative_to_peak():
    s = np.array([[0.0, 1.0, 2.0, 4.0]], np.float32)
    out = prune_normalize(s, 0.5)
    # s / max = [0, .25, .5, 1]; minus 0.5, floored, over 0.5.
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.0, 1.0]], atol=1e-7)
    out = prune_normalize(s, 0.0)
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.5, 1.0]], atol=1e-7)
    assert out.dtype == np.float32


def test_prune_normalize_of_empty_signal_is_zeros():
    out = prune_normalize(np.zeros((3, 3), np.float32), 0.1)
    assert np.all(out == 0.0)
    out = prune_normalize(-np.ones((3, 3), np.float32), 0.1)
    assert np.all(out == 0.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        prune_normalize(np.ones((2, 2, 2), np.float32))
    with pytest.raises(ValueError):
        prune_normalize(np.ones((2, 2), np.float32), 1.0)
    with pytest.raises(ValueError):
        slic_smooth(np.ones((2, 2), np.float32), np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError):
        refine(np.ones((2, 2), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError):
        refine(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), alpha=2.0)
    with pytest.raises(ValueError):
        slic_smooth(np.ones((2, 2), np.int64), np.zeros((2, 2), np.int32))


def test_prune_normalize_quantile_scale_clips_outliers():
    s = np.concatenate([np.linspace(0.0, 1.0, 99), [100.0]]).reshape(10, 10)
    by_max = prune_normalize(s, 0.0)
    by_q = prune_normalize(s, 0.0, quantile=0.9)
    assert by_max.max() == 1.0 and by_q.max() == 1.0
    # The outlier dominates the max scale; the quantile scale keeps the bulk spread out.
    assert np.median(by_q) > 10 * np.median(by_max)
    assert np.all(by_q <= 1.0) and np.all(by_q >= 0.0)
    # A mostly-zero map (quantile 0) falls back to the maximum instead of dividing by 0.
    sparse = np.zeros((10, 10))
    sparse[0, 0] = 2.0
    out = prune_normalize(sparse, 0.0, quantile=0.5)
    assert out[0, 0] == 1.0 and out.sum() == 1.0
    with pytest.raises(ValueError):
        prune_normalize(s, 0.0, quantile=0.0)


def test_prune_normalize_saturation_stretches_between_theta_and_the_saturation_point():
    s = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 8.0]], np.float32)
    # s / max = [0, .125, .25, .375, .5, 1]: minus 0.125, over (0.5 - 0.125), clipped to 1
    out = prune_normalize(s, 0.125, saturation=0.5)
    np.testing.assert_allclose(out, [[0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]], atol=1e-6)
    # saturation 1 is the plain pruning
    np.testing.assert_allclose(prune_normalize(s, 0.125, saturation=1.0), prune_normalize(s, 0.125))
    # the stretch is monotone: the order of the pixels is kept where it does not saturate
    rng = np.random.default_rng(0)
    m = rng.random((16, 16)).astype(np.float32)
    out = prune_normalize(m, 0.0, saturation=0.4)
    inside = m.ravel() < 0.4 * m.max()
    assert np.all(np.diff(out.ravel()[inside][np.argsort(m.ravel()[inside])]) >= 0)
    assert np.all(out.ravel()[~inside] == 1.0)
    for bad in (0.125, 0.1, 1.5):  # at or below theta, or above 1
        with pytest.raises(ValueError):
            prune_normalize(s, 0.125, saturation=bad)
