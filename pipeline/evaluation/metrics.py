"""Salient-object metrics over a pool, following the SOD community toolkits.

Every metric that ``py_sod_metrics`` (PySODMetrics) provides is taken from it, fed exactly as its
own evaluation scripts do: the stored 0..255 map and mask with ``normalize=True`` (so the map is
min-max normalised, MATLAB's ``mapminmax(im2double(.))``, and the mask binarised at ``> 128``):

- F-measure (Achanta et al., CVPR 2009), beta^2 = 0.3, at the 256 thresholds ``map >= t``,
  t = 0..255 (``FmeasureV2`` + ``FmeasureHandler``): **max F** = max over t of the F curve averaged
  over images, **mean F** = mean of that curve, **adaptive F** = mean over images of F at the
  threshold ``min(2 mean(map), 1)``; precision and recall curves likewise (PR curve).
- MAE (Perazzi et al., CVPR 2012).
- S-measure (Fan et al., ICCV 2017), alpha = 0.5.
- E-measure (Fan et al., IJCAI 2018): **max E** and **mean E** of the image-averaged 256-threshold
  curve, and adaptive E.
- weighted F-measure (Margolin et al., CVPR 2014), beta = 1 as in the authors' code.

AUC (area under the ROC curve) is not in PySODMetrics. :class:`AUC` computes, per image, the exact
Mann-Whitney form of the ROC area of the stored 0..255 map against the binary mask,
``AUC = P(s_fg > s_bg) + 0.5 P(s_fg = s_bg)``, from the two 256-bin histograms; this is the value
``sklearn.metrics.roc_auc_score(gt, map)`` returns (ties count one half; the tests check it), in
O(pixels) instead of a sort. The pooled AUC is the mean over images. When the mask holds one class
only, the ROC area is undefined: that image's AUC is ``None`` and it is left out of the mean (the
count is reported as ``auc_undefined``); every other metric handles that case as the toolkits do
(S-measure ``1 - mean(map)`` on an empty mask, E-measure on the background alone, weighted F 0).

Per image, ``max_f`` / ``mean_f`` / ``max_e`` / ``mean_e`` are the max / mean of that image's own
curve; pooled, they are taken on the averaged curve (the toolkits' convention), so the pooled max F
is not the mean of the per-image max F.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import py_sod_metrics as sod

from .io import Notices, as_source, normalize_gt, normalize_map, resize_to

logger = logging.getLogger("pipeline.evaluation")

# (key, label, higher is better): the order of the report table.
METRICS = (
    ("max_f", "max F", True),
    ("mean_f", "mean F", True),
    ("adp_f", "adp F", True),
    ("mae", "MAE", False),
    ("s_measure", "S", True),
    ("max_e", "max E", True),
    ("mean_e", "mean E", True),
    ("weighted_f", "wF", True),
    ("auc", "AUC", True),
)
EXTRA_METRICS = ("adp_e",)
THRESHOLDS = np.arange(256)


class AUC:
    """Area under the ROC curve of a 0..255 map against a binary mask, per image, exact.

    Same streaming shape as the PySODMetrics evaluators: :meth:`step` per image,
    :meth:`get_results` at the end.

    Notes
    -----
    With ``h1[k]``, ``h0[k]`` the histograms of map values k over foreground and background pixels,
    ``n1 = sum h1``, ``n0 = sum h0``:
    ``AUC = sum_k h1[k] (sum_{j<k} h0[j] + h0[k] / 2) / (n1 n0)``,
    the trapezoidal ROC area with all thresholds (Hanley & McNeil, Radiology 1982).
    Undefined (``nan`` here, ``None`` in reports) when ``n1 == 0`` or ``n0 == 0``.
    """

    def __init__(self):
        self.aucs: list[float] = []

    def step(self, pred: np.ndarray, gt: np.ndarray):
        """Accumulate one image.

        Parameters
        ----------
        pred : (H, W) uint8 ndarray
            The map as stored, 0..255 (any strictly monotone rescaling gives the same AUC).
        gt : (H, W) ndarray
            Mask, uint8 (foreground ``> 128``) or bool.
        """
        if pred.shape != gt.shape:
            raise ValueError(f"Shape mismatch between prediction ({pred.shape}) and ground truth ({gt.shape})")
        if pred.dtype != np.uint8:
            raise ValueError(f"AUC expects the uint8 0..255 map; got {pred.dtype}")
        self.aucs.append(self.cal_auc(pred, gt if gt.dtype == np.bool_ else gt > 128))

    @staticmethod
    def cal_auc(pred: np.ndarray, gt: np.ndarray) -> float:
        h1 = np.bincount(pred[gt], minlength=256).astype(np.float64)
        h0 = np.bincount(pred[~gt], minlength=256).astype(np.float64)
        n1, n0 = h1.sum(), h0.sum()
        if n1 == 0 or n0 == 0:
            return float("nan")
        below = np.concatenate(([0.0], np.cumsum(h0)[:-1]))
        return float(np.sum(h1 * (below + 0.5 * h0)) / (n1 * n0))

    def get_results(self) -> dict:
        """``dict(auc=mean over defined images or None, undefined=count)``."""
        arr = np.asarray(self.aucs, dtype=np.float64)
        ok = ~np.isnan(arr)
        return dict(auc=float(arr[ok].mean()) if ok.any() else None, undefined=int((~ok).sum()))


class SODEvaluator:
    """All the report's metrics for one method, streaming: ``step(pred, gt)`` then ``get_results()``.

    Parameters
    ----------
    beta2 : float
        beta^2 of the F-measure (0.3, Achanta et al. 2009).
    alpha : float
        S-measure balance between object and region terms (0.5, Fan et al. 2017).
    """

    def __init__(self, *, beta2: float = 0.3, alpha: float = 0.5):
        self.handlers = {
            "f": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=beta2),
            "p": sod.PrecisionHandler(with_dynamic=True, with_adaptive=False),
            "r": sod.RecallHandler(with_dynamic=True, with_adaptive=False),
        }
        self.fm = sod.FmeasureV2(metric_handlers=dict(self.handlers))
        self.mae = sod.MAE()
        self.sm = sod.Smeasure(alpha=alpha)
        self.em = sod.Emeasure()
        self.wfm = sod.WeightedFmeasure()
        self.auc = AUC()
        self.per_image: list[dict] = []

    def step(self, pred: np.ndarray, gt: np.ndarray) -> dict:
        """Score one image; ``pred`` and ``gt`` are (H, W) uint8 0..255 of the same shape.

        Returns the image's metrics (also kept for :meth:`get_results`).
        """
        self.fm.step(pred, gt, normalize=True)
        self.mae.step(pred, gt, normalize=True)
        self.sm.step(pred, gt, normalize=True)
        self.em.step(pred, gt, normalize=True)
        self.wfm.step(pred, gt, normalize=True)
        self.auc.step(pred, gt)
        h = self.handlers
        f_curve = np.asarray(h["f"].dynamic_results[-1], dtype=np.float64)
        e_curve = np.asarray(self.em.changeable_ems[-1], dtype=np.float64)
        auc = self.auc.aucs[-1]
        row = {
            "max_f": float(f_curve.max()),
            "mean_f": float(f_curve.mean()),
            "adp_f": float(h["f"].adaptive_results[-1]),
            "mae": float(self.mae.maes[-1]),
            "s_measure": float(self.sm.sms[-1]),
            "max_e": float(e_curve.max()),
            "mean_e": float(e_curve.mean()),
            "adp_e": float(self.em.adaptive_ems[-1]),
            "weighted_f": float(self.wfm.weighted_fms[-1]),
            "auc": None if np.isnan(auc) else float(auc),
        }
        self.per_image.append(row)
        return row

    def get_results(self) -> tuple[dict, dict]:
        """Pooled metrics and curves.

        Returns
        -------
        pooled : dict
            Metric key -> float (``auc`` may be None), plus ``n_images`` and ``auc_undefined``.
        curves : dict of (256,) float64 ndarray
            ``precision``, ``recall``, ``fmeasure``, ``emeasure`` at thresholds ``map >= t``,
            t = 0..255 (ascending; PySODMetrics stores them descending).
        """
        if not self.per_image:
            raise ValueError("no image was scored")
        h = self.handlers
        f_curve = np.mean(np.asarray(h["f"].dynamic_results, dtype=np.float64), axis=0)
        p_curve = np.mean(np.asarray(h["p"].dynamic_results, dtype=np.float64), axis=0)
        r_curve = np.mean(np.asarray(h["r"].dynamic_results, dtype=np.float64), axis=0)
        em = self.em.get_results()["em"]
        e_curve = np.asarray(em["curve"], dtype=np.float64)
        auc = self.auc.get_results()
        pooled = {
            "max_f": float(f_curve.max()),
            "mean_f": float(f_curve.mean()),
            "adp_f": float(np.mean(np.asarray(h["f"].adaptive_results, dtype=np.float64))),
            "mae": float(self.mae.get_results()["mae"]),
            "s_measure": float(self.sm.get_results()["sm"]),
            "max_e": float(e_curve.max()),
            "mean_e": float(e_curve.mean()),
            "adp_e": float(em["adp"]),
            "weighted_f": float(self.wfm.get_results()["wfm"]),
            "auc": auc["auc"],
            "n_images": len(self.per_image),
            "auc_undefined": auc["undefined"],
        }
        curves = {
            "precision": p_curve[::-1].copy(),
            "recall": r_curve[::-1].copy(),
            "fmeasure": f_curve[::-1].copy(),
            "emeasure": e_curve[::-1].copy(),
        }
        return pooled, curves


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of several methods on one set of masks.

    Attributes
    ----------
    methods : tuple of str
        Method names in the order given (methods with no scoreable image are absent).
    pooled : dict
        method -> metric key -> value (see :data:`METRICS`; also ``adp_e``, ``n_images``,
        ``auc_undefined``). ``auc`` is None when no image had both classes.
    per_image : dict
        method -> stem -> metric key -> value.
    curves : dict
        method -> {"precision", "recall", "fmeasure", "emeasure"} (256,) arrays over thresholds
        ``map >= t``, t = 0..255.
    notices : tuple of str
        One line each: missing stems, resized maps, binarised masks, unreadable files, ...
    maps, gts : Mapping
        The sources that were scored (lazy for folders), for the contact sheet.
    """

    methods: tuple[str, ...]
    pooled: dict
    per_image: dict
    curves: dict
    notices: tuple[str, ...] = ()
    maps: Mapping = field(default_factory=dict, repr=False, compare=False)
    gts: Mapping | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (floats, lists, None; never NaN)."""
        return {
            "metrics": [{"key": k, "label": lab, "higher_is_better": hib} for k, lab, hib in METRICS]
            + [{"key": "adp_e", "label": "adp E", "higher_is_better": True}],
            "thresholds": THRESHOLDS.tolist(),
            "notices": list(self.notices),
            "methods": {
                m: {
                    "pooled": _clean(self.pooled[m]),
                    "curves": {k: _clean(v.tolist()) for k, v in self.curves[m].items()},
                    "per_image": {s: _clean(r) for s, r in self.per_image[m].items()},
                }
                for m in self.methods
            },
        }


def _clean(obj):
    """Replace NaN/inf by None recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _method_sources(maps) -> dict[str, Mapping]:
    """Normalise the ``maps`` argument to an ordered dict method -> Mapping stem -> array."""
    if isinstance(maps, (str, os.PathLike)):
        maps = [maps]
    if isinstance(maps, Mapping):
        return {str(name): as_source(src, what=f"maps of {name}") for name, src in maps.items()}
    if isinstance(maps, Sequence):
        out: dict[str, Mapping] = {}
        for folder in maps:
            path = Path(folder)
            name = path.name or str(path)
            if name in out:
                name = f"{path.parent.name}/{path.name}"
            k = 2
            base = name
            while name in out:
                name, k = f"{base}#{k}", k + 1
            out[name] = as_source(path, what=f"maps of {name}")
        return out
    raise TypeError(f"maps: expected a Mapping or a list of folders; got {type(maps).__name__}")


def _load_gt(gts: Mapping, stem: str, notices: Notices):
    try:
        mask, kinds = normalize_gt(gts[stem])
    except Exception as exc:  # one unreadable mask must not stop the pool
        notices.add("gt", "unreadable", stem, detail=str(exc).splitlines()[0][:200])
        return None
    for kind in kinds:
        notices.add("gt", kind, stem)
    return mask


def _score_method(name: str, source: Mapping, gts: Mapping, stems: list[str], beta2: float, alpha: float):
    """Score one method on ``stems``; returns (pooled, per_image, curves, notices) or None parts."""
    notices = Notices()
    ev = SODEvaluator(beta2=beta2, alpha=alpha)
    per_image: dict[str, dict] = {}
    for stem in stems:
        gt = _load_gt(gts, stem, notices)
        if gt is None:
            continue
        try:
            pred, kinds = normalize_map(source[stem])
        except Exception as exc:
            notices.add(name, "unreadable", stem, detail=str(exc).splitlines()[0][:200])
            continue
        for kind in kinds:
            notices.add(name, kind, stem)
        if pred.shape != gt.shape:
            notices.add(name, "map_resized", stem)
            pred = resize_to(pred, gt.shape)
        per_image[stem] = ev.step(pred, gt)
    if not per_image:
        return None, {}, None, notices
    pooled, curves = ev.get_results()
    return pooled, per_image, curves, notices


def evaluate_methods(
    maps,
    gts,
    *,
    stems: Sequence[str] | None = None,
    beta2: float = 0.3,
    alpha: float = 0.5,
    n_jobs: int = 1,
    log: bool = True,
) -> EvaluationResult:
    """Score saliency maps of one or more methods against ground-truth masks.

    Parameters
    ----------
    maps : Mapping[str, Mapping[str, ndarray] | path] or sequence of paths
        Per method, the maps by stem: in memory ((H, W) float32 in [0, 1], or uint8 0..255), or a
        folder of map files (PNG/JPEG/BMP/TIFF/.npy, matched by stem). A list of folders names each
        method by its folder name.
    gts : Mapping[str, ndarray] or path
        Masks by stem, or a folder of mask files. Stored masks in any of gray/RGB/RGBA, 8/16/1 bit
        are normalised and binarised at > 128 (see :mod:`pipeline.evaluation.io`).
    stems : sequence of str, optional
        Score only these stems (e.g. a test split); default all GT stems.
    beta2 : float, optional
        F-measure beta^2 (0.3).
    alpha : float, optional
        S-measure alpha (0.5).
    n_jobs : int, optional
        Methods scored in parallel processes (joblib); 1 = in this process.
    log : bool, optional
        Also log each notice (logger ``pipeline.evaluation``, WARNING). Callers that print
        ``result.notices`` themselves pass False.

    Returns
    -------
    EvaluationResult

    Notes
    -----
    A method is scored on the intersection of its stems with the GT stems; missing and extra maps
    are each reported in one notice line.
    """
    sources = _method_sources(maps)
    gt_source = as_source(gts, what="ground-truth")
    notices = Notices()
    for src in [gt_source, *sources.values()]:
        for problem in getattr(src, "problems", ()):
            notices.line(problem)
    gt_stems = list(gt_source.keys())
    if stems is not None:
        wanted = list(dict.fromkeys(str(s) for s in stems))
        absent = [s for s in wanted if s not in gt_source]
        if absent:
            notices.line(
                f"gt: {len(absent)} of {len(wanted)} requested stems have no mask and are skipped: "
                + ", ".join(absent[:3]) + (f" (+{len(absent) - 3} more)" if len(absent) > 3 else "")
            )
        gt_stems = [s for s in wanted if s in gt_source]
    if not gt_stems:
        notices.line("gt: no ground-truth mask to score against")

    plan = {}
    for name, src in sources.items():
        available = set(src.keys())
        common = [s for s in gt_stems if s in available]
        missing = [s for s in gt_stems if s not in available]
        extra = sorted(available - set(gt_source.keys())) if stems is None else []
        if missing:
            notices.line(
                f"{name}: {len(missing)} of {len(gt_stems)} GT images have no map; scored on the "
                f"{len(common)} in common (missing: " + ", ".join(missing[:3])
                + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "") + ")"
            )
        if extra:
            notices.line(
                f"{name}: {len(extra)} map(s) have no GT mask and are ignored: " + ", ".join(extra[:3])
                + (f" (+{len(extra) - 3} more)" if len(extra) > 3 else "")
            )
        if not common:
            notices.line(f"{name}: no map matches a GT mask by stem; method not scored")
            continue
        plan[name] = common

    if n_jobs != 1 and len(plan) > 1:
        from joblib import Parallel, delayed

        outs = Parallel(n_jobs=n_jobs)(
            delayed(_score_method)(n, sources[n], gt_source, st, beta2, alpha) for n, st in plan.items()
        )
    else:
        outs = [_score_method(n, sources[n], gt_source, st, beta2, alpha) for n, st in plan.items()]

    methods, pooled, per_image, curves = [], {}, {}, {}
    for name, (p, rows, c, nts) in zip(plan, outs):
        notices.merge(nts)
        if p is None:
            notices.line(f"{name}: no image could be scored")
            continue
        methods.append(name)
        pooled[name], per_image[name], curves[name] = p, rows, c
    lines = tuple(notices.lines())
    if log:
        for line in lines:
            logger.warning(line)
    return EvaluationResult(
        methods=tuple(methods), pooled=pooled, per_image=per_image, curves=curves, notices=lines,
        maps=sources, gts=gt_source,
    )
