"""Metrics agree with PySODMetrics on real pairs and with hand-computed values on tiny arrays."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation import AUC, SODEvaluator, evaluate_methods
from pipeline.evaluation.metrics import METRICS

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "metric-check"


def _read_gray(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def real_pairs():
    if not (DATA / "preds").is_dir() or not (DATA / "masks").is_dir():
        pytest.skip(f"metric-check data not found at {DATA}")
    names = sorted(p.stem for p in (DATA / "masks").glob("*.png"))
    return [(n, _read_gray(DATA / "preds" / f"{n}.png"), _read_gray(DATA / "masks" / f"{n}.png")) for n in names]


def _reference(pairs):
    """Pooled and per-image values from PySODMetrics' own classes (the legacy Fmeasure included)."""
    import py_sod_metrics as sod

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure announces its deprecation
        fm = sod.Fmeasure()
    mae, sm, em, wfm = sod.MAE(), sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure()
    per_image = {}
    for name, pred, gt in pairs:
        for e in (fm, mae, sm, em, wfm):
            e.step(pred, gt)
        per_image[name] = {
            "max_f": fm.changeable_fms[-1].max(), "mean_f": fm.changeable_fms[-1].mean(),
            "adp_f": fm.adaptive_fms[-1], "mae": mae.maes[-1], "s_measure": sm.sms[-1],
            "max_e": em.changeable_ems[-1].max(), "mean_e": em.changeable_ems[-1].mean(),
            "adp_e": em.adaptive_ems[-1], "weighted_f": wfm.weighted_fms[-1],
        }
    f, e = fm.get_results(), em.get_results()["em"]
    pooled = {
        "max_f": f["fm"]["curve"].max(), "mean_f": f["fm"]["curve"].mean(), "adp_f": f["fm"]["adp"],
        "mae": mae.get_results()["mae"], "s_measure": sm.get_results()["sm"],
        "max_e": e["curve"].max(), "mean_e": e["curve"].mean(), "adp_e": e["adp"],
        "weighted_f": wfm.get_results()["wfm"],
    }
    return pooled, per_image, f["pr"]


def test_agrees_with_pysodmetrics_on_real_pairs(real_pairs):
    ref_pooled, ref_per_image, ref_pr = _reference(real_pairs)
    res = evaluate_methods({"m": DATA / "preds"}, DATA / "masks")
    assert res.methods == ("m",)
    pooled = res.pooled["m"]
    assert pooled["n_images"] == len(real_pairs) == 3
    for key, value in ref_pooled.items():
        assert pooled[key] == pytest.approx(float(value), abs=1e-6), key
    for name, row in ref_per_image.items():
        for key, value in row.items():
            assert res.per_image["m"][name][key] == pytest.approx(float(value), abs=1e-6), (name, key)
    # PR curve: ours is ascending in threshold, PySODMetrics' descending.
    np.testing.assert_allclose(res.curves["m"]["precision"], ref_pr["p"][::-1], atol=1e-6)
    np.testing.assert_allclose(res.curves["m"]["recall"], ref_pr["r"][::-1], atol=1e-6)


def test_auc_matches_sklearn_on_real_pairs(real_pairs):
    from sklearn.metrics import roc_auc_score

    res = evaluate_methods({"m": DATA / "preds"}, DATA / "masks")
    expected = []
    for name, pred, gt in real_pairs:
        labels = gt > 128
        if labels.all() or not labels.any():
            assert res.per_image["m"][name]["auc"] is None  # all-background SOC image
            continue
        value = roc_auc_score(labels.ravel(), pred.ravel())
        expected.append(value)
        assert res.per_image["m"][name]["auc"] == pytest.approx(value, abs=1e-9)
    assert res.pooled["m"]["auc"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert res.pooled["m"]["auc_undefined"] == 1


def test_no_nan_anywhere_with_all_black_gt(real_pairs):
    res = evaluate_methods({"m": DATA / "preds"}, DATA / "masks")
    black = "aerial-1867541__340"
    row = res.per_image["m"][black]
    pred = dict((n, p) for n, p, _ in real_pairs)[black].astype(np.float64)
    # Toolkit definitions on an empty mask: S = 1 - mean(normalised map), wF = 0, F = 0.
    norm = pred / 255
    if norm.max() > norm.min():
        norm = (norm - norm.min()) / (norm.max() - norm.min())
    assert row["s_measure"] == pytest.approx(1 - norm.mean(), abs=1e-9)
    assert row["weighted_f"] == 0 and row["max_f"] == 0
    for key, _, _ in METRICS:
        for v in [res.pooled["m"][key]] + [r[key] for r in res.per_image["m"].values()]:
            assert v is None or np.isfinite(v)
    for curve in res.curves["m"].values():
        assert np.isfinite(curve).all()


def test_auc_hand_computed():
    # fg scores {200, 100}, bg scores {100, 50, 0}: pairs (fg > bg) = 3 + 2 = 5, ties = 1 -> 5.5 / 6.
    pred = np.array([[200, 100, 100], [50, 0, 0]], dtype=np.uint8)
    gt = np.array([[255, 255, 0], [0, 0, 0]], dtype=np.uint8)
    gt[1, 2] = 0
    pred[1, 2] = 0
    # bg = {100, 50, 0, 0}: fg 200 beats 4; fg 100 beats 3 and ties 1 -> (4 + 3 + 0.5) / 8
    auc = AUC()
    auc.step(pred, gt)
    assert auc.aucs[-1] == pytest.approx(7.5 / 8)
    # perfect separation and perfect inversion
    auc.step(np.array([[255, 0]], np.uint8), np.array([[255, 0]], np.uint8))
    auc.step(np.array([[0, 255]], np.uint8), np.array([[255, 0]], np.uint8))
    assert auc.aucs[-2:] == [1.0, 0.0]
    # a constant map is chance: every pair ties
    auc.step(np.full((3, 3), 7, np.uint8), np.eye(3, dtype=np.uint8) * 255)
    assert auc.aucs[-1] == pytest.approx(0.5)
    assert auc.get_results()["auc"] == pytest.approx((7.5 / 8 + 1 + 0 + 0.5) / 4)


def test_auc_one_class_is_undefined_not_nan():
    auc = AUC()
    auc.step(np.array([[10, 20]], np.uint8), np.zeros((1, 2), np.uint8))
    auc.step(np.array([[10, 20]], np.uint8), np.full((1, 2), 255, np.uint8))
    assert auc.get_results() == {"auc": None, "undefined": 2}


def test_auc_random_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = rng.random((23, 31)) < 0.3
        pred = np.clip(rng.normal(100 + 60 * gt, 40), 0, 255).astype(np.uint8)
        auc = AUC()
        auc.step(pred, gt.astype(np.uint8) * 255)
        assert auc.aucs[-1] == pytest.approx(roc_auc_score(gt.ravel(), pred.ravel()), abs=1e-12)


def test_mae_hand_computed():
    # map 0/255 with min-max -> 0/1; gt 0/255. One wrong pixel out of 4 -> 0.25.
    pred = np.array([[255, 0], [255, 0]], np.uint8)
    gt = np.array([[255, 0], [0, 0]], np.uint8)
    ev = SODEvaluator()
    row = ev.step(pred, gt)
    assert row["mae"] == pytest.approx(0.25)
    # graded map: values 0, 51, 102, 255 -> min-max /255 -> 0, .2, .4, 1; gt = [1, 0, 0, 1]
    pred = np.array([[255, 51], [102, 0]], np.uint8)
    gt = np.array([[255, 0], [0, 255]], np.uint8)
    row = ev.step(pred, gt)
    assert row["mae"] == pytest.approx((0 + 0.2 + 0.4 + 1) / 4)
    pooled, _ = ev.get_results()
    assert pooled["mae"] == pytest.approx((0.25 + 0.4) / 2)


def test_perfect_map_scores_one():
    gt = np.zeros((40, 50), np.uint8)
    gt[10:30, 15:35] = 255
    res = evaluate_methods({"perfect": {"a": gt.astype(np.float32) / 255}}, {"a": gt})
    p = res.pooled["perfect"]
    assert p["mae"] == 0
    for key in ("max_f", "adp_f", "s_measure", "auc"):
        assert p[key] == pytest.approx(1.0, abs=1e-6), key
    # The toolkits' E-measure divides the enhanced-alignment sum by (H W - 1), as the MATLAB code.
    assert p["max_e"] == pytest.approx(gt.size / (gt.size - 1), abs=1e-9)
    assert p["weighted_f"] == pytest.approx(1.0, abs=1e-4)


def test_float_maps_equal_their_png_quantisation():
    rng = np.random.default_rng(1)
    gt = (rng.random((30, 30)) > 0.6).astype(np.uint8) * 255
    fmap = rng.random((30, 30)).astype(np.float32)
    a = evaluate_methods({"m": {"x": fmap}}, {"x": gt}).pooled["m"]
    b = evaluate_methods({"m": {"x": np.round(fmap * 255).astype(np.uint8)}}, {"x": gt}).pooled["m"]
    assert a == b


def _square(shape=(8, 8)):
    gt = np.zeros(shape, np.uint8)
    gt[2:6, 2:6] = 255
    return gt


def test_auc_of_a_one_class_mask_is_undefined_without_a_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 division would warn: the undefined case is decided first
        assert np.isnan(AUC.cal_auc(np.array([[10, 20]], np.uint8), np.zeros((1, 2), bool)))
        assert np.isnan(AUC.cal_auc(np.array([[10, 20]], np.uint8), np.ones((1, 2), bool)))


def test_to_dict_lists_the_256_thresholds():
    gt = _square()
    d = evaluate_methods({"m": {"a": gt}}, {"a": gt}).to_dict()
    assert d["thresholds"] == list(range(256))
    assert len(d["methods"]["m"]["curves"]["fmeasure"]) == 256


def test_folders_with_the_same_name_are_told_apart(tmp_path):
    import cv2

    gt = _square()
    folders = []
    for parent in ("a", "b"):
        folder = tmp_path / parent / "maps"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "x.png"), gt)
        folders.append(folder)
    res = evaluate_methods(folders + [folders[1]], {"x": gt}, log=False)
    assert res.methods == ("maps", "b/maps", "b/maps#2")


def test_a_resized_map_is_reported_under_its_method():
    gt = _square((8, 8))
    res = evaluate_methods({"m": {"x": _square((4, 4))}}, {"x": gt}, log=False)
    assert res.methods == ("m",)
    assert res.notices == ("m: 1 map(s) differ in size from their mask; resized to the mask size "
                           "(bilinear): x",)


def test_missing_and_extra_maps_are_each_one_notice_line():
    gt = _square()
    gts = {s: gt for s in ("a", "b", "c")}
    maps = {s: gt for s in ("a", "e1", "e2", "e3", "e4", "e5")}
    res = evaluate_methods({"m": maps}, gts, log=False)
    assert res.notices == (
        "m: 2 of 3 GT images have no map; scored on the 1 in common (missing: b, c)",
        "m: 5 map(s) have no GT mask and are ignored: e1, e2, e3 (+2 more)",
    )


def test_no_mask_to_score_against_is_said():
    gt = _square()
    res = evaluate_methods({"m": {"a": gt}}, {"a": gt}, stems=["zz"], log=False)
    assert res.methods == ()
    assert "gt: no ground-truth mask to score against" in res.notices


def test_a_ground_truth_of_the_wrong_type_is_named_in_the_error():
    with pytest.raises(TypeError, match=r"^ground-truth: expected a folder path or a Mapping"):
        evaluate_methods({"m": {}}, 3)
