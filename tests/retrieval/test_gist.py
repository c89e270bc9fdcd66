"""GIST against a literal, slow transcription of LEAR's published algorithm, plus its invariances."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from retrieval import gist, gist_batch, gist_length
from retrieval.gist import _gabor_bank, _whitening_filter

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sod"


# --------------------------------------------------------------------------- the oracle
# A deliberately naive float64 transcription of the published description of LEAR's gist.c:
# explicit DFT matrices instead of FFTs, the reference's own index formulas for padding, fftshift,
# the filters and the block means, and its output order res[c][f][bx * N + by].

def _dft(a, inverse=False):
    h, w = a.shape
    sign = 1.0 if inverse else -1.0
    mh = np.exp(sign * 2j * np.pi * np.outer(np.arange(h), np.arange(h)) / h)
    mw = np.exp(sign * 2j * np.pi * np.outer(np.arange(w), np.arange(w)) / w)
    return mh @ a @ mw.T  # unnormalised, like FFTW


def _c_fftshift(a):
    h, w = a.shape
    out = np.empty_like(a)
    for j in range((h + 1) // 2):
        for i in range((w + 1) // 2):
            out[j + h // 2, i + w // 2] = a[j, i]
        for i in range(w // 2):
            out[j + h // 2, i] = a[j, i + (w + 1) // 2]
    for j in range(h // 2):
        for i in range((w + 1) // 2):
            out[j, i + w // 2] = a[j + (h + 1) // 2, i]
        for i in range(w // 2):
            out[j, i] = a[j + (h + 1) // 2, i + (w + 1) // 2]
    return out


def _c_pad(src, p):
    h, w = src.shape
    out = np.zeros((h + 2 * p, w + 2 * p))
    out[p:p + h, p:p + w] = src
    for j in range(p):
        for i in range(w):
            out[j, i + p] = src[p - j - 1, i]
            out[j + p + h, i + p] = src[h - j - 1, i]
    for j in range(h + 2 * p):
        for i in range(p):
            out[j, i] = out[j, p + p - i - 1]
            out[j, i + p + w] = out[j, w + 2 * p - p - i - 1]
    return out


def _grid(h, w):
    fx = np.array([[i - w / 2.0 for i in range(w)] for _ in range(h)])
    fy = np.array([[j - h / 2.0 for _ in range(w)] for j in range(h)])
    return fx, fy


def _oracle(img, ors=(8, 8, 4), nb=4, fc=4):
    """img: (n, n, C) float64 values 0..255 -> LEAR's descriptor, float64."""
    n = img.shape[0]
    chans = [np.log(img[:, :, c] + 1.0) for c in range(img.shape[2])]
    pads = [_c_pad(c, 5) for c in chans]
    hp, wp = pads[0].shape
    fx, fy = _grid(hp, wp)
    s1 = fc / np.sqrt(np.log(2.0))
    gfc = _c_fftshift(np.exp(-(fx ** 2 + fy ** 2) / (s1 * s1)))
    pads = [p - (_dft(_dft(p) * gfc, inverse=True).real / (hp * wp)) for p in pads]
    mean = sum(pads) / len(pads)
    local = np.sqrt(np.abs(_dft(_dft(mean * mean) * gfc, inverse=True)) / (hp * wp))
    outs = [(p / (0.2 + local))[5:-5, 5:-5] for p in pads]
    # Gabor bank, per the published formula.
    fx, fy = _grid(n, n)
    fr = _c_fftshift(np.sqrt(fx ** 2 + fy ** 2))
    f = _c_fftshift(np.arctan2(fy, fx))
    bank = []
    for s in range(1, len(ors) + 1):
        for j in range(1, ors[s - 1] + 1):
            a, b = 0.35, 0.3 / 1.85 ** (s - 1)
            c, th = 16.0 * ors[s - 1] ** 2 / 32 ** 2, np.pi / ors[s - 1] * (j - 1)
            g = np.empty((n, n))
            for jj in range(n):
                for ii in range(n):
                    t = f[jj, ii] + th
                    if t < -np.pi:
                        t += 2 * np.pi
                    elif t > np.pi:
                        t -= 2 * np.pi
                    g[jj, ii] = np.exp(-10 * a * (fr[jj, ii] / n / b - 1) ** 2 - 2 * c * np.pi * t * t)
            bank.append(g)
    edges = [i * n // nb for i in range(nb + 1)]
    res = []
    for o in outs:
        spec = _dft(o)
        for g in bank:
            amp = np.abs(_dft(spec * g, inverse=True)) / (n * n)
            for k in range(nb):  # block column
                for l in range(nb):  # block row
                    res.append(amp[edges[l]:edges[l + 1], edges[k]:edges[k + 1]].mean())
    return np.array(res)


def _scene(h, w, seed=0):
    """A smooth synthetic scene: sky gradient, a disc, a bar and mild texture (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    img[..., 0] = 60 + 120 * yy / h
    img[..., 1] = 90 + 60 * xx / w
    img[..., 2] = 200 - 100 * yy / h
    disc = (yy - 0.55 * h) ** 2 + (xx - 0.35 * w) ** 2 < (0.2 * min(h, w)) ** 2
    img[disc] = [230, 60, 40]
    img[int(0.2 * h):int(0.3 * h), int(0.6 * w):int(0.9 * w)] = [20, 20, 20]
    tex = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.0)
    img += 25 * tex[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- reference agreement

@pytest.mark.parametrize("n", [24, 21])
def test_matches_literal_transcription_of_reference(n):
    rng = np.random.default_rng(n)
    img = _scene(n, n, seed=n).astype(np.float64)
    img = np.clip(img + rng.integers(-30, 30, img.shape), 0, 255).astype(np.uint8)
    ours = gist(img, size=n)
    ref = _oracle(img.astype(np.float64))
    assert ours.shape == (960,) and ours.dtype == np.float32
    # Target ~1e-4; the float32 FFTs (as in the reference) land at ~5e-7 (values 0.007 .. 0.32).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_gray_matches_reference_and_color_replication():
    img = _scene(20, 20, seed=3)[..., 1]
    ours = gist(img, size=20)
    assert ours.shape == (320,)
    np.testing.assert_allclose(ours, _oracle(img[..., None].astype(np.float64)), atol=1e-4)
    rgb = np.repeat(img[..., None], 3, axis=2)
    np.testing.assert_allclose(gist(rgb, size=20), np.tile(ours, 3), atol=1e-6)
    np.testing.assert_allclose(gist(img, size=20, color=True), np.tile(ours, 3), atol=1e-6)
    assert gist(rgb, size=20, color=False).shape == (320,)


def test_filter_values_from_the_published_formula():
    n = 20
    bank = _gabor_bank(n, n, (8, 8, 4))
    assert bank.shape == (20, n, n)
    # DC (index [0, 0] in DFT order: fx = fy = 0) of the theta = 0 filters: exp(-10 * 0.35).
    for f in (0, 8, 16):
        assert bank[f, 0, 0] == pytest.approx(np.exp(-3.5), rel=1e-6)
    # Peak of scale 0, theta = 0 at fr = 0.3 n = 6 on the fx axis, angle 0: exactly 1.
    assert bank[0, 0, 6] == pytest.approx(1.0, abs=1e-7)
    # theta = pi/2 (k = 4 of 8) peaks at angle -pi/2: fy = -6, fx = 0 -> row n - 6.
    assert bank[4, n - 6, 0] == pytest.approx(1.0, abs=1e-7)
    assert bank.max() <= 1.0 + 1e-7
    g = _whitening_filter(30, 30, 4.0)
    assert g[0, 0] == 1.0
    # Gaussian with s1 = fc / sqrt(log 2): half amplitude at fr = fc.
    assert g[0, 4] == pytest.approx(0.5, rel=1e-6)


def test_block_order_is_column_major():
    # Energy only in the left half: the first 2 of every 4 x 4 block (bx = 0) carry the texture.
    rng = np.random.default_rng(0)
    img = np.full((64, 64), 128, np.uint8)
    img[:, :16] = rng.integers(0, 255, (64, 16))
    g = gist(img, size=64).reshape(20, 4, 4)  # [filter, bx, by]
    assert g[:, 0, :].mean() > 5 * g[:, 3, :].mean()
    assert np.allclose(g[:, 0, :].mean(axis=0), g[:, 0, :].mean(), rtol=0.5)


def test_constant_image_gives_zero():
    assert np.abs(gist(np.full((40, 50, 3), 77, np.uint8), size=32)).max() < 1e-6


# --------------------------------------------------------------------------- invariances

def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_resized_copy_agrees():
    img = _scene(300, 400)
    small = cv2.resize(img, (200, 150), interpolation=cv2.INTER_AREA)
    large = cv2.resize(img, (600, 450), interpolation=cv2.INTER_LINEAR)
    g = gist(img)
    assert _cos(g, gist(small)) > 0.99
    assert _cos(g, gist(large)) > 0.99


def test_resized_copy_agrees_on_real_image():
    # A copy agrees when both sizes resolve the descriptor's band: a half-size ECSSD copy
    # (200 x 133) lacks the frequencies above ~66 cycles that the finest Gabor scale at n = 256
    # measures (cosine ~0.985 there), so it is compared at n = 128, and a 2x copy at n = 256.
    path = DATA / "ECSSD" / "images" / "0001.jpg"
    if not path.exists():
        pytest.skip("ECSSD not available")
    img = cv2.imread(str(path))[:, :, ::-1]
    h, w = img.shape[:2]
    half = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    double = cv2.resize(img, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    assert _cos(gist(img, size=128), gist(half, size=128)) > 0.99
    assert _cos(gist(img), gist(double)) > 0.99


def test_brightness_gain_on_one_plus_intensity_is_exactly_invisible():
    # 1 + I' = a (1 + I): log adds log(a), which the whitening filter (g(0) = 1) removes exactly.
    rng = np.random.default_rng(1)
    x = (1.0 + rng.random((64, 64, 3)) * 254.0) / 255.0  # values in [1/255, 1]
    for a in (0.5, 0.8):
        y = (a * (1.0 + 255.0 * x) - 1.0) / 255.0
        np.testing.assert_allclose(gist(y, size=64), gist(x, size=64), atol=2e-5)
        # Through the (linear) resize as well.
        np.testing.assert_allclose(gist(y, size=32), gist(x, size=32), atol=2e-5)


def test_uint8_brightness_change_is_nearly_invisible():
    img = _scene(128, 128)
    darker = np.round(img * 0.7).astype(np.uint8)
    assert _cos(gist(img), gist(darker)) > 0.995


def _flip_permutation(ors):
    """Orientation k of a scale with O orientations -> (O - k) mod O under a horizontal flip."""
    perm, start = [], 0
    for o in ors:
        perm += [start + (o - k) % o for k in range(o)]
        start += o
    return np.array(perm)


def test_horizontal_flip_relation():
    # Mirroring x maps the angle phi to pi - phi, so G_theta becomes G_(pi - theta) = filter
    # (O - k) mod O (theta = 0 becomes theta = pi, the point reflection of theta = 0, whose
    # amplitude response to a real image is the same); the block columns mirror.
    # Exact except for the Nyquist column fx = -n/2, which has no mirror partner on the grid:
    # ~1e-6 on a smooth image, ~1e-4 on white noise.
    perm = _flip_permutation((8, 8, 4))
    rng = np.random.default_rng(2)
    smooth = cv2.GaussianBlur((rng.random((256, 256, 3)) * 255).astype(np.float32), (0, 0), 3)
    smooth = np.clip(smooth, 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    for img, tol in ((smooth, 1e-5), (noise, 5e-4), (_scene(256, 256), 5e-4)):
        g = gist(img).reshape(3, 20, 4, 4)
        flipped = gist(img[:, ::-1]).reshape(3, 20, 4, 4)
        predicted = g[:, perm][:, :, ::-1, :]
        err = np.abs(flipped - predicted).max()
        assert err < tol
        assert np.abs(flipped - g).max() > 20 * err  # the relation is not trivially satisfied


def test_filter_bank_mirror_relation_outside_nyquist():
    n = 32
    bank = _gabor_bank(n, n, (8, 8, 4))
    perm = _flip_permutation((8, 8, 4))
    cols = (-np.arange(n)) % n
    mirrored = bank[:, :, cols]
    # Excluded: the Nyquist column (no mirror partner on the grid) and the row / column of DC
    # (atan2(0, 0) = 0 is not mirrored to pi; DC and Nyquist carry ~no energy after whitening).
    keep = np.ones(n, bool)
    keep[[0, n // 2]] = False
    both = np.ix_(keep, keep)
    for f in range(20):
        if perm[f] != f or f in (4, 12, 18):  # theta != 0 (and pi/2, its own mirror)
            np.testing.assert_allclose(mirrored[f][both], bank[perm[f]][both], atol=1e-6)
        else:  # theta = 0 -> theta = pi: the point reflection of the same filter
            reflected = bank[f][(-np.arange(n)) % n][:, (-np.arange(n)) % n]
            np.testing.assert_allclose(mirrored[f][both], reflected[both], atol=1e-6)


# --------------------------------------------------------------------------- API

def test_batch_and_lengths():
    imgs = [_scene(50, 70, seed=s) for s in range(3)]
    b = gist_batch(imgs, size=32)
    assert b.shape == (3, 960)
    np.testing.assert_array_equal(b[1], gist(imgs[1], size=32))
    assert gist_length(3) == 960 and gist_length(1) == 320
    with pytest.raises(ValueError):
        gist_batch([imgs[0], imgs[0][..., 0]], size=32)
    assert gist_batch([imgs[0], imgs[0][..., 0]], size=32, color=True).shape == (2, 960)
    with pytest.raises(ValueError):
        gist_batch([])


def test_parameter_validation():
    img = _scene(40, 40)
    for kw in ({"size": 4}, {"size": 8.5}, {"orientations": (8, 0)}, {"orientations": ()},
               {"n_blocks": 0}, {"fc": 0}, {"fc": float("nan")}):
        with pytest.raises(ValueError):
            gist(img, **kw)
    assert gist(img, size=16, orientations=(4, 2), n_blocks=2).shape == (3 * 6 * 4,)
