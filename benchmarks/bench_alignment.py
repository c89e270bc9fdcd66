"""MIJR bi-level alignment: speed per pair and alignment accuracy on ECSSD, as the pipeline runs it.

Run: ``.venv/bin/python benchmarks/bench_alignment.py [--pairs 50] [--pool 200] [--split train]``;
writes ``benchmarks/results/bench_alignment[_<split>].json`` and ``.md``.

Every pair goes through :func:`alignment.pair.align_pair`, the function the ``alignment`` stage
calls: SLIC (500) and the proposals (100) at the image's own size, dense SIFT and SIFT-Flow on the
256x256 working grid, the label maps and boxes brought to that grid.

* Speed: seconds per pair for dense SIFT (both images) + SIFT-Flow + ``align_pair`` (SLIC and
  proposals are per image and reported separately). Wall-clock, with the machine's load average.
* Superpixel accuracy (Q_M; MIJR Sec. III-A reports 69% SIFT-Flow-only -> 89% bi-level): the first
  ``--pool`` images form the retrieval pool; each of the first ``--pairs`` images is paired with
  its nearest pool neighbour by the project's GIST+HOG retrieval (GT-free). A superpixel's GT label
  is the majority of its pixels (full-size mask, mean >= 0.5); an aligned pair is correct when the
  two labels agree; the fraction is over the target superpixels that have a match (those that
  survive the resampling to the grid, the same set for every method). Also: the chance level
  (labels drawn independently with each image's foreground fraction) and ablations.
* Pixel accuracy (Q_S): the fraction of grid pixels whose SIFT-Flow target has the same GT label.
* Proposal alignment (Q_P): for each target box and the box it is matched to, the IoU of the two
  boxes' GT contents (each crop resized to 32x32, nearest), over the target boxes whose pair of
  crops holds some foreground; beside it the mean of that IoU over every box of the retrieved image
  (what a random match gets).
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

from alignment import dense_sift, proposals, sift_flow, siftflow_match  # noqa: E402
from alignment.pair import align_pair, to_working_grid, working_image  # noqa: E402
from benchmarks._common import (  # noqa: E402
    dataset_dir, gt_path, image_path, load_average, read_mask, read_rgb, split_stems, write_results)
from retrieval import descriptor_batch, nearest_neighbours  # noqa: E402
from superpixels import region_mean, slic  # noqa: E402

DURATION = "~5 min (--pairs 50 --pool 200)"
DATASET = "ECSSD"
SIZE = 256
CROP = 32


def load(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """The image at its own size and its GT (bool)."""
    return read_rgb(image_path(DATASET, stem)), read_mask(gt_path(DATASET, stem)) > 127


def crop_masks(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(V, CROP, CROP) bool: each box's GT content resized to CROP x CROP (nearest)."""
    out = np.empty((len(boxes), CROP, CROP), bool)
    for v, (c0, r0, c1, r1) in enumerate(boxes):
        crop = gt[r0:r1, c0:c1].astype(np.uint8)
        out[v] = cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_NEAREST) > 0
    return out


def box_iou_matrix(ca: np.ndarray, cb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of every pair of crop masks (V_a, V_b) and whether the pair holds any foreground."""
    a = ca.reshape(len(ca), -1).astype(np.float64)
    b = cb.reshape(len(cb), -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0), union > 0


def flow_pixel_accuracy(gt_a: np.ndarray, gt_b: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> float:
    """Q_S: share of grid pixels whose flow target (rounded, clipped) has the same GT label."""
    h, w = vx.shape
    r, c = np.indices((h, w))
    tr = np.clip(np.rint(r + vy).astype(int), 0, gt_b.shape[0] - 1)
    tc = np.clip(np.rint(c + vx).astype(int), 0, gt_b.shape[1] - 1)
    return float((gt_a == gt_b[tr, tc]).mean())


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
            t = time.perf_counter(); ds = dense_sift(working_image(im, SIZE))
            t_img["dense_sift"].append(time.perf_counter() - t)
            g = region_mean(gt.astype(np.float64), lab, lab.max() + 1) >= 0.5
            gt_grid = cv2.resize(gt.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0
            per_image[i] = (lab, p.boxes, ds, g, gt_grid, crop_masks(gt, p.boxes))
        return per_image[i]

    variants = {"bilevel": {}, "bilevel object_weight=0": {"object_weight": 0.0},
                "bilevel colour_weight=0 (SIFT-only f)": {"colour_weight": 0.0},
                "bilevel window=0 (QS = flow only)": {"window": 0}}
    if args.split:  # the sweep: does a wider candidate window let the object term (Eq. 3) work?
        variants.update({"bilevel object_weight=3": {"object_weight": 3.0},
                         "bilevel window=8": {"window": 8}, "bilevel window=8 object_weight=0":
                         {"window": 8, "object_weight": 0.0}, "bilevel window=8 object_weight=3":
                         {"window": 8, "object_weight": 3.0}, "bilevel window=12": {"window": 12},
                         "bilevel window=12 object_weight=0": {"window": 12, "object_weight": 0.0},
                         # candidates drawn from the matched proposals too (box_links, module notes)
                         "bilevel box_links=4": {"box_links": 4},
                         "bilevel box_links=4 object_weight=0": {"box_links": 4, "object_weight": 0.0},
                         "bilevel box_links=4 object_weight=3": {"box_links": 4, "object_weight": 3.0},
                         "bilevel box_links=2": {"box_links": 2}})
    acc = {"siftflow_only": [], "chance": []}
    acc.update({k: [] for k in variants})
    q_p = {k: [] for k in variants}
    q_p["random box"] = []
    monotone = {k: [] for k in variants}  # Eq. 1 objective non-increasing over the K schedule
    t_variant = {k: [] for k in variants}
    q_s = []
    t_pair = {"dense_sift_x2": [], "siftflow": [], "align_pair": []}
    n_pairs = min(args.pairs, len(stems))
    for a in range(n_pairs):
        b = int(nb[a])
        for i in (a, b):  # per-image work once; dense SIFT is timed per pair below as well
            feats(i)
        la, ba, da, ga, gga, ca = per_image[a]
        lb, bb, db, gb, ggb, cb = per_image[b]
        t = time.perf_counter()
        dense_sift(working_image(data[a][0], SIZE))
        dense_sift(working_image(data[b][0], SIZE))
        t_pair["dense_sift_x2"].append(time.perf_counter() - t)
        t = time.perf_counter(); flow = sift_flow(da, db); t_pair["siftflow"].append(time.perf_counter() - t)
        q_s.append(flow_pixel_accuracy(gga, ggb, flow.vx, flow.vy))
        # the baseline on the same grid labels as align_pair; padded to every label of la
        ga_grid, _ = to_working_grid(la, ba, SIZE)
        gb_grid, _ = to_working_grid(lb, bb, SIZE)
        base = np.full(la.max() + 1, -1, np.int64)
        m = siftflow_match(ga_grid, gb_grid, flow.vx, flow.vy)
        base[: m.size] = m
        iou, any_fg = box_iou_matrix(ca, cb)
        q_p["random box"].append(float(iou[any_fg].mean()) if any_fg.any() else float("nan"))
        pga, pgb = ga.mean(), gb.mean()
        acc["chance"].append(float(pga * pgb + (1 - pga) * (1 - pgb)))
        for name, kw in variants.items():
            t = time.perf_counter()
            r = align_pair(data[a][0], data[b][0], la, lb, ba, bb, da, db, flow.vx, flow.vy, **kw)
            tb = time.perf_counter() - t
            t_variant[name].append(tb)
            monotone[name].append(bool(np.all(np.diff(r.objective) <= 1e-9 * np.abs(r.objective[:-1]).max())))
            if name == "bilevel":
                t_pair["align_pair"].append(tb)
                ok = r.superpixel_match >= 0  # the superpixels on the grid; the baseline's are the same
                assert np.array_equal(ok, base >= 0)
                acc["siftflow_only"].append(float((ga[ok] == gb[base[ok]]).mean()))
            ok = r.superpixel_match >= 0
            acc[name].append(float((ga[ok] == gb[r.superpixel_match[ok]]).mean()))
            rows = np.arange(len(ba))
            hit = any_fg[rows, r.proposal_match]
            q_p[name].append(float(iou[rows, r.proposal_match][hit].mean()) if hit.any() else float("nan"))
        print(f"pair {a + 1}/{n_pairs} ({stems[a]}, {stems[b]}): siftflow-only "
              f"{acc['siftflow_only'][-1]:.3f} bilevel {acc['bilevel'][-1]:.3f} Q_P {q_p['bilevel'][-1]:.3f}",
              flush=True)

    total = np.array(t_pair["dense_sift_x2"]) + np.array(t_pair["siftflow"]) + np.array(t_pair["align_pair"])
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
        "pixel_accuracy_siftflow_mean": float(np.mean(q_s)),
        "proposal_iou_mean": {k: float(np.nanmean(v)) for k, v in q_p.items()},
        "per_pair": {k: v for k, v in acc.items()},
        "per_pair_proposal_iou": q_p,
        "per_pair_pixel_accuracy": q_s,
        "objective_non_increasing_pairs": {k: int(sum(v)) for k, v in monotone.items()},
        "align_pair_seconds_median": {k: float(np.median(v)) for k, v in t_variant.items()},
    }
    lines = [
        "# Alignment benchmark (MIJR Sec. III-A)", "",
        f"Command: `.venv/bin/python benchmarks/bench_alignment.py --pairs {n_pairs} --pool {len(stems)}"
        f"{' --split ' + args.split if args.split else ''}`", "",
        f"ECSSD{' ' + args.split + ' split' if args.split else ''}, as the `alignment` stage runs it "
        f"(`alignment.align_pair`: SLIC 500 and 100 proposals at the image's size, dense SIFT and "
        f"SIFT-Flow on the {SIZE}x{SIZE} grid); the first {n_pairs} images, each paired with its nearest "
        f"neighbour among the first {len(stems)} by {how}. Superpixel GT label = majority (mean >= 0.5); "
        "Q_M accuracy = fraction of target superpixels (those on the grid) whose aligned superpixel has "
        f"the same label. Q_P = IoU of the GT contents of a target box and its matched box (crops at "
        f"{CROP}x{CROP}), over the boxes whose pair holds foreground.", "",
        f"*Eq. 1 non-increasing*: pairs (of {n_pairs}) whose Eq. 1 objective never rises over the K schedule.",
        "",
        "| alignment | Q_M accuracy | Q_P box IoU | Eq. 1 non-increasing | align_pair s (median) |",
        "|---|---|---|---|---|",
    ]
    for k, v in res["accuracy_mean"].items():
        qp = res["proposal_iou_mean"].get(k)
        mono = res["objective_non_increasing_pairs"].get(k)
        sec = res["align_pair_seconds_median"].get(k)
        lines.append(f"| {k} | {v:.4f} | {'' if qp is None else f'{qp:.4f}'} | {'' if mono is None else mono} | "
                     f"{'' if sec is None else f'{sec:.3f}'} |")
    lines.append(f"| random box of the retrieved image | | {res['proposal_iou_mean']['random box']:.4f} | | |")
    lines += ["", f"Q_S: SIFT-Flow's pixel label accuracy on the grid, mean over pairs: "
              f"{res['pixel_accuracy_siftflow_mean']:.4f}."]
    lines += ["", f"Bi-level better than SIFT-Flow-only on {wins} pairs, worse on {losses}.",
              "Paper (its data): 0.69 SIFT-Flow-only -> 0.89 bi-level.", "",
              f"Speed, median seconds per pair ({res['cpu']}):", "",
              "| step | s |", "|---|---|"]
    for k, v in res["seconds_per_pair_median"].items():
        lines.append(f"| {k} | {v:.3f} |")
    lines.append(f"| **total (dense SIFT x2 + SIFT-Flow + align_pair)** | {res['seconds_per_pair_total_median']:.3f} |")
    lines += ["", "Per image (not per pair), median s: " + ", ".join(
        f"{k} {v:.3f}" for k, v in res["seconds_per_image_median"].items()), ""]
    write_results("bench_alignment" + (f"_{args.split}" if args.split else ""), res, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
