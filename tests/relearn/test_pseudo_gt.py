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
