"""Spatial weighting: the re-learned superpixel scores as a pixel map (MIJR Sec. IV-C, last step).

"The re-learned final saliency can be predicted via performing the spatial-weighting scheme [20]
over the outputs of the re-learned saliency model." MIJR's [20] sits among the early contrast
methods; the spatial weighting of that family is region contrast's (Cheng et al., "Global
contrast based salient region detection"): region ``i`` contributes to region ``k`` with weight
``exp(-D_s(k, i) / sigma_s^2) * w(i)``, ``D_s`` the distance of the two centroids in coordinates
normalised to [0, 1], ``w(i)`` the region's pixel count. Applied to scores it is a normalised
weighted mean::

    s'_k = sum_i |S_i| exp(-D_s(k, i) / sigma_s^2) s_i  /  sum_i |S_i| exp(-D_s(k, i) / sigma_s^2)

and every pixel of ``S_k`` takes ``s'_k``.

Decisions
---------
* **sigma_s^2 = 0.02**, not region contrast's 0.4: there the weights spread a contrast over the
  whole image; here they smooth scores, and at 0.4 a superpixel half the image away would still
  weigh ``exp(-1.25) = 0.29``, washing the map out. With 500 superpixels (spacing about
  ``1 / sqrt(500) = 0.045``) 0.02 gives an adjacent superpixel ``exp(-2.25) = 0.11`` of a
  superpixel's own weight and one two spacings away 0.01: a smoothing over the immediate
  neighbourhood. Not measured on data (no pool with the whole chain was at hand).
* ``sigma_s^2 = 0`` paints the scores as they are (no weighting). The ``relearn`` stage's default
  since its version 3: with a residual model's corrections, measured better on ECSSD train
  (``relearn/mijr.py`` notes, *Gain*); 0.02 stays this function's default.
* Coordinates: row / H and column / W (region contrast's normalisation).
"""

from __future__ import annotations

import numpy as np

from superpixels import region_centroid, region_count
from superpixels.validation import check_labels, check_weight

__all__ = ["SIGMA_S2", "spatial_weighting"]

SIGMA_S2 = 0.02


def spatial_weighting(scores: np.ndarray, labels: np.ndarray, *, sigma_s2: float = SIGMA_S2) -> np.ndarray:
    """Superpixel scores -> pixel map by region contrast's spatial weighting (module notes).

    Parameters
    ----------
    scores : (n,) ndarray of float
        One finite score per superpixel label ``0 .. n-1``.
    labels : (H, W) ndarray of int
        Superpixel label map (labels below ``n``).
    sigma_s2 : float, optional
        ``sigma_s^2`` of the spatial kernel, in normalised coordinates; 0: no weighting.

    Returns
    -------
    (H, W) ndarray of float32
    """
    s = np.asarray(scores)
    if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.number) or not np.isfinite(s).all():
        raise ValueError(f"scores: expected a non-empty 1-D array of finite numbers, got "
                         f"{s.dtype} array of shape {s.shape}")
    labels, n = check_labels(labels, "labels", n=s.size)
    if labels.size == 0:
        raise ValueError(f"labels: expected a non-empty label map, got shape {labels.shape}")
    sigma_s2 = check_weight(sigma_s2, "sigma_s2")
    s = s.astype(np.float64)
    if sigma_s2 > 0:
        h, w = labels.shape
        cen = region_centroid(labels, n) / np.array([h, w], np.float64)  # normalised (row, col)
        area = region_count(labels, n).astype(np.float64)
        d = np.sqrt(((cen[:, None, :] - cen[None, :, :]) ** 2).sum(-1))   # D_s(k, i)
        k = np.exp(-d / sigma_s2) * area[None, :]                          # region contrast's weight
        s = (k @ s) / np.maximum(k.sum(1), 1e-300)
    return s[labels].astype(np.float32)
