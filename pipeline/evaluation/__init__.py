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

__all__ = [
    "AUC",
    "METRICS",
    "EvaluationResult",
    "Notices",
    "SODEvaluator",
    "contact_sheet",
    "evaluate_methods",
    "markdown_table",
    "normalize_gt",
    "normalize_map",
    "write_report",
]
