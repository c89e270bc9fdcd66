"""Retrieval of similar pool images (MIJR Sec. III): GIST + HOG descriptors and a k-NN index.

    from retrieval import descriptor, descriptor_batch, nearest_neighbours
    d = descriptor_batch(images)                  # (N, 1104) float32, unit rows
    nn = nearest_neighbours(centre_pool(d), k=5)  # nn.index (N, min(5, N-1)) int64, nn.distance

:func:`gist` is LEAR's GIST (960 values for RGB, 320 for gray), :func:`pooled_hog` scikit-image's
HOG pooled to 4 x 4 x 9 = 144 values; :func:`descriptor` combines them with equal weights;
:func:`centre_pool` removes the pool mean of each part before the search (the ``neighbours`` stage).
"""

from retrieval.descriptor import (
    GIST_WEIGHT,
    HOG_WEIGHT,
    centre_pool,
    descriptor,
    descriptor_batch,
    descriptor_length,
)
from retrieval.gist import gist, gist_batch, gist_length
from retrieval.hog import pooled_hog, pooled_hog_length
from retrieval.index import Neighbours, nearest_neighbours

__all__ = [
    "gist",
    "gist_batch",
    "gist_length",
    "pooled_hog",
    "pooled_hog_length",
    "descriptor",
    "descriptor_batch",
    "descriptor_length",
    "centre_pool",
    "GIST_WEIGHT",
    "HOG_WEIGHT",
    "Neighbours",
    "nearest_neighbours",
]
