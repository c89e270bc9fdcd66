"""VGG16 (Simonyan & Zisserman 2015, configuration D) in torchvision's state-dict layout.

Written here (no torchvision import); the parameter names are those of torchvision's
``vgg16-397923af.pth`` so that file loads with ``strict=True``:
``features.N.weight/bias`` for the 13 convolutions at ``N`` in
0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 and ``classifier.{0,3,6}.weight/bias``
for the three fully connected layers. Weights are never downloaded: see
:func:`backbones.load_backbone`.

Architecture
------------
``features`` (indices as in torchvision): five groups of 3x3 convolutions (padding 1,
bias, ReLU) with 64, 128, 256, 512, 512 channels (2, 2, 3, 3, 3 convolutions), each
followed by 2x2 max-pooling with stride 2; then adaptive average pooling to 7x7 (an
identity at 224 input) and ``classifier``: Linear(25088, 4096), ReLU, Dropout(0.5),
Linear(4096, 4096), ReLU, Dropout(0.5), Linear(4096, 1000). ReLUs are not in-place
so that every tap stays valid for autograd.

Preprocessing
-------------
torchvision's: RGB in [0, 1], ``mean = (0.485, 0.456, 0.406)``,
``std = (0.229, 0.224, 0.225)``, 224 x 224.

Feature taps
------------
The side outputs used by VGG-based saliency networks (e.g. ARN): ``s1`` = relu1_2 (64
ch, stride 1), ``s2`` = relu2_2 (128), ``s4`` = relu3_3 (256), ``s8`` = relu4_3 (512),
``s16`` = relu5_3 (512), ``s32`` = pool5 (512).

References
----------
.. [1] K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for Large-Scale
   Image Recognition", ICLR 2015.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._base import IMAGENET_MEAN, IMAGENET_NUM_CLASSES, IMAGENET_STD, Backbone

__all__ = ["VGG16", "VGG16_FILE"]

VGG16_FILE = "vgg16-397923af.pth"

# Configuration D: channel counts, "M" = 2x2 max-pool.
_CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Tap name -> index one past the layer whose output it is (slice end in ``features``).
_TAP_ENDS = {"s1": 4, "s2": 9, "s4": 16, "s8": 23, "s16": 30, "s32": 31}


class VGG16(Backbone):
    """VGG16 ImageNet classifier with torchvision's key names (see the module docstring)."""

    name = "vgg16"
    input_size = 224
    tap_strides = {"s1": 1, "s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32}
    tap_channels = {"s1": 64, "s2": 128, "s4": 256, "s8": 512, "s16": 512, "s32": 512}
    weights_file = VGG16_FILE

    def __init__(self, num_classes: int = IMAGENET_NUM_CLASSES, dropout: float = 0.5):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _CFG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU()]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        self.eval()

    def _layers(self) -> nn.Sequential:
        # ``features`` is both torchvision's submodule name (kept for the state-dict keys)
        # and the Backbone method; attribute lookup finds the method, so reach the
        # submodule through the registry (users: ``net.get_submodule("features")``).
        return self._modules["features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1000) before the softmax for a preprocessed (N, 3, h, w) batch."""
        x = F.adaptive_avg_pool2d(self._layers()(x), (7, 7))
        return self.classifier(torch.flatten(x, 1))

    def _forward_taps(self, x: torch.Tensor, taps: set[str]) -> dict[str, torch.Tensor]:
        out = {}
        start = 0
        for name, end in _TAP_ENDS.items():
            if not taps - out.keys():
                break
            x = self._layers()[start:end](x)
            start = end
            if name in taps:
                out[name] = x
        return out
