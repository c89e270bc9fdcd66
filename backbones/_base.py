"""Common base of the pretrained backbones: preprocessing, feature taps, classification.

Every backbone in this package is a ``torch.nn.Module`` subclass of :class:`Backbone`
whose own ``state_dict()`` has exactly the key layout of the published weight file it
loads (no wrapper prefix), so ``load_state_dict(..., strict=True)`` is the check that the
architecture is right. The normalisation constants are registered as non-persistent
buffers: they follow ``.to(device)`` but are not part of the state dict.

Decisions shared by all backbones
---------------------------------
* Input images are ``(H, W, 3)`` uint8 RGB (the package-wide convention). ``preprocess``
  converts to float in [0, 1], resizes on the backbone's device with bilinear
  interpolation and anti-aliasing (``torch.nn.functional.interpolate(...,
  antialias=True)``), then normalises with the backbone's per-channel ``mean`` / ``std``
  (given on the [0, 1] scale). The *whole* image is resized to the model's native
  square resolution (224 for all three): the usual ImageNet evaluation centre crop
  (resize 256, crop 224) is deliberately not applied, because saliency methods need
  every pixel of the image to be seen by the network.
* ``forward(x)`` returns the logits before the softmax and is an ordinary autograd
  function of ``x`` (GradSal back-propagates to the input); only the batched helpers
  (``classify``, :func:`backbones.extract_features`) run under ``torch.inference_mode()``.
* Modules are put in ``eval()`` mode at construction (batch-norm uses the running
  statistics; dropout is off).
* Feature taps are named by their stride with respect to the network input: ``"sK"`` is
  the deepest activation at stride K, of spatial size ``ceil(n / K)`` for the
  EfficientNet / MobileNet taps (``floor(n / K)`` for VGG's 2x2 max-pooling; the same
  for multiples of K such as 224). Each backbone documents what each tap is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Backbone",
    "Classification",
    "WeightsNotFoundError",
    "select_device",
    "IMAGENET_NUM_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: Number of ImageNet-1k classes predicted by every classifier head here.
IMAGENET_NUM_CLASSES = 1000
#: torchvision's ImageNet normalisation (RGB, on the [0, 1] scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFoundError(FileNotFoundError):
    """A weight file that must be supplied locally (never downloaded) is absent."""


@dataclass(frozen=True)
class Classification:
    """Top-k ImageNet predictions.

    Attributes
    ----------
    indices : (N, k) or (k,) ndarray of int64
        ImageNet-1k class indices, most probable first.
    probabilities : (N, k) or (k,) ndarray of float32
        Softmax probabilities of those classes.
    """

    indices: np.ndarray
    probabilities: np.ndarray


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` picks CUDA when available, else CPU.

    Parameters
    ----------
    device : str or torch.device, optional
        An explicit device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...). ``None`` selects
        ``cuda`` if ``torch.cuda.is_available()`` and ``cpu`` otherwise.

    Returns
    -------
    device : torch.device
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_batch(images) -> tuple[list[np.ndarray], bool]:
    """Validate uint8 RGB image(s); return a list of (H, W, 3) arrays and whether one came."""
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            batch, single = [images], True
        elif images.ndim == 4:
            batch, single = list(images), False
        else:
            raise ValueError(
                "expected a uint8 RGB image (H, W, 3) or a batch (N, H, W, 3), "
                f"got an array of shape {images.shape}"
            )
    elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        batch, single = list(images), False
    else:
        raise ValueError(
            "expected a uint8 RGB image (H, W, 3), a batch (N, H, W, 3) or a list of images, "
            f"got {type(images).__name__}"
        )
    if not batch:
        raise ValueError("expected at least one image, got an empty batch")
    for i, im in enumerate(batch):
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            desc = (
                f"{im.dtype} array of shape {im.shape}"
                if isinstance(im, np.ndarray)
                else type(im).__name__
            )
            raise ValueError(f"image {i}: expected a (H, W, 3) uint8 RGB array, got {desc}")
        if im.shape[0] < 1 or im.shape[1] < 1:
            raise ValueError(f"image {i}: expected a non-empty image, got shape {im.shape}")
    return batch, single


def _resolve_size(size, default: int) -> tuple[int, int] | None:
    if isinstance(size, str):
        if size != "model":
            raise ValueError(f"size must be 'model', None, an int or (height, width), got {size!r}")
        return (default, default)
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return size


class Backbone(nn.Module):
    """Base class: an ImageNet classifier with named feature taps.

    Subclasses define the layers (with the weight file's key names), ``forward`` and
    ``_forward_taps``, and set the class attributes below.

    Attributes
    ----------
    name : str
        Registry name (``"efficientnet_lite0"``, ``"vgg16"``, ``"mobilenet_v2"``).
    input_size : int
        Native square input resolution (224).
    tap_strides : dict[str, int]
        Available feature taps and their strides.
    tap_channels : dict[str, int]
        Channel count of each tap.
    mean, std : (3,) float tensors (buffers)
        Per-channel normalisation on the [0, 1] scale.
    """

    name: str = "backbone"
    input_size: int = 224
    tap_strides: dict[str, int] = {}
    tap_channels: dict[str, int] = {}

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    # ------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        """Device holding the parameters."""
        return self.mean.device

    # -------------------------------------------------------------- transforms
    def preprocess(self, images, *, size="model") -> torch.Tensor:
        """Turn uint8 RGB image(s) into a normalised float NCHW tensor on the model's device.

        Parameters
        ----------
        images : (H, W, 3) uint8 ndarray, (N, H, W, 3) uint8 ndarray or list of (H, W, 3)
            RGB images. A list may mix sizes unless ``size=None``.
        size : 'model', None, int or (height, width), optional
            ``'model'`` (default) resizes to the native ``input_size`` square; ``None``
            keeps the images' own size (they must then all share it); an int gives a
            square, a pair gives ``(height, width)``.

        Returns
        -------
        x : (N, 3, h, w) float32 tensor
            ``(image / 255 - mean) / std``, resized with anti-aliased bilinear
            interpolation. ``N = 1`` for a single image.
        """
        batch, _ = _as_batch(images)
        out_size = _resolve_size(size, self.input_size)
        if out_size is None and len({im.shape for im in batch}) > 1:
            raise ValueError(
                "size=None keeps the images' size, so all images must share it; got shapes "
                f"{sorted({im.shape for im in batch})}"
            )
        # Same-sized images are converted and resized as one tensor; others one by one.
        groups = [np.stack(batch)] if len({im.shape for im in batch}) == 1 else [im[None] for im in batch]
        tensors = []
        for arr in groups:
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
            t = t.permute(0, 3, 1, 2).float().div_(255.0)
            if out_size is not None and tuple(t.shape[-2:]) != out_size:
                t = F.interpolate(t, size=out_size, mode="bilinear", align_corners=False, antialias=True)
            tensors.append(t)
        x = torch.cat(tensors, 0) if len(tensors) > 1 else tensors[0]
        return (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)

    def deprocess(self, x: torch.Tensor) -> np.ndarray:
        """Invert the normalisation of :meth:`preprocess`.

        Parameters
        ----------
        x : (N, 3, h, w) float tensor

        Returns
        -------
        images : (N, h, w, 3) uint8 ndarray
            Clipped to [0, 255] and rounded.
        """
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, h, w) tensor, got {getattr(x, 'shape', type(x))}")
        with torch.no_grad():
            y = x.detach().to(self.device) * self.std.view(1, 3, 1, 1) + self.mean.view(1, 3, 1, 1)
            y = (y.clamp(0, 1) * 255.0).round().to(torch.uint8)
        return y.permute(0, 2, 3, 1).cpu().numpy()

    # ---------------------------------------------------------------- features
    def _check_taps(self, taps) -> tuple[str, ...]:
        if isinstance(taps, str):
            taps = (taps,)
        taps = tuple(taps)
        unknown = [t for t in taps if t not in self.tap_strides]
        if not taps or unknown:
            raise ValueError(
                f"{self.name}: expected taps among {tuple(self.tap_strides)}, got {taps!r}"
            )
        return taps

    def features(self, x: torch.Tensor, taps=("s2", "s4", "s8", "s16", "s32")) -> dict[str, torch.Tensor]:
        """Intermediate activations at the requested taps.

        Parameters
        ----------
        x : (N, 3, h, w) float tensor
            Output of :meth:`preprocess` (any size; 224 is native).
        taps : sequence of str
            Names among ``tap_strides`` (e.g. ``"s8"``: stride 8).

        Returns
        -------
        features : dict[str, (N, C, h', w') tensor]
            Differentiable with respect to ``x``; computation stops after the deepest
            requested tap.
        """
        taps = self._check_taps(taps)
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, h, w) tensor, got {getattr(x, 'shape', type(x))}")
        return self._forward_taps(x, set(taps))

    def _forward_taps(self, x: torch.Tensor, taps: set[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---------------------------------------------------------------- classify
    def classify(self, images, topk: int = 5, *, size="model") -> Classification:
        """Top-k ImageNet-1k classes of uint8 RGB image(s).

        Parameters
        ----------
        images : (H, W, 3) uint8, (N, H, W, 3) uint8 or list of (H, W, 3) uint8
        topk : int
            Number of classes returned, 1..1000.
        size : see :meth:`preprocess`

        Returns
        -------
        Classification
            ``indices`` / ``probabilities`` of shape ``(k,)`` for one image, ``(N, k)``
            for a batch.
        """
        if not 1 <= int(topk) <= IMAGENET_NUM_CLASSES:
            raise ValueError(f"topk must be in 1..{IMAGENET_NUM_CLASSES}, got {topk}")
        _, single = _as_batch(images)
        with torch.inference_mode():
            x = self.preprocess(images, size=size)
            prob = torch.softmax(self.forward(x).float(), dim=1)
            p, i = prob.topk(int(topk), dim=1)
        p, i = p.cpu().numpy().astype(np.float32), i.cpu().numpy().astype(np.int64)
        if single:
            p, i = p[0], i[0]
        return Classification(indices=i, probabilities=p)
