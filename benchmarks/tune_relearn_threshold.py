"""MIJR re-learning: sweep the instance-pair filter's threshold at inference on ECSSD train.

For each ``--thresholds`` value ``T`` (and ``nofilter``: ``relearn.use_filter=false``), runs
:mod:`benchmarks.bench_relearn` on the model ``--model`` with ``--split train --n-test N --set
relearn.filter_threshold=T``, written as ``tune_relearn_threshold_TAG_T``; a run whose result
file exists is read, not rerun (``--rerun`` to recompute). ``--existing T=NAME`` reads a
threshold's scores from another result file of the same command (e.g. the 0.5 run made before the
parameter existed). ``--extra LABEL=NAME`` adds a row of another run (e.g. the shipped model at the
chosen threshold). Then writes the summary: max F / adaptive F / MAE of each prior, the share of
pixels changed and, of them, the share closer to the GT, and the mean max F over the priors::

    .venv/bin/python benchmarks/tune_relearn_threshold.py --work ../relearn-bench --model ../relearn-bench/models/deep.npz \\
        --tag deep1k --thresholds 0.9 0.1 0.02 0.005 0.001 0.0002 nofilter --existing 0.5=tune_relearn_features_deep_model

Writes ``benchmarks/results/tune_relearn_threshold.{json,md}`` (``--results NAME``: ``NAME.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_relearn  # noqa: E402
from benchmarks._common import RESULTS, write_results  # noqa: E402
from pipeline import models  # noqa: E402

DURATION = "~4 min per threshold on 100 ECSSD train images once bench_relearn's caches exist"
PRIORS = bench_relearn.DETECTORS


def _run(args, value: str, name: str) -> None:
    sets = ["--set", "relearn.use_filter=false"] if value == "nofilter" else ["--set", f"relearn.filter_threshold={value}"]
    bench_relearn.main(["--work", str(args.work), "--split", "train", "--n-test", str(args.n_test), "--sod",
                        "--ablation-priors", "--model", str(args.model), *sets, "--results", name])


def _command(args) -> str:
    parts = ["--work WORK", f"--model {bench_relearn._shown(args.model, args.work)}", f"--tag {args.tag}",
             "--thresholds " + " ".join(args.thresholds)]
    parts += [f"--existing {e}" for e in args.existing] + [f"--extra '{e}'" for e in args.extra]
    parts += [f"--n-test {args.n_test}"] if args.n_test != 100 else []
    return " ".join(parts + ([f"--results {args.results}"] if args.results != "tune_relearn_threshold" else []))


def _row(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())["test"]


def _cell(scores: dict) -> str:
    return f"{scores['max_f']:.4f} / {scores['adp_f']:.4f} / {scores['mae']:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="bench_relearn's working folder")
    ap.add_argument("--model", required=True, type=Path, help="the relearn model file")
    ap.add_argument("--tag", default="model", help="part of the per-run result names")
    ap.add_argument("--thresholds", nargs="+", required=True, help="values of relearn.filter_threshold, or nofilter")
    ap.add_argument("--existing", action="append", default=[], metavar="T=NAME")
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=NAME")
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--results", default="tune_relearn_threshold", help="name of the summary's result files")
    args = ap.parse_args(argv)
    trained_at = models.read_meta(args.model)["hparams"]["threshold"]
    names = {t: f"tune_relearn_threshold_{args.tag}_{t}" for t in args.thresholds}
    names.update(dict(e.split("=", 1) for e in args.existing))
    for t, name in names.items():
        if args.rerun or not (RESULTS / f"{name}.json").is_file():
            _run(args, t, name)

    def order(t):
        return -1.0 if t == "nofilter" else float(t)

    rows = {}
    for t in sorted(names, key=order, reverse=True):
        res = _row(names[t])
        rows[t] = {p: {**res[f"ECSSD/{p}"]["scores"]["relearn"],
                       **{k: res[f"ECSSD/{p}"].get(k) for k in ("changed_share", "closer_share")}} for p in PRIORS}
    first = _row(names[args.thresholds[0]])
    prior = {p: first[f"ECSSD/{p}"]["scores"][p] for p in PRIORS}
    best = max((t for t in rows if t != "nofilter"), key=lambda t: sum(rows[t][p]["max_f"] for p in PRIORS))

    def mean(scores):
        return sum(scores[p]["max_f"] for p in PRIORS) / len(PRIORS)

    md = ["# MIJR re-learning: the instance-pair filter's threshold at inference (ECSSD train)", "",
          f"Command: `.venv/bin/python benchmarks/tune_relearn_threshold.py {_command(args)}` "
          "(WORK: bench_relearn's working folder).", "",
          "`relearn.filter_threshold`: a pair passes the filter when the filter's trust exceeds it. This model was "
          f"trained passing pairs at {trained_at} (its `settings[\"threshold\"]`). Scored on "
          f"{args.n_test} images of ECSSD's *train* split (`bench_relearn.py --split train`), the other defaults "
          "(`corrections_only`, `confident_only`) on. One file per row, with its command: "
          + ", ".join(f"`{n}.md`" for n in names.values()) + ".", "",
          "Max F / adaptive F / MAE; pixels changed (share of those closer to the GT, where measured):", "",
          "| filter_threshold | " + " | ".join(PRIORS) + " | mean max F |", "|---|" + "---|" * (len(PRIORS) + 1),
          "| (the prior) | " + " | ".join(_cell(prior[p]) for p in PRIORS) + f" | {mean(prior):.4f} |"]
    for t, sc in rows.items():
        label = "every pair (`use_filter=false`)" if t == "nofilter" else (f"**{t}**" if t == best else t)
        cells = []
        for p in PRIORS:
            c = _cell(sc[p]) + f" ({sc[p]['changed_share']:.1%}"
            if sc[p].get("closer_share") is not None:
                c += f", {sc[p]['closer_share']:.0%} closer"
            cells.append(c + ")")
        md.append(f"| {label} | " + " | ".join(cells) + f" | {mean(sc):.4f} |")
    md += ["", f"Largest mean max F: {best} (in bold).", ""]
    extra = {}
    for e in args.extra:
        label, name = e.split("=", 1)
        res = _row(name)
        extra[label] = {p: res[f"ECSSD/{p}"]["scores"]["relearn"] for p in PRIORS}
        md.append(f"{label} (`{name}.md`): " + ", ".join(f"{p} {_cell(extra[label][p])}" for p in PRIORS)
                  + f"; mean max F {mean(extra[label]):.4f}.")
    write_results(args.results, {"trained_at": trained_at, "names": names, "prior": prior, "rows": rows,
                                 "best": best, "extra": extra}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
