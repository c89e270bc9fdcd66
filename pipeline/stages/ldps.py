"""LDPS promoter stages (Chen et al. 2020): deep relations learnt without ground truth.

* ``ldps_fit`` (pool) trains the relation network (:func:`promote.train_relation_network`) on the
  pool's backbone taps (the stage named by ``features``: ``deep_features``, the frozen ImageNet
  backbone, or ``u2netp_features``, the decoder of the saliency-trained U^2-Net-small) and the maps
  of its ``prior`` stage alone, self-supervised: the paper's
  mode, which trains on the very images it then refines. ``--set ldps.model=train`` uses it (its
  prior follows ``ldps.prior`` unless ``ldps_fit.prior`` is set), and ``python -m pipeline train
  ldps`` writes a model file.
* ``ldps`` (image) promotes a prior with a trained network (:func:`promote.ldps_promote`); by default
  the model shipped in the package (``ldps-u2netp-duts``, on ``u2netp_features``; ``ldps-duts``
  reads ``deep_features``: ``--set ldps.features=deep_features``), so it runs on any pool.
* ``ldps_single`` (image) fits a fresh network on each image alone and promotes its prior
  (:func:`promote.ldps_single`; the paper's comparison with a dense CRF: lr 0.2, 10 steps).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.registry import FEATURE_STAGES, ModelSlot, Resources, Stage, param, register
from pipeline.stages.features import check_model_features, tap_strides
from promote.ldps import ldps_promote, ldps_single, resolve_taps, train_relation_network
from promote.merge import MERGES

LDPS_FEATURES = "u2netp_features"


@dataclass(frozen=True)
class LdpsFitParams:
    """Parameters of ``ldps_fit`` (:func:`promote.train_relation_network`; Sec. 4.2, 5.3).

    Parameters
    ----------
    prior : str
        The map stage whose maps guide the training pairs (``priors``: the user's ``--priors``).
    features : str
        The feature stage whose taps the network reads (``deep_features`` or ``u2netp_features``).
    taps : tuple of str
        The taps fused; empty: the strides of the paper's MobileNetV2 layers 0, 3, 13, 17 (2, 4, 16,
        32) when the feature stage has them all, else every tap it caches.
    channels : int
        Width of the extractor's output (paper: 32).
    hidden : int
        Width of the discriminator's hidden layers.
    aspp_stride : int
        1: the ASPP runs on the half-resolution fused map (the paper); 2: on it averaged 2 x 2, added
        back (2.6x cheaper to train).
    theta_fg, theta_afg, theta_abg : float
        Guide-mask thresholds (paper: 0.9, 0.8, 0.3).
    optimizer : str
        ``sgd`` (momentum 0.9, the paper's) or ``adam``.
    learning_rate : float
        Initial learning rate of the polynomial schedule.
    weight_decay : float
        L2 weight decay (official code: 0.005).
    epochs : int
        Passes over the pool's images with guidance.
    batch_size : int
        Images per step.
    class_balance : bool
        Average the positive and the negative pairs' losses separately.
    seed : int
        Initialisation, order and flips.
    """

    prior: str = "u2netp"
    features: str = param(LDPS_FEATURES, choices=FEATURE_STAGES)
    taps: tuple[str, ...] = ()
    channels: int = param(32, ge=1)
    hidden: int = param(32, ge=1)
    aspp_stride: int = param(2, choices=(1, 2, 4))
    theta_fg: float = param(0.9, gt=0, lt=1)
    theta_afg: float = param(0.8, gt=0, lt=1)
    theta_abg: float = param(0.3, gt=0, lt=1)
    optimizer: str = param("sgd", choices=("sgd", "adam"))
    learning_rate: float = param(5e-2, gt=0)
    weight_decay: float = param(5e-3, ge=0)
    epochs: int = param(3, ge=1)
    batch_size: int = param(8, ge=1)
    class_balance: bool = False
    seed: int = param(0, ge=0)


def run_ldps_fit(inputs, params: LdpsFitParams, ctx):
    """The pool's cached taps and prior maps -> an LDPS model (arrays + meta); no ground truth."""
    from pipeline.models import model_result

    feats_all, priors = inputs[params.features], inputs[params.prior]
    stems = sorted(s for s in priors if s in feats_all)
    if not stems:
        raise ValueError(f"ldps_fit: no image has both {params.features} taps and a {params.prior} map")
    kwargs = asdict(params)
    kwargs.pop("prior")
    features = kwargs.pop("features")
    taps = tuple(kwargs.pop("taps"))
    feats, maps, strides = [], [], None
    for s in stems:
        art = feats_all[s]  # one read per image
        if strides is None:
            strides = tap_strides(art)
            taps = resolve_taps(taps, list(strides))
        size = int(art["size"])
        feats.append({t: art[t] for t in taps if t in art})
        maps.append(np.asarray(priors[s]["map"], np.float32))
    res = train_relation_network(feats, maps, tap_strides=strides, taps=taps, input_size=size,
                                 device=ctx.device, **kwargs)
    net = res.network
    return model_result(net.state_arrays(), {
        "stage": "ldps",
        "features": features,
        "hparams": net.hparams,
        "training": {"seconds": round(res.seconds, 1), "prior": params.prior,
                     "data": {"images": res.images, "skipped_without_guidance": res.skipped},
                     "epoch_losses": [round(float(v), 5) for v in res.losses], "parameters": net.n_parameters()},
        "validation": {"final_train_loss": round(float(res.losses[-1]), 5)},
    })


@dataclass(frozen=True)
class LdpsParams:
    """Parameters of ``ldps`` (:func:`promote.ldps_promote`; Sec. 4.3, Eq. 10-11).

    Parameters
    ----------
    prior : str
        The map stage to promote (``priors``: the user's ``--priors`` maps).
    features : str
        The feature stage the model reads; must be the one it was trained on.
    model : str
        ``train`` (fit by ``ldps_fit`` on this pool's priors), a model file, or a shipped model name.
    merge : str
        How the discriminator's map is combined with the prior (:func:`promote.merge_with_prior`).
        ``logodds``: their odds multiplied (the default, chosen on ECSSD train,
        ``benchmarks/results/tune_ldps_merge.md``); ``confidence``: the paper's Eq. 10-11, per pixel
        the more confident map; ``none``: the discriminator's map alone; ``mean``: their average.
    """

    prior: str = "u2netp"
    features: str = param(LDPS_FEATURES, choices=FEATURE_STAGES)
    model: str = "ldps-u2netp-duts"
    merge: str = param("logodds", choices=MERGES)


def _relation_network(model):
    from promote.ldps import RelationNetwork

    return RelationNetwork.from_state(model.arrays, model.hparams)


def run_ldps(inputs, params: LdpsParams, ctx):
    check_model_features("ldps", ctx.model, params.features)
    network = ctx.model.build(_relation_network, ctx.device)
    return {"map": ldps_promote(inputs[params.features], inputs[params.prior]["map"], network, merge=params.merge,
                                device=ctx.device)}


@dataclass(frozen=True)
class LdpsSingleParams:
    """Parameters of ``ldps_single`` (:func:`promote.ldps_single`: one image, its own pairs).

    Parameters
    ----------
    prior : str
        The map stage to promote (``priors``: the user's ``--priors`` maps).
    features : str
        The feature stage whose taps the network reads: ``deep_features`` (the ImageNet backbone;
        the pool mode's comparison with U2-Netp's taps was not made for the single-image mode) or
        ``u2netp_features``.
    taps : tuple of str
        The taps fused; empty: as ``ldps_fit.taps``.
    learning_rate : float
        SGD's learning rate (paper: 0.2).
    steps : int
        SGD steps on the image (paper: 10).
    seed : int
        The network's initialisation.
    """

    prior: str = "u2netp"
    features: str = param("deep_features", choices=FEATURE_STAGES)
    taps: tuple[str, ...] = ()
    learning_rate: float = param(0.2, gt=0)
    steps: int = param(10, ge=1)
    seed: int = param(0, ge=0)


def run_ldps_single(inputs, params: LdpsSingleParams, ctx):
    feats = inputs[params.features]
    return {"map": ldps_single(feats, inputs[params.prior]["map"], tap_strides=tap_strides(feats), taps=params.taps,
                               input_size=int(feats["size"]), learning_rate=params.learning_rate,
                               steps=params.steps, seed=params.seed)}


register(Stage(
    name="ldps_fit", version="2", inputs=(), params=LdpsFitParams, granularity="pool",
    func=run_ldps_fit, method=train_relation_network, prior_params=("prior",), feature_params=("features",),
    resources=Resources(wants_gpu=True),
    doc="train the LDPS relation network on the pool's deep features and prior maps (self-supervised)",
))
register(Stage(
    name="ldps", version="3", inputs=(), params=LdpsParams, granularity="image", func=run_ldps,
    produces_map=True, prior_params=("prior",), feature_params=("features",), learned=ModelSlot(trainer="ldps_fit"),
    doc="LDPS promoter: a discriminator of deep relations to confident foreground, merged with the prior",
))
register(Stage(
    name="ldps_single", version="2", inputs=(), params=LdpsSingleParams, granularity="image",
    func=run_ldps_single, method=ldps_single, produces_map=True, prior_params=("prior",), feature_params=("features",),
    doc="LDPS fitted on each image alone (10 SGD steps) and applied to it",
))
