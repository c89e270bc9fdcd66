"""``python -m pipeline``: run stages over an image pool, train models, list stages and models,
manage the cache, evaluate maps.

User errors (bad folder, unknown stage or parameter, bad value, unusable model file) print one line
each (``error: ...``) and exit with code 2; a run exits with 1 only when nothing could be done (the
reason is printed), and otherwise with 0 after a summary of what was skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import shutil
import sys
import time
import typing
from pathlib import Path

EXAMPLES = """\
examples:
  python -m pipeline run                                   # every stage on the embedded demo pool
  python -m pipeline run --stages gradsal --pool imgs/ --gt masks/ --out out/
  python -m pipeline run --stages all --priors maps/ --set gradsal.steps=5 --jobs 2
  python -m pipeline run --stages gradsal --force gradsal  # recompute one stage
  python -m pipeline train lps --pool imgs/ --gt masks/ --out train_out/
  python -m pipeline run --stages lps --set lps.model=train_out/models/lps.npz --pool other/
  python -m pipeline stages                                # stages, inputs, parameters
  python -m pipeline models                                # models shipped with the package
  python -m pipeline cache ls --out out/
  python -m pipeline bench --quick                         # the results board on a subset of ../shared/data/sod
"""


def _run_defaults():
    from pipeline.runner import RunOptions

    return RunOptions()


def _add_out(p: argparse.ArgumentParser):
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"output folder; the cache lives in DIR/.cache (default: {_run_defaults().out})")


def _add_params(p: argparse.ArgumentParser):
    p.add_argument("--config", metavar="FILE.toml", help="TOML file: one [stage] table of parameters each, optional [run] table")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.PARAM=VALUE",
                   help="override one parameter (repeatable); see `python -m pipeline stages`")


def _add_pool(p: argparse.ArgumentParser, *, gt_help: str):
    p.add_argument("--pool", metavar="DIR", help="folder of images (jpg, png, bmp, tif); default: the demo pool")
    p.add_argument("--gt", metavar="DIR", help=gt_help)
    p.add_argument("--priors", metavar="DIR", help="saliency maps from any detector, matched by stem (stage 'priors')")


def _add_resources(p: argparse.ArgumentParser):
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="parallel worker processes (default: the number of CPU cores)")
    p.add_argument("--scheduler", default=None, metavar="loky|dask://HOST:PORT", help="where per-item work runs (default: loky, local processes)")
    p.add_argument("--device", default=None, metavar="auto|cpu|cuda", help="where torch stages run (default: auto, CUDA when present); never changes a cache key")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="compute threads per worker (default: the cores divided among the workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser(*, evaluate_arguments: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Superpixel saliency pipeline: cached stages over an image pool.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run stages (and whatever they need that is not cached) over an image pool",
        description=(
            "Run the named stages and every stage they depend on. Items already in the cache are "
            "reused; a changed parameter recomputes only the stages whose results depend on it. "
            "Without --pool the embedded demo pool (scikit-image's sample photographs) is written "
            "to OUT/demo_pool and used. Map-producing stages write OUT/STAGE/STEM.png; with --gt the "
            "maps are scored and OUT/evaluation/ gets metrics and plots."
        ),
    )
    run.add_argument("--stages", default="all", metavar="all|NAME[,NAME...]", help="stages to run (default: all)")
    _add_pool(run, gt_help="ground-truth masks matched by file stem (stage 'gt'); enables evaluation")
    _add_out(run)
    _add_params(run)
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="recompute this stage even if cached (repeatable, or comma-separated)")
    _add_resources(run)
    run.add_argument("--eval-rows", type=int, default=6, metavar="N", help="rows of the evaluation contact sheet (default: 6)")

    train = sub.add_parser(
        "train",
        help="train a learned stage's model on a pool and write the model file and its card",
        description=(
            "Fit the model of a learned stage (relearn, lps, ldps, arn, ...) on a pool: runs the "
            "stage's trainer with everything it needs (cached like any stage), then writes "
            "OUT/models/STAGE.npz (or --model-out) with a model card (STAGE.card.json and STAGE.md: "
            "data, command, seed, duration, validation metrics). Use the file on another pool with "
            "--set STAGE.model=PATH. With --val-pool and --val-gt the card also holds the stage's "
            "metrics on that pool, computed by this package's evaluation."
        ),
    )
    train.add_argument("stage", metavar="STAGE", help="the learned stage whose model to train")
    _add_pool(train, gt_help="ground-truth masks matched by file stem (needed by supervised trainers)")
    _add_out(train)
    _add_params(train)
    train.add_argument("--model-out", metavar="FILE.npz", help="where to write the model (default: OUT/models/STAGE.npz)")
    train.add_argument("--val-pool", metavar="DIR", help="validation images: the card gets the stage's metrics on them")
    train.add_argument("--val-gt", metavar="DIR", help="validation masks (with --val-pool)")
    train.add_argument("--val-priors", metavar="DIR", help="validation priors, when the stage promotes the user's --priors")
    _add_resources(train)

    stages = sub.add_parser("stages", help="list the registered stages, their inputs and parameters with defaults")
    _add_params(stages)

    sub.add_parser("models", help="list the models shipped with the package (name, stage, size, card)")

    cache = sub.add_parser("cache", help="show (ls) or empty (clear) the cache of an output folder")
    cache.add_argument("action", choices=["ls", "clear"], help="ls: artifacts per stage; clear: delete them")
    cache.add_argument("--stage", action="append", default=[], metavar="STAGE", help="clear only this stage (repeatable)")
    _add_out(cache)

    from pipeline.board import add_arguments as add_bench_arguments

    bench = sub.add_parser("bench", help="the results board: every detector through every promoter on ECSSD and SOD",
                           description="Write BENCHMARKS.md and benchmarks.json: the accuracy matrix per dataset, the "
                                       "papers' numbers, seconds per stage, memory, PR curves and contact sheets.")
    add_bench_arguments(bench)

    evaluate = sub.add_parser(
        "evaluate",
        help="score folders of saliency maps against ground truth",
        description="Score one or more folders of maps (matched to --gt by stem) and write metrics and plots.",
    )
    if evaluate_arguments:  # imported only when needed: the metrics stack is slow to import
        from pipeline.evaluation.cli import add_arguments

        add_arguments(evaluate)
    return parser


def _type_name(tp) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def cmd_stages(args) -> int:
    from pipeline import registry
    from pipeline.config import build_params

    params, _ = build_params(args.config, args.set)
    for name, stage in registry.all_stages().items():
        p = params[name]
        deps = ", ".join(stage.all_inputs(p)) or "-"
        flags = [stage.granularity]
        if stage.produces_map:
            flags.append("map")
        if stage.learned:
            flags.append(f"learned, trained by {stage.learned.trainer}")
        if stage.run_input:
            flags.append(f"needs --{stage.run_input}")
        if stage.resources.wants_gpu:
            flags.append("uses the GPU when present")
        print(f"{name}  (v{stage.version}; {'; '.join(flags)})")
        print(f"    {stage.doc}")
        print(f"    inputs: {deps}")
        hints = typing.get_type_hints(stage.params)
        docs = registry.param_docs(stage.params)
        fields = dataclasses.fields(stage.params)
        if not fields:
            print("    parameters: none")
        for f in fields:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            value = getattr(p, f.name)
            shown = repr(value) if value == default else f"{value!r} (default {default!r})"
            doc = f"  -- {docs[f.name]}" if docs.get(f.name) else ""
            print(f"    {name}.{f.name} : {_type_name(hints[f.name])} = {shown}{doc}")
        print()
    for old, new in sorted(registry.ALIASES.items()):
        print(f"{old}: old name of {new} (works until the next release)")
    return 0


def cmd_models(args) -> int:
    from pipeline.models import shipped_models

    entries = shipped_models()
    if not entries:
        print("no model is shipped with this installation")
        return 0
    for name, e in sorted(entries.items()):
        print(f"{name}  (stage {e.stage}; {e.size / 1024:.0f} KiB; sha256 {e.sha256[:12]}...)")
        print(f"    file: {e.path}")
        if e.card is not None:
            print(f"    card: {e.card}")
    return 0


def cmd_cache(args) -> int:
    from pipeline.cache import Cache

    cache = Cache(args.out or _run_defaults().out)
    if args.action == "ls":
        entries = cache.entries()
        if not entries:
            print(f"cache {cache.root} is empty")
            return 0
        total = 0
        print(f"{'stage':<16} {'items':>7} {'MiB':>9}")
        for stage, (count, size) in entries.items():
            total += size
            print(f"{stage:<16} {count:>7} {size / 2**20:>9.1f}")
        print(f"{'total':<16} {sum(c for c, _ in entries.values()):>7} {total / 2**20:>9.1f}   ({cache.root})")
        return 0
    removed = cache.clear(args.stage or None)
    print(f"removed {removed} cached items from {cache.root}")
    return 0


def _echo(line: str) -> None:
    """One-line notices on stderr, printed above any progress bar instead of through it."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _options(args, run_options: dict, *, force=()):
    """RunOptions from the flags, then the config's [run] table, then RunOptions' own defaults."""
    from pipeline.runner import RunOptions

    defaults = RunOptions()

    def pick(flag, key):
        return flag if flag is not None else run_options.get(key, getattr(defaults, key))

    jobs = pick(args.jobs, "jobs")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs: expected a positive integer, got {jobs!r}")
    threads = pick(args.threads, "threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads: expected a positive integer, got {threads!r}")

    def as_path(v):
        return Path(v) if v is not None else None

    return RunOptions(
        out=Path(pick(args.out, "out")),
        pool=as_path(pick(args.pool, "pool")),
        gt=as_path(pick(args.gt, "gt")),
        priors=as_path(pick(args.priors, "priors")),
        jobs=jobs,
        scheduler=pick(args.scheduler, "scheduler"),
        device=pick(args.device, "device"),
        threads=threads,
        force=tuple(force),
        progress=not args.no_progress,
        echo=_echo,
    )


def _print_outcome(report, options) -> None:
    print()
    print(report.table())
    if report.computed == 0 and not report.problems:
        print("nothing to compute: every item came from the cache")
    if report.problems:
        log = options.out / "errors.log"
        print(f"{len(report.problems)} problem(s), listed above"
              + (f"; details of unexpected errors in {log}" if log.exists() else ""))
    reason = report.failure_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)


def cmd_run(args) -> int:
    from pipeline.config import build_params
    from pipeline.runner import run

    notices: list[str] = []
    params, run_options = build_params(args.config, args.set, notices)
    for n in notices:
        _echo(f"notice: {n}")
    names = "all" if args.stages.strip() == "all" else [s.strip() for s in args.stages.split(",") if s.strip()]
    if not names:
        raise ValueError("--stages: expected all or stage names, got nothing")
    force = [s.strip() for f in args.force for s in f.split(",") if s.strip()]
    options = _options(args, run_options, force=force)
    report = run(names, params, options)
    _print_outcome(report, options)
    if options.gt is not None and report.map_dirs:
        _evaluate_run(report, options, args.eval_rows)
    print(f"outputs in {options.out}")
    return 0 if report.succeeded else 1


def _evaluate_run(report, options, n_rows: int, out_dir: Path | None = None):
    try:
        from pipeline.evaluation import evaluate_run
    except ImportError:
        print("evaluation is not available in this installation", file=sys.stderr)
        return None
    out_dir = out_dir or options.out / "evaluation"
    result = evaluate_run(
        map_dirs=report.map_dirs,
        gt_dir=options.gt,
        image_dir=report.pool_dir,
        out_dir=out_dir,
        n_rows=n_rows,
        echo=options.echo,
        stems=sorted({s for items in report.map_items.values() for s in items} | set(_pool_stems(report))),
    )
    print(f"evaluation written to {out_dir}")
    return result


def _pool_stems(report) -> list[str]:
    from pipeline.pool import IMAGE_EXTENSIONS, discover

    if report.pool_dir is None:
        return []
    return list(discover(report.pool_dir, IMAGE_EXTENSIONS).files)


def cmd_train(args) -> int:
    from pipeline import registry
    from pipeline.config import build_params
    from pipeline.runner import RunError, run

    stage = registry.get(args.stage)
    if stage.learned is None:
        learned = sorted(n for n, s in registry.all_stages().items() if s.learned)
        raise RunError(f"train {args.stage}: not a learned stage (learned stages: {', '.join(learned) or 'none'})")
    notices: list[str] = []
    params, run_options = build_params(args.config, [*args.set, f"{stage.name}.{stage.learned.param}=train"], notices)
    for n in notices:
        _echo(f"notice: {n}")
    options = _options(args, run_options)
    trainer = stage.learned.trainer
    t0 = time.perf_counter()
    report = run([trainer], params, options)
    _print_outcome(report, options)
    rep = report.stage(trainer)
    if rep is None or not rep.produced:
        print(f"error: {trainer} produced no model (see the problems above)", file=sys.stderr)
        return 1
    model_src = _trainer_artifact(options.out, trainer)
    target = Path(args.model_out) if args.model_out else options.out / "models" / f"{stage.name}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_src, target)
    card = _model_card(stage, params, options, args, target, rep, time.perf_counter() - t0)
    if args.val_pool:
        card["validation_pool"] = _validate(stage, params, args, target)
    _write_card(card, target)
    print(f"model written to {target}; card {target.with_suffix('.card.json')} and {target.with_suffix('.md')}")
    return 0


def _trainer_artifact(out: Path, trainer: str) -> Path:
    """The cache file of the trainer's result in the run just made (its key is in run_summary.json)."""
    from pipeline.cache import Cache

    summary = json.loads((out / "run_summary.json").read_text())
    return Cache(out).path(trainer, summary["pool_keys"][trainer])


def _model_card(stage, params, options, args, target: Path, rep, wall: float) -> dict:
    from pipeline import models, registry
    from pipeline.cache import file_digest

    meta = models.read_meta(target)
    trainer_params = registry.params_as_dict(params[stage.learned.trainer])
    training = meta.get("training", {})
    return {
        "stage": stage.name,
        "file": target.name,
        "sha256": file_digest(target),
        "bytes": target.stat().st_size,
        "command": "python -m pipeline " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "",
        "data": {
            "pool": str(options.pool) if options.pool else "embedded demo pool",
            "gt": str(options.gt) if options.gt else None,
            "priors": str(options.priors) if options.priors else None,
            **training.get("data", {}),
        },
        "seed": trainer_params.get("seed"),
        "trainer": stage.learned.trainer,
        "trainer_params": trainer_params,
        "hparams": meta.get("hparams", {}),
        "duration_s": training.get("seconds", rep.seconds if rep.computed else None),
        "wall_s_this_command": round(wall, 1),
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, {_cores()} cores, device {options.device}",
        "validation": meta.get("validation", {}),
        "created": time.strftime("%Y-%m-%d"),
    }


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _validate(stage, params, args, model_path: Path) -> dict:
    """Run the learned stage with the new model on the validation pool and score it."""
    from pipeline.config import build_params
    from pipeline.runner import RunOptions, run

    if not args.val_gt:
        raise ValueError("--val-pool needs --val-gt (the masks to score against)")
    overrides = [*args.set, f"{stage.name}.{stage.learned.param}={model_path}"]
    vparams, _ = build_params(args.config, overrides)
    out = Path(args.out or _run_defaults().out) / "validation"
    options = RunOptions(out=out, pool=Path(args.val_pool), gt=Path(args.val_gt),
                         priors=Path(args.val_priors) if args.val_priors else None,
                         jobs=args.jobs or RunOptions().jobs, device=args.device or "auto",
                         progress=not args.no_progress, echo=_echo)
    report = run([stage.name], vparams, options)
    result = _evaluate_run(report, options, 0, out_dir=out / "evaluation")
    if result is None:
        return {}
    return {"pool": str(args.val_pool), "gt": str(args.val_gt),
            "metrics": {name: {k: round(float(v), 4) for k, v in result.pooled[name].items()
                               if isinstance(v, (int, float)) and v == v}
                        for name in result.methods}}


def _write_card(card: dict, target: Path) -> None:
    from pipeline.cache import atomic_write

    atomic_write(target.with_suffix(".card.json"), lambda fh: fh.write((json.dumps(card, indent=2, default=str) + "\n").encode()))
    atomic_write(target.with_suffix(".md"), lambda fh: fh.write(card_markdown(card).encode()))


def card_markdown(card: dict) -> str:
    """The model card as markdown."""
    lines = [f"# Model card: `{card['stage']}` model `{card['file']}`", ""]
    rows = [
        ("stage", card["stage"]), ("file", f"{card['file']} ({card['bytes']} bytes)"),
        ("sha256", card["sha256"]), ("trainer", card.get("trainer")), ("seed", card.get("seed")),
        ("training time (s)", card.get("duration_s")), ("machine", card.get("machine")),
        ("created", card.get("created")),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Command", "", "```", card.get("command", ""), "```", "", "## Data", ""]
    lines += [f"- {k}: {v}" for k, v in card.get("data", {}).items()]
    lines += ["", "## Hyper-parameters", "", "```json", json.dumps(card.get("hparams", {}), indent=2), "```"]
    lines += ["", "## Trainer parameters", "", "```json", json.dumps(card.get("trainer_params", {}), indent=2), "```"]
    if card.get("validation"):
        lines += ["", "## Validation (recorded by the trainer)", "", "```json",
                  json.dumps(card["validation"], indent=2), "```"]
    vp = card.get("validation_pool")
    if vp:
        lines += ["", f"## Validation on {vp['pool']} (this package's evaluation)", ""]
        methods = vp.get("metrics", {})
        keys = sorted({k for m in methods.values() for k in m})
        if methods:
            lines += ["| map | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
            for name, m in methods.items():
                lines.append(f"| {name} | " + " | ".join(f"{m.get(k, '')}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def cmd_bench(args) -> int:
    from pipeline.board import main

    return main(args)


def cmd_evaluate(args) -> int:
    from pipeline.evaluation.cli import main

    return main(args)


def main(argv=None) -> int:
    from pipeline.config import ConfigError
    from pipeline.models import ModelFileError
    from pipeline.pool import BadInput
    from pipeline.registry import StageLoadError
    from pipeline.runner import RunError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(evaluate_arguments="evaluate" in argv)
    args = parser.parse_args(argv)
    commands = {"run": cmd_run, "train": cmd_train, "stages": cmd_stages, "models": cmd_models,
                "cache": cmd_cache, "evaluate": cmd_evaluate, "bench": cmd_bench}
    try:
        return commands[args.command](args)
    except (ConfigError, RunError, BadInput, ModelFileError, StageLoadError, ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        for line in str(msg).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished items are kept in the cache; run again to resume", file=sys.stderr)
        return 130
