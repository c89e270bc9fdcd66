"""Compare two LDPS models on the first 200 stems of ECSSD train.txt (u2netp, contrast and ARN
priors; each model on the feature stage it was trained on): the check behind the default model.

Usage::

    .venv/bin/python benchmarks/compare_ldps_models.py MODEL  # against ldps-duts; prints the scores
"""
import sys, numpy as np
sys.path.insert(0, ".")
from benchmarks._common import taps_reader, arn_detector, read_rgb, read_mask, image_path, gt_path, split_stems, sod_scores
from detect.contrast import contrast_saliency
from detect.u2netp import u2netp_map
from pipeline import models
from promote.ldps import RelationNetwork, ldps_promote
stems = split_stems("ECSSD", "train")[:200]
ims = [read_rgb(image_path("ECSSD", s)) for s in stems]
gts = [read_mask(gt_path("ECSSD", s)) for s in stems]
nets = {}
for name in ("ldps-duts", sys.argv[1]):
    m = models.resolve("ldps", name).load()
    nets[name] = (RelationNetwork.from_state(m.arrays, m.hparams), m.meta.get("features", "deep_features"))
taps = {f: [taps_reader(f, 2)(im) for im in ims] for f in ("deep_features", "u2netp_features")}
arn = arn_detector(2)
for pname, det in (("u2netp", u2netp_map), ("contrast", contrast_saliency), ("arn", arn)):
    pri = [det(im) for im in ims]
    print(pname, "prior", {k: round(v, 4) for k, v in sod_scores(pri, gts, s_measure=True).items()}, flush=True)
    for name, (net, feat) in nets.items():
        out = [ldps_promote(f, p, net) for f, p in zip(taps[feat], pri)]
        print(pname, name, {k: round(v, 4) for k, v in sod_scores(out, gts, s_measure=True).items()}, flush=True)
