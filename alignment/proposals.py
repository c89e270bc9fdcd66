"""EdgeBoxes object proposals and their Eq. 4 selection (MIJR Sec. III-A).

MIJR (Sec. III-A) forms object-level rectangle proposals with EdgeBoxes [Zitnick & Dollar 2014]
(1000 proposals per image) and then keeps ``V = 100`` of them, chosen to have a high objectness
score while being spread over the whole image (Eq. 4)::

    {P*} = argmax_{|S| = V}  sum_{i in S} score_i  +  sum_{i != j in S} ||c_i - c_j||_2        (Eq. 4)

with ``c_i`` the centre of proposal ``i``.

Decisions the paper leaves open
-------------------------------
* **Edge map.** EdgeBoxes needs an edge map and an edge-orientation map. The original uses
  Structured Edges (SED); OpenCV ships the SED code but no trained model, so a model file is
  optional (``edge_model=``, a path or a loaded ``cv2.ximgproc.StructuredEdgeDetection``).
  Without one we use a documented gradient edge map: the image is smoothed (Gaussian, sigma=1),
  converted to CIE-Lab (L/100, a/128, b/128), Sobel gradients are taken per channel and the
  per-pixel maximum magnitude over channels is normalised by its 99th percentile (floored at an
  absolute 0.05 per pixel so that a flat, noisy image does not become all edges) and clipped to
  [0, 1]. Orientation follows the SED convention (Dollar's ``edgesNms`` / OpenCV
  ``computeOrientation``): ``O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi)`` on the edge
  map smoothed by a radius-4 triangle filter. The edges are then thinned by our own
  non-maximum suppression along the orientation (radius 1, multiplier 1.01, 5-pixel border
  fade), as EdgeBoxes is tuned for thin edges (on raw gradient magnitude it is >10x slower).
* **Fewer than V candidates.** EdgeBoxes may return fewer boxes than ``V`` (flat or tiny
  images). The candidates are then topped up with a deterministic multi-scale grid of boxes
  (sides 1, 1/2, 1/3, 1/4 of the image, stride half a box) with score 0, so the selection always
  returns exactly ``V`` boxes.
* **Scale of the two terms of Eq. 4.** Literally, the spread term (``V(V-1)`` pixel distances)
  swamps the ``V`` scores (EdgeBoxes scores are O(0.1)). We normalise: scores are divided by the
  best candidate score, centre distances by the image diagonal, and the pair sum by ``V - 1``
  (so each box contributes its mean distance to the others, on the same [0, 1] scale as its
  score)::

      F(S) = sum_{i in S} s_i / s_max + lam / (V - 1) * sum_{i != j in S} ||c_i - c_j|| / diag

  with ``lam = spread_weight = 1`` (the equal weighting of Eq. 4).
* **Solver.** Eq. 4 is a max-sum diversification problem (NP-hard). We use the greedy of
  Borodin, Lee & Ye (PODS 2012): start empty and repeatedly add the candidate maximising
  ``q_u / 2 + lam' * sum_{v in S} d(u, v)``, which is a 2-approximation for a modular quality
  term plus a metric dispersion term (Euclidean centre distance is a metric). It is followed by
  best-improvement 1-swap local search (also a 2-approximation on its own, and it only ever
  increases F), capped at ``V`` swaps. Finally the result is compared with the top-V-by-score
  set and the better F is kept, so the selection never scores below that baseline on Eq. 4.
  All steps are vectorised: O(N V) per greedy step, O(N V) per swap.

References
----------
C. L. Zitnick and P. Dollar, "Edge Boxes: Locating object proposals from edges", ECCV 2014.
A. Borodin, H. C. Lee and Y. Ye, "Max-sum diversification, monotone submodular functions and
dynamic updates", PODS 2012.
MIJR: "Multiple instance joint re-learning" (../shared/papers/mijr-multiple-instance-joint-relearning.txt),
Sec. III-A, Eq. 4.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from backbones.loaded import load_once
from superpixels.validation import check_image

__all__ = ["Proposals", "edge_map", "edge_boxes", "select_proposals", "proposals"]


@dataclass(frozen=True)
class Proposals:
    """Selected object proposals of one image.

    Attributes
    ----------
    boxes : (V, 4) ndarray of int32
        ``(col0, row0, col1, row1)``, half-open, inside the image.
    scores : (V,) ndarray of float32
        EdgeBoxes objectness (0 for grid top-up boxes).
    """

    boxes: np.ndarray
    scores: np.ndarray


@numba.njit(cache=True, nogil=True)
def _interp(e, x, y):
    h, w = e.shape
    if x < 0.0:
        x = 0.0
    if x > w - 1.001:
        x = w - 1.001
    if y < 0.0:
        y = 0.0
    if y > h - 1.001:
        y = h - 1.001
    x0 = int(x)
    y0 = int(y)
    dx = x - x0
    dy = y - y0
    return (e[y0, x0] * (1 - dx) * (1 - dy) + e[y0, x0 + 1] * dx * (1 - dy)
            + e[y0 + 1, x0] * (1 - dx) * dy + e[y0 + 1, x0 + 1] * dx * dy)


@numba.njit(cache=True, nogil=True)
def _edges_nms(e, o, r, s, m):
    """Non-maximum suppression along the edge normal (cos o, sin o) in (col, row)."""
    h, w = e.shape
    out = e.copy()
    for y in range(h):
        for x in range(w):
            v = e[y, x]
            if v == 0.0:
                continue
            v *= m
            co = np.cos(o[y, x])
            si = np.sin(o[y, x])
            for d in range(-r, r + 1):
                if d == 0:
                    continue
                if v < _interp(e, x + d * co, y + d * si):
                    out[y, x] = 0.0
                    break
    # fade out edges near the image border (as in the SED post-processing)
    s = min(s, w // 2, h // 2)
    for x in range(s):
        f = x / s
        for y in range(h):
            out[y, x] *= f
            out[y, w - 1 - x] *= f
    for y in range(s):
        f = y / s
        for x in range(w):
            out[y, x] *= f
            out[h - 1 - y, x] *= f
    return out


def _conv_tri(e: np.ndarray, r: int) -> np.ndarray:
    k = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float32)
    k /= k.sum()
    return cv2.sepFilter2D(e, -1, k, k, borderType=cv2.BORDER_REFLECT)


def _orientation(e: np.ndarray) -> np.ndarray:
    # SED convention: O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi)
    es = _conv_tri(e, 4)
    oy, ox = np.gradient(es)
    _, oxx = np.gradient(ox)
    oyy, oxy = np.gradient(oy)
    o = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)
    return o.astype(np.float32)


def _gradient_edges(image: np.ndarray) -> np.ndarray:
    f = image.astype(np.float32) / 255.0
    f = cv2.GaussianBlur(f, (0, 0), 1.0)
    lab = cv2.cvtColor(f, cv2.COLOR_RGB2LAB)
    lab *= np.array([1 / 100.0, 1 / 128.0, 1 / 128.0], dtype=np.float32)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = np.sqrt(gx * gx + gy * gy).max(axis=2)
    scale = max(float(np.percentile(mag, 99)), 0.05)
    return np.clip(mag / scale, 0.0, 1.0).astype(np.float32)


def _load_sed(edge_model):
    if isinstance(edge_model, (str, os.PathLike)):
        path = os.fspath(edge_model)
        if not os.path.isfile(path):
            raise ValueError(f"edge_model: expected a structured-edge model file, got {path!r}")
        # One model per process and file (the structured-edge forest takes ~1 s to parse).
        return load_once(("structured_edges", path, os.path.getmtime(path)),
                         lambda: cv2.ximgproc.createStructuredEdgeDetection(path))
    if hasattr(edge_model, "detectEdges"):
        return edge_model
    raise ValueError(
        "edge_model: expected None, a model path or a cv2.ximgproc.StructuredEdgeDetection, "
        f"got {type(edge_model).__name__}")


def edge_map(
    image: np.ndarray, *, edge_model: str | os.PathLike | cv2.ximgproc.StructuredEdgeDetection | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Thin edge map and edge orientation for EdgeBoxes.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    edge_model : str, path-like, cv2.ximgproc.StructuredEdgeDetection or None, optional
        Structured-edge model. ``None`` (default): the gradient edge map of the module notes.

    Returns
    -------
    edges : (H, W) ndarray of float32
        Non-maximum-suppressed edge strength in [0, 1].
    orientation : (H, W) ndarray of float32
        Edge-normal orientation in [0, pi) (SED convention).
    """
    image = check_image(image, min_side=8)
    if edge_model is not None:
        sed = _load_sed(edge_model)
        e = sed.detectEdges(image.astype(np.float32) / 255.0)
        o = sed.computeOrientation(e)
        return sed.edgesNms(e, o), o
    e = _gradient_edges(image)
    o = _orientation(e)
    return _edges_nms(e, o, 1, 5, 1.01).astype(np.float32), o


def edge_boxes(
    image: np.ndarray,
    *,
    max_boxes: int = 1000,
    edge_model: str | os.PathLike | cv2.ximgproc.StructuredEdgeDetection | None = None,
    alpha: float = 0.65,
    beta: float = 0.75,
) -> tuple[np.ndarray, np.ndarray]:
    """EdgeBoxes candidate proposals (OpenCV ximgproc).

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    max_boxes : int, optional
        Number of candidates (MIJR: 1000).
    edge_model : str, path-like, cv2.ximgproc.StructuredEdgeDetection or None, optional
        Structured-edge model (see :func:`edge_map`).
    alpha, beta : float, optional
        EdgeBoxes sliding-window step and box-NMS threshold (Zitnick & Dollar's defaults).

    Returns
    -------
    boxes : (N, 4) ndarray of int32
        ``(col0, row0, col1, row1)``, half-open, clipped to the image, ``N <= max_boxes``.
    scores : (N,) ndarray of float32
        Objectness scores, descending.
    """
    image = check_image(image, min_side=8)
    if int(max_boxes) < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    e, o = edge_map(image, edge_model=edge_model)
    eb = cv2.ximgproc.createEdgeBoxes(alpha=float(alpha), beta=float(beta), maxBoxes=int(max_boxes))
    xywh, scores = eb.getBoundingBoxes(e, o)
    if xywh is None or len(xywh) == 0:
        return np.zeros((0, 4), np.int32), np.zeros(0, np.float32)
    xywh = np.asarray(xywh, dtype=np.int64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    h, w = image.shape[:2]
    boxes = np.stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]], 1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return boxes[order].astype(np.int32), scores[order]


def _grid_boxes(h: int, w: int) -> np.ndarray:
    out = []
    for k in (1, 2, 3, 4):
        bh, bw = max(1, h // k), max(1, w // k)
        rows = np.unique(np.linspace(0, h - bh, 2 * k - 1).round().astype(np.int64))
        cols = np.unique(np.linspace(0, w - bw, 2 * k - 1).round().astype(np.int64))
        r, c = np.meshgrid(rows, cols, indexing="ij")
        r, c = r.ravel(), c.ravel()
        out.append(np.stack([c, r, c + bw, r + bh], 1))
    return np.concatenate(out).astype(np.int32)


def _objective(q, dist, sel, lam2):
    # F(S) = sum q + lam2 * sum_{i<j} d_ij  (lam2 = 2 * lam / (V - 1))
    sub = dist[np.ix_(sel, sel)]
    return float(q[sel].sum() + lam2 * np.triu(sub, 1).sum())


def select_proposals(
    boxes: np.ndarray,
    scores: np.ndarray,
    image_shape: tuple[int, ...],
    *,
    n_select: int = 100,
    spread_weight: float = 1.0,
) -> np.ndarray:
    """Select ``V`` proposals maximising objectness plus spread of centres (MIJR Eq. 4).

    Parameters
    ----------
    boxes : (N, 4) ndarray of int
        Candidates ``(col0, row0, col1, row1)``, half-open, inside the image.
    scores : (N,) ndarray of float
        Objectness scores (>= 0).
    image_shape : tuple
        ``(H, W)`` or ``(H, W, C)`` of the image.
    n_select : int, optional
        ``V`` (MIJR: 100). Requires ``N >= V``.
    spread_weight : float, optional
        ``lam``, the weight of the normalised spread term (1 = Eq. 4's equal weighting).

    Returns
    -------
    index : (V,) ndarray of int64
        Indices into ``boxes`` of the selected proposals, in selection order.

    Notes
    -----
    Maximises ``F(S) = sum_i s_i / s_max + lam / (V-1) * sum_{i != j} ||c_i - c_j|| / diag``
    (Eq. 4, normalised as explained in the module notes) by the Borodin-Lee-Ye greedy
    (2-approximation) then 1-swap local search; the top-V-by-score set is kept instead if it
    scores higher.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected (N, 4) boxes, got shape {boxes.shape}")
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"expected {boxes.shape[0]} scores, got {scores.shape[0]}")
    if len(image_shape) < 2 or image_shape[0] < 1 or image_shape[1] < 1:
        raise ValueError(f"expected image_shape (H, W[, C]), got {image_shape}")
    v = int(n_select)
    if v < 1:
        raise ValueError(f"n_select must be >= 1, got {n_select}")
    if boxes.shape[0] < v:
        raise ValueError(f"need at least n_select={v} candidate boxes, got {boxes.shape[0]}")
    if not np.all(np.isfinite(scores)) or (scores.size and scores.min() < 0):
        raise ValueError("scores must be finite and >= 0")
    if spread_weight < 0:
        raise ValueError(f"spread_weight must be >= 0, got {spread_weight}")
    h, w = int(image_shape[0]), int(image_shape[1])
    n = boxes.shape[0]
    q = scores / scores.max() if scores.max() > 0 else np.zeros(n)
    c = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2.0, (boxes[:, 0] + boxes[:, 2]) / 2.0], 1)
    c /= np.hypot(h, w)
    dist = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    # sum_{i != j} counts each pair twice: lam / (V-1) * 2 * sum_{i<j}
    lam2 = 2.0 * float(spread_weight) / max(v - 1, 1)

    # Borodin-Lee-Ye greedy: argmax_u q_u / 2 + lam2 * sum_{v in S} d(u, v)
    chosen = np.zeros(n, dtype=bool)
    dsum = np.zeros(n)
    sel = np.empty(v, dtype=np.int64)
    for t in range(v):  # V steps, each vectorised over the N candidates
        gain = 0.5 * q + lam2 * dsum
        gain[chosen] = -np.inf
        u = int(np.argmax(gain))
        sel[t] = u
        chosen[u] = True
        dsum += dist[u]

    # best-improvement 1-swap local search: swap out i in S, in u not in S
    for _ in range(v):
        dsum = dist[:, sel].sum(1)  # (N,) sum of distances to the current set
        # gain(i -> u) = q_u - q_i + lam2 * (dsum_u - d(u, i) - dsum_i)
        g = (q[None, :] - q[sel][:, None]
             + lam2 * (dsum[None, :] - dist[sel, :] - dsum[sel][:, None]))
        g[:, np.flatnonzero(np.isin(np.arange(n), sel))] = -np.inf
        a, b = np.unravel_index(int(np.argmax(g)), g.shape)
        if g[a, b] <= 1e-12:
            break
        sel[a] = b

    top = np.argsort(-scores, kind="stable")[:v]
    if _objective(q, dist, top, lam2) > _objective(q, dist, sel, lam2):
        sel = top.astype(np.int64)
    return sel


def proposals(
    image: np.ndarray,
    *,
    n_candidates: int = 1000,
    n_select: int = 100,
    edge_model: str | os.PathLike | cv2.ximgproc.StructuredEdgeDetection | None = None,
    spread_weight: float = 1.0,
) -> Proposals:
    """EdgeBoxes proposals selected by Eq. 4 (MIJR Sec. III-A).

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image (at least 8x8).
    n_candidates : int, optional
        EdgeBoxes candidates (MIJR: 1000).
    n_select : int, optional
        ``V``, proposals kept (MIJR: 100).
    edge_model : str, path-like, cv2.ximgproc.StructuredEdgeDetection or None, optional
        Structured-edge model; ``None`` uses the gradient edge map (module notes).
    spread_weight : float, optional
        Weight of the spread term of Eq. 4 (normalised; see module notes).

    Returns
    -------
    Proposals
        ``boxes`` (V, 4) int32 ``(col0, row0, col1, row1)`` and ``scores`` (V,) float32.

    Notes
    -----
    Eq. 4: ``{P*} = argmax sum_i score_i + sum_{i != j} ||c_i - c_j||_2`` over sets of ``V``
    candidates; solver and normalisation in :func:`select_proposals`.

    References
    ----------
    Zitnick & Dollar, ECCV 2014; MIJR Sec. III-A.
    """
    image = check_image(image, min_side=8)
    if int(n_select) < 1 or int(n_candidates) < 1:
        raise ValueError(f"n_select and n_candidates must be >= 1, got {n_select}, {n_candidates}")
    boxes, scores = edge_boxes(image, max_boxes=n_candidates, edge_model=edge_model)
    if boxes.shape[0] < n_select:
        # top up with a deterministic multi-scale grid (score 0): see module notes
        grid = _grid_boxes(*image.shape[:2])
        reps = int(np.ceil((n_select - boxes.shape[0]) / len(grid)))
        fill = np.tile(grid, (reps, 1))[: n_select - boxes.shape[0]]
        boxes = np.concatenate([boxes, fill]).astype(np.int32)
        scores = np.concatenate([scores, np.zeros(len(fill), np.float32)])
    idx = select_proposals(boxes, scores, image.shape, n_select=n_select, spread_weight=spread_weight)
    return Proposals(boxes=boxes[idx].astype(np.int32), scores=scores[idx].astype(np.float32))
