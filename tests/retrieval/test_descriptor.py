"""Combined descriptor: weights, normalisation, input handling (hypothesis), duplicates retrieval."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from retrieval import (
    descriptor,
    descriptor_batch,
    descriptor_length,
    gist,
    nearest_neighbours,
    pooled_hog,
)


def _img(seed, h=60, w=80):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    import cv2

    return cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def test_unit_norm_and_parts():
    img = _img(0)
    d = descriptor(img)
    assert d.shape == (descriptor_length(),) == (1104,) and d.dtype == np.float32
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    g, h = gist(img), pooled_hog(img)
    np.testing.assert_allclose(d[:960], np.sqrt(0.5) * g / np.linalg.norm(g), atol=1e-6)
    np.testing.assert_allclose(d[960:], np.sqrt(0.5) * h / np.linalg.norm(h), atol=1e-6)


def test_squared_distance_is_weighted_cosine_distance():
    a, b = _img(1), _img(2)
    for wg, wh in ((0.5, 0.5), (0.8, 0.2), (3.0, 1.0)):
        da = descriptor(a, gist_weight=wg, hog_weight=wh)
        db = descriptor(b, gist_weight=wg, hog_weight=wh)
        ga, gb, ha, hb = gist(a), gist(b), pooled_hog(a), pooled_hog(b)
        cg = ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb)
        ch = ha @ hb / np.linalg.norm(ha) / np.linalg.norm(hb)
        s = wg + wh
        expected = 2 * (wg / s * (1 - cg) + wh / s * (1 - ch))
        assert np.sum((da - db) ** 2) == pytest.approx(expected, abs=1e-5)
    only_gist = descriptor(a, hog_weight=0.0)
    assert np.all(only_gist[960:] == 0)


def test_gray_equals_replicated_rgb():
    img = _img(3)[..., 0]
    np.testing.assert_allclose(descriptor(img), descriptor(np.repeat(img[..., None], 3, 2)),
                               atol=1e-6)


def test_blank_image_is_zero_not_nan():
    d = descriptor(np.full((30, 30, 3), 9, np.uint8))
    assert np.all(np.isfinite(d)) and np.all(d == 0)


def test_duplicates_in_a_pool_are_each_others_nearest():
    imgs = [_img(s) for s in range(8)]
    imgs.append(imgs[2].copy())                      # exact duplicate of 2
    imgs.append(imgs[5][::2, ::2].copy())            # half-size copy of 5
    d = descriptor_batch(imgs)
    nn = nearest_neighbours(d, 5)
    assert nn.index[2, 0] == 8 and nn.index[8, 0] == 2
    assert nn.index[5, 0] == 9 and nn.index[9, 0] == 5
    assert not np.any(nn.index == np.arange(len(imgs))[:, None])


def test_weight_validation():
    img = _img(4)
    for kw in ({"gist_weight": -1}, {"hog_weight": float("nan")},
               {"gist_weight": 0, "hog_weight": 0}):
        with pytest.raises(ValueError):
            descriptor(img, **kw)
    with pytest.raises(ValueError):
        descriptor_batch([])


# --------------------------------------------------------------------------- input handling

_dtypes = st.sampled_from(["uint8", "uint16", "float32", "float64", "bool"])


@st.composite
def _images(draw):
    h = draw(st.integers(1, 41))
    w = draw(st.integers(1, 41))
    layout = draw(st.sampled_from(["gray", "gray1", "rgb", "rgba"]))
    shape = {"gray": (h, w), "gray1": (h, w, 1), "rgb": (h, w, 3), "rgba": (h, w, 4)}[layout]
    dtype = draw(_dtypes)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        a = rng.integers(0, 256, shape).astype(np.uint8)
    elif dtype == "uint16":
        a = rng.integers(0, 65536, shape).astype(np.uint16)
    elif dtype == "bool":
        a = rng.random(shape) > 0.5
    else:
        a = rng.random(shape).astype(dtype)
    return a


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_images())
def test_accepts_gray_rgb_rgba_any_size(img):
    d = descriptor(img, size=32, hog_size=32)
    assert d.shape == (960 + 144,) and np.all(np.isfinite(d))
    assert np.linalg.norm(d) <= 1.0 + 1e-5
    g = gist(img, size=16)
    channels = 1 if img.ndim == 2 or img.shape[2] == 1 else 3
    assert g.shape == (channels * 320,) and np.all(np.isfinite(g))


_bad_shapes = st.one_of(
    st.tuples(st.integers(1, 9)),                                         # 1-D
    st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([2, 5, 6])),  # bad channels
    st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)),  # 4-D
    st.tuples(st.just(0), st.integers(1, 9), st.just(3)),                 # empty
    st.tuples(st.integers(1, 9), st.just(0)),                             # empty gray
)


@settings(max_examples=40, deadline=None)
@given(_bad_shapes)
def test_bad_shapes_raise_value_error(shape):
    img = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError):
        descriptor(img)
    with pytest.raises(ValueError):
        gist(img)
    with pytest.raises(ValueError):
        pooled_hog(img)


@pytest.mark.parametrize(
    "img",
    [np.full((8, 8, 3), 1.5), np.full((8, 8), -0.1), np.full((8, 8, 3), np.nan),
     np.zeros((8, 8, 3), np.int32), np.zeros((8, 8, 3), np.complex64)],
)
def test_bad_values_and_dtypes_raise_value_error(img):
    with pytest.raises(ValueError):
        descriptor(img)


# --------------------------------------------------------------------------- pool centring

def test_centre_pool_is_weighted_correlation():
    from retrieval import centre_pool

    imgs = [_img(s) for s in range(6)]
    d = descriptor_batch(imgs)
    c = centre_pool(d)
    assert c.shape == d.shape and c.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    g = np.stack([gist(im) for im in imgs]).astype(np.float64)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g -= g.mean(axis=0)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(c[:, :960], np.sqrt(0.5) * g, atol=1e-5)
    # The descriptor's own weights do not matter once the parts are re-normalised.
    d2 = descriptor_batch(imgs, gist_weight=0.9, hog_weight=0.1)
    np.testing.assert_allclose(centre_pool(d2), c, atol=1e-5)
    # Only GIST.
    assert np.all(centre_pool(d, hog_weight=0.0)[:, 960:] == 0)


def test_centre_pool_keeps_duplicates_and_handles_one_image():
    from retrieval import centre_pool

    imgs = [_img(s) for s in range(6)] + [_img(2)]
    c = centre_pool(descriptor_batch(imgs))
    nn = nearest_neighbours(c, 5)
    assert nn.index[2, 0] == 6 and nn.index[6, 0] == 2
    one = centre_pool(descriptor_batch(imgs[:1]))
    assert np.all(one == 0)
    with pytest.raises(ValueError):
        centre_pool(np.zeros((3, 10)))
    with pytest.raises(ValueError):
        centre_pool(c, gist_weight=-1.0)
