"""Evaluation of saliency maps against ground truth, and its reports.

    from pipeline.evaluation import evaluate_methods, write_report
    result = evaluate_methods({"u2netp": "out/u2netp", "DSS": "priors/DSS"}, "data/gt")
    write_report(result, "out/evaluation", images="data/images", n_rows=6)

Metrics follow the SOD community toolkits and are computed by PySODMetrics (``py_sod_metrics``)
where it provides them (see :mod:`pipeline.evaluation.metrics`); AUC is exact per image.
``python -m pipeline evaluate`` is :mod:`pipeline.evaluation.cli`.
"""

from .io import Notices, normalize_gt, normalize_map
from .metrics import AUC, METRICS, EvaluationResult, SODEvaluator, evaluate_methods
from .reports import contact_sheet, markdown_table, write_report


def evaluate_run(*, map_dirs, gt_dir, out_dir, image_dir=None, n_rows: int = 6, echo=print,
                 n_jobs: int = 1, stems=None) -> EvaluationResult:
    """The runner's evaluation step: score every map folder of a run against ``gt_dir``.

    Parameters
    ----------
    map_dirs : Mapping[str, path]
        Stage name -> folder of that stage's maps (``<out>/<stage>/<stem>.png``).
    gt_dir : path
        Ground-truth masks matched by stem.
    out_dir : path
        Report folder (see :func:`write_report`).
    image_dir : path, optional
        The pool's images, for the contact sheet.
    n_rows : int, optional
        Contact-sheet rows.
    echo : callable, optional
        Receives each line to show: ``notice: ...`` lines, then the metrics table.
    n_jobs : int, optional
        Methods scored in parallel processes.
    stems : sequence of str, optional
        The run's images: only these are scored, and a stem with a mask but no map is reported
        as missing (default: every GT stem).

    Returns
    -------
    EvaluationResult
    """
    result = evaluate_methods(dict(map_dirs), gt_dir, stems=stems, n_jobs=n_jobs, log=False)
    for line in result.notices:
        echo(f"notice: {line}")
    if not result.methods:
        echo("notice: evaluation: no map could be scored against the ground truth")
        return result
    write_report(result, out_dir, images=image_dir, n_rows=n_rows)
    for line in markdown_table(result).splitlines():
        echo(line)
    return result

__all__ = [
    "AUC",
    "METRICS",
    "EvaluationResult",
    "Notices",
    "SODEvaluator",
    "contact_sheet",
    "evaluate_methods",
    "evaluate_run",
    "markdown_table",
    "normalize_gt",
    "normalize_map",
    "write_report",
]
