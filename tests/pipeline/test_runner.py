"""The runner: caching, recomputation of exactly the dependants, failures kept per item."""

import json

import numpy as np
import pytest

from pipeline.config import build_params
from pipeline.runner import RunError, RunOptions, run


def _run(names, pool, out, sets=(), **kw):
    lines = []
    params, _ = build_params(None, list(sets), lines)
    opts = RunOptions(out=out, pool=pool, jobs=kw.pop("jobs", 1), progress=False, echo=lines.append, **kw)
    report = run(names, params, opts)
    return {s.name: s for s in report.stages}, lines, report


def test_second_identical_run_computes_nothing(tiny_pool, tmp_path):
    first, _, _ = _run(["test_after", "test_count"], tiny_pool, tmp_path / "out")
    assert first["test_mean"].computed == 4 and first["test_count"].computed == 1
    second, _, report = _run(["test_after", "test_count"], tiny_pool, tmp_path / "out")
    assert report.computed == 0
    assert {n: s.cached for n, s in second.items()} == {"pool": 4, "test_mean": 4, "test_after": 4, "test_count": 1}


def test_changed_parameter_recomputes_exactly_the_dependent_stages(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_after", "test_count", "test_slow"], tiny_pool, out)
    again, _, _ = _run(["test_after", "test_count", "test_slow"], tiny_pool, out, sets=["test_mean.scale=0.5"])
    computed = {n: s.computed for n, s in again.items()}
    assert computed == {"pool": 0, "test_mean": 4, "test_after": 4, "test_count": 1, "test_slow": 0}
    # and the maps on disk follow the new parameter
    m = np.asarray(__import__("PIL.Image").Image.open(out / "test_mean" / "img0.png"), dtype=float) / 255
    img = np.asarray(__import__("PIL.Image").Image.open(tiny_pool / "img0.png"), dtype=float)
    np.testing.assert_allclose(m, np.clip(img.mean(axis=2) / 255 * 0.5, 0, 1), atol=1 / 255 + 1e-6)


def test_reverting_a_parameter_restores_the_cached_map_png(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_mean"], tiny_pool, out)
    original = (out / "test_mean" / "img1.png").read_bytes()
    _run(["test_mean"], tiny_pool, out, sets=["test_mean.scale=0.3"])
    assert (out / "test_mean" / "img1.png").read_bytes() != original
    reverted, _, _ = _run(["test_mean"], tiny_pool, out)
    assert reverted["test_mean"].computed == 0
    assert (out / "test_mean" / "img1.png").read_bytes() == original


def test_force_recomputes_one_stage_only(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_after"], tiny_pool, out)
    forced, _, _ = _run(["test_after"], tiny_pool, out, force=("test_mean",))
    assert {n: s.computed for n, s in forced.items()} == {"pool": 0, "test_mean": 4, "test_after": 0}


def test_failing_item_is_reported_and_the_rest_goes_on(tiny_pool, tmp_path):
    stages, lines, report = _run(["test_slow"], tiny_pool, tmp_path / "out", sets=["test_slow.fail_on=24"])
    assert stages["test_slow"].failed == 1 and stages["test_slow"].computed == 3
    assert any("test_slow failed on img1: refusing images of height 24" in line for line in lines)
    assert report.succeeded
    assert sorted(p.name for p in (tmp_path / "out" / "test_slow").glob("*.png")) == ["img0.png", "img2.png", "img3.png"]


def test_parallel_run_equals_serial_run(tiny_pool, tmp_path):
    _run(["test_after", "test_batch"], tiny_pool, tmp_path / "a", jobs=1)
    _run(["test_after", "test_batch"], tiny_pool, tmp_path / "b", jobs=2)
    for stage in ("test_after", "test_batch"):
        for png in (tmp_path / "a" / stage).glob("*.png"):
            assert png.read_bytes() == (tmp_path / "b" / stage / png.name).read_bytes()


def test_batched_stage_gets_every_item(tiny_pool, tmp_path):
    stages, _, _ = _run(["test_batch"], tiny_pool, tmp_path / "out")
    assert stages["test_batch"].computed == 4
    assert len(list((tmp_path / "out" / "test_batch").glob("*.png"))) == 4


def test_unknown_stage_and_missing_pool_are_clear_errors(tiny_pool, tmp_path):
    with pytest.raises(RunError, match="unknown stage 'nope'"):
        _run(["nope"], tiny_pool, tmp_path / "out")
    with pytest.raises(RunError, match="does not exist"):
        _run(["test_mean"], tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="holds no images"):
        _run(["test_mean"], tmp_path / "empty", tmp_path / "out")
    with pytest.raises(RunError, match="needs --priors"):
        _run(["priors"], tiny_pool, tmp_path / "out")


def test_run_summary_is_written(tiny_pool, tmp_path):
    _run(["test_mean"], tiny_pool, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["pool", "test_mean"]
    assert summary["params"]["test_mean"] == {"scale": 1.0}


def test_dask_scheduler_runs_the_same_graph(tiny_pool, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None, protocol="tcp://", host="127.0.0.1"
    ) as cluster:
        stages, _, _ = _run(["test_after", "test_count"], tiny_pool, tmp_path / "dask",
                            scheduler=f"dask://{cluster.scheduler_address}")
    assert stages["test_after"].computed == 4 and stages["test_count"].computed == 1  # a pool stage: one task
    _run(["test_after", "test_count"], tiny_pool, tmp_path / "loky")
    for png in (tmp_path / "loky" / "test_after").glob("*.png"):
        assert png.read_bytes() == (tmp_path / "dask" / "test_after" / png.name).read_bytes()


def test_any_map_stage_can_be_named_as_the_prior_of_a_promoter(tiny_pool, tmp_path):
    stages, _, _ = _run(["test_promote"], tiny_pool, tmp_path / "a")
    assert "test_mean" in stages and "test_slow" not in stages
    stages, _, _ = _run(["test_promote"], tiny_pool, tmp_path / "a", sets=["test_promote.prior=test_slow"])
    assert stages["test_slow"].computed == 4 and stages["test_promote"].computed == 4
    with pytest.raises(RunError, match="expected a map-producing stage"):
        _run(["test_promote"], tiny_pool, tmp_path / "a", sets=["test_promote.prior=test_count"])
    with pytest.raises(RunError, match="unknown stage 'nosuch'"):
        _run(["test_promote"], tiny_pool, tmp_path / "a", sets=["test_promote.prior=nosuch"])


def test_pair_stage_runs_over_the_pairs_of_its_source_table(tiny_pool, tmp_path):
    stages, _, _ = _run(["test_pair_diff"], tiny_pool, tmp_path / "out")
    assert stages["test_pair_table"].computed == 1 and stages["test_pair_diff"].computed == 8  # 4 images x 2
    from pipeline.cache import Cache

    cache = Cache(tmp_path / "out")
    seen = set()
    for path in (cache.root / "test_pair_diff").glob("*.npz"):
        art = dict(np.load(path))
        a, b = str(art["target"]), str(art["other"])
        seen.add((a, b))
        # each pair's result was computed from its own two images, not from another pair's
        ma = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "out" / "test_mean" / f"{a}.png"), float)
        mb = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "out" / "test_mean" / f"{b}.png"), float)
        assert abs(float(art["diff"]) - (ma.mean() - mb.mean()) / 255) < 2 / 255
    stems = [f"img{i}" for i in range(4)]
    assert seen == {(stems[i], stems[(i + k) % 4]) for i in range(4) for k in (1, 2)}
    again, _, report = _run(["test_pair_diff"], tiny_pool, tmp_path / "out")
    assert report.computed == 0 and again["test_pair_diff"].cached == 8


def test_a_stage_module_that_cannot_be_imported_is_named(monkeypatch):
    from pipeline import registry

    with pytest.raises(registry.StageLoadError, match="cannot import stage module 'tests.pipeline.nope'"):
        registry.load_plugins("tests.pipeline.nope")


def test_old_stage_name_works_with_a_notice(tiny_pool, tmp_path):
    stages, lines, _ = _run(["slic500"], tiny_pool, tmp_path / "out", sets=["slic500.n_segments=4"])
    assert stages["slic"].computed == 4
    # the runner's own notice (--set on an old name gives one too, from the configuration)
    assert "notice: stage slic500 is now called slic; the old name will be removed in the next release" in lines


def test_an_unstored_stage_keeps_a_marker_and_its_consumers_recompute_it(tiny_pool, tmp_path):
    from pipeline.cache import Cache

    out = tmp_path / "out"
    names = ["test_uses_unstored", "test_pool_of_unstored"]
    stages, _, _ = _run(names, tiny_pool, out)
    assert stages["test_unstored"].computed == 4 and stages["test_uses_unstored"].computed == 4
    cache = Cache(out)
    markers = list((cache.root / "test_unstored").glob("*.npz"))
    assert len(markers) == 4 and all(set(np.load(m).files) == {"__unstored__"} for m in markers)
    # The consumers got the real arrays: the map is the image's mean colour, the sums the image sums.
    from PIL import Image

    for i in range(4):
        img = np.asarray(Image.open(tiny_pool / f"img{i}.png"), np.float32) / 255.0
        got = np.asarray(Image.open(out / "test_uses_unstored" / f"img{i}.png"), np.float32) / 255.0
        assert np.abs(got - img.mean(axis=2)).max() <= 1 / 255 + 1e-6
    sums = next((cache.root / "test_pool_of_unstored").glob("*.npz"))
    expected = [(np.asarray(Image.open(tiny_pool / f"img{i}.png"), np.float32) / 255.0).sum() for i in range(4)]
    np.testing.assert_allclose(np.load(sums)["sums"], expected, rtol=1e-5)
    again, _, report = _run(names, tiny_pool, out)
    assert report.computed == 0 and again["test_unstored"].cached == 4
    # A changed parameter of the unstored stage reaches its consumers through the keys.
    changed, _, _ = _run(names, tiny_pool, out, sets=["test_unstored.offset=0.5"])
    assert changed["test_uses_unstored"].computed == 4 and changed["test_pool_of_unstored"].computed == 1
    # A failing item is reported once, by the stage itself, and its dependants are skipped.
    failing, lines, _ = _run(names, tiny_pool, tmp_path / "o2", sets=["test_unstored.fail_on=24"])
    assert failing["test_unstored"].failed == 1 and failing["test_uses_unstored"].skipped == 1
    assert sum("refusing images of height 24" in line for line in lines) == 1


def test_a_deleted_map_png_is_rewritten_from_the_cache_on_a_cached_run(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_mean"], tiny_pool, out)
    png = out / "test_mean" / "img2.png"
    original = png.read_bytes()
    png.unlink()
    again, _, report = _run(["test_mean"], tiny_pool, out)
    assert report.computed == 0 and again["test_mean"].cached == 4  # nothing computed ...
    assert png.read_bytes() == original  # ... and the PNG is back, byte for byte


def test_each_batched_result_belongs_to_its_own_item(tiny_pool, tmp_path):
    # test_batch maps each image to its green channel; the pool's images all differ (and so do
    # their sizes), and a batch holds 3 items, so a result paired with another item shows.
    from PIL import Image

    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        stages, _, _ = _run(["test_batch"], tiny_pool, out, jobs=jobs)
        assert stages["test_batch"].computed == 4
        for i in range(4):
            image = np.asarray(Image.open(tiny_pool / f"img{i}.png"))
            got = np.asarray(Image.open(out / "test_batch" / f"img{i}.png"))
            assert got.shape == image.shape[:2], (jobs, i)
            np.testing.assert_array_equal(got, image[..., 1], err_msg=f"jobs={jobs} img{i}")


def test_a_failure_leaves_its_traceback_in_the_error_log(tiny_pool, tmp_path):
    _run(["test_slow"], tiny_pool, tmp_path / "out", sets=["test_slow.fail_on=24"])
    log = (tmp_path / "out" / "errors.log").read_text()
    assert log.startswith("--- test_slow img1\nTraceback (most recent call last):")
    assert "ValueError: refusing images of height 24" in log


def test_when_every_item_fails_the_report_says_why(tmp_path):
    from PIL import Image

    pool = tmp_path / "pool"
    pool.mkdir()
    Image.fromarray(np.zeros((24, 10, 3), np.uint8)).save(pool / "only.png")
    _, _, report = _run(["test_slow"], pool, tmp_path / "out", sets=["test_slow.fail_on=24"])
    assert not report.succeeded
    assert report.failure_reason() == "nothing could be done: test_slow: 1 failed of 1"


def test_the_report_table_has_one_aligned_row_per_stage(tiny_pool, tmp_path):
    _, _, report = _run(["test_mean"], tiny_pool, tmp_path / "out")
    lines = report.table().splitlines()
    assert lines[0].split() == ["stage", "items", "computed", "cached", "failed", "skipped", "seconds"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert [line.split()[:3] for line in lines[2:]] == [["pool", "4", "4"], ["test_mean", "4", "4"]]
    assert len({len(line) for line in lines}) == 1


def test_a_cached_run_leaves_up_to_date_map_pngs_untouched(tiny_pool, tmp_path):
    import os

    out = tmp_path / "out"
    _run(["test_mean"], tiny_pool, out)
    png = out / "test_mean" / "img0.png"
    os.utime(png, ns=(0, 0))  # a rewrite would give it a new modification time
    _run(["test_mean"], tiny_pool, out)
    assert png.stat().st_mtime_ns == 0


def test_bad_run_options_and_cycles_are_clear_errors(tiny_pool, tmp_path):
    with pytest.raises(RunError) as err:
        _run(["test_mean"], tiny_pool, tmp_path / "out", scheduler="threads")
    assert str(err.value) == "--scheduler: expected 'loky' or 'dask://HOST:PORT', got 'threads'"
    with pytest.raises(RunError, match=r"^gt folder \S+ does not exist$"):
        _run(["test_mean"], tiny_pool, tmp_path / "out", gt=tmp_path / "no_gt")
    with pytest.raises(RunError) as err:
        _run(["test_promote"], tiny_pool, tmp_path / "out", sets=["test_promote.prior=test_promote"])
    assert str(err.value) == "stage dependency cycle: test_promote -> test_promote"
