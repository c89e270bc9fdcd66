"""Candidates drawn from the matched proposals (``box_links``): the object level can move a match."""

import numpy as np
import pytest

from alignment.bilevel import bilevel_alignment


def _scene():
    """A bright square at rows/cols 4..16 of ``a`` and 24..36 of ``b``, far beyond the flow window;
    a zero flow; 4 x 4 superpixels; one box on each square and one whole-image box per image."""
    h = w = 40
    labels = (np.arange(h)[:, None] // 4) * (w // 4) + np.arange(w)[None, :] // 4
    fa = np.zeros((h, w, 3), np.float32)
    fb = np.zeros((h, w, 3), np.float32)
    fa[4:16, 4:16] = 100.0
    fb[24:36, 24:36] = 100.0
    rng = np.random.default_rng(0)
    fa += rng.normal(0, 1, fa.shape).astype(np.float32)
    fb += rng.normal(0, 1, fb.shape).astype(np.float32)
    boxes_a = np.array([[4, 4, 16, 16], [0, 0, w, h]])
    boxes_b = np.array([[24, 24, 36, 36], [0, 0, w, h]])
    zero = np.zeros((h, w))
    return labels, boxes_a, boxes_b, zero, fa, fb


def _square_superpixels(labels, r0, r1):
    return np.unique(labels[r0:r1, r0:r1])


def test_box_links_align_an_object_the_flow_missed_to_its_matched_box():
    labels, boxes_a, boxes_b, zero, fa, fb = _scene()
    in_a = _square_superpixels(labels, 4, 16)
    in_b = set(_square_superpixels(labels, 24, 36).tolist())
    flow_only = bilevel_alignment(labels, labels, boxes_a, boxes_b, zero, zero, fa, fb)
    assert not any(j in in_b for j in flow_only.superpixel_match[in_a])  # out of the window's reach
    linked = bilevel_alignment(labels, labels, boxes_a, boxes_b, zero, zero, fa, fb, box_links=1)
    assert all(j in in_b for j in linked.superpixel_match[in_a])
    assert linked.proposal_match[0] == 0  # the square's box of a matched to the square's box of b
    np.testing.assert_array_less(linked.superpixel_distance[in_a], 10.0)  # same features: noise only
    # superpixels outside every box but the whole image keep a match of the same background
    assert np.all(np.isfinite(linked.superpixel_distance))


def test_box_links_zero_is_the_flow_only_candidate_set_and_bad_values_are_refused():
    labels, boxes_a, boxes_b, zero, fa, fb = _scene()
    base = bilevel_alignment(labels, labels, boxes_a, boxes_b, zero, zero, fa, fb)
    same = bilevel_alignment(labels, labels, boxes_a, boxes_b, zero, zero, fa, fb, box_links=0)
    np.testing.assert_array_equal(base.superpixel_match, same.superpixel_match)
    np.testing.assert_array_equal(base.objective, same.objective)
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="box_links must be an integer >= 0"):
            bilevel_alignment(labels, labels, boxes_a, boxes_b, zero, zero, fa, fb, box_links=bad)
