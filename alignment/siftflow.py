"""SIFT-Flow: dense discrete correspondence between two dense-SIFT images.

Paper first: MIJR (Sec. III-A) obtains "inter-image pixel-wise correspondences" ``Q_S`` and the
pixel-wise feature distance ``||f(i), f(j)||_2`` from SIFT-Flow [49] (Liu, Yuen, Torralba, "SIFT
Flow: dense correspondence across scenes and its applications", TPAMI 2011). This module is that
SIFT-Flow, with the defaults of the reference demo for 8-bit descriptors.

Energy (SIFT Flow, Eq. 3), flow ``w(p) = (u(p), v(p))`` on the pixel grid of image 1,
4-neighbourhood ``eps``::

    E(w) = sum_p min(||s1(p) - s2(p + w(p))||_1, t)                    (data term)
         + sum_p eta * (|u(p)| + |v(p)|)                               (small displacement)
         + sum_(p,q) in eps  min(alpha |u(p) - u(q)|, d)
                           + min(alpha |v(p) - v(q)|, d)               (smoothness)

Parameters, with the reference's meaning (``SIFTflowc2f.m`` / ``mexDiscreteFlow``):

* ``alpha = 2 * 255``: weight of the L1 smoothness (``s`` in ``BPFlow``), per pixel of flow
  difference; descriptors are 0..255 so costs are in "descriptor units".
* ``d = 40 * 255``: truncation of the smoothness term (a discontinuity costs at most ``d``, i.e.
  flow jumps of more than ``d / alpha = 20`` pixels all cost the same). As asked by the issue, the
  data term is truncated at the same ``t = d``; with 128 x 8-bit descriptors the L1 distances stay
  far below 10200, so this truncation is in practice inactive. (The reference's ``BPFlow`` class
  defaults to no data-term truncation, ``IsDataTermTruncated = false``; when switched on it
  truncates at the median matching cost.)
* ``gamma = 0.005 * 255`` (``eta`` in the paper): small-displacement weight at the finest level;
  at pyramid level ``i`` (0 = finest) it is ``gamma * 2**i`` because one coarse pixel spans
  ``2**i`` fine pixels (reference: ``gamma * 2^(i-1)`` with 1-based levels).
* ``n_levels = 4``: pyramid levels; ``top_window = 10``: search window radius at the coarsest
  level (``21 x 21`` displacements around zero); ``window = 2``: radius at the finest level around
  the up-sampled coarser flow, ``window + i`` at level ``i`` (reference: ``wsize + i - 1``).
* ``n_top_iterations = 60`` BP iterations at the coarsest level, ``n_iterations = 30`` at the
  others.

Optimisation (SIFT Flow, Sec. 3.2): the horizontal and vertical flows are two coupled layers
(dual-layer loopy BP). Each layer is a 4-connected grid with the L1-truncated smoothness and the
range term as unary; the data term couples ``u(p)`` and ``v(p)`` of the same pixel. Messages:

* spatial, in layer ``k`` from ``p`` to neighbour ``q``:
  ``m_pq(l_q) = min_lp [ h(l_p) + min(alpha |a(l_p) - a(l_q)|, d) ]`` with
  ``h = range_p + dual_p + sum of the spatial messages into p except q's``, ``a(l)`` the absolute
  displacement of label ``l``. Computed in O(L) by the distance transform of the L1 part (one
  forward and one backward pass), re-indexed from p's label window to q's (their offsets differ
  after the coarse-to-fine initialisation; outside p's window the L1 cone is continued
  exactly), then clipped at ``min h + d`` and normalised (see the decisions below).
* dual, from layer ``u`` to layer ``v`` at ``p``: ``m(l_v) = min_lu [ D_p(l_u, l_v) + h_u(l_u) ]``
  with ``h_u = range_p + all spatial messages into p`` (O(L^2), the cost of the model), and
  symmetrically.
* schedule: the reference's sequential ``BP_S``. Iteration ``t`` touches layer ``t % 2``; it is a
  forward raster sweep (messages to the right and down) when ``t % 4 < 2`` and a backward sweep
  (left and up) otherwise; dual messages are refreshed during the sweep when ``t % 8 < 4``. Since
  messages are updated in place, a sweep carries information across the whole image (the
  "accelerated" sequential BP). After each iteration each layer takes the label of minimum belief
  ``range + dual + 4 spatial messages`` and the energy (Eq. 3) of that labelling is recorded
  (``energy_levels``; entry ``t`` is the energy after iteration ``t``).

Coarse-to-fine (SIFT Flow, Sec. 3.2): the SIFT images are smoothed with the reference's 5-tap
Gaussian (sigma 0.67) and decimated by 2 (``n_levels - 1`` times). At the coarsest level the
search is ``[-top_window, top_window]^2`` around zero; at the next finer level the flow is
up-sampled (bilinear, times 2, rounded) and becomes the per-pixel offset of a window of radius
``window + i``.

Decisions the paper leaves open (and their reasons)
---------------------------------------------------
* Matches that fall outside image 2 cost the median of the in-image matching costs of the level
  (the reference's ``DefaultMatchingScore``): "unknown" is priced as a typical match, so border
  pixels are neither attracted nor repelled by out-of-image labels.
* Message initialisation. The reference starts from zero messages (plus a few BP iterations on an
  internally coarsened MRF, ``nHierarchy``). With zero dual messages the first sweep of the
  horizontal layer sees only the range term; the sequential sweep multiplies that bias along the
  grid until the truncation, and the two layers then lock each other into the small-displacement
  labelling: on a 128x128 image shifted by (3, -2) only 69% of the pixels were recovered at the
  reference gamma (0% with one level), 100% with gamma = 0. We therefore send, before the first
  iteration, one dual message each way computed from the data and range terms alone
  (``m(l_v) = min_lu D_p(l_u, l_v) + range_p(l_u)``): BP then starts from the data term. With it
  the shift is recovered on 100% of the pixels at every gamma tried (0.001 to 1.275). We do not
  implement ``nHierarchy``: the coarse-to-fine offsets already carry the coarse solution;
  accuracy is measured in ``benchmarks/bench_siftflow.py`` (stereo pair: 0.72 of the pixels
  within 1 pixel, against 0.67 quoted for the C++ reference).
* Message normalisation. A spatial message is normalised by subtracting ``min h`` (the minimum of
  the sender's belief) instead of its own minimum: the two differ by a constant in ``[0, d]``
  (messages stay bounded, beliefs' argmins are unchanged) and this takes a minimum search off the
  sweep's serial dependency chain. Dual messages are normalised to minimum 0.
* Small windows (``L <= 9`` labels, i.e. every level but the coarsest with the defaults) compute
  the spatial message as the direct min-convolution with the L1 cone, ``L^2`` independent
  operations, rather than the two serial O(L) passes of the distance transform, whose chain is the
  sweep's critical path; the result is identical. Labels whose window is shifted relative to the
  neighbour's (different offsets) and large windows use the distance transform.
* Early stopping is not used: fewer iterations lose accuracy (stereo pair, within 1 pixel:
  0.72 at 30 iterations, 0.71 at 24, 0.63 at 16, 0.47 at 12).
* The L1 data term sums ``|s1 - s2|`` over 128 uint8 channels in a 16-bit accumulator
  (``128 * 255 < 2**16``; wider descriptors fall back to 64-bit): exact, and twice as fast.
* Messages and costs are float32 (the reference uses int messages): data and smoothness costs
  are integers far below float32's exact-integer range; only the range term carries rounding, at
  the 1e-7 relative level.
* The per-pixel matching cost returned is the L2 SIFT distance ``||s1(p) - s2(p + w(p))||_2`` (the
  quantity MIJR Eq. 2 averages), at the target clamped into image 2; ``valid`` says where
  ``p + w(p)`` lies inside image 2.

Performance
-----------
All loops are numba kernels in :mod:`alignment._bp_kernels` (``nogil``, single-threaded: pairs
run in parallel threads). Layouts are label-major and contiguous per pixel; the hot loops index
arrays directly (array views would cost reference counting per pixel); the sweep is compiled
separately for 5 labels (the finest level with the defaults) so the per-label loops unroll; the
belief labels are taken during the sweep (each pixel's incoming messages are final when it is
visited). About 80% of the time is BP at the two finest levels. ``benchmarks/bench_siftflow.py`` measures it.

References
----------
C. Liu, J. Yuen, A. Torralba, "SIFT Flow: Dense correspondence across scenes and its applications",
IEEE TPAMI 33(5):978-994, 2011.
P. F. Felzenszwalb, D. P. Huttenlocher, "Efficient belief propagation for early vision", IJCV 2006
(distance transform of truncated-L1 messages).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from alignment import _bp_kernels as _k

__all__ = ["SiftFlowResult", "sift_flow"]


@dataclass(frozen=True)
class SiftFlowResult:
    """Result of :func:`sift_flow`.

    Attributes
    ----------
    vx, vy : (H, W) ndarray of int32
        Flow from image 1 (the target) to image 2 (the neighbour): pixel ``(y, x)`` of image 1
        matches ``(y + vy, x + vx)`` of image 2.
    cost : (H, W) ndarray of float32
        Matching cost ``||s1(p) - s2(p + w(p))||_2`` (L2 SIFT distance), target clamped to image 2.
    valid : (H, W) ndarray of bool
        True where ``p + w(p)`` lies inside image 2.
    energy : (n_iterations,) ndarray of float64
        BP energy after each iteration at the finest level.
    energy_levels : tuple of ndarray
        Energy per iteration at every level, coarsest first (the last one is ``energy``).
    """

    vx: np.ndarray
    vy: np.ndarray
    cost: np.ndarray
    valid: np.ndarray
    energy: np.ndarray
    energy_levels: tuple[np.ndarray, ...]


def _pyramid_kernel():
    # Reference: fspecial('gaussian', 5, 0.67), then a 0.5 resize; the decimation is the 2-tap
    # mean of the two fine pixels around each coarse pixel centre (half-pixel alignment).
    x = np.arange(-2, 3, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * 0.67**2))
    g /= g.sum()
    return np.convolve(g, [0.5, 0.5]).astype(np.float32)  # taps at -2 .. +3


def _upsample_flow(v, shape):
    up = cv2.resize(v.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.rint(up * 2.0).astype(np.int32)


def _range_term(ox, oy, w, gamma):
    lab = np.arange(-w, w + 1, dtype=np.float32)
    r = np.empty((2,) + ox.shape + (2 * w + 1,), np.float32)
    r[0] = gamma * np.abs(ox[..., None] + lab)
    r[1] = gamma * np.abs(oy[..., None] + lab)
    return r


def sift_flow(
    desc_a: np.ndarray,
    desc_b: np.ndarray,
    *,
    alpha: float = 2 * 255,
    d: float = 40 * 255,
    gamma: float = 0.005 * 255,
    n_levels: int = 4,
    window: int = 2,
    top_window: int = 10,
    n_top_iterations: int = 60,
    n_iterations: int = 30,
) -> SiftFlowResult:
    """Dense SIFT-Flow from image 1 to image 2 (coarse-to-fine dual-layer BP).

    Parameters
    ----------
    desc_a : (H, W, C) ndarray of uint8
        Dense SIFT image of image 1 (the target), e.g. :func:`alignment.dense_sift.dense_sift`.
    desc_b : (H2, W2, C) ndarray of uint8
        Dense SIFT image of image 2 (the neighbour); same ``C``, size may differ.
    alpha : float, optional
        Smoothness weight per pixel of flow difference (reference: ``2 * 255``).
    d : float, optional
        Truncation of the smoothness and data terms (reference: ``40 * 255``).
    gamma : float, optional
        Small-displacement weight ``eta`` at the finest level (reference: ``0.005 * 255``).
    n_levels : int, optional
        Pyramid levels (reference: 4).
    window : int, optional
        Search radius around the up-sampled coarser flow at the finest level (``window + i`` at
        level ``i``; reference: 2).
    top_window : int, optional
        Search radius around zero at the coarsest level (reference: 10).
    n_top_iterations, n_iterations : int, optional
        BP iterations at the coarsest level and at every other level (reference: 60, 30).

    Returns
    -------
    result : SiftFlowResult
        ``vx, vy`` (int32), ``cost`` (float32 L2 SIFT distance), ``valid``, ``energy`` and
        ``energy_levels``.

    Notes
    -----
    Minimises (SIFT Flow Eq. 3)
    ``sum_p min(||s1(p) - s2(p + w)||_1, d) + gamma (|u| + |v|)
    + sum_pq min(alpha |u_p - u_q|, d) + min(alpha |v_p - v_q|, d)``
    by sequential dual-layer loopy BP with O(L) distance-transform messages; see the module
    docstring for the schedule and every decision.

    References
    ----------
    C. Liu, J. Yuen, A. Torralba, "SIFT Flow", IEEE TPAMI 2011.
    """
    desc_a = np.asarray(desc_a)
    desc_b = np.asarray(desc_b)
    for name, arr in (("desc_a", desc_a), ("desc_b", desc_b)):
        if arr.ndim != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"{name} must be an (H, W, C) uint8 dense-SIFT image, got shape {arr.shape} "
                f"dtype {arr.dtype}"
            )
    if desc_a.shape[2] != desc_b.shape[2]:
        raise ValueError(
            f"desc_a and desc_b must have the same descriptor length, got {desc_a.shape[2]} "
            f"and {desc_b.shape[2]}"
        )
    if int(n_levels) != n_levels or n_levels < 1:
        raise ValueError(f"n_levels must be a positive integer, got {n_levels!r}")
    for name, val in (("window", window), ("top_window", top_window),
                      ("n_top_iterations", n_top_iterations), ("n_iterations", n_iterations)):
        if int(val) != val or val < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {val!r}")
    for name, val in (("alpha", alpha), ("d", d), ("gamma", gamma)):
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {val!r}")
    n_levels = int(n_levels)
    min_side = min(desc_a.shape[:2] + desc_b.shape[:2])
    if min_side < 2 ** (n_levels - 1):
        raise ValueError(
            f"images of side {min_side} are too small for n_levels={n_levels} "
            f"(need at least {2 ** (n_levels - 1)} pixels per side)"
        )

    kernel = _pyramid_kernel()
    pyr_a = [np.ascontiguousarray(desc_a)]
    pyr_b = [np.ascontiguousarray(desc_b)]
    for _ in range(n_levels - 1):
        pyr_a.append(_k.downsample(pyr_a[-1], kernel))
        pyr_b.append(_k.downsample(pyr_b[-1], kernel))

    energies = []
    vx = vy = None
    for lev in range(n_levels - 1, -1, -1):
        a, b = pyr_a[lev], pyr_b[lev]
        shape = a.shape[:2]
        if lev == n_levels - 1:
            ox = np.zeros(shape, np.int32)
            oy = np.zeros(shape, np.int32)
            w, iters = int(top_window), int(n_top_iterations)
        else:
            ox = _upsample_flow(vx, shape)
            oy = _upsample_flow(vy, shape)
            w, iters = int(window) + lev, int(n_iterations)
        n_lab = 2 * w + 1
        dterm = np.empty(shape + (n_lab, n_lab), np.float32)
        default = _k.data_term(a, b, ox, oy, w, dterm)
        _k.finish_data_term(dterm, np.float32(default), np.float32(d))  # Eq. 3 data term
        rterm = _range_term(ox, oy, w, np.float32(gamma * 2.0**lev))  # Eq. 3 small displacement
        labels = np.empty((2,) + shape, np.int32)
        energy = np.zeros(iters, np.float64)
        _k.bp_level(dterm, rterm, ox, oy, w, float(alpha), float(d), iters, labels, energy)
        vx = (labels[0] + ox - w).astype(np.int32)
        vy = (labels[1] + oy - w).astype(np.int32)
        energies.append(energy)

    cost = np.empty(desc_a.shape[:2], np.float32)
    valid = np.empty(desc_a.shape[:2], np.bool_)
    _k.match_cost(pyr_a[0], pyr_b[0], vx, vy, cost, valid)
    return SiftFlowResult(
        vx=vx, vy=vy, cost=cost, valid=valid, energy=energies[-1], energy_levels=tuple(energies)
    )
