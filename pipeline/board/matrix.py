"""The accuracy matrix: cells, their changes against the raw prior, and their markdown.

Pure functions on plain dicts (no files, no runs), so the board's arithmetic is tested alone.

A *cell* is a dict:

* ``{"status": "ok", "metrics": {key: value}}`` for a raw cell; a promoter cell adds
  ``"delta"`` (promoted minus raw, per metric) and ``"worse"`` (the metrics whose shown change is
  for the worse);
* ``{"status": "not built", "reason": "..."}``: the stage is not registered, or its model is absent;
* ``{"status": "failed", "reason": "..."}``: the run or the stage's items failed (see its log).

A *matrix* is ``{row: {column: cell}}`` with the columns ``"raw"`` and the promoter stages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# The five numbers of a cell, top to bottom (keys of pipeline.evaluation.metrics.METRICS).
CELL_METRICS = (("max_f", "max F"), ("adp_f", "adaptive F"), ("mae", "MAE"), ("s_measure", "S-measure"),
                ("max_e", "max E"))
RAW = "raw"
DIGITS = 3
WORSE_MARK = "▼"
OK, NOT_BUILT, FAILED = "ok", "not built", "failed"


def higher_is_better(key: str) -> bool:
    """The direction of a metric, as the evaluation declares it."""
    from pipeline.evaluation.metrics import METRICS

    for k, _, hib in METRICS:
        if k == key:
            return hib
    raise KeyError(f"unknown metric {key!r}")


def pick_metrics(pooled: Mapping) -> dict[str, float]:
    """The cell's metrics from a method's pooled metrics (``metrics.json`` ``pooled``)."""
    return {k: float(pooled[k]) for k, _ in CELL_METRICS if pooled.get(k) is not None}


def change(raw: Mapping[str, float], promoted: Mapping[str, float], *,
           digits: int = DIGITS) -> tuple[dict[str, float], list[str]]:
    """Per metric, promoted minus raw, and the metrics where the promoted map is worse.

    Worse is judged on the change as shown (rounded to ``digits``): lower for a metric where higher
    is better, higher for MAE. A change that rounds to zero is not worse.

    Parameters
    ----------
    raw, promoted : Mapping
        Metric key -> value (the keys of both are used).
    digits : int
        Decimals the board shows.

    Returns
    -------
    delta : dict
        Metric key -> promoted - raw.
    worse : list of str
        Metric keys, in ``CELL_METRICS`` order.
    """
    delta, worse = {}, []
    for key in [k for k, _ in CELL_METRICS if k in raw and k in promoted]:
        d = float(promoted[key]) - float(raw[key])
        delta[key] = d
        shown = round(d, digits)
        if (shown < 0) if higher_is_better(key) else (shown > 0):
            worse.append(key)
    return delta, worse


def ok_cell(metrics: Mapping[str, float], *, scored: int | None = None, of: int | None = None) -> dict:
    """A cell with numbers; ``scored`` of ``of`` images when the maps of some images are missing."""
    cell = {"status": OK, "metrics": dict(metrics)}
    if scored is not None and of is not None and scored < of:
        cell["partial"] = f"{scored} of {of} images"
    return cell


def promoter_cell(raw: Mapping, metrics: Mapping[str, float], **counts) -> dict:
    """A promoter's cell, with its change against ``raw`` (a cell) when the raw cell is ok."""
    cell = ok_cell(metrics, **counts)
    if raw.get("status") == OK:
        cell["delta"], cell["worse"] = change(raw["metrics"], metrics)
    return cell


def missing_cell(status: str, reason: str) -> dict:
    if status not in (NOT_BUILT, FAILED):
        raise ValueError(f"status: expected {NOT_BUILT!r} or {FAILED!r}, got {status!r}")
    return {"status": status, "reason": reason}


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def signed(value: float, digits: int) -> str:
    text = f"{value:+.{digits}f}"
    if float(text) == 0:
        text = f"±{0:.{digits}f}"
    return text.replace("-", "−")


def format_cell(cell: Mapping, *, digits: int = DIGITS) -> str:
    """One markdown table cell: the five numbers one per line (``<br>``), changes in parentheses,
    a worse change in bold with ``▼``, then how many images were scored when some maps are
    missing; ``not built`` / ``failed`` cells say so."""
    status = cell.get("status")
    if status != OK:
        return f"*{status}*"
    lines = []
    delta, worse = cell.get("delta"), set(cell.get("worse", ()))
    for key, _ in CELL_METRICS:
        if key not in cell["metrics"]:
            lines.append("—")
            continue
        text = _num(cell["metrics"][key], digits)
        if delta is not None and key in delta:
            text += f" ({signed(delta[key], digits)})"
            if key in worse:
                text = f"**{text} {WORSE_MARK}**"
        lines.append(text)
    if cell.get("partial"):
        lines.append(f"*({cell['partial']})*")
    return "<br>".join(lines)


def column_label(column: str) -> str:
    return column if column == RAW else f"+{column}"


def matrix_table(matrix: Mapping[str, Mapping[str, Mapping]], columns: Sequence[str],
                 row_labels: Mapping[str, str] | None = None, *, corner: str = "prior") -> str:
    """The markdown table of a matrix: one row per matrix row, one column per ``columns``.

    A column a row lacks is shown ``*not built*``: a cell is never blank.
    """
    row_labels = dict(row_labels or {})
    lines = ["| " + " | ".join([corner, *map(column_label, columns)]) + " |",
             "|" + "|".join([":---"] + [":---"] * len(columns)) + "|"]
    for row, cells in matrix.items():
        out = [row_labels.get(row, row).replace("|", "\\|")]
        for col in columns:
            out.append(format_cell(cells.get(col, {"status": NOT_BUILT})))
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def missing_notes(matrix: Mapping[str, Mapping[str, Mapping]], columns: Sequence[str]) -> list[str]:
    """One line per (column, status, reason) of the cells that are not ok, naming their rows."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row, cells in matrix.items():
        for col in columns:
            cell = cells.get(col, {"status": NOT_BUILT, "reason": "not run"})
            if cell.get("status") != OK:
                key = (col, cell["status"], cell.get("reason", ""))
                groups.setdefault(key, []).append(row)
    lines = []
    for (col, status, reason), rows in groups.items():
        who = "every row" if len(rows) == len(matrix) else ", ".join(rows)
        lines.append(f"{column_label(col)}: {status} ({who}): {reason}")
    return lines


def worse_counts(matrix: Mapping[str, Mapping[str, Mapping]], columns: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per promoter column: rows scored, and per metric the rows it made worse."""
    out = {}
    for col in columns:
        if col == RAW:
            continue
        cells = [c[col] for c in matrix.values() if c.get(col, {}).get("status") == OK and "delta" in c[col]]
        counts = {key: sum(key in c["worse"] for c in cells) for key, _ in CELL_METRICS}
        out[col] = {"rows": len(cells), **counts}
    return out


def disagreement(per_image: Mapping[str, Mapping[str, float]], n: int) -> list[str]:
    """The ``n`` stems on which the maps disagree most: the largest standard deviation of a
    per-image score (the board uses MAE) over every map, among the stems every map has.

    Parameters
    ----------
    per_image : Mapping
        Map label -> stem -> score.
    n : int
        Stems wanted.

    Returns
    -------
    list of str
        Most disagreement first; ties broken by stem.
    """
    if not per_image:
        return []
    common = set.intersection(*(set(v) for v in per_image.values()))
    spread = {}
    for stem in common:
        values = [float(v[stem]) for v in per_image.values()]
        mean = sum(values) / len(values)
        spread[stem] = math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))
    return sorted(spread, key=lambda s: (-spread[s], s))[:n]


def best_row(matrix: Mapping[str, Mapping[str, Mapping]], key: str = "max_f") -> str | None:
    """The row whose raw cell is best on ``key`` (None when no raw cell is ok)."""
    scored = {r: c[RAW]["metrics"][key] for r, c in matrix.items()
              if c.get(RAW, {}).get("status") == OK and key in c[RAW]["metrics"]}
    if not scored:
        return None
    hib = higher_is_better(key)
    return max(scored, key=lambda r: scored[r] if hib else -scored[r])
