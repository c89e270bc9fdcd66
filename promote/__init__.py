"""Promoters: an image plus a prior saliency map (from any detector) in, a better map out.

* :func:`dense_crf` — fully connected CRF refinement (the baseline every promoter is judged against).

Plain functions on numpy arrays; no file I/O, no caches, no CLI.
"""

from promote.crf import dense_crf

__all__ = ["dense_crf"]
