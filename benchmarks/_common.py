"""Helpers shared by the benchmark scripts: data locations, image loading, scores, result files.

Every benchmark writes its results with :func:`write_results` under the name of its module
(``bench_slic.py`` -> ``benchmarks/results/bench_slic.json`` and ``.md``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
IMAGE_SUFFIXES = (".jpg", ".png", ".bmp")


# --------------------------------------------------------------------------- data


def dataset_dir(dataset: str) -> Path:
    """Folder of one SOD dataset (``images/``, ``gt/``, ``<split>.txt``)."""
    return DATA / "sod" / dataset


def split_stems(dataset: str, split: str) -> list[str]:
    """Stems listed in ``<dataset>/<split>.txt``, in file order."""
    path = dataset_dir(dataset) / f"{split}.txt"
    return [s.strip() for s in path.read_text().split() if s.strip()]


def image_path(dataset: str, stem: str) -> Path:
    """The image of ``stem`` (the first of ``IMAGE_SUFFIXES`` that exists; ``.jpg`` if none)."""
    folder = dataset_dir(dataset) / "images"
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return folder / f"{stem}.jpg"


def gt_path(dataset: str, stem: str) -> Path:
    return dataset_dir(dataset) / "gt" / f"{stem}.png"


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``(H, W, 3) uint8`` RGB (OpenCV decoder)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A ground-truth mask file as ``(H, W) uint8`` (0 / 255)."""
    import cv2

    gt = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gt is None:
        raise OSError(f"cannot read mask {path}")
    return gt


def read_map(path: str | os.PathLike, shape) -> np.ndarray:
    """A saliency map file as ``(H, W) float32`` in [0, 1], resized (bilinear) to ``shape`` if needed."""
    import cv2

    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise OSError(f"cannot read map {path}")
    if m.shape != tuple(shape):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return m.astype(np.float32) / 255.0


def load_split(
    dataset: str, split: str, n: int | None = None, seed: int = 0
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Stems, RGB images and GT masks of a split; ``n`` picks a fixed random subset.

    The subset is ``numpy.random.default_rng(seed).choice`` of ``n`` stems, kept in file order.
    """
    stems = split_stems(dataset, split)
    if n is not None and n < len(stems):
        idx = np.sort(np.random.default_rng(seed).choice(len(stems), size=n, replace=False))
        stems = [stems[i] for i in idx]
    images = [read_rgb(image_path(dataset, s)) for s in stems]
    gts = [read_mask(gt_path(dataset, s)) for s in stems]
    return stems, images, gts


def taps_reader(features: str, threads: int | None = None):
    """A function image -> ``{tap: (C, h, w) float16}``: the result of the feature stage ``features``
    (``deep_features`` or ``u2netp_features``) with its default parameters, by the stage's own
    function, so a benchmark scores exactly what a run caches."""
    from pipeline import registry
    from pipeline.registry import ItemContext

    if features not in registry.FEATURE_STAGES:
        raise ValueError(f"features: expected one of {registry.FEATURE_STAGES}, got {features!r}")
    stage = registry.get(features)
    params, ctx = stage.default_params(), ItemContext(device="cpu", threads=threads)

    def read(image):
        result = stage.func([{"pool": {"image": image}}], params, ctx)[0]
        return {t: v for t, v in result.items() if t not in ("strides", "size")}

    return read


def feature_layout(features: str) -> tuple[int, dict[str, int]]:
    """The network input side and the stride of each tap of the feature stage ``features`` with its
    defaults (its ``size`` and ``strides``, read from one run of the stage on a small image)."""
    from pipeline import registry
    from pipeline.registry import ItemContext

    stage = registry.get(features)
    image = np.zeros((32, 32, 3), np.uint8)
    result = stage.func([{"pool": {"image": image}}], stage.default_params(), ItemContext(device="cpu"))[0]
    taps = [t for t in result if t not in ("strides", "size")]
    return int(result["size"]), {t: int(s) for t, s in zip(taps, np.asarray(result["strides"]).tolist())}


def arn_detector(threads: int | None = None):
    """``image -> map`` of the shipped ARN model on the EfficientNet-Lite0 taps (as stage ``arn``)."""
    from detect.arn import ArnNetwork, arn_saliency
    from pipeline import models

    read_taps = taps_reader("deep_features", threads)
    model = models.resolve("arn", "arn-duts").load()
    network = ArnNetwork.from_state(model.arrays, model.hparams)

    def detect(image):
        return arn_saliency([read_taps(image)], network, [image.shape[:2]], batch_size=1)[0].astype(np.float32)

    return detect


# --------------------------------------------------------------------------- scores


def sod_scores(maps: Sequence[np.ndarray], gts: Sequence[np.ndarray], *, s_measure: bool = False) -> dict:
    """maxF, adaptive F and MAE of maps in [0, 1] against masks (pysodmetrics), optionally S-measure.

    maxF is the maximum over 256 thresholds of the F-measure curve averaged over the images
    (beta^2 = 0.3), the SOD toolkits' convention.
    """
    from py_sod_metrics import MAE, Fmeasure, Smeasure

    meters = {"fm": Fmeasure(), "mae": MAE()}
    if s_measure:
        meters["sm"] = Smeasure()
    for m, g in zip(maps, gts):
        pred = np.clip(np.round(m * 255.0), 0, 255).astype(np.uint8)
        for meter in meters.values():
            meter.step(pred=pred, gt=g)
    fm = meters["fm"].get_results()["fm"]
    out = {"maxF": float(fm["curve"].max()), "adpF": float(fm["adp"]),
           "MAE": float(meters["mae"].get_results()["mae"])}
    if s_measure:
        out["Sm"] = float(meters["sm"].get_results()["sm"])
    return out


# --------------------------------------------------------------------------- results


def write_results(name: str, data: dict, markdown: str) -> None:
    """Write ``benchmarks/results/<name>.json`` (with machine and time) and ``<name>.md``; print the markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = dict(data, machine=platform.machine(), when=time.strftime("%Y-%m-%d %H:%M:%S"))
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def load_average() -> str:
    """The 1-minute load average (timings on a shared machine are read against it)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover
        return "n/a"
