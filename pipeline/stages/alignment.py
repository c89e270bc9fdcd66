"""MIJR Sec. III-A stages: ``slic``, ``proposals``, ``dense_sift`` (per image), ``siftflow`` and
``alignment`` (per (target, neighbour) pair of the ``neighbours`` stage).

Working resolution: dense SIFT and SIFT-Flow run on the image resized to ``size x size`` (256,
aspect ratio not kept: the two images of a pair then share one grid, as in SIFT-Flow scene
alignment, and a 2048-pixel image does not make a 500 MB SIFT image). ``slic`` and
``proposals`` are at the image's own size, because downstream stages (relearn) index superpixels
and boxes of the full image. ``alignment`` is :func:`alignment.align_pair`, which resamples the
label maps to the working grid (nearest) and scales the boxes; a superpixel that vanishes in that
resampling (tiny slivers only) gets match -1 and distance inf.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from alignment import align_pair, bilevel_alignment, dense_sift, proposals, sift_flow, working_image
from pipeline.registry import Stage, param, register, register_alias
from superpixels import slic


@dataclass(frozen=True)
class SlicParams:
    """Parameters of ``slic`` (:func:`superpixels.slic`).

    Parameters
    ----------
    n_segments : int
        SLIC superpixels per image (MIJR Sec. III-A: 500).
    compactness : float
        SLIC's balance of colour and space proximity.
    """

    n_segments: int = param(500, ge=1)
    compactness: float = param(10.0, gt=0)


def run_slic(inputs, params: SlicParams, ctx):
    return {"labels": slic(inputs["pool"]["image"], **asdict(params))}


@dataclass(frozen=True)
class ProposalsParams:
    """Parameters of ``proposals`` (:func:`alignment.proposals`).

    Parameters
    ----------
    n_candidates : int
        EdgeBoxes candidate boxes (MIJR: 1000).
    n_select : int
        Boxes V kept by the Eq. 4 selection (MIJR: 100).
    spread_weight : float
        Weight of Eq. 4's normalised spread term.
    edge_model : str or None
        Structured-edge model file (None: the gradient edge map); its bytes are hashed into the key.
    """

    n_candidates: int = param(1000, ge=1)
    n_select: int = param(100, ge=1)
    spread_weight: float = param(1.0, ge=0)
    edge_model: str | None = param(None, path=True)


def run_proposals(inputs, params: ProposalsParams, ctx):
    # edge_model is a path: alignment.proposals loads the model once per process.
    p = proposals(inputs["pool"]["image"], **asdict(params))
    return {"boxes": p.boxes, "scores": p.scores}


@dataclass(frozen=True)
class DenseSiftParams:
    """Parameters of ``dense_sift``.

    Parameters
    ----------
    size : int
        Side of the square working grid the image is resized to (256).
    cell_size : int
        SIFT cell side in pixels (SIFT-Flow: 3).
    """

    size: int = param(256, ge=16)
    cell_size: int = param(3, ge=1)


def run_dense_sift(inputs, params: DenseSiftParams, ctx):
    work = working_image(inputs["pool"]["image"], params.size)
    return {"descriptors": dense_sift(work, cell_size=params.cell_size)}


@dataclass(frozen=True)
class SiftFlowParams:
    """Parameters of ``siftflow`` (:func:`alignment.sift_flow`; the reference demo's values).

    Parameters
    ----------
    alpha : float
        Weight of the L1 smoothness term, per pixel of flow difference.
    d : float
        Truncation of the smoothness (and data) term.
    gamma : float
        Small-displacement weight at the finest level.
    n_levels : int
        Pyramid levels.
    window : int
        Search radius around the up-sampled coarser flow at the finest level.
    top_window : int
        Search radius at the coarsest level.
    n_top_iterations : int
        Belief-propagation iterations at the coarsest level.
    n_iterations : int
        Belief-propagation iterations at the other levels.
    """

    alpha: float = param(2 * 255, gt=0)
    d: float = param(40 * 255, gt=0)
    gamma: float = param(0.005 * 255, ge=0)
    n_levels: int = param(4, ge=1)
    window: int = param(2, ge=0)
    top_window: int = param(10, ge=0)
    n_top_iterations: int = param(60, ge=1)
    n_iterations: int = param(30, ge=1)


def run_siftflow(inputs_a, inputs_b, inputs_pair, params: SiftFlowParams, ctx):
    f = sift_flow(inputs_a["dense_sift"]["descriptors"], inputs_b["dense_sift"]["descriptors"],
                  record_energy=False, **asdict(params))  # no stage reads the energies
    # Stored small: flows are whole pixels within the image (int16). The per-pixel matching cost
    # (noise: 87 of the 92 KB of a pair) is read by no stage; its mean is kept as a diagnostic, and
    # alignment.match_cost recomputes the map from the flow when it is wanted.
    return {"vx": f.vx.astype(np.int16), "vy": f.vy.astype(np.int16), "cost_mean": np.float64(f.cost.mean())}


@dataclass(frozen=True)
class AlignmentParams:
    """Parameters of ``alignment`` (:func:`alignment.bilevel_alignment`, :func:`alignment.pixel_features`).

    Parameters
    ----------
    k_init : int
        Initial K of the top-K scheme (MIJR: 10).
    object_weight : float
        Weight of Eq. 1's proposal term.
    colour_weight : float
        Weight of the Lab colour in the pixel feature f (0: SIFT only, the paper's f).
    window : int
        Half-size of the flow-guided window of QS, in pixels.
    stride : int
        Step between the offsets of that window.
    """

    k_init: int = param(10, ge=1)
    object_weight: float = param(1.0, ge=0)
    colour_weight: float = param(10.0, ge=0)
    window: int = param(4, ge=0)
    stride: int = param(4, ge=1)


def run_alignment(inputs_a, inputs_b, inputs_pair, params: AlignmentParams, ctx):
    flow = inputs_pair["siftflow"]
    r = align_pair(inputs_a["pool"]["image"], inputs_b["pool"]["image"],
                   inputs_a["slic"]["labels"], inputs_b["slic"]["labels"],
                   inputs_a["proposals"]["boxes"], inputs_b["proposals"]["boxes"],
                   inputs_a["dense_sift"]["descriptors"], inputs_b["dense_sift"]["descriptors"],
                   flow["vx"], flow["vy"], **asdict(params))
    return {"superpixel_match": r.superpixel_match, "superpixel_distance": r.superpixel_distance,
            "proposal_match": r.proposal_match, "proposal_distance": r.proposal_distance,
            "k_schedule": r.k_schedule, "objective": r.objective}


register(Stage(name="slic", version="1", inputs=("pool",), params=SlicParams, granularity="image",
               func=run_slic, method=slic, doc="SLIC superpixels, 500 per image (MIJR Sec. III-A)"))
register_alias("slic500", "slic")
register(Stage(name="proposals", version="1", inputs=("pool",), params=ProposalsParams,
               granularity="image", func=run_proposals, method=proposals,
               doc="EdgeBoxes 1000 -> 100 proposals selected by Eq. 4 (MIJR Sec. III-A)"))
register(Stage(name="dense_sift", version="2", inputs=("pool",), params=DenseSiftParams,
               granularity="image", func=run_dense_sift, method=dense_sift, store=False,
               doc="dense SIFT image on the 256x256 working grid (SIFT-Flow; recomputed, not stored)"))
register(Stage(name="siftflow", version="3", inputs=("dense_sift",), params=SiftFlowParams,
               granularity="pair", func=run_siftflow, method=sift_flow, pairs_from="neighbours",
               doc="SIFT-Flow from target to neighbour: vx, vy (int16), mean L2 matching cost"))
register(Stage(name="alignment", version="2",
               inputs=("pool", "slic", "proposals", "dense_sift", "siftflow"),
               params=AlignmentParams, granularity="pair", func=run_alignment, method=bilevel_alignment,
               pairs_from="neighbours",
               doc="bi-level superpixel + proposal alignment, Q_M and Q_P (MIJR Eq. 1-3)"))
