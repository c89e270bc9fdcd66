"""Driving the pipeline for the board: dataset pools, what is built, runs through the CLI, their records.

Every run is ``python -m pipeline run ...`` (or ``train ...``) called through
:func:`pipeline.cli.main` in this process, its output in a log file: the same code path as a
user's command, without paying the imports and the worker start-up once per run. What the board
reads afterwards is what the run wrote: ``evaluation/metrics.json``, ``run_summary.json`` and
each map folder's ``.keys.json`` (the cache key of every map, to read maps back for the contact
sheet).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Dataset:
    """One dataset of ``--data``: images and masks by stem, the split's stems, published maps.

    Attributes
    ----------
    name, split : str
        ``"ECSSD"``, ``"test"``.
    images, gts : dict
        stem -> image file, stem -> mask file (the split's stems only).
    published : dict
        Published method -> folder of its maps (``priors/<method>/``), for a dataset that has them.
    """

    name: str
    split: str
    images: dict[str, Path]
    gts: dict[str, Path]
    published: dict[str, Path] = field(default_factory=dict)

    @property
    def stems(self) -> list[str]:
        return list(self.images)

    @property
    def label(self) -> str:
        return f"{self.name} {self.split}"


def subset(stems: list[str], n: int | None, seed: int = 0) -> list[str]:
    """``n`` stems drawn at random (``numpy.random.default_rng(seed)``), kept in file order."""
    if n is None or n >= len(stems):
        return list(stems)
    idx = np.sort(np.random.default_rng(seed).choice(len(stems), size=n, replace=False))
    return [stems[i] for i in idx]


def find_dataset(root: Path, name: str, split: str, *, limit: int | None = None, seed: int = 0,
                 published: tuple[str, ...] | None = None) -> Dataset | str:
    """The dataset ``root/name`` restricted to its split (and to ``limit`` images), or why not.

    The split file ``<split>.txt`` lists stems one per line; without it every image with a mask
    is used. ``published`` keeps only those ``priors/`` methods (None: all of them).
    """
    from pipeline.evaluation.io import read_stems
    from pipeline.pool import IMAGE_EXTENSIONS, MAP_EXTENSIONS, discover

    folder = root / name
    if not (folder / "images").is_dir() or not (folder / "gt").is_dir():
        return f"{folder}: no images/ and gt/ folders"
    images = discover(folder / "images", IMAGE_EXTENSIONS, what="images").files
    gts = discover(folder / "gt", MAP_EXTENSIONS, what="gt").files
    split_file = folder / f"{split}.txt"
    stems = read_stems(split_file) if split_file.is_file() else sorted(images)
    stems = [s for s in stems if s in images and s in gts]
    if not stems:
        return f"{folder}: no image of split {split!r} has both an image and a mask"
    stems = subset(stems, limit, seed)
    maps = {}
    priors = folder / "priors"
    if priors.is_dir():
        for d in sorted(p for p in priors.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if published is None or d.name in published:
                maps[d.name] = d
    return Dataset(name, split, {s: images[s] for s in stems}, {s: gts[s] for s in stems}, maps)


def link_pool(dataset: Dataset, folder: Path) -> dict[str, Path]:
    """Symlink the dataset's images, masks and published maps into ``folder`` (a pool the runner
    reads: only the chosen stems, so no map is reported as an orphan). Returns the folders."""
    from pipeline.pool import MAP_EXTENSIONS, discover

    out = {"images": folder / "images", "gt": folder / "gt"}
    sources = [("images", dataset.images), ("gt", dataset.gts)]
    for method, src in dataset.published.items():
        out[f"priors/{method}"] = folder / "priors" / method
        maps = discover(src, MAP_EXTENSIONS, what=f"priors of {method}").files
        sources.append((f"priors/{method}", {s: maps[s] for s in dataset.stems if s in maps}))
    for key, files in sources:
        target = out[key]
        target.mkdir(parents=True, exist_ok=True)
        wanted = {p.name for p in files.values()}
        for old in target.iterdir():  # a previous board's other subset
            if old.name not in wanted:
                old.unlink()
        for path in files.values():
            link = target / path.name
            if not link.is_symlink() or os.readlink(link) != str(path.resolve()):
                link.unlink(missing_ok=True)
                link.symlink_to(path.resolve())
    return out


# --------------------------------------------------------------------------- what is built


def availability(name: str, params: dict, *, promoter: bool) -> str | None:
    """Why stage ``name`` cannot be on the board (None: it can), from the registry and the model
    resolution of this installation, at run time.

    A detector must be a registered map stage; a promoter also takes its map through a ``prior``
    parameter. A learned stage's ``model`` (the default shipped name, a file given with
    ``--set STAGE.model=...``, or a model the board trained) must resolve.
    """
    from pipeline import models, registry

    stages = registry.all_stages()
    if name not in stages:
        return f"stage `{name}` is not registered in this installation (`python -m pipeline stages`)"
    stage = stages[name]
    if not stage.produces_map:
        return f"stage `{name}` produces no map"
    if promoter and "prior" not in stage.prior_params:
        return f"stage `{name}` has no `prior` parameter"
    if stage.learned is not None:
        value = getattr(params[name], stage.learned.param)
        if value == "train":
            return None  # trained by its trainer in the run itself
        try:
            models.resolve(name, value)
        except models.ModelFileError as exc:
            return f"no model: {exc}"
    return None


def model_record(name: str, params: dict) -> dict | None:
    """The model a learned stage will apply: the value given, its kind and sha256."""
    from pipeline import models, registry

    stage = registry.all_stages().get(name)
    if stage is None or stage.learned is None:
        return None
    value = getattr(params[name], stage.learned.param)
    try:
        ref = models.resolve(name, value)
    except models.ModelFileError:
        return None
    if ref is None:
        return {"model": value, "kind": "train"}
    return {"model": value, "kind": ref.source, "sha256": ref.digest}


# --------------------------------------------------------------------------- memory


def _status_kib(pid, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _descendants() -> list[int]:
    """Process ids below this one (its loky workers), from ``/proc`` (empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class PeakMemory:
    """Peak resident memory of this process and of its workers over one run (step-and-read).

    ``start()`` resets the peaks (``/proc/PID/clear_refs``, Linux); ``read()`` returns the largest
    peak RSS of one process in MiB, the sum over the processes alive, and the GPU's peak
    allocation when torch uses CUDA here. Where ``/proc`` is absent the values are the process
    lifetime peaks of :func:`resource.getrusage`.
    """

    def __init__(self):
        self._reaped = 0

    @staticmethod
    def _reset(pid) -> None:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        except OSError:
            pass

    def start(self) -> None:
        import resource

        for pid in ["self", *_descendants()]:
            self._reset(pid)
        self._reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict:
        import resource

        peaks = [p for p in (_status_kib(pid, "VmHWM") for pid in ["self", *_descendants()]) if p]
        if not peaks:
            peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        largest = max(peaks + ([reaped] if reaped > self._reaped else []))
        out = {"largest_process_mib": round(largest / 1024, 1), "all_processes_mib": round(sum(peaks) / 1024, 1),
               "processes": len(peaks)}
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            out["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out


# --------------------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """What one ``python -m pipeline`` command of the board did."""

    argv: list[str]
    log: Path
    rc: int
    wall_s: float
    memory: dict
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0


def call_cli(argv: list[str], log: Path, memory: PeakMemory | None = None) -> RunRecord:
    """Run ``python -m pipeline ARGV`` through :func:`pipeline.cli.main`, its output to ``log``.

    A user error (exit 2) or an unexpected exception is recorded, not raised (the board goes on);
    an interrupt is raised again.
    """
    from pipeline import cli

    log.parent.mkdir(parents=True, exist_ok=True)
    memory = memory or PeakMemory()
    memory.start()
    t0 = time.perf_counter()
    error = None
    with open(log, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        print("python -m pipeline " + " ".join(argv), flush=True)
        try:
            rc = cli.main(argv)
        except Exception as exc:  # a crash of one run must not end the board
            traceback.print_exc(file=fh)
            rc, error = 1, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    wall = time.perf_counter() - t0
    if rc == 130:
        raise KeyboardInterrupt
    if rc != 0 and error is None:
        error = _last_error(log) or f"exit code {rc}"
    return RunRecord(list(argv), log, rc, wall, memory.read(), error)


def _last_error(log: Path) -> str | None:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.startswith("error:")]
    return lines[-1][len("error:"):].strip() if lines else None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def clear_run_records(out: Path) -> None:
    """Remove the records a run writes, so none is read from an earlier run of the folder."""
    for path in (out / "run_summary.json", out / "evaluation" / "metrics.json"):
        path.unlink(missing_ok=True)


def map_keys(out: Path, stage: str) -> dict[str, str]:
    """stem -> cache key of the maps a run's stage wrote (``OUT/STAGE/.keys.json``)."""
    return read_json(out / stage / ".keys.json") or {}


def load_map(out: Path, stage: str, key: str) -> np.ndarray:
    """A map back from the run folder's cache, as float32."""
    from pipeline.cache import Cache

    return np.asarray(Cache(out).load(stage, key)["map"], np.float32)


# --------------------------------------------------------------------------- timings


@dataclass
class StageTimes:
    """Per stage: wall seconds and items computed, accumulated over runs (step-and-pool).

    Only computed items are timed: ``run_summary.json`` gives a stage the seconds of computing its
    pending items, so a stage whose items all come from the cache reports about 0 s (its planning
    and cache checks are not in it). The board times a cached run as a whole instead.
    """

    cold: dict[str, list[float]] = field(default_factory=dict)  # stage -> [seconds, computed items]

    def step(self, summary: dict | None) -> None:
        """Add one run's ``run_summary.json`` (None: the run wrote none)."""
        for s in (summary or {}).get("stages", []):
            if s["computed"]:
                acc = self.cold.setdefault(s["name"], [0.0, 0])
                acc[0] += s["seconds"]
                acc[1] += s["computed"]

    def get_results(self) -> dict[str, dict]:
        return {n: {"computed": int(c), "cold_s_per_item": round(sec / c, 4)} for n, (sec, c) in self.cold.items()}
