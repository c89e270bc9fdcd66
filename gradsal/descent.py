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
* **Step size (the step rule).** Eq. 2 as printed, ``X <- X - eps max(dF/dX, 0)``
  (``step_rule="fixed"``), moves each pixel by ``eps`` times its gradient, so the step's length
  follows the gradient's scale, which differs between networks, images and iterations.  With
  the clamping term on, that overshoots: the penalty of Eq. 1 sums 999 squared logit changes,
  and darkening the object moves all logits together, so beyond a very small step the penalty
  grows faster than ``a_l`` falls and ``F`` *rises* (measured with EfficientNet-Lite0 at
  ``gamma >= 0.1``, ``benchmarks/results/ablate_gradsal_tune.md``).  Two scaled rules keep
  Eq. 2's direction ``max(dF/dX, 0)`` and size the step instead:

  - ``"normalised"``: the direction is divided by its largest value, so ``eps`` is the largest
    pixel change of one step;
  - ``"line_search"``: the normalised direction with backtracking (Armijo): the step starts at
    twice the last accepted one (at most ``eps``) and is halved until
    ``F(X - s d) <= F(X) - c s <dF/dX, d>``.  ``d = max(g, 0) / max(g)`` is a descent
    direction (``<g, d> = sum max(g, 0)^2 / max(g) > 0``), so a short enough step is always
    accepted and ``F`` falls at every step: the minimisation Algorithm 1 describes, for any
    ``gamma``.  When no step down to ``eps / 2^max_halvings`` is accepted (or no gradient is
    positive), ``X`` stays where it is for the remaining iterations.

* **Cost trace.** The value of Eq. 1 at every iterate ``X(0) .. X(T)`` is returned, so that
  the descent can be checked (the forward pass at each accepted iterate is the one whose
  gradient gives the next step: no pass is spent on the trace).
"""

from __future__ import annotations

import numpy as np
import torch

from backbones import Backbone

__all__ = ["STEP_RULES", "gradient_descent"]


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


STEP_RULES = ("fixed", "normalised", "line_search")


def _direction(grad):
    """Eq. 2's direction ``max(dF/dX, 0)`` and its largest value (the scaled rules divide by it)."""
    positive = grad.clamp_min(0.0)
    peak = float(positive.max())
    return positive, peak


def gradient_descent(
    image: np.ndarray,
    model: Backbone,
    *,
    steps: int = 10,
    gamma: float = 3.0,
    epsilon: float = 0.02,
    input_size: int = 224,
    step_rule: str = "line_search",
    max_halvings: int = 20,
    armijo: float = 1e-4,
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
        Step of Eq. 2 on the [0, 1] pixel scale: per unit gradient for ``step_rule="fixed"``;
        the largest pixel change of one step for ``"normalised"``; the first step tried for
        ``"line_search"``.
    input_size : int, optional
        Side of the square network input.
    step_rule : {"fixed", "normalised", "line_search"}, optional
        How the step of Eq. 2 is sized (see the module docstring).
    max_halvings : int, optional
        ``"line_search"`` only: the step is halved at most this many times; when no tried step
        lowers ``F`` enough the descent stops and ``X`` stays where it is.
    armijo : float, optional
        ``"line_search"`` only: the sufficient-decrease constant ``c`` of the Armijo test.

    Returns
    -------
    difference : (input_size, input_size) ndarray of float32
        ``mean_RGB(X(0) - X(T))`` on the [0, 1] pixel scale, >= 0 (Algorithm 1, line 8).
    label : int
        Class ``l`` recognised in ``X(0)``.
    cost : (steps + 1,) ndarray of float64
        ``F(X(t) | l)`` for ``t = 0 .. T`` (with ``"line_search"``, after an early stop the
        last value repeats: ``X`` no longer moves).

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
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {', '.join(STEP_RULES)}; got {step_rule!r}")
    if int(max_halvings) != max_halvings or max_halvings < 0:
        raise ValueError(f"max_halvings must be an integer >= 0; got {max_halvings!r}")
    if not 0.0 < armijo < 1.0:
        raise ValueError(f"armijo must be in (0, 1); got {armijo}")

    mean = model.mean.view(1, 3, 1, 1)
    std = model.std.view(1, 3, 1, 1)
    with torch.no_grad():
        x0 = model.preprocess(image, size=int(input_size)) * std + mean   # pixels in [0, 1]

    def evaluate(x):
        """F(X|l) at x with its graph, for the gradient."""
        return _cost(model((x - mean) / std), label, original, gamma)

    with torch.enable_grad():
        x = x0.clone().requires_grad_(True)
        logits = model((x - mean) / std)
        # Algorithm 1, line 1: recognise l from X(0); o are its pre-softmax outputs.
        original = logits.detach()[0]
        label = int(original.argmax())
        cost = _cost(logits, label, original, gamma)
        costs = [float(cost.detach())]
        stopped = False
        next_step = float(epsilon)
        for _ in range(int(steps)):
            if stopped:
                costs.append(costs[-1])
                continue
            (grad,) = torch.autograd.grad(cost, x)
            direction, peak = _direction(grad)
            if peak <= 0.0:
                # No positive gradient: Eq. 2 leaves X unchanged from here on.
                stopped = True
                costs.append(costs[-1])
                continue
            x_now = x.detach()
            if step_rule == "fixed":
                # Eq. 2: X <- X - eps * max(dF/dX, 0).
                x = (x_now - epsilon * direction).requires_grad_(True)
                cost = evaluate(x)
            else:
                # Eq. 2's direction scaled so that its largest pixel change is the step.
                direction = direction / peak
                step = float(epsilon) if step_rule == "normalised" else next_step
                if step_rule == "normalised":
                    x = (x_now - step * direction).requires_grad_(True)
                    cost = evaluate(x)
                else:
                    # Backtracking (Armijo): F(X - s d) <= F(X) - c s <grad, d>, with
                    # <grad, d> = sum max(g, 0)^2 / peak > 0, so d is a descent direction and a
                    # small enough s is always accepted in exact arithmetic.
                    slope = float((grad * direction).sum())
                    for _try in range(int(max_halvings) + 1):
                        trial = (x_now - step * direction).requires_grad_(True)
                        trial_cost = evaluate(trial)
                        if float(trial_cost.detach()) <= costs[-1] - armijo * step * slope:
                            break
                        step *= 0.5
                    else:
                        stopped = True
                        x = x_now.requires_grad_(True)
                        costs.append(costs[-1])
                        continue
                    x, cost = trial, trial_cost
                    # The next search starts from twice the accepted step (at most epsilon), so
                    # a small step found once is not searched down to again at every iteration.
                    next_step = min(float(epsilon), 2.0 * step)
            costs.append(float(cost.detach()))
    with torch.no_grad():
        # Algorithm 1, line 8: average X(0) - X(T) over RGB.
        diff = (x0 - x.detach()).mean(dim=1)[0]
    return diff.cpu().numpy().astype(np.float32), label, np.asarray(costs, dtype=np.float64)
