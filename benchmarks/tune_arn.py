"""Choose ARN training options on DUTS-TR-1k with ECSSD train as validation: the measurements behind
the defaults of ``detect/arn.py`` / ``arn_fit``, and the ablation models.

Each configuration trains :func:`detect.arn.train_arn` on the 1000 images of
``../shared/data/sod/DUTS-TR-1k`` (taps of the ``deep_features`` defaults: EfficientNet-Lite0,
224 x 224, float16) and after every epoch scores the 500 ECSSD *train* images (max F, adaptive F,
MAE, S-measure); the epoch of lowest validation MAE is kept (early stopping). ECSSD test is never
read here. ``--save DIR`` writes each configuration's kept network as a model file (``NAME.npz``,
loadable with ``--set arn.model=FILE``) for ``bench_arn.py``'s ablation rows.

Usage::

    .venv/bin/python benchmarks/tune_arn.py [--configs base lr1e-4 ...] [--epochs 6] \\
        [--cache DIR] [--save DIR] [--threads 2]

``--cache DIR`` keeps the extracted taps (one ``.npz`` per dataset split) between runs. Writes
``benchmarks/results/tune_arn.{json,md}`` (``--results NAME``: ``NAME.{json,md}``).
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
    gt_path,
    image_path,
    load_average,
    read_mask,
    read_rgb,
    sod_scores,
    split_stems,
    write_results,
)

DURATION = "~15 min per configuration on 2 cores (6 epochs of 1000 images, validation on 500)"
TAPS = ("s2", "s4", "s8", "s16", "s32")
STRIDES = {"s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32}

# name -> options of train_arn that differ from its defaults
CONFIGS = {
    "base": {},
    "raw taps": {"standardize": False},
    "raw taps, deep s16+s32": {"standardize": False, "deep_taps": ("s16", "s32")},
    "deep s16+s32": {"deep_taps": ("s16", "s32")},
    "deep s16+s32, wide": {"deep_taps": ("s16", "s32"), "widths": (16, 32, 96, 128)},
    "lr1e-4": {"learning_rate": 1e-4},
    "no attention": {"attention": False},
    "no RCL": {"rcl_steps": None},
    "T=1": {"rcl_steps": 1},
}


def split_taps(dataset: str, split: str, cache: Path | None, size: int = 224):
    """Stems, taps (float16, as the ``deep_features`` stage stores them) and GT masks of a split."""
    stems = split_stems(dataset, split)
    gts = [read_mask(gt_path(dataset, s)) for s in stems]
    path = None if cache is None else cache / f"{dataset}_{split}_{size}.npz"
    if path is not None and path.exists():
        z = np.load(path)
        return stems, [{t: z[f"{i}/{t}"] for t in TAPS} for i in range(len(stems))], gts
    from backbones import extract_features, load_backbone

    net = load_backbone("efficientnet_lite0", device="cpu")
    feats = []
    for i in range(0, len(stems), 16):
        images = [read_rgb(image_path(dataset, s)) for s in stems[i:i + 16]]
        f = extract_features(net, images, taps=TAPS, batch_size=len(images), size=size)
        feats += [{t: f[t][j].astype(np.float16) for t in TAPS} for j in range(len(images))]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"{i}/{t}": f[t] for i, f in enumerate(feats) for t in TAPS})
    return stems, feats, gts


def _markdown(data, notes: str = "") -> str:
    lines = [
        "# ARN training options (DUTS-TR-1k train, ECSSD train validation)", "",
        "Each configuration trains the decoder on the 1000 DUTS-TR-1k images (frozen EfficientNet-Lite0 taps, "
        "224 x 224) and keeps the epoch of lowest MAE on the 500 ECSSD train images, whose scores are below "
        f"({DURATION}). ECSSD test is not used. Made by:", "", *[f"- {r}" for r in data["runs"]], "",
        "| configuration | max F | adaptive F | MAE | S-measure | best epoch | val MAE per epoch | train s | s/img infer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["configs"].items():
        v = r["validation"]
        lines.append(f"| {name} | {v['maxF']:.4f} | {v['adpF']:.4f} | {v['MAE']:.4f} | {v['Sm']:.4f} | "
                     f"{r['best_epoch']} | {', '.join(f'{x:.4f}' for x in r['val_mae_per_epoch'])} | "
                     f"{r['train_seconds']:.0f} | {r['infer_seconds_per_image']:.4f} |")
    lines += ["", "Options per configuration (all others: the `train_arn` defaults): " + "; ".join(
        f"{n}: {r['options'] or 'defaults'}" for n, r in data["configs"].items()) + "."]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def _merge(args) -> int:
    import json

    from benchmarks._common import RESULTS

    merged = {"epochs": None, "runs": [], "configs": {}}
    for name in args.merge:
        d = json.loads((RESULTS / f"{name}.json").read_text())
        merged["epochs"] = d["epochs"]
        merged["runs"] += d.get("runs", [])
        merged["configs"].update(d["configs"])
    notes = args.notes.read_text() if args.notes else ""
    write_results(args.results, merged, _markdown(merged, notes))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--cache", type=Path, help="folder keeping the extracted taps between runs")
    ap.add_argument("--save", type=Path, help="folder for each configuration's kept model (NAME.npz)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", default="tune_arn")
    ap.add_argument("--merge", nargs="+", metavar="NAME",
                    help="only rebuild --results from the configurations of earlier runs' NAME.json files")
    ap.add_argument("--notes", type=Path, help="with --merge: a markdown file appended to the table")
    args = ap.parse_args(argv)
    if args.merge:
        return _merge(args)

    import torch

    from detect.arn import arn_saliency, train_arn
    from pipeline.models import save_model

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    _, train_f, train_m = split_taps("DUTS-TR-1k", "train", args.cache)
    _, val_f, val_m = split_taps("ECSSD", "train", args.cache)
    print(f"taps: {len(train_f)} train, {len(val_f)} validation images, {time.perf_counter() - t0:.0f} s", flush=True)

    rows = {}
    t_configs = time.perf_counter()
    for name in args.configs:
        opts = CONFIGS[name]

        def report(epoch, loss, mae, name=name):
            print(f"  {name} epoch {epoch + 1}: train BCE {loss:.4f}, ECSSD-train MAE {mae:.4f}", flush=True)

        res = train_arn(train_f, train_m, tap_strides=STRIDES, epochs=args.epochs, val_features=val_f,
                        val_masks=val_m, progress=report, **opts)
        t1 = time.perf_counter()
        maps = arn_saliency(val_f, res.network, [m.shape for m in val_m])
        infer = (time.perf_counter() - t1) / len(val_f)
        scores = sod_scores(maps, val_m, s_measure=True)
        rows[name] = {"options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
                      "validation": scores, "val_mae_per_epoch": [round(v, 5) for v in res.val_mae],
                      "train_loss_per_epoch": [round(v, 5) for v in res.losses], "best_epoch": res.best_epoch,
                      "train_seconds": round(res.seconds, 1), "infer_seconds_per_image": round(infer, 4),
                      "parameters": res.network.n_parameters()}
        print(f"{name}: {scores} (best epoch {res.best_epoch}, {res.seconds:.0f} s)", flush=True)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            fname = name.replace(", ", "_").replace(" ", "_").replace("=", "").replace("+", "_")
            save_model(args.save / f"{fname}.npz", res.network.state_arrays(), {
                "stage": "arn", "hparams": res.network.hparams,
                "training": {"data": "DUTS-TR-1k", "epochs": args.epochs, "best_epoch": res.best_epoch,
                             "seconds": round(res.seconds, 1), "options": rows[name]["options"]},
                "validation": {"ECSSD-train": scores}})

    header = (f"`.venv/bin/python benchmarks/tune_arn.py --epochs {args.epochs} --threads {args.threads} --configs "
              f"{' '.join(repr(c) if ' ' in c else c for c in args.configs)}` ({(time.perf_counter() - t_configs) / 60:.0f}"
              f" min; load average {load_average()} at the end)")
    data = {"epochs": args.epochs, "runs": [header], "configs": rows}
    write_results(args.results, data, _markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
