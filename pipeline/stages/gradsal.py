"""Stages ``gradsal`` (GradSal detector) and ``contrast`` (classical low-level prior).

* ``gradsal`` wraps :func:`gradsal.saliency` (Algorithm 1 of the GradSal paper: gradient
  descent on the input of an ImageNet classifier, SLIC smoothing, low-level refinement).
  The backbone is loaded once per worker process and kept in a module-level cache (keyed by
  name and device), so a worker that handles many images pays for the weights once.
* ``contrast`` wraps :func:`detect.contrast.contrast_saliency` (GradSal Sec. 3.3 / Fu
  et al. ACCV 2012: superpixel colour contrast, colour distribution, centre prior).

The parameter defaults are the functions' defaults, chosen on the ECSSD train split
(``benchmarks/results/gradsal_tuning.md``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from gradsal import saliency as gradsal_saliency
from pipeline.registry import Stage, register
from detect.contrast import contrast_saliency

_GS = inspect.signature(gradsal_saliency).parameters
_LL = inspect.signature(contrast_saliency).parameters

def _backbone(name, device):
    from backbones import load_backbone, load_once

    return load_once(("backbone", name, device), lambda: load_backbone(name, device=device))


@dataclass(frozen=True)
class GradsalParams:
    """Parameters of :func:`gradsal.saliency` (see its docstring), plus the backbone.

    steps : T gradient steps (paper: 5-10); gamma : clamping weight (Eq. 1); epsilon : step
    size on the [0, 1] pixel scale (Eq. 2); theta / theta_final : pruning thresholds as a
    fraction of the peak; alpha : floor of the low-level map (Eq. 6); quantile : the raw
    map's scale (1 = its max); input_size : square network input; n_segments / compactness :
    SLIC of Sec. 3.2 (paper: 100 / 10); lowlevel_segments : superpixels of the low-level map
    (None: those of the smoothing);
    backbone : name for ``backbones.load_backbone``; device : None picks CUDA when present;
    torch_threads : intra-op threads of torch in the worker (0: torch's default).  One by
    default: the runner already parallelises over images, and on a shared machine two
    spinning OpenMP threads made a stage call 10-30x slower (measured: 2.4 s -> 24-30 s per
    image with a second process busy).
    """

    steps: int = _GS["steps"].default
    gamma: float = _GS["gamma"].default
    epsilon: float = _GS["epsilon"].default
    theta: float = _GS["theta"].default
    theta_final: float = _GS["theta_final"].default
    alpha: float = _GS["alpha"].default
    quantile: float = _GS["quantile"].default
    input_size: int = _GS["input_size"].default
    n_segments: int = _GS["n_segments"].default
    compactness: float = _GS["compactness"].default
    lowlevel_segments: int | None = _GS["lowlevel_segments"].default
    backbone: str = "efficientnet_lite0"
    device: str | None = None
    torch_threads: int = 1


def run_gradsal(inputs, params: GradsalParams):
    """One image -> ``{"map": refined, "raw", "smoothed": (H, W) float32, "label": int64}``."""
    image = inputs["pool"]["image"]
    if params.torch_threads > 0:
        import torch

        if torch.get_num_threads() != params.torch_threads:
            torch.set_num_threads(params.torch_threads)
    model = _backbone(params.backbone, params.device)
    res = gradsal_saliency(
        image, model, steps=params.steps, gamma=params.gamma, epsilon=params.epsilon,
        theta=params.theta, theta_final=params.theta_final, alpha=params.alpha,
        quantile=params.quantile, input_size=params.input_size, n_segments=params.n_segments,
        compactness=params.compactness, lowlevel_segments=params.lowlevel_segments,
    )
    return {"map": res.refined, "raw": res.raw, "smoothed": res.smoothed,
            "label": np.int64(res.label)}


@dataclass(frozen=True)
class ContrastParams:
    """Parameters of :func:`detect.contrast.contrast_saliency` (see its docstring).

    n_segments / compactness : SLIC; spatial_sigma : spatial weight of the colour contrast
    (None: none); color_sigma : colour affinity width in LAB units; use_distribution : the
    colour-distribution term; center_sigma : centre prior width (None: none).
    """

    n_segments: int = _LL["n_segments"].default
    compactness: float = _LL["compactness"].default
    spatial_sigma: float | None = _LL["spatial_sigma"].default
    color_sigma: float = _LL["color_sigma"].default
    use_distribution: bool = _LL["use_distribution"].default
    center_sigma: float | None = _LL["center_sigma"].default


def run_contrast(inputs, params: ContrastParams):
    """One image -> ``{"map": (H, W) float32 in [0, 1]}``."""
    image = inputs["pool"]["image"]
    return {"map": contrast_saliency(
        image, n_segments=params.n_segments, compactness=params.compactness,
        spatial_sigma=params.spatial_sigma, color_sigma=params.color_sigma,
        use_distribution=params.use_distribution, center_sigma=params.center_sigma,
    )}


register(Stage(name="gradsal", version="1", inputs=("pool",), params=GradsalParams,
               granularity="image", func=run_gradsal, produces_map=True,
               doc="GradSal: gradient descent on DCNN input + SLIC smoothing + low-level refinement"))
register(Stage(name="contrast", version="1", inputs=("pool",), params=ContrastParams,
               granularity="image", func=run_contrast, produces_map=True,
               doc="Classical colour-contrast prior (GradSal Sec. 3.3 / Fu et al. 2012)"))
