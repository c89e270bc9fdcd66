"""Dense SIFT: shape and dtype, zero on flat images, shift equivariance, brightness invariance."""

import numpy as np
import pytest

from alignment.dense_sift import dense_sift


def _texture(h=48, w=56, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 4 + 2, w // 4 + 2, 3)).astype(np.float64)
    # Blocky random texture, smoothed a little so gradients are spatially varied.
    big = np.kron(small, np.ones((4, 4, 1)))[:h, :w]
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1)) / 3
    return np.clip(big, 0, 255).astype(np.uint8)


def test_shape_and_dtype_rgb_and_grey():
    img = _texture()
    desc = dense_sift(img)
    assert desc.shape == (48, 56, 128)
    assert desc.dtype == np.uint8
    grey = dense_sift(img[..., 0])
    assert grey.shape == (48, 56, 128) and grey.dtype == np.uint8
    # A textured image gives non-trivial descriptors of (nearly) the quantised length 255.
    norms = np.linalg.norm(desc.reshape(-1, 128).astype(np.float64), axis=1)
    assert np.median(norms) > 200 and norms.max() < 257  # 255 up to rounding


def test_constant_image_descriptor_is_zero():
    img = np.full((32, 40, 3), 137, np.uint8)
    assert not dense_sift(img).any()


def test_shift_equivariance_away_from_borders():
    img = _texture(64, 64, seed=1)
    dy, dx = 5, 7
    shifted = np.roll(img, (dy, dx), axis=(0, 1))
    d0 = dense_sift(img)
    d1 = dense_sift(shifted)
    # Border effects reach 2 (gradient) + 1 (cell box) + 2 * 3 (cell offsets) pixels, plus the
    # wrap-around seam of np.roll: compare well inside.
    m = 14
    np.testing.assert_array_equal(d1[m + dy : -m, m + dx : -m], d0[m : -m - dy, m : -m - dx])


def test_brightness_offset_invariance():
    img = (_texture(40, 40, seed=2) // 2).astype(np.uint8)
    np.testing.assert_array_equal(dense_sift(img), dense_sift(img + np.uint8(50)))


def test_reference_quantisation_without_clip():
    img = _texture(40, 40, seed=3)
    ref = dense_sift(img, clip=None)
    ours = dense_sift(img)
    assert ref.shape == ours.shape
    # Without the 0.2 clip, the strongest bin can exceed 0.2 * 255.
    assert ref.max() > 0.2 * 255 + 1
    assert ours.max() <= 255


@pytest.mark.parametrize(
    "bad, kwargs",
    [
        (np.zeros((4, 4, 2), np.uint8), {}),
        (np.zeros((4,), np.uint8), {}),
        (np.zeros((8, 8, 3), np.uint8), {"cell_size": 0}),
        (np.zeros((8, 8, 3), np.uint8), {"clip": 2.0}),
    ],
)
def test_bad_input_raises(bad, kwargs):
    with pytest.raises(ValueError):
        dense_sift(bad, **kwargs)
