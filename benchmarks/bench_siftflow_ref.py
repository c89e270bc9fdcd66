"""Dense SIFT + SIFT-Flow against Ce Liu's C++ reference outputs (``../shared/data/siftflow-ref``).

Run: ``.venv/bin/python benchmarks/bench_siftflow_ref.py [--baseline REV] [--repeats R]``; writes
``benchmarks/results/bench_siftflow_ref.json`` and ``.md``.

Per pair of the reference set (a known shift and six ECSSD pairs, 256x256, read from the same
PNGs the C++ program read):

* dense SIFT against the reference's bytes where they are stored (``*_sift.npz``): share of equal
  values and the largest absolute difference;
* the flow from our own dense SIFT: share of pixels whose (vx, vy) equals the C++ flow exactly,
  share within 1 px in both components, and, for the shift pair, the share of the interior
  (20 px margin) at the true shift (5, -10);
* the flow from the reference's own SIFT, where both images' SIFT are stored (BP alone);
* the final energy of our flow, computed as the reference computes it (``BPFlow::GetEnergy`` at
  the finest level; our ``energy`` entry is that computation) against the reference's
  ``final_energy``;
* with ``--baseline``, the share of exact pixels of that revision's flow too;
* seconds per pair (dense SIFT of both images + SIFT-Flow; minimum over repeats, the timed
  variants interleaved in each round), with ``record_energy=False`` as the pipeline runs it and
  with the energy of every iteration.

``--baseline REV``: the same timings, in the same run, of the implementation at git revision
REV (its ``alignment/{dense_sift,siftflow,_bp_kernels}.py`` imported from a temporary folder), so
the speed claim is a ratio measured in one run. The C++ times are the reference README's
(single-threaded, same machine kind, measured by its author), quoted, not measured here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment import dense_sift, sift_flow  # noqa: E402
from benchmarks._common import DATA, ROOT, load_average, read_rgb, write_results  # noqa: E402

DURATION = "~1 min (~2 min with --baseline)"
REF = DATA / "siftflow-ref"
PAIRS = ("astronaut_shift", "ecssd_0001_0003", "ecssd_0005_0006", "ecssd_0008_0009",
         "ecssd_0010_0011", "ecssd_0012_0013", "ecssd_0014_0015")
SHIFT = (5, -10)  # (vx, vy) of astronaut_shift
MARGIN = 20


def _cpp_times():
    """{pair: C++ seconds (SIFT a+b + c2f)} from the reference README's table."""
    out = {}
    for line in (REF / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*(\w+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
        if m and m.group(1) in PAIRS:
            out[m.group(1)] = float(m.group(4))
    return out


def _final_energy(name):
    text = (REF / f"{name}_energy.txt").read_text()
    return float(re.search(r"final_energy\s+([\d.]+)", text).group(1))


def _baseline(rev, tmp):
    """Import the alignment kernels of git revision ``rev`` as a separate package."""
    pkg = Path(tmp) / "baseline_alignment"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod in ("dense_sift", "siftflow", "_bp_kernels"):
        src = subprocess.run(["git", "show", f"{rev}:alignment/{mod}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        (pkg / f"{mod}.py").write_text(src.replace("from alignment import", "from baseline_alignment import"))
    sys.path.insert(0, str(tmp))
    return (importlib.import_module("baseline_alignment.dense_sift").dense_sift,
            importlib.import_module("baseline_alignment.siftflow").sift_flow)


def _time(fns, repeats):
    """Minimum seconds of each function over ``repeats`` rounds, the functions interleaved in
    every round (so a slow spell of the machine weighs on all of them alike)."""
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=None, help="git revision to time in the same run")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats per pair (default 3)")
    args = ap.parse_args(argv)
    if not REF.is_dir():
        print(f"{REF} not found", file=sys.stderr)
        return 1
    images = {n: (read_rgb(REF / f"{n}_a.png"), read_rgb(REF / f"{n}_b.png")) for n in PAIRS}
    cpp = _cpp_times()
    tmp = tempfile.TemporaryDirectory()
    base = _baseline(args.baseline, tmp.name) if args.baseline else None
    a0, b0 = images[PAIRS[0]]
    sift_flow(dense_sift(a0), dense_sift(b0))  # compile
    if base:
        base[1](base[0](a0), base[0](b0))
    load_before = load_average()
    rows = []
    for name in PAIRS:
        a, b = images[name]
        vx_ref, vy_ref = np.load(REF / f"{name}_vx.npy"), np.load(REF / f"{name}_vy.npy")
        row = {"pair": name, "cpp_final_energy": _final_energy(name), "cpp_s": cpp.get(name)}
        sa, sb = dense_sift(a), dense_sift(b)
        sift_file = REF / f"{name}_sift.npz"
        if sift_file.exists():
            ref_sift = np.load(sift_file)
            diffs = [np.abs(ours.astype(np.int16) - ref_sift[k].astype(np.int16))
                     for k, ours in (("a", sa), ("b", sb)) if k in ref_sift.files]
            row["sift_images_compared"] = len(diffs)
            row["sift_equal"] = float(np.mean(np.concatenate([d.ravel() for d in diffs]) == 0))
            row["sift_max_abs_diff"] = int(max(d.max() for d in diffs))
            if {"a", "b"} <= set(ref_sift.files):
                r = sift_flow(ref_sift["a"], ref_sift["b"])
                row["exact_from_reference_sift"] = float(np.mean((r.vx == vx_ref) & (r.vy == vy_ref)))
        res = sift_flow(sa, sb)
        row["exact"] = float(np.mean((res.vx == vx_ref) & (res.vy == vy_ref)))
        row["within_1px"] = float(np.mean((np.abs(res.vx - vx_ref) <= 1) & (np.abs(res.vy - vy_ref) <= 1)))
        row["final_energy"] = float(res.energy[-1])
        row["energy_over_cpp"] = row["final_energy"] / row["cpp_final_energy"] - 1
        if name == "astronaut_shift":
            inner = (slice(MARGIN, -MARGIN),) * 2
            row["shift_interior"] = float(np.mean((res.vx[inner] == SHIFT[0]) & (res.vy[inner] == SHIFT[1])))
        fns = [lambda: sift_flow(dense_sift(a), dense_sift(b), record_energy=False),
               lambda: sift_flow(dense_sift(a), dense_sift(b))]
        if base:
            fns.append(lambda: base[1](base[0](a), base[0](b)))
        times = _time(fns, args.repeats)
        row["s_per_pair"], row["s_per_pair_all_energies"] = times[:2]
        if base:
            row["baseline_s_per_pair"] = times[2]
            rb = base[1](base[0](a), base[0](b))
            row["baseline_exact"] = float(np.mean((rb.vx == vx_ref) & (rb.vy == vy_ref)))
        rows.append(row)
    load_after = load_average()

    def med(key):
        return float(np.median([r[key] for r in rows]))

    summary = {"s_per_pair_median": med("s_per_pair"),
               "s_per_pair_all_energies_median": med("s_per_pair_all_energies"),
               "cpp_s_median": med("cpp_s")}
    if base:
        summary["baseline_s_per_pair_median"] = med("baseline_s_per_pair")
        summary["ratio_to_baseline"] = summary["s_per_pair_median"] / summary["baseline_s_per_pair_median"]
    result = {"baseline": args.baseline, "repeats": args.repeats, "load_before": load_before,
              "load_after": load_after, "cpus": os.cpu_count(), "pairs": rows, "summary": summary}

    lines = [
        "# SIFT-Flow against Ce Liu's C++ reference (`siftflow-ref`)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_siftflow_ref.py"
        f"{' --baseline ' + args.baseline if args.baseline else ''} --repeats {args.repeats}`. "
        f"{os.cpu_count()} CPUs, load average {load_before} -> {load_after}.",
        "",
        "Flows from our dense SIFT of the reference PNGs. *exact*: share of pixels whose (vx, vy) "
        "equals the C++ flow; *energy*: the final energy of our flow, computed as the reference "
        "computes it, relative to the reference's `final_energy`; *s/pair*: dense SIFT of both + "
        "SIFT-Flow, single thread, minimum of the repeats (`record_energy=False`, as the pipeline "
        "runs it; in brackets with the energy of every iteration).",
        "",
        "| pair | SIFT equal | SIFT max diff | exact (from C++ SIFT) | exact | within 1 px | energy vs C++ "
        "| s/pair | C++ s/pair (quoted) |" + (" previous: exact | previous s/pair |" if base else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if base else ""),
    ]
    for r in rows:
        sift_eq = f"{r['sift_equal']:.4f} ({r['sift_images_compared']} img)" if "sift_equal" in r else "-"
        sift_mx = str(r["sift_max_abs_diff"]) if "sift_max_abs_diff" in r else "-"
        from_ref = f"{r['exact_from_reference_sift']:.4f}" if "exact_from_reference_sift" in r else "-"
        lines.append(
            f"| {r['pair']} | {sift_eq} | {sift_mx} | {from_ref} | {r['exact']:.4f} | {r['within_1px']:.4f} | "
            f"{r['final_energy']:.0f} vs {r['cpp_final_energy']:.0f} ({100 * r['energy_over_cpp']:+.3f}%) | "
            f"{r['s_per_pair']:.3f} ({r['s_per_pair_all_energies']:.3f}) | {r['cpp_s']:.3f} |"
            + (f" {r['baseline_exact']:.4f} | {r['baseline_s_per_pair']:.3f} |" if base else ""))
    shift = next(r for r in rows if r["pair"] == "astronaut_shift")
    lines += ["", f"Shift pair: (vx, vy) = {SHIFT} on {100 * shift['shift_interior']:.2f}% of the interior "
              f"({MARGIN} px margin).", "",
              f"Median seconds per pair: {summary['s_per_pair_median']:.3f} "
              f"({summary['s_per_pair_all_energies_median']:.3f} with every iteration's energy); "
              f"C++ (quoted) {summary['cpp_s_median']:.3f}, "
              f"{summary['cpp_s_median'] / summary['s_per_pair_median']:.1f}x our time."]
    if base:
        lines += ["", f"Previous implementation ({args.baseline}), same run: "
                  f"{summary['baseline_s_per_pair_median']:.3f} s per pair; this one takes "
                  f"{summary['ratio_to_baseline']:.2f}x that."]
    lines.append("")
    write_results("bench_siftflow_ref", result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
