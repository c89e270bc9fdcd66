"""promote.crf.dense_crf: the fully connected CRF of MIJR Eq. 5."""

import numpy as np
import pytest

from promote import dense_crf


def _two_region_image(h=48, w=64):
    img = np.full((h, w, 3), 30, np.uint8)
    img[12:36, 16:48] = (220, 40, 40)
    truth = np.zeros((h, w), bool)
    truth[12:36, 16:48] = True
    return img, truth


def test_salt_noise_is_cleaned():
    img, truth = _two_region_image()
    rng = np.random.default_rng(0)
    prior = np.where(truth, 0.8, 0.2).astype(np.float32)
    flip = rng.random(truth.shape) < 0.1  # 10% salt-and-pepper errors, confident ones
    prior[flip] = np.where(truth[flip], 0.1, 0.9)
    out = dense_crf(img, prior, theta_alpha=20, theta_beta=13, theta_gamma=3)
    noisy_errors = ((prior > 0.5) != truth).mean()
    errors = ((out > 0.5) != truth).mean()
    assert noisy_errors > 0.08
    assert errors < 0.01


def test_output_is_a_probability_map_of_the_image_size():
    img, truth = _two_region_image(30, 40)
    out = dense_crf(img, truth.astype(np.float32) * 0.6 + 0.2)
    assert out.shape == truth.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_zero_iterations_returns_the_unary_posterior():
    img, truth = _two_region_image(20, 20)
    prior = np.linspace(0.01, 0.99, 400, dtype=np.float32).reshape(20, 20)
    out = dense_crf(img, prior, n_iterations=0)
    np.testing.assert_allclose(out, prior, atol=1e-4)


def test_small_colour_width_keeps_the_colour_edge():
    # A prior that overflows the object by 4 px: a colour-sensitive CRF pulls it back to the edge.
    img, truth = _two_region_image()
    grown = np.zeros_like(truth)
    grown[8:40, 12:52] = True
    prior = np.where(grown, 0.7, 0.3).astype(np.float32)
    out = dense_crf(img, prior, theta_alpha=60, theta_beta=5, theta_gamma=1, n_iterations=10)
    assert ((out > 0.5) != truth).mean() < ((prior > 0.5) != truth).mean() / 2


@pytest.mark.parametrize("kwargs, message", [
    ({"theta_alpha": 0}, "theta_alpha"),
    ({"theta_beta": -1}, "theta_beta"),
    ({"n_iterations": -1}, "n_iterations"),
    ({"appearance_weight": float("nan")}, "appearance_weight"),
])
def test_bad_parameters_are_named(kwargs, message):
    img, truth = _two_region_image(10, 10)
    with pytest.raises(ValueError, match=message):
        dense_crf(img, truth.astype(np.float32), **kwargs)


def test_prior_of_another_shape_is_refused():
    img, truth = _two_region_image(10, 10)
    with pytest.raises(ValueError, match="prior: expected shape"):
        dense_crf(img, np.zeros((9, 10), np.float32))


def test_a_read_only_image_is_accepted():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    prior = rng.random((12, 16)).astype(np.float32)
    frozen = image.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(dense_crf(frozen, prior), dense_crf(image, prior))
