"""Superpixel kernels against slow numpy references, and SLIC on images with a known answer."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from superpixels import (
    adjacency,
    broadcast,
    region_centroid,
    region_count,
    region_mean,
    relabel,
    slic,
)


def _random_labels(rng, h=23, w=31, n=7):
    labels = rng.integers(0, n, size=(h, w)).astype(np.int32)
    labels[0, 0] = n - 1  # make sure the highest label is present
    return labels


def test_region_mean_and_count_equal_numpy_reference():
    rng = np.random.default_rng(0)
    labels = _random_labels(rng)
    values = rng.normal(size=labels.shape + (3,))
    n = labels.max() + 1
    expected = np.stack([values[labels == k].mean(axis=0) for k in range(n)])
    np.testing.assert_allclose(region_mean(values, labels), expected, rtol=1e-12)
    np.testing.assert_allclose(region_mean(values[..., 0], labels), expected[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(region_count(labels), [(labels == k).sum() for k in range(n)])


def test_region_centroid_equals_numpy_reference():
    rng = np.random.default_rng(1)
    labels = _random_labels(rng)
    rows, cols = np.indices(labels.shape)
    expected = np.array(
        [[rows[labels == k].mean(), cols[labels == k].mean()] for k in range(labels.max() + 1)]
    )
    np.testing.assert_allclose(region_centroid(labels), expected, rtol=1e-12)


def test_adjacency_equals_numpy_reference():
    rng = np.random.default_rng(2)
    labels = _random_labels(rng, n=12)
    n = labels.max() + 1
    expected = np.zeros((n, n), bool)
    for a, b in [(labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])]:
        expected[a.ravel(), b.ravel()] = True
        expected[b.ravel(), a.ravel()] = True
    np.fill_diagonal(expected, False)
    np.testing.assert_array_equal(adjacency(labels), expected)


def test_broadcast_inverts_region_mean_on_piecewise_constant_values():
    rng = np.random.default_rng(3)
    labels = _random_labels(rng)
    region_values = rng.normal(size=labels.max() + 1)
    pixels = broadcast(region_values, labels)
    np.testing.assert_allclose(region_mean(pixels, labels), region_values)


def test_relabel_makes_labels_contiguous():
    labels = np.array([[5, 5, 9], [2, 9, 9]])
    out = relabel(labels)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[0, 0, 1], [2, 1, 1]])


@pytest.mark.parametrize("backend", ["skimage", "opencv"])
def test_slic_two_colour_image_gives_two_groups(backend):
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, :40] = (200, 30, 30)
    image[:, 40:] = (20, 40, 220)
    labels = slic(image, n_segments=12, compactness=10.0, backend=backend)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32
    left, right = set(np.unique(labels[:, :40])), set(np.unique(labels[:, 40:]))
    assert left and right and left.isdisjoint(right)  # no superpixel straddles the colour edge
    assert labels.min() == 0 and np.unique(labels).size == labels.max() + 1


def test_slic_rejects_bad_input():
    with pytest.raises(ValueError, match="RGB"):
        slic(np.zeros((10, 10), np.uint8), 10)
    with pytest.raises(ValueError, match="uint8"):
        slic(np.zeros((10, 10, 3), np.float32), 10)
    with pytest.raises(ValueError, match="backend"):
        slic(np.zeros((10, 10, 3), np.uint8), 10, backend="nope")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 30))
def test_slic_any_size_gives_contiguous_labels_covering_the_image(h, w, n_segments):
    rng = np.random.default_rng(h * 100 + w)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    labels = slic(image, n_segments=n_segments)
    assert labels.shape == (h, w)
    assert np.unique(labels).size == labels.max() + 1
    assert region_count(labels).sum() == h * w


@pytest.mark.parametrize("shape", [(1, 13), (1, 8), (2, 40), (1, 1)])
def test_slic_on_slivers_that_crash_opencv_falls_back(shape):
    # OpenCV's SLIC segfaults on e.g. a 1x13 image with one segment; the wrapper must not.
    image = np.random.default_rng(0).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    labels = slic(image, n_segments=1)
    assert labels.shape == shape
