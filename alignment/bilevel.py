"""Bi-level inter-image alignment: superpixels and object proposals (MIJR Sec. III-A, Eq. 1-3).

Given a target image ``a`` and a retrieved image ``b``, their SLIC superpixels ``S`` (500 per
image), their selected object proposals ``P`` (``V = 100`` per image, Eq. 4, see
:mod:`alignment.proposals`) and the SIFT-Flow pixel correspondences ``QS`` (pixel ``u`` of ``a``
matches ``u + w(u)`` of ``b``), MIJR solves::

    argmin_{QM, QP}  sum_{i,j} QM(i,j) d(S_i, S_j) + sum_{k,l} QP(k,l) g(P_k, P_l)      (Eq. 1)
    s.t. every row of QM and of QP sums to 1 (each target superpixel / proposal gets exactly
    one match)

    d(S_i, S_j) = sum_{u in S_i, v in S_j} QS(u,v) ||f(u) - f(v)||_2
                  / sum_{u in S_i, v in S_j} QS(u,v)                                       (Eq. 2)

    g(P_k, P_l) = sum_{u in P_k} sum_{v in P_l} d(S_u, S_v)                               (Eq. 3)

by "one-fixed-the-other-solved" iterations that keep the top-K best alignments, K = 10 at first
and K <- K - 1 after each iteration.

Decisions the paper leaves open (and why)
-----------------------------------------
* **QS and d.** SIFT-Flow gives one match per pixel, ``u -> round(u + w(u))`` (clipped into
  ``b``), and is smooth, so a superpixel lands on only ~4 superpixels and the top-K scheme
  (K = 10) would have almost nothing to choose from. ``QS`` therefore links ``u`` to the pixels
  of a flow-guided window around its flow target (offsets ``{-4, 0, 4}^2``: ``window=4``,
  ``stride=4``); ``window=0`` is the plain flow. ``d(S_i, S_j)`` (Eq. 2) is the mean
  ``||f(u) - f(v)||_2`` over the linked pixel pairs, ``inf`` (never matched) where none is linked.
* **f.** MIJR's ``f`` is "the SIFT-Flow feature representation" (dense SIFT). SIFT is colour
  blind and, measured on ECSSD (``benchmarks/bench_alignment.py``), a SIFT-only ``d`` does not
  pick label-consistent superpixels better than the flow's majority vote; we append the
  pixel's CIE-Lab colour scaled by ``colour_weight = 10`` (:func:`pixel_features`; a SIFT L2
  distance is O(300), a Lab distance O(10-30)). ``colour_weight=0`` gives the paper's SIFT-only f.
* **Superpixel-in-proposal.** A superpixel belongs to a proposal when its centroid lies inside
  the box (a box holds whole superpixels; centroids make the membership one vectorised test).
* **g (Eq. 3).** Read literally (sum over *all* superpixel pairs of the two boxes) g does not
  depend on QM, and the two terms of Eq. 1 would not "mutually constrain" each other as the text
  says; and a plain sum favours tiny boxes. We read the sum as running over the superpixel pairs
  *aligned by QM* ("those inter-image aligned superpixels should exhibit strong object-level
  similarity") and make it a Chamfer-like mean so that boxes of all sizes compare::

      g(P_k, P_l) = ( sum_{u in P_k} [ sum_{v in P_l} QM(u,v) d(S_u,S_v)
                                        + tau * (1 - sum_{v in P_l} QM(u,v)) ]
                      + tau * #{v in P_l : no u in P_k aligned to v} )
                    / (|P_k| + |P_l|)

  i.e. each superpixel of either box costs its alignment distance when its match stays between
  the two boxes and ``tau`` otherwise. ``tau`` = the median finite ``d`` of the pair (an
  unaligned superpixel costs a typical alignment; the maximum, tried first, is an outlier that
  made the object term swamp ``d`` and lowered the accuracy); 1 if all ``d`` are 0. The
  second coverage term stops a whole-image box in ``b`` matching every box of ``a``.
* **QM given QP.** With QP fixed, superpixel ``i``'s choice ``j`` enters the object term through
  every proposal ``k`` containing ``i`` and its matched proposals ``l``. Averaging over those::

      cost(i, j) = d(i,j) + lam * [ s(i,j) d(i,j) + (1 - s(i,j)) tau ],
      s(i,j) = sum_{k ni i} sum_l QP(k,l) [j in P_l] / #{k ni i}

  (``lam = object_weight = 1``, the equal weighting of Eq. 1; for ``i`` in no proposal the
  object term is a constant and ``d`` alone decides). The coverage term's (small) dependence on
  a single superpixel is left out of this step.
* **Top-K scheme.** Soft assignments: QM (resp. QP) puts weight ``1/K`` on each of the ``K``
  lowest-cost candidates of a row (fewer when fewer candidates are finite). Iteration ``t``
  (``K = k_init - t``): QM step given the previous QP (the first uses ``d`` alone, i.e. the
  SIFT-Flow ranking), then QP step given the new QM. The schedule always runs
  ``K = k_init, ..., 1`` (10 iterations by default): shrinking ``K`` is what the paper uses to
  guarantee convergence, and at ``K = 1`` the assignments are binary and satisfy Eq. 1's
  constraints exactly. The Eq. 1 value of the (soft) assignments after each iteration is
  returned in ``objective``.
* **Candidates from the matched proposals** (``box_links``, off by default). With candidates from
  ``QS`` alone, ``s(i, j)`` is nearly constant over a superpixel's few candidates (they all lie
  around its flow target), so the object term cannot re-rank anything and Eq. 1 reduces to the
  Eq. 2 ranking. ``box_links = s > 0`` adds candidates the object level proposes: after the
  schedule's first proposal step (from the SIFT-Flow ranking), every ``s``-th pixel of each target
  box ``P_k`` links to the pixel at the same relative position of its best matched box ``P_l``
  (a second, box-to-box ``QS``), and a pair that only these links reach gets its Eq. 2 distance
  over them. Pairs ``QS`` links keep their flow distance. Measured
  (``benchmarks/bench_alignment.py --pairs 50 --pool 200 --split train|test``, Q_M accuracy):
  train 0.7723 with ``box_links=4`` against 0.7681 without, but 0.7738 with ``box_links=4`` and
  ``object_weight=0``, so the gain is not the object term's; test 0.7787 against 0.7819. Off by
  default.
* **Baseline.** :func:`siftflow_match` is the SIFT-Flow-only superpixel alignment the paper
  compares with (69% vs 89% correct): each superpixel goes to the superpixel its pixels land in
  most often.

Everything is vectorised: d is one numba pass over pixels x window offsets; the candidate pairs (i, j) with finite d are a sparse edge list (a few
thousand for 500 superpixels), QM is a sparse matrix on it, proposal terms are (n, V) / (V, V)
products; no Python loops over superpixels, pixels or proposals, the only loop is the 10
iterations of the K schedule. These products are small, so they run with one BLAS thread
(threadpoolctl); OpenBLAS's threads were 15x slower on the shared 2-core machine.

References
----------
MIJR: "Multiple instance joint re-learning" (../shared/papers/mijr-multiple-instance-joint-relearning.txt),
Sec. III-A, Eq. 1-3.
C. Liu, J. Yuen and A. Torralba, "SIFT Flow: Dense correspondence across scenes and its
applications", IEEE TPAMI 2011.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from superpixels import region_centroid

__all__ = [
    "BilevelAlignment",
    "FlowMatches",
    "pixel_features",
    "superpixel_distance",
    "siftflow_match",
    "bilevel_alignment",
]


@dataclass(frozen=True)
class FlowMatches:
    """Flow-guided superpixel distances (Eq. 2).

    Attributes
    ----------
    distance : (n_a, n_b) ndarray of float64
        ``d(S_i, S_j)``; ``inf`` where no pixel of ``S_i`` lands in ``S_j``.
    votes : (n_a, n_b) ndarray of int64
        Number of pixels of ``S_i`` that land in ``S_j`` (``sum QS``).
    """

    distance: np.ndarray
    votes: np.ndarray


@dataclass(frozen=True)
class BilevelAlignment:
    """Result of :func:`bilevel_alignment`: Q_M and Q_P as index arrays.

    Attributes
    ----------
    superpixel_match : (n_a,) ndarray of int64
        Q_M: target superpixel ``i`` is aligned to superpixel ``superpixel_match[i]`` of ``b``.
    superpixel_distance : (n_a,) ndarray of float64
        ``d(S_i, S_match)`` (Eq. 2).
    proposal_match : (V_a,) ndarray of int64
        Q_P: target proposal ``k`` is aligned to proposal ``proposal_match[k]`` of ``b``.
    proposal_distance : (V_a,) ndarray of float64
        ``g(P_k, P_match)`` (Eq. 3 as read in the module notes; lower = more similar).
    k_schedule : (T,) ndarray of int64
        K used at each iteration (``k_init, ..., 1``).
    objective : (T,) ndarray of float64
        Eq. 1 value of the assignments after each iteration.
    """

    superpixel_match: np.ndarray
    superpixel_distance: np.ndarray
    proposal_match: np.ndarray
    proposal_distance: np.ndarray
    k_schedule: np.ndarray
    objective: np.ndarray


def _check_labels(labels, name):
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f"{name}: expected a non-empty (H, W) label map, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0")
    return labels


def _check_field(arr, shape, name):
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite numbers")
    return arr


def pixel_features(image: np.ndarray, descriptors: np.ndarray, *, colour_weight: float = 10.0) -> np.ndarray:
    """Per-pixel feature ``f(u)`` of Eq. 2: dense SIFT with the pixel's CIE-Lab colour appended.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    descriptors : (H, W, D) ndarray
        Dense descriptors of the same image (e.g. :func:`alignment.dense_sift.dense_sift`, uint8).
    colour_weight : float, optional
        Scale of the Lab channels (L in 0..100); 0 gives the SIFT alone (module notes).

    Returns
    -------
    features : (H, W, D + 3) ndarray of float32
        The descriptors followed by ``colour_weight`` times the pixel's (L, a, b).
    """
    image = np.asarray(image)
    descriptors = np.asarray(descriptors)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if descriptors.ndim != 3 or descriptors.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"expected (H, W, D) descriptors with H, W = {image.shape[:2]}, got {descriptors.shape}")
    if not np.isfinite(colour_weight) or colour_weight < 0:
        raise ValueError(f"colour_weight must be finite and >= 0, got {colour_weight}")
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return np.concatenate([descriptors.astype(np.float32), float(colour_weight) * lab], axis=2)


@numba.njit(cache=True, nogil=True)
def _window_matches(la, lb, vx, vy, fa, fb, radius, stride, n_b, sums, votes):
    # Eq. 2 with QS = flow + window: u -> clip(u + w(u)) + (dy, dx), |dy|, |dx| <= radius
    h, w = la.shape
    hb, wb = lb.shape
    nd = fa.shape[2]
    for r in range(h):
        for c in range(w):
            i = la[r, c]
            tr = min(max(int(np.rint(r + vy[r, c])), 0), hb - 1)
            tc = min(max(int(np.rint(c + vx[r, c])), 0), wb - 1)
            for dy in range(-radius, radius + 1, stride):
                rr = tr + dy
                if rr < 0 or rr >= hb:
                    continue
                for dx in range(-radius, radius + 1, stride):
                    cc = tc + dx
                    if cc < 0 or cc >= wb:
                        continue
                    acc = 0.0
                    for k in range(nd):
                        t = fa[r, c, k] - fb[rr, cc, k]
                        acc += t * t
                    key = i * n_b + lb[rr, cc]
                    sums[key] += np.sqrt(acc)
                    votes[key] += 1


@numba.njit(cache=True, nogil=True)
def _box_links(la, lb, boxes_a, boxes_b, box_match, fa, fb, stride, n_b, sums, votes):
    # Object-level QS (module notes, "Candidates from the matched proposals"): pixel u of target box
    # k links to the pixel at the same relative position in its matched box l of b; the sums and
    # votes of Eq. 2, accumulated as in _window_matches.
    nd = fa.shape[2]
    for k in range(boxes_a.shape[0]):
        l = box_match[k]
        if l < 0:
            continue
        c0, r0, c1, r1 = boxes_a[k, 0], boxes_a[k, 1], boxes_a[k, 2], boxes_a[k, 3]
        d0, s0, d1, s1 = boxes_b[l, 0], boxes_b[l, 1], boxes_b[l, 2], boxes_b[l, 3]
        sy = (s1 - s0) / (r1 - r0)
        sx = (d1 - d0) / (c1 - c0)
        for r in range(r0, r1, stride):
            rr = min(int(s0 + (r - r0 + 0.5) * sy), s1 - 1)
            for c in range(c0, c1, stride):
                cc = min(int(d0 + (c - c0 + 0.5) * sx), d1 - 1)
                acc = 0.0
                for q in range(nd):
                    t = fa[r, c, q] - fb[rr, cc, q]
                    acc += t * t
                key = la[r, c] * n_b + lb[rr, cc]
                sums[key] += np.sqrt(acc)
                votes[key] += 1


def superpixel_distance(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    window: int = 4,
    stride: int = 4,
    n_a: int | None = None,
    n_b: int | None = None,
) -> FlowMatches:
    """Flow-guided superpixel distance d(S_i, S_j) (MIJR Eq. 2).

    Parameters
    ----------
    labels_a : (H, W) ndarray of int
        Superpixels of the target image, ``0 .. n_a-1``.
    labels_b : (H_b, W_b) ndarray of int
        Superpixels of the retrieved image, ``0 .. n_b-1``.
    vx, vy : (H, W) ndarray of float
        SIFT-Flow: pixel ``(r, c)`` of ``a`` matches ``(r + vy, c + vx)`` of ``b`` (rounded,
        clipped into ``b``).
    features_a : (H, W, D) ndarray
        Per-pixel features ``f`` of ``a`` (:func:`pixel_features`).
    features_b : (H_b, W_b, D) ndarray
        Per-pixel features of ``b``.
    window : int, optional
        Radius (pixels) of the window around the flow target that ``QS`` links ``u`` to
        (module notes); 0 = the flow target alone.
    stride : int, optional
        Step of the window offsets.
    n_a, n_b : int, optional
        Number of superpixels (default ``labels.max() + 1``).

    Returns
    -------
    FlowMatches
        ``distance`` (n_a, n_b) float64 with ``inf`` where ``QS`` links no pixel pair of
        ``S_i`` x ``S_j``, ``votes`` (n_a, n_b) int64 the number of linked pixel pairs.

    Notes
    -----
    Eq. 2: ``d(S_i, S_j) = sum QS(u,v) ||f(u) - f(v)||_2 / sum QS(u,v)`` over ``u in S_i``,
    ``v in S_j``; one numba pass over the pixels and window offsets.
    """
    labels_a = _check_labels(labels_a, "labels_a")
    labels_b = _check_labels(labels_b, "labels_b")
    vx = _check_field(vx, labels_a.shape, "vx")
    vy = _check_field(vy, labels_a.shape, "vy")
    features_a = np.asarray(features_a)
    features_b = np.asarray(features_b)
    if features_a.ndim != 3 or features_a.shape[:2] != labels_a.shape:
        raise ValueError(f"features_a: expected shape {labels_a.shape + ('D',)}, got {features_a.shape}")
    if features_b.ndim != 3 or features_b.shape[:2] != labels_b.shape \
            or features_b.shape[2] != features_a.shape[2]:
        raise ValueError(
            f"features_b: expected shape {labels_b.shape + (features_a.shape[2],)}, got {features_b.shape}")
    if int(window) < 0 or int(stride) < 1:
        raise ValueError(f"window must be >= 0 and stride >= 1, got {window}, {stride}")
    n_a = int(labels_a.max()) + 1 if n_a is None else int(n_a)
    n_b = int(labels_b.max()) + 1 if n_b is None else int(n_b)
    if n_a <= labels_a.max() or n_b <= labels_b.max():
        raise ValueError(f"n_a={n_a}, n_b={n_b} smaller than the labels present")
    sums = np.zeros(n_a * n_b, dtype=np.float64)
    votes = np.zeros(n_a * n_b, dtype=np.int64)
    _window_matches(
        np.ascontiguousarray(labels_a, dtype=np.int64), np.ascontiguousarray(labels_b, dtype=np.int64),
        np.ascontiguousarray(vx, dtype=np.float64), np.ascontiguousarray(vy, dtype=np.float64),
        np.ascontiguousarray(features_a, dtype=np.float32),
        np.ascontiguousarray(features_b, dtype=np.float32),
        int(window), int(stride), n_b, sums, votes)
    votes = votes.reshape(n_a, n_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.where(votes > 0, sums.reshape(n_a, n_b) / votes, np.inf)
    return FlowMatches(distance=dist, votes=votes)


def siftflow_match(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    *,
    n_a: int | None = None,
    n_b: int | None = None,
) -> np.ndarray:
    """SIFT-Flow-only superpixel alignment (the baseline MIJR compares with).

    Each superpixel of ``a`` is aligned to the superpixel of ``b`` that most of its pixels land
    in under the flow (ties: the lower label).

    Parameters
    ----------
    labels_a, labels_b, vx, vy, n_a, n_b
        As in :func:`superpixel_distance`.

    Returns
    -------
    match : (n_a,) ndarray of int64
        Superpixel of ``b`` for each superpixel of ``a`` (-1 for labels absent from ``labels_a``).
    """
    labels_a = _check_labels(labels_a, "labels_a")
    labels_b = _check_labels(labels_b, "labels_b")
    zero_a = np.zeros(labels_a.shape + (1,), np.float32)
    zero_b = np.zeros(labels_b.shape + (1,), np.float32)
    fm = superpixel_distance(labels_a, labels_b, vx, vy, zero_a, zero_b, window=0, n_a=n_a, n_b=n_b)
    match = np.argmax(fm.votes, axis=1).astype(np.int64)
    match[fm.votes.sum(1) == 0] = -1
    return match


def _topk_weights(cost, k):
    """Rows: weight 1/k' on the k' = min(k, #finite) lowest finite costs, 0 elsewhere."""
    n, m = cost.shape
    k = min(k, m)
    idx = np.argpartition(cost, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
    sel = np.take_along_axis(cost, idx, 1)
    ok = np.isfinite(sel)
    cnt = ok.sum(1, keepdims=True)
    w = np.zeros_like(cost, dtype=np.float64)
    np.put_along_axis(w, idx, np.where(ok, 1.0 / np.maximum(cnt, 1), 0.0), 1)
    return w


def _membership(labels, n, boxes, name):
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] < 1:
        raise ValueError(f"{name}: expected (V, 4) boxes with V >= 1, got shape {boxes.shape}")
    h, w = labels.shape
    if (boxes[:, 0] < 0).any() or (boxes[:, 1] < 0).any() or (boxes[:, 2] > w).any() \
            or (boxes[:, 3] > h).any() or (boxes[:, 2] <= boxes[:, 0]).any() \
            or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError(f"{name}: boxes must be non-empty (col0, row0, col1, row1) inside {h}x{w}")
    lab = np.ascontiguousarray(labels, dtype=np.int32)
    cen = region_centroid(lab, n)  # (n, 2) row, col
    # superpixel u is in proposal k when its centroid lies inside box k; a superpixel with no pixel
    # in this label map (one lost when the map was resampled) has no centroid and is in no box
    present = np.bincount(lab.ravel(), minlength=n)[:n] > 0
    r, c = cen[None, :, 0], cen[None, :, 1]
    inside = ((c >= boxes[:, 0:1]) & (c < boxes[:, 2:3]) & (r >= boxes[:, 1:2]) & (r < boxes[:, 3:4]))
    return (inside & present[None, :]).astype(np.float64)  # (V, n)


def _edge_topk(ci, cost_e, n_rows, k):
    """Sparse top-K: weight 1/k' on the k' = min(k, #candidates) cheapest candidates of each row.

    ``ci`` are the row ids of the candidate edges; returns (E,) weights.
    """
    order = np.lexsort((cost_e, ci))
    rows = ci[order]
    start = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(rows.size) - start[rows]
    count = np.bincount(ci, minlength=n_rows)
    w = np.zeros(ci.size)
    w[order] = np.where(rank < k, 1.0 / np.minimum(count[rows], k), 0.0)
    return w


def _proposal_distance(ci, cj, dv, w, ma, mb, tau, n_a, n_b):
    # Eq. 3 (module notes): Chamfer-like mean over the superpixels of both boxes
    wm = csr_matrix((w, (ci, cj)), shape=(n_a, n_b))
    wd = csr_matrix((w * dv, (ci, cj)), shape=(n_a, n_b))
    c_in = np.asarray(wd @ mb.T)                  # (n_a, V_b): aligned cost staying in P_l
    mass = np.asarray(wm @ mb.T)                  # (n_a, V_b): match mass landing in P_l
    per_u = c_in + tau * (np.asarray(wm.sum(1)) - mass)
    sum_a = ma @ per_u                            # (V_a, V_b)
    hit = (np.asarray(wm.T @ ma.T).T > 0).astype(np.float64)   # (V_a, n_b): reached from P_k
    unhit = mb.sum(1)[None, :] - hit @ mb.T       # (V_a, V_b)
    size = ma.sum(1)[:, None] + mb.sum(1)[None, :]
    return (sum_a + tau * unhit) / np.maximum(size, 1.0)


def _superpixel_cost(ci, cj, dv, wp, ma, mb, tau, lam):
    # QM step given QP (module notes): cost(i,j) = d + lam * [s d + (1 - s) tau], on the edges
    n_in = ma.sum(0)                              # (n_a,) proposals containing each superpixel
    a = (ma.T @ wp) / np.maximum(n_in, 1.0)[:, None]          # (n_a, V_b)
    s = (a @ mb)[ci, cj]
    obj = np.where(n_in[ci] > 0, s * dv + (1.0 - s) * tau, 0.0)
    return dv + lam * obj


def _with_box_candidates(d, ci, cj, dv, labels_a, labels_b, boxes_a, boxes_b, ma, mb, tau, features_a,
                         features_b, k, stride, n_a, n_b):
    """d with the pairs that only the matched proposals link added (module notes)."""
    # one proposal step from the SIFT-Flow ranking (the schedule's first), then each target box's
    # best matched box
    with threadpool_limits(limits=1, user_api="blas"):
        w = _edge_topk(ci, dv, n_a, k)
        g = _proposal_distance(ci, cj, dv, w, ma, mb, tau, n_a, n_b)
    box_match = np.argmin(g, axis=1).astype(np.int64)
    sums = np.zeros(n_a * n_b, dtype=np.float64)
    votes = np.zeros(n_a * n_b, dtype=np.int64)
    _box_links(np.ascontiguousarray(labels_a, dtype=np.int64), np.ascontiguousarray(labels_b, dtype=np.int64),
               np.ascontiguousarray(boxes_a, dtype=np.int64), np.ascontiguousarray(boxes_b, dtype=np.int64),
               box_match, np.ascontiguousarray(features_a, dtype=np.float32),
               np.ascontiguousarray(features_b, dtype=np.float32), stride, n_b, sums, votes)
    votes = votes.reshape(n_a, n_b)
    new = (votes > 0) & ~np.isfinite(d)  # QS-linked pairs keep their Eq. 2 distance
    out = d.copy()
    out[new] = sums.reshape(n_a, n_b)[new] / votes[new]
    return out


def bilevel_alignment(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    boxes_a: np.ndarray,
    boxes_b: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    k_init: int = 10,
    object_weight: float = 1.0,
    window: int = 4,
    stride: int = 4,
    box_links: int = 0,
) -> BilevelAlignment:
    """Bi-level (superpixel + proposal) alignment of two images (MIJR Eq. 1-3).

    Parameters
    ----------
    labels_a : (H, W) ndarray of int
        Superpixels of the target image ``a`` (MIJR: SLIC, 500), labels ``0 .. n_a-1``.
    labels_b : (H_b, W_b) ndarray of int
        Superpixels of the retrieved image ``b``.
    boxes_a : (V_a, 4) ndarray of int
        Proposals of ``a``, ``(col0, row0, col1, row1)`` half-open (MIJR: V = 100, Eq. 4).
    boxes_b : (V_b, 4) ndarray of int
        Proposals of ``b``.
    vx, vy : (H, W) ndarray of float
        SIFT-Flow from ``a`` to ``b``: pixel ``(r, c)`` matches ``(r + vy, c + vx)``.
    features_a, features_b : (H, W, D), (H_b, W_b, D) ndarray
        Per-pixel features ``f`` (:func:`pixel_features`: dense SIFT + Lab colour).
    k_init : int, optional
        Initial K of the top-K scheme (MIJR: 10); K decreases by 1 per iteration down to 1.
    object_weight : float, optional
        Weight of the object-level term of Eq. 1 in the superpixel step (1 = Eq. 1).
    window, stride : int, optional
        Flow-guided window of ``QS`` (:func:`superpixel_distance`).
    box_links : int, optional
        0 (default): candidate superpixel pairs come from ``QS`` alone. ``s > 0``: candidates are
        also drawn from the matched proposals (module notes): after a first proposal step, pixels
        of each target box, every ``s``-th row and column, link to the same relative position in
        its best matched box of ``b``; pairs only these links reach get their Eq. 2 distance from
        them, so that the object term can re-rank them.

    Returns
    -------
    BilevelAlignment
        Q_M (``superpixel_match``, ``superpixel_distance``), Q_P (``proposal_match``,
        ``proposal_distance``), ``k_schedule`` and ``objective`` per iteration.

    Notes
    -----
    Eq. 1 ``min sum QM d + sum QP g`` s.t. one match per row; Eq. 2 :func:`superpixel_distance`;
    Eq. 3 ``g`` over QM-aligned superpixel pairs (module notes). Solved by alternating top-K
    steps with K = k_init, ..., 1.

    References
    ----------
    MIJR Sec. III-A.
    """
    labels_a = _check_labels(labels_a, "labels_a")
    labels_b = _check_labels(labels_b, "labels_b")
    if int(k_init) < 1 or int(k_init) != k_init:
        raise ValueError(f"k_init must be a positive integer, got {k_init}")
    if not np.isfinite(object_weight) or object_weight < 0:
        raise ValueError(f"object_weight must be finite and >= 0, got {object_weight}")
    if int(box_links) != box_links or box_links < 0:
        raise ValueError(f"box_links must be an integer >= 0, got {box_links}")
    n_a, n_b = int(labels_a.max()) + 1, int(labels_b.max()) + 1
    fm = superpixel_distance(labels_a, labels_b, vx, vy, features_a, features_b, window=window,
                             stride=stride, n_a=n_a, n_b=n_b)
    ma = _membership(labels_a, n_a, boxes_a, "boxes_a")
    mb = _membership(labels_b, n_b, boxes_b, "boxes_b")

    d = fm.distance
    # candidate edges (i, j) with d finite, i.e. QS links S_i and S_j
    ci, cj = np.nonzero(fm.votes)
    dv = d[ci, cj]
    tau = float(np.median(dv)) if dv.size and dv.max() > 0 else 1.0
    lam = float(object_weight)
    if box_links:
        d = _with_box_candidates(d, ci, cj, dv, labels_a, labels_b, boxes_a, boxes_b, ma, mb, tau,
                                 features_a, features_b, int(k_init), int(box_links), n_a, n_b)
        ci, cj = np.nonzero(np.isfinite(d))
        dv = d[ci, cj]

    ks, objective = [], []
    # (n, V)-sized products: BLAS threads only add contention here (x15 slower under load)
    wp = None
    with threadpool_limits(limits=1, user_api="blas"):
        for k in range(int(k_init), 0, -1):  # top-K schedule: K <- K - 1 per iteration
            # QM step (QP fixed); the first uses d alone, the SIFT-Flow ranking
            c = dv if wp is None else _superpixel_cost(ci, cj, dv, wp, ma, mb, tau, lam)
            w = _edge_topk(ci, c, n_a, k)
            # QP step (QM fixed): Eq. 3 then top-K
            g = _proposal_distance(ci, cj, dv, w, ma, mb, tau, n_a, n_b)
            wp = _topk_weights(g, k)
            # Eq. 1 value of the current assignments
            objective.append(float((w * dv).sum() + (wp * g).sum()))
            ks.append(k)

    sp_match = np.full(n_a, -1, dtype=np.int64)
    top = w > 0  # at K = 1 exactly one edge per row that has candidates
    sp_match[ci[top]] = cj[top]
    pr_match = np.argmax(wp, axis=1).astype(np.int64)
    return BilevelAlignment(
        superpixel_match=sp_match,
        superpixel_distance=np.where(sp_match >= 0, d[np.arange(n_a), sp_match], np.inf),
        proposal_match=pr_match,
        proposal_distance=g[np.arange(g.shape[0]), pr_match],
        k_schedule=np.asarray(ks, dtype=np.int64),
        objective=np.asarray(objective, dtype=np.float64),
    )
