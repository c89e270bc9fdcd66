"""Reading and normalising ground-truth masks and saliency maps for evaluation.

Everything is brought to what the SOD toolkits (and ``py_sod_metrics`` with ``normalize=True``)
expect: a 2-D ``uint8`` array in 0..255.

Ground truth
    one-bit -> 0/255; 16-bit -> scaled by 255/65535 and rounded; RGB(A) whose colour channels are
    equal -> that channel; RGB with different channels -> the maximum over the channels (a coloured
    object on black stays foreground, which luminance would not guarantee); RGBA whose colour is
    constant -> the alpha channel; a mask holding only 0 and 1 -> 0/255 (a common 0/1 label
    convention that the >128 rule would turn all-background). Then binarised at ``> 128`` (the
    toolkits' rule: ``gt > 128``) to 0/255; a mask that held other values than 0 and 255 gets a
    notice.
Maps
    float arrays in [0, 1] -> ``round(255 x)`` (what the runner writes as PNG); other float ranges
    are min-max scaled; 16-bit scaled by 255/65535; RGB -> mean of the channels; NaN -> 0 with a
    notice. A map whose size differs from its mask is resized to the mask (bilinear) with a notice.

Notices are collected per (scope, kind) and rendered as single lines with a count and a few
example stems, so a pool of thousands of masks gives a handful of lines, not thousands.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline import pool

MAP_EXTENSIONS = pool.MAP_EXTENSIONS

# kind -> (message, log level name). Rendered as "<scope>: <n> <message>: a, b, c (+k more)".
_MESSAGES = {
    "gt_nonbinary": "mask(s) not binary (values other than 0 and 255); binarised at > 128 as the SOD toolkits do",
    "gt_rgb": "mask(s) stored in colour; converted to gray (maximum over the channels)",
    "gt_alpha": "mask(s) stored as RGBA with constant colour; the alpha channel is used as the mask",
    "gt_16bit": "mask(s) stored with 16 bits; scaled to 8 bits",
    "gt_01": "mask(s) hold only the values 0 and 1; read as 0/255",
    "gt_empty": "mask(s) have no foreground pixel (S-measure, E-measure as the toolkits define them; "
                "weighted F = 0; AUC undefined and left out of the mean)",
    "gt_full": "mask(s) are all foreground (AUC undefined and left out of the mean)",
    "map_16bit": "map(s) stored with 16 bits; scaled to 8 bits",
    "map_rgb": "map(s) stored in colour; converted to gray (mean of the channels)",
    "map_nan": "map(s) contain NaN values; set to 0",
    "map_resized": "map(s) differ in size from their mask; resized to the mask size (bilinear)",
    "map_float_range": "map(s) are float arrays outside [0, 1]; min-max scaled to 0..255",
    "unreadable": "file(s) cannot be read and were skipped",
    "duplicate": "file(s) share a stem with another file in the folder; the first (sorted) is used",
}


class Notices:
    """Collects one-line notices, grouped by (scope, kind), deduplicated by stem."""

    def __init__(self):
        self._groups: dict[tuple[str, str], dict[str, None]] = {}
        self._details: dict[tuple[str, str], str] = {}
        self._lines: list[str] = []

    def add(self, scope: str, kind: str, stem: str, detail: str | None = None) -> None:
        key = (scope, kind)
        self._groups.setdefault(key, {})[stem] = None
        if detail and key not in self._details:
            self._details[key] = detail

    def line(self, text: str) -> None:
        """A free-form notice line (added once)."""
        if text not in self._lines:
            self._lines.append(text)

    def merge(self, other: "Notices") -> None:
        for key, stems in other._groups.items():
            self._groups.setdefault(key, {}).update(stems)
        for key, text in other._details.items():
            self._details.setdefault(key, text)
        for text in other._lines:
            self.line(text)

    def lines(self) -> list[str]:
        out = list(self._lines)
        for (scope, kind), stems in self._groups.items():
            names = list(stems)
            shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
            detail = self._details.get((scope, kind))
            msg = _MESSAGES.get(kind, kind)
            out.append(f"{scope}: {len(names)} {msg}: {shown}" + (f" [{detail}]" if detail else ""))
        return out

    def __len__(self):
        return len(self._lines) + len(self._groups)


# ---------------------------------------------------------------------------------------------
# Normalisation of arrays


def _scale16(arr: np.ndarray) -> np.ndarray:
    return np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def normalize_gt(arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bring a stored mask to ``uint8`` 0/255 (binarised at > 128).

    Parameters
    ----------
    arr : (H, W) or (H, W, C) ndarray
        bool, uint8, uint16, int or float (float taken in [0, 1] when it fits there).

    Returns
    -------
    mask : (H, W) uint8 ndarray
        Values 0 and 255 only.
    kinds : list of str
        Notice kinds that apply (keys of the notice messages).
    """
    arr = np.asarray(arr)
    kinds: list[str] = []
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[..., 0]
        elif arr.shape[2] in (2, 4):
            colour, alpha = arr[..., :-1], arr[..., -1]
            if colour.min() == colour.max() and alpha.min() != alpha.max():
                arr = alpha
                kinds.append("gt_alpha")
            else:
                arr = colour
        if arr.ndim == 3:
            if arr.shape[2] == 1 or np.all(arr == arr[..., :1]):
                arr = arr[..., 0]
            else:
                arr = arr.max(axis=2)
                kinds.append("gt_rgb")
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D or (H, W, C); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255, kinds
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        arr = _scale16(np.clip(arr, 0, 65535))
        kinds.append("gt_16bit")
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64))
        if arr.min(initial=0) >= 0 and arr.max(initial=0) <= 1:
            arr = np.round(arr * 255)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    values = np.unique(arr)
    if values.size and values.max() == 1:
        arr = arr * np.uint8(255)
        kinds.append("gt_01")
    elif not np.isin(values, (0, 255)).all():
        kinds.append("gt_nonbinary")
    mask = np.where(arr > 128, np.uint8(255), np.uint8(0))
    fg = np.count_nonzero(mask)
    if fg == 0:
        kinds.append("gt_empty")
    elif fg == mask.size:
        kinds.append("gt_full")
    return mask, kinds


def normalize_map(arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bring a saliency map to a 2-D ``uint8`` array in 0..255 (as stored, no min-max).

    Parameters
    ----------
    arr : (H, W) or (H, W, C) ndarray
        float in [0, 1] (our maps), uint8, uint16, bool, or float of another range.

    Returns
    -------
    map : (H, W) uint8 ndarray
    kinds : list of str
        Notice kinds that apply.
    """
    arr = np.asarray(arr)
    kinds: list[str] = []
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):
            arr = arr[..., :-1]
        if arr.shape[2] == 1 or np.all(arr == arr[..., :1]):
            arr = arr[..., 0]
        else:
            arr = arr.astype(np.float64).mean(axis=2)
            kinds.append("map_rgb")
            if arr.max(initial=0) > 1:
                arr = arr / 255.0
    if arr.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D or (H, W, C); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255, kinds
    if arr.dtype == np.uint8:
        return arr, kinds
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        kinds.append("map_16bit")
        return _scale16(np.clip(arr, 0, 65535)), kinds
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8), kinds
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        kinds.append("map_nan")
        arr = np.nan_to_num(arr, nan=0.0)
    lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
    if lo < 0 or hi > 1:
        kinds.append("map_float_range")
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.round(arr * 255).astype(np.uint8), kinds


def resize_to(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 map to ``shape`` (H, W)."""
    import cv2

    return cv2.resize(arr, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------------
# Folders


def read_stored(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask or map file as stored (uint8/uint16, 2-D or RGB(A)); ``.npy`` as saved."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise pool.BadInput(f"{path}: cannot be read as a .npy array ({exc})") from None
    return pool._decode(path)


class ArrayFolder(Mapping):
    """Read-only, lazy ``stem -> stored array`` view of a folder of masks or maps.

    Files are decoded on access and not kept; the folder is listed once.
    """

    def __init__(self, folder: str | os.PathLike, *, what: str = "maps"):
        self.folder = Path(folder)
        found = pool.discover(self.folder, MAP_EXTENSIONS, what=what)
        self.files = found.files
        self.problems = found.problems

    def __getitem__(self, stem):
        return read_stored(self.files[stem])

    def __iter__(self):
        return iter(self.files)

    def __len__(self):
        return len(self.files)

    def __reduce__(self):  # picklable for process pools: re-list the folder there
        return (ArrayFolder, (str(self.folder),))

    def __repr__(self):
        return f"ArrayFolder({str(self.folder)!r}, {len(self)} files)"


def as_source(obj, *, what: str) -> Mapping:
    """A folder path becomes an :class:`ArrayFolder`; a Mapping is used as it is."""
    if isinstance(obj, (str, os.PathLike)):
        return ArrayFolder(obj, what=what)
    if isinstance(obj, Mapping):
        return obj
    raise TypeError(f"{what}: expected a folder path or a Mapping stem -> array; got {type(obj).__name__}")


def read_stems(path: str | os.PathLike) -> list[str]:
    """Stems listed one per line in a split file (blank lines and ``#`` comments ignored)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(Path(line).stem if Path(line).suffix.lower() in MAP_EXTENSIONS else line)
    return out
