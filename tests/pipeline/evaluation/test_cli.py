"""The ``evaluate`` command's argparse piece and main()."""

import argparse
import json

import numpy as np
from PIL import Image

from pipeline.evaluation.cli import add_arguments, main


def _write(folder, stem, arr):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / f"{stem}.png")


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        gt = np.zeros((20, 30), np.uint8)
        gt[4:15, 5:20] = 255
        _write(tmp_path / "gt", f"s{i}", gt)
        _write(tmp_path / "A", f"s{i}", gt)
        if i < 3:
            _write(tmp_path / "B", f"s{i}", rng.integers(0, 256, gt.shape, dtype=np.uint8))
        _write(tmp_path / "img", f"s{i}", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    args = _parse(["--pred", str(tmp_path / "A"), "--pred", f"noise={tmp_path / 'B'}", "--gt",
                   str(tmp_path / "gt"), "--out", str(tmp_path / "out"), "--images", str(tmp_path / "img"),
                   "--rows", "2"])
    assert main(args) == 0
    out = capsys.readouterr()
    assert "| A |" in out.out and "| noise |" in out.out
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert data["methods"]["noise"]["pooled"]["n_images"] == 3
    assert any("noise: 1 of 4 GT images have no map" in n for n in data["notices"])
    assert (tmp_path / "out" / "contact_sheet.png").exists()


def test_cli_bad_folder_and_nothing_scored(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "p").mkdir()
    assert main(_parse(["--pred", str(tmp_path / "nope"), "--gt", str(tmp_path / "gt")])) == 2
    assert main(_parse(["--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "gt"),
                        "--out", str(tmp_path / "o")])) == 1
    assert "no method could be scored" in capsys.readouterr().err


def test_evaluate_run_for_the_runner(tmp_path):
    from pipeline.evaluation import evaluate_run

    gt = np.zeros((20, 30), np.uint8)
    gt[4:15, 5:20] = 255
    for i in range(3):
        _write(tmp_path / "gt", f"s{i}", gt)
        _write(tmp_path / "u2netp", f"s{i}", gt)
    _write(tmp_path / "u2netp", "s0", np.kron(gt, np.ones((2, 2), np.uint8)))  # other size
    lines = []
    res = evaluate_run(map_dirs={"u2netp": tmp_path / "u2netp"}, gt_dir=tmp_path / "gt",
                       out_dir=tmp_path / "ev", n_rows=2, echo=lines.append)
    assert res.methods == ("u2netp",)
    assert any(line.startswith("notice: u2netp: 1 map(s) differ in size") for line in lines)
    assert any(line.startswith("| u2netp |") for line in lines)
    assert (tmp_path / "ev" / "metrics.md").exists() and (tmp_path / "ev" / "contact_sheet.png").exists()
