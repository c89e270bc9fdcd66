"""Content-addressed artifact cache: one ``.npz`` per stage and item, written atomically.

Key of an item = sha256 of (stage name, stage version, its parameters, the keys of its inputs, and the
bytes hash of the user file it reads, if any). Changing a parameter changes that stage's keys and,
through the input keys, the keys of every stage downstream and of nothing else. Artifacts are written
to a temporary file in the same folder and renamed, so a killed run leaves either a whole artifact
or none; files get the mode the user's umask gives (a shared results folder stays readable).
Artifacts are compressed ``.npz`` archives; one that is truncated or corrupted (a failed zip CRC) is
never used: :meth:`Cache.has` reports it absent and removes it, so it is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

CACHE_DIRNAME = ".cache"


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(value: Any):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    return value


def item_key(
    stage: str,
    version: str,
    params: Mapping[str, Any],
    input_keys: Iterable[Any],
    file_hash: str | None = None,
    *,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The content address of one item of one stage.

    ``extra`` holds other content digests the result depends on (the model a learned stage applies,
    files named by path parameters); it enters the key only when non-empty, so stages without such
    inputs keep their keys.
    """
    doc = {
        "stage": stage,
        "version": version,
        "params": _jsonable(dict(params)),
        "inputs": [_jsonable(k) for k in input_keys],
        "file": file_hash,
    }
    if extra:
        doc["extra"] = _jsonable(dict(extra))
    payload = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Cache:
    """The artifacts of one output folder (``<out>/.cache``)."""

    def __init__(self, out_dir: str | Path):
        self.root = Path(out_dir) / CACHE_DIRNAME

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.npz"

    def has(self, stage: str, key: str) -> bool:
        """Whether a whole, intact artifact exists (a corrupted one is removed and reported absent)."""
        path = self.path(stage, key)
        if not path.is_file():
            return False
        if artifact_ok(path):
            return True
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return False

    def load(self, stage: str, key: str) -> dict[str, np.ndarray]:
        with np.load(self.path(stage, key), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save(self, stage: str, key: str, arrays: Mapping[str, Any]) -> Path:
        target = self.path(stage, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        for k, v in arrays.items():
            if v.dtype == object:
                raise TypeError(f"stage {stage}: result {k!r} is an object array; return plain arrays")
        atomic_write(target, lambda fh: np.savez_compressed(fh, **arrays))
        return target

    def entries(self) -> dict[str, tuple[int, int]]:
        """Stage -> (number of artifacts, total bytes)."""
        out: dict[str, tuple[int, int]] = {}
        if not self.root.is_dir():
            return out
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = list(stage_dir.glob("*.npz"))
            out[stage_dir.name] = (len(files), sum(f.stat().st_size for f in files))
        return out

    def clear(self, stages: Iterable[str] | None = None) -> int:
        """Remove the artifacts of the named stages (all when None); returns how many were removed.

        Raises
        ------
        KeyError
            A named stage has nothing in this cache (the message lists what it holds).
        """
        removed = 0
        present = [p.name for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else []
        names = list(stages) if stages else present
        unknown = [n for n in names if n not in present]
        if unknown:
            held = ", ".join(sorted(present)) or "nothing"
            raise KeyError(f"cache clear: no cached stage {', '.join(map(repr, unknown))} in {self.root} (it holds: {held})")
        for name in names:
            d = self.root / name
            if d.is_dir():
                removed += sum(1 for _ in d.glob("*.npz"))
                shutil.rmtree(d)
        return removed


def artifact_ok(path: str | Path) -> bool:
    """Whether an ``.npz`` artifact is a whole zip archive whose members pass their CRC check."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError):
        return False


def _umask_file_mode() -> int:
    """The mode a new file gets under the process's umask (mkstemp alone would give 0600).

    Read once, when the module is imported: ``os.umask`` can only be read by setting it, which is
    not safe while other threads create files.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_file_mode()


def atomic_write(target: str | Path, write) -> None:
    """Write a file through ``write(fileobj)`` into a temporary sibling, then rename it in place.

    A writer that fails part-way leaves the old target (if any) untouched and no partial file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
