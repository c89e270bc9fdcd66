"""``python -m pipeline evaluate --pred DIR [--pred DIR ...] --gt DIR [--out DIR]``.

The lead's CLI adds these arguments to its ``evaluate`` sub-parser (:func:`add_arguments`) and calls
:func:`main`. ``python -m pipeline.evaluation`` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser``."""
    parser.add_argument("--pred", action="append", required=True, metavar="[NAME=]DIR",
                        help="folder of saliency maps matched to the masks by file stem; repeat for "
                             "several methods (named by the folder, or NAME=DIR)")
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth masks")
    parser.add_argument("--out", default="evaluation", metavar="DIR",
                        help="report folder (default: ./evaluation): metrics.json, metrics.md, "
                             "pr_curves.png, f_curves.png, contact_sheet.png")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="folder of the images, for the contact sheet's first column")
    parser.add_argument("--split", metavar="FILE", default=None,
                        help="score only the stems listed in FILE (one per line)")
    parser.add_argument("--rows", type=int, default=6, metavar="N",
                        help="sample rows in the contact sheet (default 6; 0 = no contact sheet)")
    parser.add_argument("--eval-jobs", type=int, default=1, metavar="N", dest="eval_jobs",
                        help="methods scored in parallel processes (default 1)")


def _parse_pred(spec: str) -> tuple[str, str]:
    if "=" in spec and not os.path.exists(spec):
        name, _, folder = spec.partition("=")
        if name and folder:
            return name, folder
    path = Path(spec)
    return (path.name or str(path)), spec


def main(args) -> int:
    """Run the evaluation; print the table and where the report went. Returns the exit code:
    0 when at least one method was scored, 1 when none could be, 2 for a bad argument."""
    from pipeline.pool import BadInput

    from .io import read_stems
    from .metrics import evaluate_methods
    from .reports import markdown_table, write_report

    maps: dict[str, str] = {}
    for spec in args.pred:
        name, folder = _parse_pred(spec)
        if not Path(folder).is_dir():
            print(f"error: --pred {folder}: not a folder", file=sys.stderr)
            return 2
        base, k = name, 2
        while name in maps:
            name, k = f"{base}#{k}", k + 1
        maps[name] = folder
    if not Path(args.gt).is_dir():
        print(f"error: --gt {args.gt}: not a folder", file=sys.stderr)
        return 2
    stems = None
    if getattr(args, "split", None):
        try:
            stems = read_stems(args.split)
        except OSError as exc:
            print(f"error: --split {args.split}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    try:
        result = evaluate_methods(maps, args.gt, stems=stems, n_jobs=getattr(args, "eval_jobs", 1), log=False)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in result.notices:
        print(f"notice: {line}", file=sys.stderr)
    if not result.methods:
        print("error: no method could be scored (see the notices above)", file=sys.stderr)
        return 1
    written = write_report(result, args.out, images=getattr(args, "images", None),
                           n_rows=getattr(args, "rows", 6))
    print(markdown_table(result), end="")
    print(f"report: {', '.join(str(p) for p in written.values())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluation",
                                     description="Score saliency maps against ground-truth masks.")
    add_arguments(parser)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(build_parser().parse_args()))
