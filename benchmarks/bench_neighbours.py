"""The ``neighbours`` stage on large pools: seconds and peak memory of the memory-mapped, blocked search.

Calls the stage function :func:`pipeline.stages.retrieval.run_neighbours` (descriptors copied into
a memory-mapped file, centred in place, searched block by block) on ``--n`` descriptors, and for
comparison the in-memory float64 path it replaced (the whole pool stacked, centred and searched with
scikit-learn's brute-force ``NearestNeighbors``), each in a fresh child process so that its peak
resident memory (``ru_maxrss``) is its own. The descriptors are random unit rows of the descriptor's
length (speed and memory do not depend on the values; retrieval quality is bench_retrieval's).

Usage::

    .venv/bin/python benchmarks/bench_neighbours.py [--n 10000]

Writes ``benchmarks/results/bench_neighbours.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, load_average, write_results  # noqa: E402

DURATION = "~1 min (--n 10000)"

_CHILD = r"""
import json, resource, sys, time
import numpy as np
n, which, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if which == "stage":
    from pipeline.registry import ItemContext
    from pipeline.stages.retrieval import NeighboursParams, run_neighbours
else:
    from sklearn.neighbors import NearestNeighbors

    from retrieval import centre_pool
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports
desc = np.load(path, mmap_mode="r")
t0 = time.perf_counter()
if which == "stage":
    table = {f"im{i:07d}": {"descriptor": desc[i]} for i in range(n)}
    index = run_neighbours({"gist_hog": table}, NeighboursParams(), ItemContext())["index"]
else:
    x = np.stack([np.asarray(desc[i], np.float32) for i in range(n)])
    x = centre_pool(x).astype(np.float64)
    index = NearestNeighbors(n_neighbors=7, algorithm="brute").fit(x).kneighbors(x, return_distance=False)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024, "after_imports_rss_mb": base / 1024,
                  "first_row": [int(v) for v in index[0][:6]]}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="descriptors in the pool (default 10000)")
    args = ap.parse_args(argv)

    import numpy as np

    from retrieval import descriptor_length

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "descriptors.npy"
        d = rng.normal(size=(args.n, descriptor_length())).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        np.save(path, d)
        del d
        rows = {}
        for which in ("stage", "in-memory sklearn"):
            res = subprocess.run([sys.executable, "-c", _CHILD, str(args.n), which.split()[0], str(path)],
                                 cwd=ROOT, capture_output=True, text=True, check=True)
            rows[which] = json.loads(res.stdout.strip().splitlines()[-1])
    lines = [
        f"# neighbours on {args.n} descriptors ({descriptor_length()} float32 values each)",
        "",
        f"Each row in its own process; load average {load_average()}. Peak RSS is the process's "
        "ru_maxrss (includes the imported libraries).",
        "",
        "| path | seconds | peak RSS MB | of which the search (peak minus after imports) |",
        "|---|---|---|---|",
    ]
    for which, r in rows.items():
        lines.append(f"| {which} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] - r['after_imports_rss_mb']:.0f} |")
    same = rows["stage"]["first_row"][:5] == rows["in-memory sklearn"]["first_row"][1:6]
    lines += ["", f"Same neighbours of row 0 on both paths: {same}.", "",
              f"Command: `.venv/bin/python benchmarks/bench_neighbours.py --n {args.n}`", ""]
    write_results("bench_neighbours", {"n": args.n, "rows": rows, "same_first_row": same}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
