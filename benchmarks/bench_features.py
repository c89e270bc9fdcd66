"""Deep feature taps (the ``deep_features`` stage): images per second, batch 1 vs 8, and MB per image.

Calls :func:`backbones.extract_features` (the function the stage calls) with the stage's defaults
(EfficientNet-Lite0, 224 x 224, taps s2..s32), on the embedded demo pool and on ``--n`` ECSSD images.
Batch 1 and batch 8 are timed alternately, round-robin, within one run, so that their ratio is fair
on a shared machine. MB per image is the size of the compressed float16 artifact the cache writes.

Usage::

    .venv/bin/python benchmarks/bench_features.py [--n 100] [--threads 1] [--rounds 3]

Writes ``benchmarks/results/bench_features.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import image_path, load_average, split_stems, write_results  # noqa: E402

DURATION = "~2 min (--n 100)"


def _images(which: str, n: int):
    from pipeline.pool import DEMO_IMAGES, load_image, write_demo_pool

    if which == "demo":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            write_demo_pool(Path(tmp))
            return [load_image(Path(tmp) / f"{s}.png") for s in DEMO_IMAGES]
    stems = split_stems("ECSSD", "train")[:n]
    return [load_image(image_path("ECSSD", s)) for s in stems]


def _artifact_bytes(feats: dict, i: int) -> int:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{t: v[i].astype(np.float16) for t, v in feats.items()})
    return buf.tell()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="ECSSD train images (default 100)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as one runner worker)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds per batch size")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import torch

    from backbones import extract_features, load_backbone
    from pipeline.stages.features import DeepFeaturesParams

    torch.set_num_threads(args.threads)
    p = DeepFeaturesParams()
    net = load_backbone(p.backbone, device="cpu")
    rows, data = [], {"params": {"backbone": p.backbone, "size": p.size, "taps": list(p.taps)},
                      "threads": args.threads, "load_before": load_average()}
    for which in ("demo", "ECSSD"):
        images = _images(which, args.n)
        extract_features(net, images[:2], taps=p.taps, batch_size=2, size=p.size)  # warm-up
        times = {1: [], 8: []}
        for _ in range(args.rounds):
            for bs in (1, 8):
                t0 = time.perf_counter()
                feats = extract_features(net, images, taps=p.taps, batch_size=bs, size=p.size)
                times[bs].append(time.perf_counter() - t0)
        sizes = [_artifact_bytes(feats, i) for i in range(len(images))]
        raw = sum(v[0].astype(np.float16).nbytes for v in feats.values())
        best = {bs: min(t) for bs, t in times.items()}
        entry = {"images": len(images), "images_per_s_batch1": len(images) / best[1],
                 "images_per_s_batch8": len(images) / best[8], "batch8_over_batch1": best[1] / best[8],
                 "mb_per_image_compressed": float(np.mean(sizes)) / 2**20, "mb_per_image_raw": raw / 2**20}
        data[which] = entry
        rows.append((which, entry))
    data["load_after"] = load_average()
    md = ["# deep_features: speed and cache size", "",
          f"EfficientNet-Lite0 at {p.size}x{p.size}, taps {', '.join(p.taps)}, float16; CPU, {args.threads} torch "
          f"thread(s); best of {args.rounds} alternating rounds. Load average before / after: "
          f"{data['load_before']} / {data['load_after']} (a shared machine: compare within the table).", "",
          "| pool | images | images/s batch 1 | images/s batch 8 | batch 8 / batch 1 | MB/image (compressed npz) | MB/image (raw float16) |",
          "|---|---|---|---|---|---|---|"]
    for which, e in rows:
        md.append(f"| {which} | {e['images']} | {e['images_per_s_batch1']:.1f} | {e['images_per_s_batch8']:.1f} | "
                  f"{e['batch8_over_batch1']:.2f}x | {e['mb_per_image_compressed']:.3f} | {e['mb_per_image_raw']:.3f} |")
    md += ["", f"Command: `.venv/bin/python benchmarks/bench_features.py --n {args.n} --threads {args.threads} "
           f"--rounds {args.rounds}`", ""]
    write_results("bench_features", data, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
