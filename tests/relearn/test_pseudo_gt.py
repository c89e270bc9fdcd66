"""Bi-level CRF pseudo GT (MIJR Sec. IV-A) on synthetic images whose answer is known."""

import numpy as np
import pytest

from relearn import PSEUDO_BACKGROUND, PSEUDO_SALIENT, UNCERTAIN, crf_pseudo_gt
from relearn.pseudo_gt import superpixel_majority


def _disc_image(size=48):
    yy, xx = np.mgrid[:size, :size]
    obj = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    img = np.full((size, size, 3), 40, np.uint8)
    img[obj] = (220, 60, 50)
    return img, obj


def test_a_clean_prior_is_all_trusted_and_correct():
    img, obj = _disc_image()
    prior = np.where(obj, 0.95, 0.05).astype(np.float32)
    pgt = crf_pseudo_gt(img, prior)
    assert (pgt.pixels != UNCERTAIN).all()
    np.testing.assert_array_equal(pgt.pixels == PSEUDO_SALIENT, obj)


def test_salt_noise_on_a_textured_background_is_left_uncertain():
    # On a textured background CRFa (colour width 1) has almost no similar neighbours and keeps the
    # prior's salt, CRFc (colour width 50, 200 px) smooths it away: the two disagree, so the salt
    # is uncertain, never trusted salient.
    img, obj = _disc_image()
    rng = np.random.default_rng(0)
    img[~obj] = rng.integers(0, 120, ((~obj).sum(), 3), dtype=np.uint8)
    prior = np.where(obj, 0.95, 0.05).astype(np.float32)
    salt = (~obj) & (rng.random(obj.shape) < 0.05)
    prior[salt] = 0.9
    pgt = crf_pseudo_gt(img, prior)
    assert not (pgt.pixels[salt] == PSEUDO_SALIENT).any()
    assert (pgt.pixels[salt] == UNCERTAIN).mean() > 0.5
    assert (pgt.pixels[obj] == PSEUDO_SALIENT).mean() > 0.95
    assert (pgt.pixels[~obj & ~salt] == PSEUDO_BACKGROUND).mean() > 0.95


def test_a_wavering_band_on_a_flat_background_is_cleaned_by_both_crfs():
    img, obj = _disc_image()
    rng = np.random.default_rng(0)
    prior = np.where(obj, 0.9, 0.1).astype(np.float32)
    prior[4:10, :] = 0.55 + 0.1 * rng.random((6, prior.shape[1]))  # "maybe salient" on flat background
    pgt = crf_pseudo_gt(img, prior)
    trusted = pgt.pixels != UNCERTAIN
    assert ((pgt.pixels == PSEUDO_SALIENT) == obj)[trusted].all()  # everything trusted is right
    assert not (pgt.pixels[4:10] == PSEUDO_SALIENT).any()


def test_the_trusted_sets_are_the_intersection_and_the_residual_of_the_union():
    img, obj = _disc_image()
    rng = np.random.default_rng(1)
    prior = np.clip(np.where(obj, 0.7, 0.3) + rng.normal(0, 0.2, obj.shape), 0, 1).astype(np.float32)
    pgt = crf_pseudo_gt(img, prior)
    a, c = pgt.aggressive, pgt.conservative
    np.testing.assert_array_equal(pgt.pixels == PSEUDO_SALIENT, a & c)
    np.testing.assert_array_equal(pgt.pixels == PSEUDO_BACKGROUND, ~(a | c))
    np.testing.assert_array_equal(pgt.pixels == UNCERTAIN, a ^ c)


def test_superpixels_take_the_majority_of_their_pixels():
    pixels = np.array([[1, 1, 0, 0], [1, -1, 0, -1], [-1, -1, 1, 0]], np.int8)
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]], np.int32)
    # sp 0: three 1 and one -1 -> 1; sp 1: three 0, one -1 -> 0; sp 2: two -1 -> -1; sp 3: a 1-0 tie -> -1
    np.testing.assert_array_equal(superpixel_majority(pixels, labels, 5), [1, 0, -1, -1, -1])
    img, obj = _disc_image(8)
    with pytest.raises(ValueError, match="prior"):
        crf_pseudo_gt(img, np.zeros((7, 8), np.float32))


def _uncertain_prior(size=32, seed=0):
    """A textured image and a prior near 0.5 everywhere: every CRF setting moves some pixels."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    prior = rng.uniform(0.35, 0.65, (size, size)).astype(np.float32)
    return img, prior


def test_the_two_crfs_are_the_eq5_crf_with_the_papers_kernels_and_weights():
    from promote import dense_crf

    img, prior = _uncertain_prior()
    pgt = crf_pseudo_gt(img, prior)
    paper = {"appearance_weight": 10.0, "smoothness_weight": 3.0, "n_iterations": 5}
    # MIJR Sec. IV-A: CRFa (5, 1, 2), CRFc (200, 50, 20); a pixel is salient where Q > 0.5.
    a = dense_crf(img, prior, theta_alpha=5.0, theta_beta=1.0, theta_gamma=2.0, **paper) > 0.5
    c = dense_crf(img, prior, theta_alpha=200.0, theta_beta=50.0, theta_gamma=20.0, **paper) > 0.5
    assert 0 < a.sum() < a.size and (a != c).any()  # the case separates the two CRFs
    np.testing.assert_array_equal(pgt.aggressive, a)
    np.testing.assert_array_equal(pgt.conservative, c)


def test_the_weights_and_iterations_reach_both_crfs():
    img, prior = _uncertain_prior()
    # Without pairwise terms the CRF keeps the prior's own decision at every pixel.
    flat = crf_pseudo_gt(img, prior, appearance_weight=0.0, smoothness_weight=0.0)
    np.testing.assert_array_equal(flat.aggressive, prior > 0.5)
    np.testing.assert_array_equal(flat.conservative, prior > 0.5)
    # Zero mean-field iterations: the posterior is the unary's, again the prior's decision.
    none = crf_pseudo_gt(img, prior, n_iterations=0)
    np.testing.assert_array_equal(none.aggressive, prior > 0.5)
    np.testing.assert_array_equal(none.conservative, prior > 0.5)


def test_a_prior_of_exactly_one_half_is_nowhere_salient():
    # Q(salient) = 0.5 everywhere is no evidence: "salient" needs Q > 0.5, so nothing is salient.
    img, _ = _disc_image(16)
    pgt = crf_pseudo_gt(img, np.full((16, 16), 0.5, np.float32))
    assert not pgt.aggressive.any() and not pgt.conservative.any()
    assert not (pgt.pixels == PSEUDO_SALIENT).any()


def test_labels_give_per_superpixel_labels_and_without_labels_there_are_none():
    img, obj = _disc_image()
    prior = np.where(obj, 0.95, 0.05).astype(np.float32)
    pgt = crf_pseudo_gt(img, prior)
    assert pgt.superpixels is None
    assert pgt.pixels.dtype == np.int8 and pgt.pixels.shape == obj.shape
    # Three superpixels: the background, the object's left half, its right half.
    labels = np.where(obj, 1, 0).astype(np.int32)
    labels[obj & (np.arange(obj.shape[1]) >= obj.shape[1] // 2)] = 2
    with_sp = crf_pseudo_gt(img, prior, labels)
    np.testing.assert_array_equal(with_sp.pixels, pgt.pixels)
    assert with_sp.superpixels.dtype == np.int8
    np.testing.assert_array_equal(with_sp.superpixels, [PSEUDO_BACKGROUND, PSEUDO_SALIENT, PSEUDO_SALIENT])


def test_bad_inputs_are_named():
    img, obj = _disc_image(8)
    with pytest.raises(ValueError, match=r"^prior: expected values in \[0, 1\]"):
        crf_pseudo_gt(img, np.full((8, 8), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"^prior: expected the image's shape \(8, 8\), got \(8, 7\)"):
        crf_pseudo_gt(img, np.zeros((8, 7), np.float32))
    prior = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match=r"^labels: expected shape \(8, 8\), got \(8, 7\)"):
        crf_pseudo_gt(img, prior, np.zeros((8, 7), np.int32))
    with pytest.raises(ValueError, match=r"^labels: expected labels >= 0"):
        crf_pseudo_gt(img, prior, np.full((8, 8), -1, np.int32))


def test_each_superpixel_has_its_own_majority():
    # sp 0: 2 of 3 pixels salient; sp 1: 3 of 4 background (a larger count than sp 0's majority).
    pixels = np.array([[1, 1, -1, 0, 0, 0, 1]], np.int8)
    labels = np.array([[0, 0, 0, 1, 1, 1, 1]], np.int32)
    out = superpixel_majority(pixels, labels, 2)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, [1, 0])
