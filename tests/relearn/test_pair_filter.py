"""The instance-pair filter (MIJR Sec. IV-B) learns a separable problem and round-trips as arrays."""

import json

import numpy as np
import pytest
import torch  # noqa: F401  (the torch import at collection, not in the first test's time)

from relearn import PairFilter, filter_pairs, train_pair_filter

SMALL = (32, 32, 16, 16, 8)


def _separable(n, seed):
    # two features decide the label with a margin; the other 18 are noise; scales and offsets as
    # raw tap activations (the filter standardises its inputs)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3 * n, 20)).astype(np.float32)
    s = x[:, 0] + x[:, 1]
    keep = np.abs(s) > 0.5
    x, s = x[keep][:n], s[keep][:n]
    return (x * 3 + 5).astype(np.float16), (s > 0).astype(np.int8)


def test_the_filter_learns_a_separable_problem():
    x, y = _separable(1500, 0)
    xt, yt = _separable(500, 1)
    f = train_pair_filter(x, y, widths=SMALL, learning_rate=0.05, iterations=500)
    p = filter_pairs(f, xt)
    assert p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert ((p > 0.5) == (yt == 1)).mean() > 0.97


def test_pair_weights_shift_the_decision_towards_the_heavier_class():
    # labels are pure noise: with the positives weighted 9:1 the filter says 1 almost everywhere
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = rng.integers(0, 2, 600)
    w = np.where(y == 1, 1.8, 0.2)
    p = filter_pairs(train_pair_filter(x, y, w, widths=(8, 8, 8, 8, 8), learning_rate=0.05, iterations=200), x)
    assert (p > 0.5).mean() > 0.9


def test_the_model_round_trips_through_float32_arrays_and_json_hparams():
    x, y = _separable(200, 2)
    f = train_pair_filter(x, y, widths=SMALL, learning_rate=0.05, iterations=20)
    arrays = f.state_arrays()
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert {"standardise.mean", "standardise.std", "classifier.weight"} <= set(arrays)
    g = PairFilter.from_state(arrays, json.loads(json.dumps(f.hparams)))
    np.testing.assert_array_equal(filter_pairs(g, x), filter_pairs(f, x))
    assert f.n_parameters() == g.n_parameters() > 0


def test_the_default_network_is_five_fc_layers_and_a_binary_classifier():
    f = PairFilter.create(2054)
    linears = [m for m in f.module.fc if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [128, 64, 32, 32, 16]
    assert f.module.classifier.out_features == 1


def test_bad_inputs_raise_clear_errors():
    x, y = _separable(50, 3)
    with pytest.raises(ValueError, match=r"labels: expected \(50,\) labels of 0 and 1"):
        train_pair_filter(x, np.full(50, 2), iterations=1)
    with pytest.raises(ValueError, match="weight"):
        train_pair_filter(x, y, -np.ones(50), iterations=1)
    with pytest.raises(ValueError, match="x: expected a non-empty"):
        train_pair_filter(x[:, 0], y, iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        train_pair_filter(x, y, iterations=0)
    f = PairFilter.create(20, widths=SMALL)
    with pytest.raises(ValueError, match=r"x: expected a \(P, 20\) float array"):
        filter_pairs(f, x[:, :5])
