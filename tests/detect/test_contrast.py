"""Tests for detect.contrast: the low-level contrast saliency (GradSal Sec. 3.3, Eq. 5)."""

import numpy as np
import pytest

from superpixels import slic
from detect.contrast import contrast_saliency


def _random_blocks(h, w, seed):
    """Piecewise-constant random colours (8x8 blocks): SLIC finds many segments in it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)


def _blob_image(h=120, w=160, bg=(40, 120, 40), fg=(220, 40, 40)):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    img[40:80, 60:100] = fg
    return img


def test_central_blob_is_more_salient_than_background():
    img = _blob_image()
    sal = contrast_saliency(img)
    inside = sal[45:75, 65:95].mean()
    outside = np.concatenate([sal[:30].ravel(), sal[-30:].ravel()]).mean()
    assert inside > 0.8
    assert outside < 0.2
    assert inside > outside + 0.5


@pytest.mark.parametrize("kwargs", [
    {},
    {"spatial_sigma": None},
    {"use_distribution": False},
    {"center_sigma": None},
    {"spatial_sigma": None, "use_distribution": False, "center_sigma": None},
])
def test_values_in_unit_interval_shape_and_dtype(kwargs):
    img = _random_blocks(64, 80, 0)
    sal = contrast_saliency(img, n_segments=50, **kwargs)
    assert sal.shape == (64, 80)
    assert sal.dtype == np.float32
    assert sal.min() >= 0.0 and sal.max() <= 1.0
    assert np.isclose(sal.max(), 1.0)


def test_blob_wins_in_every_variant_of_eq5():
    # Plain Eq. 5 (no spatial weight, no distribution, no centre prior) must still rank the
    # small distinct blob above the large uniform background.
    img = _blob_image()
    sal = contrast_saliency(img, spatial_sigma=None, use_distribution=False, center_sigma=None)
    assert sal[45:75, 65:95].mean() > sal[:30].mean()


def test_constant_per_superpixel_with_given_labels():
    img = _random_blocks(48, 48, 1)
    labels = slic(img, n_segments=30, compactness=10.0)
    assert labels.max() >= 5
    sal = contrast_saliency(img, labels)
    for lab in np.unique(labels)[:10]:
        vals = sal[labels == lab]
        assert np.ptp(vals) == 0.0


def test_uniform_image_gives_zeros_not_nan():
    img = np.full((40, 50, 3), 128, np.uint8)
    sal = contrast_saliency(img, n_segments=20)
    assert np.all(np.isfinite(sal))
    assert np.all(sal == 0.0)


def test_border_blob_still_beats_background():
    # With the centre prior, a blob at the border still scores above the background.
    img = np.full((100, 100, 3), (30, 30, 200), np.uint8)
    img[5:35, 5:35] = (250, 250, 0)
    sal = contrast_saliency(img, n_segments=100)
    assert sal[10:30, 10:30].mean() > sal[60:95, 60:95].mean()


@pytest.mark.parametrize("bad", [
    np.zeros((10, 10), np.uint8),
    np.zeros((10, 10, 4), np.uint8),
    np.zeros((10, 10, 3), np.float32),
    [[1, 2, 3]],
])
def test_bad_image_raises(bad):
    with pytest.raises(ValueError):
        contrast_saliency(bad)


def test_bad_labels_and_params_raise():
    img = _blob_image(40, 40)
    with pytest.raises(ValueError):
        contrast_saliency(img, np.zeros((20, 20), np.int32))
    with pytest.raises(ValueError):
        contrast_saliency(img, np.zeros((40, 40), np.float32))
    with pytest.raises(ValueError):
        contrast_saliency(img, color_sigma=0.0)
    with pytest.raises(ValueError):
        contrast_saliency(img, spatial_sigma=-1.0)
