"""The input checks every method package shares, with one message style.

Each check validates one kind of argument at the top of a public function and returns it in the
form the function computes with. A bad argument raises :class:`ValueError` with the message
``"NAME: expected ..., got ..."``, where NAME is the argument's name as the caller knows it.

* :func:`check_image` — ``(H, W, 3) uint8`` RGB image.
* :func:`check_map` — ``(H, W)`` saliency map, finite, in ``[0, 1]``.
* :func:`check_labels` — ``(H, W)`` integer superpixel label map with labels ``0 .. n-1``.
* :func:`check_weight` — a finite number ``>= 0`` (or ``> 0``).
* :func:`check_int` — an integer ``>= minimum`` (bools refused).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_image", "check_map", "check_labels", "check_weight", "check_int"]


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def check_image(image, name: str = "image", *, min_side: int = 1) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``(H, W, 3) uint8`` array, or raise ValueError.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image (the package-wide convention).
    name : str
        The argument's name, for the message.
    min_side : int
        Smallest accepted height and width.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB array, got {_describe(image)}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.shape[0] < min_side or image.shape[1] < min_side:
        raise ValueError(f"{name}: expected at least {min_side}x{min_side} pixels, got {image.shape[0]}x{image.shape[1]}")
    return np.ascontiguousarray(image)


def check_map(saliency, name: str = "map", *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return a saliency map as ``(H, W) float32`` in ``[0, 1]``, or raise ValueError.

    Parameters
    ----------
    saliency : (H, W) ndarray of float, bool or uint8
        Floats must already lie in ``[0, 1]``; bool maps become 0 / 1; uint8 maps are divided by 255.
    name : str
        The argument's name, for the message.
    shape : (H, W), optional
        The shape the map must have (e.g. its image's).
    """
    if not isinstance(saliency, np.ndarray) or saliency.ndim != 2 or saliency.size == 0:
        raise ValueError(f"{name}: expected a non-empty (H, W) array, got {_describe(saliency)}")
    if shape is not None and saliency.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {saliency.shape}")
    if saliency.dtype == np.bool_:
        return saliency.astype(np.float32)
    if saliency.dtype == np.uint8:
        return saliency.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(saliency.dtype, np.floating):
        raise ValueError(f"{name}: expected a float, bool or uint8 map, got dtype {saliency.dtype}")
    if not np.all(np.isfinite(saliency)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    lo, hi = float(saliency.min()), float(saliency.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: expected values in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return np.ascontiguousarray(saliency, dtype=np.float32)


def check_labels(
    labels, name: str = "labels", *, n: int | None = None, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, int]:
    """Return ``(labels, n)``: a C-contiguous integer label map and its number of labels.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        Labels ``>= 0``.
    name : str
        The argument's name, for the message.
    n : int, optional
        The number of labels the caller expects; labels must stay below it. Default ``max + 1``.
    shape : (H, W), optional
        The shape the label map must have (e.g. its image's).
    """
    if not isinstance(labels, np.ndarray):
        labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W) integer label map, got {_describe(labels)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    if shape is not None and labels.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name}: expected labels >= 0, got {int(labels.min())}")
    max_label = int(labels.max()) if labels.size else -1
    if n is None:
        n = max_label + 1
    elif n <= max_label:
        raise ValueError(f"{name}: expected labels below n={n}, got labels up to {max_label}")
    return np.ascontiguousarray(labels), int(n)


def check_weight(value, name: str, *, positive: bool = False) -> float:
    """Return ``value`` as a float, or raise ValueError unless it is finite and ``>= 0`` (``> 0``)."""
    bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
    if bad or not np.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
    return float(value)


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise ValueError unless it is an integer ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)
