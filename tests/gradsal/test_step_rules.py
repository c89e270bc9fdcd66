"""The step rules of Eq. 2 on a small differentiable classifier whose behaviour is known."""

import numpy as np
import pytest
import torch

from gradsal.descent import gradient_descent

SIZE = 32


class ToyClassifier:
    """A two-layer network on 32x32 images with the attributes gradient_descent needs.

    ``scale`` multiplies every logit: a pure rescaling of the cost, which a normalised step must
    ignore and a fixed step must follow.
    """

    def __init__(self, seed=0, n_classes=6, scale=1.0, sign=None):
        g = torch.Generator().manual_seed(seed)
        self.mean = torch.zeros(3)
        self.std = torch.ones(3)
        self.w1 = torch.randn(16, 3 * SIZE * SIZE, generator=g) / 40.0
        self.w2 = torch.randn(n_classes, 16, generator=g)
        self.scale = scale
        self.sign = sign

    def preprocess(self, image, *, size):
        assert image.shape[:2] == (size, size)
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0

    def __call__(self, x):
        if self.sign is not None:
            # Every logit a multiple of the mean pixel: dF/dX has one sign everywhere.
            return self.scale * self.sign * x.mean() * torch.arange(1.0, 4.0)[None]
        hidden = torch.tanh(x.reshape(1, -1) @ self.w1.T)
        return self.scale * hidden @ self.w2.T


def _image(seed=1):
    return np.random.default_rng(seed).integers(40, 220, size=(SIZE, SIZE, 3), dtype=np.uint8)


def _descend(model, **kw):
    return gradient_descent(_image(), model, input_size=SIZE, **kw)


@pytest.mark.parametrize("gamma", [0.1, 1.0, 10.0, 100.0])
def test_line_search_lowers_the_cost_at_every_step(gamma):
    diff, _, cost = _descend(ToyClassifier(), steps=8, gamma=gamma, epsilon=0.5, step_rule="line_search")
    assert cost.shape == (9,)
    assert np.all(np.diff(cost) <= 0.0)
    assert cost[-1] < cost[0]
    assert diff.min() >= 0.0 and diff.max() > 0.0


def test_line_search_falls_where_the_same_fixed_step_rises():
    # A step far too long for a strong clamp: Eq. 2 as printed overshoots and the cost rises;
    # searching along the same direction from the same first step does not.
    model = ToyClassifier()
    _, _, fixed = _descend(model, steps=5, gamma=100.0, epsilon=50.0, step_rule="fixed")
    _, _, searched = _descend(model, steps=5, gamma=100.0, epsilon=50.0, step_rule="line_search")
    assert fixed[-1] > fixed[0]
    assert np.all(np.diff(searched) <= 0.0) and searched[-1] < searched[0]


def test_normalised_step_moves_the_strongest_pixel_by_epsilon_whatever_the_cost_scale():
    eps = 0.03
    small, _, _ = _descend(ToyClassifier(scale=1.0), steps=1, gamma=0.0, epsilon=eps, step_rule="normalised")
    large, _, _ = _descend(ToyClassifier(scale=10.0), steps=1, gamma=0.0, epsilon=eps, step_rule="normalised")
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-7)
    # diff is averaged over RGB: the pixel whose three channels all moved by eps would read eps.
    assert 0.0 < small.max() <= eps + 1e-7
    assert small.max() >= eps / 3 - 1e-7


def test_fixed_step_follows_the_gradient_scale():
    small, _, _ = _descend(ToyClassifier(scale=1.0), steps=1, gamma=0.0, epsilon=0.01, step_rule="fixed")
    large, _, _ = _descend(ToyClassifier(scale=10.0), steps=1, gamma=0.0, epsilon=0.01, step_rule="fixed")
    # float32 pixels near 0.5: the differences carry ~1e-7 absolute rounding.
    np.testing.assert_allclose(large, 10.0 * small, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rule", ["fixed", "normalised", "line_search"])
def test_no_positive_gradient_leaves_the_image_unchanged(rule):
    # The recognised logit (class 0, -mean) rises as pixels darken: every dF/dX is negative,
    # and Eq. 2 floors it to zero.
    diff, label, cost = _descend(ToyClassifier(sign=-1.0), steps=4, gamma=0.0, epsilon=0.1, step_rule=rule)
    assert label == 0
    assert np.all(diff == 0.0)
    assert np.all(cost == cost[0])


def test_line_search_stops_when_no_step_lowers_the_cost():
    # With no halving allowed and a huge first step, the search cannot accept: X stays put.
    diff, _, cost = _descend(ToyClassifier(), steps=3, gamma=100.0, epsilon=50.0,
                             step_rule="line_search", max_halvings=0)
    assert np.all(diff == 0.0)
    assert np.all(cost == cost[0])


@pytest.mark.parametrize("kw, word", [({"step_rule": "adam"}, "step_rule"),
                                      ({"max_halvings": -1}, "max_halvings"),
                                      ({"max_halvings": 1.5}, "max_halvings"),
                                      ({"armijo": 0.0}, "armijo"),
                                      ({"armijo": 1.0}, "armijo")])
def test_bad_step_options_are_named(kw, word):
    with pytest.raises(ValueError, match=word):
        _descend(ToyClassifier(), steps=1, **kw)


class ObjectAndBackground:
    """Two outputs with known roles: the recognised class sees the whole image, the other only its
    right half (the 'background'). Darkening the right half lowers both; darkening the left half
    lowers the recognised class alone."""

    mean = torch.zeros(3)
    std = torch.ones(3)

    def preprocess(self, image, *, size):
        return ToyClassifier.preprocess(self, image, size=size)

    def __call__(self, x):
        return torch.stack([2.0 * x.mean(), x[..., SIZE // 2:].mean()])[None]


def _half_means(diff):
    return float(diff[:, :SIZE // 2].mean()), float(diff[:, SIZE // 2:].mean())


def test_the_clamp_keeps_the_background_the_other_output_sees():
    # Eq. 1's purpose: with gamma = 0 the descent darkens every pixel alike (the recognised output
    # weighs them alike); with the clamp on, once the right half's output has moved, its penalty
    # outweighs the recognised output's gradient there and only the left half keeps darkening.
    image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    free, label, _ = gradient_descent(image, ObjectAndBackground(), input_size=SIZE, steps=5, gamma=0.0,
                                      epsilon=0.05, step_rule="line_search")
    clamped, _, cost = gradient_descent(image, ObjectAndBackground(), input_size=SIZE, steps=5, gamma=10.0,
                                        epsilon=0.05, step_rule="line_search")
    assert label == 0
    left, right = _half_means(free)
    assert left == pytest.approx(right, rel=1e-5) and left > 0.0
    left, right = _half_means(clamped)
    assert right < 0.5 * left
    assert np.all(np.diff(cost) < 0.0)
