"""MIJR re-learning (Sec. IV of the MIJR paper). Plain functions on numpy arrays.

* :func:`crf_pseudo_gt` — the bi-level CRF pseudo ground truth of an image pool (Sec. IV-A).

The instance-pair filter and the boosted joint re-learning are not built yet.
"""

from relearn.pseudo_gt import PSEUDO_BACKGROUND, PSEUDO_SALIENT, UNCERTAIN, PseudoGT, crf_pseudo_gt

__all__ = ["PSEUDO_BACKGROUND", "PSEUDO_SALIENT", "UNCERTAIN", "PseudoGT", "crf_pseudo_gt"]
