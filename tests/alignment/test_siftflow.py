"""SIFT-Flow: known shifts are recovered, identical images give zero flow, BP energy decreases."""

import dataclasses

import numpy as np
import pytest
from skimage import data, transform

from alignment.dense_sift import dense_sift
from alignment.siftflow import SiftFlowResult, sift_flow


@pytest.fixture(scope="module")
def astronaut():
    img = transform.resize(data.astronaut(), (128, 128), anti_aliasing=True)
    return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shifted_flow(astronaut):
    dx, dy = 3, -2
    # image2(y, x) = image1(y - dy, x - dx): pixel p of image 1 is at p + (dx, dy) in image 2.
    moved = np.roll(astronaut, (dy, dx), axis=(0, 1))
    return dx, dy, sift_flow(dense_sift(astronaut), dense_sift(moved))


def test_recovers_a_known_shift(shifted_flow):
    dx, dy, res = shifted_flow
    inner = (slice(12, -12), slice(12, -12))
    correct = (res.vx[inner] == dx) & (res.vy[inner] == dy)
    assert correct.mean() >= 0.95
    assert res.vx.dtype == np.int32 and res.vy.dtype == np.int32
    assert res.vx.shape == res.vy.shape == res.cost.shape == res.valid.shape == (128, 128)
    # Where the match is right the descriptors coincide (same image content), so the cost is ~0.
    assert np.median(res.cost[inner][correct]) == 0.0
    assert res.valid[inner].all()


def test_identical_images_give_zero_flow(astronaut):
    desc = dense_sift(astronaut)
    res = sift_flow(desc, desc)
    assert not res.vx.any() and not res.vy.any()
    assert not res.cost.any()
    assert res.valid.all()


def test_energy_decreases_over_iterations(shifted_flow):
    _, _, res = shifted_flow
    assert len(res.energy_levels) == 4
    assert res.energy is res.energy_levels[-1]
    assert [len(e) for e in res.energy_levels] == [60, 30, 30, 30]
    for e in res.energy_levels:
        assert np.all(np.isfinite(e)) and np.all(e > 0)
        # Loopy BP is not a descent method: allow tiny rises, require an overall decrease.
        rel_rise = np.diff(e) / e[:-1]
        assert rel_rise.max() <= 5e-3
        assert e[-1] < e[0]
        assert e[-1] <= e.min() * (1 + 5e-3)


def test_energy_on_a_zoomed_pair_and_result_is_frozen(astronaut):
    # A non-rigid pair: a 10% zoom about the centre, so the flow varies over the image.
    zoom = transform.rescale(astronaut, 1.1, channel_axis=2, anti_aliasing=True)[6:134, 6:134]
    zoom = np.round(zoom * 255).astype(np.uint8)
    res = sift_flow(dense_sift(astronaut), dense_sift(zoom), n_iterations=12)
    assert isinstance(res, SiftFlowResult)
    assert res.energy.shape == (12,) and res.energy[-1] < res.energy[0]
    # Zoom about the centre: flow points outwards, vx grows with x (true slope 0.1 per pixel).
    inner = (slice(16, -16), slice(16, -16))
    xs = np.broadcast_to(np.arange(128), (128, 128))[inner]
    slope = np.polyfit(xs.ravel(), res.vx[inner].ravel(), 1)[0]
    assert 0.05 < slope < 0.15
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.vx = None


def test_different_image_sizes_are_accepted(astronaut):
    da = dense_sift(astronaut)
    db = dense_sift(astronaut[:100, :120])
    res = sift_flow(da, db)
    assert res.vx.shape == (128, 128)
    inner = (slice(12, 88), slice(12, 108))
    assert ((res.vx[inner] == 0) & (res.vy[inner] == 0)).mean() >= 0.95
    assert not res.valid.all() or (res.vy + np.arange(128)[:, None] < 100).all()


@pytest.mark.parametrize(
    "a, b, kwargs",
    [
        (np.zeros((16, 16, 128), np.float32), np.zeros((16, 16, 128), np.uint8), {}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 64), np.uint8), {}),
        (np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), {}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 128), np.uint8), {"n_levels": 6}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 128), np.uint8), {"window": -1}),
        (np.zeros((16, 16, 128), np.uint8), np.zeros((16, 16, 128), np.uint8), {"alpha": np.nan}),
    ],
)
def test_bad_input_raises(a, b, kwargs):
    with pytest.raises(ValueError):
        sift_flow(a, b, **kwargs)
