"""MIJR re-learning through the pipeline: train on DUTS-TR with mixed priors, promote ECSSD test.

1. **Mixed priors.** Each training image gets the map of one of the three package detectors
   (``u2netp``, ``contrast``, ``gradsal``; a seeded shuffle, a third each, each detector run on its
   third only), written to a ``--priors`` folder, so the model learns to re-learn from any detector
   rather than one. The training pool is DUTS-TR-1k (``--train-datasets``: the shipped model is
   trained on ``DUTS-TR-1k DUTS-TR-2k``, 3000 images).
2. **Training.** ``python -m pipeline train relearn --pool P --gt G --priors MIXED --set
   relearn.prior=priors``: retrieval, alignment, superpixel features, pseudo GT and
   ``relearn_fit`` with their defaults (plus ``--set`` overrides), every stage's seconds per item
   read from the run summary. The model file and its card are left in ``WORK/train/models``, ready
   for ``scripts/ship_model.py WORK/train/models/relearn.npz --name relearn-u2netp-duts``.
3. **Test.** On ECSSD test images, for each prior of ``--test-priors``, and on SOD for each
   published prior of ``--sod`` (``--priors``): ``python -m pipeline run --stages relearn,crf``
   with the trained model; the package's evaluation of the prior, the dense-CRF baseline and
   relearn (max F, adaptive F, MAE, S-measure), and the share of pixels relearn changed. One output
   folder per dataset, so retrieval, alignment and features are computed once and each prior adds
   only its pseudo GT and relearn.
4. **Ablations** (Sec. V-C), on the ECSSD priors of ``--ablation-priors``, applied at inference to
   the same model: no filter (every aligned pair passes), M = 1, and SIFT-Flow-only alignment
   (``alignment.object_weight=0``, no colour, no window: the flow target's superpixel).

Everything goes through the CLI, as a user runs it (each step is cached in ``WORK``: a rerun
resumes). Usage::

    .venv/bin/python benchmarks/bench_relearn.py --work ../relearn-bench [--train-datasets DUTS-TR-1k DUTS-TR-2k]
        [--n-train 1000] [--n-test 500] [--jobs 2] [--set relearn_fit.iterations=20000] [--model FILE] [--sod DSS ...]

``--fusion`` adds a baseline to every promoted prior: the prior averaged with U2-Netp's map (the
``u2netp`` stage run on the same pool), scored like the rest. A model on ``u2netp_features`` reads
the decoder of U2-Netp, so its gain should beat that plain mixing of the two detectors.

``--model FILE`` skips steps 1-2 and tests that model (a file or a shipped name's file).
``--n-train 20 --n-test 10 --sod`` is a smoke run. ``--split train`` promotes ECSSD train images
instead (``WORK/val_pool``, ``WORK/val_ecssd``): the split settings are chosen on.
Writes ``benchmarks/results/bench_relearn.{json,md}`` (``--results NAME``: ``NAME.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    ROOT,
    dataset_dir,
    gt_path,
    image_path,
    load_average,
    read_map,
    read_mask,
    split_stems,
    write_results,
)

DURATION = ("on 2 cores: ~50 min of training (DUTS-TR-1k, 1000 images x 5 aligned neighbours); tests ~3.6 s "
            "per ECSSD image for the first prior (retrieval, alignment, features), then a few minutes per prior")
DETECTORS = ("u2netp", "contrast", "gradsal")
SOD_PRIORS = ("Amulet", "DSS", "PiCANet", "BSCA", "GS", "RBD")
METRICS = (("max_f", "max F"), ("adp_f", "adaptive F"), ("mae", "MAE"), ("s_measure", "S-measure"))


def _cli(*args, log: Path) -> float:
    """Run ``python -m pipeline ARGS`` (output to ``log``); its wall seconds. Raises on failure."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "pipeline", *args, "--no-progress"], cwd=ROOT, env=env,
                             stdout=fh, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"python -m pipeline {' '.join(args[:2])} failed (exit {res.returncode}); see {log}")
    return time.perf_counter() - t0


def _subset(datasets, split: str, n: int, folder: Path, seed: int = 0) -> tuple[Path, Path, list[str]]:
    """Symlinks to ``n`` images of a split of one or more datasets (a fixed random subset of their
    stems in dataset and file order; all when ``n`` is at least their number) and their masks."""
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)
    entries = [(d, s) for d in datasets for s in split_stems(d, split)]
    if n < len(entries):
        idx = np.sort(np.random.default_rng(seed).choice(len(entries), size=n, replace=False))
        entries = [entries[i] for i in idx]
    images, gts = folder / "images", folder / "gt"
    for d in (images, gts):
        d.mkdir(parents=True, exist_ok=True)
    for dataset, s in entries:
        for src, d in ((image_path(dataset, s), images), (gt_path(dataset, s), gts)):
            link = d / src.name
            if not link.exists():
                link.symlink_to(src.resolve())
    return images, gts, [s for _, s in entries]


def _stage_seconds(out: Path) -> dict:
    """Per stage of a run: items computed and wall seconds per computed item (run_summary.json)."""
    stages = json.loads((out / "run_summary.json").read_text())["stages"]
    return {s["name"]: {"computed": s["computed"], "cached": s["cached"], "failed": s["failed"],
                        "s_per_item": round(s["seconds"] / s["computed"], 3) if s["computed"] else None}
            for s in stages}


def _mixed_priors(images: Path, gts: Path, stems: list[str], work: Path, jobs: int, seed: int) -> tuple[Path, dict]:
    """Each image of the pool gets the map of one of the three detectors (a seeded shuffle, a third
    each); each detector runs only on its own third (``WORK/detector_pools/DETECTOR``)."""
    out = work / "detectors"
    order = np.random.default_rng(seed).permutation(len(stems))
    assigned = {d: [] for d in DETECTORS}
    for rank, k in enumerate(order):
        assigned[DETECTORS[rank % len(DETECTORS)]].append(stems[k])
    by_stem = {p.stem: p for p in images.iterdir()}
    mixed = work / "mixed_priors"
    mixed.mkdir(exist_ok=True)
    chosen, seconds = {}, {}
    for det, det_stems in assigned.items():
        sub = work / "detector_pools" / det
        if sub.exists():
            shutil.rmtree(sub)
        sub.mkdir(parents=True)
        for s in det_stems:
            (sub / by_stem[s].name).symlink_to(by_stem[s].resolve())
        # one output folder for the three: the cache is shared, each run writes its detector's maps
        _cli("run", "--stages", det, "--pool", str(sub), "--out", str(out), "--jobs", str(jobs),
             log=work / f"detectors_{det}.log")
        seconds[det] = _stage_seconds(out).get(det)
        for s in det_stems:
            src = out / det / f"{s}.png"
            if src.is_file():
                shutil.copyfile(src, mixed / src.name)
                chosen[s] = det
    counts = {d: sum(v == d for v in chosen.values()) for d in DETECTORS}
    return mixed, {"counts": counts, "detector_seconds": seconds}


# the paper's ablations, applied at inference to the trained model (Sec. V-C)
ABLATIONS = {
    "no filter": ["--set", "relearn.use_filter=false"],
    "M = 1": ["--set", "relearn.m=1"],
    "SIFT-Flow-only alignment": ["--set", "alignment.object_weight=0", "--set", "alignment.colour_weight=0",
                                 "--set", "alignment.window=0"],
}


def _promote(out: Path, images: Path, gts: Path, prior: str, priors_dir: Path | None, model: Path, sets: list,
             jobs: int, methods=None) -> dict:
    """``relearn`` and the ``crf`` baseline on one prior of one test pool; scores and stage seconds."""
    extra = ["--priors", str(priors_dir)] if priors_dir is not None else []
    label = priors_dir.name if priors_dir is not None else prior
    log = out.parent / f"{out.name}_{label}_{len(sets)}.log"
    out.mkdir(parents=True, exist_ok=True)
    wall = _cli("run", "--stages", "relearn,crf", "--pool", str(images), "--gt", str(gts), *extra,
                "--set", f"relearn.model={model}", "--set", f"relearn.prior={prior}", "--set", f"crf.prior={prior}",
                *sets, "--out", str(out), "--jobs", str(jobs), log=log)
    stems = sorted(p.stem for p in gts.glob("*.png"))
    return {"wall_s": round(wall, 1), "scores": _scores(out, methods or (prior, "crf", "relearn")),
            **_changes(out, gts, stems, prior), "stages": _stage_seconds(out)}


def _changed_share(out: Path, gts: Path, stems: list[str], prior: str = "priors") -> float:
    """Mean share of pixels whose relearn map differs from the prior's (where re-learning acted)."""
    return _changes(out, gts, stems, prior)["changed_share"]


def _changes(out: Path, gts: Path, stems: list[str], prior: str = "priors") -> dict:
    """Where relearn changed the prior: the mean share of pixels changed per image, and of all the
    changed pixels of the images the share that moved closer to the ground truth (|map - GT|
    smaller) and the mean change of |map - GT| over them (negative: better)."""
    shares, closer, gain, n_changed = [], 0, 0.0, 0
    for s in stems:
        gt = (read_mask(gts / f"{s}.png") >= 128).astype(np.float32)   # GT at 128, as the evaluation
        before = read_map(out / prior / f"{s}.png", gt.shape)
        after = read_map(out / "relearn" / f"{s}.png", gt.shape)
        changed = np.abs(before - after) > 1.5 / 255
        shares.append(float(changed.mean()))
        delta = np.abs(after - gt)[changed] - np.abs(before - gt)[changed]
        closer += int((delta < 0).sum())
        gain += float(delta.sum())
        n_changed += int(changed.sum())
    return {"changed_share": float(np.mean(shares)),
            "closer_share": closer / n_changed if n_changed else None,
            "error_change": gain / n_changed if n_changed else None}


def _fusion(out: Path, images: Path, gts: Path, prior: str, jobs: int) -> dict:
    """Scores of the baseline ``mean with u2netp``: the prior's maps of ``out`` averaged with U2-Netp's."""
    from pipeline.evaluation import evaluate_methods

    _cli("run", "--stages", "u2netp", "--pool", str(images), "--out", str(out), "--jobs", str(jobs),
         log=out.parent / f"{out.name}_u2netp_fusion.log")  # cached after the first prior
    stems = sorted(p.stem for p in gts.glob("*.png"))
    maps = {}
    for s in stems:
        shape = read_mask(gts / f"{s}.png").shape
        maps[s] = 0.5 * (read_map(out / prior / f"{s}.png", shape) + read_map(out / "u2netp" / f"{s}.png", shape))
    res = evaluate_methods({"mean with u2netp": maps}, str(gts), stems=stems, log=False)
    return {k: res.pooled["mean with u2netp"].get(k) for k, _ in METRICS}


def _scores(out: Path, methods) -> dict:
    data = json.loads((out / "evaluation" / "metrics.json").read_text())["methods"]
    return {m: {k: data[m]["pooled"].get(k) for k, _ in METRICS} for m in methods if m in data}


def _shown(path: Path, work: Path) -> str:
    """A path as the results write it: inside the working folder as WORK/... (a folder local to a machine),
    inside the repository relative to it."""
    full, work = Path(path).resolve(), Path(work).resolve()
    if full.is_relative_to(work):
        return f"WORK/{full.relative_to(work)}"
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(path)   # e.g. a shipped model


def _command_args(args) -> str:
    """The options of this run as they would be typed (``--work`` left out: a local folder)."""
    parts = [] if args.train_datasets == ["DUTS-TR-1k"] else [f"--train-datasets {' '.join(args.train_datasets)}"]
    if args.n_train is not None:
        parts.append(f"--n-train {args.n_train}")
    parts += [f"--n-test {args.n_test}", f"--jobs {args.jobs}"]
    if args.split != "test":
        parts.append(f"--split {args.split}")
    parts += [f"--set {s}" for s in args.set]
    if args.model is not None:
        parts.append(f"--model {_shown(args.model, args.work)}")
    if args.fusion:
        parts.append("--fusion")
    for flag, value, default in (("--test-priors", args.test_priors, list(DETECTORS)),
                                 ("--sod", args.sod, list(SOD_PRIORS)), ("--ablation-priors", args.ablation_priors, ["u2netp"])):
        if list(value) != default:
            parts.append(" ".join([flag, *value]))
    return " ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="working folder (pools, pipeline outputs, caches)")
    ap.add_argument("--train-datasets", nargs="+", default=["DUTS-TR-1k"],
                    help="training datasets (their train splits); the shipped model: DUTS-TR-1k DUTS-TR-2k")
    ap.add_argument("--n-train", type=int, default=None, help="training images (default: all of the datasets)")
    ap.add_argument("--n-test", type=int, default=500, help="ECSSD test images (default: all 500)")
    ap.add_argument("--split", choices=("test", "train"), default="test",
                    help="ECSSD split promoted (train: to choose settings, in WORK/val_pool and WORK/val_ecssd)")
    ap.add_argument("--test-priors", nargs="+", default=list(DETECTORS), help="ECSSD priors promoted at test")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="subsets and the priors' mix")
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.PARAM=VALUE",
                    help="pipeline parameter override for training and test (repeatable)")
    ap.add_argument("--model", type=Path, default=None, help="test this model file instead of training one")
    ap.add_argument("--sod", nargs="*", default=list(SOD_PRIORS), help="SOD published priors promoted (none: skip SOD)")
    ap.add_argument("--ablation-priors", nargs="*", default=["u2netp"], help="ECSSD priors of the ablation runs")
    ap.add_argument("--fusion", action="store_true", help="add the baseline: each prior averaged with U2-Netp's map")
    ap.add_argument("--results", default="bench_relearn")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sets = [a for s in args.set for a in ("--set", s)]
    data = {"n_train": args.n_train, "n_test": args.n_test, "split": args.split, "jobs": args.jobs, "seed": args.seed,
            "sets": args.set, "train_datasets": args.train_datasets, "load_before": load_average()}

    model = args.model
    if model is None:
        n_train = args.n_train if args.n_train is not None else 10**9
        images, gts, stems = _subset(args.train_datasets, "train", n_train, work / "train_pool", args.seed)
        data["n_train"] = len(stems)
        mixed, data["priors"] = _mixed_priors(images, gts, stems, work, args.jobs, args.seed)
        out = work / "train"
        wall = _cli("train", "relearn", "--pool", str(images), "--gt", str(gts), "--priors", str(mixed),
                    "--set", "relearn.prior=priors", *sets, "--out", str(out), "--jobs", str(args.jobs),
                    log=work / "train.log")
        model = out / "models" / "relearn.npz"
        card = json.loads(model.with_suffix(".card.json").read_text())
        data["training"] = {"wall_s": round(wall, 1), "stages": _stage_seconds(out), "bytes": card["bytes"],
                            "validation": card.get("validation", {}), "seconds": card.get("duration_s"),
                            "model": _shown(model, work)}

    pool_dir, ecssd_out = ("test_pool", "test_ecssd") if args.split == "test" else ("val_pool", "val_ecssd")
    test_images, test_gts, _ = _subset("ECSSD", args.split, args.n_test, work / pool_dir, args.seed)
    # one output folder per dataset: retrieval, alignment and features are computed once for all priors
    data["test"] = {}
    for prior in args.test_priors:
        data["test"][f"ECSSD/{prior}"] = _promote(work / ecssd_out, test_images, test_gts, prior, None,
                                                  model, sets, args.jobs)
        if args.fusion and prior != "u2netp":
            data["test"][f"ECSSD/{prior}"]["scores"]["mean with u2netp"] = _fusion(
                work / ecssd_out, test_images, test_gts, prior, args.jobs)
    if args.sod:
        sod = dataset_dir("SOD")
        for method in args.sod:
            data["test"][f"SOD/{method}"] = _promote(work / "test_sod", sod / "images", sod / "gt", "priors",
                                                     sod / "priors" / method, model, sets, args.jobs)
            if args.fusion:
                data["test"][f"SOD/{method}"]["scores"]["mean with u2netp"] = _fusion(
                    work / "test_sod", sod / "images", sod / "gt", "priors", args.jobs)
    data["ablations"] = {}
    for prior in args.ablation_priors:
        for name, extra in ABLATIONS.items():
            data["ablations"][f"ECSSD/{prior}/{name}"] = _promote(
                work / ecssd_out, test_images, test_gts, prior, None, model, [*sets, *extra], args.jobs,
                methods=("relearn",))
    data["load_after"] = load_average()

    trained_on = f"{' + '.join(args.train_datasets)} mixed priors" if args.model is None else "a given model"
    md = [f"# MIJR re-learning through the pipeline ({trained_on} -> ECSSD {args.split})", "",
          f"Command: `.venv/bin/python benchmarks/bench_relearn.py {_command_args(args)}`; load average before "
          f"{data['load_before']}, after {data['load_after']}.", ""]
    if "training" in data:
        t = data["training"]
        md += [f"Priors of the training pool: {data['priors']['counts']}. Training: {t['wall_s']} s wall, "
               f"model {t['bytes']} bytes, validation {json.dumps(t['validation'])}.", "",
               "| stage (training run) | computed | s per item |", "|---|---|---|"]
        md += [f"| {n} | {s['computed']} | {s['s_per_item']} |" for n, s in t["stages"].items() if s["computed"]]
        md.append("")
    else:
        md += [f"Model: `{_shown(model, work)}` (not trained by this run).", ""]
    md += [f"## Promoted priors (ECSSD: {args.n_test} {args.split} images; SOD: all 300)", "",
           "| dataset / prior | map | " + " | ".join(lab for _, lab in METRICS)
           + " | relearn s/image | pixels changed (of them closer to GT) |",
           "|---|---|" + "---|" * (len(METRICS) + 2)]
    for key, res in data["test"].items():
        for m, sc in res["scores"].items():
            secs = res["stages"].get("relearn", {}).get("s_per_item") if m == "relearn" else ""
            secs = "cached" if secs is None else secs  # every item read from the cache: no time
            changed = ""
            if m == "relearn" and "changed_share" in res:
                changed = f"{res['changed_share']:.1%}"
                if res.get("closer_share") is not None:
                    changed += f" ({res['closer_share']:.0%} closer to GT)"
            md.append(f"| {key} | {m} | " + " | ".join("" if sc[k] is None else f"{sc[k]:.4f}" for k, _ in METRICS)
                      + f" | {secs} | {changed} |")
    md.append("")
    if data["ablations"]:
        md += ["## Ablations at inference (the same model; ECSSD " + args.split + ")", "",
               "| prior / ablation | " + " | ".join(lab for _, lab in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for key, res in data["ablations"].items():
            sc = res["scores"].get("relearn", {})
            md.append(f"| {key} | " + " | ".join("" if sc.get(k) is None else f"{sc[k]:.4f}" for k, _ in METRICS) + " |")
        md.append("")
    first = next(iter(data["test"].values()), None)
    if first:
        md += ["Seconds per computed item of the first test run (retrieval, alignment and features computed "
               "there once for the dataset):", "", "| stage | computed | s per item |", "|---|---|---|"]
        md += [f"| {n} | {s['computed']} | {s['s_per_item']} |" for n, s in first["stages"].items() if s["computed"]]
        md.append("")
    write_results(args.results, data, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
