"""The DAG runner: the only code that touches files, caches and worker processes.

For each stage of the resolved sub-graph, in dependency order, the runner computes every item's
content key (``pipeline.cache.item_key``), takes what the cache already holds, and computes the rest
in ``joblib.Parallel`` (loky processes, or a Dask cluster through joblib's dask backend). Each item is
written atomically by the worker that computed it, so a killed run loses only the items in flight.
A failing item is reported in one line and its dependants are skipped; the rest of the pool goes on.
"""

from __future__ import annotations

import dataclasses
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

from pipeline import registry
from pipeline.cache import Cache, atomic_write, file_digest, item_key
from pipeline.pool import (
    IMAGE_EXTENSIONS,
    MAP_EXTENSIONS,
    BadInput,
    discover,
    save_map_png,
    write_demo_pool,
)

POOL_ITEM = "*"  # the single item of a pool-level stage


class RunError(ValueError):
    """A user error that stops the whole run (bad pool folder, unknown stage, missing option)."""


@dataclass
class RunOptions:
    """Run-level options (the CLI's flags)."""

    out: Path
    pool: Path | None = None
    gt: Path | None = None
    priors: Path | None = None
    jobs: int = 1
    scheduler: str = "loky"
    force: tuple[str, ...] = ()
    progress: bool = True
    echo: Callable[[str], None] = print


@dataclass
class StageReport:
    """Per-stage counts, accumulated as items finish (the step / pool shape of PySODMetrics)."""

    name: str
    total: int = 0
    computed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0  # items whose inputs failed
    seconds: float = 0.0

    def step(self, status: str, seconds: float = 0.0):
        setattr(self, status, getattr(self, status) + 1)
        self.seconds += seconds


@dataclass
class RunReport:
    stages: list[StageReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pool_dir: Path | None = None
    out_dir: Path | None = None
    map_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.stages)

    @property
    def succeeded(self) -> bool:
        """True when at least one item of the last requested stage exists."""
        if not self.stages:
            return False
        last = self.stages[-1]
        return last.computed + last.cached > 0

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


class LazyArtifacts(Mapping):
    """Read-only mapping item -> artifact dict, loaded from the cache on access (picklable)."""

    def __init__(self, paths: dict[Any, str]):
        self._paths = dict(paths)

    def __getitem__(self, item):
        with np.load(self._paths[item], allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def __iter__(self):
        return iter(self._paths)

    def __len__(self):
        return len(self._paths)


# --------------------------------------------------------------------------- worker side

_WORKER_THREADS: int | None = None


def _limit_threads(threads: int):
    """Give each worker its share of the cores, so jobs x threads does not oversubscribe."""
    global _WORKER_THREADS
    if _WORKER_THREADS == threads:
        return
    _WORKER_THREADS = threads
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _load_inputs(refs: dict[str, Any]) -> dict[str, Any]:
    """refs: stage -> cache path (str) or LazyArtifacts or a plain value (the file path)."""
    out = {}
    for name, ref in refs.items():
        if isinstance(ref, LazyArtifacts) or name == "__file__":
            out[name] = ref
        else:
            with np.load(ref, allow_pickle=False) as data:
                out[name] = {k: data[k] for k in data.files}
    return out


@dataclass
class _Task:
    stage: str
    items: list[Any]  # one item, or a batch
    keys: list[str]
    refs: list[Any]  # per item: refs dict (image/pool), or (refs_a, refs_b, refs_pair) for pairs
    map_paths: list[str | None]


@dataclass
class _Outcome:
    item: Any
    status: str  # "computed" | "failed"
    seconds: float
    notices: list[str]
    error: str | None = None
    detail: str | None = None


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, (BadInput, ValueError, FileNotFoundError)):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _execute(task: _Task, params, cache_root: str, threads: int) -> list[_Outcome]:
    """Compute one task in a worker (or in-process) and write its artifacts atomically."""
    _limit_threads(threads)
    stage = registry.get(task.stage)
    cache = Cache(Path(cache_root).parent)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if stage.granularity == "pair":
                refs_a, refs_b, refs_pair = task.refs[0]
                results = [
                    stage.func(_load_inputs(refs_a), _load_inputs(refs_b), _load_inputs(refs_pair), params)
                ]
            elif stage.batch:
                results = stage.func([_load_inputs(r) for r in task.refs], params)
            else:
                results = [stage.func(_load_inputs(task.refs[0]), params)]
            if len(results) != len(task.items):
                raise RuntimeError(f"stage returned {len(results)} results for {len(task.items)} items")
        except Exception as exc:  # one failing item must not stop the pool
            notices = [str(w.message) for w in caught]
            seconds = time.perf_counter() - t0
            detail = traceback.format_exc()
            return [
                _Outcome(item, "failed", seconds / len(task.items), notices, _describe_error(exc), detail)
                for item in task.items
            ]
    notices = [str(w.message) for w in caught]
    seconds = (time.perf_counter() - t0) / len(task.items)
    outcomes = []
    for item, key, result, map_path in zip(task.items, task.keys, results, task.map_paths):
        try:
            if not isinstance(result, Mapping):
                raise TypeError(f"stage {stage.name} returned {type(result).__name__}, expected a dict of arrays")
            if stage.produces_map:
                _check_map(result, stage.name)
            cache.save(stage.name, key, result)
            if map_path is not None:
                save_map_png(map_path, result["map"])
            outcomes.append(_Outcome(item, "computed", seconds, notices))
        except Exception as exc:
            outcomes.append(_Outcome(item, "failed", seconds, notices, _describe_error(exc), traceback.format_exc()))
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


def resolve_stages(names: str | list[str], params: dict[str, Any], options: RunOptions) -> tuple[list[str], list[str]]:
    """Stage order for ``--stages`` (``"all"`` or names) and the notices for stages left out."""
    stages = registry.all_stages()
    available_inputs = {"priors": options.priors is not None, "gt": options.gt is not None}
    notices = []
    if names == "all" or names == ["all"]:
        wanted = []
        for name, stage in stages.items():
            if stage.run_input and not available_inputs.get(stage.run_input, False):
                notices.append(f"stage {name} left out: it needs --{stage.run_input} DIR")
                continue
            wanted.append(name)
    else:
        wanted = list(names)
    try:
        order = registry.topological_order(wanted, params)
    except KeyError as exc:
        raise RunError(exc.args[0]) from None
    except ValueError as exc:
        raise RunError(str(exc)) from None
    for name in order:
        stage = stages[name]
        if stage.run_input and not available_inputs.get(stage.run_input, False):
            raise RunError(f"stage {name} needs --{stage.run_input} DIR (required by the stages asked for)")
        for p in stage.prior_params:
            prior = getattr(params[name], p)
            if prior and not stages[prior].produces_map:
                raise RunError(f"{name}.{p} = {prior!r} is not a map-producing stage")
    return order, notices


def _make_parallel(options: RunOptions):
    import joblib

    if options.scheduler.startswith("dask://"):
        try:
            from distributed import Client
        except ImportError:
            raise RunError("--scheduler dask://... needs the [dask] extra: pip install '.[dask]'") from None
        address = options.scheduler[len("dask://"):]
        client = Client(address)
        return client, joblib.parallel_config(backend="dask")
    if options.scheduler != "loky":
        raise RunError(f"--scheduler must be 'loky' or 'dask://HOST:PORT', got {options.scheduler!r}")
    return None, None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{desc:>12}", unit="item", disable=not enabled or total == 0, leave=True, dynamic_ncols=True)


class Runner:
    def __init__(self, params: dict[str, Any], options: RunOptions):
        self.params = params
        self.options = options
        self.out = Path(options.out)
        self.cache = Cache(self.out)
        self.keys: dict[str, dict[Any, str]] = {}  # stage -> item -> key (items that exist after the stage)
        self.report = RunReport(out_dir=self.out)
        self.log_path = self.out / "errors.log"

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
        self.files = {"image": found.files, "prior": {}}
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

    # ---- keys
    def _pairs(self) -> list[tuple[str, str]]:
        key = self.keys.get("neighbours", {}).get(POOL_ITEM)
        if key is None:
            return []
        table = self.cache.load("neighbours", key)
        stems = [str(s) for s in table["stems"]]
        pairs = []
        for i, row in enumerate(np.asarray(table["index"])):
            for j in row:
                if j >= 0:
                    pairs.append((stems[i], stems[int(j)]))
        return pairs

    def _items(self, stage: registry.Stage) -> list[Any]:
        if stage.granularity == "pool":
            return [POOL_ITEM]
        if stage.granularity == "pair":
            return self._pairs()
        return list(self.files["image"])

    def _input_key(self, dep: str, stem: str) -> str | None:
        keys = self.keys.get(dep, {})
        return keys.get(POOL_ITEM, keys.get(stem))

    def _plan(self, stage: registry.Stage, params) -> tuple[dict[Any, str], dict[Any, Any], list[str]]:
        """Keys and input refs for every item whose inputs exist; items skipped because of a failed input."""
        deps = stage.all_inputs(params)
        pdict = registry.params_as_dict(params)
        dep_stages = {d: registry.get(d) for d in deps}
        keys, refs, skipped = {}, {}, []

        def image_refs(stem):
            r, k = {}, []
            for d, ds in dep_stages.items():
                if ds.granularity == "pair":
                    continue
                dk = self._input_key(d, stem)
                if dk is None:
                    return None, None
                r[d] = str(self.cache.path(d, dk))
                k.append((d, dk))
            return r, k

        for item in self._items(stage):
            if stage.granularity == "pool":
                r, k = {}, []
                for d, ds in dep_stages.items():
                    present = self.keys.get(d, {})
                    r[d] = LazyArtifacts({i: str(self.cache.path(d, kk)) for i, kk in present.items()})
                    k.append((d, sorted((_item_label(i), kk) for i, kk in present.items())))
                keys[item] = item_key(stage.name, stage.version, pdict, k)
                refs[item] = r
                continue
            if stage.granularity == "pair":
                a, b = item
                ra, ka = image_refs(a)
                rb, kb = image_refs(b)
                rp, kp = {}, []
                for d, ds in dep_stages.items():
                    if ds.granularity == "pair":
                        dk = self.keys.get(d, {}).get(item)
                        if dk is None:
                            rp = None
                            break
                        rp[d] = str(self.cache.path(d, dk))
                        kp.append((d, dk))
                if ra is None or rb is None or rp is None:
                    skipped.append(item)
                    continue
                keys[item] = item_key(stage.name, stage.version, pdict, [ka, kb, kp])
                refs[item] = (ra, rb, rp)
                continue
            r, k = image_refs(item)
            if r is None:
                skipped.append(item)
                continue
            file_hash = None
            if stage.file_input:
                path = self.files[stage.file_input].get(item)
                if path is None:
                    self.problem(f"{stage.name}: no {stage.file_input} file for {item!r} (skipped)")
                    skipped.append(item)
                    continue
                try:
                    file_hash = file_digest(path)
                except OSError as exc:
                    self.problem(f"{path}: cannot be read ({exc.strerror})")
                    skipped.append(item)
                    continue
                r["__file__"] = str(path)
            keys[item] = item_key(stage.name, stage.version, pdict, k, file_hash)
            refs[item] = r
        return keys, refs, skipped

    # ---- execution
    def run_stage(self, name: str, parallel) -> StageReport:
        stage = registry.get(name)
        params = self.params[name]
        keys, refs, skipped = self._plan(stage, params)
        rep = StageReport(name=name, total=len(keys) + len(skipped), skipped=len(skipped))
        forced = name in self.options.force
        map_dir = self.out / name if stage.produces_map else None
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
            if map_dir is None or stage.granularity != "image":
                return None
            return str(map_dir / f"{item}.png")

        group = stage.batch if stage.batch else 1
        tasks = [
            _Task(
                name,
                pending[i : i + group],
                [keys[it] for it in pending[i : i + group]],
                [refs[it] for it in pending[i : i + group]],
                [map_path(it) for it in pending[i : i + group]],
            )
            for i in range(0, len(pending), group)
        ]
        threads = max(1, (os.cpu_count() or 1) // max(1, self.options.jobs))
        bar = _progress(len(pending), name, self.options.progress)
        t0 = time.perf_counter()
        for outcomes in self._map(tasks, params, threads, parallel):
            for oc in outcomes:
                for note in oc.notices:
                    self.options.echo(f"notice: {name}: {note}")
                if oc.status == "failed":
                    self.problem(f"{name} failed on {_item_label(oc.item)}: {oc.error}")
                    if oc.detail:
                        with open(self.log_path, "a") as fh:
                            fh.write(f"--- {name} {_item_label(oc.item)}\n{oc.detail}\n")
                else:
                    done[oc.item] = keys[oc.item]
                rep.step(oc.status)
                bar.update(1)
        bar.close()
        rep.seconds = time.perf_counter() - t0
        if map_dir is not None:
            self._write_map_index(map_dir, {it: done[it] for it in done})
            self.report.map_dirs[name] = map_dir
        self.keys[name] = done
        return rep

    def _map(self, tasks, params, threads, parallel):
        cache_root = str(self.cache.root)
        use_dask = self.options.scheduler.startswith("dask://")
        if not use_dask and (self.options.jobs <= 1 or len(tasks) <= 1):
            for t in tasks:
                yield _execute(t, params, cache_root, threads)
            return
        from joblib import Parallel, delayed

        n_jobs = -1 if use_dask else self.options.jobs
        runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
        yield from runner(delayed(_execute)(t, params, cache_root, threads) for t in tasks)

    def _refresh_map_pngs(self, name, map_dir: Path, done: dict[Any, str]):
        """Rewrite the PNG of a cached item when it was last written from another key."""
        index = self._read_map_index(map_dir)
        for item, key in done.items():
            if not isinstance(item, str) or item == POOL_ITEM:
                continue
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
        entries = {it: k for it, k in done.items() if isinstance(it, str) and it != POOL_ITEM}
        atomic_write(map_dir / ".keys.json", lambda fh: fh.write(json.dumps(entries, indent=1).encode()))

    def run(self, names) -> RunReport:
        self.out.mkdir(parents=True, exist_ok=True)
        order, notices = resolve_stages(names, self.params, self.options)
        for n in notices:
            self.options.echo(f"notice: {n}")
        unknown_force = [f for f in self.options.force if f not in order]
        if unknown_force:
            raise RunError(f"--force {', '.join(unknown_force)}: not among the stages of this run ({', '.join(order)})")
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

    def _run_all(self, order):
        for name in order:
            self.report.stages.append(self.run_stage(name, None))

    def _write_summary(self):
        data = {
            "pool": str(self.report.pool_dir),
            "stages": [dataclasses.asdict(s) for s in self.report.stages],
            "problems": self.report.problems,
            "params": {s.name: registry.params_as_dict(self.params[s.name]) for s in self.report.stages},
        }
        atomic_write(self.out / "run_summary.json", lambda fh: fh.write(json.dumps(data, indent=2).encode()))


def run(names, params: dict[str, Any], options: RunOptions) -> RunReport:
    """Run the named stages (``"all"`` or a list) and what they need; see :class:`Runner`."""
    return Runner(params, options).run(names)
