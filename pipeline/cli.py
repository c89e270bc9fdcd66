"""``python -m pipeline``: run stages over an image pool, list stages, manage the cache, evaluate maps.

User errors (bad folder, unknown stage or parameter, bad value) print one line and exit with code 2;
a run exits with 1 only when nothing could be done, and otherwise with 0 after a summary of what was
skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path

EXAMPLES = """\
examples:
  python -m pipeline run                                   # every stage on the embedded demo pool
  python -m pipeline run --stages gradsal --pool imgs/ --gt masks/ --out out/
  python -m pipeline run --stages all --priors maps/ --set gradsal.steps=5 --jobs 2
  python -m pipeline run --stages gradsal --force gradsal  # recompute one stage
  python -m pipeline stages                                # stages, inputs, parameters
  python -m pipeline cache ls --out out/
"""


def _add_out(p: argparse.ArgumentParser):
    p.add_argument("--out", default="out", metavar="DIR", help="output folder; the cache lives in DIR/.cache (default: out)")


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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--stages", default="all", metavar="all|NAME[,NAME...]", help="stages to run (default: all)")
    run.add_argument("--pool", metavar="DIR", help="folder of images (jpg, png, bmp, tif); default: the demo pool")
    run.add_argument("--gt", metavar="DIR", help="ground-truth masks matched by file stem; enables evaluation")
    run.add_argument("--priors", metavar="DIR", help="saliency maps from any detector, matched by stem (stage 'priors')")
    _add_out(run)
    run.add_argument("--config", metavar="FILE.toml", help="TOML file: one [stage] table of parameters each, optional [run] table")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.PARAM=VALUE",
        help="override one parameter (repeatable); see `python -m pipeline stages`",
    )
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="recompute this stage even if cached (repeatable, or comma-separated)")
    run.add_argument("--jobs", type=int, default=None, metavar="N", help="parallel worker processes (default: the number of CPU cores)")
    run.add_argument("--scheduler", default=None, metavar="loky|dask://HOST:PORT", help="where per-item work runs (default: loky, local processes)")
    run.add_argument("--eval-rows", type=int, default=6, metavar="N", help="rows of the evaluation contact sheet (default: 6)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    stages = sub.add_parser("stages", help="list the registered stages, their inputs and parameters with defaults")
    stages.add_argument("--config", metavar="FILE.toml", help="show parameter values from this file instead of the defaults")
    stages.add_argument("--set", action="append", default=[], metavar="STAGE.PARAM=VALUE", help="show values with this override")

    cache = sub.add_parser("cache", help="show (ls) or empty (clear) the cache of an output folder")
    cache.add_argument("action", choices=["ls", "clear"], help="ls: artifacts per stage; clear: delete them")
    cache.add_argument("--stage", action="append", default=[], metavar="STAGE", help="clear only this stage (repeatable)")
    _add_out(cache)

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
        if stage.run_input:
            flags.append(f"needs --{stage.run_input}")
        print(f"{name}  (v{stage.version}; {'; '.join(flags)})")
        print(f"    {stage.doc}")
        print(f"    inputs: {deps}")
        hints = typing.get_type_hints(stage.params)
        fields = dataclasses.fields(stage.params)
        if not fields:
            print("    parameters: none")
        for f in fields:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            value = getattr(p, f.name)
            shown = repr(value) if value == default else f"{value!r} (default {default!r})"
            print(f"    {name}.{f.name} : {_type_name(hints[f.name])} = {shown}")
        print()
    return 0


def cmd_cache(args) -> int:
    from pipeline.cache import Cache

    cache = Cache(args.out)
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


def cmd_run(args) -> int:
    from pipeline.config import build_params
    from pipeline.runner import RunOptions, run

    params, run_options = build_params(args.config, args.set)

    def pick(flag, key, default=None):
        return flag if flag is not None else run_options.get(key, default)

    jobs = pick(args.jobs, "jobs", os.cpu_count() or 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    names = "all" if args.stages.strip() == "all" else [s.strip() for s in args.stages.split(",") if s.strip()]
    if not names:
        raise ValueError("--stages is empty")
    force = tuple(s.strip() for f in args.force for s in f.split(",") if s.strip())

    def as_path(v):
        return Path(v) if v is not None else None

    options = RunOptions(
        out=Path(pick(args.out if args.out != "out" else None, "out", "out")),
        pool=as_path(pick(args.pool, "pool")),
        gt=as_path(pick(args.gt, "gt")),
        priors=as_path(pick(args.priors, "priors")),
        jobs=jobs,
        scheduler=pick(args.scheduler, "scheduler", "loky"),
        force=force,
        progress=not args.no_progress,
        echo=_echo,
    )
    report = run(names, params, options)
    print()
    print(report.table())
    if report.computed == 0 and not report.problems:
        print("nothing to compute: every item came from the cache")
    if report.problems:
        print(f"{len(report.problems)} problem(s), listed above; details of unexpected errors in {options.out / 'errors.log'}"
              if (options.out / "errors.log").exists() else f"{len(report.problems)} problem(s), listed above")
    if options.gt is not None and report.map_dirs:
        _evaluate_run(report, options, args.eval_rows)
    print(f"outputs in {options.out}")
    return 0 if report.succeeded else 1


def _evaluate_run(report, options, n_rows: int):
    try:
        from pipeline.evaluation import evaluate_run
    except ImportError:
        print("evaluation is not available in this installation", file=sys.stderr)
        return
    evaluate_run(
        map_dirs=report.map_dirs,
        gt_dir=options.gt,
        image_dir=report.pool_dir,
        out_dir=options.out / "evaluation",
        n_rows=n_rows,
        echo=options.echo,
    )
    print(f"evaluation written to {options.out / 'evaluation'}")


def cmd_evaluate(args) -> int:
    from pipeline.evaluation.cli import main

    return main(args)


def main(argv=None) -> int:
    from pipeline.config import ConfigError
    from pipeline.pool import BadInput
    from pipeline.runner import RunError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(evaluate_arguments="evaluate" in argv)
    args = parser.parse_args(argv)
    commands = {"run": cmd_run, "stages": cmd_stages, "cache": cmd_cache, "evaluate": cmd_evaluate}
    try:
        return commands[args.command](args)
    except (ConfigError, RunError, BadInput, ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished items are kept in the cache; run again to resume", file=sys.stderr)
        return 130
