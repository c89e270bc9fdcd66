"""Report files: metrics.json, metrics.md (bold best, arrows), PR/F curves, contact sheet."""

import json

import numpy as np
from PIL import Image

from pipeline.evaluation import evaluate_methods, markdown_table, write_report


def _pool(n=5, seed=0):
    rng = np.random.default_rng(seed)
    gts, good, bad, images = {}, {}, {}, {}
    for i in range(n):
        gt = np.zeros((30, 40), np.uint8)
        gt[5 + i: 20 + i, 8:30] = 255
        gts[f"im{i}"] = gt
        good[f"im{i}"] = np.clip(gt / 255 * 0.9 + rng.random(gt.shape) * 0.1, 0, 1).astype(np.float32)
        bad[f"im{i}"] = rng.random(gt.shape).astype(np.float32)
        images[f"im{i}"] = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    return gts, good, bad, images


def test_write_report_outputs(tmp_path):
    gts, good, bad, images = _pool()
    res = evaluate_methods({"good": good, "bad": bad}, gts)
    written = write_report(res, tmp_path / "rep", images=images, n_rows=3)
    assert set(written) == {"metrics.json", "metrics.md", "pr_curves.png", "f_curves.png", "contact_sheet.png"}

    data = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert set(data["methods"]) == {"good", "bad"}
    good_json = data["methods"]["good"]
    assert set(good_json["per_image"]) == set(gts)
    assert good_json["pooled"]["max_f"] == res.pooled["good"]["max_f"]
    assert len(good_json["curves"]["precision"]) == 256 and len(data["thresholds"]) == 256

    md = (tmp_path / "rep" / "metrics.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 3  # header + 2 methods
    assert "MAE ↓" in table[0] and "max F ↑" in table[0]
    good_row = next(line for line in table if line.startswith("| good"))
    bad_row = next(line for line in table if line.startswith("| bad"))
    assert good_row.count("**") == 2 * 9  # best in every one of the 9 columns
    assert "**" not in bad_row

    for name in ("pr_curves.png", "f_curves.png", "contact_sheet.png"):
        with Image.open(tmp_path / "rep" / name) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200


def test_contact_sheet_rows_configurable(tmp_path):
    gts, good, bad, images = _pool(n=6)
    res = evaluate_methods({"good": good, "bad": bad}, gts)
    write_report(res, tmp_path / "two", images=images, n_rows=2)
    write_report(res, tmp_path / "five", images=images, n_rows=5)
    h2 = Image.open(tmp_path / "two" / "contact_sheet.png").size[1]
    h5 = Image.open(tmp_path / "five" / "contact_sheet.png").size[1]
    assert h5 > 2 * h2
    write_report(res, tmp_path / "none", n_rows=0)
    assert not (tmp_path / "none" / "contact_sheet.png").exists()


def test_markdown_table_ties_and_missing_auc():
    gt = np.zeros((10, 10), np.uint8)
    same = {"a": np.zeros((10, 10), np.float32)}
    res = evaluate_methods({"x": same, "y": same}, {"a": gt})
    md = markdown_table(res)
    rows = [line for line in md.splitlines() if line.startswith("| x") or line.startswith("| y")]
    assert all("—" in r for r in rows)  # AUC undefined on an all-black mask
    assert rows[0].count("**") == rows[1].count("**") > 0  # ties: both bold
