"""MIJR re-learning settings chosen on DUTS-TR-1k alone: fit on part of the pool's GT, score the rest.

The training pool of :mod:`benchmarks.bench_relearn` (its ``WORK/train_pool`` images and masks,
``WORK/mixed_priors``: each image's map from one of u2netp, contrast or gradsal) is split by a
seeded draw into ``--n-val`` validation images and the rest. For each configuration
(``NAME=STAGE.PARAM=VALUE ...``, overrides separated by spaces):

1. ``python -m pipeline train relearn`` with ``--gt`` holding only the fitting images' masks (the
   validation images still take part as retrieved images, with their pseudo GT, never their GT);
2. ``python -m pipeline run --stages relearn,crf`` on the same pool with ``--gt`` holding only the
   validation masks, so the evaluation scores the held-out images;
3. max F, adaptive F, MAE (and S-measure) of the prior, the ``crf`` baseline and relearn on the
   validation images, pooled and per detector of the mix, and the share of superpixels re-learned.

Every run reuses the caches in ``WORK/train`` (retrieval, alignment, features, pseudo GT), so a
configuration costs its ``relearn_fit`` and the validation's ``relearn``. Usage::

    .venv/bin/python benchmarks/tune_relearn.py --work ../relearn-bench --n-val 200 \\
        --config default= --config 'small=relearn_fit.widths=64,32,32,16,16 relearn_fit.iterations=20000'

Writes ``benchmarks/results/tune_relearn.{json,md}`` (``--results NAME``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import load_average, read_map, read_mask, sod_scores, write_results  # noqa: E402
from benchmarks.bench_relearn import DETECTORS, _changed_share, _cli, _scores, _stage_seconds  # noqa: E402

DURATION = "~4 min per configuration after bench_relearn's training run (its caches)"


def _split_gt(gts: Path, n_val: int, seed: int, folder: Path) -> tuple[Path, Path, list[str]]:
    """Symlink folders ``fit_gt`` and ``val_gt``; the validation stems (a seeded draw, sorted)."""
    stems = sorted(p.stem for p in gts.iterdir() if p.suffix == ".png")
    if not 0 < n_val < len(stems):
        raise SystemExit(f"--n-val: expected 1 .. {len(stems) - 1} (the pool has {len(stems)} masks), got {n_val}")
    val = set(np.random.default_rng(seed).choice(stems, size=n_val, replace=False).tolist())
    fit_dir, val_dir = folder / "fit_gt", folder / "val_gt"
    for d in (fit_dir, val_dir):
        d.mkdir(parents=True, exist_ok=True)
    for s in stems:
        link = (val_dir if s in val else fit_dir) / f"{s}.png"
        if not link.exists():
            link.symlink_to((gts / f"{s}.png").resolve())
    return fit_dir, val_dir, sorted(val)


def _per_detector(out: Path, mixed_from: dict, gts: Path, stems: list[str]) -> dict:
    """Scores of the prior and relearn on the validation images of each detector of the mix."""
    res = {}
    for det in DETECTORS:
        mine = [s for s in stems if mixed_from.get(s) == det]
        if not mine:
            continue
        masks = [read_mask(gts / f"{s}.png") for s in mine]
        res[det] = {"images": len(mine)}
        for label, folder in (("prior", out / "priors"), ("relearn", out / "relearn")):
            maps = [read_map(folder / f"{s}.png", m.shape) for s, m in zip(mine, masks)]
            res[det][label] = sod_scores(maps, masks)
    return res


def _mix_sources(mixed: Path, detectors: Path) -> dict:
    """Which detector each mixed prior came from (the files are byte copies of its maps)."""
    out = {}
    for p in sorted(mixed.glob("*.png")):
        data = p.read_bytes()
        for det in DETECTORS:
            src = detectors / det / p.name
            if src.is_file() and src.read_bytes() == data:
                out[p.stem] = det
                break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="bench_relearn's working folder (after its training)")
    ap.add_argument("--n-val", type=int, default=200, help="validation images held out of the fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--config", action="append", required=True, metavar="NAME=STAGE.PARAM=VALUE ...",
                    help="a configuration: its name and its --set overrides, space-separated (repeatable)")
    ap.add_argument("--results", default="tune_relearn")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    images, gts, mixed = work / "train_pool" / "images", work / "train_pool" / "gt", work / "mixed_priors"
    for p in (images, gts, mixed):
        if not p.is_dir():
            raise SystemExit(f"{p}: not found; run benchmarks/bench_relearn.py --work {args.work} first")
    fit_gt, val_gt, val_stems = _split_gt(gts, args.n_val, args.seed, work / "tune")
    mixed_from = _mix_sources(mixed, work / "detectors")
    out = work / "train"
    data = {"n_val": args.n_val, "seed": args.seed, "load_before": load_average(), "configs": {}}
    for spec in args.config:
        name, _, sets_text = spec.partition("=")
        sets = [a for s in filter(None, sets_text.split()) for a in ("--set", s)]
        log_dir = work / "tune"
        common = ["--pool", str(images), "--priors", str(mixed), "--set", "relearn.prior=priors", *sets,
                  "--out", str(out), "--jobs", str(args.jobs)]
        fit_wall = _cli("train", "relearn", "--gt", str(fit_gt), *common, log=log_dir / f"{name}_fit.log")
        model = log_dir / f"{name}.npz"
        shutil.copyfile(out / "models" / "relearn.npz", model)
        card = json.loads((out / "models" / "relearn.card.json").read_text())
        _cli("run", "--stages", "relearn,crf", "--gt", str(val_gt), "--set", f"relearn.model={model}",
             "--set", "crf.prior=priors", *common, log=log_dir / f"{name}_val.log")
        data["configs"][name] = {
            "sets": sets_text, "fit_wall_s": round(fit_wall, 1), "bytes": card.get("bytes"),
            "validation_card": card.get("validation", {}),
            "scores": _scores(out, ("priors", "crf", "relearn")),
            "per_detector": _per_detector(out, mixed_from, gts, val_stems),
            "changed_share": _changed_share(out, gts, val_stems),
            "relearn_s_per_image": _stage_seconds(out).get("relearn", {}).get("s_per_item"),
        }
        print(name, json.dumps(data["configs"][name]["scores"]), flush=True)
    data["load_after"] = load_average()

    md = ["# MIJR re-learning settings on DUTS-TR-1k (fit on the rest, scored on held-out images)", "",
          f"Command: `.venv/bin/python benchmarks/tune_relearn.py --n-val {args.n_val} "
          + " ".join(f"--config '{c}'" for c in args.config) + f"`; load average before {data['load_before']}, "
          f"after {data['load_after']}. Validation: {args.n_val} DUTS-TR-1k images (seed {args.seed}), "
          "each with the map of one detector of the mix as its prior.", "",
          "| config | prior max F / adp F / MAE | crf | relearn | pixels changed | fit s | model bytes |",
          "|---|---|---|---|---|---|---|"]

    def cell(sc):
        return "" if not sc else f"{sc['max_f']:.4f} / {sc['adp_f']:.4f} / {sc['mae']:.4f}"

    for name, c in data["configs"].items():
        sc = c["scores"]
        share = f"{c['changed_share']:.1%}"
        md.append(f"| {name} | {cell(sc.get('priors'))} | {cell(sc.get('crf'))} | {cell(sc.get('relearn'))} | "
                  f"{share} | {c['fit_wall_s']} | {c['bytes']} |")
    md += ["", "Per detector of the mix (max F / adaptive F / MAE, prior -> relearn):", "",
           "| config | " + " | ".join(DETECTORS) + " |", "|---|" + "---|" * len(DETECTORS)]
    for name, c in data["configs"].items():
        cells = []
        for det in DETECTORS:
            d = c["per_detector"].get(det)
            cells.append("" if d is None else
                         f"{d['prior']['maxF']:.3f}/{d['prior']['adpF']:.3f}/{d['prior']['MAE']:.3f} -> "
                         f"{d['relearn']['maxF']:.3f}/{d['relearn']['adpF']:.3f}/{d['relearn']['MAE']:.3f} "
                         f"({d['images']})")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    write_results(args.results, data, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
