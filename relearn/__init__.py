"""MIJR re-learning (Sec. III-B and IV of the MIJR paper). Plain functions on numpy arrays.

* :func:`crf_pseudo_gt` — the bi-level CRF pseudo ground truth of an image pool (Sec. IV-A).
* :func:`superpixel_features` / :func:`superpixel_features_batch` — two-scale deep features of
  superpixels from the backbone taps (Sec. III-B).
* :func:`target_truth`, :func:`pseudo_gt_fractions`, :func:`pair_labels`, :func:`sample_pairs`,
  :func:`pair_inputs`, :func:`alignment_similarity`, :func:`similarity_scale` — instance pairs and
  their Table I labels (Sec. IV-B).
* :func:`train_pair_filter`, :func:`filter_pairs` — the instance-pair filter (Sec. IV-B).
* :func:`boost_weight` (Eq. 8), :func:`rank_by_trust`, :func:`train_joint`, :func:`predict_joint` —
  joint re-learning (Sec. IV-C, Eq. 6-8).
* :func:`spatial_weighting` — superpixel scores to a pixel map (Sec. IV-C).
* :func:`relearn_image`, :func:`train_relearn` — the whole method on one image / a pool.
"""

from relearn.instance_pairs import (
    CONTEXT,
    M_NEIGHBOURS,
    T1,
    T2,
    Neighbour,
    PairInputs,
    TargetTruth,
    alignment_similarity,
    pair_inputs,
    pair_labels,
    pseudo_gt_fractions,
    sample_pairs,
    similarity_scale,
    target_truth,
)
from relearn.joint import JointModel, JointTraining, boost_weight, predict_joint, rank_by_trust, train_joint
from relearn.mijr import (
    FILTER_THRESHOLD,
    GAIN_RANGE,
    GAIN_REFERENCE,
    JOINT_THRESHOLD,
    RELEARN_SIGMA_S2,
    NeighbourRef,
    PoolImage,
    RelearnModel,
    RelearnResult,
    RelearnTraining,
    relearn_image,
    train_relearn,
)
from relearn.pair_filter import PairFilter, filter_pairs, train_pair_filter
from relearn.pseudo_gt import PSEUDO_BACKGROUND, PSEUDO_SALIENT, UNCERTAIN, PseudoGT, crf_pseudo_gt
from relearn.spatial import SIGMA_S2, spatial_weighting
from relearn.superpixel_features import DEFAULT_TAPS, feature_dimension, superpixel_features, superpixel_features_batch

__all__ = [
    "PSEUDO_BACKGROUND", "PSEUDO_SALIENT", "UNCERTAIN", "PseudoGT", "crf_pseudo_gt",
    "DEFAULT_TAPS", "feature_dimension", "superpixel_features", "superpixel_features_batch",
    "CONTEXT", "M_NEIGHBOURS", "T1", "T2", "Neighbour", "PairInputs", "TargetTruth",
    "alignment_similarity", "pair_inputs", "pair_labels", "pseudo_gt_fractions", "sample_pairs",
    "similarity_scale", "target_truth",
    "PairFilter", "filter_pairs", "train_pair_filter",
    "JointModel", "JointTraining", "boost_weight", "predict_joint", "rank_by_trust", "train_joint",
    "SIGMA_S2", "spatial_weighting",
    "FILTER_THRESHOLD", "GAIN_RANGE", "GAIN_REFERENCE", "JOINT_THRESHOLD", "RELEARN_SIGMA_S2",
    "NeighbourRef", "PoolImage", "RelearnModel", "RelearnResult",
    "RelearnTraining", "relearn_image", "train_relearn",
]
