"""Bi-level CRF pseudo ground truth (MIJR Sec. IV-A, Eq. 5, Fig. 5).

From a prior saliency map, two fully connected CRFs with the Eq. 5 kernel make two binary
assumptions: CRFa, aggressive (``theta_alpha, beta, gamma = 5, 1, 2``: small kernels, accurate
labels) and CRFc, conservative (``200, 50, 20``: wide kernels, complete objects). Then

1. trusted salient = CRFa AND CRFc (the intersection, BLUE in Fig. 5);
2. trusted background = NOT (CRFa OR CRFc) (the residual of the union, BLACK);
3. the rest is uncertain and filtered out (RED).

Decisions the paper leaves open
-------------------------------
* **Weights.** "Identical to the paper [53]" (Kraehenbuehl & Koltun): the weights of that paper's
  released example, ``w1 = 10, w2 = 3``, for both CRFs (the same choice as :func:`promote.dense_crf`,
  whose unary and inference are used here), 5 mean-field iterations.
* **Binary assumption.** A CRF labels a pixel salient when its posterior ``Q(salient) > 0.5``.
* **Superpixels.** With a label map, each superpixel takes the label of the majority of its pixels
  among {salient, background, uncertain} (ties: uncertain, the cautious choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from promote.crf import dense_crf
from superpixels.validation import check_image, check_labels, check_map

__all__ = ["PSEUDO_BACKGROUND", "PSEUDO_SALIENT", "UNCERTAIN", "PseudoGT", "crf_pseudo_gt"]

PSEUDO_SALIENT, PSEUDO_BACKGROUND, UNCERTAIN = 1, 0, -1
CRF_AGGRESSIVE = (5.0, 1.0, 2.0)  # theta_alpha, theta_beta, theta_gamma of CRFa
CRF_CONSERVATIVE = (200.0, 50.0, 20.0)  # of CRFc


@dataclass(frozen=True)
class PseudoGT:
    """The bi-level pseudo ground truth of one image.

    Attributes
    ----------
    pixels : (H, W) ndarray of int8
        1 trusted salient, 0 trusted background, -1 uncertain.
    superpixels : (N,) ndarray of int8 or None
        The same per superpixel (majority of its pixels), when a label map was given.
    aggressive, conservative : (H, W) ndarray of bool
        The binary assumptions of CRFa and CRFc.
    """

    pixels: np.ndarray
    superpixels: np.ndarray | None
    aggressive: np.ndarray
    conservative: np.ndarray


def crf_pseudo_gt(image: np.ndarray, prior: np.ndarray, labels: np.ndarray | None = None, *,
                  aggressive: tuple[float, float, float] = CRF_AGGRESSIVE,
                  conservative: tuple[float, float, float] = CRF_CONSERVATIVE,
                  appearance_weight: float = 10.0, smoothness_weight: float = 3.0,
                  n_iterations: int = 5) -> PseudoGT:
    """Bi-level pseudo GT of an image from a prior map (MIJR Sec. IV-A).

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    prior : (H, W) ndarray of float
        Prior saliency map in [0, 1] (the CRFs' unary).
    labels : (H, W) ndarray of int, optional
        Superpixel label map (0 .. N-1) for the per-superpixel labels.
    aggressive, conservative : tuple of float
        ``(theta_alpha, theta_beta, theta_gamma)`` of CRFa and CRFc (paper: 5, 1, 2 and 200, 50, 20).
    appearance_weight, smoothness_weight : float
        ``w1, w2`` of Eq. 5 for both CRFs.
    n_iterations : int
        Mean-field iterations of each CRF.

    Returns
    -------
    PseudoGT
    """
    image = check_image(image)
    prior = check_map(prior, "prior")
    if prior.shape != image.shape[:2]:
        raise ValueError(f"prior: expected the image's shape {image.shape[:2]}, got {prior.shape}")
    kw = {"appearance_weight": appearance_weight, "smoothness_weight": smoothness_weight,
          "n_iterations": n_iterations}
    binary = []
    for thetas in (aggressive, conservative):
        ta, tb, tg = (float(t) for t in thetas)
        q = dense_crf(image, prior, theta_alpha=ta, theta_beta=tb, theta_gamma=tg, **kw)  # Eq. 5 kernel
        binary.append(q > 0.5)
    crf_a, crf_c = binary
    pixels = np.full(prior.shape, UNCERTAIN, np.int8)
    pixels[crf_a & crf_c] = PSEUDO_SALIENT  # 1) the intersection
    pixels[~(crf_a | crf_c)] = PSEUDO_BACKGROUND  # 2) the residual of the union
    sp = None
    if labels is not None:
        labels, n = check_labels(labels, "labels", shape=prior.shape)
        sp = superpixel_majority(pixels, labels, n)
    return PseudoGT(pixels, sp, crf_a, crf_c)


def superpixel_majority(pixels: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Per superpixel (``n`` of them), the pixel label (1, 0 or -1) most of its pixels have; ties
    and empty superpixels give -1."""
    flat = labels.ravel()
    votes = np.stack([np.bincount(flat[pixels.ravel() == v], minlength=n)
                      for v in (PSEUDO_SALIENT, PSEUDO_BACKGROUND, UNCERTAIN)])  # (3, N)
    out = np.full(n, UNCERTAIN, np.int8)
    best = votes.max(axis=0)
    unique_best = (votes == best).sum(axis=0) == 1
    winner = np.array([PSEUDO_SALIENT, PSEUDO_BACKGROUND, UNCERTAIN], np.int8)[votes.argmax(axis=0)]
    out[unique_best] = winner[unique_best]
    return out
