"""The whole MIJR re-learning: training on a pool (:func:`train_relearn`) and promoting one image
(:func:`relearn_image`). MIJR Sec. III-B, IV-B, IV-C.

Per target image, with superpixels ``S_i`` and up to ``M = 5`` retrieved, aligned images:

1. pairs ``(i, m)`` of each target superpixel with its aligned superpixel of image ``m``, inputs
   ``[xi_i, xi_j, context]`` (:func:`relearn.pair_inputs`);
2. the instance-pair filter's probability per pair (:func:`relearn.filter_pairs`), the pairs
   ranked by it, ``delta = p > filter_threshold`` (:func:`relearn.rank_by_trust`; by default
   0.0002 at inference, 0.005 in training, see below);
3. the joint head's saliency ``h(...)`` (Eq. 6, :func:`relearn.predict_joint`) for every
   superpixel with at least one pair passing the filter (of a residual model, ``h`` of the
   prior's logit plus the joint logit, see *Residual* below);
4. superpixel scores: the re-learned saliency there (narrowed by ``corrections_only`` and
   ``confident_only`` when set), the prior's superpixel mean elsewhere; spatial weighting
   (:func:`relearn.spatial_weighting`; off by default, see *Gain*) to a pixel map (of a residual
   model, of its corrections);
5. the promoted map: on the re-learned superpixels that map's odds multiplied with the prior's
   pixels' (``merge="logodds"``, the default; the added log-odds scaled by the image's gain, see
   *Gain*) or that map alone (``"replace"``, the paper); the prior's own pixels elsewhere.

Training (:func:`train_relearn`) on a pool whose images have pseudo GT, and ground truth on some:
Table I labels of the pairs of every target with GT (:func:`relearn.pair_labels`), the 30k / 50k
draw (:func:`relearn.sample_pairs`), the filter; then the filter's ranked outputs on every pair
of those targets, the targets with a pair passing it (at most ``max_targets``, drawn at random)
and their GT class as ``Z``, the joint model (Eq. 6-8). Images without GT take part as
retrieved images only (their pseudo GT is what Table I reads of them).

Decisions the paper leaves open
-------------------------------
* **Where the re-learned saliency replaces the prior**: on the superpixels with a pair passing
  the filter. Table I makes a pair valuable only when its target is hard, so the filter is also
  what tells the hard superpixels at test time, when there is no ground truth; elsewhere the
  prior was right and is kept, with its pixel detail. ``max_trusted < 1`` narrows this to the
  superpixels the pseudo GT leaves (mostly) uncertain. On 200 ECSSD *train* images with the
  shipped model (``benchmarks/tune_relearn_trusted.py``) that lessens the loss on u2netp (max F
  0.933 -> 0.906 at 1, 0.927 at 0.25) but removes the gains on contrast (0.589 -> 0.617 at 1,
  0.590 at 0.25) and gradsal (0.640 -> 0.654, 0.640): the gains come from superpixels the
  pseudo GT trusts wrongly. The default 1 has the largest mean change.
* **How the re-learned score meets the prior** (``merge``, default ``logodds``; stage ``relearn``
  version 2). The paper replaces the prior on the re-learned superpixels (``merge="replace"``),
  which made strong priors worse: the joint model's score, wrong on some superpixels a strong
  prior has right, overwrote them. ``logodds`` multiplies the odds of the prior's pixels and of
  the spatially weighted score, ``sigmoid(logit(prior) + logit(score))``
  (:func:`promote.merge_with_prior`, as LPS and LDPS merge), so a score that disagrees with a
  confident prior softens it instead of overwriting it, and one that agrees makes it surer. With
  it, the two gates below are off by default: every superpixel with a pair passing the filter is
  merged. On the first 100 stems of ECSSD ``train.txt`` with the shipped model, max F / adaptive F
  / MAE (priors u2netp 0.924 / 0.908 / 0.042, contrast 0.594 / 0.597 / 0.218, gradsal 0.652 /
  0.646 / 0.222): ``logodds`` ungated u2netp 0.924 / 0.924 / 0.038, contrast 0.801 / 0.782 /
  0.143, gradsal 0.835 / 0.809 / 0.137 (``benchmarks/results/tune_relearn_logodds_ungated.md``);
  ``replace`` with both gates (the defaults before) 0.916 / 0.897 / 0.044, 0.763 / 0.740 / 0.150,
  0.799 / 0.787 / 0.144 (``tune_relearn_3k_joint0.005_filter0.0002.md``); ``logodds`` with both
  gates 0.927 / 0.908 / 0.041, 0.690 / 0.695 / 0.177, 0.769 / 0.758 / 0.171
  (``tune_relearn_logodds_gated.md``). Ungated ``logodds`` is the best of the three on every
  adaptive F and MAE (u2netp's MAE 0.038 against the prior's 0.042) and on the max F of the weak
  priors; u2netp's max F is best gated (0.927; ungated 0.924, the prior's). S-measure drops on
  contrast and gradsal against the old defaults (0.688 / 0.713 against 0.712 / 0.741).
  Reported once on the test images (``benchmarks/results/relearn_logodds.md``, against
  ``relearn.md`` with the old defaults), max F / MAE: ECSSD u2netp 0.930 / 0.041 -> 0.930 / 0.037
  (old: 0.919 / 0.044), contrast 0.625 / 0.199 -> 0.804 / 0.133 (0.759 / 0.146); SOD Amulet 0.773 /
  0.141 -> 0.784 / 0.126 (0.773 / 0.137), DSS 0.804 / 0.121 -> 0.802 / 0.119 (0.796 / 0.121),
  PiCANet 0.811 / 0.102 -> 0.803 / 0.097 (0.797 / 0.104), RBD 0.520 / 0.244 -> 0.655 / 0.195
  (0.604 / 0.210). MAE and adaptive F improve on all nine priors; max F drops a little on u2netp,
  DSS and PiCANet.
* **Residual** (``relearn_fit.residual``, off by default as the paper; both shipped models,
  ``relearn-u2netp-duts`` and ``relearn-duts``, are trained with it). The pair inputs carry the prior's superpixel mean, so the paper's joint model predicts
  the whole posterior, and multiplying its odds with the prior's counts the prior twice. Trained
  with the prior's superpixel logit as an offset (:func:`relearn.train_joint`, ``offset``), the
  joint logit is a correction of the prior's odds; at inference the corrections (0.5 on the
  superpixels left alone) are spatially weighted and multiplied into the odds of the prior's
  pixels (``merge="logodds"``), so the promoted map is the model's own posterior with the
  prior's pixel detail, and ``scores`` holds ``sigmoid(logit(prior) + correction)`` per
  superpixel. ``replace`` puts that posterior in place of the prior's pixels. On the first 100
  stems of ECSSD ``train.txt`` (max F / adaptive F / MAE; the card of ``relearn-duts`` has the
  whole table): the previous model, not residual, left u2netp's max F where it was (0.924 ->
  0.924 / 0.924 / 0.038) and took contrast to 0.801 / 0.782 / 0.143, gradsal to 0.835 / 0.809 /
  0.137; the residual model on 100 000 targets, 30 000 steps gives u2netp 0.927 / 0.918 / 0.038,
  contrast 0.821 / 0.810 / 0.119, gradsal 0.851 / 0.831 / 0.113, and raises S-measure on the weak
  priors (0.757 / 0.785 against 0.688 / 0.713). Of the gain, more rows (100 000 against
  20 000 targets) alone gave nothing at 5 000 steps; at 5 000 steps the offset lowered the weak
  priors' MAE (contrast 0.146 -> 0.126) and lifted u2netp's max F (0.924 -> 0.925) but raised its
  MAE (0.038 -> 0.041); longer training (15 000, 30 000 steps) recovered that and gave the rest. The plain cross-entropy in place of the
  class-balanced one changed no score by more than 0.003.
* **Features.** The paper pools VGG16's ImageNet features. The shipped default
  ``relearn-u2netp-duts`` pools the decoder taps of the saliency-trained U^2-Net-small
  (``superpixel_features.features=u2netp_features``, 512 values per superpixel), as the
  package's LPS and LDPS models do; ``relearn-duts`` is the same recipe on EfficientNet-Lite0's
  ImageNet taps (1024 values). With the old recipe (1000 images, 5 000 steps, gated replacement)
  the two taps scored alike (``benchmarks/results/tune_relearn_features.md``); with the residual
  recipe, on the same 100 ECSSD train stems (max F / adaptive F / MAE), the U2-Netp taps take
  contrast to 0.873 / 0.855 / 0.098 (ImageNet taps: 0.821 / 0.810 / 0.119), gradsal to 0.901 /
  0.870 / 0.090 (0.851 / 0.831 / 0.113) and the ``arn`` prior, a detector on the ImageNet taps,
  from 0.888 / 0.814 / 0.077 to 0.916 / 0.894 / 0.047 (0.894 / 0.847 / 0.059); on u2netp, whose
  own decoder they are, max F stays at the prior's (0.9245 against 0.9242; ImageNet taps 0.9266).
  Part of the gain is U2-Netp's knowledge: the benchmark's ``--fusion`` baseline, a prior
  averaged with U2-Netp's map, has the higher max F (contrast 0.9185) and the re-learned map the
  lower MAE.
* **Gain and spatial weighting** (``gain_reference`` 1, ``gain_range`` (0.25, 3), ``sigma_s2`` 0;
  ``relearn`` version 3). One model serves priors of very different reliability: on ECSSD train
  the corrections that help a weak prior most are about twice as strong as those the model makes
  (a fixed gain k on the added log-odds: contrast's max F 0.873 at k = 1, 0.898 at 2), while on a
  strong prior they are mostly noise (u2netp 0.9245 at 1, 0.9214 at 2). How much the model adds
  to an image tells the two apart: the mean |added log-odds| per image has the median 0.20 on
  u2netp, 1.16 on arn, 1.98 on contrast and 3.35 on gradsal (100 ECSSD train images, ``sigma_s2``
  0.02; ``tune_relearn_gain_spread.md``). So each image's added log-odds ``c`` are scaled by ``k = clip(mean |c| / 1, 0.25, 3)``:
  a prior the model hardly disagrees with is damped towards itself, one it rewrites is rewritten
  more firmly. The spatial weighting spreads a residual model's corrections over the untouched
  superpixels' 0.5 and so weakens them; without it (``sigma_s2`` 0, each superpixel's correction
  painted on its own pixels, no gain) the weak priors and arn gain (arn max F 0.9155 -> 0.9190)
  and u2netp loses (0.9245 -> 0.9216, below the prior); the gain rule gives u2netp its max F
  back at some cost to arn's (0.9162; ``1.5 / [0.25, 2.0]`` keeps 0.9191 at a higher mean MAE,
  0.0443 against 0.0433, and is the grid's best mean max F, 0.9137 against 0.9127). Both were chosen
  together on the 100 ECSSD train images of ``benchmarks/bench_relearn.py --split train``
  (``benchmarks/tune_relearn_gain.py``, grid of ``sigma_s2`` x gain rules; criterion fixed
  before the grid: the best mean max F over the u2netp, contrast, gradsal and arn priors among
  the settings that keep every prior's max F at least the prior's own, within 0.001 the lower
  mean MAE). Max F / MAE, version 2 (``sigma_s2`` 0.02, no gain; the grid's row) -> version 3
  through the pipeline (``tune_relearn_gain.md``): u2netp 0.9245 / 0.0389 -> 0.9245 / 0.0390 (the
  prior 0.9242 / 0.0418), contrast 0.8727 / 0.0980 -> 0.9029 / 0.0471, gradsal 0.8852 / 0.0765
  -> 0.9072 / 0.0452, arn 0.9155 / 0.0472 -> 0.9162 / 0.0417. S-measure stays below the prior's
  on u2netp (0.9110 against 0.9131). The paper's scheme stays available
  (``sigma_s2`` > 0, :func:`relearn.spatial_weighting`); ``gain_range=(1, 1)`` is the plain odds
  product.
* **Corrections only** (``corrections_only``, default off since version 2; the notes below were
  measured with ``merge="replace"``): of the superpixels selected above, the
  re-learned score replaces the prior only where the two disagree on the class (``> 0.5``);
  where they agree, re-learning confirms the prior and the prior's own pixels, with their
  detail, are kept. Same images and model: mean max-F change +0.0093 against +0.0053 for
  replacing every selected superpixel (u2netp 0.922 vs 0.906, contrast 0.614 vs 0.617, gradsal
  0.653 vs 0.654; ``benchmarks/tune_relearn_trusted.py``).
* **Confident only** (``confident_only``, default off since version 2, as above): of those
  corrections, only the superpixels
  where the re-learned score is further from 0.5 than the prior's superpixel mean (LDPS's Eq. 10-11
  confidence rule, per superpixel): a prior sure of its class is not overturned by a hesitant
  re-learned score. Same images and model (``benchmarks/results/tune_relearn_confident.md``): the
  mean max-F change is the same (+0.00928 with and without), the mean changes of adaptive F, MAE
  and S-measure are better (+0.0038 / -0.0036 / +0.0118 against +0.0012 / -0.0030 / +0.0109), and
  the loss on u2netp halves (max F 0.933 -> 0.928 against 0.922; contrast 0.589 -> 0.610 against
  0.614, gradsal 0.640 -> 0.651 against 0.653).
  Reported once on the test images (``benchmarks/results/relearn.md``, max F with / without):
  ECSSD u2netp 0.930 -> 0.919 / 0.910, contrast 0.625 -> 0.637 / 0.641; SOD Amulet 0.773 -> 0.769 /
  0.764, DSS 0.804 -> 0.800 / 0.798, PiCANet 0.811 -> 0.802 / 0.799, RBD 0.520 -> 0.532 / 0.539.
* **The filter's threshold at inference** (``filter_threshold``, default 0.0002) **and in
  training** (``joint_threshold``, default 0.005). The filter is trained on the paper's 30k / 50k
  draw, 3 : 5, while about 3% of the pairs are Table I positives, and at 0.5 it passes the pairs
  of few superpixels (1.1-2.4% of the pixels changed). The joint model's training rows are the
  targets with a pair that *the filter* passes (not the Table I positives), so that it learns on
  the kind of rows it is applied to; ``joint_threshold`` sets which. Both were chosen on 100
  ECSSD *train* images, max F of u2netp / contrast / gradsal (priors 0.924 / 0.594 / 0.652):

  - with the DUTS-TR-1k model trained at 0.5 (``benchmarks/results/tune_relearn_threshold.md``),
    inference at 0.9 -> 0.920 / 0.605 / 0.661, 0.5 -> 0.918 / 0.620 / 0.672, 0.1 -> 0.915 /
    0.641 / 0.691, 0.02 -> 0.915 / 0.664 / 0.713, 0.005 -> 0.915 / 0.679 / 0.725, 0.001 ->
    0.917 / 0.676 / 0.722, 0.0002 -> 0.918 / 0.649 / 0.707, every pair (no filter) -> 0.919 /
    0.634 / 0.699: with that model the filter mattered, 0.005 was best;
  - fitted on DUTS-TR-1k + 2k with the mixed priors, identical but for ``joint_threshold``
    (``tune_relearn_threshold_3k.md``): 0.5 and inference at 0.005 -> 0.917 / 0.714 / 0.751;
    0.005 and inference at 0.02 -> 0.916 / 0.691 / 0.730, 0.005 -> 0.916 / 0.745 / 0.773,
    0.001 -> 0.916 / 0.761 / 0.795, 0.0002 -> 0.916 / 0.763 / 0.799 (MAE of contrast / gradsal
    0.150 / 0.144), every pair -> 0.916 / 0.763 / 0.798; 0.001 and inference at 0.001 -> 0.912 /
    0.755 / 0.783, at 0.0002 -> 0.913 / 0.756 / 0.785.

  Training at 0.005 gives the joint model more rows of the kind it then sees, and that model is
  best at the lowest inference thresholds tried: 0.0002 has the largest mean max F and the
  lowest MAE, no filter at all is within 0.001 of it. The filter then acts through training
  (which targets are rows) and through the ranking of each row's pairs by trust (the m-th
  classifier reads the m-th most trusted pair), hardly through ``delta``.
  Of the pixels re-learning changes on the weak priors 92-95% move closer to the ground
  truth, on u2netp 32-36% (1.5% of its pixels): re-learning does not improve a strong prior's
  max F with any setting tried.
* **Memory.** Pair inputs are built only for the drawn pairs and rows, stored as float16 (about
  ``80 000 x 2 054 x 2`` bytes = 330 MB for the filter, ``max_targets x 5 x 2 054 x 2`` = 410 MB
  for the joint model at 20 000 targets), cast to float32 per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from promote.merge import logit, merge_with_prior, sigmoid
from relearn.instance_pairs import (
    M_NEIGHBOURS,
    N_NEGATIVE,
    N_POSITIVE,
    T1,
    T2,
    Neighbour,
    pair_inputs,
    pair_labels,
    pseudo_gt_fractions,
    sample_pairs,
    similarity_scale,
    target_truth,
)
from relearn.joint import MIN_ERROR, JointModel, predict_joint, rank_by_trust, train_joint
from relearn.pair_filter import PairFilter, filter_pairs, train_pair_filter
from relearn.spatial import spatial_weighting
from relearn.superpixel_features import DEFAULT_TAPS
from relearn import _nets
from superpixels import region_mean
from superpixels.validation import check_int, check_labels, check_map

__all__ = ["FILTER_THRESHOLD", "GAIN_RANGE", "GAIN_REFERENCE", "JOINT_THRESHOLD", "NeighbourRef", "PoolImage",
           "RELEARN_SIGMA_S2", "RelearnModel", "RelearnResult", "RelearnTraining", "relearn_image", "train_relearn"]

# the filter's delta threshold at inference and while training the joint model (module notes)
FILTER_THRESHOLD = 0.0002
JOINT_THRESHOLD = 0.005
RELEARN_SIGMA_S2 = 0.0        # no spatial weighting of a residual model's corrections (module notes, *Gain*)
GAIN_REFERENCE = 1.0          # mean |added log-odds| of an image at which its gain is 1 (notes, *Gain*)
GAIN_RANGE = (0.25, 3.0)
RELEARN_MERGES = ("replace", "logodds")  # how a re-learned superpixel's score meets the prior


@dataclass
class RelearnModel:
    """The pair filter, the joint model and the settings they were trained with.

    Attributes
    ----------
    filter : PairFilter
    joint : JointModel
    settings : dict
        ``taps`` (of the superpixel features), ``feature_dim`` (F), ``similarity_scale`` (tau of
        g), ``context`` (bool), ``m``, ``t1``, ``t2``, ``threshold`` (of delta).
    """

    filter: PairFilter
    joint: JointModel
    settings: dict

    @property
    def hparams(self) -> dict:
        """JSON-able hyper-parameters: the settings and both networks' hparams."""
        return {**self.settings, "filter": dict(self.filter.hparams), "joint": dict(self.joint.hparams)}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Both networks' parameters as float32 arrays, keys prefixed ``filter.`` / ``joint.``."""
        return {**{f"filter.{k}": v for k, v in self.filter.state_arrays().items()},
                **{f"joint.{k}": v for k, v in self.joint.state_arrays().items()}}

    def n_parameters(self) -> int:
        return self.filter.n_parameters() + self.joint.n_parameters()

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "RelearnModel":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        def part(prefix):
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        settings = {k: v for k, v in hparams.items() if k not in ("filter", "joint")}
        return cls(PairFilter.from_state(part("filter."), hparams["filter"]),
                   JointModel.from_state(part("joint."), hparams["joint"]), settings)


@dataclass(frozen=True)
class RelearnResult:
    """Result of :func:`relearn_image`.

    Attributes
    ----------
    map : (H, W) ndarray of float32
        The promoted saliency map.
    scores : (n,) ndarray of float32
        Superpixel scores before spatial weighting (re-learned or the prior's mean).
    relearned : (n,) ndarray of bool
        Superpixels with a pair passing the filter (where the map is re-learned).
    trust : (n, M) ndarray of float32
        The filter's probability per pair, in neighbour order (NaN: no pair).
    """

    map: np.ndarray
    scores: np.ndarray
    relearned: np.ndarray
    trust: np.ndarray


def _target_inputs(features, labels, prior, pseudo_gt):
    features = np.asarray(features)
    labels, n = check_labels(labels, "labels")
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"features: expected ({n}, F) superpixel features (one row per label of labels), "
                         f"got shape {features.shape}")
    prior = check_map(prior, "prior", shape=labels.shape)
    pseudo = pseudo_gt_fractions(pseudo_gt, labels, n)
    return features, labels, n, prior, region_mean(prior, labels, n).astype(np.float32), pseudo


def _gained(prior: np.ndarray, merged: np.ndarray, inside: np.ndarray, reference: float, lo: float,
            hi: float) -> np.ndarray:
    """The odds product with the added log-odds scaled by the image's gain (module notes, *Gain*)."""
    base = logit(prior)
    change = np.where(inside, logit(merged) - base, 0.0)   # what re-learning adds; 0 where the prior is kept
    gain = float(np.clip(np.abs(change).mean() / reference, lo, hi))
    return sigmoid(base + gain * change).astype(np.float32)


def relearn_image(
    model: RelearnModel,
    features: np.ndarray,
    labels: np.ndarray,
    prior: np.ndarray,
    pseudo_gt: np.ndarray,
    neighbours: Sequence[Neighbour],
    *,
    sigma_s2: float = RELEARN_SIGMA_S2,
    use_filter: bool = True,
    filter_threshold: float = FILTER_THRESHOLD,
    max_trusted: float = 1.0,
    corrections_only: bool = False,
    confident_only: bool = False,
    merge: str = "logodds",
    gain_reference: float = GAIN_REFERENCE,
    gain_range: tuple[float, float] = GAIN_RANGE,
    device: str = "cpu",
) -> RelearnResult:
    """Promote one image's prior by MIJR re-learning (module notes, steps 1-5).

    Parameters
    ----------
    model : RelearnModel
        Trained by :func:`train_relearn` (or rebuilt by :meth:`RelearnModel.from_state`).
    features : (n, F) ndarray of float
        The target's superpixel features, :func:`relearn.superpixel_features` of its
        ``deep_features`` taps (``{tap: (C, h, w) float16}``) and ``labels``, with
        ``taps=model.settings["taps"]``.
    labels : (H, W) ndarray of int
        The target's superpixels: the ``slic`` stage's ``labels`` (int32, image size, 0 .. n-1).
    prior : (H, W) ndarray of float
        The prior map in [0, 1] at the image size (the map stage named by ``prior``).
    pseudo_gt : (H, W) ndarray of int8
        The target's bi-level pseudo GT, :attr:`relearn.PseudoGT.pixels` of
        :func:`relearn.crf_pseudo_gt` on the same prior (1, 0, -1).
    neighbours : sequence of Neighbour
        Up to M retrieved images in the ``neighbours`` stage's order (``index`` row of the
        target, entries -1 left out), each ``Neighbour(features, pseudo, match, distance)``:
        ``features`` its superpixel features as above; ``pseudo`` =
        :func:`relearn.pseudo_gt_fractions` of its pseudo GT pixels and its ``slic`` labels;
        ``match``, ``distance`` the ``alignment`` stage's ``superpixel_match`` ((n,) int64, -1:
        none) and ``superpixel_distance`` ((n,) float64, inf: none) for the pair (target,
        neighbour).
    sigma_s2 : float, optional
        The spatial weighting's kernel width (:func:`relearn.spatial_weighting`).
    use_filter : bool, optional
        False: every existing pair passes (``delta = 1``; the paper's "without filter" ablation),
        so every superpixel with an aligned instance is a candidate for re-learning (then
        narrowed by ``max_trusted`` and ``corrections_only``). Pairs are still ranked by the
        filter's trust.
    filter_threshold : float, optional
        ``delta = trust > filter_threshold``: a pair passes the filter when its trust exceeds
        this, in (0, 1). The joint model was trained on the targets with a pair above the
        model's ``settings["threshold"]``; the default 0.0002 was chosen on ECSSD train for the
        shipped model (module notes).
    max_trusted : float, optional
        Re-learn only the superpixels of which the pseudo GT trusts (as salient or as background)
        at most this fraction of the pixels; the others keep the prior. 1: every superpixel with
        a pair passing the filter (module notes).
    corrections_only : bool, optional
        Put the re-learned score only on the superpixels where its class (``> 0.5``) differs from
        that of the prior's superpixel mean; where they agree the prior's pixels are kept
        (module notes). False: on every superpixel selected as above.
    confident_only : bool, optional
        Of the superpixels selected as above, replace only those where the re-learned score is
        further from 0.5 than the prior's superpixel mean (LDPS's confidence rule, Eq. 10-11 of
        Chen et al. 2020, per superpixel; module notes). False: every superpixel selected as above.
    merge : {"replace", "logodds"}, optional
        On the re-learned superpixels, ``replace`` puts the spatially weighted score in place of
        the prior's pixels (the paper); ``logodds`` multiplies the odds of the two,
        ``sigmoid(logit(prior) + logit(score))`` per pixel (:func:`promote.merge_with_prior`), so a
        score that disagrees with a confident prior softens it instead of overwriting it. With a
        residual model (``model.joint.hparams["residual"]``) ``logodds`` multiplies the prior's
        odds by the spatially weighted corrections' and ``replace`` puts the posterior
        ``sigmoid(logit(prior) + correction)`` of each superpixel in place of the prior's pixels.
    gain_reference, gain_range : float, (float, float), optional
        ``logodds`` only (``replace`` ignores them): the per-image gain of the re-learned log-odds
        (module notes, *Gain*).
        With ``c`` the log-odds the odds product adds to the prior's at each pixel (0 where the
        prior is kept) and ``d`` its mean absolute value over the image, the promoted map is
        ``sigmoid(logit(prior) + k c)`` with ``k = clip(d / gain_reference, *gain_range)``:
        corrections the model makes on few pixels, or weakly, are damped, large ones amplified.
        ``gain_range=(k, k)`` gives the fixed gain ``k``; ``(1, 1)`` the plain odds product.
    device : str, optional
        Torch device of the two networks.

    Returns
    -------
    RelearnResult
    """
    features, labels, n, prior, prior_sp, pseudo = _target_inputs(features, labels, prior, pseudo_gt)
    if merge not in RELEARN_MERGES:
        raise ValueError(f"merge: expected one of {RELEARN_MERGES}, got {merge!r}")
    if not 0.0 < filter_threshold < 1.0:
        raise ValueError(f"filter_threshold must be in (0, 1), got {filter_threshold!r}")
    if not 0.0 <= max_trusted <= 1.0:
        raise ValueError(f"max_trusted must be in [0, 1], got {max_trusted!r}")
    lo_gain, hi_gain = gain_range
    if not (np.isfinite(gain_reference) and gain_reference > 0.0):
        raise ValueError(f"gain_reference must be a finite number > 0, got {gain_reference!r}")
    if not (np.isfinite(lo_gain) and np.isfinite(hi_gain) and 0.0 <= lo_gain <= hi_gain):
        raise ValueError(f"gain_range: expected (low, high) with 0 <= low <= high, got {gain_range!r}")
    st = model.settings
    if features.shape[1] != st["feature_dim"]:
        raise ValueError(f"features: expected F = {st['feature_dim']} columns (the model's taps "
                         f"{', '.join(st['taps'])}), got {features.shape[1]}")
    pi = pair_inputs(features, prior_sp, pseudo, neighbours, similarity_scale=st["similarity_scale"],
                     context=st["context"], m_max=st["m"])
    trust = np.full(pi.valid.shape, np.nan, np.float32)
    if pi.valid.any():
        trust[pi.valid] = filter_pairs(model.filter, pi.x[pi.valid], device=device)
    # trust lies in [0, 1]: a threshold of -1 lets every existing pair through
    x, delta, g = rank_by_trust(pi.x, pi.valid, pi.similarity, np.nan_to_num(trust, nan=0.0),
                                threshold=filter_threshold if use_filter else -1.0)
    scores = prior_sp.copy()
    relearned = np.zeros(n, bool)
    rows = np.flatnonzero(delta.any(1))
    if max_trusted < 1.0:  # the pseudo GT's trusted share: salient + background fractions
        rows = rows[pseudo[rows].sum(1) <= max_trusted]
    residual = bool(model.joint.hparams.get("residual", False))
    correction = np.full(n, 0.5)  # a residual model's correction, as a probability (0.5: none)
    if rows.size:
        offset = logit(prior_sp[rows]) if residual else None
        s, has = predict_joint(model.joint, x[rows], delta[rows], g[rows], offset=offset, device=device)
        if corrections_only:  # where the re-learned class agrees, the prior's pixels are kept
            has &= (s > 0.5) != (prior_sp[rows] > 0.5)
        if confident_only:  # where the prior is the more confident, it is kept
            has &= np.abs(s - 0.5) > np.abs(prior_sp[rows] - 0.5)
        scores[rows[has]] = s[has]
        relearned[rows[has]] = True
        if residual:
            correction[rows[has]] = sigmoid(logit(s[has]) - offset[has])
    if merge == "logodds":
        # residual: the model's own posterior sigma(logit(prior) + correction), per pixel of the prior
        weighted = spatial_weighting(correction if residual else scores, labels, sigma_s2=sigma_s2)
        weighted = merge_with_prior(prior, np.clip(weighted, 0.0, 1.0).astype(np.float32), "logodds")
        if (lo_gain, hi_gain) != (1.0, 1.0):
            weighted = _gained(prior, weighted, relearned[labels], gain_reference, lo_gain, hi_gain)
    else:
        weighted = spatial_weighting(scores, labels, sigma_s2=sigma_s2)
    out = np.where(relearned[labels], weighted, prior).astype(np.float32)
    return RelearnResult(map=out, scores=scores, relearned=relearned, trust=trust)


@dataclass(frozen=True)
class NeighbourRef:
    """A retrieved image of a pool image: its position in the pool and the alignment to it.

    Attributes
    ----------
    index : int
        Position of the retrieved image in the :func:`train_relearn` ``images`` sequence.
    match, distance : (n,) ndarray
        The ``alignment`` stage's ``superpixel_match`` and ``superpixel_distance`` (target -> it).
    """

    index: int
    match: np.ndarray
    distance: np.ndarray


@dataclass(frozen=True)
class PoolImage:
    """One pool image as :func:`train_relearn` reads it (formats as :func:`relearn_image`).

    Attributes
    ----------
    features : (n, F) ndarray
        Superpixel features.
    labels : (H, W) ndarray of int
        ``slic`` labels.
    prior : (H, W) ndarray of float
        Prior map.
    pseudo_gt : (H, W) ndarray of int8
        Bi-level pseudo GT pixels.
    gt : (H, W) ndarray or None
        Ground-truth mask (None: the image serves as a retrieved image only).
    neighbours : sequence of NeighbourRef
        Its retrieved images (up to M).
    """

    features: np.ndarray
    labels: np.ndarray
    prior: np.ndarray
    pseudo_gt: np.ndarray
    gt: np.ndarray | None = None
    neighbours: Sequence[NeighbourRef] = field(default_factory=tuple)


@dataclass(frozen=True)
class RelearnTraining:
    """Result of :func:`train_relearn`.

    Attributes
    ----------
    model : RelearnModel
    record : dict
        JSON-able counts and measurements: pairs labelled / positive / drawn, the filter's
        weighted training accuracy, joint training rows, per-epoch joint loss, final alpha_m.
    """

    model: RelearnModel
    record: dict


def _neighbours(images, k, pseudo, m_max):
    img = images[k]
    if len(img.neighbours) > m_max:
        raise ValueError(f"images[{k}].neighbours: expected at most M = {m_max}, got {len(img.neighbours)}")
    out = []
    for ref in img.neighbours:
        if not isinstance(ref, NeighbourRef) or not 0 <= int(ref.index) < len(images) or ref.index == k:
            raise ValueError(f"images[{k}].neighbours: expected NeighbourRef entries indexing other pool images "
                             f"(0 .. {len(images) - 1}), got {ref!r:.80}")
        out.append(Neighbour(np.asarray(images[ref.index].features), pseudo[ref.index], ref.match, ref.distance))
    return out


def train_relearn(
    images: Sequence[PoolImage],
    *,
    taps: Sequence[str] = DEFAULT_TAPS,
    t1: float = T1,
    t2: float = T2,
    n_positive: int = N_POSITIVE,
    n_negative: int = N_NEGATIVE,
    max_targets: int = 20_000,
    context: bool = True,
    m: int = M_NEIGHBOURS,
    widths: Sequence[int] = _nets.FC5_WIDTHS,
    learning_rate: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 5e-3,
    iterations: int = 80_000,
    batch_size: int = 64,
    min_error: float = MIN_ERROR,
    joint_threshold: float = JOINT_THRESHOLD,
    residual: bool = False,
    balanced: bool = True,
    seed: int = 0,
    device: str = "cpu",
) -> RelearnTraining:
    """Train the pair filter and the joint model on a pool (module notes).

    Parameters
    ----------
    images : sequence of PoolImage
        The pool; those with ``gt`` are the training targets.
    taps : sequence of str, optional
        The taps the superpixel features were pooled from (recorded in the model).
    t1, t2 : float, optional
        Table I thresholds (paper: 0.15, 0.90).
    n_positive, n_negative : int, optional
        The filter's training draw (paper: 30 000 and 50 000).
    max_targets : int, optional
        At most this many target superpixels (drawn at random) train the joint model.
    context : bool, optional
        Append the six context values to the pair inputs (False: the paper's ``{xi_i, xi_j}``).
    m : int, optional
        ``M``, pairs per target (paper: 5).
    widths, learning_rate, momentum, weight_decay, iterations, batch_size : optional
        FC5 widths and SGD settings of both networks (paper: 0.001, 0.9, 0.005, 80 000).
    min_error : float, optional
        The e_m clip of Eq. 8.
    joint_threshold : float, optional
        ``delta = trust > joint_threshold`` while training the joint model: the targets with a
        pair above it are its rows, and it gates their pairs (module notes).
    residual : bool, optional
        Train the joint model on the prior's superpixel logit as an offset, so that it learns a
        correction of the prior (module notes, *Residual*). False: the paper's joint model.
    balanced : bool, optional
        The joint model's losses class-balanced (the paper's Eq. 6); False: plain cross-entropy.
    seed : int, optional
        Draws, initialisations and batch orders.
    device : str, optional
        Torch device.

    Returns
    -------
    RelearnTraining
    """
    if not images:
        raise ValueError("images: expected a non-empty pool")
    m = check_int(m, "m")
    max_targets = check_int(max_targets, "max_targets")
    if not 0.0 < joint_threshold < 1.0:
        raise ValueError(f"joint_threshold must be in (0, 1), got {joint_threshold!r}")
    prepared = []
    for k, img in enumerate(images):
        if not isinstance(img, PoolImage):
            raise ValueError(f"images[{k}]: expected a relearn.PoolImage, got {type(img).__name__}")
        try:
            prepared.append(_target_inputs(img.features, img.labels, img.prior, img.pseudo_gt))
        except ValueError as err:
            raise ValueError(f"images[{k}]: {err}") from None
    dims = {p[0].shape[1] for p in prepared}
    if len(dims) != 1:
        raise ValueError(f"images: expected one feature width F for the whole pool, got {sorted(dims)}")
    pseudo = [p[5] for p in prepared]
    targets = [k for k, img in enumerate(images) if img.gt is not None and img.neighbours]
    if not targets:
        raise ValueError("images: expected at least one image with gt and neighbours (a training target)")
    nbs = {k: _neighbours(images, k, pseudo, m) for k in targets}
    tau = similarity_scale([ref.distance for k in targets for ref in images[k].neighbours])

    def inputs(k, rows=None):
        f, _, _, _, prior_sp, ps = prepared[k]
        return pair_inputs(f, prior_sp, ps, nbs[k], similarity_scale=tau, rows=rows, context=context, m_max=m)

    # Table I labels of every pair of every target, then the 30k / 50k draw
    truths, labels_all, owner = {}, [], []
    for k in targets:
        _, lab, n, _, _, _ = prepared[k]
        truths[k] = target_truth(images[k].pseudo_gt, images[k].gt, lab, n)
        lab_k = pair_labels(truths[k], [pseudo[r.index] for r in images[k].neighbours],
                            [r.match for r in images[k].neighbours], t1=t1, t2=t2, m_max=m)
        labels_all.append(lab_k.ravel())
        owner.append(np.full(lab_k.size, k))
    labels_all = np.concatenate(labels_all)
    owner = np.concatenate(owner)
    offset = {k: int(np.flatnonzero(owner == k)[0]) for k in targets}
    drawn, weight = sample_pairs(labels_all, n_positive=n_positive, n_negative=n_negative, seed=seed)
    xs = []
    for k in targets:
        sel = drawn[owner[drawn] == k] - offset[k]
        if sel.size:
            rows, slots = np.divmod(sel, m)
            ur, inv = np.unique(rows, return_inverse=True)
            xs.append(inputs(k, ur).x[inv, slots].astype(np.float16))
    x_filter = np.concatenate(xs)
    y_filter = labels_all[drawn]
    sgd = {"widths": widths, "learning_rate": learning_rate, "momentum": momentum,
           "weight_decay": weight_decay, "iterations": iterations, "batch_size": batch_size, "device": device}
    pair_filter = train_pair_filter(x_filter, y_filter, weight, seed=seed, **sgd)
    p_train = filter_pairs(pair_filter, x_filter, device=device)
    filter_acc = float(np.average((p_train > 0.5) == (y_filter == 1), weights=weight))
    del x_filter

    # the filter on every pair of every target; rows with a pair passing it train the joint model
    threshold = float(joint_threshold)
    candidates = []
    for k in targets:
        pi = inputs(k)
        trust = np.zeros(pi.valid.shape, np.float32)
        if pi.valid.any():
            trust[pi.valid] = filter_pairs(pair_filter, pi.x[pi.valid], device=device)
        rows = np.flatnonzero((pi.valid & (trust > threshold)).any(1))
        candidates += [(k, r) for r in rows]
    if not candidates:
        raise ValueError("train_relearn: the pair filter passes no pair of the training targets "
                         "(no hard superpixel with a trustworthy aligned instance was learned)")
    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(candidates), min(max_targets, len(candidates)), replace=False))
    chosen = np.asarray(candidates, np.int64)[pick]
    xj, dj, gj, zj, oj = [], [], [], [], []
    for k in targets:
        rows = chosen[chosen[:, 0] == k, 1]
        if not rows.size:
            continue
        pi = inputs(k, rows)
        trust = np.zeros(pi.valid.shape, np.float32)
        trust[pi.valid] = filter_pairs(pair_filter, pi.x[pi.valid], device=device)
        x, delta, g = rank_by_trust(pi.x, pi.valid, pi.similarity, trust, threshold=threshold)
        xj.append(x.astype(np.float16))
        dj.append(delta)
        gj.append(g)
        zj.append(truths[k].salient[rows])
        oj.append(logit(prepared[k][4][rows]))
    z = np.concatenate(zj)
    fit = train_joint(np.concatenate(xj), np.concatenate(dj), np.concatenate(gj), z, min_error=min_error,
                      offset=np.concatenate(oj) if residual else None, balanced=balanced, seed=seed, **sgd)
    settings = {"taps": [str(t) for t in taps], "feature_dim": int(dims.pop()), "similarity_scale": tau,
                "context": bool(context), "m": m, "t1": float(t1), "t2": float(t2), "threshold": threshold}
    record = {"targets": len(targets), "pairs_labelled": int((labels_all >= 0).sum()),
              "pairs_positive": int((labels_all == 1).sum()), "pairs_drawn": int(drawn.size),
              "filter_train_accuracy": filter_acc, "joint_rows": int(z.size),
              "joint_rows_salient": int(z.sum()), "joint_loss": [float(v) for v in fit.loss],
              "alpha": list(fit.model.hparams["alpha"])}
    return RelearnTraining(RelearnModel(pair_filter, fit.model, settings), record)
