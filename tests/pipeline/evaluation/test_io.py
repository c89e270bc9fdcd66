"""Bad input: missing stems, other sizes, non-binary / RGB / 16-bit / one-bit / 0-1 / empty masks."""

import logging

import numpy as np
import pytest
from PIL import Image

from pipeline.evaluation import evaluate_methods, normalize_gt, normalize_map


def _mask(h=24, w=32):
    gt = np.zeros((h, w), np.uint8)
    gt[6:18, 8:24] = 255
    return gt


def _pred(gt, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(gt * 0.8 + rng.integers(0, 60, gt.shape), 0, 255).astype(np.uint8)


def _save(folder, stem, arr, mode=None):
    folder.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(folder / f"{stem}.png")


def test_missing_and_extra_stems_scored_on_intersection(tmp_path, caplog):
    gts = {s: _mask() for s in ("a", "b", "c", "d")}
    maps = {s: _pred(_mask()) for s in ("a", "b", "x")}
    with caplog.at_level(logging.WARNING, logger="pipeline.evaluation"):
        res = evaluate_methods({"m": maps}, gts)
    assert set(res.per_image["m"]) == {"a", "b"}
    assert res.pooled["m"]["n_images"] == 2
    missing = [n for n in res.notices if "have no map" in n]
    extra = [n for n in res.notices if "no GT mask" in n]
    assert len(missing) == 1 and "2 of 4" in missing[0] and "c, d" in missing[0]
    assert len(extra) == 1 and "x" in extra[0]
    assert all("\n" not in n for n in res.notices)
    assert any("have no map" in r.getMessage() for r in caplog.records)
    # same numbers as scoring the intersection directly
    ref = evaluate_methods({"m": {s: maps[s] for s in "ab"}}, {s: gts[s] for s in "ab"})
    assert ref.pooled["m"] == res.pooled["m"]


def test_method_with_no_common_stem_is_reported_not_scored():
    res = evaluate_methods({"m": {"z": _mask()}, "ok": {"a": _mask()}}, {"a": _mask()})
    assert res.methods == ("ok",)
    assert any(n.startswith("m: no map matches") for n in res.notices)


def test_map_of_another_size_is_resized_with_notice():
    gt = _mask(24, 32)
    big = np.kron(_pred(gt), np.ones((2, 2), np.uint8))  # 48 x 64
    res = evaluate_methods({"m": {"a": big}}, {"a": gt})
    assert res.pooled["m"]["n_images"] == 1
    assert any("differ in size" in n and "a" in n for n in res.notices)
    same = evaluate_methods({"m": {"a": _pred(gt)}}, {"a": gt})
    assert res.pooled["m"]["mae"] == pytest.approx(same.pooled["m"]["mae"], abs=0.02)


def test_non_binary_gt_binarised_at_128_with_notice():
    gt = _mask()
    graded = gt.copy()
    graded[6:18, 8:12] = 129  # stays foreground (> 128)
    graded[0:3, 0:3] = 128  # stays background
    pred = _pred(gt)
    res = evaluate_methods({"m": {"a": pred}}, {"a": graded})
    ref = evaluate_methods({"m": {"a": pred}}, {"a": gt})
    assert res.pooled["m"] == ref.pooled["m"]
    assert any("not binary" in n and "> 128" in n for n in res.notices)


@pytest.mark.parametrize("storage", ["rgb", "rgba_alpha", "16bit", "onebit", "zero_one", "coloured"])
def test_stored_gt_variants_are_normalised(tmp_path, storage):
    gt = _mask()
    pred = _pred(gt)
    if storage == "rgb":
        arr, mode = np.stack([gt] * 3, -1), None
    elif storage == "rgba_alpha":
        arr, mode = np.dstack([np.zeros_like(gt)] * 3 + [gt]), None
    elif storage == "16bit":
        arr, mode = gt.astype(np.uint16) * 257, None
    elif storage == "onebit":
        arr, mode = gt, "1"
    elif storage == "zero_one":
        arr, mode = gt // 255, None
    else:  # a red object on black: luminance would be 76, the channel maximum 255
        arr, mode = np.dstack([gt, np.zeros_like(gt), np.zeros_like(gt)]), None
    _save(tmp_path / "gt", "a", arr, mode)
    _save(tmp_path / "pred", "a", pred)
    stored = np.asarray(Image.open(tmp_path / "gt" / "a.png"))
    assert stored.dtype != np.uint8 or stored.ndim == 3 or storage in ("onebit", "zero_one")
    res = evaluate_methods([tmp_path / "pred"], tmp_path / "gt")
    ref = evaluate_methods({"pred": {"a": pred}}, {"a": gt})
    assert res.methods == ("pred",)
    assert res.pooled["pred"] == ref.pooled["pred"]


def test_normalize_gt_returns_binary_uint8():
    for arr in (np.array([[0, 1]], bool), np.array([[0.0, 0.9]]), np.array([[0, 40000]], np.uint16)):
        mask, _ = normalize_gt(arr)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}


def test_normalize_map_variants():
    m, kinds = normalize_map(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert m.tolist() == [[0, 128, 255]] and kinds == []
    m, kinds = normalize_map(np.array([[0, 65535]], np.uint16))
    assert m.tolist() == [[0, 255]] and kinds == ["map_16bit"]
    m, kinds = normalize_map(np.array([[np.nan, 1.0]], np.float32))
    assert m.tolist() == [[0, 255]] and "map_nan" in kinds
    m, kinds = normalize_map(np.array([[-2.0, 2.0]]))
    assert m.tolist() == [[0, 255]] and "map_float_range" in kinds
    with pytest.raises(ValueError, match="2-D"):
        normalize_map(np.zeros((2, 2, 2, 2)))


def test_all_black_gt_gives_finite_values_and_notice():
    gt = np.zeros((20, 20), np.uint8)
    pred = _pred(_mask(20, 20))
    res = evaluate_methods({"m": {"a": pred, "b": np.zeros_like(pred)}}, {"a": gt, "b": gt})
    p = res.pooled["m"]
    assert p["auc"] is None and p["auc_undefined"] == 2
    for key, value in p.items():
        assert value is None or np.isfinite(value), key
    # an all-zero map on an all-black mask is perfect for S and E as the toolkits define them
    b = res.per_image["m"]["b"]
    assert b["s_measure"] == 1.0 and b["mae"] == 0.0
    assert any("no foreground pixel" in n for n in res.notices)
    import json

    json.dumps(res.to_dict(), allow_nan=False)


def test_unreadable_map_file_is_skipped_with_notice(tmp_path):
    gt = _mask()
    _save(tmp_path / "gt", "a", gt)
    _save(tmp_path / "gt", "b", gt)
    _save(tmp_path / "pred", "a", _pred(gt))
    (tmp_path / "pred" / "b.png").write_bytes(b"not a png")
    res = evaluate_methods([tmp_path / "pred"], tmp_path / "gt")
    assert list(res.per_image["pred"]) == ["a"]
    assert any("cannot be read" in n and "b" in n for n in res.notices)


def test_stems_restrict_and_report_unknown():
    gts = {s: _mask() for s in "abc"}
    maps = {s: _pred(gts[s]) for s in "abc"}
    res = evaluate_methods({"m": maps}, gts, stems=["a", "c", "q"])
    assert set(res.per_image["m"]) == {"a", "c"}
    assert any("requested stems have no mask" in n for n in res.notices)
