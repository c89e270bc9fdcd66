"""Compare two LDPS models on the first 200 stems of ECSSD train.txt (u2netp, contrast and ARN
priors; each model on the feature stage it was trained on): the check behind the default model.

Usage::

    .venv/bin/python benchmarks/compare_ldps_models.py MODEL [--threads 2]  # against ldps-duts

``MODEL``: a model file or a shipped name. The scores (max F, adaptive F, MAE, S-measure) are printed
one line per prior and map; ``benchmarks/results/compare_ldps_models.txt`` is such a print.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    arn_detector,
    gt_path,
    image_path,
    read_mask,
    read_rgb,
    sod_scores,
    split_stems,
    taps_reader,
)

DURATION = "~5 min on 2 cores (200 images: both feature stages, three priors, two models)"


def main(argv=None) -> int:
    from detect.contrast import contrast_saliency
    from detect.u2netp import u2netp_map
    from pipeline import models
    from pipeline.stages.features import model_feature_stage
    from promote.ldps import RelationNetwork, ldps_promote

    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a model file or a shipped name, compared with ldps-duts")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    stems = split_stems("ECSSD", "train")[:200]
    ims = [read_rgb(image_path("ECSSD", s)) for s in stems]
    gts = [read_mask(gt_path("ECSSD", s)) for s in stems]
    nets = {}
    for name in ("ldps-duts", args.model):
        m = models.resolve("ldps", name).load()
        nets[name] = (RelationNetwork.from_state(m.arrays, m.hparams), model_feature_stage(m))
    taps = {f: [taps_reader(f, args.threads)(im) for im in ims] for f in ("deep_features", "u2netp_features")}
    arn = arn_detector(args.threads)
    for pname, det in (("u2netp", u2netp_map), ("contrast", contrast_saliency), ("arn", arn)):
        pri = [det(im) for im in ims]
        print(pname, "prior", {k: round(v, 4) for k, v in sod_scores(pri, gts, s_measure=True).items()}, flush=True)
        for name, (net, feat) in nets.items():
            out = [ldps_promote(f, p, net) for f, p in zip(taps[feat], pri)]
            print(pname, name, {k: round(v, 4) for k, v in sod_scores(out, gts, s_measure=True).items()}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
