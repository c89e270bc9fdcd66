"""The ``contrast`` detector: low-level colour-contrast saliency over SLIC superpixels.

This is the low-level saliency map ``S_l`` of GradSal (the DCNN gradient-descent saliency
paper, ``../shared/papers/gradsal-dcnn-gradient-descent-saliency.txt``, Sec. 3.3, Eq. 5),
which follows its
reference [8] (Fu, Gong, Yang & Zhou, "Salient object detection via color contrast and
color distribution", ACCV 2012): superpixels, a global colour contrast, a smoothing of that
contrast, and a colour-distribution term.  The same map is the project's training-free
``contrast`` prior.

Steps, all on superpixels (``i, j`` index superpixels, ``n`` of them):

1. ``C_i``: mean CIE-LAB colour of superpixel ``i`` (the GradSal paper, Sec. 3.3).
2. Global colour contrast, Eq. 5 of GradSal, ``GC_i = sum_j ||C_i - C_j||_2``, here weighted
   as in the region contrast of Cheng et al. (TPAMI 2015, Eq. 5) which [8] builds on:
   ``GC_i = sum_j w_j * exp(-||p_i - p_j||^2 / (2 sigma_s^2)) * ||C_i - C_j||_2`` with
   ``w_j`` the area fraction of superpixel ``j`` and ``p`` the centroids in coordinates
   normalised to [0, 1] by the image height and width.  The size weight makes the result
   independent of how finely SLIC cut a region; the spatial weight makes contrast to nearby
   regions count more.  ``spatial_sigma=None`` gives the unweighted sum of Eq. 5 (with the
   size weight kept).
3. Smoothing in colour space ([8], Sec. 2.3; also Cheng et al.'s colour-space smoothing):
   ``GC'_i = sum_j a_ij w_j GC_j / sum_j a_ij w_j`` with the colour affinity
   ``a_ij = exp(-||C_i - C_j||^2 / (2 sigma_c^2))``, so superpixels of similar colour get
   similar contrast and an object is highlighted evenly.
4. Colour distribution (spatial compactness of each colour, [8] Sec. 2.4; the same
   quantity as Perazzi et al.'s "distribution" term, CVPR 2012):
   ``mu_i = sum_j a_ij w_j p_j / sum_j a_ij w_j``,
   ``V_i = sum_j a_ij w_j ||p_j - mu_i||^2 / sum_j a_ij w_j``; a colour spread all over the
   image (large ``V``) is background, a compact one is salient:
   ``D_i = 1 - (V_i - min V) / (max V - min V)``.
5. Centre prior: ``G_i = exp(-||p_i - (0.5, 0.5)||^2 / (2 sigma_g^2))``.
6. ``S_l = norm(GC') * D * G`` (product, as [8] combines contrast and distribution
   multiplicatively), min-max normalised to [0, 1] and broadcast to the pixels.

Decisions the papers leave open, with the reason:

* The widths ``sigma_s`` (spatial weight), ``sigma_c`` (colour affinity, in LAB units) and
  ``sigma_g`` (centre prior) and the number of superpixels were chosen by measurement on 60
  images of the ECSSD *train* split (never the test split), one parameter at a time; the
  sweep is ``benchmarks/tune_gradsal.py`` and its results
  ``benchmarks/results/tune_gradsal.md``.  Train-subset maxF: 0.489 with the starting
  values (200 superpixels, sigma_s 0.4, sigma_c 20, sigma_g 0.35) -> 0.586 with the chosen
  ones (300, 0.2, 10, 0.25); without the centre prior 0.507, without the distribution term
  0.549 (with sigma_g 0.35), plain unweighted Eq. 5 (sigma_s None) 0.443.  The chosen
  sigma_s, sigma_c and sigma_g lie at the edge of the grid swept; a wider sweep may gain more.
* Each factor can be switched off (``spatial_sigma=None``, ``use_distribution=False``,
  ``center_sigma=None``) so the map degrades to plain Eq. 5.
* A constant image (every superpixel the same colour) has no contrast: the map is all zeros
  rather than NaN.

Everything is vectorised over an ``(n, n)`` matrix of superpixel pairs (``n`` is a few
hundred), and per-pixel work goes through the numba kernels of :mod:`superpixels.regions`.
"""

from __future__ import annotations

import cv2
import numpy as np

from superpixels import broadcast, check_image, check_labels, check_weight, region_centroid, region_count, region_mean, slic

__all__ = ["contrast_saliency"]


def _minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant vector maps to zeros."""
    lo = values.min()
    span = values.max() - lo
    if not np.isfinite(span) or span <= 1e-12:
        return np.zeros_like(values)
    return (values - lo) / span


def contrast_saliency(
    image: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    n_segments: int = 300,
    compactness: float = 10.0,
    spatial_sigma: float | None = 0.2,
    color_sigma: float = 10.0,
    use_distribution: bool = True,
    center_sigma: float | None = 0.25,
) -> np.ndarray:
    """Colour-contrast saliency with colour distribution and a centre prior.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    labels : (H, W) ndarray of int, optional
        Superpixel labels ``0..n-1``.  When None, computed with
        ``superpixels.slic(image, n_segments=n_segments, compactness=compactness)``.
    n_segments : int, optional
        Number of SLIC superpixels when ``labels`` is None.
    compactness : float, optional
        SLIC compactness when ``labels`` is None.
    spatial_sigma : float or None, optional
        Width of the spatial weight of the contrast (step 2), in image-normalised
        coordinates.  None: no spatial weighting (plain Eq. 5 with area weights).
    color_sigma : float, optional
        Width of the colour affinity (steps 3 and 4), in LAB units.
    use_distribution : bool, optional
        Multiply in the colour-distribution term (step 4).
    center_sigma : float or None, optional
        Width of the centre prior (step 5), in image-normalised coordinates; None: no prior.

    Returns
    -------
    saliency : (H, W) ndarray of float32
        Low-level saliency in [0, 1] (max 1 unless the image has no contrast: all zeros).

    Notes
    -----
    Eq. 5 of GradSal, ``GC_i = sum_j ||C_i - C_j||_2``, weighted by area and spatial
    proximity; then colour-space smoothing, colour distribution and centre prior, all
    multiplied (see the module docstring for every formula).

    References
    ----------
    .. [1] GradSal: "A fast deep learning method for object saliency detection" by
           gradient descent on DCNN inputs, Sec. 3.3, Eq. 5.
    .. [2] K. Fu, C. Gong, J. Yang, Y. Zhou, "Salient object detection via color contrast
           and color distribution", ACCV 2012.
    .. [3] M.-M. Cheng et al., "Global contrast based salient region detection",
           IEEE TPAMI 37(3), 2015.
    """
    image = check_image(image, min_side=2)
    color_sigma = check_weight(color_sigma, "color_sigma", positive=True)
    if spatial_sigma is not None:
        spatial_sigma = check_weight(spatial_sigma, "spatial_sigma", positive=True)
    if center_sigma is not None:
        center_sigma = check_weight(center_sigma, "center_sigma", positive=True)
    h, w = image.shape[:2]
    if labels is None:
        labels = slic(image, n_segments=n_segments, compactness=compactness)
    else:
        labels, _ = check_labels(labels, shape=(h, w))
        labels = labels.astype(np.int32, copy=False)
    n = int(labels.max()) + 1

    # Step 1: mean LAB colour per superpixel (cv2 on float32 RGB in [0,1] gives true
    # L in [0,100], a/b in about [-127,127]).
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    colour = region_mean(lab, labels, n)                       # (n, 3)
    count = region_count(labels, n).astype(np.float64)
    present = count > 0                                        # tolerate absent labels
    weight = count / count.sum()                               # area fraction w_j
    pos = region_centroid(labels, n) / np.array([max(h - 1, 1), max(w - 1, 1)])

    diff = colour[:, None, :] - colour[None, :, :]
    cdist2 = np.einsum("ijk,ijk->ij", diff, diff)              # ||C_i - C_j||^2
    cdist = np.sqrt(cdist2)
    pdiff = pos[:, None, :] - pos[None, :, :]
    pdist2 = np.einsum("ijk,ijk->ij", pdiff, pdiff)

    # Eq. 5: GC_i = sum_j ||C_i - C_j||_2, weighted by area (and spatial proximity).
    wmat = np.broadcast_to(weight[None, :], (n, n))
    if spatial_sigma is not None:
        wmat = wmat * np.exp(-pdist2 / (2.0 * spatial_sigma ** 2))
    contrast = (wmat * cdist).sum(axis=1)

    # Step 3: colour-space smoothing of the contrast.
    affinity = np.exp(-cdist2 / (2.0 * color_sigma ** 2)) * weight[None, :]
    norm = affinity.sum(axis=1)
    norm[norm <= 0] = 1.0
    smoothed = (affinity @ contrast) / norm
    sal = _minmax(smoothed[present])

    # Step 4: colour distribution = spatial variance of each colour.
    if use_distribution:
        mu = (affinity @ pos) / norm[:, None]
        var = (affinity * ((pos[None, :, :] - mu[:, None, :]) ** 2).sum(axis=2)).sum(axis=1) / norm
        sal = sal * (1.0 - _minmax(var[present]))

    # Step 5: centre prior.
    if center_sigma is not None:
        d2 = ((pos[present] - 0.5) ** 2).sum(axis=1)
        sal = sal * np.exp(-d2 / (2.0 * center_sigma ** 2))

    out = np.zeros(n, dtype=np.float64)
    out[present] = _minmax(sal)
    return broadcast(out.astype(np.float32), labels).astype(np.float32, copy=False)
