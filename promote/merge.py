"""How a promoter's map meets the prior map it promotes: shared by LPS, LDPS and MIJR re-learning.

* :func:`confidence` and :func:`confidence_merge`: LDPS's Eq. 10 and Eq. 11 (Chen et al., AAAI
  2020): per pixel the map whose value is further from 0.5.
* :func:`merge_with_prior`: the rules a promoter stage offers (``MERGES``): the promoted map alone,
  Eq. 10-11, the mean, or ``logodds``, the two maps read as independent estimates of P(salient)
  whose odds multiply. Why each stage defaults to which rule, and what was measured, is in the
  module notes of ``promote/lps.py``, ``promote/ldps.py`` and ``relearn/mijr.py``.

Plain functions on numpy arrays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOGIT_CLIP", "MERGES", "confidence", "confidence_merge", "logit", "merge_with_prior", "sigmoid"]

MERGES = ("none", "confidence", "mean", "logodds")
LOGIT_CLIP = 1e-3  # maps are 8-bit: 1/255 is the least non-zero value, so 0 and 1 stay finite


def confidence(s: np.ndarray) -> np.ndarray:
    """LDPS's Eq. 10: ``s`` where ``s > 0.5``, ``1 - s`` otherwise."""
    s = np.asarray(s, np.float32)
    return np.where(s > 0.5, s, 1.0 - s)


def confidence_merge(prior: np.ndarray, new: np.ndarray) -> np.ndarray:
    """LDPS's Eq. 11: per pixel the prior where its confidence is higher, the new map otherwise."""
    prior = np.asarray(prior, np.float32)
    new = np.asarray(new, np.float32)
    if prior.shape != new.shape:
        raise ValueError(f"prior, new: expected equal shapes, got {prior.shape} and {new.shape}")
    return np.where(confidence(prior) > confidence(new), prior, new).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of ``p`` clipped to ``[LOGIT_CLIP, 1 - LOGIT_CLIP]`` (float64)."""
    p = np.clip(np.asarray(p, np.float64), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def merge_with_prior(prior: np.ndarray, promoted: np.ndarray, rule: str = "none") -> np.ndarray:
    """Combine the prior ``Y(0)`` with the promoted map ``Y(T)`` (*Merge* in ``promote/lps.py``).

    Parameters
    ----------
    prior, promoted : (H, W) ndarray of float
        Maps in [0, 1] of one shape.
    rule : {"none", "confidence", "mean", "logodds"}
        ``none``: ``Y(T)`` (LPS's paper). ``confidence``: per pixel the map whose value is further from
        0.5, ties to ``Y(T)`` (LDPS's Eq. 10-11). ``mean``: ``(Y(0) + Y(T)) / 2``, Eq. 5 read with the
        prior as the first of the averaged maps. ``logodds``: ``sigmoid(logit(Y(0)) + logit(Y(T)))``,
        the two maps read as independent estimates of P(salient) whose odds multiply (values
        clipped to [1e-3, 1 - 1e-3] first, so a 0 against a 1 gives 0.5, not NaN).

    Returns
    -------
    (H, W) ndarray of float32
    """
    if rule not in MERGES:
        raise ValueError(f"rule: expected one of {MERGES}, got {rule!r}")
    prior = np.asarray(prior, np.float32)
    promoted = np.asarray(promoted, np.float32)
    if prior.shape != promoted.shape:
        raise ValueError(f"prior, promoted: expected equal shapes, got {prior.shape} and {promoted.shape}")
    if rule == "none":
        return promoted
    if rule == "mean":
        return (0.5 * (prior + promoted)).astype(np.float32)
    if rule == "logodds":
        # Two independent estimates of P(salient) with a uniform class prior: their odds multiply.
        logit_sum = logit(prior) + logit(promoted)
        return sigmoid(logit_sum).astype(np.float32)
    return confidence_merge(prior, promoted)  # LDPS Eq. 10-11
