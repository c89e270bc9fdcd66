"""The MIJR alignment stages (``slic``, ``proposals``, ``dense_sift``, ``siftflow``, ``alignment``),
called the way the runner calls them, on a real image paired with itself and with a shifted copy."""

import dataclasses

import numpy as np
import pytest
from skimage import data

from pipeline import registry
from pipeline.registry import ItemContext

SIZE = 64


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(data.astronaut()[::8, ::8])  # 64 x 64


def _per_image(image, ctx=ItemContext()):
    out = {"pool": {"image": image}}
    for name, changes in (("slic", {"n_segments": 16}), ("proposals", {"n_candidates": 50, "n_select": 10}),
                          ("dense_sift", {"size": SIZE})):
        stage = registry.get(name)
        out[name] = stage.func(out, dataclasses.replace(stage.default_params(), **changes), ctx)
    return out


def _pair(a, b):
    flow = registry.get("siftflow")
    pair = {"siftflow": flow.func(a, b, {}, flow.default_params(), ItemContext())}
    align = registry.get("alignment")
    pair["alignment"] = align.func(a, b, pair, align.default_params(), ItemContext())
    return pair


def test_pair_stages_read_the_pairs_of_the_neighbours_table():
    for name in ("siftflow", "alignment"):
        stage = registry.get(name)
        assert stage.granularity == "pair" and stage.pairs_from == "neighbours"
    assert set(registry.get("alignment").inputs) >= {"slic", "proposals", "dense_sift", "siftflow"}


def test_an_image_aligned_with_itself_matches_each_superpixel_to_itself(image):
    a = _per_image(image)
    assert a["slic"]["labels"].shape == image.shape[:2]
    assert a["dense_sift"]["descriptors"].shape[:2] == (SIZE, SIZE)
    assert a["proposals"]["boxes"].shape == (10, 4)
    pair = _pair(a, a)
    assert not pair["siftflow"]["vx"].any() and not pair["siftflow"]["vy"].any()
    al = pair["alignment"]
    n = int(a["slic"]["labels"].max()) + 1
    assert al["superpixel_match"].shape == (n,)
    assert (al["superpixel_match"] == np.arange(n)).mean() >= 0.9
    assert al["proposal_match"].shape[0] == 10


def test_a_shifted_copy_gives_that_shift_as_flow(image):
    dx, dy = 3, -2
    shifted = np.roll(image, (dy, dx), axis=(0, 1))
    pair = _pair(_per_image(image), _per_image(shifted))
    inner = (slice(8, -8), slice(8, -8))
    vx, vy = pair["siftflow"]["vx"][inner], pair["siftflow"]["vy"][inner]
    assert ((vx == dx) & (vy == dy)).mean() >= 0.9
