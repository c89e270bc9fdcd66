"""Helpers shared by the benchmark scripts: data locations, split lists, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def split_stems(dataset: str, split: str) -> list[str]:
    path = DATA / "sod" / dataset / f"{split}.txt"
    return [s.strip() for s in path.read_text().split() if s.strip()]


def image_path(dataset: str, stem: str) -> Path:
    return DATA / "sod" / dataset / "images" / f"{stem}.jpg"


def gt_path(dataset: str, stem: str) -> Path:
    return DATA / "sod" / dataset / "gt" / f"{stem}.png"


def write_results(name: str, data: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = dict(data, machine=platform.machine(), when=time.strftime("%Y-%m-%d %H:%M:%S"))
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def load_average() -> str:
    """The 1-minute load average (timings on a shared machine are read against it)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover
        return "n/a"
