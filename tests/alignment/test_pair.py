"""alignment.pair: full-size superpixels and boxes brought to the working grid, and one pair's
bi-level alignment from full-size inputs."""

import numpy as np
import pytest

from alignment import dense_sift
from alignment.pair import align_pair, to_working_grid, working_image


def test_boxes_scale_outwards_to_whole_cells_and_stay_on_the_grid():
    labels = np.zeros((100, 200), np.int32)
    boxes = np.array([[0, 0, 200, 100],    # the whole image
                      [10, 10, 11, 11],    # one pixel: one cell
                      [199, 99, 200, 100],  # the last pixel
                      [50, 25, 150, 75]])  # the middle half: exact cells
    lab, b = to_working_grid(labels, boxes, 20)
    assert lab.shape == (20, 20)
    assert b.tolist() == [[0, 0, 20, 20], [1, 2, 2, 3], [19, 19, 20, 20], [5, 5, 15, 15]]


def test_labels_are_resampled_by_nearest_neighbour():
    labels = np.repeat(np.repeat(np.arange(4, dtype=np.int32).reshape(2, 2), 30, 0), 40, 1)  # 60 x 80
    lab, _ = to_working_grid(labels, np.array([[0, 0, 80, 60]]), 8)
    assert np.array_equal(lab, np.repeat(np.repeat(np.arange(4).reshape(2, 2), 4, 0), 4, 1))


def test_working_image_is_square_at_the_grid_size():
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    for size in (16, 128):  # shrinking and enlarging
        out = working_image(im, size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8


def _image_and_labels(seed=0):
    # 8 x 8 blocks of random colour at 96 x 96; label 64 is a one-pixel-wide column that the
    # resampling to the 32 x 32 grid drops
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (64, 3), dtype=np.uint8)
    r, c = np.indices((96, 96))
    labels = ((r // 12) * 8 + c // 12).astype(np.int32)
    labels[:, 1] = 64
    return colours[np.minimum(labels, 63)], labels


def test_a_self_pair_aligns_every_superpixel_to_itself_and_a_vanished_one_to_none():
    image, labels = _image_and_labels()
    grid = working_image(image, 32)
    desc = dense_sift(grid)
    z = np.zeros((32, 32))
    boxes = np.array([[0, 0, 48, 48], [48, 0, 96, 96], [0, 0, 96, 96]])
    r = align_pair(image, image, labels, labels, boxes, boxes, desc, desc, z, z)
    lab, _ = to_working_grid(labels, boxes, 32)
    assert 64 not in lab  # the sliver is gone on the grid
    assert r.superpixel_match.shape == (65,) and r.superpixel_distance.shape == (65,)
    assert r.superpixel_match[64] == -1 and np.isinf(r.superpixel_distance[64])
    present = np.unique(lab)
    assert np.array_equal(r.superpixel_match[present], present)
    assert np.all(r.superpixel_distance[present] >= 0)
    assert r.proposal_match.tolist() == [0, 1, 2]  # each box to itself


def test_the_alignment_parameters_reach_the_solver():
    image, labels = _image_and_labels(1)
    other, labels_b = _image_and_labels(2)
    da, db = dense_sift(working_image(image, 32)), dense_sift(working_image(other, 32))
    rng = np.random.default_rng(3)
    vx, vy = rng.normal(0, 3, (32, 32)), rng.normal(0, 3, (32, 32))
    boxes = np.array([[0, 0, 48, 48], [48, 0, 96, 96], [0, 0, 96, 96]])
    base = align_pair(image, other, labels, labels_b, boxes, boxes, da, db, vx, vy)
    assert base.k_schedule.tolist() == list(range(10, 0, -1))
    assert align_pair(image, other, labels, labels_b, boxes, boxes, da, db, vx, vy,
                      k_init=3).k_schedule.tolist() == [3, 2, 1]
    sift_only = align_pair(image, other, labels, labels_b, boxes, boxes, da, db, vx, vy, colour_weight=0.0)
    assert not np.array_equal(sift_only.superpixel_distance, base.superpixel_distance)
    plain = align_pair(image, other, labels, labels_b, boxes, boxes, da, db, vx, vy, window=0)
    assert not np.array_equal(plain.superpixel_distance, base.superpixel_distance)
    with pytest.raises(ValueError, match="object_weight"):
        align_pair(image, other, labels, labels_b, boxes, boxes, da, db, vx, vy, object_weight=-1.0)
