"""Promoter stages: an image plus a prior map (any map stage, or the user's ``--priors``) in, a
better map out.

* ``crf`` wraps :func:`promote.dense_crf` (fully connected CRF, MIJR Eq. 5 kernel): the baseline
  every promoter is judged against.
* ``lps`` wraps :func:`promote.lps_promote` (LPS, Zeng et al. 2018) on the feature taps of each image
  (the stage named by ``lps.features``: ``deep_features``, the frozen ImageNet backbone, or
  ``u2netp_features``, the decoder of the saliency-trained U^2-Net-small); ``lps_fit`` (a pool stage)
  trains its anchor network with :func:`promote.train_anchor_network` on the pool's ``--gt`` masks
  (``--set lps.model=train``, or ``python -m pipeline train lps``) on the same features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.registry import FEATURE_STAGES, ModelSlot, Stage, param, register
from pipeline.stages.features import check_model_features, tap_strides
from promote import dense_crf, lps_promote, train_anchor_network
from promote.merge import MERGES

#: The feature stage of the default LPS model (``lps-u2netp-duts``), and so of ``lps_fit``'s default.
LPS_FEATURES = "u2netp_features"


@dataclass(frozen=True)
class CrfParams:
    """Parameters of ``crf`` (:func:`promote.dense_crf`).

    Parameters
    ----------
    prior : str
        The map stage to refine (``priors``: the user's ``--priors`` maps).
    theta_alpha : float
        Proximity width of the appearance kernel, in pixels.
    theta_beta : float
        Colour width of the appearance kernel, in RGB units.
    theta_gamma : float
        Width of the smoothness kernel, in pixels.
    appearance_weight : float
        Weight w1 of the appearance kernel.
    smoothness_weight : float
        Weight w2 of the smoothness kernel.
    n_iterations : int
        Mean-field iterations.
    """

    prior: str = "u2netp"
    theta_alpha: float = param(80.0, gt=0)
    theta_beta: float = param(13.0, gt=0)
    theta_gamma: float = param(3.0, gt=0)
    appearance_weight: float = param(10.0, ge=0)
    smoothness_weight: float = param(3.0, ge=0)
    n_iterations: int = param(5, ge=0)


def run_crf(inputs, params: CrfParams, ctx):
    kwargs = asdict(params)
    prior = inputs[kwargs.pop("prior")]["map"]
    return {"map": dense_crf(inputs["pool"]["image"], prior, **kwargs)}


register(Stage(
    name="crf", version="1", inputs=("pool",), params=CrfParams, granularity="image", func=run_crf,
    method=dense_crf, produces_map=True, prior_params=("prior",),
    doc="dense-CRF refinement of a prior map (the baseline promoter; MIJR Eq. 5 kernel)",
))


# --------------------------------------------------------------------------- LPS


@dataclass(frozen=True)
class LpsFitParams:
    """Parameters of ``lps_fit`` (:func:`promote.train_anchor_network`; Alg. 1).

    Parameters
    ----------
    channels : int
        C: channels of each tap on the embedding grid (paper: 64).
    dim : int
        D: embedding dimension (paper: 512).
    region_embedding : str
        ``conv`` or ``fc`` (Fig. 4; paper's choice: conv).
    grid_stride : int
        Stride of the embedding grid on the network input (4: 56 x 56 at 224, 80 x 80 at 320;
        the paper: 1).
    loss_stride : int
        Stride on the network input at which Eq. 4 is evaluated: the pixel embedding is resized
        (bilinear) to it (2: 112 x 112 at 224; the grid stride: on the grid; the paper: 1).
    flip_probability : float
        p: labels flipped when the training anchors are made (paper: 0.05).
    learning_rate : float
        Adam's learning rate (paper: 1e-3).
    epochs : int
        Passes over the training pool.
    batch_size : int
        Images per step.
    seed : int
        Initialisation, order and flips.
    features : str
        The feature stage the network is trained on: ``u2netp_features`` (the decoder of the
        saliency-trained U^2-Net-small) or ``deep_features`` (the frozen ImageNet backbone).
    """

    channels: int = param(32, ge=1)
    dim: int = param(64, ge=1)
    region_embedding: str = param("conv", choices=("conv", "fc"))
    grid_stride: int = param(4, choices=(2, 4, 8))
    loss_stride: int = param(2, choices=(1, 2, 4, 8))
    flip_probability: float = param(0.05, ge=0, lt=0.5)
    learning_rate: float = param(1e-3, gt=0)
    epochs: int = param(8, ge=1)
    batch_size: int = param(8, ge=1)
    seed: int = param(0, ge=0)
    features: str = param(LPS_FEATURES, choices=FEATURE_STAGES)


def run_lps_fit(inputs, params: LpsFitParams, ctx):
    """The pool's cached taps and masks -> an LPS model (arrays + meta)."""
    from pipeline.models import model_result
    from promote import train_anchor_network

    feats_all, gt = inputs[params.features], inputs["gt"]
    stems = sorted(s for s in gt if s in feats_all)
    if not stems:
        raise ValueError(f"lps_fit: no image has both {params.features} taps and a ground-truth mask")
    first = feats_all[stems[0]]
    strides = tap_strides(first)
    taps = list(strides)
    feats = []
    for s in stems:
        art = feats_all[s]  # one read of the artifact per image (the mapping loads on access)
        feats.append({t: art[t] for t in taps})
    masks = [np.asarray(gt[s]["mask"]) for s in stems]
    kwargs = asdict(params)
    features = kwargs.pop("features")
    res = train_anchor_network(feats, masks, tap_strides=strides, input_size=int(first["size"]), **kwargs)
    net = res.network
    return model_result(net.state_arrays(), {
        "stage": "lps",
        "features": features,
        "hparams": net.hparams,
        "training": {"seconds": round(res.seconds, 1), "data": {"images": res.images},
                     "epoch_losses": [round(float(v), 5) for v in res.losses], "parameters": net.n_parameters()},
        "validation": {"final_train_loss": round(float(res.losses[-1]), 5)},
    })


@dataclass(frozen=True)
class LpsParams:
    """Parameters of ``lps`` (:func:`promote.lps_promote`; Alg. 2).

    Parameters
    ----------
    prior : str
        The map stage to promote (``priors``: the user's ``--priors`` maps).
    model : str
        ``train`` (fit by ``lps_fit`` on this pool's ``--gt``), a model file, or a shipped model name.
    iterations : int
        T of Alg. 2 (paper: 1).
    merge : str
        ``logodds``: the odds of the prior and of Y(T) multiplied, ``sigmoid(logit(prior) +
        logit(Y(T)))`` (chosen on ECSSD train, ``benchmarks/results/tune_lps_merge_logodds.md``);
        ``confidence``: per pixel the more confident of the two (LDPS's Eq. 11); ``none``: Y(T)
        alone (the paper); ``mean``: their average.
    features : str
        The feature stage the model reads; must be the one it was trained on (``u2netp_features``
        for ``lps-u2netp-duts``, the default, chosen on ECSSD train,
        ``benchmarks/results/tune_lps_u2netp.md``; ``deep_features`` for ``lps-duts``).
    """

    prior: str = "u2netp"
    model: str = "lps-u2netp-duts"
    iterations: int = param(1, ge=1)
    merge: str = param("logodds", choices=MERGES)
    features: str = param(LPS_FEATURES, choices=FEATURE_STAGES)


def _anchor_network(model):
    from promote import AnchorNetwork

    return AnchorNetwork.from_state(model.arrays, model.hparams)


def run_lps(inputs, params: LpsParams, ctx):
    from promote import lps_promote

    check_model_features("lps", ctx.model, params.features)
    network = ctx.model.build(_anchor_network, ctx.device)
    feats = inputs[params.features]
    return {"map": lps_promote(feats, inputs[params.prior]["map"], network, iterations=params.iterations,
                               merge=params.merge)}


register(Stage(
    name="lps_fit", version="2", inputs=("gt",), params=LpsFitParams, granularity="pool",
    func=run_lps_fit, method=train_anchor_network, run_input="gt", feature_params=("features",),
    doc="train the LPS anchor network on the pool's feature taps and --gt masks (Alg. 1)",
))
register(Stage(
    name="lps", version="4", inputs=(), params=LpsParams, granularity="image", func=run_lps,
    method=lps_promote, produces_map=True, prior_params=("prior",), feature_params=("features",),
    learned=ModelSlot(trainer="lps_fit"),
    doc="LPS promoter: nearest-anchor classification in a learned metric space (Zeng et al. 2018)",
))
