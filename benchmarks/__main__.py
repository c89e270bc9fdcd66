"""List the benchmarks or run one.

    python -m benchmarks --list              every benchmark: what it measures, its command, its duration
    python -m benchmarks NAME [ARGS ...]     run one (``NAME`` as listed; ``ARGS`` are its own options)

The listing reads each module's docstring and ``DURATION`` from its source, so it imports none of
them (and none of torch, numba or OpenCV).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARDWARE = "a 2-core CPU"


def modules() -> dict[str, Path]:
    """Benchmark modules by name: every ``benchmarks/*.py`` not starting with ``_``."""
    return {p.stem: p for p in sorted(HERE.glob("*.py")) if not p.stem.startswith("_")}


def describe(path: Path) -> tuple[str, str]:
    """The first line of a module's docstring and its ``DURATION`` constant (``"?"`` if absent)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    doc = (ast.get_docstring(tree) or "").strip()
    duration = "?"
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "DURATION" for t in node.targets):
            duration = str(ast.literal_eval(node.value))
    summary = doc.splitlines()[0].replace("``", "") if doc else ""
    return summary, duration


def listing() -> str:
    lines = [f"Benchmarks (rough duration with the defaults on {HARDWARE}; each writes "
             "benchmarks/results/<name>.json and .md):", ""]
    for name, path in modules().items():
        summary, duration = describe(path)
        lines += [f"{name}: {duration}",
                  f"    {summary}",
                  f"    run: .venv/bin/python benchmarks/{path.name}   (options: --help)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("--list", "-l"):
        print(listing())
        return 0
    if argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    name = argv[0].removesuffix(".py")
    known = modules()
    if name not in known and f"bench_{name}" in known:
        name = f"bench_{name}"
    if name not in known:
        print(f"unknown benchmark {argv[0]!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    sys.argv = [f"python -m benchmarks {name}", *argv[1:]]
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
