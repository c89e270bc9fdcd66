"""The combined GIST + HOG retrieval descriptor of MIJR Sec. III.

MIJR retrieves, for each target image, at most 5 pool images "which share similar scene topology"
with "the common GIST+HOG descriptor", without saying how the two are combined. Here each part is
L2-normalised, scaled by the square root of its weight, and the two are concatenated (Eq. D)::

    d = [ sqrt(w_g) g / ||g||,  sqrt(w_h) h / ||h|| ],   w_g + w_h = 1  (weights renormalised)

so that ``||d|| = 1`` and the squared Euclidean distance between two descriptors is the weighted
sum of the two cosine distances: ``||d1 - d2||^2 = 2 (w_g (1 - cos_g) + w_h (1 - cos_h))``. The
weights are therefore the shares of each cue in the retrieval distance, independent of the parts'
lengths (960 GIST values against 144 HOG values).

Defaults: ``w_g = w_h = 0.5``. The paper gives no weights; equal shares are the neutral choice.
``benchmarks/bench_retrieval.py`` reports the retrieval quality of GIST alone, HOG alone and the
0.5 / 0.5 mix on ECSSD and DUTS-TR-1k.

Pool centring (Eq. C, :func:`centre_pool`, used by the ``neighbours`` stage): GIST energies are all
positive and share a large component common to every image, so raw cosines are dominated by it.
Before the search, each unit part has its pool mean subtracted and is re-normalised::

    g~_i = (g^_i - mean_j g^_j) / ||g^_i - mean_j g^_j||   (same for h), d~_i = [sqrt(w_g) g~_i, sqrt(w_h) h~_i]

which makes the cosine a correlation over the pool. Measured in ``benchmarks/bench_retrieval.py``
(mean GT-mask IoU with the 5 neighbours, GIST+HOG 0.5 / 0.5): ECSSD 0.273 raw -> 0.288 centred,
DUTS-TR-1k 0.355 -> 0.365 (random neighbours: 0.264 and 0.310; the 5 best masks of the pool, an
oracle: 0.602 and 0.662). The result is flat in the weight (w_g from 0.3 to 0.7: ECSSD 0.287 ..
0.290, DUTS 0.363 .. 0.366), so the neutral 0.5 / 0.5 is kept rather than a value fitted to the
evaluation sets.

GIST is always computed on three channels (a gray image is replicated, which gives its gray GIST
three times) so that every image of a pool has the same length, 960 + 144 = 1104. An all-constant
image has zero GIST and HOG (up to float32 rounding, norm < 1e-5): its parts are left at zero.
"""

from __future__ import annotations

import numpy as np

from retrieval._image import as_float255
from superpixels.validation import check_int, check_weight
from retrieval.gist import _gist_float255, gist_length
from retrieval.hog import _hog_float255, pooled_hog_length

__all__ = [
    "descriptor",
    "descriptor_batch",
    "descriptor_length",
    "centre_pool",
    "GIST_WEIGHT",
    "HOG_WEIGHT",
]

GIST_WEIGHT = 0.5
HOG_WEIGHT = 0.5


def descriptor_length() -> int:
    """Length of the default combined descriptor (1104)."""
    return gist_length(3) + pooled_hog_length()


# Below this norm a part is treated as blank: a constant image leaves ~1e-6 of float32 rounding in
# its GIST (the whitening of a constant is exact only in exact arithmetic), while a single changed
# pixel in a 300 x 300 image already gives ~3e-5.
_BLANK_NORM = 1e-5


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > _BLANK_NORM else np.zeros_like(v)


def descriptor(
    image,
    *,
    size: int = 256,
    hog_size: int = 96,
    gist_weight: float = GIST_WEIGHT,
    hog_weight: float = HOG_WEIGHT,
) -> np.ndarray:
    """Weighted, L2-normalised GIST + HOG descriptor of one image.

    Parameters
    ----------
    image : (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) ndarray
        uint8, uint16, bool, or float in [0, 1].
    size : int, optional
        GIST square side (see :func:`retrieval.gist.gist`). Default 256.
    hog_size : int, optional
        HOG square side (see :func:`retrieval.hog.pooled_hog`). Default 96.
    gist_weight, hog_weight : float, optional
        Non-negative shares of the two cues in the squared distance (renormalised to sum to 1).
        Default 0.5 each.

    Returns
    -------
    d : (1104,) ndarray of float32
        ``[sqrt(w_g) g/||g||, sqrt(w_h) h/||h||]``, unit norm (zero parts stay zero).

    Notes
    -----
    Eq. D: ``||d1 - d2||^2 = 2 (w_g (1 - cos(g1, g2)) + w_h (1 - cos(h1, h2)))``.

    References
    ----------
    MIJR Sec. III; A. Oliva and A. Torralba, IJCV 2001; N. Dalal and B. Triggs, CVPR 2005.
    """
    total = _part_weights(gist_weight, hog_weight)
    size = check_int(size, "size", minimum=8)
    hog_size = check_int(hog_size, "hog_size", minimum=32)  # >= grid (4) cells of 8 px
    x = as_float255(image)  # validated once; both parts see the same 0..255 values
    g = _gist_float255(x, size, (8, 8, 4), 4, 4.0, True).astype(np.float64)
    h = _hog_float255(x, hog_size).astype(np.float64)
    # Eq. D
    d = np.concatenate(
        [np.sqrt(gist_weight / total) * _unit(g), np.sqrt(hog_weight / total) * _unit(h)]
    )
    return d.astype(np.float32)


def _part_weights(gist_weight, hog_weight) -> float:
    """Check the two part weights; return their sum (> 0)."""
    total = check_weight(gist_weight, "gist_weight") + check_weight(hog_weight, "hog_weight")
    if total <= 0:
        raise ValueError("gist_weight + hog_weight: expected > 0, got 0")
    return total


def descriptor_batch(images, **kwargs) -> np.ndarray:
    """Descriptors of many images: ``(N, 1104)`` float32 (keywords as :func:`descriptor`)."""
    rows = [descriptor(im, **kwargs) for im in images]
    if not rows:
        raise ValueError("images: expected at least one image, got none")
    return np.stack(rows)


def centre_pool(
    descriptors,
    *,
    gist_weight: float = GIST_WEIGHT,
    hog_weight: float = HOG_WEIGHT,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Pool-centred descriptors (Eq. C): each part minus its pool mean, re-normalised, re-weighted.

    Parameters
    ----------
    descriptors : (N, 1104) ndarray
        Rows from :func:`descriptor` (GIST part first, 960 values, then 144 HOG values).
    gist_weight, hog_weight : float, optional
        The shares used for the output (renormalised to sum to 1). Default 0.5 each.
    out : (N, 1104) ndarray of float32, optional
        Where to write the result (may be ``descriptors`` itself, or a ``numpy.memmap``): the pool
        is read and written in blocks of rows, so a pool larger than memory can be centred.

    Returns
    -------
    (N, 1104) ndarray of float32
        ``[sqrt(w_g) g~_i, sqrt(w_h) h~_i]`` with ``g~_i = (g^_i - mean g^) / ||g^_i - mean g^||``;
        a part equal to the pool mean (e.g. a pool of one) stays zero.

    Notes
    -----
    Eq. C: the cosine of centred parts is the correlation of the descriptors over the pool, which
    removes the component every GIST vector shares. It is a pool-level step, so it lives in the
    ``neighbours`` stage, not in the per-image descriptor.
    """
    d = descriptors if isinstance(descriptors, np.ndarray) else np.asarray(descriptors)
    n_g = gist_length(3)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] != descriptor_length():
        raise ValueError(
            f"descriptors: expected an (N, {descriptor_length()}) array, got shape {d.shape}"
        )
    if out is not None and (out.shape != d.shape or out.dtype != np.float32):
        raise ValueError(f"out: expected a float32 array of shape {d.shape}, got {out.dtype} {out.shape}")
    total = _part_weights(gist_weight, hog_weight)
    parts = ((slice(0, n_g), gist_weight), (slice(n_g, d.shape[1]), hog_weight))
    block = 2048

    def unit_parts(rows):
        rows = np.asarray(rows, np.float64)
        if not np.all(np.isfinite(rows)):
            raise ValueError("descriptors: expected finite values, got NaN or inf")
        units = []
        for cols, _ in parts:
            part = rows[:, cols]
            norms = np.linalg.norm(part, axis=1, keepdims=True)
            units.append(np.where(norms > 0, part / np.maximum(norms, 1e-300), 0.0))
        return units

    n = d.shape[0]
    sums = [np.zeros(cols.stop - cols.start) for cols, _ in parts]
    for s in range(0, n, block):  # pass 1: the pool means of the unit parts
        for acc, u in zip(sums, unit_parts(d[s:s + block])):
            acc += u.sum(axis=0)
    means = [acc / n for acc in sums]
    result = np.empty(d.shape, np.float32) if out is None else out
    for s in range(0, n, block):  # pass 2: centre (Eq. C), re-normalise, re-weight
        centred = []
        for u, mean, (_, w) in zip(unit_parts(d[s:s + block]), means, parts):
            c = u - mean  # Eq. C
            cn = np.linalg.norm(c, axis=1, keepdims=True)
            c = np.where(cn > 1e-9, c / np.maximum(cn, 1e-300), 0.0)
            centred.append(np.sqrt(w / total) * c)
        result[s:s + block] = np.hstack(centred)
    return result
