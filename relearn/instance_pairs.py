"""Instance pairs and their Table I labels (MIJR Sec. III-B, IV-B).

An instance pair joins a target superpixel ``i`` of image ``I`` with the superpixel
``j_m = Q_M^m(i)`` it is aligned to in the ``m``-th retrieved image ``I_S^m`` (``m = 1 .. M``,
``M = 5``; the ``alignment`` stage's ``superpixel_match``). Its feature is
``CF = {xi_i, xi_j}`` (:mod:`relearn.superpixel_features`) and its alignment similarity ``g``.

Table I (the training label of a pair), reconstructed
-----------------------------------------------------
The body of Table I is missing from the paper's text; Sec. IV-B gives its two conditions, and
says every pair gets a label 1 or 0. The rule implemented (:func:`pair_labels`)::

    label(i, m) = 1   if  IoU(pGT^I_i, GT^I_i) <= T1          (the target is hard)
                      and IoU(GT^I_i, pGT^{I_S^m}_{j_m}) > T2  (the aligned instance is trustworthy)
                  0   otherwise (an easy target, or an aligned instance that disagrees)
                 -1   no pair (no aligned superpixel, or fewer than M retrieved images)

with ``T1 = 0.15``, ``T2 = 0.9``. A positive pair is one that "may potentially bring performance
improvements": a target the prior got wrong, aligned to an instance whose pseudo label is right
for it.

How the two IoUs are measured on superpixels (the paper's instances are regions; it does not say):

* ``c_i`` = the target's ground-truth class: salient when at least half of its pixels are
  salient in GT, background otherwise.
* T1, same region: ``IoU(pGT^I_i, GT^I_i) = |{pGT = c_i} & {GT = c_i}| / |{pGT = c_i} | {GT = c_i}|``
  over the pixels of ``S_i``, where ``pGT = c`` means *trusted* as class ``c`` by the bi-level
  pseudo GT (:func:`relearn.crf_pseudo_gt`): an uncertain pixel is never counted as right. A
  wrongly or uncertainly labelled superpixel has IoU 0, a correctly trusted one 1. The class
  ``c_i``'s masks are compared (rather than the salient masks alone) so that a background
  superpixel has a defined IoU too.
* T2, two different superpixels: the two masks live on different pixels, so the IoU is the fuzzy
  Jaccard index (Ruzicka similarity) of the two class-``c_i`` fractions,
  ``min(a, b) / max(a, b)`` with ``a`` = the fraction of ``S_i`` that is ``c_i`` in GT and ``b``
  = the fraction of ``S_{j_m}`` trusted as ``c_i`` by the neighbour's pseudo GT. It is the IoU
  the two masks would have with the two superpixels overlaid as one region (at best overlap);
  it is > 0.9 only when the neighbour's superpixel is (almost) wholly trusted as the target's
  true class.

Sampling (:func:`sample_pairs`): the paper draws 30k positive and 50k negative pairs at random.
Where fewer exist, all of a class are taken and the samples are weighted so that the two classes
keep the paper's 3 : 5 share of the loss (weights are all 1 when both counts are met).

Decisions the paper leaves open
-------------------------------
* **Similarity g** ("the similarity between the target instance and its m-th aligned info",
  Eq. 3). The pairs are superpixel pairs, whose alignment cost is Eq. 2's ``d(S_i, S_j)``
  (``superpixel_distance``; the K = 1 match of :func:`alignment.bilevel_alignment` has already
  been chosen with the object-level term of Eq. 3). ``g = exp(-d / tau)``, ``tau`` = the median
  finite ``d`` over the training pairs (:func:`similarity_scale`, stored with the model, so ``g``
  compares across neighbours and images); no alignment (match -1, ``d = inf``) gives ``g = 0``
  and no pair.
* **Context inputs.** The networks read ``CF = {xi_i, xi_j}`` followed by six context values
  (:data:`CONTEXT`): the target's prior mean, the target's and the neighbour superpixel's trusted
  salient and background fractions, and ``g``. With ``CF`` alone the filter must guess from
  appearance whether the prior failed on ``i`` (Table I's first condition) and whether the
  neighbour's pseudo label is right (the second), and the saliency classifiers never see the
  easy instance's label that the method transfers; these values give both directly.
  ``context=False`` in the training functions gives the paper's ``CF`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from superpixels import region_mean
from superpixels.validation import check_int, check_labels, check_map, check_weight

__all__ = [
    "CONTEXT",
    "M_NEIGHBOURS",
    "T1",
    "T2",
    "Neighbour",
    "PairInputs",
    "TargetTruth",
    "alignment_similarity",
    "pair_inputs",
    "pair_labels",
    "pseudo_gt_fractions",
    "sample_pairs",
    "similarity_scale",
    "target_truth",
]

T1, T2 = 0.15, 0.90
M_NEIGHBOURS = 5
N_POSITIVE, N_NEGATIVE = 30_000, 50_000
CONTEXT = ("target_prior", "target_salient", "target_background", "neighbour_salient",
           "neighbour_background", "similarity")


@dataclass(frozen=True)
class TargetTruth:
    """What Table I needs of a target image's ground truth, per superpixel.

    Attributes
    ----------
    salient : (n,) ndarray of bool
        ``c_i``: the superpixel's GT class (salient when at least half its pixels are).
    fraction : (n,) ndarray of float64
        ``a``: the fraction of its pixels of class ``c_i`` in GT (>= 0.5; 0 for an empty label).
    iou : (n,) ndarray of float64
        ``IoU(pGT_i, GT_i)`` of the class-``c_i`` masks (module notes; 0 for an empty label).
    """

    salient: np.ndarray
    fraction: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class Neighbour:
    """One retrieved image as the pairs of a target read it.

    Attributes
    ----------
    features : (n_m, F) ndarray
        Its superpixel features (:func:`relearn.superpixel_features`).
    pseudo : (n_m, 2) ndarray
        Its trusted salient and background fractions (:func:`pseudo_gt_fractions`).
    match : (n,) ndarray of int
        For each target superpixel, the aligned superpixel of this image (``alignment`` stage
        ``superpixel_match``; -1 none).
    distance : (n,) ndarray of float
        ``d(S_i, S_match)`` (``alignment`` stage ``superpixel_distance``; inf where none).
    """

    features: np.ndarray
    pseudo: np.ndarray
    match: np.ndarray
    distance: np.ndarray


@dataclass(frozen=True)
class PairInputs:
    """Network inputs of the pairs of some target superpixels with their ``M`` neighbours.

    Attributes
    ----------
    x : (R, M, 2F + 6) or (R, M, 2F) ndarray of float32
        ``[xi_i, xi_j, context]`` per pair (zeros where no pair).
    valid : (R, M) ndarray of bool
        A pair exists (the neighbour exists and aligned ``i`` to a superpixel).
    similarity : (R, M) ndarray of float32
        ``g`` (0 where no pair).
    """

    x: np.ndarray
    valid: np.ndarray
    similarity: np.ndarray


def pseudo_gt_fractions(pseudo_pixels: np.ndarray, labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Per superpixel, the fractions of its pixels trusted salient and trusted background.

    Parameters
    ----------
    pseudo_pixels : (H, W) ndarray of int
        Bi-level pseudo GT (:attr:`relearn.PseudoGT.pixels`: 1 salient, 0 background, -1 uncertain).
    labels : (H, W) ndarray of int
        Superpixel label map.
    n : int, optional
        Number of superpixels (default ``labels.max() + 1``).

    Returns
    -------
    (n, 2) ndarray of float64
        ``[salient fraction, background fraction]``; an empty label gets ``[0, 0]``.
    """
    labels, n = check_labels(labels, "labels", n=n)
    p = np.asarray(pseudo_pixels)
    if p.shape != labels.shape or not np.issubdtype(p.dtype, np.integer) \
            or not np.isin(p, (-1, 0, 1)).all():
        raise ValueError(f"pseudo_pixels: expected an {labels.shape} integer map of -1, 0, 1, "
                         f"got {p.dtype} array of shape {p.shape}")
    both = np.stack([p == 1, p == 0], axis=2).astype(np.float64)
    return region_mean(both, labels, n)


def target_truth(pseudo_pixels: np.ndarray, gt: np.ndarray, labels: np.ndarray,
                 n: int | None = None) -> TargetTruth:
    """The target's GT class, its class fraction and the T1 IoU per superpixel (Table I, module notes).

    Parameters
    ----------
    pseudo_pixels : (H, W) ndarray of int
        The target's bi-level pseudo GT (1, 0, -1).
    gt : (H, W) ndarray of bool, uint8 or float
        Ground-truth mask (salient where > 0.5 after :func:`superpixels.check_map` scaling).
    labels : (H, W) ndarray of int
        The target's superpixel label map.
    n : int, optional
        Number of superpixels.

    Returns
    -------
    TargetTruth
    """
    labels, n = check_labels(labels, "labels", n=n)
    g = check_map(np.asarray(gt), "gt", shape=labels.shape) > 0.5
    pseudo_gt_fractions(pseudo_pixels, labels, n)  # validates the pseudo GT
    p = np.asarray(pseudo_pixels).ravel()
    flat, g = labels.ravel(), g.ravel()

    def count(mask):
        return np.bincount(flat[mask], minlength=n).astype(np.float64)

    # pixel counts, so that the IoU is an exact ratio of integers (3/20 is T1 itself, not above it)
    total = count(np.ones_like(g))
    gt_sal = count(g)
    salient = (2 * gt_sal >= total) & (total > 0)
    cls_gt = np.where(salient, gt_sal, total - gt_sal)
    cls_p = np.where(salient, count(p == 1), count(p == 0))
    inter = np.where(salient, count((p == 1) & g), count((p == 0) & ~g))
    union = cls_gt + cls_p - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total > 0, cls_gt / total, 0.0)
        iou = np.where(union > 0, inter / union, 0.0)
    return TargetTruth(salient=salient, fraction=fraction, iou=iou)


def _check_match(match, distance, n, n_m, name):
    match = np.asarray(match)
    distance = np.asarray(distance, np.float64)
    if match.shape != (n,) or not np.issubdtype(match.dtype, np.integer):
        raise ValueError(f"{name}.match: expected an ({n},) integer array (one per target superpixel), "
                         f"got {match.dtype} array of shape {match.shape}")
    if match.size and (match.min() < -1 or match.max() >= n_m):
        raise ValueError(f"{name}.match: expected indices in -1 .. {n_m - 1} (its superpixels), "
                         f"got {int(match.min())} .. {int(match.max())}")
    if distance.shape != (n,) or np.isnan(distance).any() or (distance < 0).any():
        raise ValueError(f"{name}.distance: expected an ({n},) array of distances >= 0 (inf: none), "
                         f"got shape {distance.shape}")
    return match.astype(np.int64), distance


def _check_neighbours(neighbours, n, m_max):
    if len(neighbours) > m_max:
        raise ValueError(f"neighbours: expected at most M = {m_max}, got {len(neighbours)}")
    out = []
    for k, nb in enumerate(neighbours):
        if not isinstance(nb, Neighbour):
            raise ValueError(f"neighbours[{k}]: expected a relearn.Neighbour, got {type(nb).__name__}")
        f = np.asarray(nb.features)
        ps = np.asarray(nb.pseudo, np.float32)
        if f.ndim != 2:
            raise ValueError(f"neighbours[{k}].features: expected (n_m, F), got shape {f.shape}")
        if ps.shape != (f.shape[0], 2):
            raise ValueError(f"neighbours[{k}].pseudo: expected ({f.shape[0]}, 2) fractions, got shape {ps.shape}")
        match, dist = _check_match(nb.match, nb.distance, n, f.shape[0], f"neighbours[{k}]")
        out.append((f, ps, match, dist))
    return out


def pair_labels(truth: TargetTruth, neighbour_pseudo: Sequence[np.ndarray], matches: Sequence[np.ndarray], *,
                t1: float = T1, t2: float = T2, m_max: int = M_NEIGHBOURS) -> np.ndarray:
    """Table I labels of a target's pairs (module notes for the rule).

    Parameters
    ----------
    truth : TargetTruth
        :func:`target_truth` of the target (n superpixels).
    neighbour_pseudo : sequence of (n_m, 2) ndarray
        Per retrieved image, :func:`pseudo_gt_fractions` of its superpixels.
    matches : sequence of (n,) ndarray of int
        Per retrieved image, ``superpixel_match`` (-1: none).
    t1, t2 : float, optional
        Table I thresholds (paper: 0.15 and 0.90).
    m_max : int, optional
        ``M``, the number of label columns.

    Returns
    -------
    (n, M) ndarray of int8
        1 positive, 0 negative, -1 no pair (also for the columns past ``len(matches)``).
    """
    t1 = check_weight(t1, "t1")
    t2 = check_weight(t2, "t2")
    if t1 > 1 or t2 > 1:
        raise ValueError(f"t1, t2: expected IoU thresholds in [0, 1], got {t1}, {t2}")
    m_max = check_int(m_max, "m_max")
    if len(neighbour_pseudo) != len(matches):
        raise ValueError(f"neighbour_pseudo, matches: expected equal lengths, got "
                         f"{len(neighbour_pseudo)} and {len(matches)}")
    if len(matches) > m_max:
        raise ValueError(f"matches: expected at most M = {m_max} neighbours, got {len(matches)}")
    n = truth.salient.shape[0]
    out = np.full((n, m_max), -1, np.int8)
    hard = truth.iou <= t1                                           # Table I: IoU(pGT, GT) <= T1
    a = truth.fraction.astype(np.float64)
    for m, (ps, match) in enumerate(zip(neighbour_pseudo, matches)):
        ps = np.asarray(ps, np.float64)
        if ps.ndim != 2 or ps.shape[1] != 2:
            raise ValueError(f"neighbour_pseudo[{m}]: expected (n_m, 2) fractions, got shape {ps.shape}")
        match, _ = _check_match(match, np.zeros(n), n, ps.shape[0], f"matches[{m}]")
        ok = match >= 0
        b = np.where(truth.salient, ps[match, 0], ps[match, 1]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou2 = np.where(np.maximum(a, b) > 0, np.minimum(a, b) / np.maximum(a, b), 0.0)
        trusted = iou2 > t2                                          # Table I: IoU(GT, pGT^IS) > T2
        out[:, m] = np.where(ok, (hard & trusted).astype(np.int8), -1)
    return out


def similarity_scale(distances: Sequence[np.ndarray]) -> float:
    """``tau`` of ``g = exp(-d / tau)``: the median finite, positive alignment distance (1 if none)."""
    d = np.concatenate([np.asarray(x, np.float64).ravel() for x in distances]) if len(distances) else np.zeros(0)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else 1.0


def alignment_similarity(distance: np.ndarray, scale: float) -> np.ndarray:
    """``g = exp(-d / tau)`` per pair; 0 where ``d`` is inf (no alignment)."""
    scale = check_weight(scale, "scale", positive=True)
    d = np.asarray(distance, np.float64)
    with np.errstate(over="ignore"):
        return np.where(np.isfinite(d), np.exp(-np.maximum(d, 0.0) / scale), 0.0).astype(np.float32)


def pair_inputs(target_features: np.ndarray, target_prior: np.ndarray, target_pseudo: np.ndarray,
                neighbours: Sequence[Neighbour], *, similarity_scale: float, rows: np.ndarray | None = None,
                context: bool = True, m_max: int = M_NEIGHBOURS) -> PairInputs:
    """Inputs ``[xi_i, xi_j, context]`` of the pairs of target superpixels with their neighbours.

    Parameters
    ----------
    target_features : (n, F) ndarray
        The target's superpixel features.
    target_prior : (n,) ndarray
        The prior's mean over each target superpixel.
    target_pseudo : (n, 2) ndarray
        The target's :func:`pseudo_gt_fractions`.
    neighbours : sequence of Neighbour
        Up to ``M`` retrieved images, in the ``neighbours`` stage's order.
    similarity_scale : float
        ``tau`` of ``g`` (the model's; :func:`similarity_scale`).
    rows : (R,) ndarray of int, optional
        Target superpixels to build (default: all ``n``).
    context : bool, optional
        Append the six :data:`CONTEXT` values.
    m_max : int, optional
        ``M``: neighbour slots (missing neighbours are invalid slots).

    Returns
    -------
    PairInputs
    """
    tf = np.asarray(target_features)
    if tf.ndim != 2:
        raise ValueError(f"target_features: expected (n, F), got shape {tf.shape}")
    n, f_dim = tf.shape
    prior = np.asarray(target_prior, np.float32)
    tp = np.asarray(target_pseudo, np.float32)
    if prior.shape != (n,):
        raise ValueError(f"target_prior: expected ({n},) superpixel means, got shape {prior.shape}")
    if tp.shape != (n, 2):
        raise ValueError(f"target_pseudo: expected ({n}, 2) fractions, got shape {tp.shape}")
    m_max = check_int(m_max, "m_max")
    nbs = _check_neighbours(neighbours, n, m_max)
    for k, (f, _, _, _) in enumerate(nbs):
        if f.shape[1] != f_dim:
            raise ValueError(f"neighbours[{k}].features: expected F = {f_dim} columns like the target's, "
                             f"got {f.shape[1]}")
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError(f"rows: expected a 1-D array of target superpixels in 0 .. {n - 1}")
    r = rows.size
    width = 2 * f_dim + (len(CONTEXT) if context else 0)
    x = np.zeros((r, m_max, width), np.float32)
    valid = np.zeros((r, m_max), bool)
    sim = np.zeros((r, m_max), np.float32)
    x[:, :, :f_dim] = tf[rows][:, None, :]
    for m, (f, ps, match, dist) in enumerate(nbs):
        j = match[rows]
        ok = j >= 0
        g = np.where(ok, alignment_similarity(dist[rows], similarity_scale), 0.0)
        valid[:, m] = ok
        sim[:, m] = g
        x[ok, m, f_dim:2 * f_dim] = f[j[ok]]
        if context:
            x[ok, m, 2 * f_dim:] = np.column_stack([prior[rows], tp[rows], ps[j], g])[ok]
    x[~valid] = 0.0
    return PairInputs(x=x, valid=valid, similarity=sim)


def sample_pairs(labels: np.ndarray, *, n_positive: int = N_POSITIVE, n_negative: int = N_NEGATIVE,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw the filter's training pairs: up to 30k positives and 50k negatives (Sec. IV-B).

    Parameters
    ----------
    labels : (P,) ndarray of int
        Table I labels of all pairs (1, 0; -1 entries are never drawn).
    n_positive, n_negative : int, optional
        How many of each class to draw (paper: 30 000 and 50 000); all when fewer exist.
    seed : int, optional
        Random draw.

    Returns
    -------
    index : (K,) ndarray of int64
        Drawn entries of ``labels``, sorted.
    weight : (K,) ndarray of float32
        Per drawn pair, the weight that gives the classes the ``n_positive : n_negative`` share of
        the loss (all 1 when both counts are met; mean 1).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected a 1-D integer array, got {labels.dtype} array of shape {labels.shape}")
    n_positive = check_int(n_positive, "n_positive")
    n_negative = check_int(n_negative, "n_negative")
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"labels: expected both positive and negative pairs, got {pos.size} positive "
                         f"and {neg.size} negative")
    pos = rng.choice(pos, min(n_positive, pos.size), replace=False)
    neg = rng.choice(neg, min(n_negative, neg.size), replace=False)
    index = np.sort(np.concatenate([pos, neg]))
    total = pos.size + neg.size
    share_pos = n_positive / (n_positive + n_negative)
    w_pos = share_pos * total / pos.size
    w_neg = (1.0 - share_pos) * total / neg.size
    weight = np.where(labels[index] == 1, w_pos, w_neg).astype(np.float32)
    return index.astype(np.int64), weight
