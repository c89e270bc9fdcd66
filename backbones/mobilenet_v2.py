"""MobileNetV2 (Sandler et al. 2018, width 1.0) in torchvision's state-dict layout.

Written here (no torchvision import); parameter names follow torchvision's
``mobilenet_v2-b0353104.pth`` (V1 weights) and ``mobilenet_v2-7ebf99e0.pth`` (V2
weights), which share one layout, so either loads with ``strict=True``:
``features.0.{0,1}`` (stem conv, BN), ``features.1..17.conv.*`` (inverted residuals),
``features.18.{0,1}`` (last 1x1 conv, BN), ``classifier.1`` (linear). Weights are never
downloaded: see :func:`backbones.load_backbone`.

Architecture
------------
Stem: 3x3 conv stride 2 -> 32, BN, ReLU6. Inverted residual blocks (t = expansion,
c = channels, n = repeats, s = stride of the first repeat):

===  ===  ===  ===  =================
t    c    n    s    ``features`` index
===  ===  ===  ===  =================
1    16   1    1    1
6    24   2    2    2-3
6    32   3    2    4-6
6    64   4    2    7-10
6    96   3    1    11-13
6    160  3    2    14-16
6    320  1    1    17
===  ===  ===  ===  =================

A block is ``conv`` = [1x1 conv, BN, ReLU6] (omitted when t = 1), [3x3 depthwise conv
stride s, BN, ReLU6], 1x1 linear projection conv, BN; identity skip when s = 1 and the
channel count is unchanged. Convolutions have no bias, symmetric padding ``k // 2``,
batch-norm eps 1e-5 (torchvision's). Then 1x1 conv 320 -> 1280, BN, ReLU6; global
average pooling; ``classifier`` = Dropout(0.2), Linear(1280, 1000).

Preprocessing
-------------
torchvision's: RGB in [0, 1], ``mean = (0.485, 0.456, 0.406)``,
``std = (0.229, 0.224, 0.225)``, 224 x 224.

Feature taps
------------
``stem`` (32, stride 2), ``s2`` = features[1] (16), ``s4`` = features[3] (24),
``s8`` = features[6] (32), ``s16`` = features[13] (96), ``s32`` = features[17] (320),
``head`` = features[18] (1280, stride 32).

References
----------
.. [1] M. Sandler, A. Howard, M. Zhu, A. Zhmoginov and L.-C. Chen, "MobileNetV2:
   Inverted Residuals and Linear Bottlenecks", CVPR 2018.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._base import IMAGENET_MEAN, IMAGENET_NUM_CLASSES, IMAGENET_STD, Backbone

__all__ = ["MobileNetV2", "MOBILENET_V2_FILES"]

#: torchvision file names, preferred first (IMAGENET1K_V2, then IMAGENET1K_V1).
MOBILENET_V2_FILES = ("mobilenet_v2-7ebf99e0.pth", "mobilenet_v2-b0353104.pth")

# (t, c, n, s) per stage.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# Tap name -> index in ``features`` whose output it is.
_TAP_INDEX = {"stem": 0, "s2": 1, "s4": 3, "s8": 6, "s16": 13, "s32": 17, "head": 18}


def _conv_bn_relu6(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block; its layers sit in ``self.conv`` to match torchvision's keys."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu6(in_ch, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.skip else y


class MobileNetV2(Backbone):
    """MobileNetV2 ImageNet classifier with torchvision's key names (see the module docstring)."""

    name = "mobilenet_v2"
    input_size = 224
    tap_strides = {"stem": 2, "s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32, "head": 32}
    tap_channels = {"stem": 32, "s2": 16, "s4": 24, "s8": 32, "s16": 96, "s32": 320, "head": 1280}
    weights_file = MOBILENET_V2_FILES[0]

    def __init__(self, num_classes: int = IMAGENET_NUM_CLASSES, dropout: float = 0.2):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        in_ch = 32
        for t, c, n, s in _SETTINGS:
            for r in range(n):
                layers.append(InvertedResidual(in_ch, c, s if r == 0 else 1, t))
                in_ch = c
        layers.append(_conv_bn_relu6(in_ch, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        self.eval()

    def _layers(self) -> nn.Sequential:
        # ``features`` is both torchvision's submodule name (kept for the state-dict keys)
        # and the Backbone method; attribute lookup finds the method, so reach the
        # submodule through the registry (users: ``net.get_submodule("features")``).
        return self._modules["features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1000) before the softmax for a preprocessed (N, 3, h, w) batch."""
        x = torch.flatten(F.adaptive_avg_pool2d(self._layers()(x), 1), 1)
        return self.classifier(x)

    def _forward_taps(self, x: torch.Tensor, taps: set[str]) -> dict[str, torch.Tensor]:
        index_to_tap = {i: t for t, i in _TAP_INDEX.items() if t in taps}
        last = max(index_to_tap)
        out = {}
        for i in range(last + 1):
            x = self._layers()[i](x)
            if i in index_to_tap:
                out[index_to_tap[i]] = x
        return out
