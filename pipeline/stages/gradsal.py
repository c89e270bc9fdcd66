"""Stage ``gradsal``: the GradSal detector.

Wraps :func:`gradsal.saliency` (Algorithm 1 of the GradSal paper: gradient descent on the input of an
ImageNet classifier, SLIC smoothing, low-level refinement). The backbone is loaded once per worker
process (:func:`backbones.load_once`), on the run's device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gradsal import saliency as gradsal_saliency
from pipeline.registry import Resources, Stage, param, register


@dataclass(frozen=True)
class GradsalParams:
    """Parameters of :func:`gradsal.saliency` (see its docstring), plus the backbone.

    Parameters
    ----------
    steps : int
        Gradient-descent iterations T (paper: 5-10).
    gamma : float
        Clamping weight of Eq. 1.
    epsilon : float
        Step size of Eq. 2 on the [0, 1] pixel scale (its meaning depends on ``step_rule``).
    step_rule : str
        How the step of Eq. 2 is sized: ``fixed``, ``normalised`` or ``line_search``.
    theta : float
        Pruning threshold of the raw map, as a fraction of its peak.
    theta_final : float
        Pruning threshold of the refined map, as a fraction of its peak.
    saturation_final : float
        The refined map saturates at this fraction of its peak (values above map to 1).
    alpha : float
        Floor of the low-level map in Eq. 6.
    quantile : float
        The raw map is normalised by this quantile of its values (1: by its maximum).
    input_size : int
        Side of the square network input (the whole image is resized).
    n_segments : int
        SLIC superpixels of the smoothing step (Sec. 3.2; paper: 100).
    compactness : float
        SLIC compactness (paper: 10).
    lowlevel_segments : int or None
        Superpixels of the low-level map (None: those of the smoothing step).
    backbone : str
        ImageNet classifier for ``backbones.load_backbone`` (its weights never downloaded).
    """

    steps: int = param(10, ge=1)
    gamma: float = param(3.0, ge=0)
    epsilon: float = param(0.02, gt=0)
    step_rule: str = param("line_search", choices=("fixed", "normalised", "line_search"))
    theta: float = param(0.0, ge=0, lt=1)
    theta_final: float = param(0.0, ge=0, lt=1)
    saturation_final: float = param(0.4, gt=0, le=1)
    alpha: float = param(0.05, ge=0, le=1)
    quantile: float = param(0.95, gt=0, le=1)
    input_size: int = param(224, ge=32)
    n_segments: int = param(100, ge=1)
    compactness: float = param(10.0, gt=0)
    lowlevel_segments: int | None = param(300, ge=1)
    backbone: str = param("efficientnet_lite0", choices=("efficientnet_lite0", "vgg16", "mobilenet_v2"))


def _backbone(name: str, device: str):
    from backbones import load_backbone, load_once

    return load_once(("backbone", name, device), lambda: load_backbone(name, device=device))


def run_gradsal(inputs, params: GradsalParams, ctx):
    """One image -> ``{"map": refined (H, W) float32, "smoothed": (H, W) float16, "label": int64}``."""
    kwargs = asdict(params)
    model = _backbone(kwargs.pop("backbone"), ctx.device)
    res = gradsal_saliency(inputs["pool"]["image"], model, **kwargs)
    # Stored: the map, the SLIC-smoothed map (piecewise constant: a few KB) and the class. The raw
    # gradient map is gradient noise that no stage reads and the largest part of the artifact
    # (174 of 190 KB on ECSSD): gradsal.saliency returns it to a caller who wants it.
    return {"map": res.refined, "smoothed": res.smoothed.astype(np.float16), "label": np.int64(res.label)}


register(Stage(
    name="gradsal", version="4", inputs=("pool",), params=GradsalParams, granularity="image",
    func=run_gradsal, method=gradsal_saliency, produces_map=True, resources=Resources(wants_gpu=True),
    doc="GradSal: gradient descent on DCNN input + SLIC smoothing + low-level refinement",
))
