"""ARN: attentional recurrent network for salient object detection (Sun, Li & Guan, arXiv 1808.01634).

A decoder over the frozen backbone's taps: the shallow side outputs are enhanced by recurrent
convolutional layers (RCL), the deepest map by self-attention, and the decoder climbs back to the
finest side output, one self-attention per level, to a saliency map.

Implemented, equation by equation
---------------------------------
* **Side outputs (Sec. 3.2).** VGG16's conv2_2, conv3_3, conv4_3 (strides 2, 4, 8: ``L2, L3, L4``)
  and conv5_3 (stride 16: ``S5``) of a 224 x 224 input. With the default EfficientNet-Lite0 of
  ``deep_features``, the taps of the same strides: ``s2`` (16 channels), ``s4`` (24), ``s8`` (40)
  and ``s16`` (112); ``deep_taps`` may add ``s32`` (320 channels, bilinearly upsampled to stride 16
  and concatenated to ``S5``): the default, chosen on ECSSD train (``benchmarks/results/tune_arn.md``:
  after 3 epochs on DUTS-TR-1k, ECSSD-train MAE 0.092 with ``s32`` against 0.111 without).
  With ``deep_features.backbone=vgg16`` the taps of the same strides are VGG16's conv2_2 ... conv5_3.
* **Self-attention (Sec. 3.3, Eq. 1-4).** ``f(x) = W_f * x``, ``g(x) = W_g * x`` (1 x 1 convolutions
  to ``C1 = C / 8`` channels, at least 1), ``s = f(x)^T g(x)``, ``beta = softmax(s)`` over the
  positions (Eq. 2), ``o = beta h(x)`` with ``h(x) = W_h * x`` (1 x 1, ``C`` channels; Eq. 3),
  ``y = gamma o + x`` with ``gamma`` a learnt scalar initialised to 0 (Eq. 4).
* **RCL (Sec. 3.4, Eq. 5-8).** ``z(t) = w_f * u + w_r * x(t - 1) + b`` (Eq. 6; 3 x 3 kernels, the
  recurrent kernel ``w_r`` shared over time), ``x(t) = g(f(z(t)))`` with ``f`` the ReLU (Eq. 7) and
  ``g`` the local response normalisation of Eq. 8,
  ``f_k / (1 + alpha / N * sum_{k' = max(0, k - N/2)}^{min(K - 1, k + N/2)} f_k'^2)^beta``.
  ``x(0) = g(f(w_f * u + b))`` (no recurrent input yet), then ``T`` recurrent steps.
* **Decoder (Sec. 3.1, Fig. 1).** ``S5 -> attention -> S5_att``; at each level ``l = 4, 3, 2``:
  ``S(l+1)_att`` upsampled x 2 by a transposed convolution, concatenated with ``RCL(L_l)``, a 3 x 3
  convolution and ReLU, self-attention -> ``Sl_att``; ``S2_att -> 1 x 1 convolution -> logit`` at
  stride 2, upsampled bilinearly to the 224 x 224 input, sigmoid; the map is resized back to the
  image's size.
* **Training (Sec. 4.3).** Binary cross-entropy on the 224 x 224 map against the ground truth
  resized to it; Adam with ``beta = (0.9, 0.999)``; He initialisation of every new convolution
  (ref. [10]), biases 0; horizontal flips as augmentation.

Decisions the paper leaves open (each with its reason)
------------------------------------------------------
* **Frozen backbone, cached taps.** The paper fine-tunes VGG16 on a GPU. Here the backbone is frozen
  and the decoder trains on the cached ``deep_features`` taps, so training fits a 2-core CPU. A
  flipped sample mirrors the cached taps and the mask (the taps of a mirrored image are close to,
  not exactly, the mirrored taps); each sample is flipped with probability 0.5 per epoch, the
  paper's doubled training set in expectation. End-to-end fine-tuning of the backbone (the paper's
  setting, for a GPU) is not built: the models here all train on frozen taps.
* **Standardised taps.** The frozen taps have channel standard deviations of 2 to 10; each channel is
  standardised by its mean and deviation over (up to 256 of) the training images, stored in the
  model (``tune_arn.md``: ECSSD-train MAE 0.079 against 0.087 with the taps as they are).
* **Widths.** The paper gives none. Decoder widths per level (stride 2, 4, 8, 16) default to
  16, 32, 64, 64: the stride-2 level dominates the cost (112 x 112 positions).
* **Attention at the fine levels.** Eq. 2's ``beta`` has ``(HW)^2`` entries: 12544^2 floats at stride
  2 (630 MB per image). Above ``attention_keys`` positions (default 28 x 28 = 784) the module runs
  Eq. 1-3 on the map average-pooled by the smallest power of 2 that brings it under the limit and
  upsamples ``o`` bilinearly before Eq. 4; at stride 8 and 16 (28 x 28, 14 x 14) it is exactly
  Eq. 1-4. (Pooling the keys alone would still leave 12544 x 784 attention weights per image.)
* **RCL hyper-parameters.** ``T = 3`` recurrent steps (the ablation compares 1 and 3);
  LRN ``alpha = 0.001``, ``beta = 0.75``, ``N = K / 8 + 1`` as in the RCL paper the ARN cites ([19],
  Liang & Hu, CVPR 2015).
* **Learning rate, epochs, batch.** The paper's Adam lr is 1e-4 for a fine-tuned VGG16; the decoder
  alone, from scratch, trains at 1e-3 (``tune_arn.md`` compares 1e-4), batches of 8, 6 epochs: the
  ECSSD-train MAE of the DUTS-TR-1k runs still fell at epoch 6, and the shipped model trains 6 epochs
  on three times the images. The trainer keeps the best epoch when given validation images
  (:func:`train_arn`); the ``arn_fit`` stage, which has none, keeps the last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from promote import _taps

__all__ = ["ArnNetwork", "ArnTraining", "SIDE_TAPS", "arn_saliency", "local_response_norm", "train_arn"]

SIDE_TAPS = ("s2", "s4", "s8")  # strides of VGG16 conv2_2, conv3_3, conv4_3
DEEP_TAPS = ("s16", "s32")  # stride of conv5_3, and the deepest tap upsampled to it
WIDTHS = (16, 32, 64, 64)  # decoder channels at strides 2, 4, 8, 16
LRN_ALPHA, LRN_BETA = 1e-3, 0.75


def _torch():
    import torch

    return torch


def local_response_norm(f, alpha: float = LRN_ALPHA, beta: float = LRN_BETA, n: int | None = None):
    """Eq. 8 on a ``(B, K, H, W)`` tensor: ``f_k / (1 + alpha / N sum_{|k' - k| <= N // 2} f_k'^2)^beta``
    (the sum clipped to the ``K`` channels; ``N = K // 8 + 1`` by default, as in [19])."""
    import torch.nn.functional as F

    k = f.shape[1]
    n = k // 8 + 1 if n is None else int(n)
    half = n // 2
    sq = f * f
    # the window sum over channels k - N/2 .. k + N/2 (zeros outside 0 .. K - 1) as shifted slices:
    # cheaper than a pooling over a channel axis for these small windows
    padded = F.pad(sq, (0, 0, 0, 0, half, half))
    summed = sq.clone() if half == 0 else sum(padded[:, i:i + k] for i in range(2 * half + 1))
    return f * (1.0 + (alpha / n) * summed) ** (-beta)


def _modules():
    """The torch modules (built lazily so importing this file does not import torch)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class SelfAttention(nn.Module):
        """Eq. 1-4; above ``max_keys`` positions, on the map average-pooled below it, output upsampled."""

        def __init__(self, channels: int, max_keys: int):
            super().__init__()
            c1 = max(channels // 8, 1)
            self.f = nn.Conv2d(channels, c1, 1)
            self.g = nn.Conv2d(channels, c1, 1)
            self.h = nn.Conv2d(channels, channels, 1)
            self.gamma = nn.Parameter(torch.zeros(1))  # Eq. 4: gamma initialised to 0
            self.max_keys = int(max_keys)

        def forward(self, x):
            pool = 1
            while (x.shape[2] // pool) * (x.shape[3] // pool) > self.max_keys:
                pool *= 2
            xp = F.avg_pool2d(x, pool) if pool > 1 else x
            b, c, hh, ww = xp.shape
            q = self.f(xp).flatten(2)  # (B, C1, N)    Eq. 1
            k = self.g(xp).flatten(2)  # (B, C1, N)
            v = self.h(xp).flatten(2)  # (B, C, N)
            beta = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N)   Eq. 2
            o = torch.bmm(v, beta.transpose(1, 2)).view(b, c, hh, ww)  # Eq. 3
            if pool > 1:
                o = F.interpolate(o, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return self.gamma * o + x  # Eq. 4

    class RCL(nn.Module):
        """Eq. 5-8: a feed-forward and a shared recurrent 3 x 3 kernel, ReLU, LRN, ``steps`` times."""

        def __init__(self, in_channels: int, channels: int, steps: int):
            super().__init__()
            self.feed = nn.Conv2d(in_channels, channels, 3, padding=1)  # w_f, b
            self.recurrent = nn.Conv2d(channels, channels, 3, padding=1, bias=False)  # w_r
            self.steps = int(steps)

        def forward(self, u):
            fu = self.feed(u)
            x = local_response_norm(F.relu(fu))  # t = 0: no recurrent input yet
            for _ in range(self.steps):
                x = local_response_norm(F.relu(fu + self.recurrent(x)))  # Eq. 6, 7, 5
            return x

    class ARN(nn.Module):
        def __init__(self, side_channels, deep_channels, widths, rcl_steps, attention, max_keys, tap_channels):
            super().__init__()
            w2, w3, w4, w5 = widths
            # per-channel standardisation of each frozen tap (training-set statistics; identity until set)
            for i, c in enumerate(tap_channels):
                self.register_buffer(f"tap_mean{i}", torch.zeros(c))
                self.register_buffer(f"tap_scale{i}", torch.ones(c))
            self.attention = bool(attention)
            self.use_rcl = rcl_steps is not None
            self.deep = nn.Sequential(nn.Conv2d(deep_channels, w5, 1), nn.ReLU())  # S5 to the decoder width
            lvl = [w2, w3, w4]
            self.side = nn.ModuleList(
                RCL(c, w, rcl_steps) if self.use_rcl else nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU())
                for c, w in zip(side_channels, lvl))
            ups_in = [w3, w4, w5]
            self.up = nn.ModuleList(nn.ConvTranspose2d(ci, w, 4, stride=2, padding=1) for ci, w in zip(ups_in, lvl))
            self.fuse = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU()) for w in lvl)
            ident = nn.Identity
            self.att5 = SelfAttention(w5, max_keys) if attention else ident()
            self.att = nn.ModuleList((SelfAttention(w, max_keys) if attention else ident()) for w in lvl)
            self.out = nn.Conv2d(w2, 1, 1)

        def forward(self, sides, deep):
            """``sides``: taps at strides 2, 4, 8; ``deep``: the stride-16 map -> logits at stride 2."""
            x = self.att5(self.deep(deep))  # S5_att
            for level in (2, 1, 0):  # L4, L3, L2
                up = self.up[level](x)
                x = self.att[level](self.fuse[level](torch.cat([up, self.side[level](sides[level])], 1)))
            return self.out(x)

    return ARN


@dataclass
class ArnNetwork(_taps.ArraysModel):
    """The ARN decoder and its hyper-parameters (plain arrays, no pickle).

    Attributes
    ----------
    module : torch.nn.Module
    hparams : dict
        ``taps`` (side taps then deep taps), ``tap_channels``, ``tap_strides``, ``n_side``,
        ``widths``, ``rcl_steps`` (None: plain convolutions instead of RCL), ``attention``,
        ``attention_keys``, ``input_size``.
    """

    module: object
    hparams: dict

    @classmethod
    def create(cls, *, tap_channels: Mapping[str, int], tap_strides: Mapping[str, int],
               side_taps: Sequence[str] = SIDE_TAPS, deep_taps: Sequence[str] = DEEP_TAPS,
               widths: Sequence[int] = WIDTHS, rcl_steps: int | None = 3, attention: bool = True,
               attention_keys: int = 784, input_size: int = 224, seed: int = 0) -> "ArnNetwork":
        """A freshly initialised decoder (seeded) for taps of the given channels and strides."""
        side_taps, deep_taps = [str(t) for t in side_taps], [str(t) for t in deep_taps]
        for t in (*side_taps, *deep_taps):
            if t not in tap_channels or t not in tap_strides:
                raise ValueError(f"taps: {t!r} is not among the features' taps ({', '.join(sorted(tap_strides))})")
        strides = [int(tap_strides[t]) for t in side_taps]
        if len(side_taps) != 3 or strides != [strides[0], 2 * strides[0], 4 * strides[0]]:
            raise ValueError(f"side_taps: expected three taps of strides s, 2s, 4s, got {dict(zip(side_taps, strides))}")
        if not deep_taps or min(int(tap_strides[t]) for t in deep_taps) != 8 * strides[0]:
            raise ValueError(f"deep_taps: expected the finest at stride {8 * strides[0]}, "
                             f"got {({t: tap_strides[t] for t in deep_taps})}")
        if len(widths) != 4 or min(int(w) for w in widths) < 1:
            raise ValueError(f"widths: expected four positive channel counts, got {widths!r}")
        if rcl_steps is not None and int(rcl_steps) < 0:
            raise ValueError(f"rcl_steps: expected >= 0 or None, got {rcl_steps!r}")
        if int(attention_keys) < 1:
            raise ValueError(f"attention_keys: expected >= 1, got {attention_keys!r}")
        taps = side_taps + deep_taps
        hp = {"taps": taps, "tap_channels": [int(tap_channels[t]) for t in taps],
              "tap_strides": [int(tap_strides[t]) for t in taps], "n_side": 3,
              "widths": [int(w) for w in widths], "rcl_steps": None if rcl_steps is None else int(rcl_steps),
              "attention": bool(attention), "attention_keys": int(attention_keys), "input_size": int(input_size)}
        torch = _torch()
        torch.manual_seed(int(seed))
        module = _modules()(hp["tap_channels"][:3], sum(hp["tap_channels"][3:]), hp["widths"], hp["rcl_steps"],
                            hp["attention"], hp["attention_keys"], hp["tap_channels"])
        from torch import nn

        _taps.he_init(module, (nn.Conv2d, nn.ConvTranspose2d))  # ref. [10]
        return cls(module, hp)

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "ArnNetwork":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        hp = dict(hparams)
        n = hp["n_side"]
        net = cls.create(tap_channels=dict(zip(hp["taps"], hp["tap_channels"])),
                         tap_strides=dict(zip(hp["taps"], hp["tap_strides"])), side_taps=hp["taps"][:n],
                         deep_taps=hp["taps"][n:], widths=hp["widths"], rcl_steps=hp["rcl_steps"],
                         attention=hp["attention"], attention_keys=hp["attention_keys"], input_size=hp["input_size"])
        _taps.load_arrays(net.module, arrays)
        return net

    def logits(self, tensors):
        """Per-tap ``(B, C, h, w)`` tensors in ``hparams["taps"]`` order -> ``(B, 1, S, S)`` logits at
        the network input size ``S``."""
        import torch.nn.functional as F
        torch = _torch()

        n = self.hparams["n_side"]
        m = self.module
        tensors = [(t - getattr(m, f"tap_mean{i}")[:, None, None]) / getattr(m, f"tap_scale{i}")[:, None, None]
                   for i, t in enumerate(tensors)]
        sides, deeps = tensors[:n], tensors[n:]
        grid = deeps[0].shape[-2:]
        deep = torch.cat([d if d.shape[-2:] == grid else F.interpolate(d, size=grid, mode="bilinear",
                                                                       align_corners=False) for d in deeps], 1)
        size = self.hparams["input_size"]
        return F.interpolate(self.module(sides, deep), size=(size, size), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class ArnTraining:
    """Result of :func:`train_arn`: the network (the best epoch's when validated), per-epoch mean
    training losses, per-epoch validation MAE (empty without validation), the epoch kept, seconds."""

    network: ArnNetwork
    losses: list[float]
    val_mae: list[float]
    best_epoch: int
    seconds: float
    images: int


def _target(mask: np.ndarray, size: int) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask: expected a non-empty (H, W) array, got shape {m.shape}")
    m = m.astype(np.float32)
    if m.max(initial=0) > 1:
        m = m / 255.0
    return _taps.resize(np.clip(m, 0, 1), (size, size), area=True)


def set_tap_statistics(network: ArnNetwork, features: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Store each tap channel's mean and standard deviation over ``features`` in the network: its
    inputs are standardised by them (the frozen taps have standard deviations of 2 to 10)."""
    torch = _torch()
    for i, tap in enumerate(network.hparams["taps"]):
        a = np.stack([np.asarray(f[tap], np.float32) for f in features])
        mean = a.mean(axis=(0, 2, 3))
        std = np.maximum(a.std(axis=(0, 2, 3)), 1e-3)
        getattr(network.module, f"tap_mean{i}").copy_(torch.from_numpy(mean))
        getattr(network.module, f"tap_scale{i}").copy_(torch.from_numpy(std))


def arn_saliency(features: Sequence[Mapping[str, np.ndarray]], network: ArnNetwork,
                 shapes: Sequence[tuple[int, int]] | None = None, *, batch_size: int = 8,
                 device: str = "cpu") -> list[np.ndarray]:
    """Saliency maps in [0, 1] from each image's cached taps, resized to ``shapes[i]`` (default: the
    network input size). Batched, under ``torch.inference_mode()``."""
    torch = _torch()
    hp = network.hparams
    for f in features:
        _taps.check_features(f, hp)
    if shapes is not None and len(shapes) != len(features):
        raise ValueError(f"shapes: expected {len(features)} (one per image), got {len(shapes)}")
    network.module.to(device).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(features), max(int(batch_size), 1)):
            chunk = features[i:i + batch_size]
            prob = torch.sigmoid(network.logits(_taps.feature_tensors(chunk, hp, device=device)))[:, 0]
            for j, p in enumerate(prob.cpu().numpy()):
                shape = tuple(shapes[i + j]) if shapes is not None else p.shape
                out.append(np.clip(_taps.resize(p, shape, area=False) if shape != p.shape else p, 0, 1))
    return out


def train_arn(features: Sequence[Mapping[str, np.ndarray]], masks: Sequence[np.ndarray], *,
              tap_strides: Mapping[str, int], input_size: int = 224, side_taps: Sequence[str] = SIDE_TAPS,
              deep_taps: Sequence[str] = DEEP_TAPS, widths: Sequence[int] = WIDTHS, rcl_steps: int | None = 3,
              attention: bool = True, attention_keys: int = 784, standardize: bool = True,
              learning_rate: float = 1e-3,
              epochs: int = 6, batch_size: int = 8, flip: bool = True, seed: int = 0,
              val_features: Sequence[Mapping[str, np.ndarray]] | None = None,
              val_masks: Sequence[np.ndarray] | None = None, device: str = "cpu", progress=None) -> ArnTraining:
    """Train the ARN decoder on cached taps and ground-truth masks (BCE, Adam; Sec. 4.3).

    Parameters
    ----------
    features : sequence of dict of str -> (C, h, w) ndarray
        Per image, the backbone taps (``deep_features`` results) at ``input_size``.
    masks : sequence of (H, W) ndarray
        Per image, its ground truth (bool, {0, 1} or {0, 255}); resized to the input size.
    tap_strides : dict of str -> int
        The stride of every tap.
    side_taps, deep_taps : sequence of str
        ``L2, L3, L4`` (strides s, 2s, 4s) and the taps concatenated into ``S5`` (finest at 8s).
    widths : four ints
        Decoder channels at the levels of ``L2, L3, L4, S5``.
    rcl_steps : int or None
        ``T``, recurrent steps of the RCL units; None replaces them by plain 3 x 3 convolutions
        (the "no RCL" ablation).
    attention : bool
        False drops the self-attention modules (the "no attention" ablation).
    attention_keys : int
        Most positions a self-attention attends (above it, it runs on the map average-pooled).
    standardize : bool
        Standardise every tap channel by its mean and standard deviation over (at most 256 of) the
        training images, stored in the model.
    learning_rate, epochs, batch_size : Adam's rate, passes over the images, images per step.
    flip : bool
        Mirror each sample (taps and mask) with probability 0.5 per epoch.
    seed : int
        Initialisation, order and flips.
    val_features, val_masks : optional
        Validation images: their MAE is measured after every epoch and the best epoch's weights are
        kept (early stopping). Never pass test images.
    device : str
    progress : callable, optional
        Called with ``(epoch, mean_loss, val_mae or None)`` after each epoch.
    """
    torch = _torch()
    import torch.nn.functional as F

    if len(features) != len(masks) or not features:
        raise ValueError(f"features, masks: expected equal, non-zero lengths, got {len(features)}, {len(masks)}")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs, batch_size: expected >= 1, got {epochs}, {batch_size}")
    if (val_features is None) != (val_masks is None) or (val_features is not None and len(val_features) != len(val_masks)):
        raise ValueError("val_features, val_masks: give both, of equal lengths, or neither")
    first = features[0]
    channels = {t: int(np.asarray(first[t]).shape[0]) for t in (*side_taps, *deep_taps) if t in first}
    network = ArnNetwork.create(tap_channels=channels, tap_strides=tap_strides, side_taps=side_taps,
                                deep_taps=deep_taps, widths=widths, rcl_steps=rcl_steps, attention=attention,
                                attention_keys=attention_keys, input_size=input_size, seed=seed)
    hp = network.hparams
    for f in features:
        _taps.check_features(f, hp)
    if standardize:
        set_tap_statistics(network, features[:: max(len(features) // 256, 1)])
    targets = np.stack([_target(m, input_size) for m in masks])
    val_targets = None if val_masks is None else [np.asarray(m) for m in val_masks]
    module = network.module.to(device)
    opt = torch.optim.Adam(module.parameters(), lr=learning_rate, betas=(0.9, 0.999))
    rng = np.random.default_rng(seed)
    losses, val_mae, best, best_state = [], [], np.inf, None
    t0 = time.perf_counter()
    for epoch in range(int(epochs)):
        module.train()
        order = rng.permutation(len(features))
        total = 0.0
        for i in range(0, len(order), int(batch_size)):
            idx = order[i:i + int(batch_size)]
            flips = rng.random(len(idx)) < 0.5 if flip else np.zeros(len(idx), bool)
            tensors = _taps.feature_tensors([features[j] for j in idx], hp, flip=flips, device=device)
            y = targets[idx].copy()
            y[flips] = y[flips][..., ::-1]
            y = torch.from_numpy(np.ascontiguousarray(y)).to(device)[:, None]
            loss = F.binary_cross_entropy_with_logits(network.logits(tensors), y)  # BCE (Sec. 4.3)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(order))
        mae = None
        if val_features is not None:
            preds = arn_saliency(val_features, network, [m.shape for m in val_targets], device=device)
            mae = float(np.mean([np.abs(p - (m > (127 if m.max() > 1 else 0.5))).mean()
                                 for p, m in zip(preds, val_targets)]))
            val_mae.append(mae)
            if mae < best:
                best, best_state = mae, _taps.module_arrays(module)
        if progress is not None:
            progress(epoch, losses[-1], mae)
    if best_state is not None:
        _taps.load_arrays(module, best_state)
    module.eval()
    best_epoch = int(np.argmin(val_mae)) + 1 if val_mae else int(epochs)
    return ArnTraining(network, losses, val_mae, best_epoch, time.perf_counter() - t0, len(features))
