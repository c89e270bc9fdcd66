"""LDPS: learning deep relations to promote saliency detection (Chen et al., AAAI 2020).

A feature extractor ``E`` and a discriminator ``F`` are trained jointly, without ground truth, to
tell pairs of deep features that belong together (a confident-foreground prototype and an
approximately salient pixel) from pairs that do not (the prototype and an approximately background
pixel). That maximises a Jensen-Shannon estimate of the mutual information between foreground
features (Eq. 1-5). At test time the discriminator's answer for (prototype, pixel) is a new saliency
map, merged with the prior by confidence (Eq. 10-11; the stage's default merge multiplies the two
maps' odds instead, see *Merge*).

Equations implemented
---------------------
* Sec. 4.1, multi-scale features: backbone taps at four depths, bilinearly upsampled to half the
  input size, concatenated, and an ASPP module (Chen et al., DeepLab) reducing them to 32 channels.
  The paper's MobileNetV2 layers 0, 3, 13 and 17 have strides 2, 4, 16 and 32 and 32 + 24 + 96 + 320
  = 472 channels; the EfficientNet-Lite0 taps of the same strides (``s2, s4, s16, s32``) have
  16 + 24 + 112 + 320 = 472 channels too.
* Sec. 4.2, guide masks from the prior ``s``: FG ``s > theta_fg = 0.9``, AFG ``s > theta_afg = 0.8``,
  ABG ``s < theta_abg = 0.3``.
* Eq. 7: the prototype ``F_fg = sum_i p_i f_i`` over FG, ``p_i = s_i / sum_FG s``.
* Eq. 8-9: positive pairs ``u = [F_fg, f_afg]``, negative pairs ``v = [F_fg, f_abg]``.
* Eq. 5-6: the JS lower bound is the negated binary cross-entropy of ``sigma(F(pair))`` with label 1
  for positive and 0 for negative pairs; minimised jointly over the extractor head and ``F``.
* Sec. 4.3: ``s_hat_i = sigma(F([F_fg, f_i]))`` for every location ``i``.
* Eq. 10: confidence ``c = s if s > 0.5 else 1 - s``. Eq. 11: the prior's value where its confidence
  is higher (``c_bar > c_hat``), the new map's otherwise (ties go to the new map, as Eq. 11 reads).

Decisions the paper leaves open, or that this machine forces
------------------------------------------------------------
* **Backbone.** Frozen, not a fine-tuned MobileNetV2; only the fusion, ASPP and discriminator
  learn. With a frozen backbone the paper's "5e-3 for the rest components" is the learning rate.
  The taps are those of a feature stage (the ``features`` parameter of the LDPS stages): the
  decoder of the saliency-trained U^2-Net-small (``u2netp_features``: ``s4, s8, s16, s32`` at a
  320 x 320 input, 64 channels each, so the fused grid is 80 x 80; it caches no stride-2 tap, so
  :func:`resolve_taps` takes the four it has) or the ImageNet EfficientNet-Lite0
  (``deep_features``: the paper's strides ``s2, s4, s16, s32`` at 224 x 224, a 112 x 112 grid).
  The paper's backbone is trained for saliency too (fine-tuned on the task), which a frozen
  ImageNet network is not. On ECSSD train (500 images, pool mode, defaults;
  ``benchmarks/results/tune_ldps_u2netp.md`` and ``tune_ldps_deep.md``) the U^2-Net taps give
  adaptive F / MAE 0.9123 / 0.0402 on u2netp priors (ImageNet taps 0.9123 / 0.0408), 0.7176 /
  0.2187 on contrast priors (0.6179 / 0.2238) and 0.8523 / 0.0521 on the shipped ARN detector's
  priors (0.8386 / 0.0641; prior 0.8076 / 0.0750), and train faster (a coarser grid).
* **Fusion.** "Upsample, concatenate, 1 x 1 convolution" is computed as one 1 x 1 convolution per
  tap at the tap's own resolution, upsampled and summed: bilinear upsampling and a 1 x 1 convolution
  commute, so this is the same function at a fraction of the cost (no 472-channel map at half
  resolution is ever built).
* **ASPP.** On the 32-channel fused map: a 1 x 1 branch, three 3 x 3 branches with dilations 6, 12,
  18 and the image-level pooling branch, 32 channels each, concatenated and projected to 32 by a
  1 x 1 convolution; PReLU after every convolution. No batch normalisation: the single-image mode
  trains on one image, where batch statistics are those of the image being refined.
* **ASPP resolution** (``aspp_stride``). 1 is the paper's: ASPP on the half-resolution fused map.
  2 runs the ASPP on that map averaged over 2 x 2 cells, upsamples its output bilinearly and adds
  it to the fused map, so the fine taps' detail stays at half resolution. A training step costs
  2.6x less with 2 (0.18 s against 0.46 s per image, batch 8, one thread, measured back to back),
  which is what lets the shipped model train on 3000 images on two CPU cores. On ECSSD train (500
  images, u2netp priors, pool mode; ``benchmarks/results/tune_ldps.md``) the two give the same maps
  within noise: adaptive F 0.9125 / MAE 0.0406 with 1 (98 s of training) against 0.9123 / 0.0408
  with 2 (54 s).
* **Discriminator.** "Five convolutional layers" with a sigmoid output; widths are not given. Five
  1 x 1 convolutions 64 -> 32 -> 32 -> 32 -> 32 -> 1 with PReLU between (the input is the
  64-channel pair). The first layer is split as ``W_a F_fg + W_b f_i`` so the prototype's half is
  computed once per image instead of at every location (the same function).
* **Loss.** Mean BCE over all AFG and ABG locations together, as the official code's masked BCE
  (``class_balance=True`` averages the two classes separately instead). Measured on ECSSD train
  (500 images, u2netp priors, pool mode; ``benchmarks/tune_ldps.py``): unweighted gives adaptive F
  0.9123 / MAE 0.0408 against 0.8996 / 0.0411 balanced (prior: 0.9039 / 0.0413).
* **Step size.** Every step's gradient norm is clipped to 1: without batch normalisation the paper's
  single-image learning rate of 0.2 diverges to NaN on raw taps (measured on the synthetic test
  images), and clipping keeps the paper's learning rates usable.
* **Optimiser.** SGD, momentum 0.9, weight decay 5e-3, polynomial schedule of power 0.9 (the paper:
  SGD with a polynomial learning rate; official code: momentum 0.9, weight decay 0.005, power 0.9),
  initial learning rate 0.05 and 3 epochs. The paper's 5e-3 for the non-backbone layers is meant
  for 20k iterations; in the 200 steps of 6 epochs over 300 images it left the training loss at 0.67
  (log 2 = 0.69; measured with PyTorch's default initialisation, before He initialisation was added,
  and not measured again). On ECSSD train (as above) SGD at 0.05 gives adaptive F 0.9123 / MAE 0.0408 and
  Adam at 1e-3 0.9119 / 0.0409: equal within noise, so the paper's optimiser, SGD, is the default.
  More steps (the paper's 20k iterations are about 40 epochs of batch 1 over 500 images) do not
  pay: 10 epochs give u2netp 0.9141 / 0.0402 (batch 2: 0.9143 / 0.0397) against 0.9123 / 0.0408
  with 3, and lower the contrast prior's adaptive F (0.618 with 3 epochs, 0.561 with 10, 0.543 at
  batch 2; ``benchmarks/results/tune_ldps_steps.md``) for 3.6-6.8x the training time.
  Single-image mode: SGD at
  lr 0.2 for 10 steps from a seeded initialisation (the paper's DenseCRF comparison).
* **Images without guidance.** Training skips an image whose prior has no FG location or no ABG
  location (no prototype or no negative pair). At inference a prior with no FG location is returned
  unchanged with a warning (there is no prototype to compare with), never NaN.
* **Grid.** The masks and the prior for the pairs are the prior resized by area to the fused grid;
  the new map is resized bilinearly to the prior's size before the Eq. 11 merge, so the merge keeps
  the prior's full-resolution detail where the prior is the more confident.
* **Merge** (``merge``; stage ``ldps`` version 3). Eq. 10-11 keep per pixel whichever map is
  further from 0.5, so a strong prior is kept nearly everywhere (it is confident nearly
  everywhere) and the discriminator's evidence is dropped even where it disagrees. ``logodds``
  (:func:`promote.merge_with_prior`, shared with LPS) reads the two maps as independent estimates
  of P(salient) and multiplies their odds, ``sigmoid(logit(prior) + logit(new))``, so agreeing
  evidence adds up and opposite evidence of equal strength cancels. On the first 200 stems of ECSSD
  ``train.txt`` with ``ldps-u2netp-duts`` (``benchmarks/results/tune_ldps_merge.md``), max F /
  adaptive F / MAE, ``logodds`` against Eq. 10-11: u2netp 0.943 / 0.929 / 0.026 against 0.942 /
  0.924 / 0.028; contrast 0.923 / 0.912 / 0.049 against 0.909 / 0.906 / 0.047; the ARN detector's
  maps 0.929 / 0.910 / 0.031 against 0.926 / 0.901 / 0.033. Better on eleven of the twelve scores
  (S-measure included; worse on contrast's MAE), so the stage's default is ``logodds``, a departure
  from the paper; ``merge = "confidence"`` is the paper's output. :func:`ldps_single` keeps
  Eq. 10-11 (not measured for the single-image mode). The choice was measured with the shipped
  model only. Test splits, reported once (``benchmarks/results/ldps_u2netp_logodds.md``), adaptive
  F / MAE, ``logodds`` against Eq. 10-11: with the shipped model, adaptive F is higher on all nine
  priors and MAE lower on six and higher on three (SOD BSCA by 0.0005, ECSSD contrast and gradsal
  by 0.002). For example SOD PiCANet 0.791 / 0.102 -> 0.819 / 0.102 against 0.796 / 0.104; DSS
  0.795 / 0.121 -> 0.802 / 0.118 against 0.798 / 0.119; ECSSD contrast 0.633 / 0.196 -> 0.897 /
  0.068 against 0.878 / 0.066. In pool mode (``model=train``,
  trained on the test images' own priors, the paper's protocol) it is better on the deep priors
  (SOD PiCANet -> 0.815 / 0.099 against 0.794 / 0.101) but worse on the classical ones, whose pool
  models are weak either way (SOD GS -> 0.583 / 0.241 against 0.627 / 0.239; ECSSD contrast ->
  0.648 / 0.209 against 0.740 / 0.205).

References
----------
C. Chen, X. Sun, Y. Hua, J. Dong, H. Xv, "Learning deep relations to promote saliency detection",
AAAI 2020 (``../shared/papers/ldps-deep-relations-mutual-information.txt``). L.-C. Chen et al.,
"Rethinking atrous convolution for semantic image segmentation" (ASPP), 2017.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from promote import _taps
from promote._taps import check_features as _check_features
from promote._taps import feature_tensors as _feature_tensors
from promote._taps import resize as _resize
from promote.merge import MERGES, confidence, confidence_merge, merge_with_prior
from superpixels.validation import check_int, check_map

__all__ = [
    "DEFAULT_TAPS",
    "LdpsTraining",
    "RelationNetwork",
    "confidence",
    "confidence_merge",
    "guide_masks",
    "ldps_promote",
    "ldps_single",
    "resolve_taps",
    "train_relation_network",
    "training_pairs",
    "weighted_prototype",
]

DEFAULT_TAPS = ("s2", "s4", "s16", "s32")  # strides of MobileNetV2 layers 0, 3, 13, 17
THETA_FG, THETA_AFG, THETA_ABG = 0.9, 0.8, 0.3
GRAD_CLIP = 1.0  # gradient-norm bound of every training step


def _torch():
    import torch

    return torch


def resolve_taps(taps: Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """The taps a network fuses: ``taps`` when given; when empty, the paper's strides
    (:data:`DEFAULT_TAPS`) if ``available`` holds them all, otherwise every available tap (the
    ``u2netp_features`` stage caches ``s4, s8, s16, s32``: no stride-2 tap)."""
    if taps:
        return tuple(taps)
    available = tuple(available)
    if all(t in available for t in DEFAULT_TAPS):
        return DEFAULT_TAPS
    if not available:
        raise ValueError("taps: the features hold no tap")
    return available


# --------------------------------------------------------------------------- pure numpy parts


def guide_masks(prior: np.ndarray, theta_fg: float = THETA_FG, theta_afg: float = THETA_AFG,
                theta_abg: float = THETA_ABG) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FG, AFG and ABG masks of Sec. 4.2 (``s > theta_fg``, ``s > theta_afg``, ``s < theta_abg``)."""
    s = np.asarray(prior, np.float32)
    if not (0.0 <= theta_abg <= theta_afg <= theta_fg <= 1.0):
        raise ValueError(f"thresholds: expected 0 <= theta_abg <= theta_afg <= theta_fg <= 1, "
                         f"got {theta_abg}, {theta_afg}, {theta_fg}")
    return s > theta_fg, s > theta_afg, s < theta_abg


def weighted_prototype(features: np.ndarray, prior: np.ndarray, fg_mask: np.ndarray) -> np.ndarray:
    """Eq. 7: ``F_fg = sum_i p_i f_i`` over the FG mask, ``p_i = s_i / sum s`` (features ``(C, h, w)``)."""
    w = np.where(fg_mask, np.asarray(prior, np.float64), 0.0)
    total = w.sum()
    if total <= 0:
        raise ValueError("weighted_prototype: the FG mask is empty (no location above theta_fg)")
    return np.tensordot(np.asarray(features, np.float64), w / total, axes=([1, 2], [0, 1])).astype(np.float32)


def training_pairs(features: np.ndarray, prior: np.ndarray, theta_fg: float = THETA_FG,
                   theta_afg: float = THETA_AFG, theta_abg: float = THETA_ABG) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 8-9: positive pairs ``[F_fg, f_afg]`` and negative pairs ``[F_fg, f_abg]`` of one image.

    ``features`` is ``(C, h, w)`` and ``prior`` ``(h, w)`` on the same grid. Returns ``(P, 2C)`` and
    ``(N, 2C)`` arrays, one row per AFG / ABG location in row-major order. (Training evaluates the
    discriminator on every location at once and masks the loss, which is the same set of pairs.)
    """
    fg, afg, abg = guide_masks(prior, theta_fg, theta_afg, theta_abg)
    proto = weighted_prototype(features, prior, fg)  # Eq. 7
    f = np.asarray(features, np.float32)
    pixels = f.reshape(f.shape[0], -1).T
    def pairs(mask):
        sel = pixels[mask.ravel()]
        return np.concatenate([np.broadcast_to(proto, (len(sel), proto.size)), sel], axis=1)
    return pairs(afg), pairs(abg)


# --------------------------------------------------------------------------- the network


def _build_network(tap_channels: Sequence[int], channels: int, hidden: int, aspp_stride: int = 1):
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class Fusion(nn.Module):
        """Per-tap 1 x 1 convolutions, upsampled to the finest tap and summed (= concat + 1 x 1)."""

        def __init__(self):
            super().__init__()
            self.proj = nn.ModuleList(nn.Conv2d(c, channels, 1, bias=(i == 0)) for i, c in enumerate(tap_channels))
            self.act = nn.PReLU(channels)

        def forward(self, feats):
            size = feats[0].shape[-2:]
            out = self.proj[0](feats[0])
            for f, p in zip(feats[1:], self.proj[1:]):
                out = out + F.interpolate(p(f), size=size, mode="bilinear", align_corners=False)
            return self.act(out)

    class Aspp(nn.Module):
        def __init__(self):
            super().__init__()
            c = channels
            self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 1), nn.PReLU(c))] + [
                nn.Sequential(nn.Conv2d(c, c, 3, padding=d, dilation=d), nn.PReLU(c)) for d in (6, 12, 18)])
            self.pool = nn.Sequential(nn.Conv2d(c, c, 1), nn.PReLU(c))
            self.project = nn.Sequential(nn.Conv2d(5 * c, c, 1), nn.PReLU(c))

        def forward(self, x):
            outs = [b(x) for b in self.branches]
            pooled = self.pool(x.mean(dim=(2, 3), keepdim=True))
            outs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
            return self.project(torch.cat(outs, dim=1))

    class Discriminator(nn.Module):
        """Five 1 x 1 convolutions over the pair [prototype, pixel]; the first split in two halves."""

        def __init__(self):
            super().__init__()
            self.first_proto = nn.Linear(channels, hidden)
            self.first_pixel = nn.Conv2d(channels, hidden, 1, bias=False)
            layers = []
            for _ in range(3):
                layers += [nn.PReLU(hidden), nn.Conv2d(hidden, hidden, 1)]
            layers += [nn.PReLU(hidden), nn.Conv2d(hidden, 1, 1)]
            self.rest = nn.Sequential(*layers)

        def forward(self, proto, pixels):
            """(B, C) prototypes, (B, C, h, w) features -> (B, h, w) logits of F([F_fg, f_i])."""
            x = self.first_pixel(pixels) + self.first_proto(proto)[:, :, None, None]
            return self.rest(x)[:, 0]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fusion = Fusion()
            self.aspp = Aspp()
            self.discriminator = Discriminator()

        def extract(self, feats):
            fused = self.fusion(feats)
            if aspp_stride == 1:
                return self.aspp(fused)
            # ASPP on the fused map averaged over aspp_stride x aspp_stride cells, brought back to
            # the fused grid and added to it (the fine taps' detail is kept by the sum).
            coarse = self.aspp(F.avg_pool2d(fused, aspp_stride))
            return fused + F.interpolate(coarse, size=fused.shape[-2:], mode="bilinear", align_corners=False)

    net = Net()
    # He initialisation for PReLU (slope 0.25): PyTorch's default shrinks the signal by about
    # sqrt(3) per layer, and through the eight layers of extractor head + discriminator the
    # gradients at the start of training nearly vanish (measured: the loss stays at log 2).
    _taps.he_init(net, (nn.Conv2d, nn.Linear), slope=0.25)
    return net


@dataclass
class RelationNetwork(_taps.ArraysModel):
    """The LDPS extractor head and discriminator, and their hyper-parameters (plain arrays, no pickle).

    Attributes
    ----------
    module : torch.nn.Module
        ``fusion`` and ``aspp`` (the extractor head ``E``), ``discriminator`` (``F``).
    hparams : dict
        ``taps``, ``tap_channels``, ``tap_strides``, ``channels``, ``hidden``, ``input_size``, the
        three thresholds.
    """

    module: object
    hparams: dict

    @classmethod
    def create(cls, *, taps: Sequence[str], tap_channels: Sequence[int], tap_strides: Sequence[int],
               channels: int = 32, hidden: int = 32, aspp_stride: int = 1, input_size: int = 224,
               theta_fg: float = THETA_FG,
               theta_afg: float = THETA_AFG, theta_abg: float = THETA_ABG, seed: int = 0) -> "RelationNetwork":
        """A freshly initialised network for the given taps (seeded); the finest tap sets the grid."""
        if not (len(taps) == len(tap_channels) == len(tap_strides)) or not taps:
            raise ValueError("taps, tap_channels, tap_strides: expected equal, non-zero lengths")
        order = np.argsort(tap_strides, kind="stable")
        guide_masks(np.zeros((1, 1)), theta_fg, theta_afg, theta_abg)  # validates the thresholds
        hp = {"taps": [str(taps[i]) for i in order], "tap_channels": [int(tap_channels[i]) for i in order],
              "tap_strides": [int(tap_strides[i]) for i in order], "channels": int(channels),
              "hidden": int(hidden), "aspp_stride": int(aspp_stride), "input_size": int(input_size),
              "theta_fg": float(theta_fg),
              "theta_afg": float(theta_afg), "theta_abg": float(theta_abg)}
        torch = _torch()
        torch.manual_seed(int(seed))
        if aspp_stride not in (1, 2, 4):
            raise ValueError(f"aspp_stride: expected 1, 2 or 4, got {aspp_stride!r}")
        return cls(_build_network(hp["tap_channels"], hp["channels"], hp["hidden"], hp["aspp_stride"]), hp)

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "RelationNetwork":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        hp = dict(hparams)
        net = cls.create(taps=hp["taps"], tap_channels=hp["tap_channels"], tap_strides=hp["tap_strides"],
                         channels=hp["channels"], hidden=hp["hidden"], aspp_stride=hp.get("aspp_stride", 1),
                         input_size=hp["input_size"],
                         theta_fg=hp["theta_fg"], theta_afg=hp["theta_afg"], theta_abg=hp["theta_abg"])
        _taps.load_arrays(net.module, arrays)
        return net

    @property
    def grid(self) -> tuple[int, int]:
        side = self.hparams["input_size"] // self.hparams["tap_strides"][0]
        return side, side


def _prototypes(torch, emb, prior_grid, fg):
    """Eq. 7 in torch: (B, C, h, w), (B, h, w) priors, (B, h, w) FG masks -> (B, C)."""
    w = prior_grid * fg
    w = w / w.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return (emb * w[:, None]).sum(dim=(2, 3))


def _pair_loss(torch, logits, pos, neg, class_balance: bool):
    """Eq. 5-6: BCE with label 1 on AFG (positive pairs) and 0 on ABG (negative pairs)."""
    F = torch.nn.functional
    lp = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    ln = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    if class_balance:
        per_image = 0.5 * ((lp * pos).sum(dim=(1, 2)) / pos.sum(dim=(1, 2)).clamp_min(1)
                           + (ln * neg).sum(dim=(1, 2)) / neg.sum(dim=(1, 2)).clamp_min(1))
        return per_image.mean()
    return ((lp * pos).sum() + (ln * neg).sum()) / (pos.sum() + neg.sum()).clamp_min(1)


def _has_guidance(prior_grid: np.ndarray, hp: Mapping) -> bool:
    fg, _, abg = guide_masks(prior_grid, hp["theta_fg"], hp["theta_afg"], hp["theta_abg"])
    return bool(fg.any() and abg.any())


# --------------------------------------------------------------------------- inference (Sec. 4.3)


def _relation_maps(network: RelationNetwork, batch_feats, priors_grid, device="cpu") -> np.ndarray:
    """Discriminator output ``sigma(F([F_fg, f_i]))`` on the grid for a batch (priors have FG)."""
    torch = _torch()
    hp = network.hparams
    net = network.module.eval()
    with torch.inference_mode():
        emb = net.extract(_feature_tensors(batch_feats, hp, device=device))
        pg = torch.from_numpy(np.ascontiguousarray(priors_grid, dtype=np.float32)).to(device)
        proto = _prototypes(torch, emb, pg, (pg > hp["theta_fg"]).float())
        return torch.sigmoid(net.discriminator(proto, emb)).cpu().numpy()


def ldps_promote_batch(features: Sequence[Mapping[str, np.ndarray]], priors: Sequence[np.ndarray],
                       network: RelationNetwork, *, merge: str = "confidence",
                       device: str = "cpu") -> list[np.ndarray]:
    """:func:`ldps_promote` for several images at once (one batched forward pass)."""
    if merge not in MERGES:
        raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")
    hp = network.hparams
    priors = [check_map(p, "prior") for p in priors]
    for f in features:
        _check_features(f, hp)
    grids = [_resize(p, network.grid, area=True) for p in priors]
    usable = [i for i, g in enumerate(grids) if (g > hp["theta_fg"]).any()]
    out = [p.astype(np.float32) for p in priors]
    for i in range(len(priors)):
        if i not in usable:
            warnings.warn(f"the prior has no location above theta_fg = {hp['theta_fg']}: "
                          "returned unchanged (no confident foreground to relate to)", stacklevel=2)
    if usable:
        maps = _relation_maps(network, [features[i] for i in usable], np.stack([grids[i] for i in usable]), device)
        for m, i in zip(maps, usable):
            new = np.clip(_resize(m, priors[i].shape, area=False), 0.0, 1.0)
            out[i] = merge_with_prior(priors[i], new.astype(np.float32), merge)  # "confidence": Eq. 10-11
    return out


def ldps_promote(features: Mapping[str, np.ndarray], prior: np.ndarray, network: RelationNetwork, *,
                 merge: str = "confidence", device: str = "cpu") -> np.ndarray:
    """Promote a prior saliency map with a trained relation network (Sec. 4.3, Eq. 10-11).

    Parameters
    ----------
    features : dict of str -> (C, h, w) ndarray
        The backbone taps of the image (the ``deep_features`` stage's result), those of the model.
    prior : (H, W) ndarray of float
        The prior map in [0, 1] at the image's size.
    network : RelationNetwork
        A trained network (:func:`train_relation_network` or :meth:`RelationNetwork.from_state`).
    merge : {"confidence", "logodds", "none", "mean"}
        How the discriminator's map is combined with the prior (:func:`promote.merge_with_prior`):
        ``confidence`` is the paper's Eq. 10-11; the others are the alternatives measured in the
        module notes (*Merge*).
    device : str
        Where the network runs.

    Returns
    -------
    (H, W) ndarray of float32
        The merged map in [0, 1]; the prior itself (and a warning) when it has no FG location.
    """
    return ldps_promote_batch([features], [prior], network, merge=merge, device=device)[0]


# --------------------------------------------------------------------------- training (Sec. 4.2, 5.3)


@dataclass(frozen=True)
class LdpsTraining:
    """What :func:`train_relation_network` did: the network and its training record."""

    network: RelationNetwork
    losses: np.ndarray  # mean loss per epoch (or per step in single-image mode)
    seconds: float
    images: int  # images with guidance (used)
    skipped: int  # images without an FG or an ABG location


def _fit(network: RelationNetwork, features, grids, *, optimizer: str, learning_rate: float, steps_or_epochs: int,
         batch_size: int, momentum: float, weight_decay: float, poly_power: float, class_balance: bool,
         augment: bool, per_step: bool, rng, device="cpu", progress=None):
    torch = _torch()
    hp = network.hparams
    net = network.module.to(device).train()
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {optimizer!r}")
    n = len(features)
    steps_per_epoch = 1 if per_step else -(-n // batch_size)
    total_steps = steps_or_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: max(0.0, 1.0 - k / total_steps) ** poly_power)
    losses = []
    for epoch in range(steps_or_epochs):
        order = np.arange(n) if per_step else rng.permutation(n)
        total, count = 0.0, 0
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            flip = rng.random(len(idx)) < 0.5 if augment else None
            feats = _feature_tensors([features[i] for i in idx], hp, flip=flip, device=device)
            pg_np = grids[idx].copy()
            if flip is not None:
                pg_np[flip] = pg_np[flip][..., ::-1]
            pg = torch.from_numpy(np.ascontiguousarray(pg_np)).to(device)
            fg = (pg > hp["theta_fg"]).float()
            pos = (pg > hp["theta_afg"]).float()
            neg = (pg < hp["theta_abg"]).float()
            emb = net.extract(feats)
            proto = _prototypes(torch, emb, pg, fg)  # Eq. 7, gradients flow into E
            logits = net.discriminator(proto, emb)  # Eq. 8-9 pairs, all locations at once
            loss = _pair_loss(torch, logits, pos, neg, class_balance)
            opt.zero_grad()
            loss.backward()
            # Without batch normalisation the raw taps (ReLU6 activations, up to 472 channels) make
            # the paper's large SGD steps (0.2 in single-image mode) diverge; clipping the gradient
            # norm bounds each step instead of shrinking the learning rate.
            torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / count)
        if progress is not None:
            progress(epoch, losses[-1])
    net.eval()
    return np.array(losses)


def train_relation_network(
    features: Sequence[Mapping[str, np.ndarray]],
    priors: Sequence[np.ndarray],
    *,
    tap_strides: Mapping[str, int],
    taps: Sequence[str] = (),
    input_size: int = 224,
    channels: int = 32,
    hidden: int = 32,
    aspp_stride: int = 2,
    theta_fg: float = THETA_FG,
    theta_afg: float = THETA_AFG,
    theta_abg: float = THETA_ABG,
    optimizer: str = "sgd",
    learning_rate: float = 5e-2,
    momentum: float = 0.9,
    weight_decay: float = 5e-3,
    poly_power: float = 0.9,
    epochs: int = 3,
    batch_size: int = 8,
    class_balance: bool = False,
    seed: int = 0,
    device: str = "cpu",
    progress=None,
) -> LdpsTraining:
    """Train the LDPS extractor head and discriminator on priors alone (self-supervised, Eq. 5-9).

    Parameters
    ----------
    features : sequence of dict of str -> (C, h, w) ndarray
        Per image, the backbone taps (the ``deep_features`` results).
    priors : sequence of (H, W) ndarray of float
        Per image, the prior map in [0, 1] that guides the pairs (no ground truth is used).
    tap_strides : dict of str -> int
        The stride of each tap.
    taps : sequence of str
        The taps fused; empty (the default): :func:`resolve_taps` (strides 2, 4, 16, 32, those of
        the paper's MobileNetV2 layers, when the features have them all).
    input_size : int
        The network input side the taps were computed at.
    channels, hidden : int
        Width of the extractor's output (paper: 32) and of the discriminator's hidden layers.
    aspp_stride : int
        1: ASPP on the half-resolution fused map (the paper); 2 or 4: on it averaged, added back.
    theta_fg, theta_afg, theta_abg : float
        Sec. 4.2's thresholds (paper: 0.9, 0.8, 0.3).
    learning_rate, momentum, weight_decay, poly_power : float
        SGD with the polynomial schedule ``lr (1 - k / K) ** poly_power``.
    epochs, batch_size : int
        Passes over the images with guidance, images per step.
    class_balance : bool
        Average the positive and the negative pairs' losses separately (True) or all pairs together.
    seed : int
        Initialisation, order and flips.
    device : str
        Where training runs.
    progress : callable, optional
        Called with ``(epoch, mean_loss)`` after each epoch.

    Returns
    -------
    LdpsTraining
    """
    if len(features) != len(priors) or not features:
        raise ValueError(f"features, priors: expected equal, non-zero lengths, got {len(features)}, {len(priors)}")
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    taps = resolve_taps(taps, list(tap_strides))
    missing = [t for t in taps if t not in tap_strides or t not in features[0]]
    if missing:
        raise ValueError(f"taps: {missing} are not in the features (they have {', '.join(sorted(tap_strides))})")
    first = features[0]
    network = RelationNetwork.create(
        taps=list(taps), tap_channels=[int(np.asarray(first[t]).shape[0]) for t in taps],
        tap_strides=[int(tap_strides[t]) for t in taps], channels=channels, hidden=hidden, aspp_stride=aspp_stride,
        input_size=input_size, theta_fg=theta_fg, theta_afg=theta_afg, theta_abg=theta_abg, seed=seed)
    hp = network.hparams
    for f in features:
        _check_features(f, hp)
    grids = [_resize(check_map(p, "prior"), network.grid, area=True) for p in priors]
    keep = [i for i, g in enumerate(grids) if _has_guidance(g, hp)]
    if not keep:
        raise ValueError(f"train_relation_network: no prior has both a location above theta_fg = {theta_fg} "
                         f"and one below theta_abg = {theta_abg}")
    t0 = time.perf_counter()
    losses = _fit(network, [features[i] for i in keep], np.stack([grids[i] for i in keep]),
                  optimizer=optimizer, learning_rate=learning_rate, steps_or_epochs=epochs, batch_size=batch_size, momentum=momentum,
                  weight_decay=weight_decay, poly_power=poly_power, class_balance=class_balance, augment=True,
                  per_step=False, rng=np.random.default_rng(seed), device=device, progress=progress)
    return LdpsTraining(network, losses, time.perf_counter() - t0, len(keep), len(features) - len(keep))


def ldps_single(features: Mapping[str, np.ndarray], prior: np.ndarray, *, tap_strides: Mapping[str, int],
                taps: Sequence[str] = (), input_size: int = 224, channels: int = 32, hidden: int = 32,
                aspp_stride: int = 2, learning_rate: float = 0.2, steps: int = 10, momentum: float = 0.9, weight_decay: float = 5e-3,
                class_balance: bool = False, seed: int = 0) -> np.ndarray:
    """Fit LDPS on one image alone and promote its prior (the paper's DenseCRF comparison, Sec. 5.4).

    A network initialised from ``seed`` is trained for ``steps`` SGD steps at ``learning_rate``
    (paper: 0.2 and 10) on this image's own pairs, then applied to it. Parameters as
    :func:`train_relation_network`. A prior without an FG or an ABG location is returned unchanged
    with a warning.
    """
    prior = check_map(prior, "prior")
    steps = check_int(steps, "steps", minimum=1)
    first = features
    taps = resolve_taps(taps, list(tap_strides))
    missing = [t for t in taps if t not in tap_strides or t not in first]
    if missing:
        raise ValueError(f"taps: {missing} are not in the features (they have {', '.join(sorted(tap_strides))})")
    network = RelationNetwork.create(
        taps=list(taps), tap_channels=[int(np.asarray(first[t]).shape[0]) for t in taps],
        tap_strides=[int(tap_strides[t]) for t in taps], channels=channels, hidden=hidden, aspp_stride=aspp_stride,
        input_size=input_size, seed=seed)
    _check_features(features, network.hparams)
    grid = _resize(prior, network.grid, area=True)
    if not _has_guidance(grid, network.hparams):
        warnings.warn("the prior has no location above theta_fg or none below theta_abg: "
                      "returned unchanged", stacklevel=2)
        return prior.astype(np.float32)
    _fit(network, [features], grid[None], optimizer="sgd", learning_rate=learning_rate, steps_or_epochs=steps, batch_size=1,
         momentum=momentum, weight_decay=weight_decay, poly_power=0.0, class_balance=class_balance,
         augment=False, per_step=True, rng=np.random.default_rng(seed))
    return ldps_promote(features, prior, network)
