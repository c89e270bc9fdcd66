"""Numba kernels of the GIST energy step (one pass each over an ``(H, W, 2)`` complex plane)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=True)
def _apply_filter(spec, g, out):  # pragma: no cover - compiled
    """out = spec * g for a complex spectrum stored as ``(H, W, 2)`` float32 and a real filter."""
    h, w = g.shape
    for j in range(h):
        for i in range(w):
            gi = g[j, i]
            out[j, i, 0] = spec[j, i, 0] * gi
            out[j, i, 1] = spec[j, i, 1] * gi


@njit(cache=True, fastmath=True)
def _amplitude_block_means(z, ey, ex, out):  # pragma: no cover - compiled
    """out[bx, by] = mean of |z| over the block (rows ey[by]:ey[by+1], cols ex[bx]:ex[bx+1])."""
    nb = ey.shape[0] - 1
    acc = np.zeros((nb, nb), dtype=np.float64)
    for by in range(nb):
        for j in range(ey[by], ey[by + 1]):
            for bx in range(nb):
                s = 0.0
                for i in range(ex[bx], ex[bx + 1]):
                    re = z[j, i, 0]
                    im = z[j, i, 1]
                    s += np.sqrt(re * re + im * im)
                acc[by, bx] += s
    for by in range(nb):
        for bx in range(nb):
            out[bx, by] = acc[by, bx] / ((ey[by + 1] - ey[by]) * (ex[bx + 1] - ex[bx]))
