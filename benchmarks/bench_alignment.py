"""MIJR bi-level alignment: speed per 256x256 pair and alignment accuracy on ECSSD.

Run: ``.venv/bin/python benchmarks/bench_alignment.py [--pairs 50] [--pool 200]``; writes
``benchmarks/results/bench_alignment.json`` and ``.md``.

* Speed: seconds per 256x256 pair for dense SIFT (both images) + SIFT-Flow + bi-level alignment
  (SLIC 500 and proposals are per image and reported separately). Wall-clock, with the machine's
  load average recorded.
* Accuracy (MIJR Sec. III-A reports 69% SIFT-Flow-only -> 89% bi-level): ECSSD images resized to
  256x256; the first ``--pool`` images form the retrieval pool; each of the first ``--pairs``
  images is paired with its nearest pool neighbour by the project's GIST+HOG retrieval
  (``retrieval.descriptor_batch`` / ``nearest_neighbours``, GT-free). A superpixel's GT label is
  the majority of its pixels (mean of the binary mask >= 0.5); an aligned pair is correct when the
  two labels agree. Every target superpixel is aligned by both methods (Eq. 1's constraint), so
  the fractions are over the same superpixels. Also reported: the chance level (labels drawn
  independently with each image's foreground fraction) and ablations (object_weight=0;
  colour_weight=0, the paper's SIFT-only f; window=0, the plain flow as QS).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment import (  # noqa: E402
    bilevel_alignment, dense_sift, pixel_features, proposals, sift_flow, siftflow_match)
from benchmarks._common import (  # noqa: E402
    dataset_dir, gt_path, image_path, load_average, read_mask, read_rgb, split_stems, write_results)
from retrieval import descriptor_batch, nearest_neighbours  # noqa: E402
from superpixels import region_mean, slic  # noqa: E402

DURATION = "~3 min (--pairs 50 --pool 200)"
DATASET = "ECSSD"
SIZE = 256


def load(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """The image and its GT (bool) resized to ``SIZE x SIZE``."""
    im = cv2.resize(read_rgb(image_path(DATASET, stem)), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(read_mask(gt_path(DATASET, stem)), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 127
    return im, gt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=50, help="target images, each aligned to its neighbour")
    ap.add_argument("--pool", type=int, default=200, help="retrieval pool: the first N ECSSD images")
    ap.add_argument("--split", choices=("train", "test"), default=None,
                    help="draw pool and pairs from this ECSSD split only (its file order), and write "
                         "bench_alignment_<split> with the window / object-weight sweep")
    args = ap.parse_args(argv)
    folder = dataset_dir(DATASET) / "images"
    if not folder.is_dir():
        print(f"{DATASET} not found at {folder}", file=sys.stderr)
        return 1
    if args.split:
        stems = split_stems(DATASET, args.split)[: args.pool]
    else:
        stems = sorted(p.stem for p in folder.glob("*.jpg"))[: args.pool]
    data = [load(s) for s in stems]
    load_before = load_average()
    t0 = time.perf_counter()
    nb = nearest_neighbours(descriptor_batch([im for im, _ in data]), k=1).index[:, 0]
    how = "retrieval (GIST+HOG, nearest neighbour)"
    t_retrieval = time.perf_counter() - t0
    print(f"neighbours: {how} over {len(stems)} images ({t_retrieval:.1f} s)", flush=True)

    per_image = {}
    t_img = {"slic500": [], "proposals": [], "dense_sift": []}

    def feats(i):
        if i not in per_image:
            im, gt = data[i]
            t = time.perf_counter(); lab = slic(im, n_segments=500); t_img["slic500"].append(time.perf_counter() - t)
            t = time.perf_counter(); p = proposals(im); t_img["proposals"].append(time.perf_counter() - t)
            t = time.perf_counter(); ds = dense_sift(im); t_img["dense_sift"].append(time.perf_counter() - t)
            g = region_mean(gt.astype(np.float64), lab, lab.max() + 1) >= 0.5
            per_image[i] = (lab, p, ds, g, gt.mean())
        return per_image[i]

    variants = {"bilevel": {}, "bilevel object_weight=0": {"object_weight": 0.0},
                "bilevel colour_weight=0 (SIFT-only f)": {"colour_weight": 0.0},
                "bilevel window=0 (QS = flow only)": {"window": 0}}
    if args.split:  # the sweep: does a wider candidate window let the object term (Eq. 3) work?
        variants.update({"bilevel object_weight=3": {"object_weight": 3.0},
                         "bilevel window=8": {"window": 8}, "bilevel window=8 object_weight=0":
                         {"window": 8, "object_weight": 0.0}, "bilevel window=8 object_weight=3":
                         {"window": 8, "object_weight": 3.0}, "bilevel window=12": {"window": 12},
                         "bilevel window=12 object_weight=0": {"window": 12, "object_weight": 0.0}})
    acc = {"siftflow_only": [], "chance": []}
    acc.update({k: [] for k in variants})
    t_pair = {"dense_sift_x2": [], "siftflow": [], "features_x2": [], "bilevel": []}
    n_pairs = min(args.pairs, len(stems))
    for a in range(n_pairs):
        b = int(nb[a])
        for i in (a, b):  # per-image work once; dense SIFT is timed per pair below as well
            feats(i)
        la, pa, da, ga, fa_ = per_image[a]
        lb, pb, db, gb, fb_ = per_image[b]
        t = time.perf_counter(); dense_sift(data[a][0]); dense_sift(data[b][0])
        t_pair["dense_sift_x2"].append(time.perf_counter() - t)
        t = time.perf_counter(); flow = sift_flow(da, db); t_pair["siftflow"].append(time.perf_counter() - t)
        base = siftflow_match(la, lb, flow.vx, flow.vy)
        acc["siftflow_only"].append(float((ga == gb[base]).mean()))
        pga, pgb = ga.mean(), gb.mean()
        acc["chance"].append(float(pga * pgb + (1 - pga) * (1 - pgb)))
        for name, kw in variants.items():
            kw = dict(kw)
            # pixel_features' own default unless the variant sets it
            fkw = {"colour_weight": kw.pop("colour_weight")} if "colour_weight" in kw else {}
            t = time.perf_counter()
            fa = pixel_features(data[a][0], da, **fkw)
            fb = pixel_features(data[b][0], db, **fkw)
            tf = time.perf_counter() - t
            t = time.perf_counter()
            r = bilevel_alignment(la, lb, pa.boxes, pb.boxes, flow.vx, flow.vy, fa, fb, **kw)
            tb = time.perf_counter() - t
            if name == "bilevel":
                t_pair["features_x2"].append(tf)
                t_pair["bilevel"].append(tb)
            acc[name].append(float((ga == gb[r.superpixel_match]).mean()))
        print(f"pair {a + 1}/{n_pairs} ({stems[a]}, {stems[b]}): siftflow-only "
              f"{acc['siftflow_only'][-1]:.3f} bilevel {acc['bilevel'][-1]:.3f}", flush=True)

    total = np.array(t_pair["dense_sift_x2"]) + np.array(t_pair["siftflow"]) \
        + np.array(t_pair["features_x2"]) + np.array(t_pair["bilevel"])
    wins = int(np.sum(np.array(acc["bilevel"]) > np.array(acc["siftflow_only"])))
    losses = int(np.sum(np.array(acc["bilevel"]) < np.array(acc["siftflow_only"])))
    res = {
        "dataset": "ECSSD", "image_size": f"{SIZE}x{SIZE}", "n_pairs": n_pairs, "pool": len(stems),
        "pairs": "first N ECSSD images (sorted stems) each with its nearest pool neighbour",
        "neighbours": how, "cpu": f"{os.cpu_count()} cores, load average {load_before} -> {load_average()}",
        "accuracy_mean": {k: float(np.mean(v)) for k, v in acc.items()},
        "bilevel_vs_siftflow": {"wins": wins, "losses": losses, "ties": n_pairs - wins - losses},
        "seconds_per_pair_median": {k: float(np.median(v)) for k, v in t_pair.items()},
        "seconds_per_pair_total_median": float(np.median(total)),
        "seconds_per_pair_total_mean": float(np.mean(total)),
        "seconds_per_image_median": {k: float(np.median(v)) for k, v in t_img.items()},
        "paper": {"siftflow_only": 0.69, "bilevel": 0.89},
        "per_pair": {k: v for k, v in acc.items()},
    }
    lines = [
        "# Alignment benchmark (MIJR Sec. III-A)", "",
        f"Command: `.venv/bin/python benchmarks/bench_alignment.py --pairs {n_pairs} --pool {len(stems)}"
        f"{' --split ' + args.split if args.split else ''}`", "",
        f"ECSSD{' ' + args.split + ' split' if args.split else ''}, images resized to {SIZE}x{SIZE}; the first "
        f"{n_pairs} images, each paired with its nearest "
        f"neighbour among the first {len(stems)} by {how}. Superpixel GT label = majority (mean >= 0.5); "
        "accuracy = fraction of target superpixels whose aligned superpixel has the same label.", "",
        "| alignment | mean accuracy |", "|---|---|",
    ]
    for k, v in res["accuracy_mean"].items():
        lines.append(f"| {k} | {v:.4f} |")
    lines += ["", f"Bi-level better than SIFT-Flow-only on {wins} pairs, worse on {losses}.",
              "Paper (its data): 0.69 SIFT-Flow-only -> 0.89 bi-level.", "",
              f"Speed, median seconds per 256x256 pair ({res['cpu']}):", "",
              "| step | s |", "|---|---|"]
    for k, v in res["seconds_per_pair_median"].items():
        lines.append(f"| {k} | {v:.3f} |")
    lines.append(f"| **total (dense SIFT x2 + SIFT-Flow + features + bi-level)** | {res['seconds_per_pair_total_median']:.3f} |")
    lines += ["", "Per image (not per pair), median s: " + ", ".join(
        f"{k} {v:.3f}" for k, v in res["seconds_per_image_median"].items()), ""]
    write_results("bench_alignment" + (f"_{args.split}" if args.split else ""), res, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
