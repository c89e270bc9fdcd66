"""One (target, retrieved) pair's bi-level alignment from full-size inputs (MIJR Sec. III-A).

The ``alignment`` stage and ``benchmarks/bench_alignment.py`` both call :func:`align_pair`, so the
benchmark measures what the pipeline runs.

Working grid: dense SIFT and SIFT-Flow run on each image resized to ``size x size`` (256 in the
pipeline; the aspect ratio is not kept, so the two images of a pair share one grid, as in
SIFT-Flow scene alignment). SLIC superpixels and proposals are computed at the image's own size,
because re-learning indexes the full image's superpixels and boxes. :func:`align_pair` therefore
resamples the label maps to the grid (nearest) and scales the boxes (outwards to whole grid
cells, at least one cell wide); a superpixel that vanishes in that resampling (tiny slivers only)
gets match -1 and distance inf, and is in no proposal.
"""

from __future__ import annotations

import cv2
import numpy as np

from alignment.bilevel import BilevelAlignment, bilevel_alignment, pixel_features

__all__ = ["working_image", "to_working_grid", "align_pair"]


def working_image(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size x size`` (area averaging when shrinking, bilinear otherwise)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def to_working_grid(labels: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A full-size label map and its ``(col0, row0, col1, row1)`` half-open boxes on the
    ``size x size`` grid: labels by nearest neighbour, boxes scaled outwards to whole cells and
    kept at least one cell wide and high."""
    h, w = labels.shape
    lab = cv2.resize(labels.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)
    sx, sy = size / w, size / h
    b = boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
    b = np.stack([np.floor(b[:, 0]), np.floor(b[:, 1]), np.ceil(b[:, 2]), np.ceil(b[:, 3])], 1)
    b = np.clip(b, 0, size).astype(np.int32)
    b[:, 2] = np.maximum(b[:, 2], b[:, 0] + 1).clip(max=size)
    b[:, 3] = np.maximum(b[:, 3], b[:, 1] + 1).clip(max=size)
    b[:, 0] = np.minimum(b[:, 0], b[:, 2] - 1)
    b[:, 1] = np.minimum(b[:, 1], b[:, 3] - 1)
    return lab, b


def align_pair(
    image_a: np.ndarray,
    image_b: np.ndarray,
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    boxes_a: np.ndarray,
    boxes_b: np.ndarray,
    descriptors_a: np.ndarray,
    descriptors_b: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    *,
    colour_weight: float | None = None,
    **bilevel_options,
) -> BilevelAlignment:
    """Bi-level alignment of target ``a`` to retrieved ``b`` (MIJR Eq. 1-3) from full-size inputs.

    Parameters
    ----------
    image_a, image_b : (H, W, 3) ndarray of uint8
        The two RGB images at their own sizes.
    labels_a, labels_b : (H, W) ndarray of int
        Their superpixels (SLIC) at the images' sizes.
    boxes_a, boxes_b : (V, 4) ndarray of int
        Their proposals, ``(col0, row0, col1, row1)`` half-open, at the images' sizes.
    descriptors_a, descriptors_b : (S, S, D) ndarray
        Dense SIFT of the images resized to the ``S x S`` working grid
        (:func:`working_image`, :func:`alignment.dense_sift`).
    vx, vy : (S, S) ndarray
        SIFT-Flow from ``a`` to ``b`` on the working grid.
    colour_weight : float, optional
        As in :func:`alignment.pixel_features` (None: its default).
    **bilevel_options
        ``k_init``, ``object_weight``, ``window``, ``stride`` of :func:`alignment.bilevel_alignment`
        (its defaults where not given).

    Returns
    -------
    BilevelAlignment
        As :func:`alignment.bilevel_alignment`, with ``superpixel_match`` and
        ``superpixel_distance`` over every label of ``labels_a`` (``labels_a.max() + 1``):
        -1 and inf for a superpixel that vanished on the grid.
    """
    size_a, size_b = descriptors_a.shape[0], descriptors_b.shape[0]
    n_a = int(np.max(labels_a)) + 1
    la, ba = to_working_grid(np.asarray(labels_a), np.asarray(boxes_a), size_a)
    lb, bb = to_working_grid(np.asarray(labels_b), np.asarray(boxes_b), size_b)
    # the defaults stay written once, in pixel_features and bilevel_alignment
    colour = {} if colour_weight is None else {"colour_weight": colour_weight}
    fa = pixel_features(working_image(image_a, size_a), descriptors_a, **colour)
    fb = pixel_features(working_image(image_b, size_b), descriptors_b, **colour)
    r = bilevel_alignment(la, lb, ba, bb, vx, vy, fa, fb, **bilevel_options)
    # labels that vanished at the top of the range are not in the grid's label count
    match = np.full(n_a, -1, np.int64)
    dist = np.full(n_a, np.inf)
    m = r.superpixel_match.shape[0]
    match[:m] = r.superpixel_match
    dist[:m] = r.superpixel_distance
    return BilevelAlignment(superpixel_match=match, superpixel_distance=dist,
                            proposal_match=r.proposal_match, proposal_distance=r.proposal_distance,
                            k_schedule=r.k_schedule, objective=r.objective)
