"""Input checking and the square resize shared by the retrieval descriptors.

Accepted images: ``(H, W)`` gray, ``(H, W, 1)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (the
alpha channel is dropped: a descriptor of scene layout should not depend on transparency), with
dtype ``uint8`` (0..255), ``uint16`` (0..65535, rescaled to 0..255), ``bool`` or floating point in
[0, 1] (scikit-image's convention, rescaled to 0..255). Values are brought to the 0..255 range of
LEAR's reference code because its pre-filter ``log(1 + x)`` is not scale invariant.
"""

from __future__ import annotations

import cv2
import numpy as np


def as_float255(image, name: str = "image") -> np.ndarray:
    """Validate ``image`` and return it as float32 ``(H, W, C)`` with C in {1, 3}, values 0..255."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    elif image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{name}: expected a (H, W) gray, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA array, "
            f"got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty image, got shape {image.shape}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype == np.uint8:
        out = image.astype(np.float32)
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) * np.float32(255.0 / 65535.0)
    elif image.dtype == np.bool_:
        out = image.astype(np.float32) * np.float32(255.0)
    elif np.issubdtype(image.dtype, np.floating):
        out = image.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: expected a float image in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
            )
        out *= np.float32(255.0)
    else:
        raise ValueError(
            f"{name}: expected dtype uint8, uint16, bool or float in [0, 1], got {image.dtype}"
        )
    return np.ascontiguousarray(out)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a float32 ``(H, W, C)`` image to ``(size, size, C)`` (aspect ratio not kept).

    Area averaging (``cv2.INTER_AREA``) when shrinking, so that no aliasing enters the Gabor
    energies; it is linear in the input, which keeps the brightness invariance of the pre-filter.
    An image already at the target size is returned unchanged (no resampling).
    """
    h, w, c = image.shape
    if h == size and w == size:
        return image
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return np.ascontiguousarray(out, dtype=np.float32)
