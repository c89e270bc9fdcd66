"""Trained models: one pickle-free file format, references by name / path / training, shipped models.

Model file
----------
A model is a ``.npz`` archive of plain numeric arrays (a torch ``state_dict`` as numpy arrays, a
boosted ensemble's weights and thresholds, ...) plus one entry ``__meta__``: a JSON document as a
0-d unicode array with at least ``{"stage": ..., "format": 1, "hparams": {...}}`` and whatever the
trainer records (training data, seed, duration, validation metrics). A trainer stage returns
:func:`model_result` of its arrays and meta; that cache artifact *is* the model file, content-keyed
and written atomically like every result.

Safety: a model file is read with ``numpy.load(..., allow_pickle=False)`` and nothing else. Object
arrays cannot be stored (the cache refuses them) and cannot be loaded (numpy refuses them without
``allow_pickle``), so no model, whoever wrote it, can make the project unpickle anything. There is
no joblib / torch.save codec on purpose: both are pickles. Estimators are stored as their arrays
and rebuilt by the method package (``XxxModel.from_state(arrays, hparams)``).

References
----------
A learned stage's ``model`` parameter is resolved by :func:`resolve`:

* ``"train"``: the trainer stage's result for this pool (the runner supplies it);
* an existing file path: that file; its sha256 goes into the cache key, so a changed file
  recomputes the stage and its dependants;
* a name from a shipped-model manifest: the file in the package's ``shipped_models/`` folder (or
  in a folder listed in ``PIPELINE_MODEL_DIRS``), checked against the manifest's sha256 before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from pipeline.cache import atomic_write, file_digest

FORMAT = 1
META_KEY = "__meta__"
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped_models"
MANIFEST = "manifest.json"


class ModelFileError(ValueError):
    """A model file or name that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Model:
    """A loaded model: its arrays and its meta (``stage``, ``hparams``, training record)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def hparams(self) -> dict[str, Any]:
        return self.meta.get("hparams", {})


def model_result(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The stage result (dict of arrays) that stores a model: its arrays plus the JSON meta."""
    if META_KEY in arrays:
        raise ValueError(f"arrays: expected no key {META_KEY!r}, it holds the meta")
    meta = {"format": FORMAT, **dict(meta)}
    if "stage" not in meta:
        raise ValueError("meta: expected a 'stage' entry (the learned stage the model is for)")
    out = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in out.items():
        if v.dtype == object:
            raise ValueError(f"arrays[{k!r}]: expected a numeric array, got an object array")
    out[META_KEY] = np.array(json.dumps(meta, sort_keys=True, default=_json_default))
    return out


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def save_model(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write a model file atomically (see :func:`model_result` for the content)."""
    result = model_result(arrays, meta)
    path = Path(path)
    atomic_write(path, lambda fh: np.savez(fh, **result))
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta of a model file, without loading its arrays.

    Raises
    ------
    ModelFileError
        The file is missing, not an ``.npz`` archive, or has no valid meta.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if META_KEY not in data.files:
                raise ModelFileError(f"model file {path}: not a model of this package (no {META_KEY} entry)")
            meta = json.loads(str(data[META_KEY]))
    except FileNotFoundError:
        raise ModelFileError(f"model file {path}: no such file") from None
    except ModelFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"model file {path}: cannot be read ({first}); is it truncated or corrupted?") from None
    if not isinstance(meta, dict) or "stage" not in meta:
        raise ModelFileError(f"model file {path}: its meta names no stage")
    return meta


def load_model(path: str | Path) -> Model:
    """Load a model file (arrays + meta), pickle-free.

    Raises
    ------
    ModelFileError
        As :func:`read_meta`, or an array cannot be read.
    """
    path = Path(path)
    meta = read_meta(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != META_KEY}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"model file {path}: cannot be read ({first}); is it truncated or corrupted?") from None
    return Model(arrays, meta)


# --------------------------------------------------------------------------- shipped models


@dataclass(frozen=True)
class ShippedModel:
    """One manifest entry: a model file shipped with the package (or in a ``PIPELINE_MODEL_DIRS`` folder)."""

    name: str
    stage: str
    path: Path
    sha256: str
    size: int
    card: Path | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stage": self.stage, "file": self.path.name, "sha256": self.sha256,
                "bytes": self.size, "card": self.card.name if self.card else None}


def model_dirs() -> list[Path]:
    """Folders holding a ``manifest.json`` of models: the package's own, then ``PIPELINE_MODEL_DIRS``."""
    extra = [Path(p) for p in os.environ.get("PIPELINE_MODEL_DIRS", "").split(os.pathsep) if p]
    return [SHIPPED_DIR, *extra]


def shipped_models() -> dict[str, ShippedModel]:
    """Name -> entry for every model listed in a manifest (the first folder wins a name)."""
    out: dict[str, ShippedModel] = {}
    for folder in model_dirs():
        manifest = folder / MANIFEST
        if not manifest.is_file():
            continue
        try:
            entries = json.loads(manifest.read_text())["models"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"model manifest {manifest}: cannot be read ({exc})") from None
        for e in entries:
            if e["name"] in out:
                continue
            card = folder / e["card"] if e.get("card") else None
            out[e["name"]] = ShippedModel(e["name"], e["stage"], folder / e["file"], e["sha256"],
                                          int(e["bytes"]), card)
    return out


def write_manifest(folder: str | Path, entries: list[ShippedModel]) -> Path:
    """Write ``folder/manifest.json`` for the given entries (sorted by name)."""
    folder = Path(folder)
    doc = {"models": [e.as_dict() for e in sorted(entries, key=lambda e: e.name)]}
    target = folder / MANIFEST
    atomic_write(target, lambda fh: fh.write((json.dumps(doc, indent=2) + "\n").encode()))
    return target


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class ModelRef:
    """The model a learned stage applies to its items.

    Attributes
    ----------
    source : {"train", "file", "shipped"}
        Where it comes from.
    path : str
        The model file (for ``"train"``: the trainer's cache artifact).
    digest : str
        Content address: the file's sha256 (file, shipped) or the trainer item's key (train).
    name : str
        The ``model`` parameter's value.
    """

    source: str
    path: str
    digest: str
    name: str

    def load(self) -> Model:
        """The model's arrays and meta, loaded once per process."""
        from backbones.loaded import load_once

        return load_once(("model-file", self.digest), lambda: load_model(self.path))

    def build(self, factory: Callable[[Model], Any], device: str = "cpu") -> Any:
        """``factory(model)`` built once per process, model and device (e.g. a torch module on CUDA)."""
        from backbones.loaded import load_once

        key = ("model-built", self.digest, device, getattr(factory, "__qualname__", repr(factory)))
        return load_once(key, lambda: factory(self.load()))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_file_digest(path: str | Path) -> str:
    """sha256 of a file, computed once per process for a given (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


def resolve(stage: str, value: str) -> ModelRef | None:
    """Resolve a learned stage's ``model`` value that is a file or a shipped name.

    Returns None for ``"train"`` (the runner supplies the trainer's artifact).

    Raises
    ------
    ModelFileError
        Neither an existing file nor a known shipped model; a file that is no model; a model made
        for another stage; a shipped file whose bytes do not match its manifest.
    """
    if value == "train":
        return None
    shipped = shipped_models()
    path = Path(value)
    if path.is_file():
        meta = read_meta(path)
        _check_stage(meta, stage, str(path))
        return ModelRef("file", str(path), cached_file_digest(path), value)
    if value in shipped:
        entry = shipped[value]
        if not entry.path.is_file():
            raise ModelFileError(f"shipped model {value!r}: its file {entry.path} is missing from the installation")
        digest = cached_file_digest(entry.path)
        if digest != entry.sha256:
            raise ModelFileError(f"shipped model {value!r}: {entry.path} does not match the sha256 of its manifest")
        _check_stage(read_meta(entry.path), stage, f"shipped model {value!r}")
        return ModelRef("shipped", str(entry.path), digest, value)
    names = sorted(n for n, e in shipped.items() if e.stage == stage)
    known = f"shipped models for {stage}: {', '.join(names)}" if names else f"no model for {stage} is shipped"
    raise ModelFileError(f"{stage}.model = {value!r}: expected 'train', a model file or a shipped model ({known})")


def _check_stage(meta: Mapping[str, Any], stage: str, what: str) -> None:
    if meta.get("stage") != stage:
        raise ModelFileError(f"{what}: a model for stage {meta.get('stage')!r}, not for {stage!r}")


def digest_of_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """A content hash of named arrays (for records; not a cache key)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


__all__ = [
    "META_KEY",
    "Model",
    "ModelFileError",
    "ModelRef",
    "ShippedModel",
    "SHIPPED_DIR",
    "cached_file_digest",
    "load_model",
    "model_dirs",
    "model_result",
    "read_meta",
    "resolve",
    "save_model",
    "shipped_models",
    "write_manifest",
]
