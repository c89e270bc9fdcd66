"""SIFT-Flow: dense discrete correspondence between two dense-SIFT images.

Paper first: MIJR (Sec. III-A) obtains "inter-image pixel-wise correspondences" ``Q_S`` and the
pixel-wise feature distance ``||f(i), f(j)||_2`` from SIFT-Flow [49] (Liu, Yuen, Torralba, "SIFT
Flow: dense correspondence across scenes and its applications", TPAMI 2011). This module is that
SIFT-Flow as Ce Liu's C++ release computes it (``SIFTflowc2f.m`` + ``mexDiscreteFlow`` /
``BPFlow``), with the defaults of its demo. On the reference outputs in ``siftflow-ref`` (a
known shift and six ECSSD pairs, 256x256) the flow equals the C++ flow on every pixel and the
final energy equals the C++ ``final_energy`` (``benchmarks/bench_siftflow_ref.py``).

Energy (SIFT Flow, Eq. 3), flow ``w(p) = (u(p), v(p))`` on the pixel grid of image 1,
4-neighbourhood ``eps``::

    E(w) = sum_p ||s1(p) - s2(p + w(p))||_1                            (data term)
         + sum_p floor(eta |u(p)|) + floor(eta |v(p)|)                 (small displacement)
         + sum_(p,q) in eps  min(alpha |u(p) - u(q)|, d)
                           + min(alpha |v(p) - v(q)|, d)               (smoothness)

The floors are the reference's: it stores the range term in its int messages. A match outside
image 2 costs the reference's default matching score (:func:`alignment._bp_kernels.
_default_matching_score`: about the median of the in-image costs plus their minimum, the
reference's histogram rule as written). The data term is not truncated (``BPFlow`` leaves
``IsDataTermTruncated`` false; with 128 x 8-bit descriptors the L1 distances stay below 10200
anyway).

Parameters, with the reference's meaning:

* ``alpha = 2 * 255``: weight of the L1 smoothness (``s`` in ``BPFlow``), per pixel of flow
  difference; descriptors are 0..255 so costs are in "descriptor units".
* ``d = 40 * 255``: truncation of the smoothness term (a discontinuity costs at most ``d``, i.e.
  flow jumps of more than ``d / alpha = 20`` pixels all cost the same).
* ``gamma = 0.005 * 255`` (``eta`` in the paper): small-displacement weight at the finest level;
  at pyramid level ``i`` (0 = finest) it is ``gamma * 2**i`` because one coarse pixel spans
  ``2**i`` fine pixels (reference: ``gamma * 2^(i-1)`` with 1-based levels).
* ``n_levels = 4``: pyramid levels; ``top_window = 10``: search window radius at the coarsest
  level (``21 x 21`` displacements around zero); ``window = 2``: radius at the finest level around
  the up-sampled coarser flow, ``window + i`` at level ``i`` (reference: ``wsize + i - 1``).
* ``n_top_iterations = 60`` BP iterations at the coarsest level, ``n_iterations = 30`` at the
  others.

Pyramid (``SIFTflowc2f.m``): level ``i + 1`` is ``imresize(imfilter(level_i,
fspecial('gaussian', 5, 0.67), 'replicate'), 0.5, 'bicubic')`` of the uint8 SIFT image, uint8 at
every step as MATLAB does it (rounding after the filter and after each resize pass; rows
first; bicubic weights with antialiasing, mirrored borders). At the coarsest level the search
is ``[-top_window, top_window]^2`` around zero; at each finer level the flow is
``round(imresize(flow, size, 'bicubic') * 2)`` (half away from zero), the per-pixel offset of a
window of radius ``window + i``.

Optimisation (SIFT Flow, Sec. 3.2): the horizontal and vertical flows are two coupled layers
(dual-layer loopy BP). Each layer is a 4-connected grid with the L1-truncated smoothness and the
range term as unary; the data term couples ``u(p)`` and ``v(p)`` of the same pixel. Messages:

* spatial, in layer ``k`` from ``p`` to neighbour ``q``:
  ``m_pq(l_q) = min_lp [ h(l_p) + min(alpha |a(l_p) - a(l_q)|, d) ]`` with
  ``h = range_p + dual_p + sum of the spatial messages into p except q's``, ``a(l)`` the absolute
  displacement of label ``l``, computed in O(L) by the distance transform of the L1 part,
  re-indexed from p's label window to q's (their offsets differ after the coarse-to-fine
  initialisation; outside p's window the L1 cone is continued), then clipped at
  ``min h + d``. When the two windows do not overlap at all, the reference sends ``alpha * l``
  whatever the direction of the shift (an oversight in ``BPFlow::UpdateSpatialMessage``); it is
  reproduced, since equal flows are the point.
* dual, from layer ``u`` to layer ``v`` at ``p``: ``m(l_v) = min_lu [ D_p(l_u, l_v) + h_u(l_u) ]``
  with ``h_u = range_p + all spatial messages into p`` (O(L^2), the cost of the model), and
  symmetrically; normalised to minimum 0.
* initialisation (``nHierarchy``): before the BP of a level, the reference runs 20 BP iterations
  on the grid coarsened by 2 (data term summed over the 2x2 children, offsets their mean
  truncated towards zero, ``gamma / 2``), itself initialised the same way, and copies each coarse
  node's messages to its children; 2 coarsened grids at the coarsest pyramid level and
  ``n_levels - 1 - i`` at level ``i`` below it. Without it BP starts from zero messages and the
  small-displacement term alone decides the first sweep: an earlier version, lacking it, had to
  seed BP with dual messages from the data term to recover a known shift. That version (also
  with its own dense SIFT, pyramid and bilinear flow up-sampling) gave the C++ flow on 0.0-1.4%
  of the pixels of the six ECSSD reference pairs (``bench_siftflow_ref.py --baseline``).
* schedule: the reference's sequential ``BP_S``. Iteration ``t`` touches layer ``t % 2``; it is a
  forward raster sweep (messages to the right and down) when ``t % 4 < 2`` and a backward sweep
  (left and up) otherwise; dual messages are refreshed during the sweep when ``t % 8 < 4``. Since
  messages are updated in place, a sweep carries information across the whole image (the
  "accelerated" sequential BP). After each iteration each layer takes the label of minimum belief
  ``range + dual + 4 spatial messages`` (the first on ties) and the energy (Eq. 3) of that
  labelling is recorded (``energy_levels``; entry ``t`` is the energy after iteration ``t``).

Decisions (and their reasons)
-----------------------------
* Spatial messages are normalised by subtracting ``min h`` (the sender's belief minimum) rather
  than their own minimum: the two differ by a constant per message, which changes no belief's
  argmin and no later message beyond a constant, and it takes a minimum search off the sweep's
  serial dependency chain. One exception: the non-overlap message's cap ``min h + d`` then sits
  higher than the reference's by that constant. It only acts when ``alpha * (L - 1) > d``
  (never with the defaults: at most ``510 * 20 = 10200 = d``), so with other weights the flow
  can differ from the C++ flow there.
* Messages and costs are float32 (the reference uses int messages). Every term is a whole
  number (integer data costs, ``alpha`` and ``d``, floored range term) far inside float32's exact
  integer range, so the arithmetic is the reference's integer arithmetic, in any order.
* Small windows (``L <= 9``) compute the spatial message as the direct min-convolution with the
  L1 cone (``L^2`` independent operations, a shorter dependency chain than the distance
  transform's); the result is identical.
* The L1 data term sums ``|s1 - s2|`` over 128 uint8 channels in a 16-bit accumulator (exact:
  ``128 * 255 < 2**16``; wider descriptors fall back to 64-bit).
* ``record_energy=False`` (what the pipeline runs) skips the per-iteration energies, which no
  stage reads; the flow is the same.
* The per-pixel matching cost returned is the L2 SIFT distance ``||s1(p) - s2(p + w(p))||_2`` (the
  quantity MIJR Eq. 2 averages), at the target clamped into image 2; ``valid`` says where
  ``p + w(p)`` lies inside image 2.
* Images of different sizes are accepted (the reference demo assumes equal sizes); each is
  halved on its own grid.

Performance
-----------
All loops are numba kernels in :mod:`alignment._bp_kernels` (``nogil``, single-threaded: pairs
run in parallel threads). Layouts are label-major and contiguous per pixel; the hot loops index
arrays directly (array views would cost reference counting per pixel); the sweep is compiled
separately for 5 and 7 labels (the two finest levels with the defaults) so the per-label loops
unroll; the belief labels are taken during the sweep (each pixel's incoming messages are final
when it is visited). The pyramid blur runs in float32 (equal taps paired) and redoes in float64
the few values near a rounding boundary; blur and both halving passes run as one kernel, row by
row, with no full-size intermediate. Dense SIFT (:mod:`alignment.dense_sift`) takes a similar
fast path for its normalisation. ``benchmarks/bench_siftflow_ref.py`` times it against the
previous version in the same run and quotes the C++ time.

References
----------
C. Liu, J. Yuen, A. Torralba, "SIFT Flow: Dense correspondence across scenes and its applications",
IEEE TPAMI 33(5):978-994, 2011.
P. F. Felzenszwalb, D. P. Huttenlocher, "Efficient belief propagation for early vision", IJCV 2006
(distance transform of truncated-L1 messages).
"""

from __future__ import annotations

from dataclasses import dataclass

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


# The reference's pyramid kernel: fspecial('gaussian', 5, 0.67), separable form.
_PYRAMID_SIGMA = 0.67
# Coarsened grids per pyramid level (the reference's nHierarchy): 2 at the coarsest level,
# n_levels - 1 - level below it; each runs this many BP iterations.
_TOP_HIERARCHY = 2
_HIERARCHY_ITERATIONS = 20


def _pyramid_kernel():
    x = np.arange(-2, 3, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * _PYRAMID_SIGMA**2))
    return g / g.sum()


def _cubic(x):
    # Keys' cubic, a = -0.5 (MATLAB imresize.m)
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((1 < ax) & (ax <= 2)))


def _resize_contributions(n_in, n_out, scale):
    """MATLAB ``imresize`` bicubic weights along one axis: (indices, weights), each (n_out, P).

    Antialiased kernel ``scale * cubic(scale * x)`` when shrinking, weights normalised per
    output sample, out-of-range indices mirrored (``[1:n, n:-1:1]``), all-zero taps dropped.
    """
    if scale < 1:
        def kernel(x):
            return scale * _cubic(scale * x)
        width = 4.0 / scale
    else:
        kernel, width = _cubic, 4.0
    u = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    index = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    weight = kernel(u[:, None] - index)
    weight = weight / weight.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    index = mirror[np.mod(index - 1, mirror.size).astype(np.int64)]
    keep = np.any(weight != 0, axis=0)
    return np.ascontiguousarray(index[:, keep]), np.ascontiguousarray(weight[:, keep])


def _halving_weights(n_in):
    """``imresize`` halving taps along an axis of ``n_in`` samples: (indices, weights x 256)."""
    index, weight = _resize_contributions(n_in, -(-n_in // 2), 0.5)
    weight256 = weight * 256
    if not np.array_equal(weight256, np.round(weight256)):  # dyadic at scale 0.5, always
        raise AssertionError("halving weights are not multiples of 1/256")
    return index, weight256.astype(np.int32)


def _pyramid_level(desc):
    """The next coarser SIFT image as the reference builds it (uint8 at every step):
    ``imresize(imfilter(desc, gaussian(5, 0.67), 'replicate'), 0.5, 'bicubic')``, the resize
    along rows, then along columns, each pass rounded to uint8 (one fused kernel)."""
    row_index, row_w256 = _halving_weights(desc.shape[0])
    col_index, col_w256 = _halving_weights(desc.shape[1])
    return _k.pyramid_level_u8(desc, _pyramid_kernel(), row_index, row_w256, col_index, col_w256)


def _upsample_flow(v, shape):
    """``round(imresize(v, shape, 'bicubic') * 2)`` (float64; MATLAB rounds half away from 0)."""
    out = v.astype(np.float64)
    scales = (shape[0] / v.shape[0], shape[1] / v.shape[1])
    for axis in sorted((0, 1), key=lambda a: scales[a]):  # MATLAB: smallest scale first
        index, weight = _resize_contributions(out.shape[axis], shape[axis], scales[axis])
        moved = np.moveaxis(out, axis, 0)
        out = np.moveaxis(np.einsum("ip,ip...->i...", weight, moved[index]), 0, axis)
    out = out * 2.0
    return (np.sign(out) * np.floor(np.abs(out) + 0.5)).astype(np.int32)


def _range_term(ox, oy, w, gamma):
    r = np.empty((2,) + ox.shape + (2 * w + 1,), np.float32)
    _k.range_term(ox, oy, w, float(gamma), r)
    return r


def _bp_multigrid(D, ox, oy, w, gamma, alpha, d, n_iterations, n_hierarchy, record_energy):
    """BP on one level, its messages first initialised by BP on ``n_hierarchy`` coarsened grids
    (``BPFlow::MessagePassing`` with nHierarchy; each coarse node's messages are copied to its
    children). Returns labels (2, H, W), the energies (per iteration when ``record_energy``,
    else none) and the final messages."""
    hh, wd = ox.shape
    n_lab = 2 * w + 1
    if n_hierarchy > 0:
        _, _, S_c, M_c, _ = _bp_multigrid(
            _k.reduce_data_term(D), _k.reduce_offsets(ox), _k.reduce_offsets(oy), w, gamma / 2,
            alpha, d, _HIERARCHY_ITERATIONS, n_hierarchy - 1, False)
        S = np.empty((2, hh, wd, 4, n_lab), np.float32)
        M = np.empty((2, hh, wd, n_lab), np.float32)
        _k.expand_messages(S_c, M_c, S, M)
    else:
        S = np.zeros((2, hh, wd, 4, n_lab), np.float32)
        M = np.zeros((2, hh, wd, n_lab), np.float32)
    R = _range_term(ox, oy, w, gamma)  # Eq. 3 small displacement
    labels = np.empty((2, hh, wd), np.int32)
    energy = np.zeros(n_iterations if record_energy else 0, np.float64)
    _k.bp_level(D, R, ox, oy, w, float(alpha), float(d), n_iterations, labels, energy, S, M)
    return labels, energy, S, M, R


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
    record_energy: bool = True,
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
        Truncation of the smoothness term (reference: ``40 * 255``).
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
    record_energy : bool, optional
        Record the energy after every BP iteration (as the reference does). False: only each
        level's final energy (one entry per level), about 7% faster; the flow is the same.

    Returns
    -------
    result : SiftFlowResult
        ``vx, vy`` (int32), ``cost`` (float32 L2 SIFT distance), ``valid``, ``energy`` and
        ``energy_levels``.

    Notes
    -----
    Minimises (SIFT Flow Eq. 3)
    ``sum_p ||s1(p) - s2(p + w)||_1 + floor(gamma |u|) + floor(gamma |v|)
    + sum_pq min(alpha |u_p - u_q|, d) + min(alpha |v_p - v_q|, d)``
    by sequential dual-layer loopy BP (the reference's, with its multigrid initialisation); see
    the module docstring for the schedule and every decision.

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

    pyr_a = [np.ascontiguousarray(desc_a)]
    pyr_b = [np.ascontiguousarray(desc_b)]
    for _ in range(n_levels - 1):
        pyr_a.append(_pyramid_level(pyr_a[-1]))
        pyr_b.append(_pyramid_level(pyr_b[-1]))

    energies = []
    vx = vy = None
    for lev in range(n_levels - 1, -1, -1):
        a, b = pyr_a[lev], pyr_b[lev]
        shape = a.shape[:2]
        if lev == n_levels - 1:
            ox = np.zeros(shape, np.int32)
            oy = np.zeros(shape, np.int32)
            w, iters, n_hier = int(top_window), int(n_top_iterations), _TOP_HIERARCHY
        else:
            ox = _upsample_flow(vx, shape)
            oy = _upsample_flow(vy, shape)
            w, iters, n_hier = int(window) + lev, int(n_iterations), n_levels - 1 - lev
        n_lab = 2 * w + 1
        dterm = np.empty(shape + (n_lab, n_lab), np.float32)
        default = _k.data_term(a, b, ox, oy, w, dterm)  # Eq. 3 data term
        _k.finish_data_term(dterm, np.float32(default))
        labels, energy, _, _, rterm = _bp_multigrid(dterm, ox, oy, w, gamma * 2.0**lev, alpha, d,
                                                     iters, n_hier, record_energy)
        if not record_energy:  # the final energy only
            energy = np.array([_k._energy(dterm, rterm, ox, oy, float(alpha), float(d), labels)])
        vx = (labels[0] + ox - w).astype(np.int32)
        vy = (labels[1] + oy - w).astype(np.int32)
        energies.append(energy)

    cost = np.empty(desc_a.shape[:2], np.float32)
    valid = np.empty(desc_a.shape[:2], np.bool_)
    _k.match_cost(pyr_a[0], pyr_b[0], vx, vy, cost, valid)
    return SiftFlowResult(
        vx=vx, vy=vy, cost=cost, valid=valid, energy=energies[-1], energy_levels=tuple(energies)
    )
