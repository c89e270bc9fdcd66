"""Choose LDPS training options on ECSSD train (pool mode): the measurements behind the defaults in
``promote/ldps.py``.

Each configuration trains :func:`promote.train_relation_network` self-supervised on the ECSSD train
images and their prior maps (no ground truth in training) and scores the promoted maps against the GT
(max F, adaptive F, MAE, S-measure), with the training seconds. One training per prior and
configuration: the pool mode fits a network to one detector's maps.

Usage::

    .venv/bin/python benchmarks/tune_ldps.py [--n 500] [--threads 2] [--priors u2netp contrast]
        [--configs NAME ...] [--name tune_ldps]

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

from benchmarks._common import gt_path, image_path, load_average, read_mask, read_rgb, sod_scores, split_stems, write_results  # noqa: E402

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
PRIORS = ("u2netp", "contrast")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="first N stems of ECSSD train.txt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--priors", nargs="+", choices=PRIORS, default=["u2netp"],
                    help="the detectors whose maps are promoted")
    ap.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(DEFAULT_CONFIGS),
                    help="configurations to train (names of CONFIGS)")
    ap.add_argument("--name", default="tune_ldps", help="results file name under benchmarks/results/")
    args = ap.parse_args(argv)

    import torch

    from backbones import extract_features, load_backbone
    from detect.contrast import contrast_saliency
    from detect.u2netp import u2netp_map
    from pipeline.registry import params_as_dict
    from pipeline.stages.ldps import LdpsFitParams
    from promote.ldps import ldps_promote, train_relation_network

    torch.set_num_threads(args.threads)
    stems = split_stems("ECSSD", "train")[:args.n]
    images = [read_rgb(image_path("ECSSD", s)) for s in stems]
    gts = [read_mask(gt_path("ECSSD", s)) for s in stems]
    defaults = params_as_dict(LdpsFitParams())
    defaults.pop("prior")
    taps = tuple(defaults.pop("taps"))
    net = load_backbone("efficientnet_lite0", device="cpu")
    feats = []
    for im in images:
        f = extract_features(net, [im], taps=taps, batch_size=1, size=224)
        feats.append({t: f[t][0].astype(np.float16) for t in taps})  # as the deep_features stage stores them
    strides = {t: net.tap_strides[t] for t in taps}
    detectors = {"u2netp": u2netp_map, "contrast": contrast_saliency}
    data = {"n": len(stems), "load_before": load_average(), "defaults": defaults, "priors": {}}
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
        f"`ldps_fit` defaults except the named change: {defaults}. {args.threads} torch threads; load average "
        f"before {data['load_before']}, after {load_average()}.",
        "",
        "| map | max F | adaptive F | MAE | S-measure | training s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `.venv/bin/python benchmarks/tune_ldps.py --n {args.n} --threads {args.threads} "
        f"--priors {' '.join(args.priors)} --configs {' '.join(repr(c) for c in args.configs)} --name {args.name}`",
        "",
    ]
    write_results(args.name, data, "\n".join(lines))
    return 0


def _row(label, e, seconds):
    return f"| {label} | {e['maxF']:.4f} | {e['adpF']:.4f} | {e['MAE']:.4f} | {e['Sm']:.4f} | {seconds} |"


if __name__ == "__main__":
    sys.exit(main())
