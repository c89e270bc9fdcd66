"""Promoters: an image plus a prior saliency map (from any detector) in, a better map out.

* :func:`dense_crf` — fully connected CRF refinement (the baseline every promoter is judged against).
* :func:`lps_promote` — LPS (Zeng et al. 2018): nearest-anchor classification in a learned metric
  space, anchors from the prior map, revised iteratively; :func:`train_anchor_network` trains it.
* :func:`ldps_promote` — LDPS (Chen et al. 2020): a discriminator of deep relations to the confident
  foreground, trained on priors alone (:func:`train_relation_network`; :func:`ldps_single` fits one
  image), merged with the prior (Eq. 10-11 or the odds rule).
* :func:`merge_with_prior` — how a promoter's map meets the prior (``promote/merge.py``): LDPS's
  confidence rule, the mean, or the two maps' odds multiplied; MIJR re-learning uses it too.

Plain functions on numpy arrays; no file I/O, no caches, no CLI.
"""

from promote.crf import dense_crf
from promote.lps import (
    AnchorNetwork,
    LpsTraining,
    iterate_prior,
    lps_promote,
    nearest_anchor_probability,
    region_anchor,
    train_anchor_network,
)

from promote.ldps import RelationNetwork, ldps_promote, ldps_single, train_relation_network
from promote.merge import merge_with_prior

__all__ = ["RelationNetwork", "ldps_promote", "ldps_single", "train_relation_network",
           "dense_crf", "AnchorNetwork", "LpsTraining", "iterate_prior", "lps_promote", "merge_with_prior",
           "nearest_anchor_probability", "region_anchor", "train_anchor_network"]
