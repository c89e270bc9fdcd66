"""Numba kernels over superpixel label maps.

Every per-superpixel statistic in the project goes through these kernels, so that no
method package loops over pixels or superpixels in Python. Each kernel makes one pass over
the pixels (O(H*W*C)); all of them release the GIL so joblib threads can run them side by side.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _region_sum(values2d, labels1d, n):
    # values2d: (P, C) float64, labels1d: (P,) int
    out = np.zeros((n, values2d.shape[1]), dtype=np.float64)
    for p in range(labels1d.shape[0]):
        lab = labels1d[p]
        for c in range(values2d.shape[1]):
            out[lab, c] += values2d[p, c]
    return out


@numba.njit(cache=True, nogil=True)
def _region_count(labels1d, n):
    out = np.zeros(n, dtype=np.int64)
    for p in range(labels1d.shape[0]):
        out[labels1d[p]] += 1
    return out


@numba.njit(cache=True, nogil=True)
def _region_coord_sum(labels2d, n):
    out = np.zeros((n, 2), dtype=np.float64)
    h, w = labels2d.shape
    for r in range(h):
        for c in range(w):
            lab = labels2d[r, c]
            out[lab, 0] += r
            out[lab, 1] += c
    return out


@numba.njit(cache=True, nogil=True)
def _adjacency(labels2d, n):
    adj = np.zeros((n, n), dtype=np.bool_)
    h, w = labels2d.shape
    for r in range(h):
        for c in range(w):
            a = labels2d[r, c]
            if c + 1 < w:
                b = labels2d[r, c + 1]
                if a != b:
                    adj[a, b] = True
                    adj[b, a] = True
            if r + 1 < h:
                b = labels2d[r + 1, c]
                if a != b:
                    adj[a, b] = True
                    adj[b, a] = True
    return adj


@numba.njit(cache=True, nogil=True)
def _relabel_contiguous(labels1d, max_label):
    lut = np.full(max_label + 1, -1, dtype=np.int64)
    out = np.empty(labels1d.shape[0], dtype=np.int32)
    nxt = 0
    for p in range(labels1d.shape[0]):
        lab = labels1d[p]
        if lut[lab] < 0:
            lut[lab] = nxt
            nxt += 1
        out[p] = lut[lab]
    return out, nxt
