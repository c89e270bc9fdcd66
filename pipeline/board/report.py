"""BENCHMARKS.md and benchmarks.json from the board's record (a plain dict, see :func:`markdown`)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.board import matrix as mx
from pipeline.board.papers import PaperNumber

_METRIC_LABELS = dict(mx.CELL_METRICS)


def compare(entries: Sequence[PaperNumber], cells: Mapping[str, Mapping[str, Mapping]]) -> list[dict]:
    """The papers' numbers beside the board's cells of the same row (prior) and column.

    Returns one dict per entry: where it comes from, and per metric the paper's prior and value
    and ours (None where our cell is not ok); ``ours`` says ``ok`` or why not.
    """
    out = []
    for e in entries:
        row = cells.get(e.row)
        raw = (row or {}).get(mx.RAW, {})
        cell = (row or {}).get(e.column, {})
        if row is None:
            ours = "row not on this board"
        elif e.column not in row:
            ours = "column not on this board"
        else:
            ours = cell.get("status", mx.NOT_BUILT)
        metrics = []
        for i, key in enumerate(e.metrics):
            metrics.append({
                "key": key,
                "paper_prior": e.prior[i] if e.prior else None,
                "paper": e.value[i],
                "ours_prior": raw.get("metrics", {}).get(key) if e.column != mx.RAW else None,
                "ours": cell.get("metrics", {}).get(key),
            })
        out.append({"paper": e.paper, "table": e.table, "row": e.row, "column": e.column, "note": e.note,
                    "ours": ours, "metrics": metrics})
    return out


def _fmt(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _pair(before, after) -> str:
    if before is None:
        return _fmt(after)
    if after is None:
        return f"{_fmt(before)} → —"
    return f"{_fmt(before)} → {_fmt(after)} ({mx.signed(after - before, 3)})"


def papers_table(rows: Sequence[Mapping]) -> list[str]:
    lines = ["| source | prior | column | metric | paper | ours |", "|:---|:---|:---|:---|:---|:---|"]
    for r in rows:
        for m in r["metrics"]:
            ours = _pair(m["ours_prior"], m["ours"]) if r["ours"] == mx.OK else f"*{r['ours']}*"
            lines.append(f"| {r['paper']}, {r['table']} | {r['row']} | {mx.column_label(r['column'])} | "
                         f"{_METRIC_LABELS.get(m['key'], m['key'])} | {_pair(m['paper_prior'], m['paper'])} | {ours} |")
    notes = [f"- {r['paper']}, {r['table']}, {r['row']}: {r['note']}." for r in rows if r["note"]]
    return lines + ([""] + notes if notes else [])


def _timing_table(timing: Mapping[str, Mapping]) -> list[str]:
    if not timing:
        return ["No stage computed an item in this run (every item came from the cache of an earlier run), "
                "so there is no cold time here."]
    lines = ["| stage | items computed | cold s / item |", "|:---|---:|---:|"]
    for name, t in timing.items():
        lines.append(f"| {name} | {t['computed']} | {_fmt(t['cold_s_per_item'])} |")
    return lines


def _cached_line(c: Mapping | None) -> list[str]:
    if not c:
        return ["Cached: no row ran, no cached run was made.", ""]
    if c["rc"] != 0:
        return [f"Cached: the second run of row {c['row']} failed (exit {c['rc']}).", ""]
    return [f"Cached: row {c['row']} again ({', '.join(c['stages'])}), every item in the cache "
            f"({c['computed']} computed): {c['wall_s']:.1f} s for {c['images']} images, **{c['s_per_image']:.3f} s "
            "per image** for the whole command (planning, keys and cache checks of every stage, map PNGs). "
            "Per stage the run summary gives no cached time: it times only the items a stage computes.", ""]


def _runs_table(rows: Mapping[str, Mapping]) -> list[str]:
    lines = ["| row | command wall s | largest process MiB | all processes MiB | exit |", "|:---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        run = r.get("run")
        if not run:
            continue
        mem = run.get("memory", {})
        gpu = f" (GPU {mem['gpu_peak_mib']:.0f})" if mem.get("gpu_peak_mib") else ""
        lines.append(f"| {r.get('label', name)} | {run['wall_s']:.1f} | {mem.get('largest_process_mib', '—')}{gpu} | "
                     f"{mem.get('all_processes_mib', '—')} | {run['rc']} |")
    return lines


def _dataset_section(name: str, ds: Mapping, columns: Sequence[str]) -> list[str]:
    label = ds.get("label", name)
    if ds.get("status") != mx.OK:
        return [f"## {label}", "", f"Not on the board: {ds.get('reason', 'missing')}.", ""]
    cells = {r: row["cells"] for r, row in ds["rows"].items()}
    labels = {r: row["label"] for r, row in ds["rows"].items()}
    lines = [f"## {label} ({ds['n_images']} images)", "", "### Accuracy", "",
             mx.matrix_table(cells, columns, labels, corner="prior")]
    notes = mx.missing_notes(cells, columns)
    if notes:
        lines += ["Cells without numbers:", ""] + [f"- {n}" for n in notes] + [""]
    counts = mx.worse_counts(cells, columns)
    if counts:
        lines += ["Rows made worse, per promoter and metric (of the rows it ran on):", "",
                  "| promoter | rows | " + " | ".join(lab for _, lab in mx.CELL_METRICS) + " |",
                  "|:---|---:|" + "---:|" * len(mx.CELL_METRICS)]
        for col, c in counts.items():
            if not c["rows"]:
                continue
            lines.append(f"| {mx.column_label(col)} | {c['rows']} | "
                         + " | ".join(str(c[k]) for k, _ in mx.CELL_METRICS) + " |")
        lines.append("")
    lines += ["### The papers' numbers", ""]
    if ds.get("papers"):
        lines += papers_table(ds["papers"]) + [""]
    else:
        lines += [f"No paper in `../shared/papers` reports a number for these priors on {name} "
                  "(see the list at the end).", ""]
    lines += ["### Speed and memory", "",
              "Cold: each stage's wall seconds over the items it computed, summed over the rows' runs "
              "(`run_summary.json`; with the board's `--jobs` workers, model loading and worker start-up "
              f"included). Torch stages ran on: {', '.join(ds.get('devices') or ['—'])}.", ""]
    lines += _timing_table(ds.get("timing", {})) + [""] + _cached_line(ds.get("cached_run"))
    lines += ["Per row: the command's wall seconds and the peak resident memory of its largest process and of "
              "all its processes together (the main one and its workers).", ""]
    lines += _runs_table(ds["rows"]) + [""]
    figs = ds.get("figures", {})
    lines += ["### Figures", ""]
    if figs.get("pr"):
        lines += [f"PR curves, one panel per prior (solid: raw; dashed: promoted): `{figs['pr']}`", "",
                  f"![PR curves {name}]({figs['pr']})", ""]
    if figs.get("contact"):
        lines += [f"Contact sheet of the {len(ds['contact_stems'])} images where the maps disagree most "
                  "(largest standard deviation of the per-image MAE over every map of the matrix): image, GT, "
                  f"every prior, then every promoter of the best prior ({ds['best_row']}, by max F): "
                  f"`{figs['contact']}` ({', '.join(ds['contact_stems'])})", "",
                  f"![contact sheet {name}]({figs['contact']})", ""]
    return lines


def markdown(board: Mapping) -> str:
    """The whole BENCHMARKS.md of a board record (the dict written to benchmarks.json)."""
    columns = board["columns"]
    m = board["machine"]
    lines = ["# Results board", ""]
    if board.get("quick") or board["options"].get("limit"):
        lines += [f"**A subset run** (`{'--quick' if board.get('quick') else '--limit'}`: at most "
                  f"{board['options'].get('limit')} images per dataset"
                  + (f", published priors {', '.join(board['options']['published'])}"
                     if board["options"].get("published") else "")
                  + "): a check that the board builds, not the results.", ""]
    lines += [
        f"Command: `{board['command']}`", "",
        f"Commit `{board['commit']}`, {board['created']}; wall {board['wall_s']:.0f} s "
        f"(load average {board['load_average'][0]} before, {board['load_average'][1]} after).", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; GPU: {m['gpu']}; "
        f"{m['platform']}, Python {m['python']}, torch {m['torch']}; runs with `--jobs {board['options']['jobs']}`"
        f", device {board['options']['device']}.", "",
        "## How to read it", "",
        "Rows are priors: the package's detectors, then (where a dataset has them) the published maps of "
        "`priors/<method>/` run as `--priors`. Columns: *raw* is the prior's own maps; each promoter column is "
        "`python -m pipeline run --stages PROMOTER --set PROMOTER.prior=ROW` on the same pool. "
        "Each cell holds five numbers, top to bottom: **max F, adaptive F, MAE, S-measure, max E** "
        "(the package's evaluation: PySODMetrics, F with β² = 0.3 over 256 thresholds, adaptive F at twice the "
        "map mean, S-measure α = 0.5). In a promoter cell each number is followed by its change against the raw "
        f"cell of its row; a change for the worse (on the three decimals shown) is bold and marked {mx.WORSE_MARK}. "
        "*not built*: the stage is not registered in this installation, or its model does not resolve; "
        "*failed*: its run or its items failed (the reason is listed under the table, the log in the "
        "`--work` folder's `logs/`).", "",
    ]
    lines += ["## Stages", "", "| stage | role | on the board | model |", "|:---|:---|:---|:---|"]
    for name, s in board["stages"].items():
        model = s.get("model") or {}
        mtext = (f"`{model['model']}` ({model['kind']}, sha256 {model['sha256'][:12]}…)" if model.get("sha256")
                 else (f"`{model['model']}`" if model else "—"))
        state = "yes" if s["status"] == mx.OK else f"not built: {s['reason']}"
        lines.append(f"| {name} | {s['role']} | {state} | {mtext} |")
    lines.append("")
    if board.get("training"):
        lines += ["## Training (`--train`)", "", "| stage | result | wall s | log |", "|:---|:---|---:|:---|"]
        for name, t in board["training"].items():
            lines.append(f"| {name} | {t['status']}{': ' + t['reason'] if t.get('reason') else ''} | "
                         f"{t['wall_s']:.0f} | `{t['log']}` |")
        lines.append("")
    for name, ds in board["datasets"].items():
        lines += _dataset_section(name, ds, columns)
    lines += ["## Papers without a comparable number", ""]
    lines += [f"- **{p['paper']}**: {p['why']}" for p in board["papers_without_comparison"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


SUMMARY_METRICS = (("max_f", "max F"), ("mae", "MAE"))
README_BEGIN, README_END = "<!-- results board: begin -->", "<!-- results board: end -->"


def _summary_cell(cell: Mapping) -> str:
    """``max F / MAE`` of a cell; a promoter cell marks a metric made worse with the board's mark."""
    if cell.get("status") != mx.OK:
        return f"*{cell.get('status', mx.NOT_BUILT)}*"
    worse = set(cell.get("worse", ()))
    parts = []
    for key, _ in SUMMARY_METRICS:
        value = cell["metrics"].get(key)
        text = _fmt(value)
        if key in worse:
            text += f" {mx.WORSE_MARK}"
        parts.append(text)
    return " / ".join(parts)


def readme_summary(board: Mapping, *, board_page: str = "BENCHMARKS.md") -> str:
    """The README's short results section, from a board record: per dataset a max F / MAE matrix
    (a promoter's number marked where it is worse than the raw prior's), the machine and commit,
    and the contact sheet of the first dataset that has one. Links are relative to ``board_page``'s
    folder (where the board wrote its figures)."""
    m = board["machine"]
    columns = board["columns"]
    computed = sum(t.get("computed", 0) for ds in board["datasets"].values()
                   for t in (ds.get("timing") or {}).values())
    took = f"the board command took {board['wall_s'] / 60:.0f} min" + (
        ", every item read from the cache of an earlier run" if computed == 0 else "")
    lines = [f"From `{board['command']}` at commit `{board['commit']}` ({board['created'][:10]}), on "
             f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu']}; {took}. "
             f"Cells: max F / MAE; {mx.WORSE_MARK} marks a promoter that made "
             f"that number worse than the raw prior's. Adaptive F, S-measure, max E, the papers' own numbers, "
             f"timings and PR curves are in [{board_page}]({board_page}).", ""]
    if board.get("quick") or board["options"].get("limit"):
        lines += ["*A subset run: a check that the board builds, not the results.*", ""]
    sheet = None
    for name, ds in board["datasets"].items():
        if ds.get("status") != mx.OK:
            lines += [f"**{ds.get('label', name)}**: not on the board: {ds.get('reason', 'missing')}.", ""]
            continue
        lines += [f"**{ds.get('label', name)}** ({ds['n_images']} images)", "",
                  "| prior | " + " | ".join(mx.column_label(c) for c in columns) + " |",
                  "|:---|" + ":---|" * len(columns)]
        for row in ds["rows"].values():
            cells = row["cells"]
            lines.append(f"| {row['label']} | "
                         + " | ".join(_summary_cell(cells.get(c, {"status": mx.NOT_BUILT})) for c in columns) + " |")
        lines.append("")
        if sheet is None and ds.get("figures", {}).get("contact"):
            sheet = (ds.get("label", name), ds["figures"]["contact"], ds.get("best_row"))
    if sheet:
        folder = posixpath.dirname(board_page)  # the figures lie beside the board's page
        link = posixpath.join(folder, sheet[1]) if folder else sheet[1]
        lines += [f"Where the maps disagree most on {sheet[0]}: image, GT, every prior, then every promoter "
                  f"of the best prior ({sheet[2]}):", "", f"![contact sheet {sheet[0]}]({link})", ""]
    return "\n".join(lines).rstrip() + "\n"


def replace_readme_section(readme: str, section: str) -> str:
    """``readme`` with the text between the results-board markers replaced by ``section``."""
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the README has no {README_BEGIN} ... {README_END} markers")
    return readme[:begin + len(README_BEGIN)] + "\n" + section + readme[end:]


def write(board: Mapping, out: Path) -> dict[str, Path]:
    """Write ``out/BENCHMARKS.md`` and ``out/benchmarks.json`` atomically."""
    from pipeline.cache import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "BENCHMARKS.md", out / "benchmarks.json"
    text = json.dumps(board, indent=1, allow_nan=False, default=str) + "\n"
    atomic_write(js, lambda fh: fh.write(text.encode()))
    page = markdown(board)
    atomic_write(md, lambda fh: fh.write(page.encode()))
    return {"markdown": md, "json": js}
