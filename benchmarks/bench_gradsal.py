"""GradSal vs the classical contrast prior on the ECSSD test split: accuracy and seconds per image.

For every image of the (sub)set, in one run and one process:

* ``gradsal.saliency(image, efficientnet_lite0)`` with its defaults (T = 10 steps at the
  tuned input resolution), timed end to end (descent + SLIC + low-level refinement);
* ``detect.contrast.contrast_saliency(image)`` (the ``contrast`` prior), timed.

Metrics with pysodmetrics: max F-measure (beta^2 = 0.3; mean F curve over images, max over
256 thresholds), adaptive F, MAE, S-measure.  The ``raw`` and ``smoothed`` GradSal stages are
scored too (ablation of Secs. 3.2-3.3).

Timing: torch runs with one intra-op thread (on a shared 2-core machine two spinning OpenMP
threads were 7-10x slower under load from other processes); the load average is recorded.

Run: ``.venv/bin/python benchmarks/bench_gradsal.py [--n 500]`` (``--n`` < 500 scores a fixed
random subset of the test split, ``numpy.random.default_rng(0)``).  Writes
``benchmarks/results/bench_gradsal.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import load_average, load_split, sod_scores, write_results  # noqa: E402

DURATION = "~10 min (--n 500; about 1 s per image)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="test images (500 = the whole split)")
    args = ap.parse_args(argv)

    import torch

    from backbones import load_backbone
    from detect.contrast import contrast_saliency
    from gradsal import saliency

    torch.set_num_threads(1)
    stems, images, gts = load_split("ECSSD", "test", args.n if args.n < 500 else None)
    model = load_backbone("efficientnet_lite0", device="cpu")
    defaults = {k: p.default for k, p in inspect.signature(saliency).parameters.items()
                if p.default is not inspect.Parameter.empty}
    load_before = load_average()

    # Warm-up (numba compilation, torch allocator) on an image outside the scored timing.
    saliency(images[0], model)
    contrast_saliency(images[0])

    maps = {"gradsal": [], "gradsal_raw": [], "gradsal_smoothed": [], "contrast": []}
    t_gs = t_ct = 0.0
    decreased = 0
    for i, im in enumerate(images):
        t0 = time.perf_counter()
        res = saliency(im, model)
        t1 = time.perf_counter()
        low = contrast_saliency(im)
        t2 = time.perf_counter()
        t_gs += t1 - t0
        t_ct += t2 - t1
        decreased += bool(res.cost[-1] < res.cost[0])
        maps["gradsal"].append(res.refined)
        maps["gradsal_raw"].append(res.raw)
        maps["gradsal_smoothed"].append(res.smoothed)
        maps["contrast"].append(low)
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(images)}  gradsal {t_gs / (i + 1):.2f} s/img  contrast {t_ct / (i + 1):.3f} s/img",
                  file=sys.stderr, flush=True)

    n = len(images)
    scores = {k: sod_scores(v, gts, s_measure=True) for k, v in maps.items()}
    data = {
        "dataset": "ECSSD test",
        "n_images": n,
        "subset": "all" if n == 500 else f"fixed random subset, numpy.random.default_rng(0), {n} of 500",
        "gradsal_defaults": defaults,
        "backbone": "efficientnet_lite0",
        "torch_threads": 1,
        "seconds_per_image": {"gradsal": t_gs / n, "contrast": t_ct / n},
        "gradsal_over_contrast_time": t_gs / t_ct,
        "frac_cost_decreased": decreased / n,
        "scores": scores,
        "load_average_before_after": [load_before, load_average()],
    }
    rows = "\n".join(
        f"| {k} | {v['maxF']:.4f} | {v['adpF']:.4f} | {v['MAE']:.4f} | {v['Sm']:.4f} |"
        for k, v in scores.items()
    )
    md = f"""# GradSal vs contrast prior, ECSSD test

{n} images ({data['subset']}). Backbone EfficientNet-Lite0 on the CPU, one torch thread.
GradSal defaults: `{defaults}`.
Command: `.venv/bin/python benchmarks/bench_gradsal.py --n {args.n}`.

| map | maxF | adpF | MAE | S-measure |
|---|---|---|---|---|
{rows}

`gradsal_raw` / `gradsal_smoothed` are the intermediate maps of Algorithm 1 (ablation of
Sec. 3.2 smoothing and Sec. 3.3 refinement); `gradsal` is the final refined map.

Seconds per image (same run, same process; load average before / after
{data['load_average_before_after'][0]} / {data['load_average_before_after'][1]}): gradsal {t_gs / n:.2f} s,
contrast {t_ct / n:.3f} s (ratio gradsal/contrast {t_gs / t_ct:.1f}x). The cost of Eq. 1 fell
from X(0) to X(T) on {decreased}/{n} images.
"""
    write_results("bench_gradsal", data, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
