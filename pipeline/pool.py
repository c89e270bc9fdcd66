"""Image pools on disk: discovery, decoding and normalisation, maps matched by stem, the demo pool.

Every image becomes ``(H, W, 3) uint8`` RGB: gray is replicated, RGBA/LA is composited over white,
palette images are expanded, 16-bit images are scaled by 255/65535, and an image whose longer side
exceeds ``max_side`` is downscaled (area interpolation) with a notice. A file that cannot be decoded
raises :class:`BadInput` with one line naming the file and the problem.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAP_EXTENSIONS = IMAGE_EXTENSIONS + (".npy",)

DEMO_IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "colorwheel",
    "immunohistochemistry",
    "hubble_deep_field",
    "camera",
    "coins",
    "logo",
)


class BadInput(ValueError):
    """A user file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Discovery:
    """What was found in a folder: stem -> path, and one-line problems (duplicates, others)."""

    files: dict[str, Path]
    problems: tuple[str, ...]


def discover(folder: str | Path, extensions=IMAGE_EXTENSIONS, *, what: str = "pool") -> Discovery:
    """Files of a folder with the given extensions, keyed by stem (sorted, non-recursive).

    Raises
    ------
    BadInput
        The folder does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise BadInput(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise BadInput(f"{what} path {folder} is not a folder")
    files: dict[str, Path] = {}
    problems = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in extensions:
            continue
        if path.stem in files:
            problems.append(f"{path}: another file with stem {path.stem!r} ({files[path.stem].name}) is used instead")
            continue
        files[path.stem] = path
    return Discovery(files, tuple(problems))


def _decode(path: Path) -> np.ndarray:
    """Decode a file to an array as stored (uint8 or uint16; 2-D, or 3-D with 3 or 4 channels in RGB order)."""
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()  # full decode: raises on truncated data
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                return _float_to_uint8(arr)
            arr = np.asarray(im)
    except UnidentifiedImageError:
        raise BadInput(f"{path}: not an image file (unrecognised format)") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot be decoded ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise BadInput(f"{path}: {exc}") from None
    if arr.dtype == np.int32:  # mode "I": 16/32-bit gray
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    if arr.dtype == np.dtype(">u2"):  # mode "I;16B": big-endian 16-bit gray
        arr = arr.astype(np.uint16)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = _float_to_uint8(arr.astype(np.float64))
    if mode in ("RGB", "RGBA", "LA") and arr.dtype == np.uint8 and path.suffix.lower() in (".png", ".tif", ".tiff"):
        # Pillow truncates 16-bit RGB / RGBA / LA PNGs and RGB TIFFs to 8 bits; OpenCV keeps them,
        # so prefer it for these (it gives gray + alpha as 4 channels, the gray replicated).
        arr16 = _decode_cv2(path)
        if arr16 is not None and arr16.dtype == np.uint16:
            arr = arr16
    return arr


def _decode_cv2(path: Path):
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if hi <= 1.0 and lo >= 0.0:
        return np.round(np.nan_to_num(arr) * 255).astype(np.uint8)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.round(np.nan_to_num((arr - lo) * scale)).astype(np.uint8)  # NaN -> 0 after scaling


def to_rgb_uint8(arr: np.ndarray, *, source: str = "image") -> tuple[np.ndarray, list[str]]:
    """Normalise a decoded array to (H, W, 3) uint8 RGB. Returns the image and what was converted."""
    notes = []
    if arr.dtype == np.uint16:
        arr = np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        notes.append("16-bit converted to 8-bit")
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = _float_to_uint8(arr.astype(np.float64))
    if arr.ndim == 2:
        notes.append("gray converted to RGB")
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (2, 4):
        color = arr[..., :-1].astype(np.float64)
        if color.shape[2] == 1:
            color = np.repeat(color, 3, axis=2)
        alpha = arr[..., -1:].astype(np.float64) / 255.0
        arr = np.round(color * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        notes.append("alpha composited over white")
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
        notes.append("gray converted to RGB")
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise BadInput(f"{source}: unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr), notes


def limit_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, bool]:
    """Downscale so that the longer side is at most ``max_side`` (area interpolation)."""
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image, False
    import cv2

    scale = max_side / float(max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), True


def load_image(path: str | Path, *, max_side: int = 2048) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; conversions and downscaling are reported as warnings.

    Raises
    ------
    BadInput
        Unreadable, truncated, empty or non-image file.
    """
    path = Path(path)
    arr = _decode(path)
    image, notes = to_rgb_uint8(arr, source=str(path))
    image, scaled = limit_side(image, max_side)
    if scaled:
        h, w = arr.shape[:2]
        notes.append(f"downscaled from {w}x{h} to {image.shape[1]}x{image.shape[0]} (max side {max_side})")
    for note in notes:
        warnings.warn(f"{path.name}: {note}", stacklevel=2)
    return image


def load_map(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a saliency map or mask as (H, W) float32 in [0, 1], resized to ``shape`` if given.

    8-bit maps are divided by 255, 16-bit by 65535, one-bit by 1; RGB maps are averaged over the
    channels; ``.npy`` files are taken as they are and clipped to [0, 1].
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: cannot be read as a .npy array ({exc})") from None
        if arr.ndim != 2:
            raise BadInput(f"{path}: expected a 2-D map, got shape {arr.shape}")
        values = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
    else:
        arr = _decode(path)
        # The scale follows the stored depth: the channel mean below is float64 whatever the input.
        scale = 65535.0 if arr.dtype == np.uint16 else (1.0 if arr.dtype == np.bool_ else 255.0)
        if arr.ndim == 3:
            if arr.shape[2] in (2, 4):
                arr = arr[..., :-1]
            arr = arr.mean(axis=2) if arr.shape[2] > 1 else arr[..., 0]
        values = (arr.astype(np.float32) / np.float32(scale)).clip(0.0, 1.0)
    if shape is not None and values.shape != tuple(shape):
        import cv2

        warnings.warn(
            f"{path.name}: map of size {values.shape[1]}x{values.shape[0]} resized to "
            f"{shape[1]}x{shape[0]}",
            stacklevel=2,
        )
        values = cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR).clip(0.0, 1.0)
    return values.astype(np.float32)


def write_demo_pool(folder: str | Path) -> list[Path]:
    """Write the photographs that scikit-image ships in its package into ``folder`` as PNG files.

    Nothing is downloaded: these images are inside the installed scikit-image. The set covers
    colour photographs plus a gray (``camera``, ``coins``) and an RGBA (``logo``) image, which
    exercise the input conversion. Existing files are left as they are.
    """
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DEMO_IMAGES:
        target = folder / f"{name}.png"
        if not target.exists():
            arr = getattr(skimage.data, name)()
            if isinstance(arr, tuple):  # stereo_motorcycle: (left, right, disparity)
                arr = arr[0]
            from pipeline.cache import atomic_write

            atomic_write(target, lambda fh, a=arr: Image.fromarray(a).save(fh, format="PNG"))
        written.append(target)
    return written


def save_map_png(path: str | Path, saliency: np.ndarray) -> None:
    """Write a [0, 1] map as an 8-bit gray PNG, atomically."""
    from PIL import Image

    from pipeline.cache import atomic_write

    arr = np.round(np.clip(np.nan_to_num(np.asarray(saliency, np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    atomic_write(path, lambda fh: Image.fromarray(arr).save(fh, format="PNG"))
