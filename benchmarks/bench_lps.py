"""LPS on the SOD benchmark: the published priors before and after promotion, against the paper's table.

For every prior map of ``../shared/data/sod/SOD/priors/<method>`` (Amulet, DSS, PiCANet: published deep
detectors; BSCA, GS, RBD: classical), the image's backbone taps (the ``deep_features`` stage's
defaults: EfficientNet-Lite0, 224 x 224) and a trained LPS model give the promoted map
(:func:`promote.lps_promote`, Alg. 2) for ``T = 1`` and ``T = 3``. Scores: max F, adaptive F, MAE,
S-measure (pysodmetrics), GT at 128; seconds per image of the promotion. The paper's own SOD numbers
(LPS, CVPR 2018, Table 2: adaptive F / MAE) are printed beside ours for Amulet and DSS, whose maps
here reproduce the paper's baselines.

Usage::

    .venv/bin/python benchmarks/bench_lps.py [--model lps-duts] [--iterations 1 3]

``--model`` is a shipped model name or a model file (``python -m pipeline train lps`` writes one).
Writes ``benchmarks/results/bench_lps.{json,md}``.
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
    dataset_dir,
    gt_path,
    image_path,
    load_average,
    read_mask,
    read_rgb,
    sod_scores,
    split_stems,
    write_results,
)

DURATION = "~4 min (SOD: 300 images x 6 priors x 2 settings)"

# LPS, CVPR 2018, Table 2, SOD rows: (adaptive F, MAE) of the prior and of the prior promoted by LPS.
PAPER = {"Amulet": ((0.7546, 0.1407), (0.7769, 0.1336)), "DSS": ((0.7867, 0.1262), (0.8061, 0.1187))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lps-duts", help="shipped model name or model file (default lps-duts)")
    ap.add_argument("--iterations", type=int, nargs="+", default=[1, 3], help="T values of Alg. 2")
    args = ap.parse_args(argv)

    import cv2
    import torch

    from backbones import extract_features, load_backbone
    from pipeline import models
    from pipeline.stages.features import DeepFeaturesParams
    from promote import AnchorNetwork, lps_promote

    torch.set_num_threads(2)
    ref = models.resolve("lps", args.model)
    model = ref.load()
    network = AnchorNetwork.from_state(model.arrays, model.hparams)
    p = DeepFeaturesParams()
    net = load_backbone(p.backbone, device="cpu")

    stems = split_stems("SOD", "test")
    gts = [read_mask(gt_path("SOD", s)) for s in stems]
    t0 = time.perf_counter()
    feats = []
    for s in stems:
        f = extract_features(net, [read_rgb(image_path("SOD", s))], taps=p.taps, batch_size=1, size=p.size)
        feats.append({t: f[t][0].astype(np.float16) for t in p.taps})
    feat_s = (time.perf_counter() - t0) / len(stems)

    priors_dir = dataset_dir("SOD") / "priors"
    rows, data = [], {"model": args.model, "model_sha256": ref.digest, "features_s_per_image": feat_s,
                      "load_before": load_average(), "priors": {}}
    for method in sorted(d.name for d in priors_dir.iterdir() if d.is_dir()):
        priors = []
        for s, g in zip(stems, gts):
            m = cv2.imread(str(priors_dir / method / f"{s}.png"), cv2.IMREAD_GRAYSCALE)
            if m.shape != g.shape:
                m = cv2.resize(m, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR)
            priors.append(m.astype(np.float32) / 255.0)
        entry = {"prior": sod_scores(priors, gts, s_measure=True)}
        for T in args.iterations:
            t1 = time.perf_counter()
            out = [lps_promote(f, pr, network, iterations=T) for f, pr in zip(feats, priors)]
            entry[f"T={T}"] = {**sod_scores(out, gts, s_measure=True),
                               "s_per_image": (time.perf_counter() - t1) / len(stems)}
        data["priors"][method] = entry
        print(method, {k: {m: round(v, 3) for m, v in e.items()} for k, e in entry.items()}, flush=True)
        for key, e in entry.items():
            paper = ""
            if method in PAPER:
                before, after = PAPER[method]
                pf, pm = before if key == "prior" else after
                paper = f"{pf:.3f} / {pm:.3f}" if key in ("prior", "T=1") else ""
            label = method if key == "prior" else f"{method} + LPS ({key})"
            rows.append(f"| {label} | {e['maxF']:.3f} | {e['adpF']:.3f} | {e['MAE']:.3f} | {e['Sm']:.3f} | "
                        f"{paper} |")
    lines = [
        "# LPS on SOD (300 images): published priors before and after promotion",
        "",
        f"Model `{args.model}` (sha256 {ref.digest[:12]}...). Backbone taps {feat_s:.3f} s per image; "
        f"load average before {data['load_before']}, after {load_average()}. Paper: LPS (CVPR 2018) "
        "Table 2, adaptive F / MAE, for the same priors on SOD.",
        "",
        "| map | max F | adaptive F | MAE | S-measure | paper adaptive F / MAE |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `.venv/bin/python benchmarks/bench_lps.py --model {args.model} "
        f"--iterations {' '.join(map(str, args.iterations))}`",
        "",
    ]
    write_results("bench_lps", data, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
