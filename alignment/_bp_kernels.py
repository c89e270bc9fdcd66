"""Numba kernels of SIFT-Flow: data term, descriptor pyramid, dual-layer belief propagation.

All kernels are ``@njit(cache=True, nogil=True)`` and single-threaded, so that several pairs can
run in joblib threads on different cores. The formulas and every decision are documented in
:mod:`alignment.siftflow`; this module only implements them.

Layouts (per pyramid level, ``L = 2 * w + 1`` labels per layer, label ``l`` means the displacement
``offset + l - w`` of that layer):

* data term ``D[y, x, ly, lx]`` float32, contiguous per pixel (label-major);
* range term ``R[k, y, x, l]`` (``k = 0``: horizontal layer vx, ``k = 1``: vertical layer vy);
* spatial messages ``S[k, y, x, j, l]``, the message *into* pixel ``(y, x)`` of layer ``k`` from its
  neighbour ``j`` (0 left, 1 right, 2 above, 3 below);
* dual messages ``M[k, y, x, l]``, the message into layer ``k`` of pixel ``(y, x)`` from the other
  layer of the same pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Up to this many labels per layer, spatial messages use the direct L^2 min-convolution.
_BRUTE_MAX_LABELS = 9
# The message kernels' values are whole numbers (no NaN; infinity only as an argmin start), so
# these fast-math flags change no result: no NaN (plain min instructions), and reassociation,
# exact for integer-valued float32 sums in range.
_EXACT_FASTMATH = {"nnan", "nsz", "reassoc"}


@njit(cache=True, nogil=True)
def data_term(desc_a, desc_b, ox, oy, w, out):
    """SIFT Flow Eq. 3, data term (the reference does not truncate it).

    ``out[y, x, ly, lx] = ||s1(p) - s2(p + o(p) + (lx - w, ly - w))||_1``.

    Out-of-image candidates get -1. Returns the reference's default cost for matches outside
    the second image (:func:`_default_matching_score`).
    """
    h, wd, c = desc_a.shape
    h2, w2 = desc_b.shape[0], desc_b.shape[1]
    n_lab = 2 * w + 1
    hist = np.zeros(c * 255 + 1, np.int64)  # of the integer in-image costs
    total = 0
    narrow = c * 255 < 65536
    for y in range(h):
        for x in range(wd):
            for ly in range(n_lab):
                ty = y + oy[y, x] + ly - w
                for lx in range(n_lab):
                    tx = x + ox[y, x] + lx - w
                    if ty < 0 or ty >= h2 or tx < 0 or tx >= w2:
                        out[y, x, ly, lx] = -1.0
                        continue
                    if narrow:
                        # uint16 accumulator (C x 255 < 2**16): 16 lanes per AVX2 register, twice
                        # the int32 speed; |a - b| of uint8 as max - min.
                        s16 = np.uint16(0)
                        for k in range(c):
                            va = desc_a[y, x, k]
                            vb = desc_b[ty, tx, k]
                            s16 = np.uint16(s16 + np.uint16(max(va, vb) - min(va, vb)))
                        s = np.int64(s16)
                    else:
                        s = np.int64(0)
                        for k in range(c):
                            s += abs(np.int64(desc_a[y, x, k]) - np.int64(desc_b[ty, tx, k]))
                    out[y, x, ly, lx] = s
                    hist[s] += 1
                    total += 1
    return _default_matching_score(hist, total)


@njit(cache=True, nogil=True)
def _default_matching_score(hist, total):
    """The reference's price of a match outside image 2 (``BPFlow::ComputeDataTerm``).

    ``hist[c]``: how many in-image candidates cost ``c`` (an integer L1 distance). The
    reference bins the costs into a 20 000-bin histogram, bin ``floor(c / interval)`` with
    ``interval = (max - min) / 20000`` (the last bin open-ended); with ``i`` the first bin where
    the cumulative share reaches 1/2, the score is ``int(max(i, 1) * interval + min)``. The bins
    count from 0, not from ``min``, so this is about the median *plus* the minimum cost: the
    reference's rule, kept for equal flows. A bin depends only on the integer cost, so the
    shares are summed bin by bin from ``hist`` exactly as the reference sums them.
    """
    if total == 0:
        return 0.0
    lo = 0
    while hist[lo] == 0:
        lo += 1
    hi = hist.shape[0] - 1
    while hist[hi] == 0:
        hi -= 1
    n_bins = 20000
    interval = (np.float64(hi) - np.float64(lo)) / n_bins
    if interval <= 0.0:
        return float(lo)
    prob = 0.0
    current = -1
    count = 0
    for c in range(lo, hi + 2):
        b = int(min(np.float64(c) / interval, n_bins - 1.0)) if c <= hi else n_bins
        if b != current:
            if count > 0:  # close the previous bin
                prob += count / total
                if prob >= 0.5:
                    return float(np.int64(max(current, 1) * interval + lo))
            current = b
            count = 0
        if c <= hi:
            count += hist[c]
    return float(np.int64((n_bins - 1) * interval + lo))


@njit(cache=True, nogil=True)
def reduce_offsets(off):
    """Offsets of the grid coarsened by 2: the mean of the (up to 4) children, truncated
    towards zero as C's int division (``BPFlow::ReduceImage``)."""
    h, w = off.shape
    hc = (h + 1) // 2
    wc = (w + 1) // 2
    sums = np.zeros((hc, wc), np.int64)
    counts = np.zeros((hc, wc), np.int64)
    for y in range(h):
        for x in range(w):
            sums[y // 2, x // 2] += off[y, x]
            counts[y // 2, x // 2] += 1
    out = np.empty((hc, wc), np.int32)
    for y in range(hc):
        for x in range(wc):
            q = abs(sums[y, x]) // counts[y, x]
            out[y, x] = q if sums[y, x] >= 0 else -q
    return out


@njit(cache=True, nogil=True)
def expand_messages(S_c, M_c, S, M):
    """Each fine node takes the messages of its coarse parent (``BPFlow::propagateFinerLevel``):
    ``S[k, y, x] = S_c[k, y // 2, x // 2]``, likewise ``M``."""
    _, h, w, nj, n_lab = S.shape
    for k in range(2):
        for y in range(h):
            for x in range(w):
                for l in range(n_lab):
                    M[k, y, x, l] = M_c[k, y // 2, x // 2, l]
                for j in range(nj):
                    for l in range(n_lab):
                        S[k, y, x, j, l] = S_c[k, y // 2, x // 2, j, l]


@njit(cache=True, nogil=True)
def finish_data_term(out, default):
    """Out-of-image candidates <- default (the reference does not truncate the data term)."""
    flat = out.reshape(-1)
    for i in range(flat.shape[0]):
        if flat[i] < 0.0:
            flat[i] = default


@njit(cache=True, nogil=True, inline="always")
def _blur_source_rows(desc, y, g32, ring, ring_row):
    """Make the ring hold the horizontal pass of the ``len(g)`` source rows blurred row ``y``
    needs (replicated at the borders; slot = row % len(g)), computing only the missing ones."""
    h, w, c = desc.shape
    nk = g32.shape[0]
    r = nk // 2
    for t in range(nk):
        yy = min(max(y + t - r, 0), h - 1)
        slot = yy % nk
        if ring_row[slot] == yy:
            continue
        ring_row[slot] = yy
        for x in range(w):
            for k in range(c):
                ring[slot, x, k] = g32[r] * np.float32(desc[yy, x, k])
            for u in range(r):  # taps u and nk - 1 - u together: one product when they are equal
                xa = min(max(x + u - r, 0), w - 1)
                xb = min(max(x + r - u, 0), w - 1)
                ga = g32[u]
                gb = g32[nk - 1 - u]
                if ga == gb:
                    for k in range(c):
                        ring[slot, x, k] += ga * (np.float32(desc[yy, xa, k])
                                                  + np.float32(desc[yy, xb, k]))
                else:
                    for k in range(c):
                        ring[slot, x, k] += (ga * np.float32(desc[yy, xa, k])
                                             + gb * np.float32(desc[yy, xb, k]))


@njit(cache=True, nogil=True, inline="always")
def _blur_row_u8(desc, y, g, g32, ring, acc, out, o):
    """Blurred row ``y`` (the vertical pass over the ring) into ``out[o]``, rounded half up and
    saturated; outputs near a rounding boundary recomputed in float64 (see gauss_blur_u8)."""
    h, w, c = desc.shape
    nk = g32.shape[0]
    r = nk // 2
    mid = y % nk
    for x in range(w):
        for k in range(c):
            acc[k] = g32[r] * ring[mid, x, k]
        for t in range(r):  # as in the horizontal pass
            sa = min(max(y + t - r, 0), h - 1) % nk
            sb = min(max(y + r - t, 0), h - 1) % nk
            ga = g32[t]
            gb = g32[nk - 1 - t]
            if ga == gb:
                for k in range(c):
                    acc[k] += ga * (ring[sa, x, k] + ring[sb, x, k])
            else:
                for k in range(c):
                    acc[k] += ga * ring[sa, x, k] + gb * ring[sb, x, k]
        near = 0
        for k in range(c):
            v = acc[k]
            near += abs(v - np.floor(v) - np.float32(0.5)) < np.float32(1e-3)
            out[o, x, k] = np.uint8(min(max(np.floor(v + np.float32(0.5)), np.float32(0.0)),
                                        np.float32(255.0)))
        if near == 0:
            continue
        for k in range(c):  # near a rounding boundary: the float64 sum
            v = acc[k]
            if abs(v - np.floor(v) - np.float32(0.5)) < np.float32(1e-3):
                e = 0.0
                for t in range(nk):
                    yy = min(max(y + t - r, 0), h - 1)
                    row = 0.0
                    for u in range(nk):
                        row += g[u] * np.float64(desc[yy, min(max(x + u - r, 0), w - 1), k])
                    e += g[t] * row
                out[o, x, k] = np.uint8(min(max(np.floor(e + 0.5), 0.0), 255.0))


@njit(cache=True, nogil=True)
def gauss_blur_u8(desc, g):
    """MATLAB ``imfilter(desc, g' * g, 'same', 'replicate')`` of a uint8 image: correlation with
    the separable kernel ``g`` (odd length), rounded half up and saturated to uint8.

    Computed in float32 (twice the SIMD width of float64); an output whose float32 value lies
    within ``1e-3`` of a rounding boundary ``n + 1/2`` (float32's error here is below ``1e-4``)
    is recomputed in float64, so the result is the float64 one. The horizontal pass is kept for
    the ``len(g)`` source rows the vertical taps need (a ring of rows).
    """
    h, w, c = desc.shape
    nk = g.shape[0]
    g32 = g.astype(np.float32)
    ring = np.empty((nk, w, c), np.float32)
    ring_row = np.full(nk, -1, np.int64)
    out = np.empty((h, w, c), np.uint8)
    acc = np.empty(c, np.float32)
    for y in range(h):
        _blur_source_rows(desc, y, g32, ring, ring_row)
        _blur_row_u8(desc, y, g, g32, ring, acc, out, y)
    return out


@njit(cache=True, nogil=True)
def pyramid_level_u8(desc, g, row_index, row_w256, col_index, col_w256):
    """:func:`gauss_blur_u8` with ``g``, then one pass of MATLAB's ``imresize`` along rows
    with ``(row_index, row_w256)`` and one along columns with ``(col_index, col_w256)``, each
    pass rounded to uint8, computed row by row from small rings (no full-size intermediate).

    A pass is ``out[i] = round(sum_p w256[i, p] * src[index[i, p]] / 256)`` (half up,
    saturated): the weights of a halving bicubic resize are multiples of 1/256, so integer
    arithmetic is exact.

    Each output row's blurred source rows (a ring keyed by row % its size, which spans every
    output row's taps) are blurred once and halved along rows into one row, which is halved
    along columns into the output.
    """
    h, w, c = desc.shape
    nk = g.shape[0]
    n_out, n_taps = row_index.shape
    n_cols, n_col_taps = col_index.shape
    n_ring = 1  # the widest span of rows one output row reads
    for i in range(n_out):
        lo = h
        hi = -1
        for p in range(n_taps):
            if row_w256[i, p] != 0:
                lo = min(lo, row_index[i, p])
                hi = max(hi, row_index[i, p])
        n_ring = max(n_ring, hi - lo + 1)
    g32 = g.astype(np.float32)
    ring = np.empty((nk, w, c), np.float32)
    ring_row = np.full(nk, -1, np.int64)
    blurred = np.empty((n_ring, w, c), np.uint8)
    blurred_row = np.full(n_ring, -1, np.int64)
    half = np.empty((w, c), np.uint8)
    out = np.empty((n_out, n_cols, c), np.uint8)
    acc = np.empty(c, np.float32)
    iacc = np.empty(c, np.int32)
    for i in range(n_out):
        for p in range(n_taps):
            yy = row_index[i, p]
            slot = yy % n_ring
            if row_w256[i, p] != 0 and blurred_row[slot] != yy:
                blurred_row[slot] = yy
                _blur_source_rows(desc, yy, g32, ring, ring_row)
                _blur_row_u8(desc, yy, g, g32, ring, acc, blurred, slot)
        for x in range(w):  # rows: output row i at every column
            for k in range(c):
                iacc[k] = 0
            for p in range(n_taps):
                wp = row_w256[i, p]
                if wp == 0:
                    continue
                src = row_index[i, p] % n_ring
                for k in range(c):
                    iacc[k] += wp * np.int32(blurred[src, x, k])
            for k in range(c):
                half[x, k] = np.uint8(min(max((iacc[k] + 128) >> 8, 0), 255))
        for j in range(n_cols):  # then columns
            for k in range(c):
                iacc[k] = 0
            for p in range(n_col_taps):
                wp = col_w256[j, p]
                if wp == 0:
                    continue
                src = col_index[j, p]
                for k in range(c):
                    iacc[k] += wp * np.int32(half[src, k])
            for k in range(c):
                out[i, j, k] = np.uint8(min(max((iacc[k] + 128) >> 8, 0), 255))
    return out


@njit(cache=True, nogil=True, inline="always", fastmath=_EXACT_FASTMATH)
def _send(h, cone, Sk, off, y, x, qy, qx, j_in, s, d, n_lab):
    """Spatial message from (y, x) to (qy, qx) given ``h`` (p's belief without q's message).

    ``m(l_q) = min(min_lp h(l_p) + s |a(l_p) - a(l_q)|, min h + d) - min h`` (truncated-L1
    compatibility; ``a`` the absolute displacement). ``h`` may be overwritten. The result lands in
    ``Sk[qy, qx, j_in]``. (No array views in the hot loops: each would cost reference counting.)
    """
    mn = h[0]
    for l in range(1, n_lab):
        mn = min(mn, h[l])
    cap = mn + d
    shift = off[qy, qx] - off[y, x]
    # The message is normalised by min h, not by its own minimum (which is >= min h): the same up
    # to a constant in [0, d], and it keeps a minimum search off the sequential critical path.
    if shift == 0 and n_lab <= _BRUTE_MAX_LABELS:
        # Small windows: the min-convolution with the L1 cone ``cone[i, l] = s |i - l|`` directly;
        # L^2 independent operations have a shorter dependency chain than the 2 (L - 1) serial
        # steps of the distance transform, and this loop is the sweep's critical path.
        for l in range(n_lab):
            v = h[0] + cone[0, l]
            for i in range(1, n_lab):
                v = min(v, h[i] + cone[i, l])
            Sk[qy, qx, j_in, l] = min(v, cap) - mn
        return
    if shift > n_lab - 1 or shift < 1 - n_lab:
        # The two windows do not overlap. The reference (``BPFlow::UpdateSpatialMessage``) then
        # sends ``l * s`` whatever the sign of the shift (``(L - 1 - l) * s`` from the first
        # pixel of the image), capped at min h + d: kept as it is for equal flows.
        for l in range(n_lab):
            if y == 0 and x == 0:
                Sk[qy, qx, j_in, l] = s * (n_lab - 1 - l)
            else:
                Sk[qy, qx, j_in, l] = min(s * l, cap)
        return
    for l in range(1, n_lab):  # distance transform, forward pass: O(L)
        h[l] = min(h[l], h[l - 1] + s)
    for l in range(n_lab - 2, -1, -1):  # backward pass
        h[l] = min(h[l], h[l + 1] + s)
    if shift == 0:
        for l in range(n_lab):
            Sk[qy, qx, j_in, l] = min(h[l], cap) - mn
    else:
        # Re-index into q's labels: same absolute displacement, p-label i = q-label l + shift;
        # outside p's window the L1 cone continues exactly.
        for l in range(n_lab):
            i = l + shift
            if i < 0:
                v = h[0] + s * (-i)
            elif i >= n_lab:
                v = h[n_lab - 1] + s * (i - n_lab + 1)
            else:
                v = h[i]
            Sk[qy, qx, j_in, l] = min(v, cap) - mn


@njit(cache=True, nogil=True, inline="always", fastmath=_EXACT_FASTMATH)
def _dual(D, base, Mo, k, y, x, n_lab):
    """Dual message from layer k to the other layer at (y, x); ``base`` = k's range + spatial."""
    if k == 0:  # vx -> vy: m(ly) = min_lx D[ly, lx] + base(lx)
        for ly in range(n_lab):
            mn = D[y, x, ly, 0] + base[0]
            for lx in range(1, n_lab):
                mn = min(mn, D[y, x, ly, lx] + base[lx])
            Mo[y, x, ly] = mn
    else:  # vy -> vx: m(lx) = min_ly D[ly, lx] + base(ly)
        for lx in range(n_lab):
            Mo[y, x, lx] = D[y, x, 0, lx] + base[0]
        for ly in range(1, n_lab):
            b = base[ly]
            for lx in range(n_lab):
                Mo[y, x, lx] = min(Mo[y, x, lx], D[y, x, ly, lx] + b)
    best = Mo[y, x, 0]
    for l in range(1, n_lab):
        best = min(best, Mo[y, x, l])
    for l in range(n_lab):
        Mo[y, x, l] -= best


@njit(cache=True, nogil=True, fastmath=_EXACT_FASTMATH)
def _sweep(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, k, forward, dual, s, d, cone, base, h, h2):
    """Dispatch to a copy of the sweep specialised for the label count (``_sweep_n``)."""
    n_lab = Sk.shape[3]
    # With a literal label count LLVM unrolls the tiny per-label loops (5 labels: the finest level
    # with the defaults, where most of the time goes; measured ~25% faster there). One copy only:
    # each inlined copy adds ~7 s of first-call compilation.
    if n_lab == 5:
        _sweep_n(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, k, forward, dual, s, d, cone, base, h, h2, 5)
    elif n_lab == 7:
        _sweep_n(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, k, forward, dual, s, d, cone, base, h, h2, 7)
    else:
        _sweep_n(
            D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, k, forward, dual, s, d, cone, base, h, h2, n_lab
        )


@njit(cache=True, nogil=True, inline="always", fastmath=_EXACT_FASTMATH)
def _sweep_n(D, Sk, Mk, Rk, Xk, So, Mo, Ro, Xo, off, k, forward, dual, s, d, cone, base, h, h2, n_lab):
    """One raster sweep of layer k (forward: right + down, backward: left + up) + dual messages.

    The sums are ordered so that the message just written by the previous pixel of the row (the
    sweep's serial dependency) is added last. When pixel p is visited, every message into p of
    layer k is already final for this sweep (those from the already visited side were just
    written, the others are not sent in this direction), and so is the dual message it sends to
    the other layer ``o``: the label of minimum belief is taken on the way for layer k (``Xk``)
    and, on dual iterations, for layer o (``Xo``), saving a pass over the messages.
    """
    hh, wd = Sk.shape[0], Sk.shape[1]
    # Forward: to the right (arrives in q's slot 0, "from the left") and down (slot 2);
    # backward: to the left (slot 1) and up (slot 3).
    dx = 1 if forward else -1
    dy = dx
    ja = 0 if forward else 1
    jb = 2 if forward else 3
    for yy in range(hh):
        y = yy if forward else hh - 1 - yy
        for xx in range(wd):
            x = xx if forward else wd - 1 - xx
            # Horizontal message to qx = x + dx, arriving in slot ``ja`` (the side it comes
            # from); vertical one to qy = y + dy arriving in slot ``jb``. ``ja`` is also the slot
            # of p's own serial input (the message just sent by the previous pixel of the row).
            # All terms are whole numbers (the reference's int messages) far inside float32's
            # exact range, so sums can be regrouped freely: the parts off the serial chain
            # first, p's serial input S[ja] (just sent by the previous pixel) added last.
            send_x = x + dx >= 0 and x + dx < wd
            send_y = y + dy >= 0 and y + dy < hh
            for l in range(n_lab):
                rm = Rk[y, x, l] + Mk[y, x, l]
                vert = Sk[y, x, 2, l] + Sk[y, x, 3, l]
                side = Sk[y, x, 1 - ja, l]
                chain = Sk[y, x, ja, l]
                h[l] = (rm + vert) + chain
                h2[l] = (rm + (side + Sk[y, x, jb, l])) + chain
                base[l] = (Rk[y, x, l] + vert) + (side + chain)
            if send_x:
                _send(h, cone, Sk, off, y, x, y, x + dx, ja, s, d, n_lab)
            if send_y:
                _send(h2, cone, Sk, off, y, x, y + dy, x, jb, s, d, n_lab)
            best = np.float32(np.inf)
            arg = 0
            for l in range(n_lab):
                v = base[l] + Mk[y, x, l]
                if v < best:
                    best = v
                    arg = l
            Xk[y, x] = arg
            if dual:
                _dual(D, base, Mo, k, y, x, n_lab)
                best = np.float32(np.inf)
                arg = 0
                for l in range(n_lab):
                    s23 = So[y, x, 2, l] + So[y, x, 3, l]
                    v = ((Ro[y, x, l] + So[y, x, 0, l]) + (So[y, x, 1, l] + s23)) + Mo[y, x, l]
                    if v < best:
                        best = v
                        arg = l
                Xo[y, x] = arg


@njit(cache=True, nogil=True)
def _labels(Sk, Mk, Rk, Xk):
    """Per-layer label of minimum belief ``R + M + sum of the 4 spatial messages``."""
    hh, wd, _, n_lab = Sk.shape
    for y in range(hh):
        for x in range(wd):
            best = np.float32(np.inf)
            arg = 0
            for l in range(n_lab):
                v = (Rk[y, x, l] + Mk[y, x, l]) + (Sk[y, x, 0, l] + Sk[y, x, 1, l]) + (
                    Sk[y, x, 2, l] + Sk[y, x, 3, l]
                )
                if v < best:
                    best = v
                    arg = l
            Xk[y, x] = arg


@njit(cache=True, nogil=True)
def _energy(D, R, ox, oy, s, d, X):
    """Energy (SIFT Flow Eq. 3) of the labelling X[k, y, x]."""
    hh, wd = ox.shape
    e = 0.0
    for y in range(hh):
        for x in range(wd):
            lx = X[0, y, x]
            ly = X[1, y, x]
            e += D[y, x, ly, lx] + R[0, y, x, lx] + R[1, y, x, ly]
            ax = ox[y, x] + lx
            ay = oy[y, x] + ly
            if x + 1 < wd:
                e += min(s * abs(ax - ox[y, x + 1] - X[0, y, x + 1]), d)
                e += min(s * abs(ay - oy[y, x + 1] - X[1, y, x + 1]), d)
            if y + 1 < hh:
                e += min(s * abs(ax - ox[y + 1, x] - X[0, y + 1, x]), d)
                e += min(s * abs(ay - oy[y + 1, x] - X[1, y + 1, x]), d)
    return e


@njit(cache=True, nogil=True)
def bp_level(D, R, ox, oy, w, s, d, n_iterations, X, energy, S, M):
    """Sequential dual-layer BP (the reference's BP_S schedule) on one pyramid level.

    ``S`` (spatial) and ``M`` (dual) are the initial messages, updated in place: zeros, or the
    coarser grid's messages (:func:`expand_messages`). Iteration ``t`` updates layer
    ``k = t % 2`` only: a forward raster sweep sending messages right and down when
    ``t % 4 < 2``, else a backward sweep sending left and up; the dual message from layer k to
    the other layer is refreshed on the way when ``t % 8 < 4``. After every iteration the labels
    are the per-layer belief minima (taken during the sweep) and, when ``energy`` is not empty,
    ``energy[t]`` their energy.
    """
    hh, wd = ox.shape
    n_lab = 2 * w + 1
    base = np.empty(n_lab, np.float32)
    h = np.empty(n_lab, np.float32)
    h2 = np.empty(n_lab, np.float32)
    s32 = np.float32(s)
    d32 = np.float32(d)
    cone = np.empty((n_lab, n_lab), np.float32)
    for i in range(n_lab):
        for l in range(n_lab):
            cone[i, l] = s32 * abs(i - l)
    for t in range(n_iterations):
        k = t % 2
        off = ox if k == 0 else oy
        o = 1 - k
        dual = t % 8 < 4  # t = 0 included: both layers get their first labels
        _sweep(
            D, S[k], M[k], R[k], X[k], S[o], M[o], R[o], X[o], off, k, t % 4 < 2, dual,
            s32, d32, cone, base, h, h2,
        )
        if energy.shape[0] > 0:
            energy[t] = _energy(D, R, ox, oy, s, d, X)
    if n_iterations == 0:
        for k in range(2):
            _labels(S[k], M[k], R[k], X[k])


@njit(cache=True, nogil=True)
def range_term(ox, oy, w, gamma, out):
    """SIFT Flow Eq. 3 small-displacement term per layer and label, stored as the reference's
    int messages: ``out[k, y, x, l] = floor(gamma * |offset_k(y, x) + l - w|)``."""
    h, wd = ox.shape
    for y in range(h):
        for x in range(wd):
            for l in range(2 * w + 1):
                out[0, y, x, l] = np.floor(gamma * abs(np.float64(ox[y, x] + l - w)))
                out[1, y, x, l] = np.floor(gamma * abs(np.float64(oy[y, x] + l - w)))


@njit(cache=True, nogil=True)
def reduce_data_term(D):
    """The data term of the grid coarsened by 2 (``BPFlow::generateCoarserLevel``): each coarse
    node's cost per label is the sum of its (up to 4) fine children's costs for that label."""
    h, w, ny, nx = D.shape
    hc = (h + 1) // 2
    wc = (w + 1) // 2
    out = np.zeros((hc, wc, ny, nx), np.float32)
    for y in range(h):
        for x in range(w):
            for a in range(ny):
                for b in range(nx):
                    out[y // 2, x // 2, a, b] += D[y, x, a, b]
    return out


@njit(cache=True, nogil=True)
def match_cost(desc_a, desc_b, vx, vy, cost, valid):
    """Per-pixel L2 SIFT distance ``||s1(p) - s2(p + w(p))||_2`` (target clamped into image 2)."""
    h, wd, c = desc_a.shape
    h2, w2 = desc_b.shape[0], desc_b.shape[1]
    for y in range(h):
        for x in range(wd):
            ty = y + vy[y, x]
            tx = x + vx[y, x]
            valid[y, x] = 0 <= ty < h2 and 0 <= tx < w2
            ty = min(max(ty, 0), h2 - 1)
            tx = min(max(tx, 0), w2 - 1)
            acc = 0
            for k in range(c):
                dd = np.int32(desc_a[y, x, k]) - np.int32(desc_b[ty, tx, k])
                acc += dd * dd
            cost[y, x] = np.sqrt(np.float32(acc))
