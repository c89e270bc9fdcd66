"""Stages ``gist_hog`` and ``neighbours``: MIJR Sec. III's retrieval of similar pool images.

``gist_hog`` (per image, cached) computes the weighted, L2-normalised GIST + HOG descriptor of
:func:`retrieval.descriptor` (1104 float32 values). ``neighbours`` (per pool) gathers every image's
descriptor, centres each part on the pool mean (:func:`retrieval.centre_pool`) and finds its
``k = 5`` nearest other images (:func:`retrieval.nearest_neighbours`),
writing the table every pair stage reads::

    {"stems": (N,) str, "index": (N, k) int64 into stems (-1 = none), "distance": (N, k) float64}

Rows are in sorted stem order. With fewer than ``k + 1`` images the missing slots hold index -1
and distance +inf.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.registry import Stage, param, register
from retrieval import GIST_WEIGHT, HOG_WEIGHT, centre_pool, descriptor, nearest_neighbours


@dataclass(frozen=True)
class GistHogParams:
    """Parameters of ``gist_hog`` (:func:`retrieval.descriptor`).

    Parameters
    ----------
    size : int
        GIST square side (LEAR / Oliva-Torralba: 256).
    hog_size : int
        HOG square side (96: 12 x 12 cells of 8 px, pooled to 4 x 4 x 9).
    gist_weight, hog_weight : float
        Shares of GIST and HOG in the squared retrieval distance (0.5 each; the paper gives none).
        They matter only with ``neighbours.centre = false``: pool centring re-normalises each part
        and applies the ``neighbours`` weights instead.
    """

    size: int = param(256, ge=8)
    hog_size: int = param(96, ge=32)
    gist_weight: float = param(GIST_WEIGHT, ge=0)
    hog_weight: float = param(HOG_WEIGHT, ge=0)


def run_gist_hog(inputs, params: GistHogParams, ctx):
    return {"descriptor": descriptor(inputs["pool"]["image"], **asdict(params))}


@dataclass(frozen=True)
class NeighboursParams:
    """Parameters of ``neighbours``.

    Parameters
    ----------
    k : int
        Neighbours per image (MIJR Sec. III: at most 5).
    method : str
        ``exact`` (chunked brute force) or ``pca`` (approximate: PCA candidates re-ranked exactly).
    centre : bool
        Subtract each descriptor part's pool mean first (:func:`retrieval.centre_pool`; raises the
        GT-mask IoU of the neighbours on ECSSD and DUTS-TR-1k, see bench_retrieval).
    gist_weight, hog_weight : float
        The shares of the two parts after centring (0.5 each).
    """

    k: int = param(5, ge=1)
    method: str = param("exact", choices=("exact", "pca"))
    centre: bool = True
    gist_weight: float = param(GIST_WEIGHT, ge=0)
    hog_weight: float = param(HOG_WEIGHT, ge=0)


def run_neighbours(inputs, params: NeighboursParams, ctx):
    table = inputs["gist_hog"]
    stems = sorted(str(s) for s in table)
    if not stems:
        raise ValueError("neighbours: no image has a gist_hog descriptor")
    # The pool's descriptors go to a memory-mapped file (in TMPDIR), are centred there in place and
    # searched block by block: memory stays bounded for any pool size (4.4 KB per image on disk).
    with tempfile.TemporaryDirectory(prefix="neighbours-") as tmp:
        first = np.asarray(table[stems[0]]["descriptor"], dtype=np.float32)
        desc = np.lib.format.open_memmap(Path(tmp) / "descriptors.npy", mode="w+", dtype=np.float32,
                                         shape=(len(stems), first.shape[0]))
        for i, s in enumerate(stems):
            desc[i] = table[s]["descriptor"]
        if params.centre:
            centre_pool(desc, gist_weight=params.gist_weight, hog_weight=params.hog_weight, out=desc)
        nn = nearest_neighbours(desc, k=params.k, method=params.method)
        del desc  # unmapped before the folder goes
    n, got = nn.index.shape
    index = np.full((n, params.k), -1, dtype=np.int64)
    distance = np.full((n, params.k), np.inf, dtype=np.float64)
    index[:, :got] = nn.index
    distance[:, :got] = nn.distance
    return {"stems": np.array(stems, dtype=str), "index": index, "distance": distance}


register(Stage(name="gist_hog", version="2", inputs=("pool",), params=GistHogParams,
               granularity="image", func=run_gist_hog, method=descriptor,
               doc="GIST + HOG retrieval descriptor (MIJR Sec. III; LEAR GIST, pooled HOG)"))

register(Stage(name="neighbours", version="2", inputs=("gist_hog",), params=NeighboursParams,
               granularity="pool", func=run_neighbours, method=nearest_neighbours,
               doc="top-5 most similar pool images of every image by GIST + HOG (MIJR Sec. III)"))
