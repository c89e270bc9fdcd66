"""Bi-level CRF pseudo GT (MIJR Sec. IV-A): how right the trusted labels are, per prior.

On ECSSD train (the first ``--n`` stems of ``train.txt``), for the u2netp and contrast priors
(computed here), :func:`relearn.crf_pseudo_gt` labels each pixel trusted salient, trusted
background or uncertain. Reported per prior: the precision of the trusted pixels against the GT
(at 128), the share of pixels trusted, and the precision of each trusted class. The paper quotes an
accuracy lower bound of about 81% for its pseudo GT.

Usage::

    .venv/bin/python benchmarks/bench_pseudo_gt.py [--n 200]

Writes ``benchmarks/results/pseudo_gt.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import gt_path, image_path, load_average, read_mask, read_rgb, split_stems, write_results  # noqa: E402

DURATION = "~3 min (--n 200)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="first N stems of ECSSD train.txt")
    args = ap.parse_args(argv)

    from detect.contrast import contrast_saliency
    from detect.u2netp import u2netp_map
    from relearn import PSEUDO_BACKGROUND, PSEUDO_SALIENT, crf_pseudo_gt

    stems = split_stems("ECSSD", "train")[:args.n]
    images = [read_rgb(image_path("ECSSD", s)) for s in stems]
    gts = [read_mask(gt_path("ECSSD", s)) >= 128 for s in stems]
    data = {"n": len(stems), "load_before": load_average(), "priors": {}}
    rows = []
    for name, detector in (("u2netp", u2netp_map), ("contrast", contrast_saliency)):
        right = trusted = total = fg_right = fg_n = bg_right = bg_n = 0
        t0 = time.perf_counter()
        for im, g in zip(images, gts):
            px = crf_pseudo_gt(im, detector(im)).pixels
            fg, bg = px == PSEUDO_SALIENT, px == PSEUDO_BACKGROUND
            fg_right += int((fg & g).sum())
            fg_n += int(fg.sum())
            bg_right += int((bg & ~g).sum())
            bg_n += int(bg.sum())
            total += g.size
        right, trusted = fg_right + bg_right, fg_n + bg_n
        e = {"precision_trusted": right / max(trusted, 1), "share_trusted": trusted / total,
             "precision_salient": fg_right / max(fg_n, 1), "precision_background": bg_right / max(bg_n, 1),
             "s_per_image": (time.perf_counter() - t0) / len(stems)}
        data["priors"][name] = e
        rows.append(f"| {name} | {e['precision_trusted']:.3f} | {e['share_trusted']:.3f} | "
                    f"{e['precision_salient']:.3f} | {e['precision_background']:.3f} | {e['s_per_image']:.2f} |")
        print(name, e, flush=True)
    lines = [
        f"# Bi-level CRF pseudo GT on ECSSD train ({len(stems)} images)",
        "",
        "CRFa theta 5, 1, 2 and CRFc 200, 50, 20, w1 = 10, w2 = 3, 5 mean-field iterations; trusted salient = "
        "CRFa AND CRFc, trusted background = NOT (CRFa OR CRFc). Precision against the GT at 128, over pixels. "
        f"Load average before {data['load_before']}, after {load_average()}.",
        "",
        "| prior | precision of trusted pixels | share of pixels trusted | precision, salient | "
        "precision, background | s per image (prior + 2 CRFs) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `.venv/bin/python benchmarks/bench_pseudo_gt.py --n {args.n}`",
        "",
    ]
    write_results("pseudo_gt", data, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
