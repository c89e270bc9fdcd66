"""Gradient descent on the DCNN input (GradSal Eqs. 1-3) with the real backbone."""

import inspect

import numpy as np
import pytest
import torch
from skimage import data

from gradsal import gradient_descent, saliency
from gradsal.descent import _cost

CAT_CLASSES = {281, 282, 283, 284, 285}


def _defaults():
    sig = inspect.signature(saliency).parameters
    return {k: sig[k].default for k in ("gamma", "epsilon", "input_size", "step_rule")}


def test_cost_of_eq1_decreases_on_chelsea_with_default_parameters(backbone):
    diff, label, cost = gradient_descent(data.chelsea(), backbone, steps=10, **_defaults())
    assert label in CAT_CLASSES                       # line 1: the object is recognised
    assert cost.shape == (11,)
    assert np.isfinite(cost).all()                    # every step's cost is a number
    assert cost[-1] < cost[0]                         # F(X(T)|l) < F(X(0)|l)
    assert np.all(np.diff(cost) < 0)                  # and at every step
    size = _defaults()["input_size"]
    assert diff.shape == (size, size) and diff.dtype == np.float32
    assert diff.min() >= 0.0                          # negative gradients floored: pixels only drop
    assert diff.max() > 0.0


def test_cost_at_x0_is_the_class_logit():
    # Eq. 1 at X(0): the penalty vanishes, F = a_l = o_l.
    logits = torch.tensor([[0.5, 3.0, -1.0]])
    assert float(_cost(logits, 1, logits[0], gamma=5.0)) == pytest.approx(3.0)
    moved = torch.tensor([[1.5, 2.0, -1.0]])
    # a_l + gamma/2 * (1.0^2 + 0^2)
    assert float(_cost(moved, 1, logits[0], gamma=4.0)) == pytest.approx(2.0 + 2.0)


def test_autograd_error_signals_match_eq3():
    # Eq. 3: dF/da_i = gamma (a_i - o_i) for i != l, 1 for i = l.
    o = torch.tensor([0.5, 3.0, -1.0])
    a = torch.tensor([[1.5, 2.0, -0.5]], requires_grad=True)
    (g,) = torch.autograd.grad(_cost(a, 1, o, gamma=2.0), a)
    np.testing.assert_allclose(g[0].numpy(), [2.0 * 1.0, 1.0, 2.0 * 0.5], rtol=1e-6)


def test_bad_arguments_raise(backbone):
    img = data.chelsea()
    with pytest.raises(ValueError):
        gradient_descent(img, backbone, steps=0)
    with pytest.raises(ValueError):
        gradient_descent(img, backbone, epsilon=0.0)
    with pytest.raises(ValueError):
        gradient_descent(img, object())
