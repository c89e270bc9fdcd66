"""Joint re-learning (MIJR Sec. IV-C, Eq. 6-8): the boosting weight, trust ranking, learning."""

import json

import numpy as np
import pytest
import torch  # noqa: F401  (the torch import at collection, not in the first test's time)
from hypothesis import given
from hypothesis import strategies as st

from relearn import JointModel, boost_weight, predict_joint, rank_by_trust, train_joint

SMALL = (32, 16, 16, 8, 8)


def test_alpha_is_eq8():
    e = np.array([0.1, 0.25, 0.4])
    np.testing.assert_allclose(boost_weight(e), 0.5 * np.log((1 - e) / e))


def test_alpha_edge_cases_are_clipped():
    # e -> 0 is clipped to 0.01 (alpha 1/2 log 99); e >= 0.5 gives 0, never negative; NaN (no pair) 0
    np.testing.assert_allclose(boost_weight([0.0, 0.001, 0.5, 0.7, 1.0, np.nan]),
                               [0.5 * np.log(99)] * 2 + [0.0] * 4)
    assert boost_weight(0.0, min_error=0.1)[0] == pytest.approx(0.5 * np.log(9))


@given(st.floats(0.0, 1.0))
def test_alpha_is_bounded_and_decreasing(e):
    a = boost_weight([e, min(e + 0.01, 1.0)])
    assert 0.0 <= a[1] <= a[0] <= 0.5 * np.log(99) + 1e-12


def test_alpha_rejects_what_is_not_an_error_rate():
    with pytest.raises(ValueError, match=r"errors: expected error rates in \[0, 1\]"):
        boost_weight([0.2, -0.1])
    with pytest.raises(ValueError, match=r"min_error: expected a number in \(0, 0.5\)"):
        boost_weight([0.2], min_error=0.5)
    with pytest.raises(ValueError, match="min_error"):
        boost_weight([0.2], min_error=0)


def test_pairs_are_ranked_by_trust_and_missing_pairs_go_last():
    x = np.arange(3)[None, :, None] * np.ones((2, 3, 1))    # x = the neighbour's number
    valid = np.array([[True, True, True], [False, True, True]])
    trust = np.array([[0.2, 0.9, 0.6], [0.99, 0.3, 0.3]])
    g = np.array([[0.5, 0.6, 0.7], [0.1, 0.2, 0.3]])
    xr, delta, gr = rank_by_trust(x, valid, g, trust)
    np.testing.assert_array_equal(xr[:, :, 0], [[1, 2, 0], [1, 2, 0]])   # row 2: ties keep order
    np.testing.assert_array_equal(delta, [[True, True, False], [False, False, False]])
    np.testing.assert_allclose(gr, [[0.6, 0.7, 0.5], [0.2, 0.3, 0.1]])


def _problem(r, seed, m=3, d=6):
    # z is written in feature 0 of the pairs that pass the filter (with noise), and the opposite of
    # z in the pairs that do not: a joint head that listens to delta = 0 pairs gets it wrong
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, r)
    delta = rng.random((r, m)) < 0.6
    delta[~delta.any(1), 0] = True
    sign = np.where(delta, 1.0, -1.0) * (2 * z[:, None] - 1)
    x = rng.normal(size=(r, m, d))
    x[:, :, 0] = 2 * sign + 0.5 * rng.normal(size=(r, m))
    g = rng.uniform(0.2, 1.0, (r, m))
    return x.astype(np.float32), delta, g.astype(np.float32), z


def test_the_joint_model_learns_a_separable_problem_from_the_filtered_pairs():
    x, delta, g, z = _problem(800, 0)
    fit = train_joint(x, delta, g, z, widths=SMALL, learning_rate=0.05, iterations=300)
    xt, dt, gt, zt = _problem(400, 1)
    s, has = predict_joint(fit.model, xt, dt, gt)
    assert has.all() and ((s > 0.5) == (zt == 1)).mean() > 0.97
    # every classifier learned (Eq. 8 weights from their errors) and the loss fell
    assert (fit.errors[-1] < 0.1).all() and (np.asarray(fit.model.hparams["alpha"]) > 1.0).all()
    np.testing.assert_allclose(fit.alpha[0], 1.0)       # the first epoch's alpha_m
    np.testing.assert_allclose(fit.alpha[1], boost_weight(fit.errors[0]))
    assert fit.loss[-1] < fit.loss[0]


def test_pairs_that_do_not_pass_the_filter_do_not_change_the_joint_prediction():
    x, delta, g, z = _problem(50, 2)
    model = JointModel.create(x.shape[2], m=3, widths=SMALL)
    model.module.standardise.fit(x)
    s, _ = predict_joint(model, x, delta, g)
    x2 = x.copy()
    x2[~delta] = 100.0
    np.testing.assert_array_equal(predict_joint(model, x2, delta, g)[0], s)
    # Eq. 6 weights a pair by g: doubling every g leaves the weighted mean unchanged
    np.testing.assert_allclose(predict_joint(model, x, delta, 2 * g)[0], s, rtol=1e-5)
    none = np.zeros_like(delta)
    s0, has0 = predict_joint(model, x, none, g)
    assert not has0.any() and np.isnan(s0).all()


def test_a_classifier_with_no_pair_gets_alpha_zero_and_the_model_round_trips():
    x, delta, g, z = _problem(100, 3)
    delta[:, 2] = False
    fit = train_joint(x, delta, g, z, widths=SMALL, learning_rate=0.05, iterations=30)
    assert fit.model.hparams["alpha"][2] == 0.0 and fit.model.hparams["errors"][2] is None
    hp = json.loads(json.dumps(fit.model.hparams))
    arrays = fit.model.state_arrays()
    assert all(a.dtype == np.float32 for a in arrays.values())
    back = JointModel.from_state(arrays, hp)
    np.testing.assert_array_equal(predict_joint(back, x, delta, g)[0], predict_joint(fit.model, x, delta, g)[0])
    assert back.hparams["alpha"] == fit.model.hparams["alpha"]


@pytest.mark.parametrize("balanced", [True, False])
def test_with_an_offset_the_joint_model_learns_the_correction_of_the_prior(balanced):
    # a prior logit right on two rows in three, wrong (and sure) on the rest, which feature 0 tells
    x, delta, g, z = _problem(800, 5)
    rng = np.random.default_rng(5)
    wrong = rng.random(z.size) < 1 / 3
    offset = np.where((z == 1) != wrong, 3.0, -3.0)
    fit = train_joint(x, delta, g, z, offset=offset, balanced=balanced, widths=SMALL, learning_rate=0.05,
                      iterations=300)
    assert fit.model.hparams["residual"] is True
    s, _ = predict_joint(fit.model, x, delta, g, offset=offset)
    assert ((s > 0.5) == (z == 1)).mean() > 0.95 and ((s > 0.5) == (z == 1))[wrong].mean() > 0.9
    # the joint logit alone is the correction: against the prior where it was wrong
    corr, _ = predict_joint(fit.model, x, delta, g)
    assert ((corr > 0.5) == (offset < 0))[wrong].mean() > 0.9
    back = JointModel.from_state(fit.model.state_arrays(), json.loads(json.dumps(fit.model.hparams)))
    assert back.hparams["residual"] is True
    assert JointModel.create(x.shape[2], m=3, widths=SMALL).hparams["residual"] is False
    with pytest.raises(ValueError, match=r"offset: expected \(800,\) finite logits"):
        predict_joint(fit.model, x, delta, g, offset=offset[:5])


def test_the_balanced_loss_weighs_each_class_half_and_the_plain_one_each_target_once():
    # features without information, one target in ten salient: the balanced loss is minimised at
    # p = 0.5, the plain one at the salient share 0.1
    rng = np.random.default_rng(6)
    x = rng.normal(size=(600, 3, 6)).astype(np.float32)
    delta = np.ones((600, 3), bool)
    g = np.ones((600, 3), np.float32)
    z = (np.arange(600) % 10 == 0).astype(int)
    mean = {}
    for balanced in (True, False):
        fit = train_joint(x, delta, g, z, balanced=balanced, widths=SMALL, learning_rate=0.01, iterations=300)
        mean[balanced] = float(predict_joint(fit.model, x, delta, g)[0].mean())
    assert abs(mean[True] - 0.5) < 0.15 and abs(mean[False] - 0.1) < 0.08


def test_bad_inputs_raise_clear_errors():
    x, delta, g, z = _problem(20, 4)
    with pytest.raises(ValueError, match="delta, similarity: expected shape"):
        train_joint(x, delta[:, :2], g, z, iterations=1)
    with pytest.raises(ValueError, match="similarity: expected finite values >= 0"):
        train_joint(x, delta, -g, z, iterations=1)
    with pytest.raises(ValueError, match=r"z: expected \(20,\) binary labels"):
        train_joint(x, delta, g, z[:5], iterations=1)
    model = JointModel.create(x.shape[2] + 1, m=3, widths=SMALL)
    with pytest.raises(ValueError, match=r"x: expected \(R, 3, 7\) like the model"):
        predict_joint(model, x, delta, g)
    with pytest.raises(ValueError, match="x, valid, similarity, trust"):
        rank_by_trust(x, delta, g, g[:, :1])
