"""Choose how a promoter's output is combined with the prior, on ECSSD train: the measurements
behind the ``merge`` defaults of ``promote/lps.py`` and ``promote/ldps.py``.

LPS's paper outputs ``Y(T)`` alone. With a frozen backbone the embedding's ceiling is below a strong
prior's, so strong priors come out worse; this compares :func:`promote.merge_with_prior`'s rules
(``none``: the paper; ``confidence``: LDPS's Eq. 11; ``mean``: Eq. 5 with the prior kept as the
first averaged map; ``logodds``: the two maps' odds multiplied) with the given model, ``T = 1`` and
``T = 3``, on the first N stems of ECSSD ``train.txt`` (never a test split) with the ``u2netp`` and
``contrast`` priors (``--priors``; ``arn`` is the shipped ARN detector, a deep prior that does not
come from U2-Netp, for models that read the U2-Netp taps; ``gt`` is the ground truth itself: with
``none``, the promoter's ceiling when its regions are perfect). The taps are those of the feature
stage the model was trained on. ``--promoter ldps`` does the same for LDPS's discriminator map, whose
paper merges it by Eq. 10-11 (``confidence``).

Usage::

    .venv/bin/python benchmarks/tune_lps_merge.py [--promoter lps] [--model lps-duts] [--n 200]
        [--threads 2] [--priors u2netp contrast arn]

Writes ``benchmarks/results/tune_lps_merge.{json,md}`` (``--results NAME``: ``NAME.{json,md}``).
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
    gt_path,
    taps_reader,
    image_path,
    load_average,
    read_mask,
    read_rgb,
    sod_scores,
    split_stems,
    write_results,
)

DURATION = "~6 min on 2 cores (200 images: taps, two priors, LPS at T = 1 and 3)"
PRIORS = ("u2netp", "contrast")
DETECTORS = ("u2netp", "contrast", "arn", "gt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--promoter", choices=("lps", "ldps"), default="lps",
                    help="whose output is merged: LPS's Y(T) or LDPS's discriminator map (default lps)")
    ap.add_argument("--model", default=None,
                    help="shipped model name or model file (default lps-duts; for ldps, the stage's model)")
    ap.add_argument("--n", type=int, default=200, help="first N stems of ECSSD train.txt")
    ap.add_argument("--iterations", type=int, nargs="+", default=[1, 3], help="values of T")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--priors", nargs="+", choices=DETECTORS, default=list(PRIORS),
                    help="prior detectors (default: u2netp contrast); gt: the ground truth itself, the "
                         "promoter's ceiling with perfect regions")
    ap.add_argument("--results", default="tune_lps_merge", help="name of the result files (default tune_lps_merge)")
    args = ap.parse_args(argv)

    import torch

    from detect.contrast import contrast_saliency
    from detect.u2netp import u2netp_map
    from pipeline import models
    from pipeline.stages.features import model_feature_stage
    from pipeline.stages.ldps import LdpsParams
    from promote import AnchorNetwork, RelationNetwork, ldps_promote, lps_promote, merge_with_prior
    from promote.merge import MERGES

    torch.set_num_threads(args.threads)
    if args.model is None:
        args.model = "lps-duts" if args.promoter == "lps" else LdpsParams().model
    ref = models.resolve(args.promoter, args.model)
    model = ref.load()
    if args.promoter == "lps":
        network = AnchorNetwork.from_state(model.arrays, model.hparams)
    else:
        network = RelationNetwork.from_state(model.arrays, model.hparams)
        args.iterations = [1]  # LDPS has no iterations: one pass
    features = model_feature_stage(model)
    stems = split_stems("ECSSD", "train")[:args.n]
    images = [read_rgb(image_path("ECSSD", s)) for s in stems]
    gts = [read_mask(gt_path("ECSSD", s)) for s in stems]
    read_taps = taps_reader(features, args.threads)
    feats = [read_taps(im) for im in images]
    detectors = {"u2netp": u2netp_map, "contrast": contrast_saliency}
    if "arn" in args.priors:
        detectors["arn"] = arn_detector(args.threads)
    top = max(args.iterations)
    data = {"model": str(args.model), "sha256": ref.digest, "n": len(stems), "load_before": load_average(),
            "priors": {}}
    rows = []
    for prior_name in args.priors:
        if prior_name == "gt":  # the masks themselves (0 / 255) as maps in [0, 1]
            priors = [(g > 127).astype(np.float32) for g in gts]
        else:
            priors = [detectors[prior_name](im) for im in images]
        by_t = {t: [] for t in args.iterations}
        t0 = time.perf_counter()
        for f, p in zip(feats, priors):
            def keep(t, y):
                if t in by_t:
                    by_t[t].append(y)
            if args.promoter == "lps":
                lps_promote(f, p, network, iterations=top, merge="none", each=keep)  # Y(t) itself: merged below
            else:
                keep(1, ldps_promote(f, p, network, merge="none"))
        seconds = (time.perf_counter() - t0) / len(stems)
        result = {"prior": sod_scores(priors, gts, s_measure=True), "promoter_s_per_image": seconds, "merged": {}}
        rows.append(_row(f"{prior_name}", "-", "-", result["prior"]))
        for t in args.iterations:
            for rule in MERGES:
                out = [merge_with_prior(p, y, rule) for p, y in zip(priors, by_t[t])]
                e = sod_scores(out, gts, s_measure=True)
                result["merged"][f"T={t} {rule}"] = e
                rows.append(_row(prior_name, t, rule, e))
                print(prior_name, t, rule, e, flush=True)
        data["priors"][prior_name] = result
    lines = [
        f"# {args.promoter.upper()} output merged with the prior, on ECSSD train ({len(stems)} images)",
        "",
        f"Model `{args.model}` (sha256 {ref.digest[:12]}..., on {features}). `merge`: `none` is the "
        + ("paper's Y(T)" if args.promoter == "lps" else "discriminator's map alone")
        + "; `confidence` takes per pixel the map further from 0.5 (LDPS Eq. 11"
        + (", the LDPS paper's output" if args.promoter == "ldps" else "")
        + "); `mean` averages the two; `logodds` multiplies their odds, sigmoid(logit(prior) + "
        "logit(output)). "
        + ("T: iterations of LPS's Alg. 2. " if args.promoter == "lps" else "LDPS has no iterations (T = 1: one pass). ") +
        f"{args.threads} torch threads; load average before {data['load_before']}, after {load_average()}.",
        "",
        "| prior | T | merge | max F | adaptive F | MAE | S-measure |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Command: `.venv/bin/python benchmarks/tune_lps_merge.py"
        + (f" --promoter {args.promoter}" if args.promoter != "lps" else "")
        + f" --model {args.model} --n {args.n} "
        f"--iterations {' '.join(map(str, args.iterations))} --threads {args.threads}"
        + (f" --priors {' '.join(args.priors)}" if list(args.priors) != list(PRIORS) else "")
        + (f" --results {args.results}" if args.results != "tune_lps_merge" else "") + "`",
        "",
    ]
    write_results(args.results, data, "\n".join(lines))
    return 0


def _row(prior, t, rule, e):
    return f"| {prior} | {t} | {rule} | {e['maxF']:.4f} | {e['adpF']:.4f} | {e['MAE']:.4f} | {e['Sm']:.4f} |"


if __name__ == "__main__":
    sys.exit(main())
