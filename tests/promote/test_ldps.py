"""LDPS (promote/ldps.py): guide masks, Eq. 7 prototype, Eq. 10-11 merge, training and promotion
on synthetic features whose right answer is known."""

import warnings

import numpy as np
import pytest

from promote.ldps import (
    RelationNetwork,
    confidence,
    confidence_merge,
    guide_masks,
    ldps_promote,
    ldps_single,
    train_relation_network,
    training_pairs,
    weighted_prototype,
)
from promote.merge import MERGES, merge_with_prior

STRIDES = {"s2": 2, "s4": 4, "s16": 16, "s32": 32}
SIZE = 32  # network input side: s2 is 16 x 16


def _square(n, lo, hi):
    m = np.zeros((n, n), bool)
    m[lo:hi, lo:hi] = True
    return m


def _features(mask_full, rng, noise=0.05):
    """Taps where the object's locations carry one channel pattern and the background another."""
    feats = {}
    for tap, s in STRIDES.items():
        side = SIZE // s
        c = 4 if s < 16 else 8
        small = mask_full.reshape(side, s, side, s).mean(axis=(1, 3))
        f = rng.normal(0, noise, (c, side, side)).astype(np.float32)
        f[0] += small  # salient pattern
        f[1] += 1 - small  # background pattern
        feats[tap] = f.astype(np.float16)
    return feats


def test_guide_masks_follow_the_thresholds():
    prior = np.array([[0.95, 0.85, 0.5], [0.2, 0.31, 0.91]])
    fg, afg, abg = guide_masks(prior, 0.9, 0.8, 0.3)
    np.testing.assert_array_equal(fg, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(afg, [[1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(abg, [[0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="theta_abg <= theta_afg <= theta_fg"):
        guide_masks(prior, 0.5, 0.8, 0.3)
    # A float64 prior is thresholded as the float32 map the package works with (the training's
    # masks are taken on float32 grids): 0.9 + 1e-9 is 0.9 in float32, not above theta_fg = 0.9.
    fg, afg, _ = guide_masks(np.array([[0.9 + 1e-9]]), 0.9, 0.8, 0.3)
    assert not fg.any() and afg.all()



def test_guide_masks_are_strict_and_thresholds_may_meet_or_reach_one():
    # Sec. 4.2's inequalities are strict: a value on a threshold is in none of the masks it bounds.
    prior = np.array([[0.75, 0.5, 0.25]], np.float32)  # exact in float32
    fg, afg, abg = guide_masks(prior, 0.75, 0.5, 0.25)
    np.testing.assert_array_equal(fg, [[0, 0, 0]])
    np.testing.assert_array_equal(afg, [[1, 0, 0]])
    np.testing.assert_array_equal(abg, [[0, 0, 0]])
    # Equal thresholds and theta_fg = 1 are allowed; a threshold above 1 is not.
    _, afg, abg = guide_masks(prior, 0.5, 0.5, 0.5)
    np.testing.assert_array_equal(afg, [[1, 0, 0]])
    np.testing.assert_array_equal(abg, [[0, 0, 1]])
    fg, _, _ = guide_masks(np.array([[1.0]]), 1.0, 0.8, 0.3)
    assert not fg.any()  # nothing is above 1
    with pytest.raises(ValueError, match=r"^thresholds: expected 0 <= theta_abg <= theta_afg <= theta_fg <= 1, got 0.3, 0.8, 1.5$"):
        guide_masks(prior, 1.5, 0.8, 0.3)


def test_prototype_is_the_saliency_weighted_mean_of_fg_features():
    # Eq. 7 by hand: FG = the two locations above 0.9, weights 0.92 / (0.92 + 1.0) and 1.0 / 1.92.
    prior = np.array([[0.92, 0.5], [0.1, 1.0]], np.float32)
    feats = np.array([[[1.0, 7.0], [9.0, 3.0]], [[2.0, 0.0], [0.0, -2.0]]], np.float32)
    proto = weighted_prototype(feats, prior, guide_masks(prior)[0])
    want = (0.92 * feats[:, 0, 0] + 1.0 * feats[:, 1, 1]) / 1.92
    np.testing.assert_allclose(proto, want, rtol=1e-6)
    with pytest.raises(ValueError, match="FG mask is empty"):
        weighted_prototype(feats, np.full((2, 2), 0.5), np.zeros((2, 2), bool))


def test_pairs_join_the_prototype_to_every_afg_and_abg_location():
    prior = np.array([[0.95, 0.85, 0.5], [0.2, 0.1, 0.91]], np.float32)
    feats = np.arange(12, dtype=np.float32).reshape(2, 2, 3)  # channel c at (y, x) = 6c + 3y + x
    pos, neg = training_pairs(feats, prior)
    proto = (0.95 * feats[:, 0, 0] + 0.91 * feats[:, 1, 2]) / (0.95 + 0.91)
    # AFG (> 0.8): (0, 0), (0, 1), (1, 2); ABG (< 0.3): (1, 0), (1, 1); 0.5 is in neither.
    np.testing.assert_allclose(pos[:, :2], np.tile(proto, (3, 1)), rtol=1e-6)
    np.testing.assert_array_equal(pos[:, 2:], [[0, 6], [1, 7], [5, 11]])
    np.testing.assert_allclose(neg[:, :2], np.tile(proto, (2, 1)), rtol=1e-6)
    np.testing.assert_array_equal(neg[:, 2:], [[3, 9], [4, 10]])


def test_eq11_keeps_the_more_confident_map_per_pixel():
    prior = np.array([0.95, 0.4, 0.6, 0.1, 0.7], np.float32)
    new = np.array([0.2, 0.9, 0.55, 0.5, 0.3], np.float32)
    np.testing.assert_allclose(confidence(prior), [0.95, 0.6, 0.6, 0.9, 0.7])
    # prior wins at 0 (0.95 > 0.8), 2 (0.6 > 0.55), 3 (0.9 > 0.5); new wins at 1 (0.9 > 0.6), 4 (0.7 = 0.7: a tie goes to new)
    np.testing.assert_allclose(confidence_merge(prior, new), [0.95, 0.9, 0.6, 0.1, 0.3])


def _trained(rng, n=12, epochs=25):
    feats, priors, masks = [], [], []
    for i in range(n):
        lo = 4 + (i % 4) * 2
        m = _square(SIZE, lo, lo + 12)
        feats.append(_features(m, rng))
        # A prior that is confident inside most of the object and uncertain on a rim of it.
        prior = np.where(m, 0.97, 0.05).astype(np.float32)
        prior[lo:lo + 12, lo:lo + 3] = 0.5
        priors.append(prior)
        masks.append(m)
    res = train_relation_network(feats, priors, tap_strides=STRIDES, input_size=SIZE, epochs=epochs, batch_size=4,
                                 optimizer="adam", learning_rate=1e-2, seed=0)
    return res, feats, priors, masks


def test_training_lowers_the_pair_loss_and_promotion_resolves_the_uncertain_rim():
    rng = np.random.default_rng(0)
    res, feats, priors, masks = _trained(rng)
    assert res.images == 12 and res.skipped == 0
    assert res.losses[-1] < 0.5 * res.losses[0]
    out = ldps_promote(feats[0], priors[0], res.network)
    assert out.shape == priors[0].shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    rim = masks[0] & (priors[0] == 0.5)
    # The rim's features are the object's: the discriminator relates them to the prototype (> 0.5),
    # and Eq. 11 takes the new, more confident value there.
    # (The rim is 1.5 grid cells wide: its pixels on the object's edge are bilinear blends.)
    assert (out[rim] > 0.5).all() and out[rim].mean() > 0.8
    assert np.abs((out > 0.5) ^ masks[0]).mean() < 0.02
    # Confident prior pixels stay as they were unless the new map is more confident still.
    keep = confidence(priors[0]) > confidence(out) + 1e-6
    assert not keep.any() or np.allclose(out[keep], priors[0][keep])


def test_model_round_trip_gives_the_same_map():
    rng = np.random.default_rng(1)
    res, feats, priors, _ = _trained(rng, n=4, epochs=2)
    net = res.network
    again = RelationNetwork.from_state(net.state_arrays(), net.hparams)
    np.testing.assert_array_equal(ldps_promote(feats[1], priors[1], net), ldps_promote(feats[1], priors[1], again))


def test_prior_without_confident_foreground_is_returned_unchanged_with_a_warning():
    rng = np.random.default_rng(2)
    res, feats, _, _ = _trained(rng, n=4, epochs=1)
    for prior in (np.full((SIZE, SIZE), 0.5, np.float32), np.zeros((SIZE, SIZE), np.float32)):
        for merge in MERGES:  # no merge may touch it: there is no new map to merge
            with pytest.warns(UserWarning, match="no location above theta_fg"):
                out = ldps_promote(feats[0], prior, res.network, merge=merge)
            np.testing.assert_array_equal(out, prior)
    with pytest.raises(ValueError, match="merge: expected one of"):
        ldps_promote(feats[0], prior, res.network, merge="max")


def test_the_logodds_merge_also_resolves_the_uncertain_rim_and_keeps_agreeing_pixels_sure():
    rng = np.random.default_rng(0)
    res, feats, priors, masks = _trained(rng)
    new = ldps_promote(feats[0], priors[0], res.network, merge="none")
    out = ldps_promote(feats[0], priors[0], res.network, merge="logodds")
    np.testing.assert_allclose(out, merge_with_prior(priors[0], new, "logodds"))
    rim = masks[0] & (priors[0] == 0.5)
    # a prior of 0.5 carries no evidence: the discriminator's map decides there
    np.testing.assert_allclose(out[rim], new[rim], atol=1e-6)
    assert (out[rim] > 0.5).all()
    # where both maps say salient, the merged map is at least as sure as the surer of the two
    agree = (priors[0] > 0.5) & (new > 0.5)
    assert agree.any() and (out[agree] >= np.maximum(priors[0], new)[agree] - 1e-6).all()


def test_all_foreground_prior_gives_a_finite_map():
    rng = np.random.default_rng(3)
    res, feats, _, _ = _trained(rng, n=4, epochs=1)
    prior = np.ones((SIZE, SIZE), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ldps_promote(feats[0], prior, res.network)
    np.testing.assert_array_equal(out, prior)  # the prior is fully confident everywhere


def test_training_refuses_priors_without_guidance():
    rng = np.random.default_rng(4)
    feats = [_features(_square(SIZE, 8, 20), rng)]
    with pytest.raises(ValueError, match="no prior has both"):
        train_relation_network(feats, [np.full((SIZE, SIZE), 0.5, np.float32)], tap_strides=STRIDES, input_size=SIZE)


def test_single_image_mode_fixes_an_uncertain_part_of_the_object():
    rng = np.random.default_rng(5)
    m = _square(SIZE, 8, 24)
    feats = _features(m, rng)
    prior = np.where(m, 0.97, 0.03).astype(np.float32)
    prior[8:24, 8:12] = 0.45  # a wavering part of the object
    out = ldps_single(feats, prior, tap_strides=STRIDES, input_size=SIZE, learning_rate=0.2, steps=10, seed=0)
    part = np.zeros_like(m)
    part[8:24, 8:12] = True
    assert out[part].mean() > 0.6  # moved to the object's side
    assert np.abs((out > 0.5) ^ m).mean() < np.abs((prior > 0.5) ^ m).mean()


def test_wrong_features_are_named():
    rng = np.random.default_rng(6)
    res, feats, priors, _ = _trained(rng, n=4, epochs=1)
    bad = dict(feats[0])
    bad.pop("s4")
    with pytest.raises(ValueError, match="expected tap 's4'"):
        ldps_promote(bad, priors[0], res.network)


def test_the_training_loss_is_the_bce_of_the_discriminator_over_the_eq8_eq9_pairs():
    import torch

    from promote.ldps import _pair_loss, _prototypes

    rng = np.random.default_rng(7)
    net = RelationNetwork.create(taps=list(STRIDES), tap_channels=[4, 4, 8, 8], tap_strides=list(STRIDES.values()),
                                 channels=4, hidden=4, input_size=SIZE, seed=0)
    feats = _features(_square(SIZE, 6, 22), rng, noise=0.3)
    prior = rng.random(net.grid).astype(np.float32)
    prior[2:5, 2:5] = 0.95  # some FG
    with torch.no_grad():
        emb = net.module.extract([torch.from_numpy(np.asarray(feats[t], np.float32))[None] for t in STRIDES])
        pg = torch.from_numpy(prior)[None]
        logits = net.module.discriminator(_prototypes(torch, emb, pg, (pg > 0.9).float()), emb)
        loss = float(_pair_loss(torch, logits, (pg > 0.8).float(), (pg < 0.3).float(), class_balance=False))
        pos, neg = training_pairs(emb[0].numpy(), prior)
        c = emb.shape[1]

        def disc(pairs):  # the discriminator on explicit pairs: prototype half, pixel half as a 1 x N map
            p = torch.from_numpy(pairs)
            return net.module.discriminator(p[:1, :c], p[:, c:].T[None, :, :, None])[0, :, 0]

        bce = torch.nn.functional.binary_cross_entropy_with_logits
        lp, ln = disc(pos), disc(neg)
        want = (bce(lp, torch.ones_like(lp), reduction="sum") + bce(ln, torch.zeros_like(ln), reduction="sum"))
        want = float(want) / (len(pos) + len(neg))
    assert len(pos) and len(neg)
    assert loss == pytest.approx(want, rel=1e-5)


def test_prototype_is_accurate_to_float32_and_a_single_weak_fg_location_is_enough():
    # One FG location of weight 0.95 (a total below 1): the prototype is its feature vector.
    prior = np.array([[0.95, 0.5], [0.1, 0.2]], np.float32)
    feats = np.array([[[3.0, 7.0], [9.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(weighted_prototype(feats, prior, guide_masks(prior)[0]), [3.0])
    # Large features that nearly cancel: the weighted mean is still right to float32 precision
    # (a float32 normalisation of the weights would be off by ~1e-6 relative here).
    prior = np.array([[0.92, 1.0]], np.float32)
    feats = np.array([[[1e8, -1e8 + 3.0]]], np.float32)
    fg = np.ones((1, 2), bool)
    w = prior.astype(np.float64)
    want = (w[0, 0] * np.float64(feats[0, 0, 0]) + w[0, 1] * np.float64(feats[0, 0, 1])) / w.sum()
    np.testing.assert_allclose(weighted_prototype(feats, prior, fg), [want], rtol=1e-7)
    with pytest.raises(ValueError, match=r"^weighted_prototype: the FG mask is empty \(no location above theta_fg\)$"):
        weighted_prototype(feats, prior, np.zeros((1, 2), bool))


def test_pairs_use_the_given_thresholds_and_are_float32():
    prior = np.array([[0.95, 0.25, 0.1]], np.float32)
    feats = np.arange(3, dtype=np.float64).reshape(1, 1, 3)
    pos, neg = training_pairs(feats, prior, theta_fg=0.9, theta_afg=0.9, theta_abg=0.2)
    # AFG (> 0.9): location 0; ABG (< 0.2): location 2 only (0.25 is not below 0.2).
    np.testing.assert_array_equal(pos, [[0.0, 0.0]])
    np.testing.assert_array_equal(neg, [[0.0, 2.0]])
    assert pos.dtype == neg.dtype == np.float32  # the discriminator's input dtype


def test_confidence_and_merge_are_float32_and_shapes_must_agree():
    assert confidence(np.array([0.2, 0.7])).dtype == np.float32
    np.testing.assert_allclose(confidence(np.array([0.2, 0.7, 0.5])), [0.8, 0.7, 0.5])
    with pytest.raises(ValueError, match=r"prior, new: expected equal shapes, got \(2,\) and \(3,\)"):
        confidence_merge(np.zeros(2), np.zeros(3))


def test_torch_prototypes_are_eq7_per_image_of_a_batch():
    import torch

    from promote.ldps import _prototypes

    rng = np.random.default_rng(8)
    emb = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    priors = rng.uniform(0, 0.8, (2, 4, 4)).astype(np.float32)
    priors[0, :2, :2] = [[0.95, 0.99], [0.92, 1.0]]  # image 0: four FG locations (total > 1)
    priors[1, 3, 3] = 0.93  # image 1: one FG location (total < 1)
    fg = priors > 0.9
    got = _prototypes(torch, torch.from_numpy(emb), torch.from_numpy(priors), torch.from_numpy(fg).float())
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), weighted_prototype(emb[b], priors[b], fg[b]), rtol=1e-5)


def test_the_class_balanced_loss_averages_positive_and_negative_pairs_separately():
    import torch

    from promote.ldps import _pair_loss

    rng = np.random.default_rng(9)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 3)).astype(np.float32))
    pos = torch.from_numpy((rng.random((2, 3, 3)) < 0.3).astype(np.float32))
    neg = (1 - pos) * torch.from_numpy((rng.random((2, 3, 3)) < 0.6).astype(np.float32))
    lg, p, n = logits.numpy().astype(np.float64), pos.numpy() > 0, neg.numpy() > 0
    bce_pos, bce_neg = np.log1p(np.exp(-lg)), np.log1p(np.exp(lg))  # -log sigma(x), -log(1 - sigma(x))
    per_image = [0.5 * (bce_pos[b][p[b]].mean() + bce_neg[b][n[b]].mean()) for b in range(2)]
    assert float(_pair_loss(torch, logits, pos, neg, class_balance=True)) == pytest.approx(np.mean(per_image), rel=1e-5)
    pooled = (bce_pos[p].sum() + bce_neg[n].sum()) / (p.sum() + n.sum())
    assert float(_pair_loss(torch, logits, pos, neg, class_balance=False)) == pytest.approx(pooled, rel=1e-5)
    # One positive pair and no negative one: either way the loss is that pair's BCE (an empty
    # class adds nothing to the balanced loss).
    one = torch.zeros((1, 3, 3))
    one[0, 1, 2] = 1.0
    none = torch.zeros((1, 3, 3))
    single = float(bce_pos[0, 1, 2])
    assert float(_pair_loss(torch, logits[:1], one, none, class_balance=False)) == pytest.approx(single, rel=1e-5)
    assert float(_pair_loss(torch, logits[:1], one, none, class_balance=True)) == pytest.approx(0.5 * single, rel=1e-5)


def test_training_skips_priors_without_fg_or_without_abg_under_the_given_thresholds():
    rng = np.random.default_rng(10)
    m = _square(SIZE, 8, 20)
    feats = [_features(m, rng) for _ in range(3)]
    good = np.where(m, 0.97, 0.05).astype(np.float32)
    no_fg = np.where(m, 0.85, 0.05).astype(np.float32)  # above theta_afg, never above theta_fg
    no_abg = np.where(m, 0.97, 0.25).astype(np.float32)  # nothing below theta_abg = 0.2
    res = train_relation_network(feats, [good, no_fg, no_abg], tap_strides=STRIDES, input_size=SIZE, epochs=1,
                                 channels=4, hidden=4, theta_abg=0.2, seed=0)
    assert (res.images, res.skipped) == (1, 2)


def test_the_prototype_of_a_feature_map_that_is_the_same_everywhere_is_that_feature():
    # Eq. 7 is a weighted mean: with equal features at every FG location the prototype is that
    # feature vector exactly (to float32), for any weights (the weights sum to one in float64).
    c = np.array([1.0, 3.0, -0.5], np.float32)
    prior = np.array([[0.91, 0.97], [0.2, 0.5]], np.float32)
    feats = np.broadcast_to(c[:, None, None], (3, 2, 2))
    np.testing.assert_array_equal(weighted_prototype(feats, prior, guide_masks(prior)[0]), c)
    rng = np.random.default_rng(11)
    feats = np.broadcast_to(c[:, None, None], (3, 4, 4))
    for _ in range(50):
        prior = rng.uniform(0.85, 1.0, (4, 4)).astype(np.float32)
        fg = guide_masks(prior)[0]
        if fg.any():
            np.testing.assert_array_equal(weighted_prototype(feats, prior, fg), c)


def test_theta_abg_may_be_zero_then_no_location_is_background():
    prior = np.array([[0.0, 0.5, 0.95]], np.float32)
    fg, afg, abg = guide_masks(prior, 0.9, 0.8, 0.0)
    assert not abg.any()  # nothing is below 0
    np.testing.assert_array_equal(fg, [[0, 0, 1]])
    np.testing.assert_array_equal(afg, [[0, 0, 1]])
    fg, afg, abg = guide_masks(prior, 0.0, 0.0, 0.0)  # all thresholds at 0 is allowed too
    np.testing.assert_array_equal(fg, [[0, 1, 1]])


def test_the_class_balanced_loss_with_one_pair_of_each_class_is_the_mean_of_their_bces():
    import torch

    from promote.ldps import _pair_loss

    logits = torch.tensor([[[0.3, -1.2], [2.0, 0.0]]])
    pos = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # one positive pair (label 1) at (0, 0)
    neg = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])  # one negative pair (label 0) at (0, 1)
    bce_pos = float(np.log1p(np.exp(-0.3)))  # -log sigma(0.3)
    bce_neg = float(np.log1p(np.exp(-1.2)))  # -log(1 - sigma(-1.2))
    assert float(_pair_loss(torch, logits, pos, neg, class_balance=True)) == pytest.approx(
        0.5 * (bce_pos + bce_neg), rel=1e-5)
    assert float(_pair_loss(torch, logits, pos, neg, class_balance=False)) == pytest.approx(
        0.5 * (bce_pos + bce_neg), rel=1e-5)


def test_default_taps_are_the_papers_strides_when_all_are_cached_else_every_tap():
    from promote.ldps import DEFAULT_TAPS, resolve_taps

    assert resolve_taps((), ["s2", "s4", "s8", "s16", "s32"]) == DEFAULT_TAPS == ("s2", "s4", "s16", "s32")
    assert resolve_taps((), ["s4", "s8", "s16", "s32"]) == ("s4", "s8", "s16", "s32")  # U2-Netp's cache
    assert resolve_taps(("s8",), ["s4", "s8"]) == ("s8",)
    with pytest.raises(ValueError, match="no tap"):
        resolve_taps((), [])
