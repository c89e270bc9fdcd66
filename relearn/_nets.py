"""The fully connected stacks of the pair filter and the saliency classifiers, and their SGD loop.
Private to :mod:`relearn`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Five FC layers; the paper gives no widths. Chosen on DUTS-TR-1k held-out images
# (benchmarks/results/tune_relearn.md): (128, 64, 32, 32, 16) beat (512, 256, 128, 64, 32) on
# max F, adaptive F and MAE with a model 4.4x smaller and half the fitting time.
FC5_WIDTHS = (128, 64, 32, 32, 16)


def torch_module():
    import torch

    return torch


def fc_stack(in_dim: int, widths: Sequence[int]):
    """``len(widths)`` Linear + ReLU layers (the paper's "FC5")."""
    nn = torch_module().nn
    layers, d = [], int(in_dim)
    for w in widths:
        layers += [nn.Linear(d, int(w)), nn.ReLU()]
        d = int(w)
    return nn.Sequential(*layers)


def standardiser(in_dim: int):
    """A module holding the training inputs' mean and standard deviation as buffers."""
    torch = torch_module()

    class Standardise(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.zeros(in_dim))
            self.register_buffer("std", torch.ones(in_dim))

        def forward(self, x):
            return (x - self.mean) / self.std

        def fit(self, x: np.ndarray) -> None:
            flat = np.asarray(x, np.float32).reshape(-1, in_dim)
            mean = flat.mean(0, dtype=np.float64)
            std = flat.std(0, dtype=np.float64)
            std = np.where(std > 1e-6, std, 1.0)  # a constant input stays as it is
            self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            self.std.copy_(torch.from_numpy(std.astype(np.float32)))

    return Standardise()


def he_init(module) -> None:
    """He initialisation for the ReLU stacks, zero biases."""
    from promote import _taps

    _taps.he_init(module, (torch_module().nn.Linear,))


def sgd(module, *, learning_rate: float, momentum: float, weight_decay: float):
    """The paper's optimiser (Sec. V-B): SGD with momentum and weight decay."""
    torch = torch_module()
    return torch.optim.SGD(module.parameters(), lr=float(learning_rate), momentum=float(momentum),
                           weight_decay=float(weight_decay))


def batches(n: int, batch_size: int, iterations: int, rng: np.random.Generator):
    """``iterations`` index batches, epoch after epoch of a fresh permutation; yields
    ``(epoch, end_of_epoch, index)``."""
    done, epoch = 0, 0
    while done < iterations:
        order = rng.permutation(n)
        starts = range(0, n, batch_size)
        for k, s in enumerate(starts):
            if done >= iterations:
                return
            done += 1
            yield epoch, k == len(starts) - 1, order[s:s + batch_size]
        epoch += 1


def balanced_weights(labels: np.ndarray) -> tuple[float, float]:
    """Class weights ``(w_pos, w_neg)`` of the class-balanced cross-entropy (HED / DSS, the
    "class-based entropy loss" of Eq. 6): each class carries half the loss, mean weight 1."""
    labels = np.asarray(labels, bool)
    n, p = labels.size, int(labels.sum())
    if p == 0 or p == n:
        return 1.0, 1.0
    return n / (2.0 * p), n / (2.0 * (n - p))
