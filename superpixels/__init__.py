"""Superpixels: SLIC, the per-superpixel kernels every method shares, and the shared input checks.

Label maps are ``(H, W) int32`` arrays with labels ``0 .. n-1``, contiguous.

* :mod:`superpixels.slic` — :func:`slic` (OpenCV or scikit-image backend) and :func:`relabel`.
* :mod:`superpixels.regions` — :func:`region_mean`, :func:`region_count`, :func:`region_centroid`,
  :func:`adjacency`, :func:`broadcast` (numba, one pass over the pixels).
* :mod:`superpixels.validation` — :func:`check_image`, :func:`check_map`, :func:`check_labels`,
  :func:`check_weight`, :func:`check_int`: the one family of input checks of every method package.
"""

from superpixels.regions import adjacency, broadcast, region_centroid, region_count, region_mean
from superpixels.slic import relabel, slic
from superpixels.validation import check_image, check_int, check_labels, check_map, check_weight

__all__ = [
    "slic", "relabel",
    "region_mean", "region_count", "region_centroid", "adjacency", "broadcast",
    "check_image", "check_map", "check_labels", "check_weight", "check_int",
]
