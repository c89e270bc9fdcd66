"""GIST descriptor (Oliva & Torralba 2001) as computed by LEAR's reference C implementation.

MIJR (Sec. III) retrieves, for every target image, the (at most) 5 pool images of most similar
"scene topology" with "the common GIST+HOG descriptor". The GIST variant most retrieval papers used
is LEAR's C code (Douze et al. 2009, ``lear_gist`` 1.1/1.2, the one behind ``pyleargist``); this
module re-implements its published algorithm with vectorised numpy / scipy FFTs.

Algorithm (per image, square side ``n`` = ``size``, channels c = 1 (gray) or 3 (RGB))
--------------------------------------------------------------------------------------
0. The image (values 0..255) is resized to ``n x n`` (area averaging when shrinking). LEAR's code
   takes whatever size it is given; the square resize is the usual driver (``compute_gist`` on
   pre-resized images, ``LMgist``'s ``imageSize``) and makes every descriptor comparable.
1. Pre-filter, on ``x = log(1 + I)`` per channel (Eq. P1), mirror-padded by 5 pixels on every side
   (``symmetric`` padding: the edge pixel is repeated) to ``(n+10) x (n+10)``::

       g_fc(fx, fy) = exp(-(fx^2 + fy^2) / s1^2),  s1 = fc / sqrt(log 2),  fc = 4       (Eq. P2)
       fx = i - W/2, fy = j - H/2 on the padded grid, moved to DFT order by fftshift
       y   = x - Re IFFT[ FFT[x] g_fc ]                       (whitening: remove low frequencies)
       m   = mean over channels of y                           (one normaliser for all channels)
       y  <- y / (0.2 + sqrt(| IFFT[ FFT[m^2] g_fc ] |))       (local contrast normalisation, Eq. P3)

   and the padding is removed again.
2. Gabor bank in the Fourier domain, built once per size (cached), for scale s = 0, 1, 2 with
   ``orientations = (8, 8, 4)`` and orientation k = 0 .. O_s - 1 (Eq. G)::

       G_{s,k}(fx, fy) = exp(-10 a (fr/H/b_s - 1)(fr/W/b_s - 1) - 2 c_s pi t^2)
       a = 0.35,  b_s = 0.3 / 1.85^s,  c_s = 16 O_s^2 / 32^2,  theta_{s,k} = pi k / O_s
       fr = sqrt(fx^2 + fy^2), t = atan2(fy, fx) + theta_{s,k} wrapped once into [-pi, pi]

   on the un-padded ``n x n`` grid (fx = i - W/2, fy = j - H/2, fftshifted). The filters are
   one-sided in frequency (an analytic Gabor), so the response is complex.
3. Energies: ``E_{c,s,k} = | IFFT[ FFT[y_c] G_{s,k} ] |`` (the unitary-normalised inverse), averaged
   over a 4 x 4 grid of blocks with edges ``floor(i n / 4)`` (Eq. E).

Output layout (LEAR's): ``index = ((c * K + f) * N + bx) * N + by``, channel-major, then the filter
(scale-major, orientation-minor: f = sum(O_<s) + k), then the block *column* bx, then the block row
by. 3 * 20 * 16 = 960 values for RGB, 320 for gray.

Decisions the published description leaves open
------------------------------------------------
* The reference transposes its FFT plans (``fftwf_plan_dft_2d(width, height, ...)`` on row-major
  data of ``height`` rows); that is harmless only on square images, which is why this module always
  works on a square. Single precision in the reference, single precision here (float32 FFTs); the
  two agree to ~1e-5 relative, well within the 1e-4 target.
* For an even padded side the whitening filter is exactly real-even on the DFT grid, so the real
  FFT path gives the reference's ``Re`` / ``| |`` results exactly; an odd side uses the complex path.
* RGBA: the alpha channel is dropped; uint16 and float [0, 1] inputs are rescaled to 0..255 (the
  pre-filter's ``log(1 + x)`` is not scale-free, and the reference saw 0..255 values).
* Brightness: a gain on ``1 + I`` (``1 + I' = g (1 + I)``) only adds ``log g`` to ``x``, which the
  whitening removes exactly (``g_fc(0) = 1``): the descriptor is invariant to it.

References
----------
A. Oliva and A. Torralba, "Modeling the shape of the scene: a holistic representation of the spatial
envelope", IJCV 42(3), 2001.
M. Douze, H. Jegou, H. Sandhawalia, L. Amsaleg, C. Schmid, "Evaluation of GIST descriptors for
web-scale image search", CIVR 2009 (LEAR's implementation).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
import scipy.fft as sfft

from retrieval._gist_kernels import _amplitude_block_means, _apply_filter
from retrieval._image import as_float255, resize_square
from superpixels.validation import check_int

__all__ = ["gist", "gist_batch", "gist_length"]

_PAD = 5  # the reference pads by 5 pixels before the pre-filter
_GABOR_A = 0.35
_GABOR_B0 = 0.3
_GABOR_B_RATIO = 1.85
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as rgb2gray


def _centred_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """fx = i - w/2, fy = j - h/2 (float64), moved to DFT order the way the reference's fftshift does."""
    fx = np.arange(w, dtype=np.float64) - w / 2.0
    fy = np.arange(h, dtype=np.float64) - h / 2.0
    fx, fy = np.meshgrid(fx, fy)
    return np.fft.fftshift(fx), np.fft.fftshift(fy)


@functools.lru_cache(maxsize=16)
def _whitening_filter(h: int, w: int, fc: float) -> np.ndarray:
    """Eq. P2 on the padded grid, DFT order, float32 (read-only, cached per size)."""
    fx, fy = _centred_grid(h, w)
    s1 = fc / np.sqrt(np.log(2.0))
    g = np.exp(-(fx * fx + fy * fy) / (s1 * s1)).astype(np.float32)
    g.setflags(write=False)
    return g


@functools.lru_cache(maxsize=16)
def _gabor_bank(h: int, w: int, orientations: tuple[int, ...]) -> np.ndarray:
    """Eq. G: the ``(sum(orientations), h, w)`` float32 transfer functions in DFT order (cached)."""
    fx, fy = _centred_grid(h, w)
    fr = np.sqrt(fx * fx + fy * fy)
    angle = np.arctan2(fy, fx)
    filters = []
    for s, n_or in enumerate(orientations):
        b = _GABOR_B0 / _GABOR_B_RATIO**s
        c = 16.0 * n_or * n_or / (32.0 * 32.0)
        radial = -10.0 * _GABOR_A * (fr / h / b - 1.0) * (fr / w / b - 1.0)
        for k in range(n_or):
            t = angle + np.pi / n_or * k
            # Wrapped once into [-pi, pi], as the reference does (angle in [-pi, pi], theta in [0, pi)).
            t = np.where(t < -np.pi, t + 2 * np.pi, np.where(t > np.pi, t - 2 * np.pi, t))
            filters.append(np.exp(radial - 2.0 * c * np.pi * t * t))
    bank = np.stack(filters).astype(np.float32)
    bank.setflags(write=False)
    return bank


def _block_edges(n: int, n_blocks: int) -> np.ndarray:
    return (np.arange(n_blocks + 1) * n) // n_blocks


def _prefilter(x: np.ndarray, fc: float) -> np.ndarray:
    """Eqs. P1-P3 on a ``(C, n, n)`` float32 array of 0..255 values; returns ``(C, n, n)`` float32."""
    x = np.log(x + np.float32(1.0))  # Eq. P1
    xp = np.pad(x, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)), mode="symmetric")
    hp, wp = xp.shape[1:]
    g = _whitening_filter(hp, wp, float(fc))
    if hp % 2 == 0 and wp % 2 == 0:
        # Even sides: g is real and even on the DFT grid, the real-FFT path is exact.
        gr = g[:, : wp // 2 + 1]
        low = sfft.irfft2(sfft.rfft2(xp, workers=1) * gr, s=(hp, wp), workers=1)
        xp = xp - low
        m = xp.mean(axis=0)
        var = np.abs(sfft.irfft2(sfft.rfft2(m * m, workers=1) * gr, s=(hp, wp), workers=1))
    else:
        low = sfft.ifft2(sfft.fft2(xp, workers=1) * g, workers=1).real
        xp = xp - low
        m = xp.mean(axis=0)
        var = np.abs(sfft.ifft2(sfft.fft2(m * m, workers=1) * g, workers=1))
    xp = xp / (np.float32(0.2) + np.sqrt(var))  # Eq. P3
    return np.ascontiguousarray(xp[:, _PAD:-_PAD, _PAD:-_PAD], dtype=np.float32)


def _gabor_energies(y: np.ndarray, bank: np.ndarray, n_blocks: int) -> np.ndarray:
    """Eq. E: ``(C, K, N, N)`` block means of the Gabor amplitudes, indexed ``[c, k, bx, by]``.

    OpenCV's single-precision DFT does the 2-D transforms (about twice as fast as pocketfft on
    256 x 256 complex planes here); numba kernels do the filter product and the block means.
    """
    c, h, w = y.shape
    k = bank.shape[0]
    ey = _block_edges(h, n_blocks).astype(np.int64)
    ex = _block_edges(w, n_blocks).astype(np.int64)
    out = np.empty((c, k, n_blocks, n_blocks), dtype=np.float32)
    buf = np.empty((h, w, 2), dtype=np.float32)
    block = np.empty((n_blocks, n_blocks), dtype=np.float64)
    for ci in range(c):
        spec = cv2.dft(y[ci], flags=cv2.DFT_COMPLEX_OUTPUT)
        for f in range(k):
            _apply_filter(spec, bank[f], buf)
            resp = cv2.idft(buf, flags=cv2.DFT_COMPLEX_OUTPUT | cv2.DFT_SCALE)
            _amplitude_block_means(resp, ey, ex, block)
            out[ci, f] = block
    return out


def _check_orientations(orientations) -> tuple[int, ...]:
    try:
        ors = tuple(int(o) for o in orientations)
    except TypeError:
        raise ValueError(
            f"orientations: expected a sequence of positive ints, got {orientations!r}"
        ) from None
    if not ors or any(o < 1 for o in ors) or any(o != v for o, v in zip(ors, orientations)):
        raise ValueError(f"orientations: expected a sequence of positive ints, got {orientations!r}")
    return ors


def gist_length(channels: int = 3, *, orientations=(8, 8, 4), n_blocks: int = 4) -> int:
    """Length of the GIST vector: ``channels * sum(orientations) * n_blocks**2`` (960 by default)."""
    return int(channels) * sum(_check_orientations(orientations)) * int(n_blocks) ** 2


def gist(
    image,
    *,
    size: int = 256,
    orientations: Sequence[int] = (8, 8, 4),
    n_blocks: int = 4,
    fc: float = 4.0,
    color: bool | None = None,
) -> np.ndarray:
    """GIST descriptor of one image (LEAR's reference algorithm).

    Parameters
    ----------
    image : (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) ndarray
        uint8, uint16, bool, or float in [0, 1]. Gray, RGB or RGBA (alpha dropped).
    size : int, optional
        Side of the square the image is resized to (>= 8, the reference's minimum). Default 256.
    orientations : sequence of int, optional
        Orientations per scale; one scale per entry. Default (8, 8, 4).
    n_blocks : int, optional
        The energies are averaged over an ``n_blocks x n_blocks`` grid. Default 4.
    fc : float, optional
        Cut-off (cycles per image) of the pre-filter's Gaussian. Default 4.
    color : bool or None, optional
        None: one channel for gray input, three for RGB. True: a gray image is replicated to three
        channels (the result is the gray descriptor repeated three times). False: RGB is converted
        to gray (ITU-R 601 luma) first.

    Returns
    -------
    g : (C * sum(orientations) * n_blocks**2,) ndarray of float32
        960 values for RGB, 320 for gray with the defaults, in the reference's order (see Notes).

    Notes
    -----
    Eq. P1-P3 (pre-filter): ``x = log(1 + I)``, ``y = x - lowpass(x)``,
    ``y / (0.2 + sqrt(lowpass(mean_c(y)^2)))`` with the Gaussian ``exp(-(fx^2+fy^2)/s1^2)``,
    ``s1 = fc / sqrt(log 2)``, after 5-pixel symmetric padding. Eq. G (Gabor bank):
    ``exp(-10 a (fr/n/b_s - 1)^2 - 2 c_s pi t^2)`` with ``a = 0.35``, ``b_s = 0.3 / 1.85^s``,
    ``c_s = 16 O_s^2 / 32^2``, ``theta = pi k / O_s``. Eq. E: block means of ``|IFFT(FFT(y) G)|``.
    Order: ``((c * K + f) * N + block_column) * N + block_row``. See the module docstring.

    References
    ----------
    A. Oliva and A. Torralba, IJCV 42(3), 2001; M. Douze et al., CIVR 2009 (LEAR's ``gist.c``).
    """
    size = check_int(size, "size", minimum=8)
    ors = _check_orientations(orientations)
    n_blocks = check_int(n_blocks, "n_blocks", minimum=1)
    if n_blocks > size:
        raise ValueError(f"n_blocks: expected <= size ({size}), got {n_blocks}")
    if not np.isfinite(fc) or fc <= 0:
        raise ValueError(f"fc: expected a positive number, got {fc!r}")
    return _gist_float255(as_float255(image), size, ors, n_blocks, fc, color)


def _gist_float255(x, size, ors, n_blocks, fc, color) -> np.ndarray:
    """:func:`gist` on an already validated ``(H, W, C)`` float32 0..255 array."""
    if color is True and x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    elif color is False and x.shape[2] == 3:
        x = (x @ _LUMA)[:, :, None]
    x = resize_square(x, size)
    y = _prefilter(np.ascontiguousarray(x.transpose(2, 0, 1)), fc)
    bank = _gabor_bank(size, size, ors)
    return _gabor_energies(y, bank, n_blocks).reshape(-1)


def gist_batch(images, **kwargs) -> np.ndarray:
    """GIST of many images: ``(N, D)`` float32, one row per image (keywords as :func:`gist`).

    All images must give the same length: pass ``color=True`` (or ``False``) for a pool that mixes
    gray and RGB images. The filter banks are built once per size and shared by all calls.
    """
    rows = [gist(im, **kwargs) for im in images]
    if not rows:
        raise ValueError("images: expected at least one image, got none")
    lengths = {r.shape[0] for r in rows}
    if len(lengths) > 1:
        raise ValueError(
            f"images: mixed gray and RGB inputs give lengths {sorted(lengths)}; pass color=True"
        )
    return np.stack(rows)
