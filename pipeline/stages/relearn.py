"""MIJR re-learning stages (Sec. III-B, IV): a prior map promoted by re-learning its hard
superpixels from aligned easy ones in the image's retrieved neighbours.

* ``superpixel_features`` (image, batched) pools the taps of a feature stage (``features``:
  ``deep_features`` or ``u2netp_features``) over the ``slic`` superpixels (:func:`relearn.superpixel_features_batch`, Sec. III-B): computed once per image and
  read again wherever the image is a neighbour.
* ``crf_pseudo_gt`` (image) is the bi-level CRF pseudo GT of the map stage named by ``prior``
  (:func:`relearn.crf_pseudo_gt`, Sec. IV-A): its pixels and, per superpixel, the trusted salient
  and background fractions (:func:`relearn.pseudo_gt_fractions`) that neighbours are read by.
* ``relearn_fit`` (pool, needs ``--gt``) trains the instance-pair filter and the joint model
  (:func:`relearn.train_relearn`, Sec. IV-B, IV-C) on the pool's images, their ``neighbours`` and
  ``alignment`` pairs; ``python -m pipeline train relearn`` writes the model file and its card.
* ``relearn`` (image) promotes the prior with a trained model (:func:`relearn.relearn_image`),
  reading the same stages of the image's neighbours and the alignments to them.

The prior: ``relearn.prior`` names the map promoted (``priors``: the user's ``--priors``), and
``relearn_fit`` and ``crf_pseudo_gt`` follow it unless their own is set
(:func:`pipeline.config.build_params`): the pseudo GT must be made from the map that is promoted,
and both stages check that it was.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.registry import FEATURE_STAGES, ModelSlot, NeighbourInputs, Resources, Stage, param, register
from pipeline.stages.features import model_feature_stage, tap_strides
from relearn import (
    FILTER_THRESHOLD,
    GAIN_RANGE,
    GAIN_REFERENCE,
    JOINT_THRESHOLD,
    M_NEIGHBOURS,
    RELEARN_SIGMA_S2,
    T1,
    T2,
    Neighbour,
    NeighbourRef,
    PoolImage,
    crf_pseudo_gt,
    pseudo_gt_fractions,
    relearn_image,
    superpixel_features_batch,
    train_relearn,
)
from relearn._nets import FC5_WIDTHS
from relearn.instance_pairs import N_NEGATIVE, N_POSITIVE
from relearn.joint import MIN_ERROR
from relearn.mijr import RELEARN_MERGES
from relearn.pseudo_gt import CRF_AGGRESSIVE, CRF_CONSERVATIVE

# the stages relearn reads of each neighbour: its superpixel features and pseudo GT fractions,
# and the alignment of the pair (image, neighbour)
NEIGHBOUR_STAGES = ("superpixel_features", "crf_pseudo_gt", "alignment")


@dataclass(frozen=True)
class SuperpixelFeaturesParams:
    """Parameters of ``superpixel_features`` (:func:`relearn.superpixel_features_batch`).

    Parameters
    ----------
    features : str
        The feature stage whose taps are pooled: ``u2netp_features`` (the decoder of the
        saliency-trained U^2-Net-small: four taps of 64 channels, 2 x 256 = 512 values per
        superpixel; what the shipped ``relearn-u2netp-duts`` reads) or ``deep_features`` (the frozen
        ImageNet backbone, EfficientNet-Lite0: five taps, 2 x 512 = 1024; ``relearn-duts``).
    taps : tuple of str
        Taps pooled, concatenated in this order (empty: every tap the feature stage caches, in its
        order).
    """

    features: str = param("u2netp_features", choices=FEATURE_STAGES)
    taps: tuple[str, ...] = ()


def run_superpixel_features(batch, params: SuperpixelFeaturesParams, ctx):
    taps = tuple(params.taps) or tuple(tap_strides(batch[0][params.features]))
    feats = superpixel_features_batch([b[params.features] for b in batch], [b["slic"]["labels"] for b in batch],
                                      taps=taps, device=ctx.device)
    # the feature stage travels with the features, so relearn can check a model reads what it learnt from
    return [{"features": f.astype(np.float16), "taps": np.array(taps, dtype=str),
             "stage": np.array(params.features)} for f in feats]


def features_stage(superpixel_features) -> str:
    """The feature stage a ``superpixel_features`` result was pooled from (results written before
    the field existed pooled ``deep_features``)."""
    return str(superpixel_features["stage"]) if "stage" in superpixel_features else "deep_features"


@dataclass(frozen=True)
class CrfPseudoGtParams:
    """Parameters of ``crf_pseudo_gt`` (:func:`relearn.crf_pseudo_gt`; MIJR Sec. IV-A, Eq. 5).

    Parameters
    ----------
    prior : str
        The map stage the CRFs start from (follows ``relearn.prior`` unless set).
    aggressive : tuple of float
        theta_alpha, theta_beta, theta_gamma of CRFa (paper: 5, 1, 2).
    conservative : tuple of float
        theta_alpha, theta_beta, theta_gamma of CRFc (paper: 200, 50, 20).
    appearance_weight, smoothness_weight : float
        w1, w2 of Eq. 5 for both CRFs.
    n_iterations : int
        Mean-field iterations of each CRF.
    """

    prior: str = "u2netp"
    aggressive: tuple[float, ...] = param(CRF_AGGRESSIVE, gt=0)
    conservative: tuple[float, ...] = param(CRF_CONSERVATIVE, gt=0)
    appearance_weight: float = param(10.0, ge=0)
    smoothness_weight: float = param(3.0, ge=0)
    n_iterations: int = param(5, ge=1)


def run_crf_pseudo_gt(inputs, params: CrfPseudoGtParams, ctx):
    kwargs = asdict(params)
    prior = kwargs.pop("prior")
    labels = inputs["slic"]["labels"]
    pgt = crf_pseudo_gt(inputs["pool"]["image"], inputs[prior]["map"], **kwargs)
    return {"pixels": pgt.pixels, "fractions": pseudo_gt_fractions(pgt.pixels, labels).astype(np.float32),
            "prior": np.array(prior)}


def _check_prior(pseudo, prior: str, stage: str) -> None:
    made_from = str(pseudo["prior"])
    if made_from != prior:
        raise ValueError(f"{stage}.prior = {prior!r} but the pseudo GT was made from {made_from!r}: "
                         f"set crf_pseudo_gt.prior={prior} too")


@dataclass(frozen=True)
class RelearnFitParams:
    """Parameters of ``relearn_fit`` (:func:`relearn.train_relearn`; MIJR Sec. IV-B, IV-C, V-B).

    Parameters
    ----------
    prior : str
        The map stage re-learned from (follows ``relearn.prior`` unless set).
    t1, t2 : float
        Table I thresholds (paper: 0.15, 0.90).
    n_positive, n_negative : int
        The filter's training draw of positive and negative pairs (paper: 30 000 and 50 000).
    max_targets : int
        At most this many target superpixels (drawn at random) train the joint model.
    context : bool
        Append the six context values to the pair inputs (false: the paper's {xi_i, xi_j} alone).
    m : int
        M, aligned neighbours per target (paper: 5); the first M of the neighbours table.
    widths : tuple of int
        Widths of the five FC layers of the filter and of each saliency classifier.
    learning_rate, momentum, weight_decay : float
        SGD of both networks (paper: 0.001, 0.9, 0.005).
    iterations : int
        SGD steps of each network (paper: 80 000).
    batch_size : int
        Pairs (filter) or targets (joint model) per step.
    min_error : float
        The e_m clip of Eq. 8.
    joint_threshold : float
        The filter's threshold while training the joint model: targets with a pair above it are
        its rows and it gates their pairs (default 0.005, chosen on ECSSD train among 0.5, 0.005
        and 0.001: ``relearn/mijr.py`` notes).
    residual : bool
        Train the joint model as a correction of the prior: the prior's superpixel logit is added
        to its logits while it learns (``relearn/mijr.py`` notes, *Residual*).
    balanced : bool
        The joint model's losses class-balanced, each class half the loss (the paper's Eq. 6);
        false: plain cross-entropy.
    seed : int
        Draws, initialisations and batch orders.
    """

    prior: str = "u2netp"
    t1: float = param(T1, ge=0, le=1)
    t2: float = param(T2, ge=0, le=1)
    n_positive: int = param(N_POSITIVE, ge=1)
    n_negative: int = param(N_NEGATIVE, ge=1)
    max_targets: int = param(20_000, ge=1)
    context: bool = True
    m: int = param(M_NEIGHBOURS, ge=1)
    widths: tuple[int, ...] = param(FC5_WIDTHS, ge=1)
    learning_rate: float = param(1e-3, gt=0)
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-3, ge=0)
    iterations: int = param(80_000, ge=1)
    batch_size: int = param(64, ge=1)
    min_error: float = param(MIN_ERROR, gt=0, lt=0.5)
    joint_threshold: float = param(JOINT_THRESHOLD, gt=0, lt=1)
    residual: bool = False
    balanced: bool = True
    seed: int = param(0, ge=0)


def _pool_images(inputs, prior: str, m: int):
    """The pool's cached stages -> (stems, PoolImage list); one read of each artifact."""
    feats, slic, pseudo, maps = (inputs[s] for s in ("superpixel_features", "slic", "crf_pseudo_gt", prior))
    gt, alignment = inputs["gt"], inputs["alignment"]
    (table,) = inputs["neighbours"].values()
    # key sets: a membership test of a lazy mapping would load the artifact
    stems = sorted(set(feats) & set(slic) & set(pseudo) & set(maps))
    with_gt = set(gt)
    if not stems:
        raise ValueError(f"relearn_fit: no image has superpixel features, slic labels, a pseudo GT and a {prior} map")
    position = {s: k for k, s in enumerate(stems)}
    row = {str(s): r for s, r in zip(table["stems"], np.asarray(table["index"]))}
    table_stems = [str(s) for s in table["stems"]]
    aligned = set(alignment)
    images, taps, stage = [], None, None
    for s in stems:
        f, ps = feats[s], pseudo[s]
        _check_prior(ps, prior, "relearn_fit")
        if taps is None:
            taps, stage = [str(t) for t in f["taps"]], features_stage(f)
        refs = []
        for j in row.get(s, ()):
            other = table_stems[j] if j >= 0 else None
            if other in position and (s, other) in aligned and len(refs) < m:
                a = alignment[(s, other)]
                refs.append(NeighbourRef(position[other], a["superpixel_match"], a["superpixel_distance"]))
        images.append(PoolImage(features=f["features"], labels=slic[s]["labels"], prior=maps[s]["map"],
                                pseudo_gt=ps["pixels"], gt=gt[s]["mask"] if s in with_gt else None,
                                neighbours=tuple(refs)))
    return stems, images, taps, stage


def run_relearn_fit(inputs, params: RelearnFitParams, ctx):
    """The pool's cached stages and --gt masks -> a relearn model (arrays + meta)."""
    from pipeline.models import model_result

    kwargs = asdict(params)
    prior = kwargs.pop("prior")
    stems, images, taps, features = _pool_images(inputs, prior, params.m)
    t0 = time.perf_counter()
    fit = train_relearn(images, taps=taps, device=ctx.device, **kwargs)
    seconds = time.perf_counter() - t0
    model, record = fit.model, fit.record
    return model_result(model.state_arrays(), {
        "stage": "relearn",
        "features": features,
        "hparams": model.hparams,
        "training": {"seconds": round(seconds, 1), "prior": prior, "parameters": model.n_parameters(),
                     "data": {"images": len(stems), "targets": record["targets"]}, "record": record},
        "validation": {"filter_train_accuracy": round(record["filter_train_accuracy"], 4),
                       "final_joint_loss": round(record["joint_loss"][-1], 5),
                       "pairs_positive": record["pairs_positive"], "pairs_labelled": record["pairs_labelled"]},
    })


@dataclass(frozen=True)
class RelearnParams:
    """Parameters of ``relearn`` (:func:`relearn.relearn_image`; MIJR Sec. IV-C).

    Parameters
    ----------
    prior : str
        The map stage to promote (``priors``: the user's ``--priors`` maps).
    model : str
        ``train`` (fit by ``relearn_fit`` on this pool's ``--gt``), a model file, or a shipped model name
        (``relearn-u2netp-duts`` on ``u2netp_features``; ``relearn-duts`` on ``deep_features``, with
        ``superpixel_features.features=deep_features``).
    sigma_s2 : float
        Width of the spatial weighting's kernel, in normalised coordinates (0, the default: none;
        ``relearn/mijr.py`` notes, *Gain*).
    use_filter : bool
        False: every aligned pair passes (the paper's "without filter" ablation).
    filter_threshold : float
        A pair passes the filter when its trust exceeds this (the default 0.0002 was chosen on
        ECSSD train for an earlier, non-residual model, trained at ``relearn_fit.joint_threshold`` 0.005:
        ``relearn/mijr.py`` notes).
    m : int
        At most this many retrieved images are read (0: the model's M; 1: the "M = 1" ablation).
    max_trusted : float
        Re-learn only superpixels of which the pseudo GT trusts at most this fraction of the
        pixels (1: every superpixel with a pair passing the filter).
    corrections_only : bool
        The re-learned score only where it changes a superpixel's class; elsewhere the prior.
    confident_only : bool
        The re-learned score only where it is further from 0.5 than the prior's superpixel mean.
    merge : str
        ``replace``: the re-learned superpixels take the re-learned score (the paper);
        ``logodds``: its odds and the prior's are multiplied (a residual model's correction:
        ``relearn/mijr.py`` notes, *Residual*).
    gain_reference, gain_min, gain_max : float
        ``logodds`` only (``replace`` ignores them): each image's re-learned log-odds are scaled by
        ``clip(mean |added log-odds| / gain_reference, gain_min, gain_max)`` (``relearn/mijr.py``
        notes, *Gain*); ``gain_min = gain_max = 1``: the plain odds product.
    """

    prior: str = "u2netp"
    model: str = "relearn-u2netp-duts"
    sigma_s2: float = param(RELEARN_SIGMA_S2, ge=0)
    use_filter: bool = True
    filter_threshold: float = param(FILTER_THRESHOLD, gt=0, lt=1)
    m: int = param(0, ge=0)
    max_trusted: float = param(1.0, ge=0, le=1)
    corrections_only: bool = False
    confident_only: bool = False
    merge: str = param("logodds", choices=RELEARN_MERGES)
    gain_reference: float = param(GAIN_REFERENCE, gt=0)
    gain_min: float = param(GAIN_RANGE[0], ge=0)
    gain_max: float = param(GAIN_RANGE[1], ge=0)


def _relearn_model(model):
    from relearn import RelearnModel

    return RelearnModel.from_state(model.arrays, model.hparams)


def _check_features(superpixel_features, model_ref) -> None:
    """A model reads superpixel features pooled from the feature stage it was trained on."""
    pooled, trained_on = features_stage(superpixel_features), model_feature_stage(model_ref.load())
    if pooled != trained_on:
        raise ValueError(f"relearn.model {model_ref.name!r} was trained on superpixel features pooled from "
                         f"{trained_on}, but superpixel_features.features = {pooled!r}: set --set "
                         f"superpixel_features.features={trained_on}")


def run_relearn(inputs, neighbours, params: RelearnParams, ctx):
    _check_features(inputs["superpixel_features"], ctx.model)
    model = ctx.model.build(_relearn_model, ctx.device)
    pseudo = inputs["crf_pseudo_gt"]
    _check_prior(pseudo, params.prior, "relearn")
    m = min(params.m or model.settings["m"], model.settings["m"])
    nbs = []
    for nb in neighbours[:m]:  # the first M retrieved images
        _check_prior(nb["crf_pseudo_gt"], params.prior, "relearn")
        a = nb["alignment"]
        nbs.append(Neighbour(nb["superpixel_features"]["features"], nb["crf_pseudo_gt"]["fractions"],
                             a["superpixel_match"], a["superpixel_distance"]))
    r = relearn_image(model, inputs["superpixel_features"]["features"], inputs["slic"]["labels"],
                      inputs[params.prior]["map"], pseudo["pixels"], nbs, sigma_s2=params.sigma_s2,
                      use_filter=params.use_filter, filter_threshold=params.filter_threshold,
                      max_trusted=params.max_trusted,
                      corrections_only=params.corrections_only, confident_only=params.confident_only,
                      merge=params.merge, gain_reference=params.gain_reference,
                      gain_range=(params.gain_min, params.gain_max), device=ctx.device)
    return {"map": r.map, "relearned": r.relearned}


register(Stage(
    name="superpixel_features", version="2", inputs=("slic",), params=SuperpixelFeaturesParams,
    granularity="image", func=run_superpixel_features, method=superpixel_features_batch, batched=True,
    feature_params=("features",),
    resources=Resources(wants_gpu=True, cpu_batch=4, gpu_batch=32),
    doc="two-scale deep features of each superpixel: its own and its neighbourhood's (MIJR Sec. III-B)",
))
register(Stage(
    name="crf_pseudo_gt", version="1", inputs=("pool", "slic"), params=CrfPseudoGtParams, granularity="image",
    func=run_crf_pseudo_gt, method=crf_pseudo_gt, prior_params=("prior",),
    doc="bi-level CRF pseudo GT of a prior map: CRFa AND CRFc salient, neither background (MIJR Sec. IV-A)",
))
register(Stage(
    name="relearn_fit", version="1",
    inputs=("superpixel_features", "slic", "crf_pseudo_gt", "neighbours", "alignment", "gt"),
    params=RelearnFitParams, granularity="pool", func=run_relearn_fit, method=train_relearn,
    prior_params=("prior",), run_input="gt", resources=Resources(wants_gpu=True),
    doc="train the MIJR instance-pair filter and joint re-learning model on the pool and its --gt masks",
))
register(Stage(
    name="relearn", version="3", inputs=("slic", "superpixel_features", "crf_pseudo_gt"), params=RelearnParams,
    granularity="image", func=run_relearn, method=relearn_image, produces_map=True, prior_params=("prior",),
    learned=ModelSlot(trainer="relearn_fit"), neighbour_inputs=NeighbourInputs("neighbours", NEIGHBOUR_STAGES),
    doc="MIJR re-learning: hard superpixels re-learned from aligned easy ones of similar images",
))
