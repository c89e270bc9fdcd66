"""Dense SIFT: one 128-d SIFT descriptor per pixel, as used by SIFT-Flow.

Paper first: MIJR (Sec. III-A) measures the pixel-wise inter-image feature distance
``||f(i), f(j)||_2`` on "the SIFT-Flow feature representation" f, i.e. the dense SIFT image of
Liu, Yuen and Torralba (SIFT Flow, TPAMI 2011, Sec. 3.1): at every pixel, a 4x4 grid of cells
(cell size 3 pixels in the reference demo, ``mexDenseSIFT(im, 3, 1)``) with an 8-bin orientation
histogram per cell, 4 * 4 * 8 = 128 dimensions, quantised to ``uint8``.

This is the reference's ``ImageFeature::imSIFT`` (step 1, boundary included), computed in
float64 as it is; on the reference outputs in ``siftflow-ref`` it gives the same bytes on every
value of the three SIFT images there (``benchmarks/bench_siftflow_ref.py``). ``I`` is the
image as float64 in [0, 1] (``im2double``):

1. Gradients per colour channel by correlation with ``[1, -8, 0, 8, -1] / 12`` (the reference's
   "advanced" derivative filter), replicated borders. At each pixel the channel with the
   largest gradient magnitude ``m = sqrt(gx^2 + gy^2)`` is kept (the first on ties), and its
   unit gradient.
2. Soft orientation binning into ``B = 8`` directions ``theta_k = 2 pi k / B``:
   ``E_k(p) = m(p) * max(0, cos(angle(p) - theta_k)) ** 9`` (the reference's ``alpha = 9``).
3. Cell pooling: each band is correlated, horizontally then vertically, with the reference's
   cell filter, replicated borders. For cell size ``c`` it has ``2c + 1`` taps at offsets
   ``-c .. c``: 0.25 at ``-c``, 1 at ``-c + 2 .. 1``, 0 elsewhere (for ``c = 3``: 0.25 at -3
   and 1 at -1, 0, +1). The stray 0.25 tap is an indexing slip of the reference (the filter is
   meant to be a box with quarter-weight ends); it is kept, since the bytes are the point.
4. Sampling: the descriptor of pixel ``(y, x)`` concatenates the pooled bands of the 16 cells
   centred at ``(y + i * c, x + j * c)``, ``i, j in {-1, 0, 1, 2}``, clamped to the image.
   Order: cell row, cell column, orientation bin.
5. Quantisation: ``uint8(min(255 * v / (||v||_2 + 0.01), 255))``, truncated (not rounded). The
   ``+ 0.01`` makes weak, noise-level gradients give short descriptors.

A constant image has zero gradient, so its descriptor is exactly zero.

An earlier version clipped the normalised descriptor at 0.2 (Lowe's rule) and rounded; it
agreed with the reference's bytes on 38-50% of the values and changed SIFT-Flow's result on
every ECSSD pair of the reference set, so it was removed.

References
----------
C. Liu, J. Yuen, A. Torralba, "SIFT Flow: Dense correspondence across scenes and its applications",
IEEE TPAMI 33(5), 2011.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["dense_sift"]

_N_BINS = 8
_N_CELLS = 4
_ORIENTATION_POWER = 9  # reference "alpha = 9"
_NORM_EPS = 0.01  # reference: v / (||v|| + 0.01)


@njit(cache=True, nogil=True)
def _gradients(img):
    """Step 1: unit gradient ([..., 0] = x, [..., 1] = y) and magnitude of the
    strongest channel. img: (H, W, C) float64."""
    h, w, nc = img.shape
    taps = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0
    unit = np.zeros((h, w, 2))
    mag = np.zeros((h, w))
    gx = np.empty(nc)
    gy = np.empty(nc)
    for y in range(h):
        for x in range(w):
            for c in range(nc):
                sx = 0.0
                sy = 0.0
                for t in range(5):
                    sx += img[y, min(max(x + t - 2, 0), w - 1), c] * taps[t]
                    sy += img[min(max(y + t - 2, 0), h - 1), x, c] * taps[t]
                gx[c] = sx
                gy[c] = sy
            best = np.sqrt(gx[0] * gx[0] + gy[0] * gy[0])
            if best != 0:
                unit[y, x, 0] = gx[0] / best
                unit[y, x, 1] = gy[0] / best
            for c in range(1, nc):
                m = np.sqrt(gx[c] * gx[c] + gy[c] * gy[c])
                if m > best:
                    best = m
                    unit[y, x, 0] = gx[c] / best
                    unit[y, x, 1] = gy[c] / best
            mag[y, x] = best
    return unit, mag


@njit(cache=True, nogil=True)
def _orientation_bands(unit, mag):
    """Step 2: ``E_k = m * max(0, cos(phi - theta_k)) ** 9`` per pixel, (H, W, 8)."""
    h, w = mag.shape
    theta = np.pi * 2 / _N_BINS
    band = np.empty((h, w, _N_BINS))
    for k in range(_N_BINS):
        sk = np.sin(theta * k)
        ck = np.cos(theta * k)
        for y in range(h):
            for x in range(w):
                t = max(unit[y, x, 0] * ck + unit[y, x, 1] * sk, 0.0)
                band[y, x, k] = t**_ORIENTATION_POWER * mag[y, x]
    return band


@njit(cache=True, nogil=True)
def _cell_filter(cell_size):
    """The reference's cell filter: ``2c + 1`` taps at ``-c .. c``, 0.25 at ``-c``, 1 at
    ``-c + 2 .. 1``."""
    taps = np.zeros(2 * cell_size + 1)
    taps[0] = 0.25
    for i in range(1, cell_size + 1):
        taps[i + 1] = 1.0
    return taps


@njit(cache=True, nogil=True)
def _pool(band, cell_size, axis):
    """Step 3, one axis: ``band`` correlated with the cell filter along ``axis`` (0: rows,
    1: columns), replicated borders; the taps in order, zero taps skipped (adding 0 * finite is
    exact, so the sums are the reference's)."""
    h, w, nb = band.shape
    taps = _cell_filter(cell_size)
    out = np.zeros((h, w, nb))
    for y in range(h):
        for t in range(taps.shape[0]):
            if taps[t] == 0.0:
                continue
            wt = taps[t]
            if axis == 0:
                yy = min(max(y + t - cell_size, 0), h - 1)
                for x in range(w):
                    for k in range(nb):
                        out[y, x, k] += band[yy, x, k] * wt
            else:
                for x in range(w):
                    xx = min(max(x + t - cell_size, 0), w - 1)
                    for k in range(nb):
                        out[y, x, k] += band[y, xx, k] * wt
    return out


def _cell_bands(unit, mag, cell_size):
    """Steps 2 and 3: orientation energies pooled by the reference's cell filter, (H, W, 8),
    horizontally then vertically. (Three kernels called from Python: compiled as one function,
    the same loops ran several times slower here.)"""
    return _pool(_pool(_orientation_bands(unit, mag), cell_size, 1), cell_size, 0)


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _sum_squares_any_order(v):
    """sum(v ** 2), summed in whatever order vectorises (reassociation allowed)."""
    n2 = 0.0
    for k in range(v.shape[0]):
        n2 += v[k] * v[k]
    return n2


@njit(cache=True, nogil=True)
def _assemble(cells, cell_size, out):
    """Steps 4 and 5: gather 16 cells per pixel, normalise, quantise into out (H, W, 128)."""
    h, w, nb = cells.shape
    dim = 16 * nb
    v = np.empty(dim)
    for y in range(h):
        for x in range(w):
            k = 0
            for i in range(-1, 3):
                yy = min(max(y + i * cell_size, 0), h - 1)
                for j in range(-1, 3):
                    xx = min(max(x + j * cell_size, 0), w - 1)
                    for b in range(nb):
                        v[k] = cells[yy, xx, b]
                        k += 1
            # Fast path: the norm summed in any order (vectorised) and a product by 255 / denom,
            # within a relative 1e-13 of the reference's left-to-right norm and division. The
            # truncated bytes can then differ only where 255 v / (||v|| + 0.01) lies within 1e-9
            # of a whole number >= 1 (below 1 both give 0); such descriptors are redone the
            # reference's way, so the bytes are the reference's.
            scale = 255.0 / (np.sqrt(_sum_squares_any_order(v)) + _NORM_EPS)
            near = 0
            for k in range(dim):
                q = v[k] * scale
                f = q - np.floor(q)
                near += (q > 0.5) & ((f < 1e-9) | (f > 1.0 - 1e-9))
                out[y, x, k] = np.uint8(min(q, 255.0))  # truncated
            if near == 0:
                continue
            n2 = 0.0
            for k in range(dim):
                n2 += v[k] * v[k]
            denom = np.sqrt(n2) + _NORM_EPS
            for k in range(dim):
                out[y, x, k] = np.uint8(min(v[k] / denom * 255.0, 255.0))


def dense_sift(image: np.ndarray, *, cell_size: int = 3) -> np.ndarray:
    """Per-pixel 128-d SIFT descriptors (SIFT-Flow's dense SIFT image, the reference's bytes).

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray
        RGB ``uint8`` image (or grey). Float images are taken as values in [0, 1].
    cell_size : int, optional
        Side of one of the 4x4 cells in pixels (SIFT-Flow reference: 3).

    Returns
    -------
    descriptors : (H, W, 128) ndarray of uint8
        Index ``[y, x, (4 * i + j) * 8 + b]``: cell row ``i``, cell column ``j`` (cells centred at
        ``y + (i - 1) * cell_size``, ``x + (j - 1) * cell_size``), orientation bin ``b``.

    Notes
    -----
    Orientation energy per bin ``E_k = m * max(0, cos(phi - 2 pi k / 8)) ** 9``, pooled over each
    cell; quantisation ``uint8(min(255 v / (||v|| + 0.01), 255))``. See the module docstring.

    References
    ----------
    C. Liu, J. Yuen, A. Torralba, "SIFT Flow", IEEE TPAMI 2011, Sec. 3.1.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or min(image.shape[:2]) < 1:
        raise ValueError(
            f"dense_sift expects an (H, W, 3) or (H, W) image, got shape {image.shape}"
        )
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"dense_sift expects a uint8 or float image, got dtype {image.dtype}")
    if int(cell_size) != cell_size or cell_size < 1:
        raise ValueError(f"cell_size must be a positive integer, got {cell_size!r}")
    cell_size = int(cell_size)
    if image.dtype == np.uint8:
        img = image.astype(np.float64) / 255.0  # im2double
    elif np.issubdtype(image.dtype, np.integer):
        img = image.astype(np.float64) / np.iinfo(image.dtype).max
    else:
        img = image.astype(np.float64)
    unit, mag = _gradients(np.ascontiguousarray(img))
    cells = _cell_bands(unit, mag, cell_size)
    out = np.empty(image.shape[:2] + (_N_CELLS * _N_CELLS * _N_BINS,), np.uint8)
    _assemble(cells, cell_size, out)
    return out
