"""LPS benchmark: priors before and after promotion on SOD (published priors) and ECSSD test.

* **SOD** (300 images): the six published prior maps of ``../shared/data/sod/SOD/priors/<method>``
  (Amulet, DSS, PiCANet: deep detectors; BSCA, GS, RBD: classical), beside the paper's own SOD
  numbers (LPS, CVPR 2018, Table 2: adaptive F / MAE) for Amulet and DSS, whose maps here reproduce
  the paper's baselines.
* **ECSSD test** (the 500 stems of ``../shared/data/sod/ECSSD/test.txt``): the package's own priors
  ``u2netp``, ``contrast`` and ``gradsal``, read from the map folders of a pipeline run
  (``--ecssd-maps OUT``: ``OUT/<prior>/<stem>.png``, made by
  ``python -m pipeline run --stages u2netp,contrast,gradsal --pool P --gt G --out OUT`` on a folder P
  holding the test images).

Every image's taps are those of the feature stage the model was trained on, with its defaults
(``deep_features``: EfficientNet-Lite0, 224 x 224; ``u2netp_features``: the U2-Netp decoder, 320 x
320; float16); ``--fusion`` adds the baseline of each prior averaged with U2-Netp's map. Each
prior is promoted by :func:`promote.lps_promote` (Alg. 2) with the Conv-based model (``--model``)
for every ``T`` of ``--iterations`` and with the FC-based model (``--fc-model``) for ``T`` of
``--fc-iterations``, and each ``Y(T)`` combined with the prior by every rule of ``--merges``
(:func:`promote.merge_with_prior`; ``none`` is the paper's output). Scores from the package's
evaluation (:func:`pipeline.evaluation.evaluate_methods`: max F, adaptive F, MAE, S-measure);
seconds per image of the promotion alone (the taps are timed apart).

Usage::

    .venv/bin/python benchmarks/bench_lps.py --model lps-duts --fc-model FC.npz \\
        --ecssd-maps ../ecssd-test-run [--iterations 1 3] [--fc-iterations 1] [--merges logodds none]

``--model`` / ``--fc-model`` are shipped model names or model files (``python -m pipeline train lps``
writes one). Writes ``benchmarks/results/lps.{json,md}`` (``--results NAME``: ``NAME.{json,md}``).
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
    taps_reader,
    gt_path,
    image_path,
    load_average,
    read_map,
    read_mask,
    read_rgb,
    split_stems,
    write_results,
)
from pipeline.stages.promote import LpsParams  # noqa: E402
from promote.merge import MERGES  # noqa: E402

DURATION = "~25 min on 2 busy cores (SOD 300 images x 6 priors, ECSSD 500 x 3; Conv T = 1, 3 and FC T = 1)"

# LPS, CVPR 2018, Table 2, SOD rows: (adaptive F, MAE) of the prior and of the prior promoted by LPS.
PAPER = {"Amulet": ((0.7546, 0.1407), (0.7769, 0.1336)), "DSS": ((0.7867, 0.1262), (0.8061, 0.1187))}
ECSSD_PRIORS = ("u2netp", "contrast", "gradsal")
METRICS = (("max_f", "max F"), ("adp_f", "adaptive F"), ("mae", "MAE"), ("s_measure", "S-measure"))


def _taps(stems, dataset, reader):
    t0 = time.perf_counter()
    feats = [reader(read_rgb(image_path(dataset, s))) for s in stems]
    return feats, (time.perf_counter() - t0) / len(stems)


def _score(maps: dict, gts: dict) -> dict:
    from pipeline.evaluation import evaluate_methods

    res = evaluate_methods(maps, gts, log=False, n_jobs=2)
    return {m: {k: float(res.pooled[m][k]) for k, _ in METRICS} for m in res.methods}


def _label(kind, t, merge):
    return f"LPS {kind} T={t}" + ("" if merge == "none" else f", {merge} merge")


def _dataset(name, stems, priors_of, settings, readers, merges, fusion=False):
    """Score every prior and its promotions on one dataset; returns {prior: {setting: scores}}.

    ``readers``: feature stage -> taps reader (:func:`benchmarks._common.taps_reader`); each setting
    reads the taps of the stage its model was trained on. ``fusion``: U2-Netp's maps are
    averaged with each prior as a baseline (LPS on the U2-Netp taps is judged against simply
    averaging the prior with U2-Netp's own map)."""
    from detect.u2netp import u2netp_map
    from promote import lps_promote, merge_with_prior

    gts = {s: read_mask(gt_path(name, s)) for s in stems}
    taps, feat_s = {}, {}
    for stage_name, reader in readers.items():
        taps[stage_name], feat_s[stage_name] = _taps(stems, name, reader)
    out = {"features_s_per_image": feat_s, "priors": {}}
    u2netp_maps = {s: u2netp_map(read_rgb(image_path(name, s))) for s in stems} if fusion else None
    for prior_name, folder in priors_of.items():
        priors = {s: read_map(folder / f"{s}.png", gts[s].shape) for s in stems}
        maps, seconds = {prior_name: priors}, {}
        if u2netp_maps is not None:
            maps["mean with u2netp"] = {s: 0.5 * (priors[s] + u2netp_maps[s]) for s in stems}
        for kind, network, Ts, stage_name in settings:
            feats = taps[stage_name]
            labels = {(T, m): _label(kind, T, m) for T in Ts for m in merges}
            for label in labels.values():
                maps[label], seconds[label] = {}, 0.0
            for s, f in zip(stems, feats):
                t0 = time.perf_counter()

                def keep(t, y, s=s, t0=t0):  # Y(1) .. Y(T) of one run: Y(t) is what T = t returns
                    for m in merges:
                        if (t, m) in labels:
                            maps[labels[t, m]][s] = merge_with_prior(priors[s], y, m)
                            seconds[labels[t, m]] += time.perf_counter() - t0

                lps_promote(f, priors[s], network, iterations=max(Ts), merge="none", each=keep)
        scores = _score(maps, gts)
        entry = {"prior": scores[prior_name]}
        for label in maps:
            if label != prior_name:
                entry[label] = dict(scores[label])
                if label in seconds:
                    entry[label]["s_per_image"] = seconds[label] / len(stems)
        out["priors"][prior_name] = entry
        print(name, prior_name, {k: round(v["mae"], 4) for k, v in entry.items()}, flush=True)
    return out


def _table(result, first, paper=None):
    rows = ["| prior | promoted by | max F | adaptive F | MAE | S-measure | s / image | paper adaptive F / MAE |",
            "|---|---|---|---|---|---|---|---|"]
    for prior, entry in result["priors"].items():
        for key, e in entry.items():
            ref = ""
            if paper and prior in paper and key in ("prior", first):
                f, m = paper[prior][0 if key == "prior" else 1]
                ref = f"{f:.3f} / {m:.3f}"
            who = "-" if key == "prior" else key
            secs = f"{e['s_per_image']:.3f}" if "s_per_image" in e else ""
            rows.append(f"| {prior} | {who} | {e['max_f']:.3f} | {e['adp_f']:.3f} | {e['mae']:.3f} | "
                        f"{e['s_measure']:.3f} | {secs} | {ref} |")
    return rows


def _gains(result, label):
    """Per prior: adaptive F and MAE change of ``label`` over the prior."""
    rows = ["| prior | adaptive F before -> after | MAE before -> after | MAE lower |", "|---|---|---|---|"]
    for prior, entry in result["priors"].items():
        b, a = entry["prior"], entry[label]
        rows.append(f"| {prior} | {b['adp_f']:.4f} -> {a['adp_f']:.4f} ({a['adp_f'] - b['adp_f']:+.4f}) | "
                    f"{b['mae']:.4f} -> {a['mae']:.4f} ({a['mae'] - b['mae']:+.4f}) | "
                    f"{'yes' if a['mae'] < b['mae'] else 'no'} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lps-duts", help="Conv-based model: shipped name or file (default lps-duts)")
    ap.add_argument("--fc-model", default=None, help="FC-based model: shipped name or file (optional)")
    ap.add_argument("--iterations", type=int, nargs="+", default=[1, 3], help="T values for the Conv model")
    ap.add_argument("--fc-iterations", type=int, nargs="+", default=[1], help="T values for the FC model")
    ap.add_argument("--ecssd-maps", type=Path, default=None,
                    help="pipeline output folder with u2netp/, contrast/, gradsal/ maps of the ECSSD test images")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N test images (a quick check)")
    ap.add_argument("--results", default="lps", help="name of the result files (default lps)")
    ap.add_argument("--fusion", action="store_true",
                    help="add the baseline 'mean with u2netp': each prior averaged with U2-Netp's map "
                         "(the detector whose decoder the u2netp_features taps come from)")
    ap.add_argument("--merges", nargs="+", choices=MERGES,
                    default=["logodds", "none"],
                    help="how Y(T) is combined with the prior (default: logodds, the stage's; none, the paper's)")
    args = ap.parse_args(argv)

    import torch

    from pipeline import models
    from pipeline.stages.features import model_feature_stage
    from promote import AnchorNetwork

    torch.set_num_threads(args.threads)
    settings, described = [], {}
    for kind, spec, Ts in (("Conv", args.model, args.iterations), ("FC", args.fc_model, args.fc_iterations)):
        if spec is None:
            continue
        ref = models.resolve("lps", spec)
        model = ref.load()
        network = AnchorNetwork.from_state(model.arrays, model.hparams)
        if network.hparams["region_embedding"] != kind.lower():
            raise SystemExit(f"--{'fc-' if kind == 'FC' else ''}model: {spec} has a "
                             f"{network.hparams['region_embedding']} region embedding, expected {kind.lower()}")
        features = model_feature_stage(model)
        described[kind] = {"model": str(spec), "sha256": ref.digest, "hparams": network.hparams,
                           "features": features}
        settings.append((kind, network, sorted(set(Ts)), features))
    readers = {f: taps_reader(f, args.threads) for f in dict.fromkeys(s[3] for s in settings)}

    data = {"models": described, "load_before": load_average(), "datasets": {}}
    sod_priors = dataset_dir("SOD") / "priors"
    data["datasets"]["SOD"] = _dataset(
        "SOD", split_stems("SOD", "test")[:args.limit],
        {m: sod_priors / m for m in sorted(d.name for d in sod_priors.iterdir() if d.is_dir())},
        settings, readers, args.merges, args.fusion)
    if args.ecssd_maps is not None:
        data["datasets"]["ECSSD"] = _dataset(
            "ECSSD", split_stems("ECSSD", "test")[:args.limit], {p: args.ecssd_maps / p for p in ECSSD_PRIORS},
            settings, readers, args.merges, args.fusion)
    data["load_after"] = load_average()

    stage_merge = LpsParams().merge
    default_merge = stage_merge if stage_merge in args.merges else args.merges[0]  # the stage's default first
    first = _label(settings[0][0], settings[0][2][0], default_merge)
    models_line = "; ".join(f"{k}: `{v['model']}` (sha256 {v['sha256'][:12]}..., C = {v['hparams']['channels']}, "
                            f"D = {v['hparams']['dim']}, on {v['features']})" for k, v in described.items())
    cmd = (f".venv/bin/python benchmarks/bench_lps.py --model {args.model}"
           + (f" --fc-model {args.fc_model}" if args.fc_model else "")
           + f" --iterations {' '.join(map(str, args.iterations))}"
           + (f" --fc-iterations {' '.join(map(str, args.fc_iterations))}" if args.fc_model else "")
           + (f" --ecssd-maps {args.ecssd_maps}" if args.ecssd_maps else "")
           + (" --fusion" if args.fusion else "")
           + f" --merges {' '.join(args.merges)}"
           + (f" --threads {args.threads}" if args.threads != 1 else "")
           + (f" --results {args.results}" if args.results != "lps" else ""))
    lines = ["# LPS: priors before and after promotion", "",
             f"Models: {models_line}. Scores: `pipeline.evaluation` (max F, adaptive F at twice the mean, MAE, "
             "S-measure; maps min-max normalised, masks at > 128). Seconds per image: the promotion alone, "
             f"on a shared 2-core machine (load average {data['load_before']} before, {data['load_after']} after); "
             "the feature taps cost "
             + ", ".join(f"{d} {f} {sec:.3f} s" for d, r in data["datasets"].items()
                         for f, sec in r["features_s_per_image"].items())
             + " per image on top.", ""]
    for name, result in data["datasets"].items():
        n = len(split_stems(name, "test")[:args.limit])
        lines += [f"## {name} ({n} test images)", "",
                  *_table(result, first, PAPER if name == "SOD" else None), "",
                  f"Change by {first} (the default setting):", "", *_gains(result, first), ""]
    lines += ["Paper: LPS (CVPR 2018) Table 2, SOD, adaptive F / MAE of the prior and of LPS (T = 1).", "",
              f"Command: `{cmd}`", ""]
    write_results(args.results, data, "\n".join(lines))
    return 0

if __name__ == "__main__":
    sys.exit(main())
