"""The board's figures: PR curves per dataset (one panel per row) and a contact sheet.

matplotlib's Agg backend; files written atomically (the evaluation reports' writer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.board.matrix import RAW, column_label

# One colour per column, the same in every panel (Okabe-Ito, as the evaluation's plots).
_COLOURS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")


def pr_figure(curves: Mapping[str, Mapping[str, Mapping]], columns: Sequence[str], path: Path, *,
              title: str, row_labels: Mapping[str, str] | None = None) -> Path:
    """PR curves, one panel per row, one line per column of that row that was scored.

    Parameters
    ----------
    curves : Mapping
        row -> column -> ``{"precision": (256,), "recall": (256,), "max_f": float}`` (the curves of
        the run's ``metrics.json``); columns without curves are left out of the panel.
    columns : sequence of str
        Column order (colours follow it).
    path : Path
        PNG written.
    title : str
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from pipeline.evaluation.reports import _atomic_write

    row_labels = dict(row_labels or {})
    rows = list(curves) or ["(nothing scored)"]
    n_cols = min(4, len(rows))
    n_rows = -(-len(rows) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 3.3 * n_rows + 0.5), dpi=100,
                             squeeze=False, sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= len(rows):
            ax.set_visible(False)
            continue
        row = rows[i]
        for j, col in enumerate(columns):
            c = curves.get(row, {}).get(col)
            if c is None:
                continue
            r, p = np.asarray(c["recall"]), np.asarray(c["precision"])
            keep = r > 0  # thresholds where nothing is predicted are not points of the curve
            ax.plot(r[keep], p[keep], "-" if col == RAW else "--", color=_COLOURS[j % len(_COLOURS)],
                    lw=1.8 if col == RAW else 1.3, label=f"{column_label(col)} ({c['max_f']:.3f})")
        ax.set_title(row_labels.get(row, row), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.9, title="max F", title_fontsize=7)
        if i % n_cols == 0:
            ax.set_ylabel("Precision")
        if i // n_cols == n_rows - 1:
            ax.set_xlabel("Recall")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def contact_figure(columns: Sequence[tuple[str, Mapping[str, np.ndarray], Mapping[str, float]]],
                   stems: Sequence[str], images: Mapping[str, Path], gts: Mapping[str, Path], path: Path) -> Path:
    """A grid ``image | GT | each map``, one row per stem (the evaluation's contact sheet).

    Parameters
    ----------
    columns : sequence of (label, maps, max_f)
        Per column: its title, stem -> (H, W) float map in [0, 1], stem -> that image's max F.
    stems : sequence of str
        Rows, in order.
    images, gts : Mapping
        stem -> image file, stem -> mask file.
    path : Path
        PNG written.
    """
    from pipeline.evaluation.io import read_stored
    from pipeline.evaluation.metrics import EvaluationResult
    from pipeline.evaluation.reports import contact_sheet

    labels = [label for label, _, _ in columns]
    result = EvaluationResult(
        methods=tuple(labels), pooled={}, curves={},
        per_image={label: {s: {"max_f": f} for s, f in scores.items()} for label, _, scores in columns},
        maps={label: dict(maps) for label, maps, _ in columns},
        gts={s: read_stored(gts[s]) for s in stems if s in gts},
    )
    contact_sheet(result, path, images={s: images[s] for s in stems if s in images}, rows=list(stems))
    return path
