"""Joint saliency re-learning: M boosted binary classifiers and their joint head (MIJR Sec. IV-C).

Every target superpixel ``n`` has up to ``M = 5`` instance pairs, one per retrieved image. They
are ranked by trust, the instance-pair filter's probability, in descending order
(:func:`rank_by_trust`), and the ``m``-th binary saliency classifier learns from the ``m``-th
ranked pair of every target whose pair passed the filter (``delta_m = 1``). Each classifier is
"FC5" (five Linear + ReLU layers) and a Linear binary classifier; ``w_m`` is the output of its
last FC layer. The joint head::

    p_n = h( v^T u_n + b ),  u_n = sum_m delta_m g_m w_m / sum_m delta_m g_m        (Eq. 6)

    L_joint = sigma(Z, p)                                                          (Eq. 6)
    L_final = L_joint + sum_{m=1}^{M} alpha_m L_m                                  (Eq. 7)
    alpha_m = 1/2 log((1 - e_m) / e_m)                                             (Eq. 8)

``h`` the sigmoid, ``g_m`` the alignment similarity (:func:`relearn.alignment_similarity`),
``Z`` the superpixel's binary ground truth, ``sigma`` the class-balanced ("class-based")
cross-entropy of DSS / HED (each class carries half the loss), ``L_m`` the same loss of the
``m``-th classifier on its pairs, ``e_m`` its class-balanced training error.

Hyper-parameters: SGD, momentum 0.9, weight decay 0.005, learning rate 0.001, 80 000 iterations
(Sec. V-B); the filter's FC widths (``FC5_WIDTHS``, chosen in :mod:`relearn.pair_filter`).

Decisions the paper leaves open
-------------------------------
* **The joint head.** "The aforementioned FC5 full connected layers followed with an additional
  binary classifier": the classifiers' FC5 outputs ``w_m`` are combined as Eq. 6 writes and one
  additional Linear layer ``(v, b)`` makes the joint logit. The sum is divided by
  ``sum_m delta_m g_m`` (a weighted mean): the number of pairs that pass the filter varies from
  0 to M per superpixel, and an unnormalised sum would change the head's input scale with it. A
  target with no pair passing the filter has no joint prediction (the prior stays there,
  :func:`relearn.relearn_image`).
* **e_m and alpha_m.** ``e_m`` is measured on the training pairs of classifier ``m`` during each
  epoch (the batches' class-balanced error, as the network trains); ``alpha_m`` for the next
  epoch follows Eq. 8. The first epoch uses ``alpha_m = 1``: an untrained classifier has
  ``e_m = 0.5``, ``alpha_m = 0`` would never train it. Edge cases (:func:`boost_weight`): ``e_m``
  is clipped to ``[0.01, 0.5]``, so ``alpha_m`` lies in ``[0, 1/2 log 99 = 2.30]``: a perfect
  classifier does not make the loss infinite, and one no better than chance (``e_m >= 0.5``)
  gets weight 0, never a negative weight that would train it to be wrong. A classifier with no
  training pair has ``e_m`` undefined (NaN) and ``alpha_m = 0``.
* **Residual** (an option, ``offset`` of :func:`train_joint`; not in the paper): a fixed logit per
  target, the prior's, is added to the joint logit and to every classifier's logit inside the
  losses, so the networks learn how far the prior's odds should move, not the saliency from
  scratch. The pair inputs already hold the prior's superpixel mean (a context value), so a
  model trained without the offset predicts the whole posterior; merging that with the prior by
  multiplying odds counts the prior twice. With the offset, ``sigmoid(offset + joint logit)`` is
  the posterior and the joint logit alone the correction (:func:`predict_joint`).
* **Independent classifiers** (no shared layers: "parallel learn m binary saliency
  classifiers"), one shared input standardisation.

References
----------
MIJR (``../shared/papers/mijr-multiple-instance-joint-relearning.txt``), Sec. IV-C, V-B.
Q. Hou et al., "Deeply supervised salient object detection with short connections" (DSS), CVPR 2017.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from promote import _taps
from relearn import _nets
from superpixels.validation import check_int, check_weight

__all__ = ["JointModel", "MIN_ERROR", "boost_weight", "predict_joint", "rank_by_trust", "train_joint"]

MIN_ERROR = 0.01  # e_m clip: alpha_m <= 1/2 log(99)


def boost_weight(errors, *, min_error: float = MIN_ERROR) -> np.ndarray:
    """Eq. 8: ``alpha_m = 1/2 log((1 - e_m) / e_m)``, ``e_m`` clipped to ``[min_error, 0.5]``.

    Parameters
    ----------
    errors : float or (M,) array_like
        Classifier errors in ``[0, 1]``; NaN (no training pair) gives 0.
    min_error : float, optional
        Lower clip of ``e_m`` (in ``(0, 0.5)``), bounding ``alpha_m``.

    Returns
    -------
    (M,) ndarray of float64
        ``alpha_m`` in ``[0, 1/2 log((1 - min_error) / min_error)]``.
    """
    e = np.atleast_1d(np.asarray(errors, np.float64))
    if e.ndim != 1:
        raise ValueError(f"errors: expected a number or a 1-D array, got shape {e.shape}")
    known = ~np.isnan(e)
    if (e[known] < 0).any() or (e[known] > 1).any():
        raise ValueError(f"errors: expected error rates in [0, 1], got {e[known].min():.4g} .. {e[known].max():.4g}")
    min_error = check_weight(min_error, "min_error", positive=True)
    if min_error >= 0.5:
        raise ValueError(f"min_error: expected a number in (0, 0.5), got {min_error}")
    c = np.clip(np.where(known, e, 0.5), min_error, 0.5)
    return 0.5 * np.log((1.0 - c) / c)  # Eq. 8


def rank_by_trust(x: np.ndarray, valid: np.ndarray, similarity: np.ndarray, trust: np.ndarray, *,
                  threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order each target's pairs by the filter's trust, descending, and set ``delta``.

    Parameters
    ----------
    x : (R, M, D) ndarray
        Pair inputs.
    valid : (R, M) ndarray of bool
        Pairs that exist.
    similarity : (R, M) ndarray
        ``g`` per pair.
    trust : (R, M) ndarray
        The filter's probability per pair.
    threshold : float, optional
        ``delta = trust > threshold`` (and the pair exists).

    Returns
    -------
    x, delta, similarity : (R, M, D), (R, M) bool, (R, M) ndarray
        Slot ``m`` holds the ``m``-th most trusted pair (ties: neighbour order); missing pairs last.
    """
    x = np.asarray(x)
    valid = np.asarray(valid, bool)
    trust = np.asarray(trust, np.float64)
    similarity = np.asarray(similarity, np.float32)
    if x.ndim != 3 or valid.shape != x.shape[:2] or trust.shape != valid.shape or similarity.shape != valid.shape:
        raise ValueError(f"x, valid, similarity, trust: expected (R, M, D) and three (R, M) arrays, got "
                         f"{x.shape}, {valid.shape}, {similarity.shape}, {trust.shape}")
    key = np.where(valid, trust, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")
    delta = np.take_along_axis(valid & (trust > threshold), order, 1)
    return (np.take_along_axis(x, order[:, :, None], 1), delta,
            np.take_along_axis(similarity, order, 1))


def _build(in_dim: int, widths: Sequence[int], m: int):
    torch = _nets.torch_module()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.standardise = _nets.standardiser(in_dim)
            self.trunks = nn.ModuleList(_nets.fc_stack(in_dim, widths) for _ in range(m))
            self.heads = nn.ModuleList(nn.Linear(int(widths[-1]), 1) for _ in range(m))
            self.joint = nn.Linear(int(widths[-1]), 1)

        def forward(self, x, delta, g):
            """(B, M, D), (B, M), (B, M) -> classifier logits (B, M), joint logit (B,), weight sum (B,)."""
            xs = self.standardise(x)
            w = torch.stack([t(xs[:, k]) for k, t in enumerate(self.trunks)], 1)     # (B, M, H): w_m
            logits = torch.cat([hd(w[:, k]) for k, hd in enumerate(self.heads)], 1)   # (B, M)
            c = delta * g                                                              # delta_m g_m
            total = c.sum(1)
            u = (c[:, :, None] * w).sum(1) / total.clamp_min(1e-12)[:, None]           # Eq. 6 (mean)
            return logits, self.joint(u)[:, 0], total

    return Net()


@dataclass
class JointModel(_taps.ArraysModel):
    """The M saliency classifiers and the joint head (plain arrays, no pickle).

    Attributes
    ----------
    module : torch.nn.Module
        ``standardise``, ``trunks`` (M FC5 stacks), ``heads`` (M Linear), ``joint`` (Linear).
    hparams : dict
        ``in_dim``, ``widths``, ``m``, ``residual`` (trained with the prior's logit as an offset:
        the joint logit is a correction of the prior); after training ``alpha`` and ``errors``
        (per classifier, the last epoch's; error None: no training pair).
    """

    module: object
    hparams: dict

    @classmethod
    def create(cls, in_dim: int, *, m: int = 5, widths: Sequence[int] = _nets.FC5_WIDTHS,
               seed: int = 0) -> "JointModel":
        """A freshly initialised (seeded) model for ``m`` pairs of ``in_dim``-long inputs per target."""
        in_dim = check_int(in_dim, "in_dim")
        m = check_int(m, "m")
        widths = [check_int(w, "widths") for w in widths]
        if not widths:
            raise ValueError("widths: expected at least one layer width, got none")
        _nets.torch_module().manual_seed(int(seed))
        module = _build(in_dim, widths, m)
        _nets.he_init(module)
        return cls(module, {"in_dim": in_dim, "widths": widths, "m": m,
                            "alpha": [1.0] * m, "errors": [None] * m, "residual": False})

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], hparams: Mapping) -> "JointModel":
        """Rebuild from :meth:`state_arrays` and :attr:`hparams` (a model file's content)."""
        net = cls.create(hparams["in_dim"], m=hparams["m"], widths=hparams["widths"])
        net.hparams.update({k: list(hparams[k]) for k in ("alpha", "errors") if k in hparams})
        net.hparams["residual"] = bool(hparams.get("residual", False))  # models before it: False
        _taps.load_arrays(net.module, arrays)
        return net


def _check_inputs(x, delta, similarity, hp=None):
    x = np.asarray(x)
    delta = np.asarray(delta)
    similarity = np.asarray(similarity, np.float32)
    if x.ndim != 3 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x: expected a non-empty (R, M, D) float array, got {x.dtype} array of shape {x.shape}")
    if hp is not None and x.shape[1:] != (hp["m"], hp["in_dim"]):
        raise ValueError(f"x: expected (R, {hp['m']}, {hp['in_dim']}) like the model, got {x.shape}")
    if delta.shape != x.shape[:2] or similarity.shape != x.shape[:2]:
        raise ValueError(f"delta, similarity: expected shape {x.shape[:2]}, got {delta.shape}, {similarity.shape}")
    if not np.isin(delta, (0, 1)).all():
        raise ValueError("delta: expected 0 / 1 (or bool) filter outputs")
    if not np.isfinite(similarity).all() or (similarity < 0).any():
        raise ValueError("similarity: expected finite values >= 0")
    return x, delta.astype(np.float32), similarity


def _check_offset(offset, n_rows: int) -> np.ndarray:
    """(R,) float64 logits; zeros for None."""
    if offset is None:
        return np.zeros(n_rows, np.float64)
    off = np.asarray(offset, np.float64)
    if off.shape != (n_rows,) or not np.isfinite(off).all():
        raise ValueError(f"offset: expected ({n_rows},) finite logits, got shape {off.shape}")
    return off


def predict_joint(model: JointModel, x: np.ndarray, delta: np.ndarray, similarity: np.ndarray, *,
                  offset: np.ndarray | None = None, batch_size: int = 4096,
                  device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The joint re-learned saliency of targets (Eq. 6).

    Parameters
    ----------
    model : JointModel
    x, delta, similarity : (R, M, D), (R, M), (R, M) ndarray
        Ranked pair inputs, filter outputs and ``g`` (:func:`rank_by_trust`).
    offset : (R,) ndarray of float, optional
        A logit added to the joint logit before ``h``: the prior's logit for a model trained
        with one (``hparams["residual"]``, :func:`train_joint`), whose joint logit is then a
        correction of the prior. None: ``h`` of the joint logit alone.
    batch_size : int, optional
        Targets per forward pass.
    device : str, optional
        Torch device.

    Returns
    -------
    score : (R,) ndarray of float32
        ``h(...)`` in [0, 1]; NaN where no pair passed the filter.
    has_pair : (R,) ndarray of bool
        ``sum_m delta_m g_m > 0``.
    """
    torch = _nets.torch_module()
    x, delta, similarity = _check_inputs(x, delta, similarity, model.hparams)
    off = _check_offset(offset, x.shape[0])
    batch_size = check_int(batch_size, "batch_size")
    module = model.module.to(device).eval()
    score = np.empty(x.shape[0], np.float32)
    has = np.empty(x.shape[0], bool)
    with torch.inference_mode():
        for s in range(0, x.shape[0], batch_size):
            sl = slice(s, s + batch_size)
            args = [torch.from_numpy(np.ascontiguousarray(a[sl], np.float32)).to(device)
                    for a in (x, delta, similarity)]
            _, joint, total = module(*args)
            score[sl] = torch.sigmoid(joint.double().cpu() + torch.from_numpy(off[sl])).numpy()
            has[sl] = (total > 0).cpu().numpy()
    score[~has] = np.nan
    return score, has


@dataclass(frozen=True)
class JointTraining:
    """Result of :func:`train_joint`: the model and the per-epoch record.

    Attributes
    ----------
    model : JointModel
    loss : (E,) ndarray of float64
        Mean ``L_final`` per epoch (Eq. 7).
    errors, alpha : (E, M) ndarray of float64
        ``e_m`` measured during each epoch and the ``alpha_m`` used in it.
    """

    model: JointModel
    loss: np.ndarray
    errors: np.ndarray
    alpha: np.ndarray


def train_joint(
    x: np.ndarray,
    delta: np.ndarray,
    similarity: np.ndarray,
    z: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    balanced: bool = True,
    widths: Sequence[int] = _nets.FC5_WIDTHS,
    learning_rate: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 5e-3,
    iterations: int = 80_000,
    batch_size: int = 64,
    min_error: float = MIN_ERROR,
    seed: int = 0,
    device: str = "cpu",
) -> JointTraining:
    """Train the M classifiers and the joint head on filtered, ranked pairs (Eq. 6-8).

    Parameters
    ----------
    x : (R, M, D) ndarray of float
        Ranked pair inputs per target superpixel (float16 accepted; cast per batch).
    delta : (R, M) ndarray of bool
        Filter outputs of the ranked pairs; classifier ``m`` learns from rows with ``delta_m``.
    similarity : (R, M) ndarray of float
        ``g`` of the ranked pairs.
    z : (R,) ndarray of bool
        Binary saliency ground truth of each target superpixel.
    offset : (R,) ndarray of float, optional
        A fixed logit per target added to the joint logit and to every classifier's logit in
        the losses: the prior's logit, so that the networks learn a correction of the prior
        (module notes, *Residual*; recorded as ``hparams["residual"]``). None: no offset (the paper).
    balanced : bool, optional
        The class-balanced cross-entropy of the paper (each class half the loss); False: plain
        cross-entropy, every target weighing 1 (the errors ``e_m`` likewise).
    widths : sequence of int, optional
        FC widths of each classifier (five: FC5).
    learning_rate, momentum, weight_decay : float, optional
        SGD (paper: 0.001, 0.9, 0.005).
    iterations, batch_size : int, optional
        SGD steps (paper: 80 000) and targets per step.
    min_error : float, optional
        Lower clip of ``e_m`` in Eq. 8 (:func:`boost_weight`).
    seed : int, optional
        Initialisation and batch order.
    device : str, optional
        Torch device.

    Returns
    -------
    JointTraining
    """
    torch = _nets.torch_module()
    x, delta, similarity = _check_inputs(x, delta, similarity)
    z = np.asarray(z)
    if z.shape != (x.shape[0],) or not np.isin(z, (0, 1)).all():
        raise ValueError(f"z: expected ({x.shape[0]},) binary labels, got shape {z.shape}")
    for v, name in ((learning_rate, "learning_rate"), (momentum, "momentum"), (weight_decay, "weight_decay")):
        check_weight(v, name)
    iterations = check_int(iterations, "iterations")
    batch_size = check_int(batch_size, "batch_size")
    boost_weight(0.5, min_error=min_error)  # validates min_error
    off_np = _check_offset(offset, x.shape[0]).astype(np.float32)
    n_rows, m = x.shape[:2]
    model = JointModel.create(x.shape[2], m=m, widths=widths, seed=seed)
    model.hparams["residual"] = offset is not None
    module = model.module
    module.standardise.fit(x[delta > 0] if (delta > 0).any() else x.reshape(-1, x.shape[2]))
    module.to(device).train()
    opt = _nets.sgd(module, learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
    has_pair = (delta * similarity).sum(1) > 0
    # class-balanced weights of the joint loss and of each classifier's loss (sigma of Eq. 6)
    if balanced:
        wj = _nets.balanced_weights(z[has_pair])
        wm = [_nets.balanced_weights(z[delta[:, k] > 0]) for k in range(m)]
    else:
        wj, wm = (1.0, 1.0), [(1.0, 1.0)] * m
    zt = torch.from_numpy(z.astype(np.float32))
    offt = torch.from_numpy(off_np)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (delta, similarity)]
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def balanced(logit, target, mask, w):
        weight = torch.where(target > 0, w[0], w[1]) * mask
        return (bce(logit, target, reduction="none") * weight).sum() / mask.sum().clamp_min(1.0)

    alpha = np.ones(m)
    wrong, seen = np.zeros(m), np.zeros(m)
    epoch_loss, losses, errors_hist, alpha_hist = [], [], [], []
    for _, end, idx in _nets.batches(n_rows, batch_size, iterations, np.random.default_rng(seed)):
        xb = torch.from_numpy(np.asarray(x[idx], np.float32)).to(device)
        db, gb = (t[idx].to(device) for t in tensors)
        zb = zt[idx].to(device)
        ob = offt[idx].to(device)
        logits, joint, total = module(xb, db, gb)
        logits, joint = logits + ob[:, None], joint + ob
        loss = balanced(joint, zb, (total > 0).float(), wj)                       # L_joint (Eq. 6)
        for k in range(m):
            if alpha[k] > 0:
                loss = loss + float(alpha[k]) * balanced(logits[:, k], zb, db[:, k], wm[k])  # Eq. 7
        opt.zero_grad()
        loss.backward()
        opt.step()
        epoch_loss.append(float(loss.detach()))
        with torch.no_grad():
            wrong_b = ((logits > 0).float() != zb[:, None]).float()
            cls_w = torch.stack([torch.where(zb > 0, w[0], w[1]) for w in wm], 1) * db
            wrong += (wrong_b * cls_w).sum(0).cpu().numpy()
            seen += cls_w.sum(0).cpu().numpy()
        if end:  # e_m of this epoch -> alpha_m of the next (Eq. 8)
            with np.errstate(invalid="ignore", divide="ignore"):
                e = np.where(seen > 0, wrong / seen, np.nan)
            losses.append(float(np.mean(epoch_loss)))
            errors_hist.append(e)
            alpha_hist.append(alpha.copy())
            alpha = boost_weight(e, min_error=min_error)
            wrong[:], seen[:], epoch_loss = 0.0, 0.0, []
    if epoch_loss:  # a last, partial epoch
        with np.errstate(invalid="ignore", divide="ignore"):
            e = np.where(seen > 0, wrong / seen, np.nan)
        losses.append(float(np.mean(epoch_loss)))
        errors_hist.append(e)
        alpha_hist.append(alpha.copy())
        alpha = boost_weight(e, min_error=min_error)
    module.eval()
    model.hparams["alpha"] = [float(a) for a in alpha]
    # JSON-able: a classifier without training pairs has error None
    model.hparams["errors"] = [None if np.isnan(v) else float(v) for v in errors_hist[-1]]
    return JointTraining(model, np.asarray(losses), np.asarray(errors_hist), np.asarray(alpha_hist))
