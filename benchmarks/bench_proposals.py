"""Object proposals: recall of the salient objects' boxes on ECSSD train (MIJR Sec. III-A).

Run: ``.venv/bin/python benchmarks/bench_proposals.py [--n 200]``; writes
``benchmarks/results/bench_proposals.json`` and ``.md``.

The object level of the bi-level alignment can only help where some selected proposal covers the
salient object. Objects: the bounding boxes of the connected components of the ground truth
(mask > 0.5) covering at least 1% of the image, and, separately, the box of the whole mask. Per
image and object, the best IoU of the boxes; reported are the mean best IoU and the share of
objects with best IoU >= 0.5 and >= 0.7, for the 1000 EdgeBoxes candidates and for the
``V = 100`` kept by Eq. 4 (as the ``proposals`` stage runs them, full-size images), under a few
settings: EdgeBoxes' ``alpha`` / ``beta`` and Eq. 4's spread weight. The split is ECSSD *train*
(settings are chosen there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment.proposals import edge_boxes, select_proposals  # noqa: E402
from benchmarks._common import gt_path, image_path, load_average, read_rgb, split_stems, write_results  # noqa: E402

DURATION = "~5 min (--n 200)"
EDGE_SETTINGS = {"alpha 0.65, beta 0.75 (default)": (0.65, 0.75),
                 "alpha 0.55, beta 0.75": (0.55, 0.75),
                 "alpha 0.65, beta 0.85": (0.65, 0.85)}
SPREAD_WEIGHTS = (0.0, 1.0, 3.0)
MIN_OBJECT_AREA = 0.01


def _objects(mask):
    """Boxes (col0, row0, col1, row1) of the GT's components >= 1% of the image, and the whole mask's."""
    fg = (mask > 127).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    comps = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area >= MIN_OBJECT_AREA * fg.size]
    ys, xs = np.nonzero(fg)
    whole = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if xs.size else None
    return np.array(comps, np.float64).reshape(-1, 4), whole


def _best_iou(boxes, obj):
    b = boxes.astype(np.float64)
    iw = np.clip(np.minimum(b[:, 2], obj[2]) - np.maximum(b[:, 0], obj[0]), 0, None)
    ih = np.clip(np.minimum(b[:, 3], obj[3]) - np.maximum(b[:, 1], obj[1]), 0, None)
    inter = iw * ih
    union = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + (obj[2] - obj[0]) * (obj[3] - obj[1]) - inter
    return float((inter / union).max()) if len(b) else 0.0


def _summary(ious):
    a = np.asarray(ious)
    return {"n": int(a.size), "mean_best_iou": float(a.mean()), "recall_iou_0.5": float((a >= 0.5).mean()),
            "recall_iou_0.7": float((a >= 0.7).mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="ECSSD train images (default 200)")
    args = ap.parse_args(argv)
    stems = split_stems("ECSSD", "train")[: args.n]
    load_before = load_average()
    t0 = time.perf_counter()
    rows = {}  # (setting, set) -> {"objects": [...], "whole": [...]}
    for stem in stems:
        img = read_rgb(image_path("ECSSD", stem))
        gt = cv2.imread(str(gt_path("ECSSD", stem)), cv2.IMREAD_GRAYSCALE)
        comps, whole = _objects(gt)
        for edge_name, (alpha, beta) in EDGE_SETTINGS.items():
            boxes, scores = edge_boxes(img, max_boxes=1000, alpha=alpha, beta=beta)
            sets = {"1000 candidates": boxes}
            if edge_name.endswith("(default)"):
                for sw in SPREAD_WEIGHTS:
                    sel = select_proposals(boxes, scores, img.shape, n_select=100, spread_weight=sw) \
                        if len(boxes) >= 100 else np.arange(len(boxes))
                    sets[f"100 selected, spread weight {sw:g}"] = boxes[sel]
            else:
                sel = select_proposals(boxes, scores, img.shape, n_select=100) \
                    if len(boxes) >= 100 else np.arange(len(boxes))
                sets["100 selected, spread weight 1"] = boxes[sel]
            for set_name, b in sets.items():
                r = rows.setdefault((edge_name, set_name), {"objects": [], "whole": []})
                r["objects"] += [_best_iou(b, o) for o in comps]
                if whole is not None:
                    r["whole"].append(_best_iou(b, whole))
    seconds = time.perf_counter() - t0
    table = [{"edge_boxes": e, "set": s, "objects": _summary(v["objects"]), "whole_mask": _summary(v["whole"])}
             for (e, s), v in rows.items()]
    lines = ["# Object proposals: recall of the salient objects on ECSSD train", "",
             f"Command: `.venv/bin/python benchmarks/bench_proposals.py --n {args.n}` ({len(stems)} images, "
             f"{table[0]['objects']['n']} objects of >= 1% of the image; {seconds:.0f} s, load average "
             f"{load_before} -> {load_average()}). Full-size images, the gradient edge map (no structured-edge "
             "model file), as the `proposals` stage runs by default.", "",
             "| EdgeBoxes | boxes | objects: mean best IoU | IoU >= 0.5 | IoU >= 0.7 | whole mask: mean best IoU "
             "| IoU >= 0.5 | IoU >= 0.7 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        o, w = r["objects"], r["whole_mask"]
        lines.append(f"| {r['edge_boxes']} | {r['set']} | {o['mean_best_iou']:.3f} | {o['recall_iou_0.5']:.3f} | "
                     f"{o['recall_iou_0.7']:.3f} | {w['mean_best_iou']:.3f} | {w['recall_iou_0.5']:.3f} | "
                     f"{w['recall_iou_0.7']:.3f} |")
    lines.append("")
    write_results("bench_proposals", {"n_images": len(stems), "rows": table, "seconds": seconds}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
