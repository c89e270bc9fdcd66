"""Pooled HOG: layout, the exact horizontal-flip relation, and agreement with scikit-image."""

import numpy as np
import pytest
from skimage.feature import hog

from retrieval import pooled_hog, pooled_hog_length


def _flip_safe_image(rng, n=96, c=3):
    # Random values (no gradient at exactly 0 degrees in the interior) with constant first and
    # last rows: there scikit-image zeroes the row gradient, and a horizontal gradient at 0 degrees
    # would stay in bin 0 instead of moving to bin 8 under the flip.
    img = rng.random((n, n, c))
    img[0] = 0.5
    img[-1] = 0.5
    return img


@pytest.mark.parametrize("channels", [1, 3])
def test_horizontal_flip_is_exact_permutation(channels):
    rng = np.random.default_rng(channels)
    img = _flip_safe_image(rng, c=channels)
    if channels == 1:
        img = img[..., 0]
    h = pooled_hog(img).reshape(4, 4, 9)
    hf = pooled_hog(img[:, ::-1]).reshape(4, 4, 9)
    # angle a -> 180 - a: bin i = [20 i, 20 i + 20) -> bin 8 - i; grid columns mirror.
    predicted = h[:, ::-1, ::-1]
    np.testing.assert_allclose(hf, predicted, atol=1e-6)
    assert np.abs(hf - h).max() > 1e-3


def test_pooling_is_mean_of_skimage_cells():
    rng = np.random.default_rng(0)
    img = rng.random((128, 128))
    blocks = hog(img, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                 block_norm="L2-Hys", feature_vector=False)
    # Grid cell (1, 2) holds cells rows 4..7, cols 8..11; collect every normalised copy.
    copies = []
    for br in range(blocks.shape[0]):
        for bc in range(blocks.shape[1]):
            for cr in range(2):
                for cc in range(2):
                    if 4 <= br + cr < 8 and 8 <= bc + cc < 12:
                        copies.append(blocks[br, bc, cr, cc])
    expected = np.mean(copies, axis=0)
    got = pooled_hog(img, size=128).reshape(4, 4, 9)[1, 2]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_oriented_edges_land_in_their_bins():
    # Vertical stripes: horizontal gradients, orientation 0 degrees -> bin 0 (of 9 over 0..180).
    x = np.tile((np.arange(128) // 4 % 2).astype(float), (128, 1))
    h = pooled_hog(x).reshape(4, 4, 9)
    assert np.all(h.argmax(axis=2) == 0)
    # Horizontal stripes: vertical gradients, 90 degrees -> bin 4.
    h = pooled_hog(x.T).reshape(4, 4, 9)
    assert np.all(h.argmax(axis=2) == 4)


def test_length_dtype_and_size_invariance():
    rng = np.random.default_rng(1)
    img = (rng.random((200, 300, 3)) * 255).astype(np.uint8)
    h = pooled_hog(img)
    assert h.shape == (pooled_hog_length(),) == (144,) and h.dtype == np.float32
    assert pooled_hog(img, grid=2).shape == (36,)
    blank = pooled_hog(np.zeros((50, 50), np.uint8))
    assert np.all(blank == 0)


def test_validation():
    img = np.zeros((32, 32, 3), np.uint8)
    for kw in ({"size": 8}, {"grid": 0}, {"orientations": 0}, {"pixels_per_cell": 64}):
        with pytest.raises(ValueError):
            pooled_hog(img, **kw)
