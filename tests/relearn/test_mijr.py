"""The whole MIJR re-learning on a synthetic pool whose hard superpixels are known."""

import json

import numpy as np
import pytest

from relearn import (
    Neighbour,
    NeighbourRef,
    PoolImage,
    RelearnModel,
    pseudo_gt_fractions,
    relearn_image,
    train_relearn,
)

SMALL = dict(widths=(32, 16, 16, 8, 8), learning_rate=0.05, iterations=150, batch_size=32)
LABELS = np.kron(np.arange(16).reshape(4, 4), np.ones((4, 4), int)).astype(np.int32)  # 16 px, 4 x 4 superpixels
SALIENT = np.isin(np.arange(16), [5, 6, 9, 10])   # the centre 2 x 2 superpixels


def _image(rng, wrong):
    """Features that tell the classes apart, a prior right except on the ``wrong`` superpixels
    (which the pseudo GT then trusts wrongly or leaves uncertain)."""
    feats = np.where(SALIENT[:, None], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) + 0.3 * rng.normal(size=(16, 3))
    sp_prior = np.where(SALIENT, 0.9, 0.1)
    sp_prior[wrong] = 1 - sp_prior[wrong]
    pgt = np.where(sp_prior > 0.5, 1, 0).astype(np.int8)
    pgt[wrong[: len(wrong) // 2]] = -1
    gt = SALIENT[LABELS]
    return feats.astype(np.float32), sp_prior[LABELS].astype(np.float32), pgt[LABELS], gt


def _pool(seed, n_images=10, n_wrong=4):
    rng = np.random.default_rng(seed)
    raw = [_image(rng, rng.choice(16, n_wrong, replace=False)) for _ in range(n_images)]
    images = []
    for k, (f, prior, pgt, gt) in enumerate(raw):
        refs = [NeighbourRef((k + d) % n_images, np.arange(16), rng.uniform(0.5, 2.0, 16)) for d in (1, 2, 3)]
        images.append(PoolImage(f, LABELS, prior, pgt, gt, refs))
    return images


@pytest.fixture(scope="module")
def trained():
    return train_relearn(_pool(0), **SMALL)


def _target(seed, wrong):
    rng = np.random.default_rng(seed)
    f, prior, pgt, gt = _image(rng, np.asarray(wrong))
    nbs = []
    for _ in range(3):
        nf, _, npgt, _ = _image(rng, rng.choice(16, 2, replace=False))
        nbs.append(Neighbour(nf, pseudo_gt_fractions(npgt, LABELS), np.arange(16), np.ones(16)))
    return f, prior, pgt, gt, nbs


def test_hard_superpixels_are_relearned_from_their_aligned_instances(trained):
    wrong = [5, 0, 10, 15]
    f, prior, pgt, gt, nbs = _target(7, wrong)
    res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs)
    sp = res.map[::4, ::4].ravel()                    # one pixel per superpixel
    assert res.relearned[wrong].all()
    np.testing.assert_array_equal(sp[wrong] > 0.5, SALIENT[wrong])   # the prior's errors are fixed
    assert np.abs(res.map - gt).mean() < 0.5 * np.abs(prior - gt).mean()
    # where nothing was re-learned the prior's pixels are kept as they are
    keep = ~res.relearned[LABELS]
    np.testing.assert_array_equal(res.map[keep], prior[keep])
    assert res.map.dtype == np.float32 and res.trust.shape == (16, 5)
    assert np.isnan(res.trust[:, 3:]).all()               # M = 5 slots, three neighbours


def test_training_records_its_counts_and_the_model_round_trips(trained):
    rec = trained.record
    assert rec["targets"] == 10 and rec["pairs_labelled"] == 10 * 16 * 3
    assert 0 < rec["pairs_positive"] < rec["pairs_labelled"] and rec["filter_train_accuracy"] > 0.9
    json.dumps(rec)
    model = trained.model
    hp = json.loads(json.dumps(model.hparams))
    arrays = model.state_arrays()
    assert all(a.dtype == np.float32 for a in arrays.values())
    back = RelearnModel.from_state(arrays, hp)
    f, prior, pgt, _, nbs = _target(8, [6, 1])
    np.testing.assert_array_equal(relearn_image(back, f, LABELS, prior, pgt, nbs).map,
                                  relearn_image(model, f, LABELS, prior, pgt, nbs).map)
    assert back.settings == model.settings and model.n_parameters() > 0


def test_without_the_filter_every_aligned_superpixel_is_relearned(trained):
    f, prior, pgt, _, nbs = _target(7, [5, 0])
    # at 0.5: the default 0.0002 lets every pair of this tiny model through
    with_filter = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, filter_threshold=0.5,
                                corrections_only=False, confident_only=False)
    assert not with_filter.relearned.all()      # the filter keeps the easy superpixels as they are
    res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=False,
                        confident_only=False)
    assert res.relearned.all()                  # all 16 have an aligned instance in each neighbour
    np.testing.assert_array_equal(res.trust, with_filter.trust)   # the ranking is the filter's still
    # an image whose neighbours align none of its superpixels keeps its prior, filter or not
    unaligned = [Neighbour(n.features, n.pseudo, np.full(16, -1), np.full(16, np.inf)) for n in nbs]
    res = relearn_image(trained.model, f, LABELS, prior, pgt, unaligned, use_filter=False)
    assert not res.relearned.any()
    np.testing.assert_array_equal(res.map, prior)


def test_the_filter_threshold_decides_which_pairs_pass(trained):
    f, prior, pgt, _, nbs = _target(7, [5, 0])
    ungated = dict(corrections_only=False, confident_only=False)
    default = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, **ungated)
    np.testing.assert_array_equal(
        relearn_image(trained.model, f, LABELS, prior, pgt, nbs, filter_threshold=0.0002, **ungated).map, default.map)
    best = np.nanmax(default.trust, axis=1)              # the most trusted pair of each superpixel
    thresholds = [0.0002, *np.quantile(best, [0.1, 0.5, 0.9]), 0.5]   # the default, trusts actually met, 0.5
    for threshold in thresholds:
        res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, filter_threshold=threshold, **ungated)
        # a superpixel is re-learned exactly when one of its pairs is trusted above the threshold
        np.testing.assert_array_equal(res.relearned, best > threshold)
    assert (best > thresholds[1]).sum() > (best > thresholds[3]).sum() > 0   # different sets were tried
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="filter_threshold"):
            relearn_image(trained.model, f, LABELS, prior, pgt, nbs, filter_threshold=bad)


def test_max_trusted_relearns_only_what_the_pseudo_gt_leaves_uncertain(trained):
    wrong = [5, 0, 10, 15]                      # 5 and 0 uncertain in the pseudo GT, 10 and 15 trusted
    f, prior, pgt, _, nbs = _target(7, wrong)
    every = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=False,
                          confident_only=False)
    assert every.relearned.all()
    res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, max_trusted=0.5,
                        corrections_only=False, confident_only=False)
    np.testing.assert_array_equal(np.flatnonzero(res.relearned), [0, 5])
    keep = ~res.relearned[LABELS]
    np.testing.assert_array_equal(res.map[keep], prior[keep])
    assert (res.map[~keep] != prior[~keep]).any()
    # 1 is the rule without the option; out of [0, 1] is refused
    np.testing.assert_array_equal(relearn_image(trained.model, f, LABELS, prior, pgt, nbs, max_trusted=1.0).map,
                                  relearn_image(trained.model, f, LABELS, prior, pgt, nbs).map)
    with pytest.raises(ValueError, match="max_trusted"):
        relearn_image(trained.model, f, LABELS, prior, pgt, nbs, max_trusted=1.5)


def test_corrections_only_replaces_the_superpixels_whose_class_relearning_changes(trained):
    wrong = [5, 0, 10, 15]
    f, prior, pgt, gt, nbs = _target(7, wrong)
    every = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=False,
                          confident_only=False)
    res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=True,
                        confident_only=False, merge="replace")
    prior_class = prior[::4, ::4].ravel() > 0.5
    changed = (every.scores > 0.5) != prior_class
    np.testing.assert_array_equal(res.relearned, changed)
    assert changed[wrong].all() and not changed.all()   # the prior's errors, and only some others
    keep = ~res.relearned[LABELS]
    np.testing.assert_array_equal(res.map[keep], prior[keep])  # agreeing superpixels keep their pixels
    np.testing.assert_array_equal(res.map[::4, ::4].ravel()[wrong] > 0.5, SALIENT[wrong])


def test_confident_only_keeps_the_prior_where_it_is_the_more_confident(trained):
    wrong = [5, 0, 10, 15]
    f, prior, pgt, gt, nbs = _target(7, wrong)
    # the prior's errors: two hesitant (0.45 / 0.55), two as sure as can be (0 / 1)
    prior_sp = prior[::4, ::4].ravel().copy()    # 4 x 4 superpixels of constant prior
    prior_sp[[5, 0]] = np.where(prior_sp[[5, 0]] > 0.5, 0.55, 0.45)
    prior_sp[[10, 15]] = np.round(prior_sp[[10, 15]])
    prior = prior_sp[LABELS].astype(np.float32)
    every = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=False,
                          confident_only=False)
    res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=True,
                        confident_only=True, merge="replace")
    changed = (every.scores > 0.5) != (prior_sp > 0.5)
    confident = np.abs(every.scores - 0.5) > np.abs(prior_sp - 0.5)
    np.testing.assert_array_equal(res.relearned, changed & confident)
    assert res.relearned[[5, 0]].all() and not res.relearned[[10, 15]].any()
    keep = ~res.relearned[LABELS]
    np.testing.assert_array_equal(res.map[keep], prior[keep])
    # the defaults gate neither way: every superpixel with a pair is re-learned
    assert relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False).relearned.tolist() == \
        every.relearned.tolist()
    # off, the sure errors are corrected too
    off = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, use_filter=False, corrections_only=True,
                        confident_only=False, merge="replace")
    assert off.relearned[wrong].all()


def test_the_logodds_merge_multiplies_the_odds_on_the_relearned_superpixels_only(trained):
    from promote.merge import merge_with_prior

    wrong = [5, 0, 10, 15]
    f, prior, pgt, gt, nbs = _target(7, wrong)
    gating = dict(use_filter=False, corrections_only=True, confident_only=False)  # some superpixels, not all
    replaced = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, merge="replace", **gating)
    merged = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, merge="logodds", gain_range=(1, 1), **gating)
    np.testing.assert_array_equal(merged.relearned, replaced.relearned)
    inside = replaced.relearned[LABELS]
    assert inside.any() and not inside.all()
    # on the re-learned superpixels the replaced map is the weighted score: merged with the prior's odds
    expected = merge_with_prior(prior, np.clip(replaced.map, 0, 1), "logodds")
    np.testing.assert_allclose(merged.map[inside], expected[inside], atol=1e-6)
    np.testing.assert_array_equal(merged.map[~inside], prior[~inside])
    with pytest.raises(ValueError, match="merge: expected one of"):
        relearn_image(trained.model, f, LABELS, prior, pgt, nbs, merge="mean")


def test_a_residual_model_corrects_the_prior_and_one_without_correction_keeps_it():
    import torch

    from promote.merge import logit, sigmoid

    images = _pool(0)
    fit = train_relearn(images, residual=True, **SMALL)
    model = fit.model
    assert model.joint.hparams["residual"] is True
    wrong = [5, 0, 10, 15]
    f, prior, pgt, gt, nbs = _target(7, wrong)
    res = relearn_image(model, f, LABELS, prior, pgt, nbs, use_filter=False)
    sp = res.map[::4, ::4].ravel()
    np.testing.assert_array_equal(sp[wrong] > 0.5, SALIENT[wrong])   # the prior's errors are fixed
    # the superpixel scores are the posterior sigma(logit(prior) + correction)
    assert ((res.scores[res.relearned] > 0.5) == SALIENT[res.relearned]).all()
    # a joint head that says nothing (logit 0) leaves every pixel of the prior as it was
    with torch.no_grad():
        model.joint.module.joint.weight.zero_()
        model.joint.module.joint.bias.zero_()
    still = relearn_image(model, f, LABELS, prior, pgt, nbs, use_filter=False)
    assert still.relearned.any()
    np.testing.assert_allclose(still.map, sigmoid(logit(prior)), atol=1e-6)


def test_the_gain_scales_the_relearned_log_odds_by_the_images_mean_change(trained):
    from promote.merge import logit, sigmoid

    wrong = [5, 0, 10, 15]
    f, prior, pgt, gt, nbs = _target(7, wrong)
    gating = dict(use_filter=False, corrections_only=True, confident_only=False)
    plain = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, gain_range=(1, 1), **gating)
    inside = plain.relearned[LABELS]
    assert inside.any() and not inside.all()
    change = logit(plain.map) - logit(prior)      # the log-odds the odds product added; 0 outside
    assert np.abs(change[~inside]).max() == 0 and np.abs(change[inside]).max() > 1.0
    mean_change = np.abs(change).mean()

    def gained(**kw):
        res = relearn_image(trained.model, f, LABELS, prior, pgt, nbs, **gating, **kw)
        np.testing.assert_array_equal(res.relearned, plain.relearned)
        np.testing.assert_array_equal(res.map[~inside], prior[~inside])
        return res.map

    # a fixed gain k: sigma(logit(prior) + k * change)
    fixed = {k: gained(gain_range=(k, k)) for k in (0.0, 0.5, 2.0)}
    for k, m in fixed.items():
        np.testing.assert_allclose(m, sigmoid(logit(prior) + k * change), atol=1e-6)
    np.testing.assert_allclose(fixed[0.0], sigmoid(logit(prior)), atol=1e-6)   # gain 0: the prior
    # the image's gain is its mean |change| over the reference, within the range
    np.testing.assert_allclose(gained(gain_reference=mean_change, gain_range=(0, 10)), plain.map, atol=1e-6)
    np.testing.assert_allclose(gained(gain_reference=mean_change / 2, gain_range=(0, 10)), fixed[2.0], atol=1e-6)
    np.testing.assert_allclose(gained(gain_reference=mean_change * 2, gain_range=(0, 10)), fixed[0.5], atol=1e-6)
    np.testing.assert_allclose(gained(gain_reference=mean_change / 8, gain_range=(0.5, 2)), fixed[2.0], atol=1e-6)
    np.testing.assert_allclose(gained(gain_reference=mean_change * 8, gain_range=(0.5, 2)), fixed[0.5], atol=1e-6)
    with pytest.raises(ValueError, match="gain_reference must be a finite number > 0"):
        relearn_image(trained.model, f, LABELS, prior, pgt, nbs, gain_reference=0.0)
    with pytest.raises(ValueError, match=r"gain_range: expected \(low, high\) with 0 <= low <= high"):
        relearn_image(trained.model, f, LABELS, prior, pgt, nbs, gain_range=(2.0, 1.0))


def test_without_neighbours_the_prior_is_returned(trained):
    f, prior, pgt, _, _ = _target(9, [5])
    res = relearn_image(trained.model, f, LABELS, prior, pgt, [])
    np.testing.assert_array_equal(res.map, prior)
    assert not res.relearned.any()


def test_bad_inputs_raise_clear_errors(trained):
    f, prior, pgt, _, nbs = _target(10, [5])
    with pytest.raises(ValueError, match=r"features: expected \(16, F\) superpixel features"):
        relearn_image(trained.model, f[:10], LABELS, prior, pgt, nbs)
    with pytest.raises(ValueError, match="features: expected F = 3 columns"):
        relearn_image(trained.model, np.zeros((16, 4)), LABELS, prior, pgt, nbs)
    with pytest.raises(ValueError, match="prior: expected shape"):
        relearn_image(trained.model, f, LABELS, prior[:8], pgt, nbs)
    bad = Neighbour(nbs[0].features, nbs[0].pseudo, np.arange(15), np.ones(15))
    with pytest.raises(ValueError, match=r"neighbours\[0\].match"):
        relearn_image(trained.model, f, LABELS, prior, pgt, [bad])
    with pytest.raises(ValueError, match="at most M = 5"):
        relearn_image(trained.model, f, LABELS, prior, pgt, nbs * 2)
    pool = _pool(1, n_images=3)
    with pytest.raises(ValueError, match="at least one image with gt"):
        train_relearn([PoolImage(p.features, p.labels, p.prior, p.pseudo_gt, None, p.neighbours) for p in pool])
    with pytest.raises(ValueError, match=r"images\[0\].neighbours: expected NeighbourRef entries"):
        self_ref = [NeighbourRef(0, np.arange(16), np.ones(16))]
        train_relearn([PoolImage(p.features, p.labels, p.prior, p.pseudo_gt, p.gt, self_ref) for p in pool])


def test_without_context_the_networks_read_the_papers_pair_feature_alone():
    fit = train_relearn(_pool(2, n_images=6), context=False, **{**SMALL, "iterations": 40})
    assert fit.model.filter.hparams["in_dim"] == fit.model.joint.hparams["in_dim"] == 2 * 3
    f, prior, pgt, _, nbs = _target(11, [5])
    assert relearn_image(fit.model, f, LABELS, prior, pgt, nbs).map.shape == LABELS.shape


def test_the_joint_threshold_decides_which_targets_train_the_joint_model():
    pool = _pool(3, n_images=6)
    low = train_relearn(pool, joint_threshold=0.01, **{**SMALL, "iterations": 40})
    high = train_relearn(pool, joint_threshold=0.99, **{**SMALL, "iterations": 40})
    # the same filter (same seed and draw); a lower threshold lets more targets' pairs through
    for key, value in low.model.filter.state_arrays().items():
        np.testing.assert_array_equal(value, high.model.filter.state_arrays()[key])
    assert low.record["joint_rows"] > high.record["joint_rows"] >= 1
    assert low.model.settings["threshold"] == 0.01 and high.model.settings["threshold"] == 0.99
    with pytest.raises(ValueError, match="joint_threshold must be in"):
        train_relearn(pool, joint_threshold=1.0, **SMALL)
