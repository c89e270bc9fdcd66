"""LPS on small synthetic inputs whose right answer is known (Eq. 3, Eq. 5, Alg. 1-2)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import binary_dilation, binary_erosion

from promote.lps import (
    AnchorNetwork,
    iterate_prior,
    lps_promote,
    merge_with_prior,
    nearest_anchor_probability,
    region_anchor,
    train_anchor_network,
)

STRIDES = {"s4": 4, "s8": 8, "s16": 16}
SIZE = 64  # network input side: a 16 x 16 embedding grid


def test_eq3_probabilities_sum_to_one_and_favour_the_nearer_anchor():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 5, 7))
    fg, bg = rng.normal(size=6), rng.normal(size=6)
    p = nearest_anchor_probability(emb, fg, bg)
    q = nearest_anchor_probability(emb, bg, fg)  # the background's probability
    np.testing.assert_allclose(p + q, 1.0, atol=1e-6)
    d_fg = np.linalg.norm(emb - fg[:, None, None], axis=0)
    d_bg = np.linalg.norm(emb - bg[:, None, None], axis=0)
    assert ((p > 0.5) == (d_fg < d_bg)).all()
    # On the anchor itself the salient probability is the softmax of (0, -||fg - bg||).
    at = nearest_anchor_probability(np.broadcast_to(fg[:, None, None], (6, 1, 1)), fg, bg)
    np.testing.assert_allclose(at[0, 0], 1 / (1 + np.exp(-np.linalg.norm(fg - bg))), rtol=1e-6)


def test_region_anchor_is_the_weighted_mean():
    emb = np.zeros((2, 2, 2))
    emb[:, 0, 0] = [1, 3]
    emb[:, 1, 1] = [5, 7]
    w = np.array([[1.0, 0], [0, 3.0]])
    np.testing.assert_allclose(region_anchor(emb, w), [(1 + 15) / 4, (3 + 21) / 4])


def test_eq5_first_iteration_is_z_and_later_ones_average():
    prior = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    seen = []

    def step(y):
        seen.append(y.copy())
        return np.full_like(y, 0.25 * len(seen))  # Z(0) = .25, Z(1) = .5, Z(2) = .75

    np.testing.assert_allclose(iterate_prior(prior, step, 1), 0.25)  # the prior is replaced: Y(1) = Z(0)
    seen.clear()
    y3 = iterate_prior(prior, step, 3)
    np.testing.assert_allclose(y3, (0.25 + 0.5 + 0.75) / 3, rtol=1e-6)  # Y(T) = mean of Z(0..T-1)
    np.testing.assert_array_equal(seen[0], prior)
    with pytest.raises(ValueError, match="iterations"):
        iterate_prior(prior, step, 0)


def _synthetic(rng, n):
    """Features whose channels carry the mask (separable embeddings), and the masks."""
    feats, masks = [], []
    for _ in range(n):
        mask = np.zeros((SIZE, SIZE), bool)
        y, x = rng.integers(8, 40, size=2)
        mask[y:y + rng.integers(12, 24), x:x + rng.integers(12, 24)] = True
        f = {}
        for tap, s in STRIDES.items():
            side = SIZE // s
            m = mask.reshape(side, s, side, s).mean(axis=(1, 3))
            sig = np.stack([m, 1 - m, m * 0.5, rng.normal(0, 0.05, m.shape)])
            f[tap] = (sig + rng.normal(0, 0.05, sig.shape)).astype(np.float16)
        feats.append(f)
        masks.append(mask)
    return feats, masks


@pytest.fixture(scope="module")
def trained():
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    feats, masks = _synthetic(rng, 12)
    res = train_anchor_network(feats, masks, tap_strides=STRIDES, input_size=SIZE, channels=8, dim=8,
                               epochs=30, batch_size=4, learning_rate=1e-2, seed=0)
    return res, rng


def test_training_lowers_the_loss(trained):
    res, _ = trained
    assert res.losses[-1] < 0.5 * res.losses[0] and res.images == 12


def test_a_perfect_prior_on_separable_embeddings_gives_the_mask(trained):
    res, rng = trained
    feats, masks = _synthetic(np.random.default_rng(99), 4)  # images not seen in training
    for f, m in zip(feats, masks):
        out = lps_promote(f, m.astype(np.float32), res.network, iterations=1)
        assert out.shape == m.shape and out.dtype == np.float32
        # Cells cut by the mask's boundary are mixed on the 16 x 16 grid: judge the pixels away from it.
        inner = binary_erosion(m, iterations=4) | ~binary_dilation(m, iterations=4)
        assert ((out > 0.5) == m)[inner].mean() > 0.98


def test_a_noisy_prior_is_promoted_towards_the_mask(trained):
    res, _ = trained
    rng = np.random.default_rng(5)
    feats, masks = _synthetic(rng, 3)
    for f, m in zip(feats, masks):
        noisy = np.clip(0.6 * m + rng.uniform(0, 0.5, m.shape), 0, 1).astype(np.float32)
        out = lps_promote(f, noisy, res.network, iterations=3)
        assert np.abs(out - m).mean() < np.abs(noisy - m).mean()


def test_the_model_round_trips_through_plain_arrays(trained):
    res, _ = trained
    again = AnchorNetwork.from_state(res.network.state_arrays(), res.network.hparams)
    f, m = _synthetic(np.random.default_rng(3), 1)
    a = lps_promote(f[0], m[0].astype(np.float32) * 0.8, res.network)
    b = lps_promote(f[0], m[0].astype(np.float32) * 0.8, again)
    np.testing.assert_array_equal(a, b)


def test_fc_region_embedding_trains_and_runs():
    rng = np.random.default_rng(1)
    feats, masks = _synthetic(rng, 6)
    res = train_anchor_network(feats, masks, tap_strides=STRIDES, input_size=SIZE, channels=8, dim=8,
                               region_embedding="fc", epochs=20, batch_size=3, learning_rate=1e-2)
    out = lps_promote(feats[0], masks[0].astype(np.float32), res.network)
    assert res.losses[-1] < res.losses[0] and out.shape == masks[0].shape


def test_bad_inputs_are_named():
    rng = np.random.default_rng(2)
    feats, masks = _synthetic(rng, 2)
    res = train_anchor_network(feats, masks, tap_strides=STRIDES, input_size=SIZE, channels=4, dim=4, epochs=1)
    with pytest.raises(ValueError, match="features: expected tap 's8'"):
        lps_promote({"s4": feats[0]["s4"]}, masks[0].astype(np.float32), res.network)
    with pytest.raises(ValueError, match=r"features\['s4'\]: expected \(4, 16, 16\)"):
        lps_promote({**feats[0], "s4": np.zeros((4, 8, 8))}, masks[0].astype(np.float32), res.network)
    with pytest.raises(ValueError, match="region_embedding"):
        train_anchor_network(feats, masks, tap_strides=STRIDES, input_size=SIZE, region_embedding="mlp")
    with pytest.raises(ValueError, match="flip_probability"):
        train_anchor_network(feats, masks, tap_strides=STRIDES, input_size=SIZE, flip_probability=0.7)


def test_the_fast_eq3_equals_the_reference():
    from promote.lps import _eq3_flat

    rng = np.random.default_rng(4)
    emb = rng.normal(size=(5, 6, 7)).astype(np.float32)
    fg, bg = rng.normal(size=5), rng.normal(size=5)
    fast = _eq3_flat(emb.reshape(5, -1), (emb ** 2).sum(0).reshape(-1), fg, bg).reshape(6, 7)
    np.testing.assert_allclose(fast, nearest_anchor_probability(emb, fg, bg), atol=1e-5)


def test_one_run_reports_every_iterate_as_separate_runs_give_it(trained):
    res, _ = trained
    f, m = _synthetic(np.random.default_rng(7), 1)
    prior = np.clip(0.7 * m[0] + 0.2, 0, 1).astype(np.float32)
    seen = {}
    last = lps_promote(f[0], prior, res.network, iterations=3, each=lambda t, y: seen.setdefault(t, y))
    assert sorted(seen) == [1, 2, 3]
    np.testing.assert_array_equal(seen[3], last)
    np.testing.assert_allclose(seen[1], lps_promote(f[0], prior, res.network, iterations=1), atol=1e-6)
    np.testing.assert_allclose(seen[2], lps_promote(f[0], prior, res.network, iterations=2), atol=1e-6)


def test_image_and_grid_resolution_agree_away_from_edges(trained):
    res, _ = trained
    f, m = _synthetic(np.random.default_rng(8), 1)
    prior = m[0].astype(np.float32)
    full = lps_promote(f[0], prior, res.network, resolution="image")
    grid = lps_promote(f[0], prior, res.network, resolution="grid")
    inner = binary_erosion(m[0], iterations=4) | ~binary_dilation(m[0], iterations=4)
    assert ((full > 0.5) == (grid > 0.5))[inner].all()
    with pytest.raises(ValueError, match="resolution"):
        lps_promote(f[0], prior, res.network, resolution="full")


def test_eq3_rejects_mismatched_shapes_and_returns_float32():
    emb = np.zeros((3, 2, 2))
    for bad in [(np.zeros((3, 4)), np.zeros(3), np.zeros(3)),  # no (H, W)
                (emb, np.zeros(2), np.zeros(3)),  # salient anchor of another dimension
                (emb, np.zeros(3), np.zeros(4))]:  # background anchor of another dimension
        with pytest.raises(ValueError, match=r"^embedding \(D, H, W\) and anchors \(D,\): got "):
            nearest_anchor_probability(*bad)
    p = nearest_anchor_probability(emb, np.ones(3), -np.ones(3))
    assert p.dtype == np.float32 and p.shape == (2, 2)
    np.testing.assert_allclose(p, 0.5)  # equidistant from both anchors


def test_eq3_stays_finite_far_from_both_anchors_and_on_an_anchor():
    from promote.lps import _eq3_flat

    # Distances of 1e4: exp(-d) underflows, the sigmoid of the difference does not.
    fg, bg = np.zeros(2), np.array([1e4, 0.0])
    emb = np.array([[[-1e4, 2e4]], [[0.0, 0.0]]])  # nearer fg by 1e4, nearer bg by 1e4
    with np.errstate(all="raise"):
        p = nearest_anchor_probability(emb, fg, bg)
    np.testing.assert_array_equal(p, [[1.0, 0.0]])
    # An embedding on the salient anchor: the expanded squared distance can round below 0.
    rng = np.random.default_rng(5)
    mu = rng.normal(size=8).astype(np.float32) * 10
    other = mu + 0.5
    phi = np.stack([mu, other], axis=1)
    fast = _eq3_flat(phi, (phi ** 2).sum(0), mu, other)
    assert fast.dtype == np.float32 and np.isfinite(fast).all()
    # In float32 the expansion keeps ||mu||^2 (~490 here) to a few ulps, so on an anchor d can come
    # out as sqrt(a few ulps) instead of 0 (which ulps depends on the summation order of numpy's
    # SIMD kernels, so on the CPU), and p moves by at most d / 4.
    atol = 0.25 * np.sqrt(4 * np.spacing(np.float32(mu @ mu)))
    np.testing.assert_allclose(fast, nearest_anchor_probability(phi[:, :, None], mu, other)[:, 0], atol=atol)


def test_region_anchor_of_a_light_or_empty_region():
    emb = np.arange(8, dtype=np.float64).reshape(2, 2, 2)
    w = np.array([[0.25, 0.0], [0.0, 0.25]])  # total weight below 1: still the weighted mean
    np.testing.assert_allclose(region_anchor(emb, w), [(0 + 3) / 2, (4 + 7) / 2])
    np.testing.assert_array_equal(region_anchor(emb, np.zeros((2, 2))), [0.0, 0.0])  # no region: 0, not NaN


def test_eq5_reports_each_iterate_and_works_in_float32():
    prior = np.array([[0.2, 0.9]], np.float64)
    seen, reported = [], []

    def step(y):
        seen.append(y.dtype)
        return np.array([[1.0, 0.0]]) * (len(seen) % 2)  # Z(0) = [1, 0], Z(1) = 0, Z(2) = [1, 0]

    y = iterate_prior(prior, step, 3, each=lambda t, yt: reported.append((t, yt.copy())))
    assert seen == [np.float32] * 3 and y.dtype == np.float32
    assert [t for t, _ in reported] == [1, 2, 3]
    np.testing.assert_allclose(reported[0][1], [[1.0, 0.0]])  # Y(1) = Z(0)
    np.testing.assert_allclose(reported[1][1], [[0.5, 0.0]])  # Y(2) = (Z(0) + Z(1)) / 2
    np.testing.assert_allclose(reported[2][1], [[2 / 3, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(reported[2][1], y)
    with pytest.raises(ValueError, match=r"^iterations: expected an integer >= 1"):
        iterate_prior(prior, step, 0)


def test_eq5_defaults_to_the_papers_single_iteration():
    prior = np.array([[0.2, 0.9]], np.float32)
    calls = []

    def step(y):
        calls.append(y.copy())
        return np.array([[0.75, 0.25]], np.float32)

    y = iterate_prior(prior, step)  # T = 1 (the paper's setting): one step, the prior replaced
    assert len(calls) == 1
    np.testing.assert_array_equal(y, [[0.75, 0.25]])


def test_eq5_averages_a_half_precision_step_in_float32():
    # Z(t) = 1 from a float16 step: Y(3) = (1 + 1 + 1) / 3 = 1. In float16, 1 / 3 * Z(2) would be
    # 0.33325, and Y(3) 0.99992.
    y = iterate_prior(np.zeros((2, 2), np.float32), lambda y: np.ones_like(y, dtype=np.float16), 3)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 1.0, rtol=1e-6)


def test_the_fast_eq3_takes_half_precision_anchors_in_float32():
    from promote.lps import _eq3_flat

    # Integer values, exact in float16 and float32: ||fg||^2 = 80000 and ||bg||^2 = 82825 overflow
    # float16 (max 65504), not float32; d(fg, bg) = 5, and every expanded distance below is exact.
    fg, bg = np.array([200, 200], np.float16), np.array([203, 204], np.float16)
    phi = np.stack([fg, bg], axis=1).astype(np.float32)  # one pixel on each anchor
    p = _eq3_flat(phi, (phi ** 2).sum(0), fg, bg)
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-5.0)), 1 / (1 + np.exp(5.0))], rtol=1e-6)


def test_region_anchor_sums_half_precision_weights_in_float64():
    # A constant embedding: every region's anchor is that constant. The 90000 float16 weights of 1
    # sum to inf in float16 (max 65504), which would give an anchor of 0.
    emb = np.broadcast_to(np.array([2.0, -3.0])[:, None, None], (2, 300, 300))
    np.testing.assert_allclose(region_anchor(emb, np.ones((300, 300), np.float16)), [2.0, -3.0])


def test_merge_none_is_the_papers_output_and_mean_averages():
    prior = np.array([[0.0, 0.2], [0.9, 1.0]], np.float32)
    promoted = np.array([[1.0, 0.6], [0.1, 0.5]], np.float32)
    np.testing.assert_array_equal(merge_with_prior(prior, promoted, "none"), promoted)
    np.testing.assert_allclose(merge_with_prior(prior, promoted, "mean"), [[0.5, 0.4], [0.5, 0.75]])


def test_merge_confidence_keeps_the_map_further_from_one_half_ties_to_the_promoted():
    # dyadic values, exact in float32, so the ties are exact
    prior = np.array([[0.875, 0.625, 0.25, 0.75]], np.float32)
    promoted = np.array([[0.25, 0.0625, 0.75, 0.25]], np.float32)
    # confidences: prior 0.375, 0.125, 0.25, 0.25 against promoted 0.25, 0.4375, 0.25, 0.25
    out = merge_with_prior(prior, promoted, "confidence")
    np.testing.assert_array_equal(out, np.array([[0.875, 0.0625, 0.75, 0.25]], np.float32))
    assert out.dtype == np.float32


def test_merge_logodds_multiplies_the_odds_of_the_two_maps():
    prior = np.array([[0.5, 0.8, 0.8, 0.9, 0.0]], np.float32)
    promoted = np.array([[0.3, 0.5, 0.8, 0.1, 1.0]], np.float32)
    out = merge_with_prior(prior, promoted, "logodds")
    # 0.5 carries no evidence: the other map is kept; two maps at 0.8 (odds 4) give odds 16;
    # opposite evidence of equal strength (0.9 against 0.1) cancels to 0.5; a 0 against a 1 is
    # clipped to finite odds first, so it also cancels instead of giving NaN
    np.testing.assert_allclose(out, [[0.3, 0.8, 16 / 17, 0.5, 0.5]], atol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_allclose(merge_with_prior(promoted, prior, "logodds"), out, atol=1e-6)  # symmetric


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (3, 4), elements=st.floats(0, 1, width=32)),
       arrays(np.float32, (3, 4), elements=st.floats(0, 1, width=32)))
def test_merge_logodds_of_any_two_maps_is_a_map_symmetric_and_monotone(prior, promoted):
    out = merge_with_prior(prior, promoted, "logodds")
    assert out.shape == prior.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    np.testing.assert_allclose(out, merge_with_prior(promoted, prior, "logodds"), atol=1e-6)
    # more evidence of salience in one map never lowers the result
    higher = np.minimum(promoted + 0.25, 1).astype(np.float32)
    assert (merge_with_prior(prior, higher, "logodds") >= out - 1e-6).all()


def test_merge_rejects_an_unknown_rule_and_mismatched_shapes():
    with pytest.raises(ValueError, match="rule: expected one of"):
        merge_with_prior(np.zeros((2, 2)), np.zeros((2, 2)), "max")
    with pytest.raises(ValueError, match="expected equal shapes"):
        merge_with_prior(np.zeros((2, 2)), np.zeros((2, 3)), "mean")
