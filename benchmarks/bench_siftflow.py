"""Dense SIFT + SIFT-Flow: speed per 256x256 pair and accuracy on a stereo pair.

Run: ``.venv/bin/python benchmarks/bench_siftflow.py [--pairs N] [--repeats R]``; writes
``benchmarks/results/bench_siftflow.json`` and ``.md``.

Speed: real ECSSD images resized to 256 x 256, consecutive images paired; for each pair dense SIFT
of both images + SIFT-Flow with the reference defaults. Reported: wall-clock seconds (median over
pairs and repeats) and the CPU seconds of the calling thread (less sensitive to the other
processes sharing the machine), the per-level split, and the throughput of two joblib
threads (the kernels release the GIL) against one, measured in the same run. The machine load
average is recorded with the wall-clock numbers.

Accuracy: ``skimage.data.stereo_motorcycle()`` (left, right, disparity), downscaled by 3 (images
with area averaging, disparity sampled at the block centres and divided by 3). The flow from left
to right should be ``vx = -disparity``; we report the fraction of valid pixels (finite,
positive disparity) with ``|vx + disparity / 3| <= 1`` (0.793 is quoted for the C++
reference on this same downscale), and the fraction with ``vy == 0``. Accuracy is not affected by the load.

The per-level split (``_level_split``) re-runs ``sift_flow``'s coarse-to-fine loop from the
module's private helpers, to time the data term and BP of each level apart; it asserts that it
reproduces ``sift_flow``'s flow exactly, so a change of the method that it misses fails loudly.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from skimage import data

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment import _bp_kernels, dense_sift, sift_flow  # noqa: E402
from benchmarks._common import dataset_dir, read_rgb, write_results  # noqa: E402

DURATION = "~1 min"
IMAGES = dataset_dir("ECSSD") / "images"
# C++ SIFT + SIFT-Flow per 256x256 pair, single thread, on this machine kind: the range of the
# siftflow-ref README's table (quoted, not measured here)
CPP_REFERENCE_S = (2.105, 2.218)


def _load(path, size=256):
    return cv2.resize(read_rgb(path), (size, size), interpolation=cv2.INTER_AREA)


def _pair(a, b):
    """Dense SIFT of both + SIFT-Flow; returns (wall_sift, wall_flow, cpu_total, result)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    da, db = dense_sift(a), dense_sift(b)
    t1 = time.perf_counter()
    res = sift_flow(da, db, record_energy=False)  # as the pipeline runs it
    t2, c2 = time.perf_counter(), time.thread_time()
    return t1 - t0, t2 - t1, c2 - c0, res


def _speed(images, repeats):
    pairs = [(images[i], images[i + 1]) for i in range(len(images) - 1)]
    _pair(*pairs[0])  # compile / load the numba caches
    sift_w, flow_w, cpu = [], [], []
    for _ in range(repeats):
        for a, b in pairs:
            s, f, c, _ = _pair(a, b)
            sift_w.append(s)
            flow_w.append(f)
            cpu.append(c)
    total_w = np.add(sift_w, flow_w)

    def run(a, b):
        return _pair(a, b)[3].vx.sum()

    jobs = pairs * repeats
    t0 = time.perf_counter()
    Parallel(n_jobs=1, backend="threading")(delayed(run)(a, b) for a, b in jobs)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    Parallel(n_jobs=2, backend="threading")(delayed(run)(a, b) for a, b in jobs)
    two = time.perf_counter() - t0
    return {
        "n_pairs": len(pairs),
        "repeats": repeats,
        "wall_s_per_pair_median": float(np.median(total_w)),
        "wall_s_per_pair_min": float(np.min(total_w)),
        "wall_s_dense_sift_both_median": float(np.median(sift_w)),
        "wall_s_siftflow_median": float(np.median(flow_w)),
        "cpu_s_per_pair_median": float(np.median(cpu)),
        "cpu_s_per_pair_min": float(np.min(cpu)),
        "threads1_pairs_per_s": len(jobs) / one,
        "threads2_pairs_per_s": len(jobs) / two,
        "threads2_over_threads1": one / two,
    }


def _level_split(a, b):
    """CPU seconds per level (pyramid, data term, BP with its multigrid initialisation) for one
    pair, reproducing sift_flow's loop from its helpers (asserted to give the same flow)."""
    from alignment import siftflow as sf

    da, db = dense_sift(a), dense_sift(b)
    res = sift_flow(da, db, record_energy=False)  # for the final flow only
    c0 = time.thread_time()
    pa, pb = [da], [db]
    for _ in range(3):
        pa.append(sf._pyramid_level(pa[-1]))
        pb.append(sf._pyramid_level(pb[-1]))
    out = [{"level": "pyramid", "cpu_s": time.thread_time() - c0}]
    vx = vy = None
    for lev in range(3, -1, -1):
        shape = pa[lev].shape[:2]
        if lev == 3:
            ox = np.zeros(shape, np.int32)
            oy = ox.copy()
            w, it, n_hier = 10, 60, sf._TOP_HIERARCHY
        else:
            ox, oy = sf._upsample_flow(vx, shape), sf._upsample_flow(vy, shape)
            w, it, n_hier = 2 + lev, 30, 3 - lev
        n = 2 * w + 1
        c0 = time.thread_time()
        dt = np.empty(shape + (n, n), np.float32)
        dflt = _bp_kernels.data_term(pa[lev], pb[lev], ox, oy, w, dt)
        _bp_kernels.finish_data_term(dt, np.float32(dflt))
        c1 = time.thread_time()
        lab = sf._bp_multigrid(dt, ox, oy, w, 0.005 * 255 * 2.0**lev, 510.0, 40 * 255.0, it, n_hier,
                               False)[0]
        c2 = time.thread_time()
        vx, vy = lab[0] + ox - w, lab[1] + oy - w
        out.append({"level": lev, "shape": list(shape), "labels_per_layer": n, "iterations": it,
                    "coarsened_grids": n_hier, "cpu_s_data_term": c1 - c0, "cpu_s_bp": c2 - c1})
    assert np.array_equal(vx, res.vx) and np.array_equal(vy, res.vy)
    return out


def _stereo():
    left, right, disp = data.stereo_motorcycle()
    h, w = left.shape[0] // 3, left.shape[1] // 3
    lft = cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA)
    rgt = cv2.resize(right, (w, h), interpolation=cv2.INTER_AREA)
    gt = disp[1::3, 1::3][:h, :w].astype(np.float64) / 3.0
    valid = np.isfinite(gt) & (gt > 0)
    out = {"size": [h, w], "n_valid": int(valid.sum())}
    res = sift_flow(dense_sift(lft), dense_sift(rgt), record_energy=False)
    err = np.abs(res.vx[valid] + gt[valid])
    out.update({
        "frac_abs_err_le_1": float(np.mean(err <= 1)),
        "frac_abs_err_le_2": float(np.mean(err <= 2)),
        "frac_vy_zero": float(np.mean(res.vy[valid] == 0)),
        "median_abs_err": float(np.median(err)),
    })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4, help="number of ECSSD pairs (default 4)")
    ap.add_argument("--repeats", type=int, default=2, help="repeats per pair (default 2)")
    args = ap.parse_args(argv)
    if not IMAGES.is_dir():
        print(f"skipping speed: {IMAGES} not found", file=sys.stderr)
        speed, levels = None, None
        load_before = load_after = None
    else:
        files = sorted(IMAGES.glob("*.jpg"))[: args.pairs + 1]
        images = [_load(p) for p in files]
        load_before = os.getloadavg()
        speed = _speed(images, args.repeats)
        levels = _level_split(images[0], images[1])
        load_after = os.getloadavg()
        speed["images"] = [p.name for p in files]
    stereo = _stereo()
    result = {
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "cpp_reference_s_per_pair_quoted": CPP_REFERENCE_S,
        "speed_256x256": speed,
        "levels_cpu_split_first_pair": levels,
        "stereo_motorcycle_div3": stereo,
    }

    lines = ["# SIFT-Flow benchmark (dense SIFT + SIFT-Flow, reference defaults)", ""]
    if speed:
        sp = speed
        lines += [
            f"Machine: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} -> "
            f"{load_after[0]:.1f} (wall-clock is under that load).",
            "",
            f"## Speed per 256x256 pair ({sp['n_pairs']} ECSSD pairs x {sp['repeats']} repeats)",
            "",
            "| measure | seconds |",
            "|---|---|",
            f"| wall, dense SIFT x2 + SIFT-Flow (median) | {speed['wall_s_per_pair_median']:.3f} |",
            f"| wall, best pair | {speed['wall_s_per_pair_min']:.3f} |",
            f"| wall, dense SIFT of both images (median) | {sp['wall_s_dense_sift_both_median']:.3f} |",
            f"| wall, SIFT-Flow (median) | {speed['wall_s_siftflow_median']:.3f} |",
            f"| CPU of the calling thread per pair (median) | {sp['cpu_s_per_pair_median']:.3f} |",
            f"| CPU per pair (min) | {speed['cpu_s_per_pair_min']:.3f} |",
            "",
            f"Throughput: 1 thread {speed['threads1_pairs_per_s']:.2f} pairs/s, 2 joblib threads "
            f"{speed['threads2_pairs_per_s']:.2f} pairs/s (x{speed['threads2_over_threads1']:.2f}, "
            "same run).",
            "",
            f"C++ reference (quoted, not measured in this run): {CPP_REFERENCE_S[0]}-"
            f"{CPP_REFERENCE_S[1]} s per pair; ratio to our median CPU time: "
            f"{CPP_REFERENCE_S[0] / speed['cpu_s_per_pair_median']:.1f}-"
            f"{CPP_REFERENCE_S[1] / speed['cpu_s_per_pair_median']:.1f}x.",
            "",
            "### CPU seconds per level (first pair)",
            "",
            f"Pyramid of both images (3 halvings each): {levels[0]['cpu_s']:.3f} s.",
            "",
            "| level | size | labels/layer | iterations | coarsened grids | data term | BP (incl. coarsened) |",
            "|---|---|---|---|---|---|---|",
        ]
        for lv in levels[1:]:
            lines.append(
                f"| {lv['level']} | {lv['shape'][0]}x{lv['shape'][1]} | {lv['labels_per_layer']} | "
                f"{lv['iterations']} | {lv['coarsened_grids']} | {lv['cpu_s_data_term']:.3f} | "
                f"{lv['cpu_s_bp']:.3f} |"
            )
        lines.append("")
    h, w = stereo["size"]
    lines += [
        f"## Accuracy: stereo_motorcycle / 3 ({h}x{w}, {stereo['n_valid']} valid pixels)",
        "",
        "| abs err <= 1 | abs err <= 2 | vy == 0 | median abs err |",
        "|---|---|---|---|",
        f"| {stereo['frac_abs_err_le_1']:.3f} | {stereo['frac_abs_err_le_2']:.3f} | "
        f"{stereo['frac_vy_zero']:.3f} | {stereo['median_abs_err']:.2f} |",
    ]
    lines += ["", "The C++ program on this same downscale: 0.793 within 1 pixel (quoted, not "
              "measured here; an earlier version of this file quoted 0.67, which was on a different "
              "ground truth). The flow itself is compared with the C++ program's on identical "
              "inputs in `bench_siftflow_ref.md`.", ""]
    write_results("bench_siftflow", result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
