"""Spatial weighting of superpixel scores to a pixel map, on hand-built label maps."""

import numpy as np
import pytest

from relearn import spatial_weighting


def test_without_weighting_each_pixel_takes_its_superpixels_score():
    labels = np.array([[0, 0, 1], [2, 2, 1]], np.int32)
    out = spatial_weighting(np.array([0.2, 0.9, 0.5]), labels, sigma_s2=0)
    np.testing.assert_allclose(out, [[0.2, 0.2, 0.9], [0.5, 0.5, 0.9]])
    assert out.dtype == np.float32


def test_two_halves_mix_by_the_region_contrast_kernel():
    # 4 x 8, left half 0, right half 1: centroids (1.5/4, 1.5/8) and (1.5/4, 5.5/8), D_s = 0.5,
    # equal areas; with sigma_s^2 = 0.25 the other half weighs exp(-0.5 / 0.25) = exp(-2)
    labels = np.zeros((4, 8), np.int32)
    labels[:, 4:] = 1
    out = spatial_weighting(np.array([1.0, 0.0]), labels, sigma_s2=0.25)
    k = np.exp(-2.0)
    np.testing.assert_allclose(out[:, :4], 1 / (1 + k), rtol=1e-6)
    np.testing.assert_allclose(out[:, 4:], k / (1 + k), rtol=1e-6)


def test_larger_superpixels_weigh_more():
    # stripes of widths 2 and 6 on a 1 x 8 map: centroids 0.5/8 and 4.5/8, D_s = 0.5
    labels = np.array([[0, 0, 1, 1, 1, 1, 1, 1]], np.int32)
    out = spatial_weighting(np.array([1.0, 0.0]), labels, sigma_s2=0.5)
    k = np.exp(-1.0)
    np.testing.assert_allclose(out[0, 0], 2 / (2 + 6 * k), rtol=1e-6)
    np.testing.assert_allclose(out[0, 7], 2 * k / (2 * k + 6), rtol=1e-6)


def test_constant_scores_stay_constant_and_a_tiny_kernel_is_the_identity():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, (9, 11)).astype(np.int32)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    n = labels.max() + 1
    np.testing.assert_allclose(spatial_weighting(np.full(n, 0.3), labels), 0.3, rtol=1e-6)
    s = rng.random(n)
    np.testing.assert_allclose(spatial_weighting(s, labels, sigma_s2=1e-6), s[labels], rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    labels = np.array([[0, 1], [2, 2]], np.int32)
    with pytest.raises(ValueError, match="scores: expected a non-empty 1-D array of finite"):
        spatial_weighting(np.array([0.1, np.nan, 0.3]), labels)
    with pytest.raises(ValueError, match="labels: expected labels below n=2"):
        spatial_weighting(np.array([0.1, 0.2]), labels)
    with pytest.raises(ValueError, match="sigma_s2"):
        spatial_weighting(np.array([0.1, 0.2, 0.3]), labels, sigma_s2=-1)
