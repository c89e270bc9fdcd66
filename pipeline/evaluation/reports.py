"""Evaluation reports: metrics.json, metrics.md, PR and F-threshold curves, a contact sheet.

Plots use matplotlib's Agg backend (no display). Files are written atomically (temporary file in the
same folder, then rename), so an interrupted report never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .io import normalize_gt, normalize_map, resize_to
from .metrics import METRICS, EvaluationResult

# Colour-blind-safe qualitative cycle (Okabe-Ito), then tab20 past 8 methods.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_STYLES = ("-", "--", "-.", ":")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(result: EvaluationResult, *, digits: int = 3, extra_columns: Mapping | None = None) -> str:
    """One row per method, one column per metric; the best value of each column in bold.

    Parameters
    ----------
    result : EvaluationResult
    digits : int
        Decimals shown; ties are judged on the shown values (all tied bests are bold).
    extra_columns : Mapping, optional
        ``{"column title": {method: value}}`` appended after the metrics (e.g. seconds per image);
        not bolded.
    """
    extra_columns = dict(extra_columns or {})
    header = ["method", "images"] + [f"{label} {'↑' if hib else '↓'}" for _, label, hib in METRICS]
    header += list(extra_columns)
    best = {}
    for key, _, hib in METRICS:
        vals = [round(result.pooled[m][key], digits) for m in result.methods if result.pooled[m][key] is not None]
        if vals:
            best[key] = max(vals) if hib else min(vals)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|"]
    for m in result.methods:
        p = result.pooled[m]
        cells = [m.replace("|", "\\|"), str(p["n_images"])]
        for key, _, _ in METRICS:
            text = _fmt(p[key], digits)
            if p[key] is not None and key in best and round(p[key], digits) == best[key] and len(result.methods) > 1:
                text = f"**{text}**"
            cells.append(text)
        for col in extra_columns.values():
            v = col.get(m)
            cells.append("—" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _legend_notes() -> str:
    return (
        "↑ higher is better, ↓ lower is better; best per column in **bold**. "
        "F: F-measure with β² = 0.3 over thresholds 0..255 (max and mean of the image-averaged curve; "
        "adp: threshold 2 × map mean). S: S-measure (α = 0.5). E: E-measure (max / mean of the curve). "
        "wF: weighted F-measure. AUC: ROC area per image, mean over images with both classes in the mask. "
        "Masks binarised at > 128, maps min-max normalised per image (PySODMetrics conventions).\n"
    )


def _plot_curves(result: EvaluationResult, path: Path, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    for i, m in enumerate(result.methods):
        c = result.curves[m]
        colour = _COLOURS[i % len(_COLOURS)] if i < 8 else plt.cm.tab20((i - 8) % 20)
        style = _STYLES[(i // len(_COLOURS)) % len(_STYLES)]
        if kind == "pr":
            # Thresholds at which no pixel is predicted (precision 0 by convention) are not points
            # of the PR curve; keep recall > 0.
            r, p = c["recall"], c["precision"]
            keep = r > 0
            label = f"{m} (max F {result.pooled[m]['max_f']:.3f})"
            ax.plot(r[keep], p[keep], style, color=colour, lw=1.8, label=label)
        else:
            label = f"{m} (max F {result.pooled[m]['max_f']:.3f})"
            ax.plot(np.arange(256), c["fmeasure"], style, color=colour, lw=1.8, label=label)
    if kind == "pr":
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title("Precision–recall (256 thresholds, mean over images)")
        ax.set_xlim(0, 1)
    else:
        ax.set_xlabel("Threshold (map ≥ t, 0..255)")
        ax.set_ylabel("F-measure (β² = 0.3)")
        ax.set_title("F-measure vs threshold (mean over images)")
        ax.set_xlim(0, 255)
    ax.set_ylim(0, 1.0)
    ax.grid(True, alpha=0.3)
    if result.methods:
        ax.legend(loc="lower left" if kind == "pr" else "lower center", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _pick_rows(result: EvaluationResult, n_rows: int, rows: Sequence[str] | None) -> list[str]:
    if rows is not None:
        return [str(s) for s in rows]
    if not result.methods:
        return []
    common = set(result.per_image[result.methods[0]])
    for m in result.methods[1:]:
        common &= set(result.per_image[m])
    pool = sorted(common) if common else sorted(set().union(*(result.per_image[m] for m in result.methods)))
    if len(pool) <= n_rows:
        return pool
    idx = np.linspace(0, len(pool) - 1, n_rows).round().astype(int)
    return [pool[i] for i in idx]


def _load_rgb(images, stem):
    if images is None or stem not in images:
        return None
    from pipeline import pool as _pool

    arr = images[stem]
    if isinstance(arr, (str, os.PathLike)):
        import warnings

        with warnings.catch_warnings():  # conversions were reported by the pool already
            warnings.simplefilter("ignore")
            arr = _pool.load_image(arr)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.dtype != np.uint8:
        arr, _ = _pool.to_rgb_uint8(arr)
    return arr[..., :3]


def contact_sheet(result: EvaluationResult, path: Path, *, images=None, n_rows: int = 6,
                  rows: Sequence[str] | None = None) -> list[str]:
    """Write a grid ``image | GT | each method's map``, one row per sample stem; returns the stems.

    Without ``images`` the image column is left out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if isinstance(images, (str, os.PathLike)):
        from pipeline import pool as _pool

        images = dict(_pool.discover(images, what="images").files)
    stems = _pick_rows(result, n_rows, rows)
    lead = (["image"] if images is not None else []) + ["GT"]  # no image column without images
    cols = lead + list(result.methods)
    n_r, n_c = max(len(stems), 1), len(cols)
    fig, axes = plt.subplots(n_r, n_c, figsize=(1.9 * n_c, 1.55 * n_r + 0.3), dpi=110, squeeze=False)
    for r, stem in enumerate(stems):
        gt = None
        if result.gts is not None and stem in result.gts:
            gt, _ = normalize_gt(result.gts[stem])
        cells = ([_load_rgb(images, stem)] if images is not None else []) + [gt]
        for m in result.methods:
            src = result.maps.get(m, {})
            cell = None
            if stem in src:
                cell, _ = normalize_map(src[stem])
                if gt is not None and cell.shape != gt.shape:
                    cell = resize_to(cell, gt.shape)
            cells.append(cell)
        for c, cell in enumerate(cells):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if cell is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=8, color="0.5",
                        transform=ax.transAxes)
            elif cell.ndim == 3:
                ax.imshow(cell)
            else:
                ax.imshow(cell, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
            if c >= len(lead) and stem in result.per_image.get(cols[c], {}):
                mf = result.per_image[cols[c]][stem]["max_f"]
                ax.set_xlabel(f"max F {mf:.2f}", fontsize=7, labelpad=1)
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(stem, fontsize=7)
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2)
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return stems


def write_report(result: EvaluationResult, out_dir, *, images=None, n_rows: int = 6,
                 rows: Sequence[str] | None = None, title: str = "Saliency evaluation",
                 extra_columns: Mapping | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.md``, ``pr_curves.png``, ``f_curves.png``, ``contact_sheet.png``.

    Parameters
    ----------
    result : EvaluationResult
        From :func:`pipeline.evaluation.evaluate_methods`.
    out_dir : path
        Created if needed.
    images : path or Mapping[str, ndarray | path], optional
        The RGB images for the contact sheet's first column (a folder matched by stem); without
        them that column is left out.
    n_rows : int, optional
        Sample rows of the contact sheet (evenly spread over the sorted stems scored by every
        method). 0 writes no contact sheet.
    rows : sequence of str, optional
        Explicit stems for the contact sheet (overrides ``n_rows``).
    title : str, optional
        Heading of metrics.md.
    extra_columns : Mapping, optional
        Extra table columns, ``{"title": {method: value}}``.

    Returns
    -------
    dict
        Output name -> path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    payload = result.to_dict()
    if extra_columns:
        payload["extra_columns"] = {k: dict(v) for k, v in extra_columns.items()}
    text = json.dumps(payload, indent=1, allow_nan=False)
    _atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(text))
    written["metrics.json"] = out / "metrics.json"

    md = [f"# {title}\n", markdown_table(result, extra_columns=extra_columns), _legend_notes()]
    if result.notices:
        md.append("\n## Notices\n")
        md.extend(f"- {line}\n" for line in result.notices)
    md_text = md[0] + "\n" + md[1] + "\n" + md[2] + "".join(md[3:])
    _atomic_write(out / "metrics.md", lambda tmp: Path(tmp).write_text(md_text))
    written["metrics.md"] = out / "metrics.md"

    _plot_curves(result, out / "pr_curves.png", "pr")
    written["pr_curves.png"] = out / "pr_curves.png"
    _plot_curves(result, out / "f_curves.png", "f")
    written["f_curves.png"] = out / "f_curves.png"
    if n_rows > 0 or rows:
        contact_sheet(result, out / "contact_sheet.png", images=images, n_rows=n_rows, rows=rows)
        written["contact_sheet.png"] = out / "contact_sheet.png"
    return written


__all__ = ["write_report", "markdown_table", "contact_sheet"]
