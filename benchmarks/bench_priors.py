"""Training-free priors scored on a benchmark: u2netp and contrast, with published maps for context.

Runs the two priors the pipeline computes itself, ``u2netp`` (``detect.u2netp_saliency``, the
U^2-Net-small ONNX model shipped by rembg) and ``contrast`` (``detect.contrast.contrast_saliency``),
on every image of a split, scores them with ``pipeline.evaluation`` (all metrics, PySODMetrics
conventions), and writes ``benchmarks/results/bench_priors.json`` and ``.md`` (for another dataset
than the default: ``bench_priors_<dataset>``) with the metrics table and the seconds per image of
each prior, measured in the same run on the same images (and their ratio). Published maps
(``--extra-pred NAME=DIR``; by default the SOD folder's priors/<method>) are scored on the same
stems and shown in the same table.

Default: the SOD benchmark test split (300 images) of the shared data folder (``sod/SOD``).

    .venv/bin/python benchmarks/bench_priors.py
    .venv/bin/python benchmarks/bench_priors.py --images DIR --gt DIR [--split FILE] [--name NAME]

Timings are wall-clock on whatever machine runs it, with its load. Model loading and numba
compilation are done on one warm-up image before timing and are not counted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import dataset_dir, load_average, write_results  # noqa: E402
from detect import contrast_saliency, u2netp_saliency  # noqa: E402
from pipeline import pool  # noqa: E402
from pipeline.evaluation import evaluate_methods, markdown_table, write_report  # noqa: E402
from pipeline.evaluation.io import read_stems  # noqa: E402
from pipeline.evaluation.metrics import METRICS  # noqa: E402

DURATION = "~16 min (SOD test, 300 images; u2netp about 3 s per image)"
SOD = dataset_dir("SOD")


class TimingStats:
    """Seconds per image, streaming like the metric evaluators: ``step(seconds, n)``, ``get_results()``."""

    def __init__(self):
        self.seconds = []
        self.counts = []

    def step(self, seconds: float, n: int = 1):
        self.seconds.append(float(seconds))
        self.counts.append(int(n))

    def get_results(self) -> dict:
        total, n = float(np.sum(self.seconds)), int(np.sum(self.counts))
        return {"seconds_total": total, "images": n, "seconds_per_image": total / n if n else None}


def _to_uint8(m: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.nan_to_num(m), 0.0, 1.0) * 255).astype(np.uint8)


def run_u2netp(images: dict, batch_size: int):
    stems = list(images)
    u2netp_saliency([images[stems[0]]])  # warm-up: session creation
    stats, maps = TimingStats(), {}
    for i in range(0, len(stems), batch_size):
        chunk = stems[i: i + batch_size]
        t0 = time.perf_counter()
        out = u2netp_saliency([images[s] for s in chunk], batch_size=batch_size)
        stats.step(time.perf_counter() - t0, len(chunk))
        maps.update({s: _to_uint8(m) for s, m in zip(chunk, out)})
    return maps, stats.get_results()


def run_contrast(images: dict):
    stems = list(images)
    contrast_saliency(images[stems[0]])  # warm-up: numba compilation
    stats, maps = TimingStats(), {}
    for s in stems:
        t0 = time.perf_counter()
        m = contrast_saliency(images[s])
        stats.step(time.perf_counter() - t0)
        maps[s] = _to_uint8(m)
    return maps, stats.get_results()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(SOD / "images"), help="folder of images (default: SOD)")
    ap.add_argument("--gt", default=str(SOD / "gt"), help="folder of GT masks (default: SOD)")
    ap.add_argument("--split", default=None,
                    help="file of stems to use (default: SOD's test.txt with the default folders, else all)")
    ap.add_argument("--name", default=None,
                    help="dataset name, in bench_priors_<name> for data other than the default "
                         "(default: the images' parent folder)")
    ap.add_argument("--extra-pred", action="append", default=None, metavar="NAME=DIR",
                    help="published maps to score alongside (default with SOD: every priors/<method>)")
    ap.add_argument("--no-extra", action="store_true", help="score no published maps")
    ap.add_argument("--priors", default="u2netp,contrast", help="which of our priors to run")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0, help="first N stems only (0 = all)")
    ap.add_argument("--report", default=None, help="also write the full report (plots, contact sheet) here")
    ap.add_argument("--jobs", type=int, default=2, help="methods scored in parallel")
    args = ap.parse_args(argv)

    images_dir, gt_dir = Path(args.images), Path(args.gt)
    name = args.name or images_dir.resolve().parent.name
    default_data = images_dir.resolve() == (SOD / "images").resolve()
    if not images_dir.is_dir() or not gt_dir.is_dir():
        print(f"error: images {images_dir} or gt {gt_dir} is not a folder", file=sys.stderr)
        return 2
    found = pool.discover(images_dir, what="images").files
    if args.split:
        stems = read_stems(args.split)
    elif default_data and (SOD / "test.txt").is_file():
        stems = read_stems(SOD / "test.txt")
    else:
        stems = sorted(found)
    stems = [s for s in stems if s in found]
    if args.limit:
        stems = stems[: args.limit]
    if not stems:
        print("error: no image to run on", file=sys.stderr)
        return 2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = {s: pool.load_image(found[s]) for s in stems}
    print(f"{len(images)} images from {images_dir}", file=sys.stderr)

    ours, timings = {}, {}
    wanted = [p.strip() for p in args.priors.split(",") if p.strip()]
    if "u2netp" in wanted:
        ours["u2netp"], timings["u2netp"] = run_u2netp(images, args.batch_size)
        print(f"u2netp: {timings['u2netp']['seconds_per_image']:.3f} s/image", file=sys.stderr)
    if "contrast" in wanted:
        ours["contrast"], timings["contrast"] = run_contrast(images)
        print(f"contrast: {timings['contrast']['seconds_per_image']:.3f} s/image", file=sys.stderr)

    sources: dict = dict(ours)
    if not args.no_extra:
        if args.extra_pred:
            for spec in args.extra_pred:
                n, _, d = spec.partition("=")
                if not d:
                    n, d = Path(spec).name, spec
                sources[n] = d
        elif default_data and (SOD / "priors").is_dir():
            for d in sorted(p for p in (SOD / "priors").iterdir() if p.is_dir()):
                sources[d.name] = str(d)

    result = evaluate_methods(sources, gt_dir, stems=stems, n_jobs=args.jobs)
    spi = {m: timings[m]["seconds_per_image"] for m in timings}
    table = markdown_table(result, extra_columns={"s / image": spi})

    command = " ".join([".venv/bin/python benchmarks/bench_priors.py"] + list(sys.argv[1:] if argv is None else argv))
    ratio_line = ""
    if "u2netp" in spi and "contrast" in spi and spi["contrast"]:
        ratio_line = (f"u2netp / contrast time ratio: {spi['u2netp'] / spi['contrast']:.2f} "
                      "(same run, same images).\n")
    md = (
        f"# Priors on {name} ({len(stems)} images)\n\n"
        f"Command: `{command}`\n\n"
        + table + "\n"
        "u2netp and contrast are computed by this run; the other rows are published maps scored on the same "
        "images (BSCA/GS/RBD unofficial, see shared/data/README.md). ↑ higher / ↓ lower is better; best in "
        "**bold**. Metrics as in `pipeline.evaluation` (PySODMetrics conventions; AUC exact per image).\n\n"
        + ratio_line
        + f"Seconds per image: wall-clock, warm (model loaded / numba compiled), {platform.machine()}, "
        f"onnxruntime CPU; load average at the end {load_average()}.\n"
    )
    if result.notices:
        md += "\nNotices:\n" + "".join(f"- {n}\n" for n in result.notices)

    data = {
        "dataset": name,
        "images": str(images_dir),
        "gt": str(gt_dir),
        "n_images": len(stems),
        "metrics": [k for k, _, _ in METRICS] + ["adp_e"],
        "pooled": {m: result.pooled[m] for m in result.methods},
        "timing": timings,
        "computed_here": sorted(ours),
        "notices": list(result.notices),
    }
    write_results("bench_priors" if default_data else f"bench_priors_{name}", data, md)
    if args.report:
        write_report(result, args.report, images=images, n_rows=6, title=f"Priors on {name}",
                     extra_columns={"s / image": spi})
        print(f"report: {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
