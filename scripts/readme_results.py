"""Write the README's short results section from a results board's ``benchmarks.json``.

Usage (from the repository root, after ``python -m pipeline bench`` wrote the board there)::

    .venv/bin/python scripts/readme_results.py                     # benchmarks.json -> README.md
    .venv/bin/python scripts/readme_results.py --board OUT/benchmarks.json --readme README.md

The section between the README's ``<!-- results board: begin -->`` and ``<!-- results board: end -->``
markers is replaced by :func:`pipeline.board.report.readme_summary` of the board (max F / MAE per
prior and promoter, the machine, the contact sheet); nothing else in the README changes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.board.report import readme_summary, replace_readme_section  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default=str(ROOT / "benchmarks.json"), help="the board's benchmarks.json")
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help="the README to update")
    args = parser.parse_args(argv)
    board_path, readme_path = Path(args.board), Path(args.readme)
    if not board_path.is_file():
        print(f"readme_results: {board_path} not found: run `python -m pipeline bench` first", file=sys.stderr)
        return 1
    board = json.loads(board_path.read_text())
    page = os.path.relpath(board_path.with_name("BENCHMARKS.md"), readme_path.parent)
    text = replace_readme_section(readme_path.read_text(), readme_summary(board, board_page=page))
    readme_path.write_text(text)
    print(f"readme_results: {readme_path} updated from {board_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
