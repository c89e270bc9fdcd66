"""Gradient descent on the input of a classification DCNN (GradSal Sec. 3.1, Eqs. 1-3).

The image is classified (label ``l``, pre-softmax outputs ``o``), then modified for ``T``
steps so that the ``l``-th output falls while the others stay clamped to ``o``:

* Eq. 1: ``F(X | l) = a_l + gamma / 2 * sum_{k != l} (a_k - o_k)^2``.
* Eq. 2: ``X(t+1) = X(t) - epsilon * max(dF/dX |_{X(t)}, 0)``: the negative gradients are
  floored, so pixels only ever decrease and ``X(0) - X(T) >= 0``.
* Eq. 3: the output-layer error signals ``e_i = gamma (a_i - o_i)`` (``i != l``) and
  ``e_l = 1``.  They are not written out by hand: ``torch.autograd.grad`` of Eq. 1
  back-propagates exactly these signals to the input layer.

Decisions the paper leaves open
-------------------------------
* **Space of the step.** The paper (MatConvNet VGG-16) steps on the image minus the mean
  pixel, i.e. in pixel units.  Here the step is taken on the RGB image scaled to [0, 1]
  (``X``), with the backbone's normalisation ``(X - mean) / std`` inside the autograd graph,
  so ``dF/dX`` is the gradient with respect to the pixels and the three channels are
  treated alike (a step in the normalised space would weigh each channel by ``1 / std``).
  ``X`` is not clipped to [0, 1] during the descent: the paper does not clip, and clipping
  would erase the signal at dark pixels.
* **Input resolution.** The whole image is resized (anti-aliased bilinear, no crop) to a
  square ``input_size`` by ``backbone.preprocess``; the difference map is resized back to
  the image by the caller.
* **Cost trace.** The value of Eq. 1 at every iterate ``X(0) .. X(T)`` is returned (one
  extra forward pass, no backward, for ``X(T)``), so that the descent can be checked.
"""

from __future__ import annotations

import numpy as np
import torch

from backbones import Backbone

__all__ = ["gradient_descent"]


def _check_model(model):
    for attr in ("preprocess", "mean", "std"):
        if not hasattr(model, attr):
            raise ValueError(
                "model must be a backbones.Backbone (with preprocess(), mean and std); "
                f"got {type(model).__name__} without '{attr}'"
            )


def _cost(logits, label, original, gamma):
    # Eq. 1: F(X|l) = a_l + gamma/2 * sum_{k != l} (a_k - o_k)^2.
    a = logits[0]
    penalty = (a - original) ** 2
    penalty = penalty.sum() - penalty[label]
    return a[label] + 0.5 * gamma * penalty


def gradient_descent(
    image: np.ndarray,
    model: Backbone,
    *,
    steps: int = 10,
    gamma: float = 0.01,
    epsilon: float = 0.01,
    input_size: int = 224,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Erase the recognised object from an image by gradient descent on the input.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    model : backbones.Backbone
        Differentiable ImageNet classifier; ``model.preprocess(image, size=...)`` gives the
        normalised NCHW tensor and ``model(x)`` the logits.
    steps : int, optional
        Number of gradient steps ``T`` (the paper: 5-10).
    gamma : float, optional
        Weight of the clamping penalty in Eq. 1.
    epsilon : float, optional
        Learning rate of Eq. 2, in units of the [0, 1] pixel scale per unit gradient.
    input_size : int, optional
        Side of the square network input.

    Returns
    -------
    difference : (input_size, input_size) ndarray of float32
        ``mean_RGB(X(0) - X(T))`` on the [0, 1] pixel scale, >= 0 (Algorithm 1, line 8).
    label : int
        Class ``l`` recognised in ``X(0)``.
    cost : (steps + 1,) ndarray of float64
        ``F(X(t) | l)`` for ``t = 0 .. T``.

    Notes
    -----
    Implements Eqs. 1-3 and lines 1-8 of Algorithm 1 of GradSal; see the module docstring.
    """
    _check_model(model)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0; got {epsilon}")
    if int(input_size) != input_size or input_size < 32:
        raise ValueError(f"input_size must be an integer >= 32; got {input_size!r}")

    mean = model.mean.view(1, 3, 1, 1)
    std = model.std.view(1, 3, 1, 1)
    with torch.no_grad():
        x0 = model.preprocess(image, size=int(input_size)) * std + mean   # pixels in [0, 1]
    x = x0.clone()
    costs = []
    label = None
    original = None
    with torch.enable_grad():
        for _ in range(int(steps)):
            x.requires_grad_(True)
            logits = model((x - mean) / std)
            if label is None:
                # Algorithm 1, line 1: recognise l from X(0); o are its pre-softmax outputs.
                original = logits.detach()[0]
                label = int(original.argmax())
            cost = _cost(logits, label, original, gamma)
            (grad,) = torch.autograd.grad(cost, x)
            costs.append(float(cost.detach()))
            with torch.no_grad():
                # Eq. 2: X <- X - eps * max(dF/dX, 0).
                x = x.detach() - epsilon * grad.clamp_min(0.0)
    with torch.no_grad():
        costs.append(float(_cost(model((x - mean) / std), label, original, gamma)))
        # Algorithm 1, line 8: average X(0) - X(T) over RGB.
        diff = (x0 - x).mean(dim=1)[0]
    return diff.cpu().numpy().astype(np.float32), label, np.asarray(costs, dtype=np.float64)
