"""Per-superpixel reductions over a label map: one-pass numba kernels that release the GIL.

Label maps are ``(H, W)`` integer arrays with labels ``0 .. n-1``. These functions replace Python
loops over superpixels everywhere in the project.
"""

from __future__ import annotations

import numpy as np

from superpixels._kernels import _adjacency, _region_coord_sum, _region_count, _region_sum
from superpixels.validation import check_labels

__all__ = ["region_count", "region_mean", "region_centroid", "adjacency", "broadcast"]


def region_count(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Number of pixels of each superpixel.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        Label map with labels ``0 .. n-1``.
    n : int, optional
        Number of superpixels (default ``labels.max() + 1``).

    Returns
    -------
    counts : (n,) ndarray of int64
    """
    labels, n = check_labels(labels, n=n)
    return _region_count(labels.ravel(), n)


def region_mean(values: np.ndarray, labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Mean of a per-pixel array over each superpixel.

    Parameters
    ----------
    values : (H, W) or (H, W, C) ndarray
        Per-pixel values.
    labels : (H, W) ndarray of int
        Label map with labels ``0 .. n-1``.
    n : int, optional
        Number of superpixels (default ``labels.max() + 1``).

    Returns
    -------
    means : (n,) or (n, C) ndarray of float64
        Empty superpixels (possible when ``n`` exceeds the labels present) get 0.
    """
    labels, n = check_labels(labels, n=n)
    values = np.asarray(values)
    if values.shape[:2] != labels.shape:
        raise ValueError(f"values: expected shape {labels.shape} (+ channels) like labels, got {values.shape}")
    flat = values.reshape(labels.size, -1).astype(np.float64, copy=False)
    sums = _region_sum(np.ascontiguousarray(flat), labels.ravel(), n)
    counts = _region_count(labels.ravel(), n)
    means = sums / np.maximum(counts, 1)[:, None]
    return means[:, 0] if values.ndim == 2 else means


def region_centroid(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Centroid (row, col) of each superpixel, in pixels.

    Returns
    -------
    centroids : (n, 2) ndarray of float64
        Empty superpixels get (0, 0).
    """
    labels, n = check_labels(labels, n=n)
    sums = _region_coord_sum(labels, n)
    counts = _region_count(labels.ravel(), n)
    return sums / np.maximum(counts, 1)[:, None]


def adjacency(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Symmetric 4-connectivity adjacency matrix of the superpixels.

    Returns
    -------
    adj : (n, n) ndarray of bool
        ``adj[i, j]`` is True when some pixel of i touches a pixel of j; the diagonal is False.
    """
    labels, n = check_labels(labels, n=n)
    return _adjacency(labels, n)


def broadcast(region_values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Paint per-superpixel values back onto the pixels.

    Parameters
    ----------
    region_values : (n,) or (n, C) ndarray
    labels : (H, W) ndarray of int

    Returns
    -------
    values : (H, W) or (H, W, C) ndarray, dtype of ``region_values``
    """
    labels, n = check_labels(labels)
    region_values = np.asarray(region_values)
    if region_values.shape[0] < n:
        raise ValueError(f"region_values: expected at least {n} rows (labels go up to {n - 1}), got {region_values.shape[0]}")
    return region_values[labels]
