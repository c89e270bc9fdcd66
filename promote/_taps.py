"""Backbone taps as the learned heads read them: checked against a model, stacked as torch tensors,
the map resizing, and the model-array round trip. Shared by the heads over cached ``deep_features``
(:mod:`promote`'s LPS and LDPS, :mod:`detect.arn`, :mod:`relearn`'s filter and joint model), not a
public API."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def check_features(features: Mapping[str, np.ndarray], hp: Mapping) -> None:
    """Raise a ValueError naming the tap when ``features`` are not the taps a model was built for
    (``hp``: ``taps``, ``tap_channels``, ``tap_strides``, ``input_size``)."""
    for tap, c, s in zip(hp["taps"], hp["tap_channels"], hp["tap_strides"]):
        if tap not in features:
            raise ValueError(f"features: expected tap {tap!r} (the model's taps: {', '.join(hp['taps'])}), "
                             f"got {', '.join(sorted(map(str, features)))}")
        f = np.asarray(features[tap])
        want = hp["input_size"] // s
        if f.ndim != 3 or f.shape[0] != c or f.shape[1:] != (want, want):
            raise ValueError(f"features[{tap!r}]: expected ({c}, {want}, {want}), got {f.shape}")


def feature_tensors(batch: Sequence[Mapping[str, np.ndarray]], hp: Mapping, flip=None, device="cpu"):
    """One float32 ``(B, C, h, w)`` tensor per tap of ``hp["taps"]``; images where ``flip`` is True
    mirrored left-right."""
    import torch

    out = []
    for tap in hp["taps"]:
        arr = np.stack([np.asarray(f[tap], np.float32) for f in batch])
        if flip is not None:
            arr[flip] = arr[flip][..., ::-1]
        out.append(torch.from_numpy(np.ascontiguousarray(arr)).to(device))
    return out


def resize(a: np.ndarray, shape: tuple[int, int], area: bool) -> np.ndarray:
    """``a`` resized to ``shape`` (area averaging to shrink a map onto a grid, bilinear to enlarge)."""
    import cv2

    interp = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(a, np.float32), (shape[1], shape[0]), interpolation=interp)


def module_arrays(module) -> dict[str, np.ndarray]:
    """A torch module's state as float32 numpy arrays (for a pickle-free model file)."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in module.state_dict().items()}


def load_arrays(module, arrays: Mapping[str, np.ndarray]) -> None:
    """Load :func:`module_arrays` back into a module of the same layout (strict) and set it to eval."""
    import torch

    module.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in arrays.items()}, strict=True)
    module.eval()


def he_init(module, layer_types: tuple, slope: float = 0.0) -> None:
    """He initialisation (ref. He et al. 2015) of every layer of ``layer_types`` in ``module``, zero
    biases: for ReLU (``slope`` 0) or a leaky ReLU / PReLU of negative slope ``slope``."""
    from torch import nn

    for mod in module.modules():
        if isinstance(mod, layer_types):
            if slope:
                nn.init.kaiming_normal_(mod.weight, a=slope, nonlinearity="leaky_relu")
            else:
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)


def n_parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


class ArraysModel:
    """Mixin of the promoters' network records (``module``, ``hparams``): the model-file arrays
    and the parameter count."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The network's parameters as float32 numpy arrays (for a pickle-free model file)."""
        return module_arrays(self.module)

    def n_parameters(self) -> int:
        return n_parameters(self.module)
