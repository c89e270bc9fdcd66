"""Detector stages ``u2netp``, ``gradsal`` and ``contrast``: declarations and one call each on a real image."""

import dataclasses

import numpy as np
import pytest
from skimage import data

from pipeline import registry
from pipeline.registry import ItemContext


def test_stages_are_registered_as_map_producers():
    for name in ("gradsal", "contrast"):
        stage = registry.get(name)
        assert stage.granularity == "image"
        assert stage.produces_map
        assert stage.inputs == ("pool",)
        assert dataclasses.is_dataclass(stage.params)


def test_contrast_stage_returns_a_unit_map():
    stage = registry.get("contrast")
    img = data.chelsea()[::2, ::2].copy()
    out = stage.func({"pool": {"image": img}}, stage.default_params(), ItemContext())
    m = out["map"]
    assert m.shape == img.shape[:2] and m.dtype == np.float32
    assert 0.0 <= m.min() and m.max() <= 1.0


def test_gradsal_stage_returns_maps_and_label(backbone):
    stage = registry.get("gradsal")
    from backbones import load_once

    # Reuse the session's single-thread backbone instead of loading a second copy.
    load_once(("backbone", "efficientnet_lite0", "cpu"), lambda: backbone)
    params = dataclasses.replace(stage.default_params(), steps=3)
    img = data.chelsea()[::2, ::2].copy()
    out = stage.func({"pool": {"image": img}}, params, ItemContext(device="cpu"))
    assert out["map"].dtype == np.float32 and out["smoothed"].dtype == np.float16
    for key in ("map", "smoothed"):
        assert out[key].shape == img.shape[:2]
        assert 0.0 <= out[key].min() and out[key].max() <= 1.0
    assert int(out["label"]) in {281, 282, 283, 284, 285}


def test_gradsal_stage_rejects_a_bad_image(backbone):
    stage = registry.get("gradsal")
    from backbones import load_once

    load_once(("backbone", "efficientnet_lite0", "cpu"), lambda: backbone)
    params = stage.default_params()
    with pytest.raises(ValueError):
        stage.func({"pool": {"image": np.zeros((10, 10), np.uint8)}}, params, ItemContext(device="cpu"))


def test_u2netp_stage_is_batched_and_returns_one_map_per_image():
    stage = registry.get("u2netp")
    assert stage.granularity == "image" and stage.produces_map and stage.batched and stage.inputs == ("pool",)
    coffee, cat = data.coffee()[::2, ::2].copy(), data.chelsea()[::2, ::2].copy()
    out = stage.func([{"pool": {"image": coffee}}, {"pool": {"image": cat}}], stage.default_params(), ItemContext())
    assert [o["map"].shape for o in out] == [coffee.shape[:2], cat.shape[:2]]
    # Each output belongs to its own input: the batch result equals one call per image.
    alone = stage.func([{"pool": {"image": cat}}], stage.default_params(), ItemContext())
    np.testing.assert_allclose(out[1]["map"], alone[0]["map"], atol=1e-5)
