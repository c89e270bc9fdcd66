"""The default graph at scale: wall time per pool size, cache MB and peak memory per image, workers.

Runs ``python -m pipeline run`` (the default graph, ``--stages all``, exactly as a user does) on the
first N images of the ECSSD train split for each ``--sizes`` N, with ``--jobs 1`` and ``--jobs 2``
(a fresh output folder each, so every item is computed), and once on a two-worker Dask
``LocalCluster`` (``--scheduler dask://...``). Per run it records the wall time, the cache size
per image (``OUT/.cache``), and the peak resident memory of the largest process of the run (the
main process or one worker: ``ru_maxrss`` of the reaped children). The slope is the least-squares
seconds per image over the sizes of one ``--jobs`` value; the speed-up is jobs 1 over jobs 2 at
each size, measured in the same invocation.

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--sizes 25 50 100 200] [--no-dask]

Writes ``benchmarks/results/bench_scale.{json,md}`` and ``bench_scale.png`` (seconds vs images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, ROOT, image_path, load_average, split_stems, write_results  # noqa: E402

DURATION = "~5 s per image per run: ~75 min with the default sizes (--sizes 25 50: ~20 min)"


def _pool(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for stem in split_stems("ECSSD", "train")[:n]:
        src = image_path("ECSSD", stem)
        os.symlink(src, folder / src.name)
    return folder


def _duts_pool(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    stems = [("DUTS-TR-1k", s) for s in split_stems("DUTS-TR-1k", "train")]
    stems += [("DUTS-TR-2k", s) for s in split_stems("DUTS-TR-2k", "train")]
    for dataset, stem in stems[:n]:
        src = image_path(dataset, stem)
        os.symlink(src, folder / src.name)
    return folder


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# Runs the pipeline and reports the peak RSS of its largest process (main or a worker): a fresh
# wrapper per run, so that ru_maxrss of the reaped children belongs to this run alone.
_WRAPPER = (
    "import resource, subprocess, sys, json\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode\n"
    "print(json.dumps({'rc': rc, 'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def _run(pool: Path, out: Path, *extra: str) -> dict:
    """One pipeline run: wall seconds, cache bytes, peak RSS (MB) of its largest process."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "pipeline", "run", "--pool",
                          str(pool), "--out", str(out), "--no-progress", *extra],
                         cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    info = json.loads(res.stdout.strip().splitlines()[-1])
    if info["rc"] != 0:
        raise RuntimeError(f"pipeline run failed ({info['rc']})")
    return {"seconds": wall, "cache_bytes": _du(out / ".cache"), "peak_rss_mb": info["peak_kb"] / 1024}


def _slope(points: list[tuple[int, float]]) -> float:
    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    return float(np.polyfit(x, y, 1)[0]) if len(points) > 1 else float(y[0] / x[0])


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label in sorted({r["runner"] for r in rows}):
        pts = sorted((r["images"], r["seconds"]) for r in rows if r["runner"] == label)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set_xlabel("images in the pool")
    ax.set_ylabel("wall seconds, default graph")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200], help="pool sizes (ECSSD train)")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    ap.add_argument("--large", type=int, default=0, metavar="N",
                    help="also run the cheap stages (gist_hog, neighbours, contrast) on N DUTS-TR images "
                         "(1k, then 2k) with --jobs 2: peak memory of a large pool")
    ap.add_argument("--only-large", action="store_true", help="skip the default-graph runs")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    rows = []
    load_before = load_average()
    try:
        for n in ([] if args.only_large else args.sizes):
            pool = _pool(work / f"pool{n}", n)
            for jobs in (1, 2):
                r = _run(pool, work / f"out{n}_j{jobs}", "--jobs", str(jobs))
                rows.append({"runner": f"loky --jobs {jobs}", "images": n, **r})
                print(f"{n} images, jobs {jobs}: {r['seconds']:.1f} s", flush=True)
        if args.large:
            pool = _duts_pool(work / "large", args.large)
            r = _run(pool, work / "out_large", "--jobs", "2", "--stages", "neighbours,contrast")
            rows.append({"runner": "loky --jobs 2, stages gist_hog + neighbours + contrast", "images": args.large,
                         **r})
            print(f"{args.large} images, cheap stages: {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB", flush=True)
        if not args.no_dask and not args.only_large:
            from distributed import LocalCluster

            n = args.sizes[0]
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                r = _run(work / f"pool{n}", work / f"out{n}_dask", "--scheduler", f"dask://{cluster.scheduler_address}")
            rows.append({"runner": "dask LocalCluster, 2 workers", "images": n, **r})
            print(f"{n} images, dask: {r['seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.only_large:
        r = rows[0]
        md = "\n".join([
            f"# A large pool: the cheap stages on {r['images']} DUTS-TR images", "",
            "`python -m pipeline run --stages neighbours,contrast --jobs 2` (pool, gist_hog, neighbours, "
            f"contrast); {os.cpu_count()} cores; load average before: {load_before}, after: {load_average()}.", "",
            "| images | wall s | s / image | cache MB / image | peak RSS MB (largest process) |",
            "|---|---|---|---|---|",
            f"| {r['images']} | {r['seconds']:.1f} | {r['seconds'] / r['images']:.3f} | "
            f"{r['cache_bytes'] / r['images'] / 1e6:.3f} | {r['peak_rss_mb']:.0f} |", "",
            f"Command: `.venv/bin/python benchmarks/bench_scale.py --only-large --large {r['images']}`", ""])
        write_results("bench_scale_large", {"rows": rows, "cores": os.cpu_count(), "load_before": load_before}, md)
        return 0
    slopes = {label: _slope([(r["images"], r["seconds"]) for r in rows if r["runner"] == label])
              for label in ("loky --jobs 1", "loky --jobs 2")}
    speedups = {}
    for n in args.sizes:
        t = {r["runner"]: r["seconds"] for r in rows if r["images"] == n}
        speedups[n] = t["loky --jobs 1"] / t["loky --jobs 2"]
    lines = [
        "# The default graph at scale (ECSSD train images)",
        "",
        f"`python -m pipeline run` with the default `--stages all` on the first N ECSSD train images, a fresh "
        f"output folder per run; {os.cpu_count()} cores; load average before: {load_before}, after: "
        f"{load_average()}.",
        "",
        "| runner | images | wall s | s / image | cache MB / image | peak RSS MB (largest process) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['runner']} | {r['images']} | {r['seconds']:.1f} | {r['seconds'] / r['images']:.2f} | "
                     f"{r['cache_bytes'] / r['images'] / 1e6:.2f} | {rss} |")
    lines += ["", "| | value |", "|---|---|"]
    for label, s in slopes.items():
        lines.append(f"| slope, {label} | {s:.2f} s per image |")
    for n, s in speedups.items():
        lines.append(f"| throughput jobs 2 / jobs 1, {n} images | {s:.2f}x |")
    lines += ["", "![seconds vs images](bench_scale.png)", "",
              f"Command: `.venv/bin/python benchmarks/bench_scale.py --sizes {' '.join(map(str, args.sizes))}"
              f"{' --no-dask' if args.no_dask else ''}`", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    _plot(rows, RESULTS / "bench_scale.png")
    write_results("bench_scale", {"rows": rows, "slopes_s_per_image": slopes,
                                  "speedup_jobs2_over_jobs1": {str(k): v for k, v in speedups.items()},
                                  "cores": os.cpu_count(), "load_before": load_before}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
