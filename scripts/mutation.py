"""Mutation testing of one core module with mutmut: do the tests catch what they claim?

Usage (from the repository root; needs the ``mutation`` extra, ``pip install -e .[test,mutation]``)::

    .venv/bin/python scripts/mutation.py pipeline/cache.py      # one module
    .venv/bin/python scripts/mutation.py --list                 # the modules and their tests
    .venv/bin/python scripts/mutation.py --all                  # every module, one after the other
    .venv/bin/python scripts/mutation.py pipeline/runner.py --children 2   # two mutants at once
    .venv/bin/python scripts/mutation.py pipeline/runner.py --recheck      # survivors again, new tests

Each run works in a scratch copy, ``.mutation/<module>/`` (git-ignored): the module's package and
``tests/`` are copied there with a generated ``pyproject.toml`` whose ``[tool.mutmut]`` section
mutates only that module and runs only that module's test files, so runs never touch the working
tree and one module's configuration does not leak into another's. mutmut runs one worker
(``--max-children 1``) with one thread per library (the machine has 2 cores); the per-module
numbers are written to ``benchmarks/results/mutation.json`` and ``.md``.

Why mutmut (3.x) and not cosmic-ray: mutmut imports the code and runs the test session once, then
forks one process per mutant with the mutant switched on by a trampoline, and runs only the tests
that reach the mutated function. cosmic-ray starts a fresh test process per mutant; with
numpy/scipy/numba/torch imports and numba compilation that is seconds to tens of seconds of
overhead per mutant, too slow for hundreds of mutants on 2 cores.

numba kernels: mutmut does not mutate decorated functions, so for ``alignment/_bp_kernels.py`` the
scratch copy drops the ``@njit`` decorators and the run sets ``NUMBA_DISABLE_JIT=1``: the kernels
are mutated and tested as plain Python, against their small-input tests
(``tests/alignment/test_bp_kernels.py``), which are fast enough without compilation.

``--recheck`` takes a finished full run's scratch copy, copies the current ``tests/`` into it and
runs only that run's survivors again, except those listed as equivalent, and the mutants it did not
reach if it was stopped part-way (the module itself must be unchanged): after tests were added for
the survivors, it gives the full module's numbers without running the killed mutants again.

Equivalent mutants (a change no test can observe because the behaviour is the same) are listed in
``scripts/mutation_equivalents.toml`` with one line each on why; the kill rate excludes them. A
listed mutant that is no longer a survivor is reported, so the list does not go stale silently.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
RESULTS = ROOT / "benchmarks" / "results"
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.toml"

# module -> the test files that exercise it (only these run against its mutants), and an
# optional restriction to some of its functions (mutmut mutant-name globs).
MODULES: dict[str, dict] = {
    "pipeline/cache.py": {
        "tests": ["tests/pipeline/test_cache.py"],
    },
    "pipeline/runner.py": {
        "tests": ["tests/pipeline/test_runner.py", "tests/pipeline/test_runner_claims.py",
                  "tests/pipeline/test_neighbour_inputs.py"],
        # the runner limits numba's threads itself: with NUMBA_NUM_THREADS=1 there is nothing to limit
        # and the test of that limit could not fail
        "free_env": ["NUMBA_NUM_THREADS"],
    },
    "pipeline/pool.py": {
        "tests": ["tests/pipeline/test_pool.py"],
    },
    "pipeline/evaluation/metrics.py": {
        "tests": ["tests/pipeline/evaluation/test_metrics.py", "tests/pipeline/evaluation/test_metrics_contract.py",
                  "tests/pipeline/evaluation/test_io.py", "tests/pipeline/evaluation/test_reports.py"],
    },
    "pipeline/registry.py": {
        "tests": ["tests/pipeline/test_registry.py", "tests/pipeline/test_config.py",
                  "tests/pipeline/stages/test_params.py"],
    },
    "pipeline/config.py": {
        "tests": ["tests/pipeline/test_config.py"],
    },
    "alignment/siftflow.py": {
        "tests": ["tests/alignment/test_siftflow.py"],
        "preload": ["alignment.siftflow", "alignment.dense_sift"],
    },
    "alignment/_bp_kernels.py": {
        "tests": ["tests/alignment/test_bp_kernels.py"],
        "no_jit": True,
    },
    "alignment/bilevel.py": {
        "tests": ["tests/alignment/test_bilevel.py", "tests/alignment/test_bilevel_contract.py",
                  "tests/alignment/test_bilevel_claims.py", "tests/alignment/test_bilevel_box_links.py"],
        "preload": ["alignment.bilevel", "alignment.siftflow", "alignment.dense_sift"],
    },
    # The learned methods: only their loss / label / merge functions (the networks' construction,
    # training loops and model I/O are left out: their tests train networks, seconds per mutant).
    "promote/lps.py": {
        "tests": ["tests/promote/test_lps.py"],
        "preload": ["torch", "promote.lps"],
        # Eq. 3 (both forms), Eq. 2 anchors, Eq. 5 iteration; the Eq. 4 loss and the Alg. 1 label
        # flips are inline in train_anchor_network, which is not in the list.
        "functions": ["nearest_anchor_probability", "_eq3_flat", "region_anchor", "iterate_prior"],
    },
    "promote/merge.py": {
        "tests": ["tests/promote/test_lps.py", "tests/promote/test_ldps.py"],
        "preload": ["torch", "promote.merge", "promote.lps", "promote.ldps"],
        # LDPS's Eq. 10-11, the logodds rule, and the sigmoid of LPS's Eq. 3.
        "functions": ["confidence", "confidence_merge", "sigmoid", "logit", "merge_with_prior"],
    },
    "promote/ldps.py": {
        "tests": ["tests/promote/test_ldps.py"],
        "preload": ["torch", "promote.ldps"],
        # Sec. 4.2 guide masks, Eq. 7 prototype (numpy and torch), Eq. 8-9 pairs, Eq. 5-6 loss,
        # and the guidance check that picks the training images (Eq. 10-11: promote/merge.py).
        "functions": ["guide_masks", "weighted_prototype", "training_pairs", "_prototypes", "_pair_loss",
                      "_has_guidance"],
    },
    "relearn/pseudo_gt.py": {
        "tests": ["tests/relearn/test_pseudo_gt.py"],
        "preload": ["relearn.pseudo_gt", "promote.crf"],
        "functions": ["crf_pseudo_gt", "superpixel_majority"],
    },
}

THREAD_ENV = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1"}


def _slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def _toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def prepare(module: str, spec: dict, work: Path) -> None:
    """A fresh scratch copy: the module's package, the tests, the data link, a generated config."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    package = module.split("/")[0]
    ignore = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc")
    shutil.copytree(ROOT / package, work / package, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        # tests read data at ../shared relative to the repository root; mutmut runs the tests
        # from <work>/mutants, whose parent is <work>.
        (work / "shared").symlink_to(shared, target_is_directory=True)
    if spec.get("no_jit"):
        path = work / module
        text = path.read_text()
        path.write_text(re.sub(r"^@njit\(.*\)\n", "", text, flags=re.M))
    # Imported by the fork server while it collects the tests, so that every mutant's process is
    # forked with the heavy imports done (the stage modules import torch, numba, OpenCV: seconds).
    (work / "mutation_preload.py").write_text(
        '"""Heavy imports done once in mutmut\'s fork server (generated by scripts/mutation.py)."""\n'
        + "".join(f"import {m}  # noqa: F401\n" for m in spec.get("preload", []))
        + ("from pipeline import registry\nregistry.all_stages()\n" if package == "pipeline" else "")
    )
    pytest_opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    filterwarnings = pytest_opts.get("filterwarnings", [])
    (work / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        f"source_paths = {_toml_list([package])}\n"
        f"only_mutate = {_toml_list([module])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(spec['tests'])}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutation_preload"]\n'
        'also_copy = ["mutation_preload.py"]\n'
        # Tests start worker processes (joblib/loky); in a forked-from-pytest mutmut process
        # their exits confuse its bookkeeping of mutant workers, so a fork server runs pytest.
        'process_isolation = "forkserver"\n'
        "\n[tool.pytest.ini_options]\n"
        f"filterwarnings = {_toml_list(filterwarnings)}\n"
    )


def load_equivalents() -> dict[str, str]:
    if not EQUIVALENTS.exists():
        return {}
    data = tomllib.loads(EQUIVALENTS.read_text())
    return {name: why for table in data.values() for name, why in table.items()}


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def collect(module: str, work: Path, selected: list[str] | None) -> dict:
    """Counts per status from mutmut's meta file (exit code per mutant)."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / (module + ".meta")).read_text())
    codes = meta["exit_code_by_key"]
    if selected is not None:
        codes = {k: v for k, v in codes.items() if k in selected}
    by_status: dict[str, list[str]] = {}
    for name, code in sorted(codes.items()):
        by_status.setdefault(status_by_exit_code[code], []).append(name)
    return by_status


def _count_mutants(work: Path, module: str, patterns: list[str] | None) -> int:
    """Every mutant mutmut made of the module, or of the functions the patterns name."""
    import fnmatch

    every = json.loads((work / "mutants" / (module + ".meta")).read_text())["exit_code_by_key"]
    if patterns is None:
        return len(every)
    return sum(any(fnmatch.fnmatch(n, p) for p in patterns) for n in every)


def _survivors(module: str, work: Path) -> list[str]:
    """The run's surviving mutants and those it did not reach (a run stopped part-way)."""
    from mutmut.stats import status_by_exit_code

    codes = json.loads((work / "mutants" / (module + ".meta")).read_text())["exit_code_by_key"]
    return sorted(n for n, c in codes.items()
                  if status_by_exit_code[c] in ("survived", "no tests", "not checked"))


def refresh_tests(module: str, work: Path) -> None:
    """Copy the current tests into a finished run's scratch copy (the module must be unchanged)."""
    if (work / module).read_text() != (ROOT / module).read_text():
        raise SystemExit(f"{module} changed since the run in {work}: its mutants are stale; run it again")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for dest in (work / "tests", work / "mutants" / "tests"):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(ROOT / "tests", dest, ignore=ignore)
    # which tests reach which function: collected again, so that the new tests are run
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def run_module(module: str, functions: list[str] | None, sample: int | None, seed: int,
               children: int = 1, recheck: bool = False) -> dict:
    spec = MODULES[module]
    work = WORK / _slug(module)
    previous = None
    if recheck:
        # A full run's survivors (and any mutant it did not reach, when it was stopped part-way),
        # run against the current tests: the killed mutants stay killed (tests were only added).
        if functions or sample is not None:
            raise SystemExit("--recheck re-runs the survivors of a full run of the whole module")
        previous = json.loads((RESULTS / "mutation.json").read_text())["modules"].get(module)
        if previous is None or previous.get("sample"):
            raise SystemExit(f"--recheck needs a full run of {module} in {RESULTS / 'mutation.json'}")
        refresh_tests(module, work)
    else:
        prepare(module, spec, work)
    env = dict(os.environ, **THREAD_ENV)
    for name in spec.get("free_env", ()):
        env.pop(name, None)
    if spec.get("no_jit"):
        env["NUMBA_DISABLE_JIT"] = "1"
    mutmut = Path(sys.executable).with_name("mutmut")
    cmd = [str(mutmut), "run", "--max-children", str(children)]
    slug = _slug(module)
    functions = functions or spec.get("functions")
    # mutmut's names: module.x_<function>__mutmut_<n>, module.xǁ<Class>ǁ<method>__mutmut_<n>
    patterns = [f if f.startswith(slug) else f"{slug}.x{f if f.startswith('ǁ') else '_' + f}__mutmut_*"
                for f in functions or []]
    names = list(patterns)
    selected = None
    if sample is not None:
        # Generate the mutants and the test statistics without running any mutant (a name that
        # matches none), then draw the sample from the generated names.
        with open(work / "mutmut-generate.log", "w") as log:
            subprocess.run(cmd + [f"{slug}.no_such_function__mutmut_0"], cwd=work, env=env,
                           check=False, stdout=log, stderr=subprocess.STDOUT)
        import random

        meta = json.loads((work / "mutants" / (module + ".meta")).read_text())
        every = sorted(meta["exit_code_by_key"])
        if names:
            import fnmatch

            every = [n for n in every if any(fnmatch.fnmatch(n, p) for p in names)]
        selected = sorted(random.Random(seed).sample(every, min(sample, len(every))))
        names = selected
    elif names:
        selected = None
    if recheck:
        # the listed equivalent mutants stay survivors (no test can kill them): not run again
        listed = load_equivalents()
        names = [n for n in _survivors(module, work) if n not in listed]
    start = time.monotonic()
    with open(work / "mutmut.log", "w") as log:  # mutmut's progress output, kept out of the terminal
        proc = subprocess.run(cmd + names, cwd=work, env=env, check=False, stdout=log,
                              stderr=subprocess.STDOUT)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        print(f"mutmut exited with {proc.returncode}; see {work / 'mutmut.log'}", file=sys.stderr)
    if recheck:
        wall = previous["wall_s"] + wall
    if functions and sample is None:
        import fnmatch

        meta = json.loads((work / "mutants" / (module + ".meta")).read_text())
        selected = [n for n in meta["exit_code_by_key"] if any(fnmatch.fnmatch(n, p) for p in names)]
    by_status = collect(module, work, selected)
    equivalents = load_equivalents()
    survived = by_status.get("survived", []) + by_status.get("no tests", [])
    equivalent = [n for n in survived if n in equivalents]
    stale = [n for n in equivalents if n.startswith(slug + ".") and n not in survived
             and (selected is None or n in selected)]
    killed = sum(len(by_status.get(s, [])) for s in ("killed", "timeout", "segfault"))
    generated = sum(len(v) for v in by_status.values())
    not_checked = len(by_status.get("not checked", [])) + len(by_status.get("skipped", []))
    checked = generated - not_checked
    denominator = checked - len(equivalent)
    row = {
        "module": module,
        "tests": spec["tests"],
        "functions": functions or None,
        "sample": ({"size": len(selected), "seed": seed, "drawn_from": "uniformly from the generated mutants"}
                   if sample is not None else None),
        "generated": generated,
        # every mutant mutmut made of the module (or of the named functions); "generated" above
        # counts the ones this run covers (the sample, when sampling)
        "generated_total": _count_mutants(work, module, patterns or None),
        "checked": checked,
        "killed": killed,
        "timeout": len(by_status.get("timeout", [])),
        "survived": len(survived) - len(equivalent),
        "equivalent": len(equivalent),
        "suspicious": len(by_status.get("suspicious", [])),
        "kill_rate": round(killed / denominator, 4) if denominator else None,
        "survivors": sorted(set(survived) - set(equivalent)),
        "equivalent_mutants": {n: equivalents[n] for n in sorted(equivalent)},
        "wall_s": round(wall, 1),
        "mutmut": mutmut_version(),
        "no_jit": bool(spec.get("no_jit")),
        "command": "scripts/mutation.py " + module
        + "".join(f" --function {f}" for f in (functions if functions != spec.get("functions") else []))
        + (f" --sample {sample} --seed {seed}" if sample is not None else "")
        + (f" --children {children}" if children != 1 else "")
        + (" then --recheck" if recheck else ""),
        "recheck": ({"survivors_rerun": len(names), "of_run": previous["date"],
                     "survived_before": previous["survived"] + previous["equivalent"],
                     "not_reached": previous["generated"] - previous["checked"]} if recheck else None),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if stale:
        print("listed as equivalent but not a survivor now (edit scripts/mutation_equivalents.toml):",
              *stale, sep="\n  ", file=sys.stderr)
    return row


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (the kill rate of a sampled module)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def write_results(row: dict) -> None:
    path = RESULTS / "mutation.json"
    data = json.loads(path.read_text()) if path.exists() else {"modules": {}}
    data["modules"][row["module"]] = row
    data["modules"] = {m: data["modules"][m] for m in MODULES if m in data["modules"]}
    path.write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / "mutation.md").write_text(markdown(data))


def markdown(data: dict) -> str:
    lines = [
        "# Mutation testing of the core modules",
        "",
        "Produced by `.venv/bin/python scripts/mutation.py MODULE` (mutmut, one worker, one thread per",
        "library); see the script's docstring and CONTRIBUTING.md. *Kill rate* = killed / (checked -",
        "equivalent); killed includes timeouts. Survivors and equivalent mutants are named in",
        "`mutation.json`; the reasons for the equivalent ones are in `scripts/mutation_equivalents.toml`.",
        "",
        "*Set*: `full` = every mutant of the module (or of its listed functions, see the notes) was run;",
        "`sample N` = N of them drawn uniformly at random (seed in the command). Wall times are of",
        "mutmut's mutant runs alone (after generating the mutants and the test statistics), on a",
        "2-core machine at `nice -n 19`, often shared with other jobs: compare them with care.",
        "",
        "| module | set | mutants of the module | generated (this run) | checked | killed | survived | equivalent | kill rate | wall (s) | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in data["modules"].values():
        rate = "n/a" if row["kill_rate"] is None else f"{100 * row['kill_rate']:.1f}%"
        wall = "-" if row["wall_s"] is None else f"{row['wall_s']:.0f}"  # a run stopped part-way
        lines.append(
            f"| `{row['module']}` | {'sample ' + str(row['sample']['size']) if row.get('sample') else 'full'} | "
            f"{row.get('generated_total', row['generated'])} | {row['generated']} | "
            f"{row['checked']} | {row['killed']} | "
            f"{row['survived']} | {row['equivalent']} | {rate} | {wall} | "
            f"`{row['command']}` |"
        )
        if row.get("functions"):
            notes.append(f"- `{row['module']}`: only the functions {', '.join(row['functions'])} "
                         "are mutated (the counts are theirs).")
        if row.get("sample"):
            s = row["sample"]
            n = row["checked"] - row["equivalent"]
            low, high = wilson_interval(row["killed"], n)
            notes.append(f"- `{row['module']}`: the numbers are over a sample of {s['size']} mutants "
                         f"drawn {s['drawn_from']} (seed {s['seed']}), not over all of them; the kill "
                         f"rate of the whole module lies in [{100 * low:.1f}%, {100 * high:.1f}%] with 95% "
                         f"confidence (Wilson interval, {row['killed']} of {n}).")
        if row.get("recheck"):
            r = row["recheck"]
            notes.append(f"- `{row['module']}`: a full run, then {r['survivors_rerun']} mutants run against the tests as "
                         "they are now (`--recheck`): the run's survivors not listed as equivalent and the "
                         f"{r.get('not_reached', 0)} mutants it had not reached when it was stopped. Tests were "
                         "only added in between, so the mutants the run killed stay killed. Wall: both runs."
                         + (f" The recheck was stopped too: {row['generated'] - row['checked']} mutants are not "
                            "checked yet, and the kill rate is over the checked ones; the same command goes on "
                            "with them." if row["checked"] < row["generated"] else ""))
        if row.get("no_jit"):
            notes.append(f"- `{row['module']}`: numba kernels mutated and tested as plain Python "
                         "(`@njit` removed in the scratch copy, `NUMBA_DISABLE_JIT=1`).")
    lines += ["", "Tests run against each module's mutants:", ""]
    lines += [f"- `{r['module']}`: " + ", ".join(f"`{t}`" for t in r["tests"]) for r in data["modules"].values()]
    if notes:
        lines += ["", "Notes:", ""] + notes
    survivors = [(r["module"], n) for r in data["modules"].values() for n in r["survivors"]]
    lines += ["", "## Surviving mutants", ""]
    lines += [f"- `{n}`" for _, n in survivors] or ["None."]
    lines += ["", "## Equivalent mutants", ""]
    eq = [(n, why) for r in data["modules"].values() for n, why in r["equivalent_mutants"].items()]
    lines += [f"- `{n}`: {why}" for n, why in eq] or ["None."]
    versions = sorted({r["mutmut"] for r in data["modules"].values()})
    lines += ["", f"mutmut {', '.join(versions)}; each row dated in `mutation.json`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", help="a module path, e.g. pipeline/cache.py")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--all", action="store_true", help="run every module in turn")
    parser.add_argument("--function", action="append", default=None,
                        help="mutate only this function (repeatable; mutmut name glob after the module, "
                             "e.g. 'label_flip' or 'ǁLpsNetǁforward')")
    parser.add_argument("--sample", type=int, default=None,
                        help="run only N mutants drawn uniformly at random (the results say so)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--children", type=int, default=1,
                        help="mutants run at once (mutmut --max-children; default 1: the tests start workers too)")
    parser.add_argument("--recheck", action="store_true",
                        help="re-run the survivors of the module's last full run against the current tests")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/results")
    args = parser.parse_args(argv)
    if args.list:
        for module, spec in MODULES.items():
            print(module, "<-", " ".join(spec["tests"]))
        return 0
    modules = list(MODULES) if args.all else [args.module]
    if modules == [None] or any(m not in MODULES for m in modules):
        parser.error(f"module must be one of: {', '.join(MODULES)}")
    for module in modules:
        row = run_module(module, args.function, args.sample, args.seed, args.children, args.recheck)
        summary = {k: row[k] for k in ("generated", "checked", "killed", "survived", "equivalent", "kill_rate")}
        print(module, json.dumps(summary))
        for name in row["survivors"]:
            print("  survived:", name)
        if not args.no_write:
            write_results(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
