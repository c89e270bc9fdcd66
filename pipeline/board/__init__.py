"""The results board: ``python -m pipeline bench [--data DIR] [--out DIR] [--quick] [--train]``.

Runs every detector through every promoter on the evaluation datasets and writes
``OUT/BENCHMARKS.md`` and ``OUT/benchmarks.json``, with one PR-curve figure and one contact sheet
per dataset in ``OUT/board/`` (the pipeline's outputs, caches and logs go to ``--work``).

Data (``--data``, default ``../shared/data/sod``; any folder laid out the same way works)::

    DIR/ECSSD/images/  gt/  test.txt  train.txt   evaluated on test; train validates --train
    DIR/SOD/images/    gt/  test.txt  priors/<method>/   evaluated; each published method is a row
    DIR/DUTS-TR-1k/images/  gt/  train.txt        the training pool of --train

Images, masks and maps are matched by file stem; a split file lists stems one per line (without
it, every image that has a mask). A dataset that is absent is named on the board and skipped.

The matrix (one per dataset)
    Rows are priors: the detector stages (``u2netp``, ``contrast``, ``gradsal``, ``arn``) and the
    dataset's published maps (stage ``priors`` with ``--priors priors/<method>``). Columns are
    ``raw`` (the prior's own maps) and one per promoter (``crf``, the dense-CRF baseline, then
    ``relearn``, ``lps``, ``ldps``), each run with ``--set PROMOTER.prior=ROW`` (``=priors`` for a
    published row). A cell holds five numbers, top to bottom: max F, adaptive F, MAE, S-measure,
    max E (:mod:`pipeline.evaluation`). A promoter cell gives each number's change against the raw
    cell of its row, and marks a change for the worse (as shown, three decimals) with ``▼``.
What is built
    Decided at run time, never from a list: a stage that is not in the registry (built-in stages
    and ``PIPELINE_PLUGINS``), that produces no map, that (as a promoter) has no ``prior``
    parameter, or whose ``model`` does not resolve (:func:`pipeline.models.resolve`: a shipped
    name, a file, ``--set STAGE.model=...``) is a column or row of cells marked *not built*, with
    the reason. When ``relearn`` lands (stage, ``prior`` parameter, shipped model) it is on the
    board with no change here. A run or stage that failed is *failed*, with its log.
Models
    By default the shipped ones (``python -m pipeline models``). ``--train`` first fits every
    learned stage of the board on the training pool with ``python -m pipeline train STAGE`` (the
    stage's default prior, ECSSD train as the validation pool) and uses those files instead.
How it runs
    One output folder per dataset (``WORK/<dataset>-<split>/run``, ``--work`` default
    ``out/bench``), so stages shared by rows (``pool``, ``deep_features``, the detectors) are
    computed once and reruns resume from the cache. Per row one
    ``python -m pipeline run --stages ROW,crf,lps,... --set crf.prior=ROW ... --pool --gt --out``
    through :func:`pipeline.cli.main` in this process (log in ``WORK/logs/``); the metrics are read
    from the run's ``evaluation/metrics.json``, seconds per stage from its ``run_summary.json``,
    and after the rows the first row runs again, all cached, timed as a whole. The contact
    sheet's maps are read back from the cache by the keys of each map folder's ``.keys.json``.
Quick
    ``--quick``: 8 images per dataset (a seeded subset), the published priors that the papers
    report (Amulet, DSS, BSCA), 16 training images with ``--train``; written to
    ``out/board-quick`` unless ``--out`` says otherwise. ``--limit``, ``--detectors``,
    ``--promoters``, ``--published`` and ``--datasets`` choose any other subset.
Progress
    The board's files are written again after every dataset, so a long board stopped part-way
    keeps the datasets it finished; one it did not reach is named "not run yet".

The pure parts are :mod:`pipeline.board.matrix` (cells, changes, marks, tables),
:mod:`pipeline.board.papers` (the papers' transcribed numbers), :mod:`pipeline.board.figures` and
:mod:`pipeline.board.report`; :mod:`pipeline.board.runs` drives the pipeline.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

DETECTORS = ("u2netp", "contrast", "gradsal", "arn")
PROMOTERS = ("crf", "relearn", "lps", "ldps")
EVALUATION = (("ECSSD", "test"), ("SOD", "test"))
TRAINING = ("DUTS-TR-1k", "train")
VALIDATION = ("ECSSD", "train")
DEFAULT_DATASETS = ",".join(name for name, _ in EVALUATION)
DEFAULT_DATA = "../shared/data/sod"
DEFAULT_OUT, QUICK_OUT, DEFAULT_WORK = ".", "out/board-quick", "out/bench"
QUICK = {"limit": 8, "train_limit": 16, "published": ("Amulet", "DSS", "BSCA")}
CONTACT_ROWS = 8
PUBLISHED_STAGE = "priors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` options (kept free of heavy imports: the CLI parser builds them every time)."""
    parser.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                        help=f"datasets folder laid out like {DEFAULT_DATA} (default: that)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"where BENCHMARKS.md, benchmarks.json and the figures (board/) go "
                             f"(default: {DEFAULT_OUT}; with --quick {QUICK_OUT})")
    parser.add_argument("--work", default=DEFAULT_WORK, metavar="DIR",
                        help=f"pipeline outputs and caches (one folder per dataset) and the logs (default: {DEFAULT_WORK})")
    parser.add_argument("--quick", action="store_true",
                        help=f"a subset: {QUICK['limit']} images per dataset, published priors "
                             f"{', '.join(QUICK['published'])}")
    parser.add_argument("--train", action="store_true",
                        help=f"fit the learned stages on {TRAINING[0]} ({VALIDATION[0]} {VALIDATION[1]} validates) "
                             "instead of using the shipped models")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images per dataset")
    parser.add_argument("--datasets", default=DEFAULT_DATASETS, metavar="LIST",
                        help=f"evaluation datasets (default: {DEFAULT_DATASETS}); the others "
                             "are named on the board as not selected")
    parser.add_argument("--detectors", default=",".join(DETECTORS), metavar="LIST",
                        help=f"detector stages, the rows (default: {','.join(DETECTORS)})")
    parser.add_argument("--promoters", default=",".join(PROMOTERS), metavar="LIST",
                        help=f"promoter stages, the columns (default: {','.join(PROMOTERS)})")
    parser.add_argument("--published", default=None, metavar="LIST",
                        help="published methods of priors/ to include (default: all; with --quick: "
                             f"{','.join(QUICK['published'])})")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.PARAM=VALUE",
                        help="parameter override passed to every run (repeatable)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes of each run (default: the number of CPU cores)")
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="device of the torch stages")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image subsets (default 0)")


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


# --------------------------------------------------------------------------- where it ran


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    """CPU model and cores, memory, GPU (through torch), platform and versions."""
    import torch

    gpu = "none (CUDA not available to torch)"
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(), "gpu": gpu,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


def commit() -> str:
    """The checkout's commit (``+ uncommitted changes`` when tracked files differ from it)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if dirty else "")


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- the board


class Board:
    """One board: options, what is built, and the record that becomes benchmarks.json."""

    def __init__(self, args):
        from pipeline.board import papers

        self.args = args
        self.quick = bool(args.quick)
        self.data = Path(args.data)
        self.out = Path(args.out or (QUICK_OUT if self.quick else DEFAULT_OUT))
        self.work = Path(args.work)
        self.limit = args.limit if args.limit is not None else (QUICK["limit"] if self.quick else None)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit: expected a positive integer, got {self.limit}")
        published = _names(args.published) if args.published is not None else (
            list(QUICK["published"]) if self.quick else None)
        self.published = tuple(published) if published is not None else None
        self.detectors = _names(args.detectors)
        self.promoters = _names(args.promoters)
        if not self.promoters and not self.detectors and self.published == ():
            raise ValueError("nothing to put on the board: no detector, no promoter, no published prior")
        self.jobs = args.jobs or os.cpu_count() or 1
        if self.jobs < 1:
            raise ValueError(f"--jobs: expected a positive integer, got {self.jobs}")
        self.sets = list(args.set)
        self.datasets = _names(args.datasets)
        known = [n for n, _ in EVALUATION]
        unknown = [n for n in self.datasets if n not in known]
        if unknown or not self.datasets:
            raise ValueError(f"--datasets: expected some of {', '.join(known)}, got {args.datasets!r}")
        self.columns = ["raw", *self.promoters]
        self.record: dict = {
            "quick": self.quick, "command": self.command(), "options": {
                "data": str(self.data), "datasets": self.datasets, "limit": self.limit,
                "published": list(self.published or []) or None,
                "jobs": self.jobs, "device": args.device, "sets": self.sets, "train": bool(args.train),
                "seed": args.seed},
            "columns": self.columns, "stages": {}, "datasets": {},
            "papers_without_comparison": [{"paper": p, "why": w} for p, w in papers.WITHOUT_COMPARISON],
        }

    def command(self) -> str:
        a = self.args
        parts = []
        if a.data != DEFAULT_DATA:
            parts += ["--data", a.data]
        if a.out:
            parts += ["--out", a.out]
        if a.work != DEFAULT_WORK:
            parts += ["--work", a.work]
        parts += [flag for flag, on in (("--quick", a.quick), ("--train", a.train)) if on]
        for flag, value, default in (("--limit", a.limit, None),
                                     ("--datasets", a.datasets, DEFAULT_DATASETS),
                                     ("--detectors", a.detectors, ",".join(DETECTORS)),
                                     ("--promoters", a.promoters, ",".join(PROMOTERS)),
                                     ("--published", a.published, None), ("--jobs", a.jobs, None),
                                     ("--device", a.device, "auto"), ("--seed", a.seed, 0)):
            if value != default:
                parts += [flag, str(value)]
        for s in a.set:
            parts += ["--set", s]
        return " ".join(["python -m pipeline bench", *(shlex.quote(p) for p in parts)])

    def log(self, line: str) -> None:
        print(line, flush=True)

    # ---- what is built
    def params(self):
        from pipeline.config import build_params

        return build_params(None, self.sets)[0]

    def check_stages(self) -> None:
        from pipeline.board import runs

        params = self.params()
        for role, names in (("detector", self.detectors), ("promoter", self.promoters)):
            for name in names:
                reason = runs.availability(name, params, promoter=role == "promoter")
                trained = self.record.get("training", {}).get(name)
                if trained is not None and trained["status"] != "ok":
                    reason = f"training failed ({trained['reason']}; `{trained['log']}`)"
                self.record["stages"][name] = {
                    "role": role, "status": "ok" if reason is None else "not built", "reason": reason,
                    "model": runs.model_record(name, params) if reason is None else None}

    def built(self, name: str) -> bool:
        return self.record["stages"].get(name, {}).get("status") == "ok"

    # ---- training
    def train(self) -> None:
        """``python -m pipeline train STAGE`` for each learned stage of the board; their files
        replace the shipped models through ``--set STAGE.model=FILE``."""
        from pipeline import registry
        from pipeline.board import runs

        self.record["training"] = {}
        learned = [n for n in dict.fromkeys([*self.detectors, *self.promoters])
                   if n in registry.all_stages() and registry.get(n).learned is not None]
        if not learned:
            return
        limit = QUICK["train_limit"] if self.quick else self.limit
        train = runs.find_dataset(self.data, *TRAINING, limit=limit, seed=self.args.seed, published=())
        val = runs.find_dataset(self.data, *VALIDATION, limit=limit, seed=self.args.seed, published=())
        for name in learned:
            log = self.work / "logs" / f"train-{name}.log"
            entry = {"status": "failed", "wall_s": 0.0, "log": str(log)}
            self.record["training"][name] = entry
            if isinstance(train, str):
                entry["reason"] = f"no training pool: {train}"
                continue
            pool = runs.link_pool(train, self.work / f"{TRAINING[0]}-{TRAINING[1]}" / "pool")
            folder = self.work / "train"
            argv = ["train", name, "--pool", str(pool["images"]), "--gt", str(pool["gt"]), "--out", str(folder),
                    "--jobs", str(self.jobs), "--device", self.args.device, "--no-progress", *self._set_args()]
            if not isinstance(val, str):
                vpool = runs.link_pool(val, self.work / f"{VALIDATION[0]}-{VALIDATION[1]}" / "pool")
                argv += ["--val-pool", str(vpool["images"]), "--val-gt", str(vpool["gt"])]
            self.log(f"[train] {name} on {train.label} ({len(train.stems)} images) ...")
            rec = runs.call_cli(argv, log)
            model = folder / "models" / f"{name}.npz"
            entry.update(wall_s=round(rec.wall_s, 1), memory=rec.memory, images=len(train.stems))
            if rec.ok and model.is_file():
                card = runs.read_json(model.with_suffix(".card.json")) or {}
                entry.update(status="ok", model=str(model), validation=card.get("validation_pool", {}))
                self.sets.append(f"{name}.{registry.get(name).learned.param}={model}")
            else:
                entry["reason"] = rec.error or "no model written"
            self.log(f"[train] {name}: {entry['status']} in {rec.wall_s:.0f} s")

    def _set_args(self) -> list[str]:
        return [a for s in self.sets for a in ("--set", s)]

    # ---- one dataset
    def rows(self, dataset) -> list[tuple[str, str, str, str | None]]:
        """(row, label, stage, published folder key) for each row of a dataset."""
        out = [(d, d, d, None) for d in self.detectors]
        out += [(m, f"{m} (published)", PUBLISHED_STAGE, f"priors/{m}") for m in dataset.published]
        return out

    def run_dataset(self, name: str, split: str) -> None:
        from pipeline.board import figures, runs
        from pipeline.board import matrix as mx
        from pipeline.board.papers import numbers_for
        from pipeline.board.report import compare

        key = f"{name}-{split}"
        ds = runs.find_dataset(self.data, name, split, limit=self.limit, seed=self.args.seed,
                               published=self.published)
        if isinstance(ds, str):
            self.record["datasets"][name] = {"label": f"{name} {split}", "status": "missing", "reason": ds}
            self.log(f"[{name}] skipped: {ds}")
            return
        pool = runs.link_pool(ds, self.work / key / "pool")
        run_out = self.work / key / "run"
        promoters = [p for p in self.promoters if self.built(p)]
        entry = {"label": ds.label, "status": "ok", "n_images": len(ds.stems), "stems": ds.stems, "rows": {}}
        self.record["datasets"][name] = entry
        times = runs.StageTimes()
        curves, per_image_mae, per_image_f, keys = {}, {}, {}, {}
        first_ok, devices = None, set()
        for row, label, stage, prior_key in self.rows(ds):
            cells = {}
            rec_row = {"kind": "published" if prior_key else "detector", "label": label, "cells": cells}
            entry["rows"][row] = rec_row
            if prior_key is None and not self.built(stage):
                reason = self.record["stages"][stage]["reason"]
                for col in self.columns:
                    cells[col] = mx.missing_cell(mx.NOT_BUILT, f"detector `{stage}`: {reason}")
                continue
            argv = ["run", "--stages", ",".join([stage, *promoters]), "--pool", str(pool["images"]),
                    "--gt", str(pool["gt"]), "--out", str(run_out), "--jobs", str(self.jobs),
                    "--device", self.args.device, "--no-progress", "--eval-rows", "0"]
            if prior_key:
                argv += ["--priors", str(pool[prior_key])]
            argv += self._set_args() + [a for p in promoters for a in ("--set", f"{p}.prior={stage}")]
            runs.clear_run_records(run_out)
            log = self.work / "logs" / f"{key}-{row}.log"
            rec = runs.call_cli(argv, log)
            rec_row["run"] = {"argv": argv, "log": str(log), "rc": rec.rc,
                              "wall_s": round(rec.wall_s, 2), "memory": rec.memory}
            summary = runs.read_json(run_out / "run_summary.json")
            times.step(summary)
            if summary:
                devices.add(summary.get("device", "?"))
            metrics = (runs.read_json(run_out / "evaluation" / "metrics.json") or {}).get("methods", {})
            why = rec.error or f"no map scored (see `{rec_row['run']['log']}`)"
            for col, st in [("raw", stage), *[(p, p) for p in promoters]]:
                m = metrics.get(st)
                if m is None:
                    cells[col] = mx.missing_cell(mx.FAILED, why)
                    continue
                values = mx.pick_metrics(m["pooled"])
                counts = {"scored": m["pooled"].get("n_images"), "of": len(ds.stems)}
                cells[col] = (mx.ok_cell(values, **counts) if col == "raw"
                              else mx.promoter_cell(cells["raw"], values, **counts))
                curves.setdefault(row, {})[col] = {"precision": m["curves"]["precision"],
                                                   "recall": m["curves"]["recall"], "max_f": values["max_f"]}
                per_image_mae[(row, col)] = {s: r["mae"] for s, r in m["per_image"].items()}
                per_image_f[(row, col)] = {s: r["max_f"] for s, r in m["per_image"].items()}
                keys[(row, col)] = (st, runs.map_keys(run_out, st))
            for col in self.columns:
                if col not in cells:
                    cells[col] = mx.missing_cell(mx.NOT_BUILT, self.record["stages"][col]["reason"])
            if rec.ok and first_ok is None:
                first_ok = (row, argv)
            self.log(f"[{name}] {row}: {rec.wall_s:.0f} s; " + ", ".join(
                f"{mx.column_label(c)} {cells[c]['status']}" for c in self.columns))
        if first_ok is not None:  # everything is cached now: the first row again, without evaluation
            row, argv = first_ok
            i = argv.index("--gt")
            rec = runs.call_cli(argv[:i] + argv[i + 2:], self.work / "logs" / f"{key}-cached.log")
            summary = runs.read_json(run_out / "run_summary.json") or {}
            entry["cached_run"] = {
                "row": row, "wall_s": round(rec.wall_s, 2), "rc": rec.rc, "images": len(ds.stems),
                "s_per_image": round(rec.wall_s / len(ds.stems), 4),
                "computed": sum(s["computed"] for s in summary.get("stages", [])),
                "stages": [s["name"] for s in summary.get("stages", [])]}
        entry["timing"] = times.get_results()
        entry["devices"] = sorted(devices)
        cells_of = {r: v["cells"] for r, v in entry["rows"].items()}
        entry["papers"] = compare(numbers_for(name), cells_of)
        figs = self.out / "board"
        entry["figures"] = {}
        if curves:
            labels = {r: v["label"] for r, v in entry["rows"].items()}
            figures.pr_figure(curves, self.columns, figs / f"pr_{name}.png", row_labels=labels,
                              title=f"{ds.label}: PR curves ({len(ds.stems)} images)")
            entry["figures"]["pr"] = f"board/pr_{name}.png"
        best = mx.best_row(cells_of)
        entry["best_row"] = best
        stems = mx.disagreement({f"{r}/{c}": v for (r, c), v in per_image_mae.items()}, CONTACT_ROWS)
        entry["contact_stems"] = stems
        if best is not None and stems:
            columns = [(r, c) for r in entry["rows"] for c in ["raw"] if (r, c) in keys]
            columns += [(best, c) for c in promoters if (best, c) in keys]
            sheet = []
            for r, c in columns:
                stage, by_stem = keys[(r, c)]
                maps = {s: runs.load_map(run_out, stage, by_stem[s]) for s in stems if s in by_stem}
                sheet.append((r if c == "raw" else f"{r} {mx.column_label(c)}", maps, per_image_f[(r, c)]))
            figures.contact_figure(sheet, stems, ds.images, ds.gts, figs / f"contact_{name}.png")
            entry["figures"]["contact"] = f"board/contact_{name}.png"


def main(args) -> int:
    """``python -m pipeline bench``: build the board; 0 when a cell was scored, 1 when none was."""
    from pipeline.board import report

    t0 = time.perf_counter()
    board = Board(args)
    rec = board.record
    rec["load_average"] = [_load(), None]
    rec["created"] = time.strftime("%Y-%m-%d %H:%M")
    rec["commit"] = commit()
    rec["machine"] = machine()
    if args.train:
        board.train()
    board.check_stages()
    for name, st in rec["stages"].items():
        if st["status"] != "ok":
            board.log(f"notice: {name}: not built: {st['reason']}")
    for name, split in EVALUATION:  # named first: a board stopped part-way says what it did not reach
        reason = "not run yet: the board stopped before it" if name in board.datasets else \
            f"not selected (--datasets {','.join(board.datasets)})"
        rec["datasets"][name] = {"label": f"{name} {split}", "status": "missing", "reason": reason}
    for name, split in EVALUATION:
        if name not in board.datasets:
            continue
        board.run_dataset(name, split)
        # written after every dataset, so that a long board stopped part-way keeps what it finished
        rec["load_average"][1] = _load()
        rec["wall_s"] = round(time.perf_counter() - t0, 1)
        written = report.write(rec, board.out)
    board.log(f"board written to {written['markdown']} and {written['json']} ({rec['wall_s']:.0f} s)")
    scored = any(c.get("status") == "ok" for ds in rec["datasets"].values()
                 for row in ds.get("rows", {}).values() for c in row["cells"].values())
    return 0 if scored else 1
