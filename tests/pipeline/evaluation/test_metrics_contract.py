"""The evaluation's contract in detail: notice lines word for word, the JSON form, method naming,
what is pooled how, and the parameters reaching the metrics. Tiny hand-built arrays only."""

import json
import logging
from pathlib import Path

import joblib
import numpy as np
import py_sod_metrics as sod
import pytest

from pipeline.evaluation import AUC, SODEvaluator, evaluate_methods
from pipeline.evaluation.metrics import METRICS, _clean, _method_sources

ROW_KEYS = {"max_f", "mean_f", "adp_f", "mae", "s_measure", "max_e", "mean_e", "adp_e", "weighted_f", "auc"}


def _square(shape=(8, 8), box=(2, 6, 2, 6), value=255):
    a = np.zeros(shape, np.uint8)
    r0, r1, c0, c1 = box
    a[r0:r1, c0:c1] = value
    return a


def _soft(shape=(8, 8)):
    """A graded map: brightest in the square, a dimmer halo, zero elsewhere."""
    m = np.zeros(shape, np.uint8)
    m[1:7, 1:7] = 90
    m[2:6, 2:6] = 200
    m[3, 3] = 255
    return m


class _Failing(dict):
    """A Mapping whose item ``bad`` raises with a two-line message."""

    def __getitem__(self, key):
        if key == "bad":
            raise OSError("first line of the reason\nsecond line")
        return super().__getitem__(key)

    def __contains__(self, key):
        return key == "bad" or super().__contains__(key)

    def keys(self):
        return list(super().keys()) + ["bad"]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())


# --------------------------------------------------------------------------- AUC


def test_auc_step_rejects_a_shape_mismatch_and_a_float_map():
    auc = AUC()
    with pytest.raises(ValueError, match=r"^Shape mismatch between prediction \(\(1, 2\)\) and ground truth \(\(2, 1\)\)$"):
        auc.step(np.zeros((1, 2), np.uint8), np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match=r"^AUC expects the uint8 0\.\.255 map; got float32$"):
        auc.step(np.zeros((1, 2), np.float32), np.zeros((1, 2), np.uint8))
    assert auc.aucs == []


def test_auc_step_binarises_a_uint8_mask_at_above_128():
    auc = AUC()
    # 128 is background and 129 foreground: the foreground pixel has the higher score.
    auc.step(np.array([[0, 255]], np.uint8), np.array([[128, 129]], np.uint8))
    # a bool mask is taken as it is
    auc.step(np.array([[255, 0]], np.uint8), np.array([[True, False]]))
    assert auc.aucs == [1.0, 1.0]


def test_auc_ties_count_one_half_and_a_reversed_map_scores_zero():
    gt = np.array([[True, False, True, False]])
    assert AUC.cal_auc(np.full((1, 4), 7, np.uint8), gt) == 0.5
    assert AUC.cal_auc(np.array([[0, 200, 1, 250]], np.uint8), gt) == 0.0
    # one of four fg/bg pairs tied, the other three right: (3 + 0.5) / 4
    assert AUC.cal_auc(np.array([[5, 5, 9, 1]], np.uint8), gt) == 0.875


def test_auc_results_leave_undefined_images_out_of_the_mean():
    auc = AUC()
    assert auc.get_results() == {"auc": None, "undefined": 0}
    auc.aucs = [0.5, float("nan"), 1.0]
    assert auc.get_results() == {"auc": 0.75, "undefined": 1}
    auc.aucs = [float("nan")]
    assert auc.get_results() == {"auc": None, "undefined": 1}


# --------------------------------------------------------------------------- SODEvaluator


def test_evaluator_needs_an_image_before_results():
    with pytest.raises(ValueError, match="^no image was scored$"):
        SODEvaluator().get_results()


def test_evaluator_row_has_every_metric_and_auc_none_when_undefined():
    ev = SODEvaluator()
    row = ev.step(_soft(), _square())
    assert set(row) == ROW_KEYS
    assert all(isinstance(v, float) for v in row.values())
    empty = ev.step(_soft(), np.zeros((8, 8), np.uint8))
    assert empty["auc"] is None
    assert ev.per_image == [row, empty]
    pooled, _ = ev.get_results()
    assert pooled["n_images"] == 2 and pooled["auc_undefined"] == 1
    assert pooled["auc"] == row["auc"]


def test_pooled_values_follow_the_toolkits_conventions():
    """MAE, S, adaptive F: means over images; max F / max E: maxima of the image-averaged curves."""
    gt = _square()
    high = np.where(gt > 0, 200, 0).astype(np.uint8)
    high[0, :] = 100  # a dim halo: only thresholds above it are perfect
    low = np.where(gt > 0, 100, 0).astype(np.uint8)
    low[2:4, 2:6] = 250  # half the object bright: only thresholds at or below 100 are perfect
    gts, preds = [gt, gt, _square(box=(0, 4, 0, 8))], [high, low, _soft()]
    ev = SODEvaluator()
    rows = [ev.step(p, g) for p, g in zip(preds, gts)]
    pooled, curves = ev.get_results()
    for key in ("mae", "s_measure", "adp_f", "adp_e", "weighted_f"):
        assert pooled[key] == pytest.approx(np.mean([r[key] for r in rows]), abs=1e-12), key
    f_mean = np.mean([np.asarray(h, np.float64) for h in ev.handlers["f"].dynamic_results], axis=0)
    assert pooled["max_f"] == pytest.approx(f_mean.max(), abs=1e-12)
    assert pooled["mean_f"] == pytest.approx(f_mean.mean(), abs=1e-12)
    assert pooled["max_f"] < np.mean([r["max_f"] for r in rows])  # different best thresholds per image
    e_mean = np.mean([np.asarray(c, np.float64) for c in ev.em.changeable_ems], axis=0)
    assert pooled["max_e"] == pytest.approx(e_mean.max(), abs=1e-12)
    assert pooled["mean_e"] == pytest.approx(e_mean.mean(), abs=1e-12)
    # curves are indexed by the threshold t = 0..255, ascending
    assert np.allclose(curves["fmeasure"], f_mean[::-1])
    assert np.allclose(curves["emeasure"], e_mean[::-1])
    assert set(curves) == {"precision", "recall", "fmeasure", "emeasure"}
    assert all(c.shape == (256,) and c.dtype == np.float64 for c in curves.values())


def test_curves_at_threshold_zero_take_every_pixel():
    ev = SODEvaluator()
    gt = _square()  # 16 of 64 pixels
    ev.step(gt.copy(), gt)
    _, curves = ev.get_results()
    assert curves["recall"][0] == pytest.approx(1.0, abs=1e-6)
    assert curves["precision"][0] == pytest.approx(16 / 64, abs=1e-6)
    assert curves["precision"][255] == pytest.approx(1.0, abs=1e-6)
    assert curves["recall"][255] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("beta2", [0.3, 1.0])
def test_beta2_reaches_the_f_measure(beta2):
    gt = _square()  # 16 foreground pixels
    pred = _square(box=(2, 6, 2, 8))  # 24 pixels, 16 of them on the object: P = 2/3, R = 1
    row = SODEvaluator(beta2=beta2).step(pred, gt)

    def f(p, r):
        return (1 + beta2) * p * r / (beta2 * p + r)

    # thresholds 1..255 select the box; threshold 0 selects every pixel (P = 1/4, R = 1)
    assert row["max_f"] == pytest.approx(max(f(2 / 3, 1.0), f(0.25, 1.0)), abs=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_alpha_reaches_the_s_measure(alpha):
    pred, gt = _soft(), _square(box=(1, 5, 2, 7))
    ref = sod.Smeasure(alpha=alpha)
    ref.step(pred, gt, normalize=True)
    row = SODEvaluator(alpha=alpha).step(pred, gt)
    assert row["s_measure"] == pytest.approx(ref.sms[-1], abs=1e-12)
    other = SODEvaluator(alpha=1.4 - alpha).step(pred, gt)["s_measure"]
    assert other != pytest.approx(row["s_measure"], abs=1e-6)


# --------------------------------------------------------------------------- evaluate_methods


def test_stems_are_deduplicated_and_absent_ones_counted_with_a_remainder():
    gt = _square()
    gts = {"a": gt, "b": gt}
    res = evaluate_methods({"m": {"a": gt, "b": gt}}, gts, stems=["a", "a", "x1", "b", "x2", "x3", "x4"], log=False)
    assert res.pooled["m"]["n_images"] == 2
    assert res.notices == ("gt: 4 of 6 requested stems have no mask and are skipped: x1, x2, x3 (+1 more)",)
    res3 = evaluate_methods({"m": {"a": gt}}, {"a": gt}, stems=["x1", "a", "x2", "x3"], log=False)
    assert res3.notices == ("gt: 3 of 4 requested stems have no mask and are skipped: x1, x2, x3",)


def test_with_stems_given_extra_maps_are_not_reported_and_missing_ones_are():
    gt = _square()
    gts = {s: gt for s in "abcdef"}
    res = evaluate_methods({"m": {"a": gt, "zz": gt}}, gts, stems=list("abcde"), log=False)
    assert res.notices == (
        "m: 4 of 5 GT images have no map; scored on the 1 in common (missing: b, c, d (+1 more))",
    )
    assert list(res.per_image["m"]) == ["a"]


def test_a_method_matching_no_mask_is_named_and_the_others_are_scored_in_order():
    gt = _square()
    res = evaluate_methods({"z": {"a": gt}, "none": {"q": gt}, "b": {"a": _soft()}}, {"a": gt}, log=False)
    assert res.methods == ("z", "b")
    assert "none: no map matches a GT mask by stem; method not scored" in res.notices
    assert list(res.to_dict()["methods"]) == ["z", "b"]


def test_an_unreadable_mask_is_one_notice_with_the_first_line_of_its_reason():
    gt = _square()
    gts = _Failing(a=gt)
    res = evaluate_methods({"m": {"a": gt, "bad": gt}}, gts, log=False)
    assert res.pooled["m"]["n_images"] == 1
    assert list(res.per_image["m"]) == ["a"]
    assert res.notices == ("gt: 1 file(s) cannot be read and were skipped: bad [first line of the reason]",)


def test_an_unreadable_mask_reason_is_cut_at_200_characters():
    gt = _square()

    class Long(_Failing):
        def __getitem__(self, key):
            if key == "bad":
                raise OSError("x" * 300)
            return dict.__getitem__(self, key)

    res = evaluate_methods({"m": {"a": gt, "bad": gt}}, Long(a=gt), log=False)
    assert res.notices == ("gt: 1 file(s) cannot be read and were skipped: bad [" + "x" * 200 + "]",)


def test_mask_kinds_are_reported_per_stem_under_gt():
    ones = (_square() > 0).astype(np.uint8)  # values 0 and 1
    res = evaluate_methods({"m": {"a": _square(), "b": _square()}}, {"a": ones, "b": ones}, log=False)
    assert res.notices == ("gt: 2 mask(s) hold only the values 0 and 1; read as 0/255: a, b",)
    assert res.pooled["m"]["max_f"] == pytest.approx(1.0, abs=1e-6)


def test_an_unreadable_map_is_skipped_under_its_method_and_map_kinds_are_reported():
    gt = _square()
    nan_map = _soft().astype(np.float32) / 255
    nan_map[0, 0] = np.nan
    maps = _Failing(a=nan_map, c=gt)
    res = evaluate_methods({"m": maps}, {"a": gt, "bad": gt, "c": gt}, log=False)
    assert list(res.per_image["m"]) == ["a", "c"]
    assert res.notices == (
        "m: 1 map(s) contain NaN values; set to 0: a",
        "m: 1 file(s) cannot be read and were skipped: bad [first line of the reason]",
    )


def test_a_method_with_no_scoreable_image_is_said_and_absent():
    gt = _square()
    res = evaluate_methods({"m": _Failing(), "ok": {"bad": gt}}, {"bad": gt}, log=False)
    assert res.methods == ("ok",)  # the method after it is still scored
    assert "m: no image could be scored" in res.notices
    assert "m: 1 file(s) cannot be read and were skipped: bad [first line of the reason]" in res.notices


def test_parallel_scoring_equals_the_serial_one():
    gt = _square()
    maps = {"p": {"a": _soft(), "b": gt}, "q": {"a": gt, "b": _soft()[::-1].copy()}}
    gts = {"a": gt, "b": _square(box=(0, 3, 0, 3))}
    serial = evaluate_methods(maps, gts, log=False)
    # threads instead of processes: the same Parallel path, without seconds of worker start-up
    with joblib.parallel_backend("threading", n_jobs=2):
        parallel = evaluate_methods(maps, gts, n_jobs=2, log=False)
    assert parallel.methods == serial.methods == ("p", "q")
    assert parallel.to_dict() == serial.to_dict()


def test_notices_are_logged_only_when_asked(caplog):
    gt = _square()
    with caplog.at_level(logging.WARNING, logger="pipeline.evaluation"):
        quiet = evaluate_methods({"m": {"a": gt}}, {"a": gt, "b": gt}, log=False)
        assert caplog.records == []
        loud = evaluate_methods({"m": {"a": gt}}, {"a": gt, "b": gt})
    assert quiet.notices == loud.notices == ("m: 1 of 2 GT images have no map; scored on the 1 in common (missing: b)",)
    assert [r.getMessage() for r in caplog.records] == list(loud.notices)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_folder_problem_is_a_notice(tmp_path):
    import cv2

    gt = _square()
    folder = tmp_path / "m"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), gt)
    cv2.imwrite(str(folder / "a.bmp"), gt)  # two files, one stem
    res = evaluate_methods([folder], {"a": gt}, log=False)
    assert res.methods == ("m",)
    assert f"{folder / 'a.png'}: another file with stem 'a' (a.bmp) is used instead" in res.notices


# --------------------------------------------------------------------------- sources and JSON


def test_method_sources_accepts_one_folder_a_mapping_and_lists_and_names_repeats(tmp_path):
    folders = []
    for parent in ("a", "b", "b", "b"):
        folder = tmp_path / parent / "maps"
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder)
    assert list(_method_sources(str(folders[0]))) == ["maps"]
    assert list(_method_sources(folders[0])) == ["maps"]
    assert list(_method_sources(folders)) == ["maps", "b/maps", "b/maps#2", "b/maps#3"]
    named = _method_sources({1: {"x": _square()}, "two": folders[1]})
    assert list(named) == ["1", "two"]
    assert named["1"]["x"].shape == (8, 8)
    with pytest.raises(TypeError, match=r"^maps: expected a Mapping or a list of folders; got int$"):
        _method_sources(5)


def test_clean_replaces_non_finite_numbers_and_numpy_scalars_recursively():
    out = _clean({"a": [1.0, float("nan"), (np.float32(2.5), np.float64(np.inf))], "b": np.int64(3),
                  "c": "s", "d": None, "e": {"f": -np.inf, "g": True}})
    assert out == {"a": [1.0, None, [2.5, None]], "b": 3, "c": "s", "d": None, "e": {"f": None, "g": True}}
    assert type(out["b"]) is int and type(out["a"][2][0]) is float
    assert out["e"]["g"] is True


def test_to_dict_is_strict_json_with_every_part_in_place():
    gt = _square()
    res = evaluate_methods({"m": {"a": _soft(), "e": _soft()}},
                           {"a": gt, "e": np.zeros((8, 8), np.uint8)}, log=False)
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)  # no NaN may reach the JSON
    assert json.loads(text) == d
    assert d["metrics"] == [{"key": k, "label": lab, "higher_is_better": hib} for k, lab, hib in METRICS] + [
        {"key": "adp_e", "label": "adp E", "higher_is_better": True}]
    assert [m["key"] for m in d["metrics"]][:4] == ["max_f", "mean_f", "adp_f", "mae"]
    assert d["metrics"][3]["higher_is_better"] is False
    assert d["notices"] == list(res.notices) and len(d["notices"]) == 1
    assert d["thresholds"] == list(range(256))
    m = d["methods"]["m"]
    assert set(m) == {"pooled", "curves", "per_image"}
    assert m["pooled"]["n_images"] == 2 and m["pooled"]["auc_undefined"] == 1
    assert m["pooled"]["auc"] == res.pooled["m"]["auc"] is not None
    assert m["per_image"]["e"]["auc"] is None
    assert m["per_image"]["a"] == res.per_image["m"]["a"]
    assert set(m["curves"]) == {"precision", "recall", "fmeasure", "emeasure"}
    for name, curve in m["curves"].items():
        assert isinstance(curve, list) and len(curve) == 256
        assert curve == pytest.approx(res.curves["m"][name].tolist())


def test_an_unreadable_mask_early_in_the_pool_does_not_stop_the_rest():
    gt = _square()
    gts = _Failing(a=gt, c=gt)
    stems = ["a", "bad", "c"]
    res = evaluate_methods({"m": {s: gt for s in stems}}, gts, stems=stems, log=False)
    assert list(res.per_image["m"]) == ["a", "c"]


def test_an_unreadable_map_reason_is_cut_at_200_characters():
    gt = _square()

    class Long(_Failing):
        def __getitem__(self, key):
            if key == "bad":
                raise OSError("y" * 300 + "\nsecond")
            return dict.__getitem__(self, key)

    res = evaluate_methods({"m": Long(a=gt)}, {"a": gt, "bad": gt}, log=False)
    assert res.notices == ("m: 1 file(s) cannot be read and were skipped: bad [" + "y" * 200 + "]",)


def test_exactly_three_missing_or_extra_stems_have_no_remainder_and_four_extra_have_one():
    gt = _square()
    res = evaluate_methods({"m": {"a": gt, "e1": gt, "e2": gt, "e3": gt}}, {s: gt for s in "abcd"}, log=False)
    assert res.notices == (
        "m: 3 of 4 GT images have no map; scored on the 1 in common (missing: b, c, d)",
        "m: 3 map(s) have no GT mask and are ignored: e1, e2, e3",
    )
    res4 = evaluate_methods({"m": {"a": gt, "e1": gt, "e2": gt, "e3": gt, "e4": gt}}, {"a": gt}, log=False)
    assert res4.notices == ("m: 4 map(s) have no GT mask and are ignored: e1, e2, e3 (+1 more)",)


def test_beta2_and_alpha_reach_every_method():
    gt = _square()
    pred = _square(box=(2, 6, 2, 8))
    soft = _soft()
    for beta2, alpha in ((1.0, 0.5), (0.3, 0.9)):
        res = evaluate_methods({"m": {"a": pred, "b": soft}}, {"a": gt, "b": _square(box=(1, 5, 2, 7))},
                               beta2=beta2, alpha=alpha, log=False)
        ev = SODEvaluator(beta2=beta2, alpha=alpha)
        rows = [ev.step(pred, gt), ev.step(soft, _square(box=(1, 5, 2, 7)))]
        assert res.per_image["m"]["a"] == rows[0] and res.per_image["m"]["b"] == rows[1]


def test_the_result_keeps_the_sources_it_scored():
    gt, soft = _square(), _soft()
    res = evaluate_methods({"m": {"a": soft}}, {"a": gt}, log=False)
    assert np.array_equal(res.maps["m"]["a"], soft)
    assert np.array_equal(res.gts["a"], gt)


class _SerialParallel:
    """Stands in for joblib.Parallel: records n_jobs and runs the calls in order, here."""

    calls: list = []

    def __init__(self, n_jobs=None, **kw):
        self.calls.append(n_jobs)

    def __call__(self, tasks):
        return [f(*a, **k) for f, a, k in tasks]


@pytest.fixture
def fake_parallel(monkeypatch):
    _SerialParallel.calls = []
    monkeypatch.setattr(joblib, "Parallel", _SerialParallel)
    return _SerialParallel.calls


def test_one_job_scores_in_this_process_and_more_go_to_joblib(fake_parallel):
    gt = _square()
    nan_map = _soft().astype(np.float32) / 255
    nan_map[0, 0] = np.nan
    maps = {"p": {"a": nan_map}, "q": {"a": gt}}
    evaluate_methods(maps, {"a": gt}, log=False)                 # default: one job, no joblib
    evaluate_methods(maps, {"a": gt}, n_jobs=1, log=False)
    evaluate_methods({"p": {"a": gt}}, {"a": gt}, n_jobs=2, log=False)  # one method: nothing to share
    assert fake_parallel == []
    res = evaluate_methods(maps, {"a": gt}, n_jobs=3, log=False)
    assert fake_parallel == [3]
    assert res.methods == ("p", "q")
    assert res.notices == ("p: 1 map(s) contain NaN values; set to 0: a",)  # named in the worker too


def test_a_bad_source_is_named_after_its_method(tmp_path):
    from pipeline.pool import BadInput

    gt = _square()
    with pytest.raises(TypeError, match=r"^maps of m: expected a folder path or a Mapping"):
        evaluate_methods({"m": 3}, {"a": gt})
    with pytest.raises(BadInput, match=r"^maps of m folder .* does not exist"):
        evaluate_methods({"m": tmp_path / "absent"}, {"a": gt})
    with pytest.raises(BadInput, match=r"^maps of absent folder .* does not exist"):
        evaluate_methods([tmp_path / "absent"], {"a": gt})


def test_a_folder_without_a_name_is_named_by_its_path(tmp_path, monkeypatch):
    import cv2

    gt = _square()
    cv2.imwrite(str(tmp_path / "a.png"), gt)
    monkeypatch.chdir(tmp_path)
    res = evaluate_methods([Path(".")], {"a": gt}, log=False)
    assert res.methods == (".",)


def test_evaluator_defaults_are_the_toolkits_beta2_and_alpha():
    pred, gt = _soft(), _square(box=(1, 5, 2, 7))
    assert SODEvaluator().step(pred, gt) == SODEvaluator(beta2=0.3, alpha=0.5).step(pred, gt)
    assert SODEvaluator().step(pred, gt) != SODEvaluator(beta2=1.0, alpha=0.5).step(pred, gt)
    assert SODEvaluator().step(pred, gt) != SODEvaluator(beta2=0.3, alpha=0.9).step(pred, gt)
