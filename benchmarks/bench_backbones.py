"""Backbone speed on the CPU: seconds per image at batch 1 vs batch 8, classification and features.

Classification is ``Backbone.classify`` (preprocessing included); feature extraction is
``extract_features`` with the five stride taps s2..s32.

Speed does not depend on the weight values, so VGG16 / MobileNetV2 run with random
weights when their torchvision files are absent (reported in the output). Images are
scikit-image's sample RGB images, cycled to ``--n-images``; each measurement is the
median of ``--repeats`` runs after one warm-up. The speed-up is the ratio of the two
timings taken in the same run.

Usage::

    .venv/bin/python benchmarks/bench_backbones.py [--models efficientnet_lite0,mobilenet_v2,vgg16]
        [--n-images 8] [--repeats 3] [--threads 1]

One torch thread is the default: on a 2-core machine shared with other jobs, two
OpenMP threads spin-wait against the other processes and ran 3-30x slower than one in
a quick check (run with ``--threads 0`` to see torch's default).

Writes ``benchmarks/results/bench_backbones.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbones import WeightsNotFoundError, extract_features, load_backbone  # noqa: E402
from benchmarks._common import write_results  # noqa: E402

DURATION = "~3 min (three models, 8 images)"
TAPS = ("s2", "s4", "s8", "s16", "s32")


def sample_images(n: int) -> list[np.ndarray]:
    pool = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.cat()]
    return [pool[i % len(pool)] for i in range(n)]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN kernel selection, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_model(name: str, images: list[np.ndarray], repeats: int) -> dict:
    try:
        net = load_backbone(name, device="cpu")
        weights = "pretrained"
    except WeightsNotFoundError:
        net = load_backbone(name, device="cpu", pretrained=False)
        weights = "random (torchvision file absent; speed is weight-independent)"
    n = len(images)

    def classify(batch):
        return lambda: [net.classify(images[i : i + batch], topk=5) for i in range(0, n, batch)]

    def features(batch):
        return lambda: extract_features(net, images, taps=TAPS, batch_size=batch)

    row = {"model": name, "weights": weights, "n_images": n}
    for task, make in (("classify", classify), ("features", features)):
        s1 = timed(make(1), repeats) / n
        s8 = timed(make(8), repeats) / n
        row[task] = {"s_per_image_batch1": s1, "s_per_image_batch8": s8, "speedup_batch8_vs_1": s1 / s8}
        print(f"{name:18s} {task:9s} batch1 {s1 * 1e3:8.1f} ms/img  batch8 {s8 * 1e3:8.1f} ms/img  "
              f"ratio {s1 / s8:5.2f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet_lite0,mobilenet_v2,vgg16")
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads; 0 keeps torch's default (one per core)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    images = sample_images(args.n_images)
    rows = [bench_model(m, images, args.repeats) for m in args.models.split(",")]
    meta = {
        "device": "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1min": os.getloadavg()[0],
        "note": "absolute timings depend on the machine's load (recorded); "
        "the batch-8 / batch-1 ratios are measured in the same run.",
        "input": "224x224 (images resized from their own sizes; preprocessing included)",
        "repeats": args.repeats,
    }
    lines = [
        "# Backbone speed on CPU (seconds per image)",
        "",
        f"torch {meta['torch']}, {meta['torch_threads']} threads, {meta['cpu_count']} cores, "
        f"1-min load average at the end {meta['load_average_1min']:.1f}. {meta['note']}",
        "",
        "| model | weights | task | s/img batch 1 | s/img batch 8 | speed-up (batch 8 vs 1) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for task in ("classify", "features"):
            t = r[task]
            lines.append(
                f"| {r['model']} | {r['weights'].split(' ')[0]} | {task} | {t['s_per_image_batch1']:.4f} | "
                f"{t['s_per_image_batch8']:.4f} | {t['speedup_batch8_vs_1']:.2f} |"
            )
    lines += ["", f"Command: `.venv/bin/python benchmarks/bench_backbones.py --models {args.models} "
              f"--n-images {args.n_images} --repeats {args.repeats} --threads {args.threads}`", ""]
    write_results("bench_backbones", {"meta": meta, "results": rows}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
