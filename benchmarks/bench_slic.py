"""SLIC backends compared: seconds per image and boundary recall on real images with GT.

Boundary recall = fraction of GT object-boundary pixels within 2 px of a superpixel boundary
(the usual superpixel benchmark measure). Both backends of :func:`superpixels.slic` are timed in
the same run on the same images; their time ratio is reported.

Run: ``.venv/bin/python benchmarks/bench_slic.py [--dataset ECSSD] [--split train] [--n 60]``;
writes ``benchmarks/results/bench_slic.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import gt_path, image_path, read_mask, read_rgb, split_stems, write_results  # noqa: E402
from superpixels import slic  # noqa: E402

DURATION = "~2 min (--n 60)"


def boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, bool)
    b[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    b[1:, :] |= labels[1:, :] != labels[:-1, :]
    return b


def boundary_recall(labels: np.ndarray, gt: np.ndarray, tol: int = 2) -> float:
    gt_b = boundaries(gt.astype(np.int32))
    if not gt_b.any():
        return float("nan")
    near = ndimage.binary_dilation(boundaries(labels), iterations=tol)
    return float((near & gt_b).sum() / gt_b.sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ECSSD")
    ap.add_argument("--split", default="train")
    ap.add_argument("--n", type=int, default=60, help="number of images (first N of the split)")
    args = ap.parse_args(argv)
    stems = split_stems(args.dataset, args.split)[: args.n]
    images = [read_rgb(image_path(args.dataset, s)) for s in stems]
    gts = [read_mask(gt_path(args.dataset, s)) >= 128 for s in stems]
    rows, data = [], {"dataset": args.dataset, "split": args.split, "n_images": len(stems), "results": {}}
    for n_segments in (100, 500):
        for backend in ("skimage", "opencv"):
            slic(images[0], n_segments, 10.0, backend=backend)  # warm-up
            t0 = time.perf_counter()
            labels = [slic(im, n_segments, 10.0, backend=backend) for im in images]
            sec = (time.perf_counter() - t0) / len(images)
            br = np.nanmean([boundary_recall(l, g) for l, g in zip(labels, gts)])
            count = np.mean([l.max() + 1 for l in labels])
            data["results"][f"{backend}_{n_segments}"] = {"seconds": sec, "boundary_recall": br, "superpixels": count}
            rows.append(f"| {n_segments} | {backend} | {sec * 1000:.1f} | {br:.3f} | {count:.0f} |")
        r = data["results"]
        data["results"][f"speed_ratio_{n_segments}"] = r[f"skimage_{n_segments}"]["seconds"] / r[f"opencv_{n_segments}"]["seconds"]
    md = [
        f"# SLIC backends on {args.dataset} {args.split} (first {len(stems)} images)",
        "",
        "| n_segments | backend | ms / image | boundary recall (2 px) | superpixels |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "skimage / opencv time ratio: "
        + ", ".join(f"{n}: {data['results'][f'speed_ratio_{n}']:.2f}" for n in (100, 500)),
        "",
        f"Command: `.venv/bin/python benchmarks/bench_slic.py --dataset {args.dataset} --split {args.split} "
        f"--n {args.n}`",
        "",
    ]
    write_results("bench_slic", data, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
