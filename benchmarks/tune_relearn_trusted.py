"""Where relearn replaces the prior, chosen on ECSSD train: ``relearn.max_trusted``,
``relearn.corrections_only`` and ``relearn.confident_only``.

relearn puts the re-learned score on every superpixel with a pair passing the instance-pair
filter (``max_trusted = 1``). With ``max_trusted < 1`` only the superpixels of which the bi-level
pseudo GT trusts (as salient or as background) at most that fraction of the pixels are replaced;
the others keep the prior and its pixel detail. With ``corrections_only``, of those only the
superpixels whose re-learned class (``> 0.5``) differs from the prior's are replaced; with
``confident_only`` (``--confident``), of those only the superpixels whose re-learned score is further
from 0.5 than the prior's superpixel mean. The paper
leaves this open (Sec. IV-C: "the
re-learned final saliency can be predicted via ... the spatial-weighting scheme over the outputs
of the re-learned saliency model").

On ``--n`` images of the ECSSD **train** split (``numpy.random.default_rng(--seed)``), for each
detector of ``--priors``, each value of ``--values``, ``corrections_only`` off and on and (with
``--confident``) ``confident_only`` off and on:
``python -m pipeline run --stages relearn,crf`` with the shipped model (``--model``), the
package's evaluation (max F, adaptive F, MAE, S-measure) of the prior, the ``crf`` baseline and
relearn. One output folder, so retrieval, alignment and features are computed once; each setting
reruns only ``relearn``. The setting chosen is the one with the largest mean change of max F
over the priors.

Usage::

    .venv/bin/python benchmarks/tune_relearn_trusted.py --work ../relearn-trusted [--n 200] [--jobs 2] \
        [--values 1 0.5] [--corrections on] [--confident] [--results NAME]

Writes ``benchmarks/results/tune_relearn_trusted.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import load_average, write_results  # noqa: E402
from benchmarks.bench_relearn import DETECTORS, METRICS, _promote, _subset  # noqa: E402

DURATION = "~3 s per image for the first prior (retrieval, alignment, features), then ~1 min per value"
VALUES = (1.0, 0.75, 0.5, 0.25)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="working folder (pool links, outputs, caches)")
    ap.add_argument("--n", type=int, default=200, help="ECSSD train images (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--priors", nargs="+", default=list(DETECTORS))
    ap.add_argument("--values", nargs="+", type=float, default=list(VALUES))
    ap.add_argument("--model", default="relearn-duts", help="model file or shipped name")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--corrections", nargs="+", choices=("off", "on"), default=["off", "on"],
                    help="corrections_only settings to run (default both)")
    ap.add_argument("--confident", action="store_true", help="also run every setting with confident_only on")
    ap.add_argument("--results", default="tune_relearn_trusted")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    images, gts, _ = _subset("ECSSD", "train", args.n, work / "pool", args.seed)
    data = {"n": args.n, "seed": args.seed, "model": args.model, "load_before": load_average(), "runs": {}}
    confident = (False, True) if args.confident else (False,)
    settings = [(v, c == "on", k) for v in args.values for c in args.corrections for k in confident]
    for prior in args.priors:
        for value, corr, conf in settings:
            res = _promote(work / "ecssd_train", images, gts, prior, None, Path(args.model),
                           ["--set", f"relearn.max_trusted={value}", "--set", f"relearn.corrections_only={corr}",
                            "--set", f"relearn.confident_only={conf}"],
                           args.jobs)
            data["runs"][_key(prior, value, corr, conf)] = res
            print(prior, value, corr, conf, res["scores"], flush=True)
    data["load_after"] = load_average()

    cmd = (f".venv/bin/python benchmarks/tune_relearn_trusted.py --n {args.n} --jobs {args.jobs}"
           + f" --values {' '.join(f'{v:g}' for v in args.values)} --corrections {' '.join(args.corrections)}"
           + (" --confident" if args.confident else "")
           + (f" --results {args.results}" if args.results != "tune_relearn_trusted" else ""))
    md = [f"# relearn: where the prior is replaced (`relearn.max_trusted`), ECSSD train ({args.n} images)", "",
          f"Command: `{cmd}`; model "
          f"`{args.model}`; load average before {data['load_before']}, after {data['load_after']}.", "",
          "`max_trusted = 1`: every superpixel with a pair passing the filter is a candidate; below 1, only those "
          "of which the pseudo GT trusts at most that fraction of the pixels. `corrections_only`: of the candidates, "
          "only those whose re-learned class differs from the prior's are replaced (off: all of them, the previous "
          "rule). `confident_only`: of those, only the superpixels whose re-learned score is further from 0.5 "
          "than the prior's superpixel mean.", "",
          "| prior | map | max_trusted | corrections_only | confident_only | "
          + " | ".join(lab for _, lab in METRICS) + " |",
          "|---|---|---|---|---|" + "---|" * len(METRICS)]
    for prior in args.priors:
        first = data["runs"][_key(prior, *settings[0])]["scores"]
        for m in (prior, "crf"):
            sc = first[m]
            md.append(f"| {prior} | {m} | | | | " + " | ".join(f"{sc[k]:.4f}" for k, _ in METRICS) + " |")
        for value, corr, conf in settings:
            sc = data["runs"][_key(prior, value, corr, conf)]["scores"]["relearn"]
            md.append(f"| {prior} | relearn | {value:g} | {'on' if corr else 'off'} | {'on' if conf else 'off'} | "
                      + " | ".join(f"{sc[k]:.4f}" for k, _ in METRICS) + " |")

    # the choice: the largest mean change of max F over the priors
    def change(prior, setting):
        scores = data["runs"][_key(prior, *setting)]["scores"]
        return scores["relearn"]["max_f"] - scores[prior]["max_f"]

    gain = {st: sum(change(p, st) for p in args.priors) / len(args.priors) for st in settings}
    data["mean_max_f_change"] = {f"{v:g}/{c}/{k}": round(g, 4) for (v, c, k), g in gain.items()}
    best = max(gain, key=gain.get)
    data["chosen"] = {"max_trusted": best[0], "corrections_only": best[1], "confident_only": best[2]}
    onoff = {False: "off", True: "on"}
    md += ["", "Mean change of max F over the priors (max_trusted / corrections_only / confident_only): "
           + ", ".join(f"{v:g} / {onoff[c]} / {onoff[k]}: {g:+.4f}" for (v, c, k), g in gain.items())
           + f". Chosen (largest mean change): `max_trusted = {best[0]:g}`, "
           f"`corrections_only = {str(best[1]).lower()}`, `confident_only = {str(best[2]).lower()}`.", ""]
    write_results(args.results, data, "\n".join(md) + "\n")
    return 0


def _key(prior, value, corr, conf):
    return f"{prior}/{value}/{corr}/{conf}"


if __name__ == "__main__":
    sys.exit(main())
