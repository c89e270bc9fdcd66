"""Dense SIFT: shape and dtype, zero on flat images, shift equivariance, brightness invariance."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from alignment.dense_sift import dense_sift


def _texture(h=48, w=56, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 4 + 2, w // 4 + 2, 3)).astype(np.float64)
    # Blocky random texture, smoothed a little so gradients are spatially varied.
    big = np.kron(small, np.ones((4, 4, 1)))[:h, :w]
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1)) / 3
    return np.clip(big, 0, 255).astype(np.uint8)


def test_shape_and_dtype_rgb_and_grey():
    img = _texture()
    desc = dense_sift(img)
    assert desc.shape == (48, 56, 128)
    assert desc.dtype == np.uint8
    grey = dense_sift(img[..., 0])
    assert grey.shape == (48, 56, 128) and grey.dtype == np.uint8
    # A textured image gives non-trivial descriptors of (nearly) the quantised length 255.
    norms = np.linalg.norm(desc.reshape(-1, 128).astype(np.float64), axis=1)
    assert np.median(norms) > 200 and norms.max() < 257  # 255 up to rounding


def test_constant_image_descriptor_is_zero():
    img = np.full((32, 40, 3), 137, np.uint8)
    assert not dense_sift(img).any()


def test_shift_equivariance_away_from_borders():
    img = _texture(64, 64, seed=1)
    dy, dx = 5, 7
    shifted = np.roll(img, (dy, dx), axis=(0, 1))
    d0 = dense_sift(img)
    d1 = dense_sift(shifted)
    # Border effects reach 2 (gradient) + 1 (cell box) + 2 * 3 (cell offsets) pixels, plus the
    # wrap-around seam of np.roll: compare well inside.
    m = 14
    np.testing.assert_array_equal(d1[m + dy : -m, m + dx : -m], d0[m : -m - dy, m : -m - dx])


def test_brightness_offset_invariance():
    img = (_texture(40, 40, seed=2) // 2).astype(np.uint8)
    np.testing.assert_array_equal(dense_sift(img), dense_sift(img + np.uint8(50)))


REF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "siftflow-ref"


def _ref_image(name):
    return cv2.cvtColor(cv2.imread(str(REF / name)), cv2.COLOR_BGR2RGB)


@pytest.mark.skipif(not REF.is_dir(), reason="the SIFT-Flow reference outputs are not beside the repository")
@pytest.mark.parametrize("pair, key", [("ecssd_0001_0003", "a"), ("ecssd_0001_0003", "b"),
                                       ("astronaut_shift", "a")])
def test_descriptors_are_the_reference_programs_bytes(pair, key):
    # mexDenseSIFT(im2double(im), 3, 1) of Ce Liu's C++ code, stored with the reference flows
    expected = np.load(REF / f"{pair}_sift.npz")[key]
    np.testing.assert_array_equal(dense_sift(_ref_image(f"{pair}_{key}.png")), expected)


def test_quantisation_truncates_and_never_exceeds_255():
    img = _texture(40, 40, seed=3)
    desc = dense_sift(img).reshape(-1, 128).astype(np.float64)
    norms = np.linalg.norm(desc, axis=1)
    # truncation of 255 v / (||v|| + 0.01): every descriptor is a little shorter than 255
    textured = norms > 100
    assert textured.mean() > 0.9
    assert (norms[textured] < 255).all() and (norms[textured] > 255 - 128).all()
    # no clipping: the strongest bin of a descriptor goes well past Lowe's 0.2 * 255
    assert desc.max() > 0.2 * 255 + 1


@pytest.mark.parametrize(
    "bad, kwargs",
    [
        (np.zeros((4, 4, 2), np.uint8), {}),
        (np.zeros((4,), np.uint8), {}),
        (np.zeros((8, 8, 3), np.uint8), {"cell_size": 0}),
    ],
)
def test_bad_input_raises(bad, kwargs):
    with pytest.raises(ValueError):
        dense_sift(bad, **kwargs)


def _near_whole_bands(n=64, seed=0):
    """n 8-bin cell bands ``c`` whose first bin quantises to within ~1e-13 of a whole number in a
    descriptor of 16 copies of ``c`` (what a 1 x 1 image gives: its 16 cells clamp to itself)."""
    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.1, 1.0, (n, 8))
    for c in bands:
        rest = 16 * np.sum(c[1:] ** 2)
        target = rng.integers(20, 200) / 255.0  # c0 / (sqrt(16 c0^2 + rest) + 0.01) = target
        lo, hi = 0.0, 100.0
        for _ in range(200):  # bisection: the ratio rises with c0
            mid = (lo + hi) / 2
            if mid / (np.sqrt(16 * mid * mid + rest) + 0.01) < target:
                lo = mid
            else:
                hi = mid
        c[0] = lo
    return bands


def test_quantisation_near_a_whole_number_is_the_left_to_right_reference():
    import importlib

    ds = importlib.import_module("alignment.dense_sift")
    bands = np.concatenate([_near_whole_bands(seed=seed) for seed in range(4)])
    got = np.empty((len(bands), 128), np.uint8)
    ref = np.empty_like(got)
    for i, c in enumerate(bands):
        out = np.empty((1, 1, 128), np.uint8)
        ds._assemble(c.reshape(1, 1, 8), 3, out)
        got[i] = out[0, 0]
        v = np.tile(c, 16)
        n2 = 0.0
        for value in v:  # the reference's left-to-right sum of squares
            n2 += value * value
        ref[i] = np.minimum(v / (np.sqrt(n2) + 0.01) * 255.0, 255.0).astype(np.uint8)
    np.testing.assert_array_equal(got, ref)
    # the check can fail: a vectorised norm times 255 / denom truncates some of these otherwise
    v = np.tile(bands, (1, 16))
    fast = (v * (255.0 / (np.sqrt(np.sum(v * v, axis=1, keepdims=True)) + 0.01))).astype(np.uint8)
    assert (fast != ref).any()
