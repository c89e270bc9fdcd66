"""Semi-supervised instance-pair filter (MIJR Sec. IV-B, Fig. 2).

"FC5 full connected layers followed with one binary classifier", trained on the Table I labels
(:func:`relearn.pair_labels`, drawn by :func:`relearn.sample_pairs`) and used to keep the
"valuable" pairs: ``delta = 1`` when the filter's probability is above 0.5, else 0 (``delta`` of
Eq. 6).

Implemented
-----------
* Input: a pair's ``[xi_i, xi_j, context]`` (:func:`relearn.pair_inputs`), standardised by the
  training pairs' mean and standard deviation (stored in the model as buffers ``mean``, ``std``).
* Five Linear + ReLU layers of widths 128, 64, 32, 32, 16, then the binary classifier, one
  Linear layer to a logit; ``sigmoid`` gives the probability.
* Loss: cross-entropy of the Table I label, each pair weighted by :func:`relearn.sample_pairs`
  (the paper's 30k : 50k class share).
* Optimiser (Sec. V-B): SGD, momentum 0.9, weight decay 0.005, learning rate 0.001; the paper's
  80 000 iterations; batches of 64 drawn epoch by epoch without replacement.

Decisions the paper leaves open
-------------------------------
* **Widths** 128, 64, 32, 32, 16 (not given; the input has ~2 000 values, not the paper's
  16 384): on DUTS-TR-1k held-out images they beat 512, 256, 128, 64, 32 on max F, adaptive F and
  MAE with a 4.4x smaller model (``benchmarks/results/tune_relearn.md``). He initialisation
  (ReLU), zero biases. **Batch size** 64 (not given).
* **Standardisation** of the inputs: the tap activations of different depths and the context
  values have unrelated scales (:mod:`relearn.superpixel_features`).
* **Threshold** 0.5 on the probability for ``delta`` (a binary classifier's decision).
* The learning rate stays the paper's 0.001: no pool with the whole MIJR chain (alignment of
  every pair) was available to measure another.

References
----------
MIJR (``../shared/papers/mijr-multiple-instance-joint-relearning.txt``), Sec. IV-B, V-B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from promote import _taps
from relearn import _nets
from superpixels.validation import check_int, check_weight

__all__ = ["PairFilter", "filter_pairs", "train_pair_filter"]


def _build(in_dim: int, widths: Sequence[int]):
    nn = _nets.torch_module().nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.standardise = _nets.standardiser(in_dim)
            self.fc = _nets.fc_stack(in_dim, widths)
            self.classifier = nn.Linear(int(widths[-1]), 1)

        def forward(self, x):
            return self.classifier(self.fc(self.standardise(x)))[..., 0]

    return Net()


@dataclass
class PairFilter(_taps.ArraysModel):
    """The instance-pair filter network and its hyper-parameters (plain arrays, no pickle).

    Attributes
    ----------
    module : torch.nn.Module
        ``standardise`` (buffers ``mean``, ``std``), ``fc`` (FC5), ``classifier``.
    hparams : dict
        ``in_dim``, ``widths``.
    """

    module: object
    hparams: dict

    @classmethod
    def create(cls, in_dim: int, *, widths: Sequence[int] = _nets.FC5_WIDTHS, seed: int = 0) -> "PairFilter":
        """A freshly initialised (seeded) filter for ``in_dim``-long pair inputs."""
        in_dim = check_int(in_dim, "in_dim")
        widths = [check_int(w, "widths") for w in widths]
        if not widths:
            raise ValueError("widths: expected at least one layer width, got none")
        _nets.torch_module().manual_seed(int(seed))
        module = _build(in_dim, widths)
        _nets.he_init(module)
        return cls(module, {"in_dim": in_dim, "widths": widths})

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "PairFilter":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        net = cls.create(hparams["in_dim"], widths=hparams["widths"])
        _taps.load_arrays(net.module, arrays)
        return net


def _check_x(x, in_dim, name="x"):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != in_dim or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a (P, {in_dim}) float array of pair inputs, got "
                         f"{x.dtype} array of shape {x.shape}")
    return x


def filter_pairs(model: PairFilter, x: np.ndarray, *, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    """The filter's probability that each pair is valuable (``delta = p > 0.5``).

    Parameters
    ----------
    model : PairFilter
    x : (P, D) ndarray of float
        Pair inputs (:func:`relearn.pair_inputs` ``x`` rows).
    batch_size : int, optional
        Pairs per forward pass.
    device : str, optional
        Torch device.

    Returns
    -------
    (P,) ndarray of float32
    """
    torch = _nets.torch_module()
    x = _check_x(x, model.hparams["in_dim"])
    batch_size = check_int(batch_size, "batch_size")
    module = model.module.to(device).eval()
    out = np.empty(x.shape[0], np.float32)
    with torch.inference_mode():
        for s in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.asarray(x[s:s + batch_size], np.float32)).to(device)
            out[s:s + batch_size] = torch.sigmoid(module(xb)).cpu().numpy()
    return out


def train_pair_filter(
    x: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    widths: Sequence[int] = _nets.FC5_WIDTHS,
    learning_rate: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 5e-3,
    iterations: int = 80_000,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
) -> PairFilter:
    """Train the instance-pair filter on Table I labels (MIJR Sec. IV-B).

    Parameters
    ----------
    x : (P, D) ndarray of float
        Pair inputs (float16 accepted; cast per batch).
    labels : (P,) ndarray of int or bool
        Table I labels, 1 or 0.
    weight : (P,) ndarray of float, optional
        Per-pair loss weights (:func:`relearn.sample_pairs`; default all 1).
    widths : sequence of int, optional
        The FC layers' widths (five: the paper's FC5).
    learning_rate, momentum, weight_decay : float, optional
        SGD (paper: 0.001, 0.9, 0.005).
    iterations, batch_size : int, optional
        SGD steps (paper: 80 000) and pairs per step.
    seed : int, optional
        Initialisation and batch order.
    device : str, optional
        Torch device.

    Returns
    -------
    PairFilter
    """
    torch = _nets.torch_module()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x: expected a non-empty (P, D) float array, got {x.dtype} array of shape {x.shape}")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels: expected ({x.shape[0]},) labels of 0 and 1, got shape {y.shape}")
    w = np.ones(x.shape[0], np.float32) if weight is None else np.asarray(weight, np.float32)
    if w.shape != (x.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weight: expected ({x.shape[0]},) finite weights >= 0, got shape {w.shape}")
    for v, name in ((learning_rate, "learning_rate"), (momentum, "momentum"), (weight_decay, "weight_decay")):
        check_weight(v, name)
    iterations = check_int(iterations, "iterations")
    batch_size = check_int(batch_size, "batch_size")
    model = PairFilter.create(x.shape[1], widths=widths, seed=seed)
    module = model.module
    module.standardise.fit(x)
    module.to(device).train()
    opt = _nets.sgd(module, learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
    yt = torch.from_numpy(y.astype(np.float32))
    wt = torch.from_numpy(w)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _, _, idx in _nets.batches(x.shape[0], batch_size, iterations, np.random.default_rng(seed)):
        xb = torch.from_numpy(np.asarray(x[idx], np.float32)).to(device)
        loss = bce(module(xb), yt[idx].to(device), weight=wt[idx].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    return model
