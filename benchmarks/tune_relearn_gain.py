"""Choose relearn's spatial weighting and per-image gain on ECSSD train (``relearn/mijr.py`` notes, *Gain*).

For each ``sigma_s2`` of ``--sigmas`` and each prior of ``--priors``, the ``relearn`` stage runs with
the plain odds product (``gain_min = gain_max = 1``) on the train images of a ``bench_relearn.py
--split train`` working folder (``WORK/val_pool``; retrieval, alignment, features and the priors'
maps are read from its cache ``WORK/val_ecssd``). From each image's prior and promoted map the
log-odds re-learning added, ``c = logit(relearn) - logit(prior)``, is read back, and every gain rule
of the grid is scored without rerunning the pipeline: ``sigmoid(logit(prior) + k c)`` with
``k = clip(mean |c| / reference, low, high)`` (the rule ``relearn_image`` applies), evaluated by the
package's evaluation (pooled max F and MAE over the images).

The maps are read from their 8-bit PNG files, so the grid's scores are those of the quantised maps;
the chosen setting is then measured through the pipeline (``bench_relearn.py --split train``).

Criterion, fixed before the grid was run: the largest mean max F over the priors, among the
settings that leave no prior's max F below that of the prior itself (the re-learning issue's
target); settings within 0.001 of the best mean go to the lower mean MAE.

Usage::

    .venv/bin/python benchmarks/tune_relearn_gain.py --work WORK [--model FILE] [--jobs 2]

``--no-grid`` only records, per ``sigma_s2`` and prior, the distribution over the images of the
mean |added log-odds| (what the rule reads). Writes ``benchmarks/results/tune_relearn_gain_grid.{json,md}``
(``--results NAME``: ``NAME.{json,md}``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, load_average, read_map, read_mask, write_results  # noqa: E402
from benchmarks.bench_relearn import _cli  # noqa: E402

SIGMAS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.04)
REFERENCES = (0.5, 0.75, 1.0, 1.5, 2.0)
RANGES = ((0.1, 2.0), (0.25, 1.0), (0.25, 2.0), (0.25, 3.0), (0.5, 2.0), (1.0, 2.0))
FIXED = (0.5, 1.0, 2.0)
TIE = 0.001


def _changes(work: Path, prior: str, model: str, sigma: float, jobs: int, stems: list[str], gts: dict):
    """Per image: the prior (float) and the log-odds the plain odds product added to it."""
    from promote.merge import logit

    out = work / "val_ecssd"
    _cli("run", "--stages", "relearn", "--pool", str(work / "val_pool" / "images"),
         "--set", f"relearn.model={model}", "--set", f"relearn.prior={prior}",
         "--set", f"relearn.sigma_s2={sigma}", "--set", "relearn.gain_min=1", "--set", "relearn.gain_max=1",
         "--out", str(out), "--jobs", str(jobs), log=work / f"tune_gain_{prior}_{sigma}.log")
    rows = []
    for s in stems:
        before = read_map(out / prior / f"{s}.png", gts[s].shape)
        after = read_map(out / "relearn" / f"{s}.png", gts[s].shape)
        base = logit(before)
        rows.append((base, logit(after) - base))
    return rows


def _score(rows, rule, stems, gt_dir: Path) -> tuple[float, float]:
    from pipeline.evaluation import evaluate_methods
    from promote.merge import sigmoid

    maps = {}
    for s, (base, change) in zip(stems, rows):
        maps[s] = sigmoid(base + rule(float(np.abs(change).mean())) * change).astype(np.float32)
    res = evaluate_methods({"m": maps}, str(gt_dir), stems=stems, log=False).pooled["m"]
    return float(res["max_f"]), float(res["mae"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="a bench_relearn.py --split train working folder")
    ap.add_argument("--model", default=str(ROOT / "pipeline" / "shipped_models" / "relearn-u2netp-duts.npz"))
    ap.add_argument("--priors", nargs="+", default=["u2netp", "contrast", "gradsal", "arn"])
    ap.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-grid", action="store_true", help="only the per-image mean |added log-odds| per prior")
    ap.add_argument("--results", default="tune_relearn_gain_grid")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    gt_dir = work / "val_pool" / "gt"
    stems = sorted(p.stem for p in gt_dir.glob("*.png"))
    if not stems:
        raise SystemExit(f"{gt_dir}: no masks; run benchmarks/bench_relearn.py --split train --work {work} first")
    gts = {s: read_mask(gt_dir / f"{s}.png") for s in stems}
    data = {"n_images": len(stems), "priors": args.priors, "load_before": load_average(), "rows": []}

    prior_scores = {}
    for p in args.priors:
        prior_maps = {s: read_map(work / "val_ecssd" / p / f"{s}.png", gts[s].shape) for s in stems}
        from pipeline.evaluation import evaluate_methods

        r = evaluate_methods({p: prior_maps}, str(gt_dir), stems=stems, log=False).pooled[p]
        prior_scores[p] = (float(r["max_f"]), float(r["mae"]))
    data["prior_scores"] = prior_scores

    rules = [(f"fixed {k}", k, (k, k)) for k in FIXED]
    rules += [(f"{ref} / [{lo}, {hi}]", ref, (lo, hi)) for ref, (lo, hi) in itertools.product(REFERENCES, RANGES)]
    data["mean_abs_change"] = {}
    for sigma in args.sigmas:
        changes = {p: _changes(work, p, args.model, sigma, args.jobs, stems, gts) for p in args.priors}
        data["mean_abs_change"][str(sigma)] = {
            p: np.percentile([np.abs(c).mean() for _, c in changes[p]], [10, 50, 90]).round(3).tolist()
            for p in args.priors}
        for name, ref, (lo, hi) in ([] if args.no_grid else rules):
            rule = (lambda d, ref=ref, lo=lo, hi=hi: float(np.clip(d / ref, lo, hi)))
            scores = {p: _score(changes[p], rule, stems, gt_dir) for p in args.priors}
            row = {"sigma_s2": sigma, "rule": name, "reference": ref, "range": [lo, hi], "scores": scores,
                   "mean_max_f": float(np.mean([v[0] for v in scores.values()])),
                   "mean_mae": float(np.mean([v[1] for v in scores.values()])),
                   "keeps_every_prior": all(scores[p][0] >= prior_scores[p][0] for p in args.priors)}
            data["rows"].append(row)
            print(sigma, name, round(row["mean_max_f"], 4), flush=True)
    spread = ["Mean |added log-odds| per image (the rule's input) at the gain 1, percentiles 10 / 50 / 90:", "",
              "| sigma_s2 | " + " | ".join(args.priors) + " |", "|---|" + "---|" * len(args.priors)]
    spread += [f"| {sig} | " + " | ".join(" / ".join(f"{v:.2f}" for v in q[p]) for p in args.priors) + " |"
               for sig, q in data["mean_abs_change"].items()]
    head = ["# relearn: spatial weighting and per-image gain, chosen on ECSSD train", "",
            f"Command: `.venv/bin/python benchmarks/tune_relearn_gain.py --work WORK"
            + (f" --sigmas {' '.join(str(x) for x in args.sigmas)} --no-grid --results {args.results}`"
               if args.no_grid else "`")
            + f" ({len(stems)} images of `bench_relearn.py --split train`; model `{Path(args.model).name}`).", ""]
    if args.no_grid:
        data["load_after"] = load_average()
        write_results(args.results, data, "\n".join(head + spread) + "\n")
        return 0
    allowed = [r for r in data["rows"] if r["keeps_every_prior"]]
    best = max(r["mean_max_f"] for r in allowed)
    chosen = min((r for r in allowed if r["mean_max_f"] >= best - TIE), key=lambda r: r["mean_mae"])
    data["chosen"] = chosen
    data["load_after"] = load_average()

    md = ["# relearn: spatial weighting and per-image gain, chosen on ECSSD train", "",
          f"Command: `.venv/bin/python benchmarks/tune_relearn_gain.py --work WORK` ({len(stems)} images of "
          f"`bench_relearn.py --split train`; model `{Path(args.model).name}`); load average before "
          f"{data['load_before']}, after {data['load_after']}.", "",
          "Rule `R / [lo, hi]`: each image's added log-odds scaled by clip(mean |added| / R, lo, hi); "
          "`fixed k`: by k. Scores of the 8-bit maps, max F / MAE per prior.", "",
          "Priors: " + ", ".join(f"{p} {v[0]:.4f} / {v[1]:.4f}" for p, v in prior_scores.items()) + ".", "",
          f"Chosen (mean max F within {TIE} of the best among the rows keeping every prior's max F, then "
          f"the lowest mean MAE): sigma_s2 {chosen['sigma_s2']}, rule {chosen['rule']}.", "",
          "| sigma_s2 | rule | " + " | ".join(args.priors) + " | mean max F | mean MAE | keeps every prior |",
          "|---|---|" + "---|" * (len(args.priors) + 3)]
    for r in sorted(data["rows"], key=lambda r: -r["mean_max_f"]):
        md.append(f"| {r['sigma_s2']} | {r['rule']} | "
                  + " | ".join(f"{r['scores'][p][0]:.4f} / {r['scores'][p][1]:.4f}" for p in args.priors)
                  + f" | {r['mean_max_f']:.4f} | {r['mean_mae']:.4f} | {'yes' if r['keeps_every_prior'] else 'no'} |")
    write_results(args.results, data, "\n".join(md + [""] + spread) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
