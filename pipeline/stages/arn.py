"""ARN detector stages (Sun, Li & Guan 2018): side outputs, recurrent convolutions, self-attention.

* ``arn_fit`` (pool) trains the ARN decoder (:func:`detect.arn.train_arn`) on the pool's cached
  ``deep_features`` taps and its ``--gt`` masks; ``--set arn.model=train`` uses it, and
  ``python -m pipeline train arn`` writes a model file.
* ``arn`` (image) maps each image's taps to a saliency map (:func:`detect.arn.arn_saliency`) with a
  trained decoder; by default the model shipped in the package, so it runs on any pool. Its maps are
  priors like any detector's (``--set lps.prior=arn``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from detect.arn import arn_saliency, train_arn
from pipeline.registry import ModelSlot, Resources, Stage, param, register
from pipeline.stages.features import tap_strides


@dataclass(frozen=True)
class ArnFitParams:
    """Parameters of ``arn_fit`` (:func:`detect.arn.train_arn`; Sec. 4.3).

    Parameters
    ----------
    side_taps : tuple of str
        ``L2, L3, L4``: the ``deep_features`` taps of strides 2, 4, 8 (VGG16's conv2_2, conv3_3, conv4_3).
    deep_taps : tuple of str
        The taps concatenated into ``S5`` (conv5_3's stride 16; ``s32`` is upsampled to it).
    widths : tuple of int
        Decoder channels at strides 2, 4, 8, 16.
    rcl_steps : int or None
        T, recurrent steps of each RCL unit (None: plain convolutions, the "no RCL" ablation).
    attention : bool
        Self-attention modules (False: the "no attention" ablation).
    attention_keys : int
        Most positions one self-attention attends; above it, it runs on the map average-pooled.
    learning_rate : float
        Adam's learning rate.
    epochs : int
        Passes over the pool.
    batch_size : int
        Images per step.
    flip : bool
        Horizontal-flip augmentation.
    seed : int
        Initialisation, order and flips.
    """

    side_taps: tuple[str, ...] = ("s2", "s4", "s8")
    deep_taps: tuple[str, ...] = ("s16", "s32")
    widths: tuple[int, ...] = (16, 32, 64, 64)
    rcl_steps: int | None = param(3, ge=0)
    attention: bool = True
    attention_keys: int = param(784, ge=1)
    learning_rate: float = param(1e-3, gt=0)
    epochs: int = param(6, ge=1)
    batch_size: int = param(8, ge=1)
    flip: bool = True
    seed: int = param(0, ge=0)


def run_arn_fit(inputs, params: ArnFitParams, ctx):
    """The pool's cached taps and masks -> an ARN model (arrays + meta)."""
    from pipeline.models import model_result

    feats_all, gt = inputs["deep_features"], inputs["gt"]
    stems = sorted(s for s in gt if s in feats_all)
    if not stems:
        raise ValueError("arn_fit: no image has both deep features and a ground-truth mask")
    first = feats_all[stems[0]]
    strides, size = tap_strides(first), int(first["size"])
    kwargs = asdict(params)
    wanted = (*params.side_taps, *params.deep_taps)
    feats = []
    for s in stems:
        art = feats_all[s]  # one read of the artifact per image
        feats.append({t: art[t] for t in wanted if t in art})
    masks = [np.asarray(gt[s]["mask"]) for s in stems]
    res = train_arn(feats, masks, tap_strides=strides, input_size=size, device=ctx.device, **kwargs)
    net = res.network
    return model_result(net.state_arrays(), {
        "stage": "arn",
        "hparams": net.hparams,
        "training": {"seconds": round(res.seconds, 1), "data": {"images": res.images},
                     "epoch_losses": [round(float(v), 5) for v in res.losses], "parameters": net.n_parameters()},
        "validation": {"final_train_loss": round(float(res.losses[-1]), 5)},
    })


@dataclass(frozen=True)
class ArnParams:
    """Parameters of ``arn`` (:func:`detect.arn.arn_saliency`).

    Parameters
    ----------
    model : str
        ``train`` (fit by ``arn_fit`` on this pool's ``--gt``), a model file, or a shipped model name.
    """

    model: str = "arn-duts"


def _arn_network(model):
    from detect.arn import ArnNetwork

    return ArnNetwork.from_state(model.arrays, model.hparams)


def run_arn(batch, params: ArnParams, ctx):
    """Batch of image inputs -> list of ``{"map": (H, W) float32 in [0, 1]}`` at each image's size."""
    network = ctx.model.build(_arn_network, ctx.device)
    feats = [inputs["deep_features"] for inputs in batch]
    shapes = [inputs["pool"]["image"].shape[:2] for inputs in batch]
    maps = arn_saliency(feats, network, shapes, batch_size=max(len(batch), 1), device=ctx.device)
    return [{"map": m.astype(np.float32)} for m in maps]


register(Stage(
    name="arn_fit", version="1", inputs=("deep_features", "gt"), params=ArnFitParams, granularity="pool",
    func=run_arn_fit, method=train_arn, run_input="gt", resources=Resources(wants_gpu=True),
    doc="train the ARN decoder on the pool's deep features and --gt masks (BCE, Adam)",
))
register(Stage(
    name="arn", version="1", inputs=("pool", "deep_features"), params=ArnParams, granularity="image",
    func=run_arn, produces_map=True, batched=True, learned=ModelSlot(trainer="arn_fit"),
    resources=Resources(cpu_batch=8, gpu_batch=32),
    doc="ARN detector: RCL-enhanced side outputs and self-attention decoder (Sun et al. 2018)",
))
