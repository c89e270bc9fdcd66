"""Pruning, SLIC smoothing and low-level refinement of GradSal maps (Sec. 3.1-3.3, Eqs. 4, 6).

* Prune and normalise (Algorithm 1, lines 9-10 and 13): ``S = max(S - theta, 0)``, then
  ``S / ||S||``.  The paper's "unit norm" is read as the max (L-infinity) norm, applied
  *before* the threshold as well as after it: ``prune(S) = max(S / max S - theta, 0)``,
  rescaled so its maximum is 1.  Reason: the L2 norm of a map grows with its pixel count and
  the raw difference ``X(0) - X(T)`` scales with ``epsilon``, so a fixed ``theta`` on
  either would mean different things on different images; on the max-normalised map
  ``theta`` is a fraction of the strongest signal, and the result lies in [0, 1] as the
  project's maps must.  A map with no positive value stays all zeros.  Optionally the peak
  is a high quantile of the map instead of its maximum (values above it clip to 1): a raw
  gradient map's maximum is set by a handful of outlier pixels, and on the ECSSD train
  subset the 95th percentile scored better (``benchmarks/results/tune_gradsal.md``).
  Optionally the map saturates below its peak (``saturation``): values at or above that
  fraction of the peak map to 1, a linear stretch between ``theta`` and ``saturation``.
* Eq. 4, SLIC smoothing: every pixel of superpixel ``P_j`` gets the mean of the map over
  ``P_j`` (``region_mean`` then ``broadcast``; no loop over superpixels).
* Eq. 6, refinement: the low-level map ``S_l`` is rescaled to ``[alpha, 1 + alpha]`` and
  multiplied element-wise into the smoothed map.
"""

from __future__ import annotations

import numpy as np

from superpixels import broadcast, region_mean

__all__ = ["prune_normalize", "slic_smooth", "refine"]


def _check_map(saliency, name="saliency"):
    if not isinstance(saliency, np.ndarray) or saliency.ndim != 2:
        raise ValueError(
            f"{name} must be an (H, W) float ndarray; got "
            + (f"shape {saliency.shape}" if isinstance(saliency, np.ndarray) else type(saliency).__name__)
        )
    if not np.issubdtype(saliency.dtype, np.floating):
        raise ValueError(f"{name} must be floating point; got {saliency.dtype}")


def prune_normalize(saliency: np.ndarray, theta: float = 0.0, *, quantile: float = 1.0,
                    saturation: float = 1.0) -> np.ndarray:
    """Max-normalise, prune values below ``theta`` and normalise again.

    Parameters
    ----------
    saliency : (H, W) ndarray of float
        Non-negative map, any scale.
    theta : float, optional
        Threshold as a fraction of the map's peak, in [0, 1).
    quantile : float, optional
        The peak is the ``quantile`` of the map's values (1.0: the maximum); values above
        it are clipped to 1.  A quantile below 1 makes the scale robust to the few
        outlier pixels that dominate a raw gradient map.
    saturation : float, optional
        Values at or above this fraction of the peak map to 1, in ``(theta, 1]`` (1: only the
        peak does): the map is stretched linearly between ``theta`` and ``saturation``.

    Returns
    -------
    pruned : (H, W) ndarray of float32
        ``min(max(S / peak - theta, 0) / (saturation - theta), 1)``, in [0, 1]; all zeros when
        ``S`` has no positive value.

    Notes
    -----
    Algorithm 1 of GradSal, lines 9-10 (``S = max(S - theta, 0)``, ``S = S / ||S||``) with
    the max norm; see the module docstring for why.
    """
    _check_map(saliency)
    if not 0.0 <= theta < 1.0:
        raise ValueError(f"theta must be in [0, 1); got {theta}")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1]; got {quantile}")
    if not theta < saturation <= 1.0:
        raise ValueError(f"saturation must be in (theta, 1] = ({theta}, 1]; got {saturation}")
    s = np.asarray(saliency, dtype=np.float64)
    if not s.size:
        return np.zeros(s.shape, np.float32)
    peak = s.max() if quantile >= 1.0 else np.quantile(s, quantile)
    if not np.isfinite(peak) or peak <= 0.0:
        peak = s.max()          # quantile at zero (sparse map): fall back to the maximum
    if not np.isfinite(peak) or peak <= 0.0:
        return np.zeros(s.shape, np.float32)
    s = np.maximum(s / peak - theta, 0.0) / (saturation - theta)
    return np.clip(s, 0.0, 1.0).astype(np.float32)


def slic_smooth(saliency: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Replace each pixel by the mean of the map over its superpixel (Eq. 4).

    Parameters
    ----------
    saliency : (H, W) ndarray of float
        Map to smooth.
    labels : (H, W) ndarray of int
        Superpixel labels ``0..n-1`` (GradSal: SLIC, 100 superpixels, compactness 10).

    Returns
    -------
    smoothed : (H, W) ndarray of float32
        Constant inside every superpixel.

    Notes
    -----
    Eq. 4: ``S~_i = 1/N_j sum_{k in P_j} S_k`` for every pixel ``i`` of ``P_j``.
    """
    _check_map(saliency)
    labels = np.asarray(labels)
    if labels.shape != saliency.shape:
        raise ValueError(f"labels shape {labels.shape} does not match saliency shape {saliency.shape}")
    n = int(labels.max()) + 1
    # Eq. 4: mean over the superpixel, painted back on its pixels.
    return broadcast(region_mean(saliency, labels, n), labels).astype(np.float32)


def refine(smoothed: np.ndarray, lowlevel: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Multiply a smoothed map by a low-level map rescaled to ``[alpha, 1 + alpha]`` (Eq. 6).

    Parameters
    ----------
    smoothed : (H, W) ndarray of float
        Smoothed saliency ``S~`` in [0, 1].
    lowlevel : (H, W) ndarray of float
        Low-level saliency ``S_l`` (any non-negative scale; min-max rescaled here).
    alpha : float, optional
        Floor of the rescaled low-level map, ``0 <= alpha <= 1``.

    Returns
    -------
    refined : (H, W) ndarray of float32
        ``S~ * S_l'`` divided by ``1 + alpha`` so that it stays in [0, 1] (the division
        does not change the ranking; Algorithm 1 normalises again afterwards anyway).

    Notes
    -----
    Eq. 6: ``S^ = S_l' (.) S~`` with ``S_l' = alpha + (S_l - min S_l) / (max S_l - min S_l)``.
    A constant ``S_l`` carries no information and is taken as all ones (``S^ = S~``).
    """
    _check_map(smoothed, "smoothed")
    _check_map(lowlevel, "lowlevel")
    if smoothed.shape != lowlevel.shape:
        raise ValueError(f"lowlevel shape {lowlevel.shape} does not match smoothed shape {smoothed.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    low = np.asarray(lowlevel, dtype=np.float64)
    span = low.max() - low.min()
    if span > 1e-12:
        scaled = alpha + (low - low.min()) / span           # in [alpha, 1 + alpha]
    else:
        scaled = np.full(low.shape, 1.0 + alpha)
    # Eq. 6: element-wise product with the smoothed map.
    refined = np.clip(smoothed, 0.0, 1.0) * scaled / (1.0 + alpha)
    return refined.astype(np.float32)
