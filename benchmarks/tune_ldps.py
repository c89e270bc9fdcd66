"""Choose LDPS training options on ECSSD train (pool mode): the measurements behind the defaults in
``promote/ldps.py``.

Each configuration trains :func:`promote.train_relation_network` self-supervised on the ECSSD train
images and their prior maps (no ground truth in training) and scores the promoted maps against the GT
(max F, adaptive F, MAE, S-measure), with the training seconds. One training per prior and
configuration: the pool mode fits a network to one detector's maps. ``--features`` names the
feature stage whose taps the network reads (``deep_features``, the frozen ImageNet backbone, or
``u2netp_features``, the decoder of the saliency-trained U^2-Net-small), computed by the stage's own
function with its defaults.

Usage::

    .venv/bin/python benchmarks/tune_ldps.py [--n 500] [--threads 2] [--priors u2netp contrast arn]
        [--features deep_features] [--configs NAME ...] [--name tune_ldps]

Writes ``benchmarks/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    arn_detector,
    feature_layout,
    gt_path,
    image_path,
    load_average,
    read_mask,
    read_rgb,
    sod_scores,
    split_stems,
    taps_reader,
    write_results,
)

from pipeline.registry import FEATURE_STAGES  # noqa: E402

DURATION = "~12 min on 2 cores (u2netp on 500 images, then four trainings)"

# name -> options that differ from the ldps_fit defaults
CONFIGS = {
    "defaults": {},
    "class_balance": {"class_balance": True},
    "adam 1e-3": {"optimizer": "adam", "learning_rate": 1e-3},
    "aspp_stride 1 (the paper's)": {"aspp_stride": 1},
    # more optimisation steps: the paper trains 20k iterations at batch 1
    "epochs 10": {"epochs": 10},
    "epochs 30": {"epochs": 30},
    "epochs 10, batch 2": {"epochs": 10, "batch_size": 2},
}
DEFAULT_CONFIGS = ("defaults", "class_balance", "adam 1e-3", "aspp_stride 1 (the paper's)")
PRIORS = ("u2netp", "contrast", "arn")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="first N stems of ECSSD train.txt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--priors", nargs="+", choices=PRIORS, default=["u2netp"],
                    help="the detectors whose maps are promoted")
    # deep_features by default: the commands of the earlier results files (tune_ldps.md, ...) name none
    ap.add_argument("--features", choices=FEATURE_STAGES, default="deep_features",
                    help="the feature stage whose taps the network reads")
    ap.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(DEFAULT_CONFIGS),
                    help="configurations to train (names of CONFIGS)")
    ap.add_argument("--name", default="tune_ldps", help="results file name under benchmarks/results/")
    args = ap.parse_args(argv)

    import torch

    from detect.contrast import contrast_saliency
    from detect.u2netp import u2netp_map
    from pipeline.registry import params_as_dict
    from pipeline.stages.ldps import LdpsFitParams
    from promote.ldps import ldps_promote, resolve_taps, train_relation_network

    torch.set_num_threads(args.threads)
    stems = split_stems("ECSSD", "train")[:args.n]
    images = [read_rgb(image_path("ECSSD", s)) for s in stems]
    gts = [read_mask(gt_path("ECSSD", s)) for s in stems]
    defaults = params_as_dict(LdpsFitParams())
    defaults.pop("prior")
    defaults.pop("features", None)
    read_taps = taps_reader(args.features, args.threads)
    t0 = time.perf_counter()
    feats = [read_taps(im) for im in images]  # float16, as the stage caches them
    taps_s = (time.perf_counter() - t0) / len(images)
    taps = resolve_taps(tuple(defaults.pop("taps")), list(feats[0]))
    defaults["input_size"], strides = feature_layout(args.features)
    detectors = {"u2netp": u2netp_map, "contrast": contrast_saliency}
    if "arn" in args.priors:
        detectors["arn"] = arn_detector(args.threads)
    data = {"n": len(stems), "load_before": load_average(), "defaults": defaults, "features": args.features,
            "taps": list(taps), "taps_s_per_image": taps_s, "priors": {}}
    rows = []
    for prior_name in args.priors:
        priors = [detectors[prior_name](im) for im in images]
        result = {"prior": sod_scores(priors, gts, s_measure=True), "configs": {}}
        data["priors"][prior_name] = result
        rows.append(_row(f"{prior_name} prior", result["prior"], ""))
        for name in args.configs:
            change = CONFIGS[name]
            t0 = time.perf_counter()
            fit = train_relation_network(feats, priors, tap_strides=strides, taps=taps, **{**defaults, **change})
            seconds = time.perf_counter() - t0
            out = [ldps_promote(f, p, fit.network) for f, p in zip(feats, priors)]
            e = {**sod_scores(out, gts, s_measure=True), "train_s": seconds, "change": change}
            result["configs"][name] = e
            rows.append(_row(f"{prior_name} + ldps, {name}", e, f"{seconds:.0f}"))
            print(prior_name, name, e, flush=True)
    lines = [
        f"# LDPS training options on ECSSD train ({len(stems)} images, {', '.join(args.priors)} priors, pool mode)",
        "",
        f"Features: `{args.features}` (taps {', '.join(taps)}; {taps_s:.3f} s per image). "
        f"`ldps_fit` defaults except the named change: {defaults}. {args.threads} torch threads; load average "
        f"before {data['load_before']}, after {load_average()}.",
        "",
        "| map | max F | adaptive F | MAE | S-measure | training s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `.venv/bin/python benchmarks/tune_ldps.py --n {args.n} --threads {args.threads} "
        f"--priors {' '.join(args.priors)} --features {args.features} --configs {' '.join(repr(c) for c in args.configs)} --name {args.name}`",
        "",
    ]
    write_results(args.name, data, "\n".join(lines))
    return 0


def _row(label, e, seconds):
    return f"| {label} | {e['maxF']:.4f} | {e['adpF']:.4f} | {e['MAE']:.4f} | {e['Sm']:.4f} | {seconds} |"


if __name__ == "__main__":
    sys.exit(main())
