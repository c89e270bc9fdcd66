"""The DAG runner: the only code that touches files, caches and worker processes.

For each stage of the resolved sub-graph, in dependency order, the runner computes every item's
content key (``pipeline.cache.item_key``), takes what the cache already holds, and computes the rest
in ``joblib.Parallel`` (loky processes, or a Dask cluster through joblib's dask backend). Each item is
written atomically by the worker that computed it, so a killed run loses only the items in flight.
A failing item is reported in one line and its dependants are skipped; the rest of the pool goes on.

Before anything runs, every parameter of every stage of the run is validated and every model a
learned stage names is resolved, so a bad value fails in one line, not per item. Device, threads,
batch sizes and workers are run options and stage resource hints: they are never part of a key.
A stage that wants the GPU runs in the main process when the run's device is CUDA (one process owns
the device). Map folders hold exactly the items of the current run: maps of images that left the
pool, or whose item failed or was skipped this time, are removed.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import models, registry
from pipeline.cache import Cache, artifact_ok, atomic_write, file_digest, item_key
from pipeline.pool import (
    IMAGE_EXTENSIONS,
    MAP_EXTENSIONS,
    BadInput,
    discover,
    save_map_png,
    write_demo_pool,
)

POOL_ITEM = "*"  # the single item of a pool-level stage
UNSTORED_MARK = "__unstored__"  # the only array of a cached item of a stage that is not stored
LOCK_NAME = ".lock"


class RunError(ValueError):
    """A user error that stops the whole run (bad pool folder, unknown stage, bad parameter...).

    The message may hold several lines, one per problem.
    """


@dataclass
class RunOptions:
    """Run-level options: the one place their defaults are written (the CLI and ``[run]`` use them).

    Attributes
    ----------
    out : Path
        Output folder; the cache lives in ``out/.cache``.
    pool, gt, priors : Path or None
        Folder of images (None: the embedded demo pool); ground-truth masks; the user's prior maps.
    jobs : int
        Worker processes (default: the number of CPU cores).
    scheduler : str
        ``"loky"`` (local processes) or ``"dask://HOST:PORT"``.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    threads : int or None
        Compute threads per worker (None: the cores divided among the workers).
    force : tuple of str
        Stages recomputed even when cached.
    progress : bool
        Progress bars.
    echo : callable
        Receives each notice line.
    """

    out: Path = Path("out")
    pool: Path | None = None
    gt: Path | None = None
    priors: Path | None = None
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    scheduler: str = "loky"
    device: str = "auto"
    threads: int | None = None
    force: tuple[str, ...] = ()
    progress: bool = True
    echo: Callable[[str], None] = print


RUN_OPTION_KEYS = ("pool", "gt", "priors", "out", "jobs", "scheduler", "device", "threads")


@dataclass
class StageReport:
    """Per-stage counts, accumulated as items finish (the step / pool shape of PySODMetrics)."""

    name: str
    total: int = 0
    computed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0  # items whose inputs failed or are missing
    seconds: float = 0.0

    def step(self, status: str):
        setattr(self, status, getattr(self, status) + 1)

    @property
    def produced(self) -> int:
        return self.computed + self.cached


@dataclass
class RunReport:
    stages: list[StageReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requested: tuple[str, ...] = ()
    pool_dir: Path | None = None
    out_dir: Path | None = None
    map_dirs: dict[str, Path] = field(default_factory=dict)
    map_items: dict[str, list[str]] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.stages)

    def stage(self, name: str) -> StageReport | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def succeeded(self) -> bool:
        """True unless nothing could be done: every requested stage with work produced no item."""
        return self.failure_reason() is None

    def failure_reason(self) -> str | None:
        """Why nothing could be done (None when something was): the exit code's explanation."""
        wanted = [self.stage(n) for n in self.requested]
        wanted = [s for s in wanted if s is not None]
        if not wanted:
            return "no stage ran"
        if any(s.produced for s in wanted):
            return None
        with_work = [s for s in wanted if s.total]
        if not with_work:
            return f"the requested stages had nothing to do ({', '.join(s.name for s in wanted)})"
        parts = []
        for s in with_work:
            why = []
            if s.failed:
                why.append(f"{s.failed} failed")
            if s.skipped:
                why.append(f"{s.skipped} skipped because an input is missing or failed")
            parts.append(f"{s.name}: {', '.join(why) or 'no item'} of {s.total}")
        return "nothing could be done: " + "; ".join(parts)

    def table(self) -> str:
        rows = [("stage", "items", "computed", "cached", "failed", "skipped", "seconds")]
        for s in self.stages:
            rows.append((s.name, s.total, s.computed, s.cached, s.failed, s.skipped, f"{s.seconds:.1f}"))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        lines = []
        for j, r in enumerate(rows):
            cells = [str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
            lines.append("  ".join(cells))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


class CorruptArtifact(RuntimeError):
    """An input artifact of the cache could not be read (it is removed, so a rerun recomputes it)."""


def _read_artifact(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CorruptArtifact(f"cache artifact {path} disappeared; run again to recompute it") from None
    except Exception as exc:  # zip / CRC / format errors: never use the artifact
        try:
            os.unlink(path)
        except OSError:
            pass
        raise CorruptArtifact(f"cache artifact {path} is corrupted ({type(exc).__name__}); "
                              "removed: run again to recompute it") from None


@dataclass(frozen=True)
class Recipe:
    """How to recompute one item of a stage that is not stored (``Stage(store=False)``).

    Consumers get a recipe instead of a cache path; the worker that needs the item computes it
    from the recipe's own input references (themselves paths or recipes), once per process.
    """

    stage: str
    key: str
    params: Any
    refs: dict[str, Any]
    ctx: registry.ItemContext


_RECOMPUTED: dict[tuple[str, str], dict[str, np.ndarray]] = {}
_RECOMPUTED_MAX = 16  # results kept per process (a target's inputs are reused across its pairs)


def _resolve(ref) -> dict[str, np.ndarray]:
    """An input's arrays from its reference: a cache path, or a recipe of an unstored stage."""
    if not isinstance(ref, Recipe):
        return _read_artifact(ref)
    memo = (ref.stage, ref.key)
    if memo not in _RECOMPUTED:
        stage = registry.get(ref.stage)
        inputs = _load_inputs(ref.refs)
        with warnings.catch_warnings():  # its notices were shown when the stage itself ran
            warnings.simplefilter("ignore")
            result = stage.func([inputs], ref.params, ref.ctx)[0] if stage.batched else stage.func(inputs, ref.params, ref.ctx)
        if len(_RECOMPUTED) >= _RECOMPUTED_MAX:
            _RECOMPUTED.pop(next(iter(_RECOMPUTED)))
        arrays = {k: np.asarray(v) for k, v in result.items()}
        for a in arrays.values():  # shared by every consumer in this process: nobody may change it
            a.flags.writeable = False
        _RECOMPUTED[memo] = arrays
    return _RECOMPUTED[memo]


class LazyArtifacts(Mapping):
    """Read-only mapping item -> artifact dict, loaded from the cache (or recomputed) on access (picklable)."""

    def __init__(self, paths: dict[Any, Any]):
        self._paths = dict(paths)

    def __getitem__(self, item):
        return _resolve(self._paths[item])

    def __iter__(self):
        return iter(self._paths)

    def __len__(self):
        return len(self._paths)


# --------------------------------------------------------------------------- worker side

_WORKER_THREADS: int | None = None


def _limit_threads(threads: int):
    """Give each worker its share of the cores, so that workers x threads does not oversubscribe."""
    global _WORKER_THREADS
    if _WORKER_THREADS == threads:
        return
    _WORKER_THREADS = threads
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "numba" in sys.modules:
        try:
            sys.modules["numba"].set_num_threads(min(threads, sys.modules["numba"].config.NUMBA_NUM_THREADS))
        except (ValueError, AttributeError):  # pragma: no cover
            pass
    if "cv2" in sys.modules:  # OpenCV's own pool (SLIC, EdgeBoxes, resizing)
        sys.modules["cv2"].setNumThreads(threads)


def _load_inputs(refs: dict[str, Any]) -> dict[str, Any]:
    """refs: stage -> cache path (str), Recipe or LazyArtifacts."""
    return {name: ref if isinstance(ref, LazyArtifacts) else _resolve(ref) for name, ref in refs.items()}


@dataclass
class _Task:
    stage: str
    items: list[Any]  # one item, or a batch
    keys: list[str]
    # per item: refs dict (image/pool), (refs_a, refs_b, refs_pair) for pairs, or (refs, [refs of
    # each neighbour]) for an image stage with neighbour inputs
    refs: list[Any]
    contexts: list[registry.ItemContext]
    map_paths: list[str | None]


@dataclass
class _Outcome:
    item: Any
    status: str  # "computed" | "failed"
    notices: list[str]
    error: str | None = None
    detail: str | None = None
    storage: bool = False  # the result could not be written (disk full, read-only): stops the run


# Errors of the output folder itself: no item can succeed after one of these.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


def _describe_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, (BadInput, ValueError, FileNotFoundError, CorruptArtifact)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _execute(task: _Task, params, cache_root: str, threads: int) -> list[_Outcome]:
    """Compute one task in a worker (or in-process) and write its artifacts atomically."""
    stage = registry.get(task.stage)  # first: it imports the stage modules (torch, numba, cv2) ...
    _limit_threads(threads)  # ... whose thread pools are then limited
    task = dataclasses.replace(task, contexts=[dataclasses.replace(c, threads=threads) for c in task.contexts])
    cache = Cache(Path(cache_root).parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if stage.granularity == "pair":
                refs_a, refs_b, refs_pair = task.refs[0]
                results = [stage.func(_load_inputs(refs_a), _load_inputs(refs_b), _load_inputs(refs_pair),
                                      params, task.contexts[0])]
            elif stage.neighbour_inputs is not None:
                refs, neighbour_refs = task.refs[0]
                results = [stage.func(_load_inputs(refs), [_load_inputs(r) for r in neighbour_refs],
                                      params, task.contexts[0])]
            elif stage.batched:
                batch_ctx = dataclasses.replace(task.contexts[0], item=tuple(task.items))
                results = list(stage.func([_load_inputs(r) for r in task.refs], params, batch_ctx))
            else:
                results = [stage.func(_load_inputs(task.refs[0]), params, task.contexts[0])]
            if len(results) != len(task.items):
                raise RuntimeError(f"stage returned {len(results)} results for {len(task.items)} items")
        except Exception as exc:  # one failing item must not stop the pool
            notices = [str(w.message) for w in caught]
            detail = traceback.format_exc()
            return [_Outcome(item, "failed", notices, _describe_error(exc), detail) for item in task.items]
    notices = [str(w.message) for w in caught]
    outcomes = []
    for item, key, result, map_path in zip(task.items, task.keys, results, task.map_paths):
        try:
            if not isinstance(result, Mapping):
                raise TypeError(f"stage {stage.name} returned {type(result).__name__}, expected a dict of arrays")
            if stage.produces_map:
                _check_map(result, stage.name)
                # Maps are kept as float16 (11 significant bits, 3 more than the 8-bit PNG): half the
                # cache; the PNG is written from the stored values, so a cached run writes the same bytes.
                result = {**result, "map": np.asarray(result["map"], np.float16)}
            # An unstored stage keeps only a marker: the item is done and valid; consumers recompute it.
            cache.save(stage.name, key, result if stage.store else {UNSTORED_MARK: np.bool_(True)})
            if map_path is not None:
                save_map_png(map_path, result["map"])
            outcomes.append(_Outcome(item, "computed", notices))
        except OSError as exc:
            storage = exc.errno in _STORAGE_ERRNOS
            outcomes.append(_Outcome(item, "failed", notices, _describe_error(exc), traceback.format_exc(),
                                     storage=storage))
        except Exception as exc:
            outcomes.append(_Outcome(item, "failed", notices, _describe_error(exc), traceback.format_exc()))
        notices = []  # batch notices shown once
    return outcomes


def _check_map(result, stage_name):
    if "map" not in result:
        raise ValueError(f"stage {stage_name} is declared produces_map but returned no 'map'")
    m = np.asarray(result["map"])
    if m.ndim != 2 or not np.issubdtype(m.dtype, np.floating):
        raise ValueError(f"stage {stage_name}: map must be a 2-D float array, got {m.dtype} {m.shape}")
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ValueError(f"stage {stage_name}: map values must be finite and in [0, 1]")


# --------------------------------------------------------------------------- main side


def _item_label(item) -> str:
    if isinstance(item, tuple):
        return f"{item[0]}->{item[1]}"
    return "pool" if item == POOL_ITEM else str(item)


def resolve_stages(names: str | list[str], params: dict[str, Any], options: RunOptions) -> tuple[list[str], list[str], list[str]]:
    """Stage order for ``--stages`` (``"all"`` or names), the requested stages, and notices.

    Raises
    ------
    RunError
        Unknown stage, cycle, a needed run input missing, a prior parameter naming a non-map stage.
    """
    stages = registry.all_stages()
    available_inputs = {"priors": options.priors is not None, "gt": options.gt is not None}
    notices = []
    if names == "all" or names == ["all"]:
        # Trainers run only when a learned stage asks for model = "train" (the default model is shipped).
        trainers = {s.learned.trainer for s in stages.values() if s.learned is not None}
        wanted = []
        for name, stage in stages.items():
            if name in trainers:
                continue
            if stage.run_input and not available_inputs.get(stage.run_input, False):
                notices.append(f"stage {name} left out: it needs --{stage.run_input} DIR")
                continue
            wanted.append(name)
    else:
        wanted = []
        for n in names:
            if n in registry.ALIASES:
                notices.append(f"stage {n} is now called {registry.canonical(n)}; the old name will be "
                               "removed in the next release")
            wanted.append(registry.canonical(n))
    try:
        order = registry.topological_order(wanted, params)
    except KeyError as exc:
        raise RunError(exc.args[0]) from None
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if names == "all" or names == ["all"]:
        # Stages pulled in only as inputs of others keep their place; the rest were requested.
        wanted = [n for n in order if n in wanted]
    for name in order:
        stage = stages[name]
        if stage.run_input and not available_inputs.get(stage.run_input, False):
            needed_by = [n for n in order if name in stages[n].all_inputs(params[n])]
            via = f" (needed by {', '.join(needed_by)})" if needed_by else ""
            raise RunError(f"stage {name} needs --{stage.run_input} DIR{via}")
        for p in stage.prior_params:
            prior = getattr(params[name], p)
            if prior and not stages[registry.canonical(prior)].produces_map:
                raise RunError(f"{name}.{p} = {prior!r}: expected a map-producing stage")
        for p in stage.feature_params:
            value = getattr(params[name], p)
            if value not in registry.FEATURE_STAGES:
                raise RunError(f"{name}.{p} = {value!r}: expected a feature stage "
                               f"({', '.join(registry.FEATURE_STAGES)})")
    return order, wanted, notices


def validate_run_params(order: list[str], params: dict[str, Any]) -> None:
    """Check every parameter of every stage of the run; one RunError listing every bad value."""
    problems = []
    for name in order:
        problems.extend(registry.param_problems(registry.get(name), params[name]))
    if problems:
        raise RunError("\n".join(problems))


def _resolve_device(requested: str, needed: bool) -> str:
    if requested not in ("auto", "cpu") and not requested.startswith("cuda"):
        raise RunError(f"--device: expected auto, cpu or cuda, got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not needed):
        return "cpu"
    try:
        import torch
    except ImportError:
        if requested == "auto":
            return "cpu"
        raise RunError("--device cuda: torch is not installed") from None
    if torch.cuda.is_available():
        return "cuda" if requested == "auto" else requested
    if requested == "auto":
        return "cpu"
    raise RunError(f"--device {requested}: CUDA is not available in this torch build "
                   f"({torch.__version__}); see the README for a CUDA build, or use --device cpu")


def _make_parallel(options: RunOptions):
    import joblib

    if options.scheduler.startswith("dask://"):
        try:
            from distributed import Client
        except ImportError:
            raise RunError("--scheduler dask://... needs the [dask] extra: pip install '.[dask]'") from None
        address = options.scheduler[len("dask://"):]
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RunError(f"--scheduler {options.scheduler}: cannot reach the Dask scheduler ({first})") from None
        return client, joblib.parallel_config(backend="dask")
    if options.scheduler != "loky":
        raise RunError(f"--scheduler: expected 'loky' or 'dask://HOST:PORT', got {options.scheduler!r}")
    return None, None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{desc:>14}", unit="item", disable=not enabled or total == 0, leave=True,
                dynamic_ncols=True)


class RunLock:
    """One run per output folder: an exclusive ``flock`` on ``OUT/.lock`` for the run's duration."""

    def __init__(self, out: Path):
        self.path = out / LOCK_NAME
        self.fd = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise RunError(f"output folder {self.path.parent} is in use by another run ({holder}); "
                           "wait for it to finish or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}".encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


@dataclass
class _Plan:
    keys: dict[Any, str] = field(default_factory=dict)
    refs: dict[Any, Any] = field(default_factory=dict)
    contexts: dict[Any, registry.ItemContext] = field(default_factory=dict)
    skipped: list[Any] = field(default_factory=list)


class Runner:
    def __init__(self, params: dict[str, Any], options: RunOptions):
        self.params = params
        self.options = options
        self.out = Path(options.out)
        self.cache = Cache(self.out)
        self.keys: dict[str, dict[Any, str]] = {}  # stage -> item -> key (items that exist after the stage)
        self.report = RunReport(out_dir=self.out)
        self.log_path = self.out / "errors.log"
        self.device = "cpu"
        self.models: dict[str, models.ModelRef | None] = {}
        self.recipes: dict[str, dict[Any, Recipe]] = {}  # unstored stages: item -> how to recompute it
        self.path_digests: dict[str, dict[str, str]] = {}

    # ---- inputs of the run
    def _discover(self):
        opts = self.options
        echo = opts.echo
        if opts.pool is None:
            pool_dir = self.out / "demo_pool"
            write_demo_pool(pool_dir)
            echo(f"no --pool given: using the embedded demo pool written to {pool_dir}")
        else:
            pool_dir = Path(opts.pool)
        try:
            found = discover(pool_dir, IMAGE_EXTENSIONS, what="pool")
        except BadInput as exc:
            raise RunError(str(exc)) from None
        if not found.files:
            raise RunError(f"pool folder {pool_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.report.pool_dir = pool_dir
        self.problem(*found.problems)
        self.files = {"image": found.files, "prior": {}, "gt": {}}
        for what, folder in (("prior", opts.priors), ("gt", opts.gt)):
            if folder is None:
                continue
            try:
                maps = discover(folder, MAP_EXTENSIONS, what="priors" if what == "prior" else "gt")
            except BadInput as exc:
                raise RunError(str(exc)) from None
            self.problem(*maps.problems)
            orphans = sorted(set(maps.files) - set(found.files))
            for stem in orphans:
                self.problem(f"{maps.files[stem]}: no image with stem {stem!r} in the pool (ignored)")
            self.files[what] = {s: p for s, p in maps.files.items() if s in found.files}

    def problem(self, *lines: str):
        for line in lines:
            self.report.problems.append(line)
            self.options.echo(f"warning: {line}")

    def _resolve_models(self, order: list[str], explicit: set[str]) -> list[str]:
        """Resolve every learned stage's model and hash every path parameter, before anything runs.

        A learned stage pulled in only by ``--stages all`` whose model cannot be found is left out
        with a notice, with the stages that need it; for a stage the user named, it is an error.
        Returns the order without the stages left out.
        """
        problems, dropped = [], set()
        for name in order:
            stage = registry.get(name)
            p = self.params[name]
            if any(d in dropped for d in stage.all_inputs(p)):
                dropped.add(name)
                continue
            if stage.learned is not None:
                try:
                    self.models[name] = models.resolve(name, getattr(p, stage.learned.param))
                except models.ModelFileError as exc:
                    if name in explicit or any(name in registry.get(e).all_inputs(self.params[e]) for e in explicit):
                        problems.append(str(exc))
                    else:
                        self.options.echo(f"notice: stage {name} left out: {exc}")
                        dropped.add(name)
                    continue
            digests = {}
            for pname in stage.path_params():
                value = getattr(p, pname)
                if value:
                    try:
                        digests[pname] = models.cached_file_digest(value)
                    except OSError as exc:
                        problems.append(f"{name}.{pname} = {value!r}: cannot be read ({exc.strerror})")
            self.path_digests[name] = digests
        if problems:
            raise RunError("\n".join(problems))
        return [n for n in order if n not in dropped]

    # ---- planning
    def _ref(self, stage: str, key: str, item):
        """How a consumer gets an input item: its cache path, or the recipe of an unstored stage."""
        recipes = self.recipes.get(stage)
        if recipes is None:
            return str(self.cache.path(stage, key))
        return recipes[item]

    def _input_key(self, dep: str, stem) -> str | None:
        keys = self.keys.get(dep, {})
        return keys.get(POOL_ITEM, keys.get(stem))

    @staticmethod
    def _key_params(stage: registry.Stage, params) -> dict[str, Any]:
        """The parameters that enter the key. A learned stage's model enters by content (its digest,
        or the trainer's key), not by the name it was given: the same model named by a path or by
        its shipped name gives the same keys."""
        pdict = registry.params_as_dict(params)
        if stage.learned is not None:
            pdict.pop(stage.learned.param, None)
        return pdict

    def _extra_key(self, stage: registry.Stage) -> dict[str, str]:
        """Key parts besides inputs and params: the model's and path parameters' content digests."""
        extra = dict(self.path_digests.get(stage.name, {}))
        ref = self.models.get(stage.name)
        if ref is not None:
            extra["model"] = ref.digest
        return extra

    def _model_ref(self, stage: registry.Stage) -> models.ModelRef | None:
        if stage.learned is None:
            return None
        ref = self.models.get(stage.name)
        if ref is not None:
            return ref
        # model = "train": the trainer's result for this pool is the model file.
        key = self.keys.get(stage.learned.trainer, {}).get(POOL_ITEM)
        if key is None:
            return None
        return models.ModelRef("train", str(self.cache.path(stage.learned.trainer, key)), key, "train")

    def _image_refs(self, deps: dict[str, registry.Stage], stem):
        """Refs and keys of the non-pair inputs of one image; None when one is missing."""
        refs, keys = {}, []
        for d, ds in deps.items():
            if ds.granularity == "pair":
                continue
            dk = self._input_key(d, stem)
            if dk is None:
                return None, None
            refs[d] = self._ref(d, dk, stem)
            keys.append((d, dk))
        return refs, keys

    def _plan(self, stage: registry.Stage, params) -> _Plan:
        deps = {d: registry.get(d) for d in stage.all_inputs(params)}
        plan = _Plan()
        model = self._model_ref(stage)
        if stage.learned is not None and model is None:
            plan.skipped = list(self._image_items()) if stage.granularity == "image" else [POOL_ITEM]
            return plan
        ctx = registry.ItemContext(model=model, device=self.device)
        if stage.granularity == "pool":
            self._plan_pool(stage, params, deps, ctx, plan)
        elif stage.granularity == "pair":
            self._plan_pairs(stage, params, deps, ctx, plan)
        else:
            self._plan_images(stage, params, deps, ctx, plan)
        return plan

    def _image_items(self):
        return list(self.files["image"])

    def _plan_pool(self, stage, params, deps, ctx, plan: _Plan):
        refs, keys = {}, []
        for d in deps:
            present = self.keys.get(d, {})
            refs[d] = LazyArtifacts({i: self._ref(d, k, i) for i, k in present.items()})
            keys.append((d, sorted((_item_label(i), k) for i, k in present.items())))
        plan.keys[POOL_ITEM] = item_key(stage.name, stage.version, self._key_params(stage, params), keys,
                                        extra=self._extra_key(stage))
        plan.refs[POOL_ITEM] = refs
        plan.contexts[POOL_ITEM] = dataclasses.replace(ctx, item=POOL_ITEM)

    def _pairs(self, source: str) -> list[tuple[str, str]]:
        key = self.keys.get(source, {}).get(POOL_ITEM)
        if key is None:
            return []
        table = self.cache.load(source, key)
        stems = [str(s) for s in table["stems"]]
        return [(stems[i], stems[int(j)]) for i, row in enumerate(np.asarray(table["index"])) for j in row if j >= 0]

    def _plan_pairs(self, stage, params, deps, ctx, plan: _Plan):
        pdict = self._key_params(stage, params)
        extra = self._extra_key(stage)
        for item in self._pairs(stage.pairs_from):
            a, b = item
            ra, ka = self._image_refs(deps, a)
            rb, kb = self._image_refs(deps, b)
            rp, kp = {}, []
            for d, ds in deps.items():
                if ds.granularity != "pair":
                    continue
                dk = self.keys.get(d, {}).get(item)
                if dk is None:
                    rp = None
                    break
                rp[d] = self._ref(d, dk, item)
                kp.append((d, dk))
            if ra is None or rb is None or rp is None:
                plan.skipped.append(item)
                continue
            plan.keys[item] = item_key(stage.name, stage.version, pdict, [ka, kb, kp], extra=extra)
            plan.refs[item] = (ra, rb, rp)
            plan.contexts[item] = dataclasses.replace(ctx, item=item)

    def _neighbour_refs(self, stages: tuple[str, ...], stem, neighbours) -> tuple[list, list]:
        """Per neighbour of ``stem`` (in table order) the refs and keys of the named stages' results
        for it (image stages) and for the pair (pair stages); a neighbour missing one is left out."""
        all_refs, all_keys = [], []
        for other in neighbours:
            refs, keys = {}, []
            for d in stages:
                if registry.get(d).granularity == "pair":
                    item, dk = (stem, other), self.keys.get(d, {}).get((stem, other))
                else:
                    item, dk = other, self._input_key(d, other)
                if dk is None:
                    break
                refs[d] = self._ref(d, dk, item)
                keys.append((d, dk))
            else:
                all_refs.append(refs)
                all_keys.append((other, keys))
        return all_refs, all_keys

    def _plan_images(self, stage, params, deps, ctx, plan: _Plan):
        pdict = self._key_params(stage, params)
        extra = self._extra_key(stage)
        neighbours_of: dict[str, list[str]] | None = None
        if stage.neighbour_inputs is not None:
            neighbours_of = {}
            for a, b in self._pairs(stage.neighbour_inputs.table):
                neighbours_of.setdefault(a, []).append(b)
        for stem in self._image_items():
            refs, keys = self._image_refs(deps, stem)
            if refs is None:
                plan.skipped.append(stem)
                continue
            if neighbours_of is not None:
                neighbour_refs, neighbour_keys = self._neighbour_refs(
                    stage.neighbour_inputs.stages, stem, neighbours_of.get(stem, ()))
                refs = (refs, neighbour_refs)
                keys = [*keys, ("neighbours", neighbour_keys)]
            file_hash, path = None, None
            if stage.file_input:
                path = self.files[stage.file_input].get(stem)
                if path is None:
                    self.problem(f"{stage.name}: no {stage.file_input} file for {stem!r} (skipped)")
                    plan.skipped.append(stem)
                    continue
                try:
                    file_hash = file_digest(path)
                except OSError as exc:
                    self.problem(f"{path}: cannot be read ({exc.strerror})")
                    plan.skipped.append(stem)
                    continue
            plan.keys[stem] = item_key(stage.name, stage.version, pdict, keys, file_hash, extra=extra)
            plan.refs[stem] = refs
            plan.contexts[stem] = dataclasses.replace(ctx, item=stem, file=Path(path) if path else None)

    # ---- execution
    def _workers(self, stage: registry.Stage, n_tasks: int) -> tuple[int, bool]:
        """(worker processes, in the main process?) for a stage."""
        if stage.resources.wants_gpu and self.device.startswith("cuda"):
            return 1, True
        if self.options.scheduler.startswith("dask://"):
            return max(1, self.options.jobs), False
        n = min(self.options.jobs, stage.resources.max_workers or self.options.jobs, max(n_tasks, 1))
        return max(1, n), n <= 1

    def run_stage(self, name: str) -> StageReport:
        stage = registry.get(name)
        params = self.params[name]
        plan = self._plan(stage, params)
        keys = plan.keys
        rep = StageReport(name=name, total=len(keys) + len(plan.skipped), skipped=len(plan.skipped))
        forced = name in self.options.force
        map_dir = self.out / name if stage.produces_map and stage.granularity == "image" else None
        if map_dir is not None:
            self._remove_stale_maps(map_dir, set(keys))
        done: dict[Any, str] = {}
        pending = []
        for item, key in keys.items():
            if not forced and self.cache.has(name, key):
                rep.step("cached")
                done[item] = key
            else:
                pending.append(item)
        if map_dir is not None:
            self._refresh_map_pngs(name, map_dir, done)

        def map_path(item):
            return None if map_dir is None else str(map_dir / f"{item}.png")

        on_gpu = stage.resources.wants_gpu and self.device.startswith("cuda")
        group = (stage.resources.gpu_batch if on_gpu else stage.resources.cpu_batch) if stage.batched else 1
        group = max(1, group)
        tasks = [
            _Task(name, chunk, [keys[it] for it in chunk], [plan.refs[it] for it in chunk],
                  [plan.contexts[it] for it in chunk], [map_path(it) for it in chunk])
            for chunk in (pending[i: i + group] for i in range(0, len(pending), group))
        ]
        n_workers, in_process = self._workers(stage, len(tasks))
        cores = os.cpu_count() or 1
        threads = self.options.threads or max(1, cores // n_workers)
        bar = _progress(len(pending), name, self.options.progress)
        t0 = time.perf_counter()
        for outcomes in self._map(tasks, params, threads, n_workers, in_process):
            for oc in outcomes:
                for note in oc.notices:
                    self.options.echo(f"notice: {name}: {note}")
                if oc.storage:
                    bar.close()
                    raise RunError(f"cannot write to {self.out} ({oc.error}); every finished item is kept: "
                                   "make room or fix the folder's permissions, then run again")
                if oc.status == "failed":
                    self.problem(f"{name} failed on {_item_label(oc.item)}: {oc.error}")
                    if oc.detail:
                        with open(self.log_path, "a") as fh:
                            fh.write(f"--- {name} {_item_label(oc.item)}\n{oc.detail}\n")
                    if map_dir is not None:  # a map left from an earlier run is not this run's
                        (map_dir / f"{oc.item}.png").unlink(missing_ok=True)
                else:
                    done[oc.item] = keys[oc.item]
                rep.step(oc.status)
                bar.update(1)
        bar.close()
        rep.seconds = time.perf_counter() - t0
        if map_dir is not None:
            self._write_map_index(map_dir, done)
            self.report.map_dirs[name] = map_dir
            self.report.map_items[name] = sorted(str(i) for i in done)
        self.keys[name] = done
        if not stage.store:
            self.recipes[name] = {item: Recipe(name, key, params, plan.refs[item], plan.contexts[item])
                                  for item, key in done.items()}
        return rep

    def _map(self, tasks, params, threads, n_workers, in_process):
        cache_root = str(self.cache.root)
        if in_process or len(tasks) <= 1 and not self.options.scheduler.startswith("dask://"):
            for t in tasks:
                yield _execute(t, params, cache_root, threads)
            return
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        # loky says this when an idle worker times out and is replaced between stages: harmless
        # here (nothing is lost: a replaced worker only loads its models again), and it said it on
        # every parallel run.
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given to the executor")

        use_dask = self.options.scheduler.startswith("dask://")
        runner = Parallel(n_jobs=-1 if use_dask else n_workers, return_as="generator_unordered", batch_size=1)
        finished = set()
        try:
            for outcomes in runner(delayed(_execute)(t, params, cache_root, threads) for t in tasks):
                finished.add(id_of(outcomes))
                yield outcomes
        except TerminatedWorkerError:
            # A worker died (killed by the OS, or a crash in native code). Its item is unknown:
            # run each unfinished task alone in a fresh process, so only the culprit fails.
            remaining = [t for t in tasks if tuple(map(_item_label, t.items)) not in finished]
            yield from self._isolated(remaining, params, cache_root, threads)

    def _isolated(self, tasks, params, cache_root, threads):
        # A private one-worker executor, never joblib's reusable one: joblib later reuses that
        # executor and expects its own bookkeeping on it.
        from joblib.externals.loky import ProcessPoolExecutor
        from joblib.externals.loky.process_executor import BrokenProcessPool

        executor = ProcessPoolExecutor(max_workers=1)
        try:
            for t in tasks:
                try:
                    yield executor.submit(_execute, t, params, cache_root, threads).result()
                except BrokenProcessPool:
                    # (loky's exception carries no exit code to report: it is only in its message)
                    yield [_Outcome(item, "failed", [], "the worker process died while computing this item")
                           for item in t.items]
                    executor.shutdown(wait=True, kill_workers=True)
                    executor = ProcessPoolExecutor(max_workers=1)
        finally:
            executor.shutdown(wait=True)

    def _remove_stale_maps(self, map_dir: Path, items: set):
        """Delete the PNGs of items that are not part of this run (images gone, inputs failed)."""
        if not map_dir.is_dir():
            return
        wanted = {str(i) for i in items}
        for png in map_dir.glob("*.png"):
            if png.stem not in wanted:
                png.unlink(missing_ok=True)

    def _refresh_map_pngs(self, name, map_dir: Path, done: dict[Any, str]):
        """Rewrite the PNG of a cached item when it is missing or was last written from another key."""
        index = self._read_map_index(map_dir)
        for item, key in done.items():
            png = map_dir / f"{item}.png"
            if index.get(item) != key or not png.exists():
                save_map_png(png, self.cache.load(name, key)["map"])

    @staticmethod
    def _read_map_index(map_dir: Path) -> dict[str, str]:
        try:
            return json.loads((map_dir / ".keys.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    @staticmethod
    def _write_map_index(map_dir: Path, done: dict[Any, str]):
        entries = {str(it): k for it, k in sorted(done.items())}
        atomic_write(map_dir / ".keys.json", lambda fh: fh.write(json.dumps(entries, indent=1).encode()))

    def run(self, names) -> RunReport:
        order, requested, notices = resolve_stages(names, self.params, self.options)
        validate_run_params(order, self.params)
        for n in notices:
            self.options.echo(f"notice: {n}")
        explicit = set() if names == "all" or names == ["all"] else {registry.canonical(n) for n in names}
        order = self._resolve_models(order, explicit)
        requested = [n for n in requested if n in order]
        unknown_force = [f for f in self.options.force if f not in order]
        if unknown_force:
            raise RunError(f"--force {', '.join(unknown_force)}: not among the stages of this run ({', '.join(order)})")
        self.report.requested = tuple(requested)
        self.device = _resolve_device(self.options.device,
                                      any(registry.get(n).resources.wants_gpu for n in order))
        self.report.device = self.device
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"output folder {self.out}: cannot be created ({exc.strerror})") from None
        with RunLock(self.out):
            self._check_writable()
            self._discover()
            client, backend_ctx = _make_parallel(self.options)
            try:
                if backend_ctx is not None:
                    with backend_ctx:
                        self._run_all(order)
                else:
                    self._run_all(order)
            finally:
                if client is not None:
                    client.close()
            self._write_summary()
        return self.report

    def _check_writable(self):
        """One clear error up front when the cache folder cannot be written (read-only, full, not a folder)."""
        try:
            self.cache.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self.cache.root / ".probe", lambda fh: fh.write(b"ok"))
            (self.cache.root / ".probe").unlink()
        except OSError as exc:
            raise RunError(f"cache folder {self.cache.root} cannot be written ({exc.strerror or exc})") from None
        # Temporary files of writes a killed run left behind (never renamed into place: not results).
        # Safe to remove: the run lock is held, so no other run is writing here.
        for tmp in self.cache.root.glob("*/.*.tmp"):
            tmp.unlink(missing_ok=True)

    def _run_all(self, order):
        for name in order:
            self.report.stages.append(self.run_stage(name))

    def _write_summary(self):
        data = {
            "pool": str(self.report.pool_dir),
            "device": self.device,
            "requested": list(self.report.requested),
            "stages": [dataclasses.asdict(s) for s in self.report.stages],
            "problems": self.report.problems,
            "params": {s.name: registry.params_as_dict(self.params[s.name]) for s in self.report.stages},
            "models": {n: dataclasses.asdict(r) for n, r in self.models.items() if r is not None},
            # The key of each pool-level result of this run (a trained model is one).
            "pool_keys": {n: k[POOL_ITEM] for n, k in self.keys.items() if POOL_ITEM in k},
        }
        atomic_write(self.out / "run_summary.json", lambda fh: fh.write(json.dumps(data, indent=2, default=str).encode()))


def id_of(outcomes: list[_Outcome]) -> tuple[str, ...]:
    """The identity of a task by its items (to know which tasks a broken pool left unfinished)."""
    return tuple(_item_label(o.item) for o in outcomes)


def run(names, params: dict[str, Any], options: RunOptions) -> RunReport:
    """Run the named stages (``"all"`` or a list) and what they need; see :class:`Runner`."""
    return Runner(params, options).run(names)
