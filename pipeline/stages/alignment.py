"""MIJR Sec. III-A stages: ``slic500``, ``proposals``, ``dense_sift`` (per image), ``siftflow`` and
``alignment`` (per (target, neighbour) pair of the ``neighbours`` stage).

Working resolution: dense SIFT and SIFT-Flow run on the image resized to ``size x size`` (256,
aspect ratio not kept: the two images of a pair then share one grid, as in SIFT-Flow scene
alignment, and a 2048-pixel image does not make a 500 MB SIFT image). ``slic500`` and
``proposals`` are at the image's own size, because downstream stages (relearn) index superpixels
and boxes of the full image. ``alignment`` resamples the label maps to the working grid (nearest)
and scales the boxes; a superpixel that vanishes in that resampling (tiny slivers only) gets
match -1 and distance inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from alignment import bilevel_alignment, dense_sift, pixel_features, proposals, sift_flow
from pipeline.registry import NoParams, Stage, register
from superpixels import slic


def _work(image, size):
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


@dataclass(frozen=True)
class Slic500Params:
    """n_segments: SLIC superpixels per image (MIJR: 500); compactness: SLIC's ruler."""

    n_segments: int = 500
    compactness: float = 10.0


def run_slic500(inputs, params):
    return {"labels": slic(inputs["pool"]["image"], n_segments=params.n_segments,
                           compactness=params.compactness)}


@dataclass(frozen=True)
class ProposalsParams:
    """n_candidates: EdgeBoxes boxes (MIJR: 1000); n_select: V kept by Eq. 4 (MIJR: 100);
    spread_weight: weight of Eq. 4's normalised spread term; edge_model: optional structured-edge
    model file (empty: the gradient edge map)."""

    n_candidates: int = 1000
    n_select: int = 100
    spread_weight: float = 1.0
    edge_model: str = ""


def run_proposals(inputs, params):
    model = params.edge_model or None  # a path: alignment.proposals loads it once per process
    p = proposals(inputs["pool"]["image"], n_candidates=params.n_candidates,
                  n_select=params.n_select, edge_model=model, spread_weight=params.spread_weight)
    return {"boxes": p.boxes, "scores": p.scores}


@dataclass(frozen=True)
class DenseSiftParams:
    """size: side of the square working grid (256); cell_size: SIFT cell side (SIFT-Flow: 3)."""

    size: int = 256
    cell_size: int = 3


def run_dense_sift(inputs, params):
    if params.size < 16:
        raise ValueError(f"size must be >= 16, got {params.size}")
    work = _work(inputs["pool"]["image"], params.size)
    return {"descriptors": dense_sift(work, cell_size=params.cell_size)}


def run_siftflow(inputs_a, inputs_b, inputs_pair, params):
    f = sift_flow(inputs_a["dense_sift"]["descriptors"], inputs_b["dense_sift"]["descriptors"])
    return {"vx": f.vx, "vy": f.vy, "cost": f.cost}


@dataclass(frozen=True)
class AlignmentParams:
    """k_init: initial K of the top-K scheme (MIJR: 10); object_weight: weight of Eq. 1's
    proposal term; colour_weight: Lab weight in f (0 = SIFT only); window, stride: flow-guided
    window of QS (see alignment.bilevel)."""

    k_init: int = 10
    object_weight: float = 1.0
    colour_weight: float = 10.0
    window: int = 4
    stride: int = 4


def _to_work(labels, boxes, size):
    h, w = labels.shape
    lab = cv2.resize(labels.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)
    sx, sy = size / w, size / h
    b = boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
    b = np.stack([np.floor(b[:, 0]), np.floor(b[:, 1]), np.ceil(b[:, 2]), np.ceil(b[:, 3])], 1)
    b = np.clip(b, 0, size).astype(np.int32)
    b[:, 2] = np.maximum(b[:, 2], b[:, 0] + 1).clip(max=size)
    b[:, 3] = np.maximum(b[:, 3], b[:, 1] + 1).clip(max=size)
    b[:, 0] = np.minimum(b[:, 0], b[:, 2] - 1)
    b[:, 1] = np.minimum(b[:, 1], b[:, 3] - 1)
    return lab, b


def run_alignment(inputs_a, inputs_b, inputs_pair, params):
    da = inputs_a["dense_sift"]["descriptors"]
    db = inputs_b["dense_sift"]["descriptors"]
    size = da.shape[0]
    la_full = inputs_a["slic500"]["labels"]
    n_a = int(la_full.max()) + 1
    la, ba = _to_work(la_full, inputs_a["proposals"]["boxes"], size)
    lb, bb = _to_work(inputs_b["slic500"]["labels"], inputs_b["proposals"]["boxes"], db.shape[0])
    fa = pixel_features(_work(inputs_a["pool"]["image"], size), da, colour_weight=params.colour_weight)
    fb = pixel_features(_work(inputs_b["pool"]["image"], db.shape[0]), db,
                        colour_weight=params.colour_weight)
    flow = inputs_pair["siftflow"]
    r = bilevel_alignment(la, lb, ba, bb, flow["vx"], flow["vy"], fa, fb, k_init=params.k_init,
                          object_weight=params.object_weight, window=params.window,
                          stride=params.stride)
    match = np.full(n_a, -1, np.int64)
    dist = np.full(n_a, np.inf)
    m = r.superpixel_match.shape[0]
    match[:m] = r.superpixel_match
    dist[:m] = r.superpixel_distance
    return {"superpixel_match": match, "superpixel_distance": dist,
            "proposal_match": r.proposal_match, "proposal_distance": r.proposal_distance,
            "k_schedule": r.k_schedule, "objective": r.objective}


register(Stage(name="slic500", version="1", inputs=("pool",), params=Slic500Params,
               granularity="image", func=run_slic500,
               doc="SLIC superpixels, 500 per image (MIJR Sec. III-A)"))
register(Stage(name="proposals", version="1", inputs=("pool",), params=ProposalsParams,
               granularity="image", func=run_proposals,
               doc="EdgeBoxes 1000 -> 100 proposals selected by Eq. 4 (MIJR Sec. III-A)"))
register(Stage(name="dense_sift", version="1", inputs=("pool",), params=DenseSiftParams,
               granularity="image", func=run_dense_sift,
               doc="dense SIFT image on the 256x256 working grid (SIFT-Flow)"))
register(Stage(name="siftflow", version="1", inputs=("dense_sift",), params=NoParams,
               granularity="pair", func=run_siftflow,
               doc="SIFT-Flow from target to neighbour: vx, vy, L2 matching cost"))
register(Stage(name="alignment", version="1",
               inputs=("pool", "slic500", "proposals", "dense_sift", "siftflow"),
               params=AlignmentParams, granularity="pair", func=run_alignment,
               doc="bi-level superpixel + proposal alignment, Q_M and Q_P (MIJR Eq. 1-3)"))
