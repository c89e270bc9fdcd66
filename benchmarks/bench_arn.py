"""ARN benchmark: the detector against the package's priors and the published maps, its ablations,
and its speed.

* **ECSSD test** (the 500 stems of ``../shared/data/sod/ECSSD/test.txt``) and **SOD** (300 images):
  ARN's maps beside ``u2netp``, ``contrast`` and ``gradsal`` (read from the map folders of a pipeline
  run: ``--ecssd-maps OUT`` / ``--sod-maps OUT`` hold ``OUT/<stage>/<stem>.png``, made by
  ``python -m pipeline run --stages u2netp,contrast,gradsal --pool P --gt G --out OUT``) and, on SOD,
  the six published maps of ``../shared/data/sod/SOD/priors/`` (Amulet, DSS, PiCANet; BSCA, GS, RBD).
* **Models**: ``--model`` (default: the shipped ``arn-duts``) and the ablation models of
  ``--ablations DIR`` (``DIR/NAME.npz``, written by ``benchmarks/tune_arn.py --save DIR``: trained on
  DUTS-TR-1k, early-stopped on ECSSD train).
* **Speed**: seconds per image of the backbone taps and of the decoder (batch 1 and 8, 224 x 224).

Scores from the package's evaluation (:func:`pipeline.evaluation.evaluate_methods`: max F,
adaptive F, MAE, S-measure, max E). Each image's taps are those of the ``deep_features`` defaults
(EfficientNet-Lite0, 224 x 224, float16).

Usage::

    .venv/bin/python benchmarks/bench_arn.py --ecssd-maps ECSSD_RUN --sod-maps SOD_RUN \\
        [--model arn-duts] [--ablations DIR] [--threads 2]

Writes ``benchmarks/results/arn.{json,md}``.
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
    read_map,
    read_mask,
    read_rgb,
    split_stems,
    write_results,
)

DURATION = "~8 min on 2 cores (taps of 800 images, five decoders, the evaluation)"
METRICS = (("max_f", "max F"), ("adp_f", "adaptive F"), ("mae", "MAE"), ("s_measure", "S-measure"), ("max_e", "max E"))
LOWER_BETTER = {"mae"}
OURS = ("u2netp", "contrast", "gradsal")
PUBLISHED = ("Amulet", "DSS", "PiCANet", "BSCA", "GS", "RBD")
CLASSICAL = ("contrast", "gradsal", "BSCA", "GS", "RBD")  # the maps ARN must beat on every metric
# ARN (Sun et al. 2018), Table 1, ECSSD: MAE 0.0637, F-measure 0.9133 (VGG16 fine-tuned on 9.5k images)
PAPER_ECSSD = {"mae": 0.0637, "max_f": 0.9133}


def _taps(backbone, dataset, stems, size, taps):
    from backbones import extract_features

    feats, t0 = [], time.perf_counter()
    for i in range(0, len(stems), 8):
        images = [read_rgb(image_path(dataset, s)) for s in stems[i:i + 8]]
        f = extract_features(backbone, images, taps=taps, batch_size=len(images), size=size)
        feats += [{t: f[t][j].astype(np.float16) for t in taps} for j in range(len(images))]
    return feats, (time.perf_counter() - t0) / len(stems)


def _load(value):
    from detect.arn import ArnNetwork
    from pipeline import models

    ref = models.resolve("arn", str(value))
    m = ref.load()
    return ArnNetwork.from_state(m.arrays, m.hparams), m.meta


def _score(maps: dict, gts: dict) -> dict:
    from pipeline.evaluation import evaluate_methods

    res = evaluate_methods(maps, gts, log=False, n_jobs=2)
    return {m: {k: float(res.pooled[m][k]) for k, _ in METRICS} for m in res.methods}


def _speed(network, feats):
    from detect.arn import arn_saliency

    rows = {}
    for batch in (1, 8):
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            arn_saliency(feats[:16], network, batch_size=batch)
            best = min(best, (time.perf_counter() - t0) / 16)
        rows[batch] = best
    return rows


def _beats(scores, ours, others):
    """Per other map: the metrics where ``ours`` is not better."""
    out = {}
    for o in others:
        if o not in scores:
            continue
        worse = [k for k, _ in METRICS if (scores[ours][k] >= scores[o][k] if k in LOWER_BETTER
                                           else scores[ours][k] <= scores[o][k])]
        out[o] = worse
    return out


def _table(scores, order):
    rows = ["| map | " + " | ".join(label for _, label in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name in order:
        if name in scores:
            rows.append(f"| {name} | " + " | ".join(f"{scores[name][k]:.3f}" for k, _ in METRICS) + " |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="arn-duts", help="shipped model name or model file")
    ap.add_argument("--ablations", type=Path, help="folder of tune_arn.py --save models (NAME.npz)")
    ap.add_argument("--ecssd-maps", type=Path, required=True)
    ap.add_argument("--sod-maps", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from backbones import load_backbone
    from detect.arn import arn_saliency
    from pipeline.stages.features import DeepFeaturesParams

    torch.set_num_threads(args.threads)
    fp = DeepFeaturesParams()
    backbone = load_backbone(fp.backbone, device="cpu")
    networks = {"ARN": _load(args.model)}
    if args.ablations is not None:
        for path in sorted(args.ablations.glob("*.npz")):
            networks[f"ARN-1k {path.stem.replace('_', ' ')}"] = _load(path)
    t_start = time.perf_counter()
    result = {"models": {n: {"file": str(args.model) if n == "ARN" else n, "training": meta.get("training", {}),
                             "hparams": meta.get("hparams", {})} for n, (_, meta) in networks.items()},
              "datasets": {}}
    for dataset, split, folder in (("ECSSD", "test", args.ecssd_maps), ("SOD", "test", args.sod_maps)):
        stems = split_stems(dataset, split)
        gts = {s: read_mask(gt_path(dataset, s)) for s in stems}
        feats, taps_s = _taps(backbone, dataset, stems, fp.size, tuple(fp.taps))
        maps, seconds = {}, {}
        for name, (net, _) in networks.items():
            t0 = time.perf_counter()
            out = arn_saliency(feats, net, [gts[s].shape for s in stems])
            seconds[name] = (time.perf_counter() - t0) / len(stems)
            maps[name] = dict(zip(stems, out))
        for prior in OURS:
            maps[prior] = {s: read_map(folder / prior / f"{s}.png", gts[s].shape) for s in stems}
        if dataset == "SOD":
            for prior in PUBLISHED:
                maps[prior] = {s: read_map(dataset_dir("SOD") / "priors" / prior / f"{s}.png", gts[s].shape)
                               for s in stems}
        scores = _score(maps, gts)
        result["datasets"][dataset] = {"scores": scores, "taps_s_per_image": taps_s,
                                       "decoder_s_per_image": seconds,
                                       "not_better_than": _beats(scores, "ARN", CLASSICAL)}
        print(dataset, {k: round(v["max_f"], 3) for k, v in scores.items()}, flush=True)
        if dataset == "ECSSD":
            result["speed"] = _speed(networks["ARN"][0], feats)
    total = time.perf_counter() - t_start

    ec, sod = result["datasets"]["ECSSD"], result["datasets"]["SOD"]
    ablation_names = [n for n in networks if n != "ARN"]
    ship = result["models"]["ARN"]["training"]
    lines = [
        "# ARN: attentional recurrent network (detector)", "",
        f"`.venv/bin/python benchmarks/bench_arn.py --ecssd-maps ECSSD_RUN --sod-maps SOD_RUN --model {args.model}"
        f"{' --ablations DIR' if args.ablations else ''} --threads {args.threads}` ({total / 60:.1f} min; load "
        f"average {load_average()} at the end). ARN = the decoder over frozen EfficientNet-Lite0 taps "
        f"(224 x 224); `ARN` is the model `{args.model}` (see its card); the `ARN-1k` rows are the ablation "
        "models of `benchmarks/tune_arn.py` (DUTS-TR-1k, early-stopped on ECSSD train). The priors' maps are "
        "the pipeline's own (`u2netp`, `contrast`, `gradsal`) and, on SOD, the published ones.", "",
        "## ECSSD test (500 images)", "", *_table(ec["scores"], ["ARN", *ablation_names, *OURS]), "",
        f"The paper (Table 1, ECSSD, all 1000 images, VGG16 fine-tuned on 9.5k MSRA10K + DUT-OMRON images on a "
        f"GPU): F-measure {PAPER_ECSSD['max_f']}, MAE {PAPER_ECSSD['mae']}.", "",
        "## SOD (300 images)", "", *_table(sod["scores"], ["ARN", *ablation_names, *OURS, *PUBLISHED]), "",
        "## Targets", "",
    ]
    for name, d in (("ECSSD test", ec), ("SOD", sod)):
        for other, worse in d["not_better_than"].items():
            lines.append(f"- {name}: ARN vs {other}: " + ("better on every metric" if not worse
                                                          else f"**not better on {', '.join(worse)}**"))
    lines.append(f"- ECSSD test max F {ec['scores']['ARN']['max_f']:.3f} (target >= 0.85).")
    lines += ["", "## Speed (this machine, "
              f"{args.threads} threads)", "",
              f"- backbone taps: {ec['taps_s_per_image']:.3f} s per image (batches of 8, 224 x 224);",
              f"- decoder: {result['speed'][1]:.4f} s per image at batch 1, {result['speed'][8]:.4f} at batch 8;",
              f"- training of `{args.model}`: {ship.get('seconds', '?')} s (its card)." if ship else ""]
    write_results("arn", result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
