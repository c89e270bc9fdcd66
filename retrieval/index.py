"""Nearest neighbours of every pool image among the others (MIJR Sec. III: "maximum 5").

For a pool of N descriptors (rows of an ``(N, D)`` array) every row gets its ``min(k, N - 1)``
nearest other rows by Euclidean distance (Eq. K), the row itself excluded::

    nn(i) = argsort_{j != i} ||d_i - d_j||_2, first min(k, N - 1)

Methods
-------
``"exact"`` (default)
    Brute force over blocks of rows: for a block of queries and a block of pool rows, the squared
    distances ``|q|^2 + |p|^2 - 2 q.p`` (one float64 GEMM), of which each query keeps its best
    ``k + 2`` so far. Only two blocks are in memory at a time, read from the descriptor array as
    it is (a ``numpy.memmap`` of a large pool is never copied whole), so the cost is
    ``O(N^2 D)`` time and ``O(block^2 + N k)`` memory. ``k + 2`` neighbours are kept and the
    query itself is removed *by index* (not by position), so exact duplicates of the query, which
    tie with it at distance 0, are kept and found as neighbours.
``"pca"`` (approximate)
    The descriptors are projected on their first ``n_components`` principal axes
    (:class:`sklearn.decomposition.PCA`, randomised), ``n_candidates`` (default ``4 k``) nearest
    candidates are found there, and re-ranked by their exact full-dimensional distance. Cost
    ``O(N^2 n_components + N n_candidates D)`` instead of ``O(N^2 D)``. The recall of the exact
    top-k this keeps is measured in ``benchmarks/bench_retrieval.py``.

Ties are broken by the smaller index (a stable sort on distance), so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Neighbours", "nearest_neighbours"]


@dataclass(frozen=True)
class Neighbours:
    """Result of :func:`nearest_neighbours`.

    Attributes
    ----------
    index : (N, k') ndarray of int64
        Row indices of the neighbours, nearest first; ``k' = min(k, N - 1)``; never the row itself.
    distance : (N, k') ndarray of float64
        Their Euclidean distances, non-decreasing along each row.
    """

    index: np.ndarray
    distance: np.ndarray


BLOCK_ROWS = 1024  # rows per block of the exact search: each (block x block) float64 temporary is 8 MB


def _check(descriptors, k) -> tuple[np.ndarray, int]:
    """Validated descriptors, not copied (a memmap stays one); finiteness checked block by block."""
    x = descriptors if isinstance(descriptors, np.ndarray) else np.asarray(descriptors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"descriptors: expected a non-empty (N, D) array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"descriptors: expected a numeric array, got dtype {x.dtype}")
    for s in range(0, x.shape[0], BLOCK_ROWS):
        if not np.all(np.isfinite(x[s:s + BLOCK_ROWS])):
            raise ValueError("descriptors: expected finite values, got NaN or inf")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    return x, int(k)


def _drop_self(idx: np.ndarray, dist: np.ndarray, rows: np.ndarray, kk: int):
    """Remove each row's own index (or, when it is absent, the farthest entry); keep ``kk``."""
    own = idx == rows[:, None]
    missing = ~own.any(axis=1)
    own[missing, -1] = True
    keep = ~own
    n = idx.shape[0]
    idx = idx[keep].reshape(n, -1)[:, :kk]
    dist = dist[keep].reshape(n, -1)[:, :kk]
    return idx, dist


def _stable_sorted(idx: np.ndarray, dist: np.ndarray):
    # Order by (distance, index): lexsort's last key is the primary one.
    order = np.lexsort((idx, dist), axis=1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def _exact(x: np.ndarray, n_query: int):
    """The ``n_query`` nearest rows of every row (itself included), block by block (Eq. K)."""
    n, block = x.shape[0], BLOCK_ROWS
    best_idx = np.empty((n, n_query), np.int64)
    best_d2 = np.empty((n, n_query), np.float64)
    for qs in range(0, n, block):
        q = np.asarray(x[qs:qs + block], np.float64)
        qq = np.einsum("ij,ij->i", q, q)
        cand_idx, cand_d2 = [], []
        for ps in range(0, n, block):
            p = q if ps == qs else np.asarray(x[ps:ps + block], np.float64)
            pp = qq if ps == qs else np.einsum("ij,ij->i", p, p)
            d2 = np.maximum(qq[:, None] + pp[None, :] - 2.0 * (q @ p.T), 0.0)
            if ps == qs:  # a row's distance to itself is exactly 0, not the GEMM's rounding
                np.fill_diagonal(d2, 0.0)
            m = min(n_query, d2.shape[1])
            part = np.argpartition(d2, m - 1, axis=1)[:, :m] if m < d2.shape[1] else \
                np.broadcast_to(np.arange(d2.shape[1]), d2.shape)
            cand_idx.append(part + ps)
            cand_d2.append(np.take_along_axis(d2, part, 1))
        ci, cd = np.hstack(cand_idx), np.hstack(cand_d2)
        order = np.lexsort((ci, cd), axis=1)[:, :n_query]  # by distance, ties by the smaller index
        best_idx[qs:qs + block] = np.take_along_axis(ci, order, 1)
        best_d2[qs:qs + block] = np.take_along_axis(cd, order, 1)
    return best_idx, np.sqrt(best_d2)


def _pca(x: np.ndarray, n_query: int, n_components: int, n_candidates: int, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    n, d = x.shape
    n_components = min(n_components, n, d)
    # The projection reads the whole array once (a memmap is copied here: this path is for speed).
    z = PCA(n_components=n_components, svd_solver="randomized", random_state=seed).fit_transform(x)
    n_cand = min(max(n_candidates, n_query), n)
    cand = NearestNeighbors(n_neighbors=n_cand, algorithm="brute").fit(z).kneighbors(
        z, n_neighbors=n_cand, return_distance=False
    )
    # Re-rank the candidates by the exact distance in the full space.
    # Row chunks bound the (chunk, n_cand, D) difference array to ~512 MB.
    dist = np.empty(cand.shape, dtype=np.float64)
    step = max(1, int(2**26 // max(1, n_cand * d)))
    for s in range(0, n, step):
        e = min(n, s + step)
        dist[s:e] = np.linalg.norm(np.asarray(x[cand[s:e]], np.float64) - np.asarray(x[s:e], np.float64)[:, None, :],
                                   axis=2)
    order = np.argsort(dist, axis=1, kind="stable")[:, :n_query]
    return np.take_along_axis(cand, order, 1).astype(np.int64), np.take_along_axis(dist, order, 1)


def nearest_neighbours(
    descriptors,
    k: int = 5,
    *,
    method: str = "exact",
    n_components: int = 64,
    n_candidates: int | None = None,
    random_state: int = 0,
) -> Neighbours:
    """The ``min(k, N - 1)`` nearest other rows of every row of ``descriptors``.

    Parameters
    ----------
    descriptors : (N, D) ndarray
        One finite descriptor per image (e.g. :func:`retrieval.descriptor.descriptor_batch`).
    k : int, optional
        Neighbours per image. Default 5 (MIJR Sec. III).
    method : {"exact", "pca"}, optional
        Exact chunked brute force (default) or PCA candidates re-ranked exactly (approximate).
    n_components : int, optional
        PCA dimensions for ``method="pca"``. Default 64.
    n_candidates : int, optional
        Candidates per query re-ranked exactly for ``method="pca"``. Default ``4 k``.
    random_state : int, optional
        Seed of the randomised PCA. Default 0.

    Returns
    -------
    Neighbours
        ``index`` (N, min(k, N-1)) int64 and ``distance`` (N, min(k, N-1)) float64, nearest first,
        ties broken by the smaller index, never containing the row itself.

    Notes
    -----
    Eq. K: ``nn(i)`` = the ``k`` smallest ``||d_i - d_j||_2`` over ``j != i``.

    References
    ----------
    MIJR Sec. III (retrieval of at most 5 similar images per target).
    """
    x, k = _check(descriptors, k)
    if method not in ("exact", "pca"):
        raise ValueError(f"method: expected 'exact' or 'pca', got {method!r}")
    n = x.shape[0]
    kk = min(k, n - 1)
    if kk == 0:
        return Neighbours(np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float64))
    # One extra: the query itself (or, with duplicates, one of its ties) is removed below; a
    # second extra keeps a duplicate's partner inside the list when ties are ordered arbitrarily.
    n_query = min(kk + 2, n)
    if method == "exact":
        idx, dist = _exact(x, n_query)
    else:
        if n_candidates is None:
            n_candidates = 4 * k
        if not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1:
            raise ValueError(f"n_candidates: expected an int >= 1, got {n_candidates!r}")
        if not isinstance(n_components, (int, np.integer)) or n_components < 1:
            raise ValueError(f"n_components: expected an int >= 1, got {n_components!r}")
        idx, dist = _pca(x, n_query, int(n_components), int(n_candidates), random_state)
    rows = np.arange(n)
    idx, dist = _stable_sorted(idx, dist)
    idx, dist = _drop_self(idx, dist, rows, kk)
    return Neighbours(np.ascontiguousarray(idx), np.ascontiguousarray(dist))
