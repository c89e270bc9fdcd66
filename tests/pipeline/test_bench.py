"""The results board (``python -m pipeline bench``): its arithmetic on hand-made metrics, what is
built, and one tiny board built end to end from real images (contrast detector, crf promoter)."""

import json
from pathlib import Path

import pytest

from pipeline.board import matrix as mx
from pipeline.board import papers, runs
from pipeline.board.report import compare, markdown

ROOT = Path(__file__).resolve().parents[2]
SOD_DATA = ROOT.parent / "shared" / "data" / "sod"

RAW = {"max_f": 0.800, "adp_f": 0.700, "mae": 0.100, "s_measure": 0.800, "max_e": 0.900}
# +0.05 better, -0.01 worse, MAE +0.02 worse, +0.0004 rounds to no change, -0.0004 rounds to none
PROMOTED = {"max_f": 0.850, "adp_f": 0.690, "mae": 0.120, "s_measure": 0.8004, "max_e": 0.8996}


# --------------------------------------------------------------------------- cells and changes


def test_change_is_promoted_minus_raw_and_worse_follows_each_metrics_direction():
    delta, worse = mx.change(RAW, PROMOTED)
    assert delta == pytest.approx({"max_f": 0.05, "adp_f": -0.01, "mae": 0.02, "s_measure": 0.0004,
                                   "max_e": -0.0004})
    assert worse == ["adp_f", "mae"]  # changes that round to zero are not worse


def test_lower_mae_is_better_and_higher_f_is_not_worse():
    _, worse = mx.change({"mae": 0.2, "max_f": 0.5}, {"mae": 0.1, "max_f": 0.6})
    assert worse == []
    _, worse = mx.change({"mae": 0.1}, {"mae": 0.1006})  # +0.001 as shown
    assert worse == ["mae"]


def test_promoter_cell_carries_its_change_against_the_raw_cell():
    cell = mx.promoter_cell(mx.ok_cell(RAW), PROMOTED)
    assert cell["status"] == mx.OK and cell["worse"] == ["adp_f", "mae"]
    assert cell["delta"]["max_f"] == pytest.approx(0.05)
    partial = mx.promoter_cell(mx.ok_cell(RAW), PROMOTED, scored=2, of=3)
    assert partial["partial"] == "2 of 3 images"
    assert mx.format_cell(partial).endswith("<br>*(2 of 3 images)*")
    assert "partial" not in mx.ok_cell(RAW, scored=3, of=3)
    failed_raw = mx.missing_cell(mx.FAILED, "boom")
    assert "delta" not in mx.promoter_cell(failed_raw, PROMOTED)


def test_format_cell_shows_five_numbers_changes_and_marks_the_worse_ones():
    text = mx.format_cell(mx.promoter_cell(mx.ok_cell(RAW), PROMOTED))
    lines = text.split("<br>")
    assert len(lines) == len(mx.CELL_METRICS)
    assert lines[0] == "0.850 (+0.050)"
    assert lines[1] == f"**0.690 (−0.010) {mx.WORSE_MARK}**"
    assert lines[2] == f"**0.120 (+0.020) {mx.WORSE_MARK}**"
    assert lines[3] == "0.800 (±0.000)"
    assert mx.format_cell(mx.ok_cell(RAW)).split("<br>")[2] == "0.100"
    assert mx.format_cell(mx.missing_cell(mx.NOT_BUILT, "no stage")) == "*not built*"
    with pytest.raises(ValueError, match="status"):
        mx.missing_cell("ok", "x")


def test_matrix_table_has_every_row_and_column_and_no_blank_cell():
    matrix = {
        "u2netp": {"raw": mx.ok_cell(RAW), "crf": mx.promoter_cell(mx.ok_cell(RAW), PROMOTED),
                   "relearn": mx.missing_cell(mx.NOT_BUILT, "stage `relearn` is not registered")},
        "DSS": {"raw": mx.ok_cell(RAW),  # the crf column it lacks is still a cell
                "relearn": mx.missing_cell(mx.NOT_BUILT, "stage `relearn` is not registered")},
    }
    table = mx.matrix_table(matrix, ["raw", "crf", "relearn"], {"DSS": "DSS (published)"})
    lines = table.strip().splitlines()
    assert lines[0] == "| prior | raw | +crf | +relearn |"
    assert lines[2].startswith("| u2netp | 0.800<br>") and lines[3].startswith("| DSS (published) | ")
    assert all(line.count("|") == 5 for line in lines)
    assert all("|  |" not in line for line in lines)
    assert lines[3].count("*not built*") == 2
    notes = mx.missing_notes(matrix, ["raw", "crf", "relearn"])
    assert "+relearn: not built (every row): stage `relearn` is not registered" in notes
    assert "+crf: not built (DSS): not run" in notes
    assert mx.worse_counts(matrix, ["raw", "crf", "relearn"])["crf"] == {
        "rows": 1, "max_f": 0, "adp_f": 1, "mae": 1, "s_measure": 0, "max_e": 0}


def test_disagreement_ranks_stems_by_the_spread_over_maps_and_best_row_by_max_f():
    per_image = {"a": {"s1": 0.1, "s2": 0.1, "s3": 0.5, "s4": 0.2},
                 "b": {"s1": 0.1, "s2": 0.4, "s3": 0.1, "s4": 0.2},
                 "c": {"s1": 0.1, "s2": 0.1, "s3": 0.1}}  # s4 is not in every map: left out
    assert mx.disagreement(per_image, 2) == ["s3", "s2"]
    assert mx.disagreement(per_image, 10) == ["s3", "s2", "s1"]
    assert mx.disagreement({}, 3) == []
    matrix = {"x": {"raw": mx.ok_cell({"max_f": 0.7})}, "y": {"raw": mx.ok_cell({"max_f": 0.9})},
              "z": {"raw": mx.missing_cell(mx.FAILED, "boom")}}
    assert mx.best_row(matrix) == "y"
    assert mx.best_row(matrix, "mae") is None


# --------------------------------------------------------------------------- papers


def test_paper_numbers_are_well_formed_and_set_beside_the_same_row_and_column():
    keys = {k for k, _ in mx.CELL_METRICS}
    for p in papers.PAPER_NUMBERS:
        assert set(p.metrics) <= keys and len(p.value) == len(p.metrics)
        assert p.prior is None or len(p.prior) == len(p.metrics)
    sod = papers.numbers_for("SOD")
    assert {(p.row, p.table) for p in sod} == {("Amulet", "Table 2"), ("DSS", "Table 2"), ("BSCA", "Table 3")}
    cells = {"DSS": {"raw": mx.ok_cell({"adp_f": 0.795, "mae": 0.121}),
                     "lps": mx.promoter_cell(mx.ok_cell({"adp_f": 0.795, "mae": 0.121}), {"adp_f": 0.734, "mae": 0.138})},
             "Amulet": {"raw": mx.ok_cell({"adp_f": 0.755, "mae": 0.141})}}
    rows = {r["row"]: r for r in compare(sod, cells)}
    assert rows["DSS"]["ours"] == "ok"
    assert rows["DSS"]["metrics"][0] == {"key": "adp_f", "paper_prior": 0.7867, "paper": 0.8061,
                                         "ours_prior": 0.795, "ours": 0.734}
    assert rows["Amulet"]["ours"] == "column not on this board"
    assert rows["BSCA"]["ours"] == "row not on this board"
    arn = compare(papers.numbers_for("ECSSD"), {"arn": {"raw": mx.ok_cell({"max_f": 0.869, "mae": 0.082})}})
    assert arn[0]["metrics"][0] == {"key": "max_f", "paper_prior": None, "paper": 0.9133, "ours_prior": None,
                                    "ours": 0.869}
    assert {p for p, _ in papers.WITHOUT_COMPARISON} >= {
        "LDPS (Chen et al., learning deep relations)", "MIJR (Ma et al., multiple instance joint re-learning)"}


# --------------------------------------------------------------------------- what is built, timings


def test_availability_comes_from_the_registry_and_the_model_resolution():
    from pipeline.config import build_params

    params, _ = build_params(None, ["lps.model=no-such-model"])
    assert "not registered" in runs.availability("absent_promoter", params, promoter=True)
    assert "produces no map" in runs.availability("deep_features", params, promoter=True)
    assert "no `prior` parameter" in runs.availability("contrast", params, promoter=True)
    assert runs.availability("contrast", params, promoter=False) is None
    assert runs.availability("crf", params, promoter=True) is None
    assert runs.availability("lps", params, promoter=True).startswith("no model: lps.model = 'no-such-model'")
    shipped, _ = build_params(None, [])
    assert runs.availability("lps", shipped, promoter=True) is None  # the shipped lps-u2netp-duts
    assert runs.model_record("lps", shipped)["kind"] == "shipped"
    assert runs.model_record("crf", shipped) is None


def test_stage_times_pool_the_seconds_of_computed_items():
    t = runs.StageTimes()
    t.step({"stages": [{"name": "pool", "computed": 4, "cached": 0, "seconds": 2.0},
                       {"name": "crf", "computed": 4, "cached": 0, "seconds": 8.0}]})
    t.step({"stages": [{"name": "pool", "computed": 0, "cached": 4, "seconds": 0.0},
                       {"name": "crf", "computed": 2, "cached": 2, "seconds": 4.0}]})
    t.step(None)
    assert t.get_results() == {"pool": {"computed": 4, "cold_s_per_item": 0.5},
                               "crf": {"computed": 6, "cold_s_per_item": 2.0}}


def test_subset_is_seeded_and_in_file_order():
    stems = [f"{i:03d}" for i in range(20)]
    a = runs.subset(stems, 5, seed=0)
    assert a == sorted(a) and len(a) == 5 and a == runs.subset(stems, 5, seed=0)
    assert runs.subset(stems, None) == stems and runs.subset(stems, 50) == stems


def test_quick_defaults_and_bad_options():
    from pipeline.board import QUICK, Board
    from pipeline.cli import build_parser

    board = Board(build_parser(evaluate_arguments=False).parse_args(["bench", "--quick"]))
    assert board.limit == QUICK["limit"] and board.published == QUICK["published"]
    assert str(board.out) == "out/board-quick" and board.columns == ["raw", "crf", "relearn", "lps", "ldps"]
    assert board.command() == "python -m pipeline bench --quick"
    full = Board(build_parser(evaluate_arguments=False).parse_args(["bench", "--promoters", "crf", "--limit", "3"]))
    assert full.limit == 3 and full.published is None and str(full.out) == "."
    with pytest.raises(ValueError, match="--limit"):
        Board(build_parser(evaluate_arguments=False).parse_args(["bench", "--limit", "0"]))


# --------------------------------------------------------------------------- the board end to end


def _tiny_data(root: Path) -> Path:
    """A data folder laid out like ../shared/data/sod: links to 3 ECSSD test and 3 SOD images, their
    masks and SOD's DSS maps (no split file for SOD: every image with a mask)."""
    for name, n, published in (("ECSSD", 3, ()), ("SOD", 3, ("DSS",))):
        src = SOD_DATA / name
        stems = (src / "test.txt").read_text().split()[:n]
        for sub in ("images", "gt", *[f"priors/{p}" for p in published]):
            (root / name / sub).mkdir(parents=True)
        for s in stems:
            (root / name / "images" / f"{s}.jpg").symlink_to(src / "images" / f"{s}.jpg")
            (root / name / "gt" / f"{s}.png").symlink_to(src / "gt" / f"{s}.png")
            for p in published:
                (root / name / "priors" / p / f"{s}.png").symlink_to(src / "priors" / p / f"{s}.png")
        if name == "ECSSD":
            (root / name / "test.txt").write_text("\n".join(stems) + "\n")
    return root


@pytest.mark.skipif(not (SOD_DATA / "SOD" / "priors" / "DSS").is_dir(), reason="needs ../shared/data/sod")
def test_tiny_board_builds_with_every_row_and_column(tmp_path):
    from pipeline.cli import main

    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "board"
    rc = main(["bench", "--data", str(data), "--out", str(out), "--work", str(tmp_path / "work"),
               "--detectors", "contrast", "--promoters", "crf,absent_promoter", "--jobs", "1",
               "--set", "contrast.n_segments=100"])
    assert rc == 0
    for f in ("BENCHMARKS.md", "benchmarks.json", "board/pr_ECSSD.png", "board/pr_SOD.png",
              "board/contact_ECSSD.png", "board/contact_SOD.png"):
        assert (out / f).is_file(), f
    assert (tmp_path / "work" / "logs" / "ECSSD-test-contrast.log").is_file()
    board = json.loads((out / "benchmarks.json").read_text())
    assert board["columns"] == ["raw", "crf", "absent_promoter"]
    assert board["stages"]["absent_promoter"]["status"] == "not built"
    expected_rows = {"ECSSD": ["contrast"], "SOD": ["contrast", "DSS"]}
    for name, rows in expected_rows.items():
        ds = board["datasets"][name]
        assert ds["n_images"] == 3 and list(ds["rows"]) == rows
        for row in rows:
            cells = ds["rows"][row]["cells"]
            assert list(cells) == ["raw", "crf", "absent_promoter"]
            assert cells["raw"]["status"] == cells["crf"]["status"] == "ok"
            assert cells["absent_promoter"]["status"] == "not built"
            for key, value in cells["crf"]["delta"].items():
                assert value == pytest.approx(cells["crf"]["metrics"][key] - cells["raw"]["metrics"][key])
        assert ds["timing"]["crf"]["computed"] == 3 * len(rows)
        assert ds["timing"]["crf"]["cold_s_per_item"] > 0
        assert ds["cached_run"]["rc"] == 0 and ds["cached_run"]["computed"] == 0
        assert set(ds["contact_stems"]) == set(ds["stems"])
    assert board["datasets"]["SOD"]["rows"]["DSS"]["kind"] == "published"
    dss = [p for p in board["datasets"]["SOD"]["papers"] if p["row"] == "DSS"][0]
    assert dss["ours"] == "column not on this board"  # lps is not among this board's promoters
    page = (out / "BENCHMARKS.md").read_text()
    assert page == markdown(board)
    assert "| prior | raw | +crf | +absent_promoter |" in page and "*not built*" in page
    assert "+absent_promoter: not built (every row): stage `absent_promoter` is not registered" in page
    assert "DSS (published)" in page and "![PR curves SOD](board/pr_SOD.png)" in page


def _summary_board(quick=False):
    ok = {"status": "ok", "metrics": {"max_f": 0.8, "adp_f": 0.7, "mae": 0.1, "s_measure": 0.75, "max_e": 0.9}}
    worse = {"status": "ok", "metrics": {"max_f": 0.7, "adp_f": 0.6, "mae": 0.09, "s_measure": 0.7, "max_e": 0.8},
             "delta": {"max_f": -0.1, "mae": -0.01}, "worse": ["max_f", "adp_f"]}
    ds = {"status": "ok", "label": "ECSSD test", "n_images": 2, "best_row": "u2netp",
          "rows": {"u2netp": {"label": "u2netp", "cells": {"raw": ok, "crf": worse,
                                                            "lps": {"status": "not built", "reason": "x"}}}},
          "figures": {"contact": "board/contact_ECSSD.png"}}
    return {"command": "python -m pipeline bench", "commit": "abc1234", "created": "2026-12-03T10:00:00",
            "wall_s": 600.0, "columns": ["raw", "crf", "lps"], "quick": quick, "options": {"limit": None},
            "machine": {"cpu": "Some CPU", "cores": 2, "memory_gib": 24, "gpu": "none"},
            "datasets": {"ECSSD": ds, "SOD": {"status": "missing", "label": "SOD test", "reason": "no folder"}}}


def test_readme_summary_is_max_f_and_mae_with_worse_marks_and_the_contact_sheet():
    from pipeline.board.report import readme_summary

    text = readme_summary(_summary_board())
    assert "`python -m pipeline bench` at commit `abc1234` (2026-12-03), on Some CPU, 2 cores, 24 GiB" in text
    assert "the board command took 10 min, every item read from the cache of an earlier run." in text
    computing = _summary_board()
    computing["datasets"]["ECSSD"]["timing"] = {"crf": {"computed": 2, "cold_s_per_item": 0.5}}
    assert "the board command took 10 min." in readme_summary(computing)
    assert "| prior | raw | +crf | +lps |" in text
    assert "| u2netp | 0.800 / 0.100 | 0.700 ▼ / 0.090 | *not built* |" in text
    assert "**SOD test**: not on the board: no folder." in text
    assert "![contact sheet ECSSD test](board/contact_ECSSD.png)" in text
    assert "subset run" not in text
    assert "subset run" in readme_summary(_summary_board(quick=True))


def test_readme_section_replaced_between_its_markers_only():
    from pipeline.board.report import README_BEGIN, README_END, replace_readme_section

    readme = f"# t\n\n{README_BEGIN}\nold\n{README_END}\n\nrest\n"
    assert replace_readme_section(readme, "new\n") == f"# t\n\n{README_BEGIN}\nnew\n{README_END}\n\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        replace_readme_section("# no markers\n", "new\n")


def test_readme_summary_links_the_figures_beside_the_board_page():
    from pipeline.board.report import readme_summary

    text = readme_summary(_summary_board(), board_page="results/BENCHMARKS.md")
    assert "[results/BENCHMARKS.md](results/BENCHMARKS.md)" in text
    assert "![contact sheet ECSSD test](results/board/contact_ECSSD.png)" in text


def test_readme_results_script_rewrites_only_the_marked_section(tmp_path):
    import importlib.util

    from pipeline.board.report import README_BEGIN, README_END

    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "results").mkdir()
    board_json = tmp_path / "results" / "benchmarks.json"
    board_json.write_text(json.dumps(_summary_board()))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{README_BEGIN}\nstale\n{README_END}\ntail\n")
    assert script.main(["--board", str(board_json), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# title\n{README_BEGIN}\nFrom `python -m pipeline bench`")
    assert text.endswith(f"{README_END}\ntail\n") and "stale" not in text
    assert "(results/board/contact_ECSSD.png)" in text
    assert script.main(["--board", str(tmp_path / "absent.json"), "--readme", str(readme)]) == 1


def test_datasets_option_and_a_board_stopped_part_way_keeps_what_it_finished(tmp_path, monkeypatch):
    from pipeline import board as board_pkg
    from pipeline.cli import build_parser

    parse = build_parser(evaluate_arguments=False).parse_args
    with pytest.raises(ValueError, match="--datasets"):
        board_pkg.Board(parse(["bench", "--datasets", "DUTS"]))
    only = board_pkg.Board(parse(["bench", "--datasets", "SOD"]))
    assert only.datasets == ["SOD"] and only.command() == "python -m pipeline bench --datasets SOD"

    def fake_dataset(self, name, split):
        if name == "SOD":
            raise KeyboardInterrupt  # the user stops the board during the second dataset
        self.record["datasets"][name] = {"label": f"{name} {split}", "status": "missing", "reason": "fake"}

    monkeypatch.setattr(board_pkg.Board, "run_dataset", fake_dataset)
    monkeypatch.setattr(board_pkg.Board, "check_stages", lambda self: None)
    args = parse(["bench", "--out", str(tmp_path), "--work", str(tmp_path / "work")])
    with pytest.raises(KeyboardInterrupt):
        board_pkg.main(args)
    written = json.loads((tmp_path / "benchmarks.json").read_text())
    assert written["datasets"]["ECSSD"]["reason"] == "fake"
    assert written["datasets"]["SOD"] == {"label": "SOD test", "status": "missing",
                                          "reason": "not run yet: the board stopped before it"}
    assert "Not on the board: not run yet: the board stopped before it." in (tmp_path / "BENCHMARKS.md").read_text()
    # a dataset left out on purpose is said so
    monkeypatch.setattr(board_pkg.Board, "run_dataset", lambda self, n, s: None)
    assert board_pkg.main(parse(["bench", "--datasets", "ECSSD", "--out", str(tmp_path / "b"),
                                 "--work", str(tmp_path / "work")])) == 1
    again = json.loads((tmp_path / "b" / "benchmarks.json").read_text())
    assert again["datasets"]["SOD"]["reason"] == "not selected (--datasets ECSSD)"
