"""GradSal Algorithm 1 end to end with the real backbone."""

import numpy as np
import pytest
from skimage import data

from gradsal import GradSalResult, saliency


@pytest.fixture(scope="module")
def result(backbone):
    img = data.chelsea()[::2, ::2].copy()        # 150 x 226: keeps the test fast
    return img, saliency(img, backbone, steps=5)


def test_maps_have_image_shape_dtype_and_range(result):
    img, res = result
    assert isinstance(res, GradSalResult)
    for name in ("raw", "smoothed", "refined"):
        m = getattr(res, name)
        assert m.shape == img.shape[:2], name
        assert m.dtype == np.float32, name
        assert m.min() >= 0.0 and m.max() <= 1.0, name
        assert m.max() == pytest.approx(1.0), name
    assert res.label in {281, 282, 283, 284, 285}
    assert res.cost.shape == (6,)


def test_smoothed_map_is_piecewise_constant(result):
    _, res = result
    # 100 superpixels: far fewer distinct values than pixels.
    assert len(np.unique(res.smoothed)) <= 150
    assert len(np.unique(res.raw)) > 150


def test_cat_is_more_salient_than_the_corners(result):
    # Chelsea fills the centre of the picture; the borders are background.
    _, res = result
    h, w = res.refined.shape
    centre = res.refined[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean()
    border = np.concatenate([res.refined[:10].ravel(), res.refined[-10:].ravel()]).mean()
    assert centre > border


def test_the_dcnn_map_follows_the_cat_off_centre(backbone):
    # The cat on the left half of the canvas, flat gray on the right. Any centre prior is symmetric
    # about the middle column, so it gives both halves the same mass (ratio 1); the gradient map
    # (before any low-level prior) must put clearly more on the cat's half.
    cat = data.chelsea()[::2, ::2]
    canvas = np.full((cat.shape[0], 2 * cat.shape[1], 3), 128, np.uint8)
    canvas[:, :cat.shape[1]] = cat
    res = saliency(canvas, backbone, steps=5)
    assert res.label in {281, 282, 283, 284, 285}
    half = cat.shape[1]
    assert res.raw[:, :half].mean() > 1.5 * res.raw[:, half:].mean()


def test_result_is_frozen(result):
    _, res = result
    with pytest.raises(AttributeError):
        res.label = 3


@pytest.mark.parametrize("bad", [
    np.zeros((20, 20), np.uint8),
    np.zeros((20, 20, 3), np.float32),
    np.zeros((20, 20, 4), np.uint8),
    np.zeros((4, 4, 3), np.uint8),
    "chelsea.png",
])
def test_bad_image_raises_value_error(backbone, bad):
    with pytest.raises(ValueError):
        saliency(bad, backbone)


def test_bad_parameters_raise_value_error(backbone):
    img = data.chelsea()[::4, ::4].copy()
    with pytest.raises(ValueError):
        saliency(img, backbone, theta=1.5)
    with pytest.raises(ValueError):
        saliency(img, backbone, alpha=-0.1)
    with pytest.raises(ValueError):
        saliency(img, backbone, steps=0)


def test_shared_superpixels_for_the_lowlevel_map(backbone):
    img = data.chelsea()[::3, ::3].copy()
    res = saliency(img, backbone, steps=2, lowlevel_segments=None, quantile=1.0, theta=0.1,
                   theta_final=0.1)
    assert res.refined.shape == img.shape[:2]
    assert 0.0 <= res.refined.min() and res.refined.max() == pytest.approx(1.0)
    # Smoothed and low-level maps share the 100 superpixels, so the refined map is
    # piecewise constant on them too.
    assert len(np.unique(res.refined)) <= 150


def test_building_blocks_take_the_defaults_of_saliency():
    import inspect

    from gradsal import saliency
    from gradsal.descent import gradient_descent
    from gradsal.postprocess import prune_normalize, refine

    top = inspect.signature(saliency).parameters
    for block, names in ((gradient_descent, ("steps", "gamma", "epsilon", "input_size", "step_rule")),
                         (prune_normalize, ("theta",)), (refine, ("alpha",))):
        sig = inspect.signature(block).parameters
        for n in names:
            assert sig[n].default == top[n].default, f"{block.__name__}.{n}"
