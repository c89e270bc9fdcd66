"""The runner's rules, one claim per test: the map contract, batching, workers, devices, threads,
which stages a run holds, models and path parameters in the keys, labels in messages.

The helper stages are in ``tests/pipeline/plugin_stages.py`` (worker processes import them too).
"""

import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import models, registry
from pipeline.cache import Cache
from pipeline.config import build_params
from pipeline.registry import NoParams, Resources, Stage
from pipeline.runner import RunError, Runner, RunOptions, _check_map, _limit_threads, _resolve_device, resolve_stages
from tests.pipeline.conftest import run_stages, square_pool
from tests.pipeline.plugin_stages import MeanParams

ALIAS_NOTICE = "stage slic500 is now called slic; the old name will be removed in the next release"


def _artifacts(out, stage):
    return [dict(np.load(p)) for p in sorted((Cache(out).root / stage).glob("*.npz"))]


# ---- the map contract


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 2), np.int32), r"^stage s: map must be a 2-D float array, got int32 \(2, 2\)$"),
    (np.zeros((2, 2), bool), r"^stage s: map must be a 2-D float array, got bool \(2, 2\)$"),
    (np.zeros((2, 2, 1), np.float32), r"^stage s: map must be a 2-D float array, got float32 \(2, 2, 1\)$"),
    (np.zeros(4, np.float32), "map must be a 2-D float array"),
    (np.array([[0.5, 1.5]], np.float32), r"^stage s: map values must be finite and in \[0, 1\]$"),
    (np.array([[0.5, 1.001]]), r"must be finite and in \[0, 1\]"),
    (np.array([[-0.001, 0.5]]), r"must be finite and in \[0, 1\]"),
    (np.array([[np.nan, 0.5]]), r"must be finite and in \[0, 1\]"),
    (np.array([[np.inf, 0.5]]), r"must be finite and in \[0, 1\]"),
])
def test_a_map_outside_the_contract_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        _check_map({"map": bad}, "s")


def test_a_map_on_the_bounds_of_the_contract_is_accepted():
    for dtype in (np.float16, np.float32, np.float64):
        _check_map({"map": np.array([[0.0, 1.0], [0.25, 0.75]], dtype)}, "s")  # no error


@pytest.mark.parametrize("kind, error", [
    ("list", "TypeError: stage test_bad_output returned list, expected a dict of arrays"),
    ("int_map", "stage test_bad_output: map must be a 2-D float array, got int32 (24, 24)"),
    ("cube", "stage test_bad_output: map must be a 2-D float array, got float32 (24, 24, 2)"),
    ("above_one", "stage test_bad_output: map values must be finite and in [0, 1]"),
    ("negative", "stage test_bad_output: map values must be finite and in [0, 1]"),
    ("nan", "stage test_bad_output: map values must be finite and in [0, 1]"),
    ("no_map", "stage test_bad_output is declared produces_map but returned no 'map'"),
])
def test_a_result_outside_the_contract_fails_its_item_only(tiny_pool, tmp_path, kind, error):
    out = tmp_path / "out"
    stages, lines, report = run_stages(["test_bad_output"], out, [f"test_bad_output.kind={kind}"], pool=tiny_pool)
    rep = stages["test_bad_output"]
    assert (rep.total, rep.computed, rep.failed, rep.skipped) == (4, 3, 1, 0)
    assert f"warning: test_bad_output failed on img1: {error}" in lines
    assert sorted(p.name for p in (out / "test_bad_output").glob("*.png")) == ["img0.png", "img2.png", "img3.png"]
    assert report.succeeded
    log = (out / "errors.log").read_text()
    assert log.startswith("--- test_bad_output img1\nTraceback (most recent call last):") and error.split(": ")[-1] in log


# ---- batching


def test_a_batched_stage_gets_its_items_in_batches_of_its_cpu_batch_in_pool_order(tiny_pool, tmp_path):
    out = tmp_path / "out"
    stages, _, _ = run_stages(["test_batch_ctx"], out, pool=tiny_pool)
    assert stages["test_batch_ctx"].computed == 4
    batches = {tuple(str(s) for s in a["batch"]) for a in _artifacts(out, "test_batch_ctx")}
    assert batches == {("img0", "img1", "img2"), ("img3",)}  # cpu_batch = 3


def test_an_unbatched_stage_ignores_a_batch_size_hint(tiny_pool, tmp_path):
    stages, lines, _ = run_stages(["test_grouped_hint"], tmp_path / "out", pool=tiny_pool)
    rep = stages["test_grouped_hint"]
    assert (rep.computed, rep.failed) == (4, 0), lines


# ---- where items are computed


def test_with_several_jobs_items_are_computed_in_worker_processes(tiny_pool, tmp_path):
    cores = os.cpu_count() or 1
    run_stages(["test_pid"], tmp_path / "one", pool=tiny_pool, jobs=1)
    one = _artifacts(tmp_path / "one", "test_pid")
    assert [int(a["pid"]) for a in one] == [os.getpid()] * 4
    assert [int(a["threads"]) for a in one] == [cores] * 4  # one worker: every core
    run_stages(["test_pid"], tmp_path / "two", pool=tiny_pool, jobs=2)
    two = _artifacts(tmp_path / "two", "test_pid")
    pids = [int(a["pid"]) for a in two]
    assert len(pids) == 4 and os.getpid() not in pids
    share = max(1, cores // 2)
    assert [int(a["threads"]) for a in two] == [share] * 4  # the cores shared between the workers
    assert [int(a["cv2_threads"]) for a in two] == [share] * 4  # and OpenCV's pool limited to it


def test_a_worker_that_dies_fails_only_its_own_item(tiny_pool, tmp_path):
    stages, lines, _ = run_stages(["test_slow"], tmp_path / "out", ["test_slow.crash_on=24"], pool=tiny_pool, jobs=2)
    rep = stages["test_slow"]
    assert (rep.computed, rep.failed) == (3, 1)
    assert [line for line in lines if "failed on" in line] == [
        "warning: test_slow failed on img1: the worker process died while computing this item"]
    # the items computed again one by one after the crash got their worker's share of the cores too
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert [int(a["threads"]) for a in _artifacts(tmp_path / "out", "test_slow")] == [expected] * 3
    assert sorted(p.name for p in (tmp_path / "out" / "test_slow").glob("*.png")) == ["img0.png", "img2.png", "img3.png"]


def test_workers_follow_jobs_the_stage_limit_the_task_count_and_the_device(tmp_path):
    params, _ = build_params(None, [])
    mean = registry.get("test_mean")
    runner = Runner(params, RunOptions(out=tmp_path, jobs=3, progress=False))
    assert runner._workers(mean, 10) == (3, False)
    assert runner._workers(mean, 2) == (2, False)
    assert runner._workers(mean, 1) == (1, True)  # one task: computed in the main process
    assert runner._workers(mean, 0) == (1, True)
    capped = Stage("capped", "1", ("pool",), NoParams, "image", mean.func, resources=Resources(max_workers=2))
    assert runner._workers(capped, 10) == (2, False)
    gpu = Stage("gpu", "1", ("pool",), NoParams, "image", mean.func, resources=Resources(wants_gpu=True))
    assert runner._workers(gpu, 10) == (3, False)  # on the CPU a GPU stage is like any other
    runner.device = "cuda"
    assert runner._workers(gpu, 10) == (1, True)  # one process owns the device
    assert runner._workers(mean, 10) == (3, False)
    one_job = Runner(params, RunOptions(out=tmp_path, jobs=1))
    assert one_job._workers(mean, 10) == (1, True) and one_job._workers(capped, 10) == (1, True)
    dask = Runner(params, RunOptions(out=tmp_path, jobs=3, scheduler="dask://127.0.0.1:1"))
    assert dask._workers(mean, 1) == (3, False) and dask._workers(mean, 10) == (3, False)
    dask_one = Runner(params, RunOptions(out=tmp_path, jobs=1, scheduler="dask://127.0.0.1:1"))
    assert dask_one._workers(mean, 10) == (1, False)  # on the cluster, never in this process


# ---- devices and threads


def test_device_resolution():
    import torch

    assert _resolve_device("cpu", True) == "cpu"
    assert _resolve_device("cpu", False) == "cpu"
    assert _resolve_device("auto", False) == "cpu"  # no stage wants the GPU
    if torch.cuda.is_available():  # pragma: no cover (CUDA machines)
        assert _resolve_device("auto", True) == "cuda"
        assert _resolve_device("cuda:0", True) == "cuda:0"
    else:
        assert _resolve_device("auto", True) == "cpu"
        for requested in ("cuda", "cuda:1"):
            with pytest.raises(RunError) as err:
                _resolve_device(requested, True)
            assert str(err.value) == (f"--device {requested}: CUDA is not available in this torch build "
                                      f"({torch.__version__}); see the README for a CUDA build, or use --device cpu")
    for bad in ("gpu", "CPU", ""):
        with pytest.raises(RunError) as err:
            _resolve_device(bad, False)
        assert str(err.value) == f"--device: expected auto, cpu or cuda, got {bad!r}"


def test_device_resolution_on_a_cuda_machine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _resolve_device("auto", True) == "cuda"
    assert _resolve_device("cuda:1", True) == "cuda:1"
    assert _resolve_device("cuda", False) == "cuda"  # asked for by name: used even if no stage wants it
    assert _resolve_device("auto", False) == "cpu"   # no stage wants the GPU
    assert _resolve_device("cpu", True) == "cpu"


def test_device_resolution_without_torch(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert _resolve_device("auto", True) == "cpu"
    with pytest.raises(RunError) as err:
        _resolve_device("cuda", True)
    assert str(err.value) == "--device cuda: torch is not installed"


def test_a_worker_limits_every_thread_pool_to_its_share(monkeypatch):
    import cv2
    import numba
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from pipeline import runner

    before = torch.get_num_threads(), cv2.getNumThreads(), numba.get_num_threads(), threadpool_info()
    monkeypatch.setattr(runner, "_WORKER_THREADS", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # restored after the test
    try:
        for threads in (1, 2):
            _limit_threads(threads)
            assert os.environ["OMP_NUM_THREADS"] == str(threads)
            assert torch.get_num_threads() == threads
            assert cv2.getNumThreads() == threads
            assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            assert blas and all(n == threads for n in blas)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
        numba.set_num_threads(before[2])
        threadpool_limits(limits=before[3])


# ---- which stages a run holds


def _resolve(names, sets=(), **options):
    params, _ = build_params(None, list(sets))
    return resolve_stages(names, params, RunOptions(progress=False, **options))


def test_named_stages_bring_exactly_their_inputs():
    assert _resolve(["test_after"]) == (["pool", "test_mean", "test_after"], ["test_after"], [])
    assert _resolve(["test_count", "test_mean"]) == (["pool", "test_mean", "test_count"], ["test_count", "test_mean"], [])


def test_all_holds_every_stage_but_the_trainers_and_those_missing_their_run_input(tmp_path):
    stages = registry.all_stages()
    trainers = {s.learned.trainer for s in stages.values() if s.learned is not None}
    needs = {n: s.run_input for n, s in stages.items() if s.run_input}
    assert trainers and "gt" in needs.values() and "priors" in needs.values()
    for names in ("all", ["all"]):
        order, wanted, notices = _resolve(names)
        assert set(order) == set(stages) - trainers - set(needs)
        assert wanted == order  # nothing was pulled in only as an input
        assert notices == [f"stage {n} left out: it needs --{r} DIR" for n, r in needs.items() if n not in trainers]
    order, wanted, notices = _resolve("all", gt=tmp_path, priors=tmp_path)
    assert set(order) == set(stages) - trainers and notices == []


def test_all_with_a_model_trained_in_the_run_pulls_in_its_trainer_as_an_input(tmp_path):
    order, wanted, _ = _resolve("all", ["test_colour.model=train"], gt=tmp_path)
    assert order.index("gt") < order.index("test_colour_fit") < order.index("test_colour")
    assert "test_colour_fit" not in wanted and "test_colour" in wanted
    assert wanted == [n for n in order if n != "test_colour_fit"]


def test_a_run_input_is_needed_only_when_it_is_absent(tmp_path):
    order, wanted, _ = _resolve(["priors"], priors=tmp_path)
    assert wanted == ["priors"] and order[-1] == "priors"
    with pytest.raises(RunError) as err:
        _resolve(["priors"])
    assert str(err.value) == "stage priors needs --priors DIR"
    with pytest.raises(RunError) as err:
        _resolve(["test_colour_fit"])
    assert str(err.value) == "stage gt needs --gt DIR (needed by test_colour_fit)"


def test_an_old_stage_name_resolves_to_the_new_one_with_one_notice():
    order, wanted, notices = _resolve(["slic500"])
    assert wanted == ["slic"] and order[-1] == "slic" and "slic500" not in order
    assert notices == [ALIAS_NOTICE]


def test_the_run_echoes_the_alias_notice_itself(tiny_pool, tmp_path):
    _, lines, _ = run_stages(["slic500"], tmp_path / "out", ["slic.n_segments=4"], pool=tiny_pool)
    assert lines.count(f"notice: {ALIAS_NOTICE}") == 1


# ---- models and path parameters


def test_a_model_trained_in_the_run_is_applied_and_a_failed_training_skips_every_item(tmp_path):
    images, gt = square_pool(tmp_path / "p", seed=3)
    stages, _, _ = run_stages(["test_colour"], tmp_path / "out", ["test_colour.model=train"], pool=images, gt=gt)
    assert stages["test_colour_fit"].computed == 1 and stages["test_colour"].computed == 4
    assert len(list((tmp_path / "out" / "test_colour").glob("*.png"))) == 4
    key = json.loads((tmp_path / "out" / "run_summary.json").read_text())["pool_keys"]["test_colour_fit"]
    for art in _artifacts(tmp_path / "out", "test_colour"):  # the trainer's result, named as such
        assert (str(art["model_source"]), str(art["model_name"]), str(art["model_digest"])) == ("train", "train", key)
    stages, _, _ = run_stages(["test_colour"], tmp_path / "out2", ["test_colour.model=train", "test_colour_fit.pixels=0"],
                              pool=images, gt=gt)
    assert stages["test_colour_fit"].failed == 1
    rep = stages["test_colour"]
    assert (rep.total, rep.skipped, rep.computed, rep.failed) == (4, 4, 0, 0)


def test_a_missing_model_of_a_stage_a_named_stage_needs_is_an_error(tiny_pool, tmp_path):
    sets = ["test_promote.prior=test_colour", "test_colour.model=nosuch.npz"]
    with pytest.raises(RunError) as err:
        run_stages(["test_promote"], tmp_path / "out", sets, pool=tiny_pool)
    assert str(err.value).startswith("test_colour.model = 'nosuch.npz': expected 'train', a model file or a shipped")
    assert "\n" not in str(err.value)


def test_the_bytes_of_a_path_parameter_are_part_of_the_key(tiny_pool, tmp_path):
    out, table = tmp_path / "out", tmp_path / "table.bin"
    table.write_bytes(b"x" * 10)
    names = ["test_path_image", "test_path_pair", "test_path_pool"]
    sets = [f"{n}.table={table}" for n in names]
    first, _, _ = run_stages(names, out, sets, pool=tiny_pool)
    assert first["test_path_image"].computed == 4 and first["test_path_pair"].computed == 8
    assert first["test_path_pool"].computed == 1
    _, _, again = run_stages(names, out, sets, pool=tiny_pool)
    assert again.computed == 0
    table.write_bytes(b"x" * 20)  # the same path, other bytes
    changed, _, _ = run_stages(names, out, sets, pool=tiny_pool)
    computed = {n: s.computed for n, s in changed.items()}
    assert computed == {"pool": 0, "test_mean": 0, "test_pair_table": 0, "test_path_image": 4, "test_path_pair": 8,
                        "test_path_pool": 1}
    for stage in ("test_path_pair", "test_path_pool"):
        assert sorted({round(float(a["value"]), 6) for a in _artifacts(out, stage)}) == [0.1, 0.2]
    mean = np.asarray(Image.open(out / "test_mean" / "img0.png"), np.float64) / 255
    got = np.asarray(Image.open(out / "test_path_image" / "img0.png"), np.float64) / 255
    np.testing.assert_allclose(got, np.clip(mean + 0.2, 0, 1), atol=1.5 / 255)


def test_a_path_parameter_that_cannot_be_read_is_one_error_before_anything_runs(tiny_pool, tmp_path, monkeypatch):
    table = tmp_path / "table.bin"
    table.write_bytes(b"x")

    def unreadable(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(models, "cached_file_digest", unreadable)
    with pytest.raises(RunError) as err:
        run_stages(["test_path_image"], tmp_path / "out", [f"test_path_image.table={table}"], pool=tiny_pool)
    assert str(err.value) == f"test_path_image.table = {str(table)!r}: cannot be read (Permission denied)"
    assert not (tmp_path / "out" / "test_mean").exists()


# ---- labels, logs and the summary


def test_a_failed_pool_stage_is_named_pool_in_the_messages_and_the_log(tiny_pool, tmp_path):
    out = tmp_path / "out"
    stages, lines, _ = run_stages(["test_pool_fail"], out, pool=tiny_pool)
    assert stages["test_pool_fail"].failed == 1
    assert "warning: test_pool_fail failed on pool: this pool stage always fails" in lines
    assert (out / "errors.log").read_text().startswith("--- test_pool_fail pool\nTraceback")


def test_the_run_summary_is_indented_for_people_and_names_the_pool_keys(tiny_pool, tmp_path):
    out = tmp_path / "out"
    run_stages(["test_count"], out, pool=tiny_pool)
    text = (out / "run_summary.json").read_text()
    assert text.startswith('{\n  "pool": ')
    summary = json.loads(text)
    assert summary["requested"] == ["test_count"] and summary["device"] == "cpu"
    assert set(summary["pool_keys"]) == {"test_count"}
    assert (Cache(out).root / "test_count" / f"{summary['pool_keys']['test_count']}.npz").is_file()


# ---- write errors


def _failing_png_writer(monkeypatch, code):
    from pipeline import runner

    real = runner.save_map_png

    def save(path, m):
        if os.path.basename(path) == "img1.png":
            raise OSError(code, os.strerror(code), path)
        return real(path, m)

    monkeypatch.setattr(runner, "save_map_png", save)


def test_an_item_whose_map_cannot_be_written_fails_alone(tiny_pool, tmp_path, monkeypatch):
    _failing_png_writer(monkeypatch, errno.ENAMETOOLONG)  # a problem of this file, not of the folder
    stages, lines, report = run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool)
    rep = stages["test_mean"]
    assert (rep.computed, rep.failed) == (3, 1)
    assert [line for line in lines if "failed on" in line] == [
        f"warning: test_mean failed on img1: OSError: [Errno {errno.ENAMETOOLONG}] {os.strerror(errno.ENAMETOOLONG)}: "
        f"'{tmp_path / 'out' / 'test_mean' / 'img1.png'}'"]
    assert report.succeeded
    log = (tmp_path / "out" / "errors.log").read_text()
    assert log.startswith("--- test_mean img1\nTraceback (most recent call last):") and "OSError: [Errno" in log


def test_a_full_disk_stops_the_run_with_one_error_and_keeps_what_is_done(tiny_pool, tmp_path, monkeypatch):
    _failing_png_writer(monkeypatch, errno.ENOSPC)
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool)
    assert str(err.value).startswith(f"cannot write to {tmp_path / 'out'} (OSError: [Errno {errno.ENOSPC}] ")
    assert str(err.value).endswith("every finished item is kept: make room or fix the folder's permissions, "
                                   "then run again")
    assert (tmp_path / "out" / "test_mean" / "img0.png").is_file()  # computed before img1


# ---- errors, artifacts, recipes, the table


def test_an_error_is_described_by_its_first_line_and_by_its_type_where_that_says_more():
    from pipeline.runner import _describe_error

    assert _describe_error(ValueError("bad value\nsecond line")) == "bad value"
    assert _describe_error(ValueError()) == "ValueError"  # nothing else to say
    assert _describe_error(FileNotFoundError()) == "FileNotFoundError"
    assert _describe_error(KeyError("x")) == "KeyError: 'x'"  # a bug, not a user error: its type is named
    assert _describe_error(RuntimeError()) == "RuntimeError: "


def test_an_error_without_a_message_is_reported_by_its_type(tiny_pool, tmp_path):
    stages, lines, _ = run_stages(["test_empty_error"], tmp_path / "out", pool=tiny_pool)
    assert stages["test_empty_error"].failed == 4
    assert "warning: test_empty_error failed on img0: ValueError" in lines


def test_a_corrupted_or_vanished_input_artifact_is_named_and_removed(tmp_path):
    from pipeline.runner import CorruptArtifact, _read_artifact

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CorruptArtifact) as err:
        _read_artifact(str(bad))
    assert str(err.value) == f"cache artifact {bad} is corrupted (ValueError); removed: run again to recompute it"
    assert not bad.exists()
    with pytest.raises(CorruptArtifact) as err:
        _read_artifact(str(bad))
    assert str(err.value) == f"cache artifact {bad} disappeared; run again to recompute it"
    good = tmp_path / "good.npz"
    np.savez(good, a=np.arange(3))
    np.testing.assert_array_equal(_read_artifact(str(good))["a"], np.arange(3))


def test_an_unstored_batched_stage_is_recomputed_with_its_own_parameters(tiny_pool, tmp_path):
    out = tmp_path / "out"
    stages, _, _ = run_stages(["test_uses_unstored_batched"], out, ["test_unstored_batched.offset=0.25"], pool=tiny_pool)
    assert stages["test_uses_unstored_batched"].computed == 4
    for i in range(4):
        image = np.asarray(Image.open(tiny_pool / f"img{i}.png"), np.float32) / 255.0
        got = np.asarray(Image.open(out / "test_uses_unstored_batched" / f"img{i}.png"), np.float32) / 255.0
        assert np.abs(got - np.clip(image.mean(axis=2) + 0.25, 0, 1)).max() <= 1 / 255 + 1e-6


def test_a_pair_stage_reads_the_result_of_its_own_pair_from_a_pair_input(tiny_pool, tmp_path):
    out = tmp_path / "out"
    stages, _, _ = run_stages(["test_pair_of_pair"], out, pool=tiny_pool)
    assert stages["test_pair_of_pair"].computed == 8
    diffs = sorted(round(float(a["diff"]), 9) for a in _artifacts(out, "test_pair_diff"))
    doubles = sorted(round(float(a["double"]) / 2, 9) for a in _artifacts(out, "test_pair_of_pair"))
    assert doubles == diffs and len(set(diffs)) > 1


def test_the_report_table_left_aligns_names_and_right_aligns_numbers(tiny_pool, tmp_path):
    import re

    _, _, report = run_stages(["test_count"], tmp_path / "out", pool=tiny_pool)
    lines = report.table().splitlines()
    header = [(m.start(), m.end()) for m in re.finditer(r"\S+", lines[0])]
    for line in lines[2:]:
        cells = [(m.start(), m.end()) for m in re.finditer(r"\S+", line)]
        assert cells[0][0] == header[0][0] == 0
        assert [end for _, end in cells[1:]] == [end for _, end in header[1:]], line


def test_maps_are_cached_as_float16_and_the_png_is_written_from_the_cached_values(tiny_pool, tmp_path):
    out = tmp_path / "out"
    run_stages(["test_mean"], out, ["test_mean.scale=0.7"], pool=tiny_pool)
    arts = _artifacts(out, "test_mean")
    assert len(arts) == 4 and all(a["map"].dtype == np.float16 for a in arts)
    pngs = sorted(np.asarray(Image.open(p)).tobytes() for p in (out / "test_mean").glob("*.png"))
    from_cache = sorted(np.round(a["map"].astype(np.float64) * 255).astype(np.uint8).tobytes() for a in arts)
    assert pngs == from_cache


# ---- the output folder, the lock, the report's verdict


def test_a_second_run_on_the_same_output_folder_is_refused_while_the_first_holds_it(tiny_pool, tmp_path):
    from pipeline.runner import RunLock

    out = tmp_path / "out"
    out.mkdir()
    with RunLock(out):
        with pytest.raises(RunError) as err:
            run_stages(["test_mean"], out, pool=tiny_pool)
    assert str(err.value) == (f"output folder {out} is in use by another run (pid {os.getpid()}); "
                              "wait for it to finish or use another --out")
    stages, _, _ = run_stages(["test_mean"], out, pool=tiny_pool)  # released
    assert stages["test_mean"].computed == 4


def test_an_output_folder_that_cannot_hold_a_cache_is_one_error(tiny_pool, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], blocker / "out", pool=tiny_pool)
    assert str(err.value) == f"output folder {blocker / 'out'}: cannot be created (Not a directory)"
    out = tmp_path / "out"
    out.mkdir()
    (out / ".cache").write_text("not a folder")
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], out, pool=tiny_pool)
    assert str(err.value) == f"cache folder {out / '.cache'} cannot be written (File exists)"


def test_temporary_files_a_killed_run_left_are_removed(tiny_pool, tmp_path):
    out = tmp_path / "out"
    run_stages(["test_mean"], out, pool=tiny_pool)
    leftover = Cache(out).root / "test_mean" / ".abc.npz.123.tmp"
    leftover.write_bytes(b"partial")
    kept = Cache(out).root / "test_mean" / "notes.txt"  # not a temporary file of ours
    kept.write_text("mine")
    run_stages(["test_mean"], out, pool=tiny_pool)
    assert not leftover.exists() and kept.exists()


def test_maps_of_images_that_left_the_pool_are_removed(tiny_pool, tmp_path):
    out = tmp_path / "out"
    run_stages(["test_mean"], out, pool=tiny_pool)
    (tiny_pool / "img3.png").unlink()
    stages, _, report = run_stages(["test_mean"], out, pool=tiny_pool)
    assert stages["test_mean"].total == 3 and stages["test_mean"].cached == 3
    assert sorted(p.name for p in (out / "test_mean").glob("*.png")) == ["img0.png", "img1.png", "img2.png"]
    assert report.map_items["test_mean"] == ["img0", "img1", "img2"]
    assert json.loads((out / "test_mean" / ".keys.json").read_text()).keys() == {"img0", "img1", "img2"}


def test_forcing_a_stage_outside_the_run_is_an_error(tiny_pool, tmp_path):
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool, force=("test_after", "test_mean"))
    assert str(err.value) == "--force test_after: not among the stages of this run (pool, test_mean)"


def test_a_pair_stage_with_no_pairs_had_nothing_to_do(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(2):  # the toy table lists no neighbours (-1) for pools of two images
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(pool / f"p{i}.png")
    stages, _, report = run_stages(["test_pair_diff", "test_fault_pair"], tmp_path / "out", pool=pool)
    assert stages["test_pair_diff"].total == 0 and stages["test_fault_pair"].total == 0
    assert report.failure_reason() == "the requested stages had nothing to do (test_pair_diff, test_fault_pair)"
    assert not report.succeeded


def test_the_verdict_names_failed_and_skipped_items_per_requested_stage():
    from pipeline.runner import RunReport, StageReport

    assert RunReport(requested=("a",)).failure_reason() == "no stage ran"
    a = StageReport("a", total=3, failed=1, skipped=2)
    b = StageReport("b", total=2, skipped=2)
    report = RunReport(stages=[StageReport("pool", total=3, computed=3), a, b], requested=("a", "b"))
    assert report.failure_reason() == ("nothing could be done: a: 1 failed, 2 skipped because an input is missing "
                                       "or failed of 3; b: 2 skipped because an input is missing or failed of 2")
    assert RunReport(stages=[StageReport("a", total=1)], requested=("a",)).failure_reason() == \
        "nothing could be done: a: no item of 1"
    b.cached = 1
    assert report.failure_reason() is None and report.succeeded
    assert report.stage("b") is b and report.stage("zzz") is None and report.computed == 3


def test_prior_maps_without_an_image_are_named_and_images_without_a_prior_are_skipped(tiny_pool, tmp_path):
    priors = tmp_path / "priors"
    priors.mkdir()
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(priors / "img0.png")
    Image.fromarray(np.full((5, 5), 128, np.uint8)).save(priors / "ghost.png")
    stages, lines, _ = run_stages(["priors"], tmp_path / "out", pool=tiny_pool, priors=priors)
    rep = stages["priors"]
    assert (rep.total, rep.computed, rep.skipped) == (4, 1, 3)
    assert f"warning: {priors / 'ghost.png'}: no image with stem 'ghost' in the pool (ignored)" in lines
    assert "warning: priors: no prior file for 'img1' (skipped)" in lines


# ---- pool and pair keys


def _bump_version(monkeypatch, name):
    import dataclasses

    registry.all_stages()
    monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(registry.get(name), version="2"))


def test_bumping_the_version_of_a_pool_or_a_pair_stage_recomputes_it(tiny_pool, tmp_path, monkeypatch):
    out = tmp_path / "out"
    names = ["test_count", "test_pair_diff", "test_after"]
    run_stages(names, out, pool=tiny_pool)
    for name in ("test_count", "test_pair_diff", "test_after"):
        _bump_version(monkeypatch, name)
    again, _, _ = run_stages(names, out, pool=tiny_pool)
    computed = {n: s.computed for n, s in again.items()}
    assert computed == {"pool": 0, "test_mean": 0, "test_pair_table": 0, "test_count": 1, "test_pair_diff": 8,
                        "test_after": 4}


def test_a_pool_stage_recomputes_when_its_items_swap_their_results(tiny_pool, tmp_path):
    out = tmp_path / "out"
    run_stages(["test_count"], out, pool=tiny_pool)
    a, b = tiny_pool / "img0.png", tiny_pool / "img1.png"
    a.rename(tiny_pool / "tmp.png")
    b.rename(a)
    (tiny_pool / "tmp.png").rename(b)  # the same images, each under the other's name
    again, _, _ = run_stages(["test_count"], out, pool=tiny_pool)
    assert again["test_mean"].cached == 4 and again["test_count"].computed == 1
    counts = [x for x in _artifacts(out, "test_count")]
    assert len(counts) == 2 and not np.array_equal(counts[0]["means"], counts[1]["means"])


def test_a_pool_stage_gets_the_pool_item_as_its_context(tiny_pool, tmp_path):
    from pipeline.runner import POOL_ITEM

    run_stages(["test_path_pool"], tmp_path / "out", pool=tiny_pool)
    (art,) = _artifacts(tmp_path / "out", "test_path_pool")
    assert str(art["item"]) == POOL_ITEM and int(art["n"]) == 4


def test_pairs_whose_pair_input_or_image_input_failed_are_skipped_and_the_rest_computed(tiny_pool, tmp_path):
    stages, lines, _ = run_stages(["test_pair_after_fail"], tmp_path / "out", pool=tiny_pool)
    assert stages["test_pair_fail"].failed == 2  # the two pairs of target img1
    assert [line for line in lines if "failed on" in line] == [
        "warning: test_pair_fail failed on img1->img2: refusing pairs of img1",
        "warning: test_pair_fail failed on img1->img3: refusing pairs of img1"]
    rep = stages["test_pair_after_fail"]
    assert (rep.total, rep.computed, rep.skipped, rep.failed) == (8, 6, 2, 0)
    stages, _, _ = run_stages(["test_fault_pair"], tmp_path / "o2", ["test_slow.fail_on=24"], pool=tiny_pool)
    rep = stages["test_fault_pair"]  # img1 is the target of two pairs and the neighbour of two others
    assert (rep.total, rep.computed, rep.skipped, rep.failed) == (8, 4, 4, 0)


def _sums_of_unstored_neighbours(inputs, neighbours, params, ctx):
    sums = [params.scale * nb["test_unstored"]["big"].sum() for nb in neighbours]
    return {"stem": np.array(ctx.item), "sums": np.array(sums)}


def test_an_image_stage_reads_an_unstored_stage_of_its_neighbours(tiny_pool, tmp_path, monkeypatch):
    from pipeline.registry import NeighbourInputs

    registry.all_stages()
    monkeypatch.setitem(registry._REGISTRY, "test_unstored_neighbours", Stage(
        "test_unstored_neighbours", "1", ("pool",), MeanParams, "image", _sums_of_unstored_neighbours, doc="test",
        neighbour_inputs=NeighbourInputs("test_pair_table", ("test_unstored",))))
    out = tmp_path / "out"
    sets = ["test_unstored.offset=0.5", "test_unstored_neighbours.scale=2"]
    stages, _, _ = run_stages(["test_unstored_neighbours"], out, sets, pool=tiny_pool)
    assert stages["test_unstored_neighbours"].computed == 4
    sums = [2 * (np.asarray(Image.open(tiny_pool / f"img{i}.png"), np.float32) / 255.0 + 0.5).sum() for i in range(4)]
    for art in _artifacts(out, "test_unstored_neighbours"):
        i = int(str(art["stem"])[3:])
        np.testing.assert_allclose(art["sums"], [sums[(i + 1) % 4], sums[(i + 2) % 4]], rtol=1e-5)


def test_a_batched_stage_that_returns_too_few_results_fails_its_batch(tiny_pool, tmp_path):
    stages, lines, _ = run_stages(["test_batch_short"], tmp_path / "out", pool=tiny_pool)
    rep = stages["test_batch_short"]  # batches (img0, img1, img2) and (img3): one result is enough for the last
    assert (rep.failed, rep.computed) == (3, 1)
    assert [line for line in lines if "failed on" in line] == [
        f"warning: test_batch_short failed on img{i}: RuntimeError: stage returned 1 results for 3 items"
        for i in range(3)]


def test_warnings_of_a_stage_become_notices_whether_it_succeeds_or_fails(tiny_pool, tmp_path):
    _, lines, _ = run_stages(["test_warn"], tmp_path / "a", pool=tiny_pool)
    assert [line for line in lines if line.startswith("notice: test_warn")] == [
        f"notice: test_warn: img{i} looks odd" for i in range(4)]
    stages, lines, _ = run_stages(["test_warn"], tmp_path / "b", ["test_warn.fail=true"], pool=tiny_pool)
    assert stages["test_warn"].failed == 4
    assert "notice: test_warn: img2 looks odd" in lines and "warning: test_warn failed on img2: and fails" in lines


def test_the_run_summary_names_the_pool_the_problems_and_the_models(tmp_path):
    images, gt = square_pool(tmp_path / "p", seed=4)
    run_stages(["test_colour_fit"], tmp_path / "train", pool=images, gt=gt)
    key = json.loads((tmp_path / "train" / "run_summary.json").read_text())["pool_keys"]["test_colour_fit"]
    model = tmp_path / "colour.npz"
    shutil.copy(Cache(tmp_path / "train").path("test_colour_fit", key), model)
    priors = tmp_path / "priors"
    priors.mkdir()
    Image.fromarray(np.full((5, 5), 9, np.uint8)).save(priors / "ghost.png")
    out = tmp_path / "out"
    _, _, report = run_stages(["test_colour"], out, [f"test_colour.model={model}"], pool=images, priors=priors)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["pool"] == str(images)
    assert summary["problems"] == report.problems == [
        f"{priors / 'ghost.png'}: no image with stem 'ghost' in the pool (ignored)"]
    ref = summary["models"]["test_colour"]
    assert ref["source"] == "file" and ref["path"] == str(model) and ref["digest"] == models.cached_file_digest(model)


def test_progress_bars_name_each_stage_count_items_and_stay(tiny_pool, tmp_path, capsys):
    from pipeline.runner import run

    params, _ = build_params(None, [])
    out = tmp_path / "out"
    opts = RunOptions(out=out, pool=tiny_pool, jobs=1, progress=True, echo=lambda line: None)
    run(["test_mean", "test_count"], params, opts)
    err = capsys.readouterr().err
    segments = [s for s in re.split(r"[\r\n]", err) if s.strip()]
    assert any(s.startswith("     test_mean: 100%") and "4/4" in s and "item/s" in s for s in segments), err
    assert any(s.startswith("    test_count: 100%") and "1/1" in s for s in segments), err  # one item: a bar too
    assert segments[-1].startswith("    test_count: 100%")  # the last bar is left on screen, not cleared
    run(["test_mean", "test_count"], params, opts)  # everything cached: nothing to show
    assert "test_mean:" not in capsys.readouterr().err


def _colour_model(tmp_path, seed):
    """A trained toy colour model file, and the pool it was trained on."""
    images, gt = square_pool(tmp_path / f"p{seed}", seed=seed)
    out = tmp_path / f"train{seed}"
    run_stages(["test_colour_fit"], out, [f"test_colour_fit.seed={seed}"], pool=images, gt=gt)
    key = json.loads((out / "run_summary.json").read_text())["pool_keys"]["test_colour_fit"]
    model = tmp_path / f"colour{seed}.npz"
    shutil.copy(Cache(out).path("test_colour_fit", key), model)
    return model, images


def test_a_model_enters_the_keys_by_its_bytes_not_by_its_name(tmp_path):
    model, images = _colour_model(tmp_path, 1)
    other, _ = _colour_model(tmp_path, 2)
    out, names = tmp_path / "out", ["test_after_colour"]
    first, _, _ = run_stages(names, out, [f"test_colour.model={model}"], pool=images)
    assert first["test_colour"].computed == 4
    copy = tmp_path / "same_bytes_other_name.npz"
    shutil.copy(model, copy)
    same, _, report = run_stages(names, out, [f"test_colour.model={copy}"], pool=images)
    assert report.computed == 0  # the same model under another name: nothing to recompute
    changed, _, _ = run_stages(names, out, [f"test_colour.model={other}"], pool=images)
    computed = {n: s.computed for n, s in changed.items()}
    assert computed == {"pool": 0, "test_colour": 4, "test_after_colour": 4}  # exactly the model's dependants


def test_a_learned_pool_stage_without_its_model_skips_its_one_item(tmp_path, monkeypatch):
    from pipeline.registry import ModelSlot
    from tests.pipeline.plugin_stages import ColourParams

    images, gt = square_pool(tmp_path / "p", seed=5)
    registry.all_stages()
    monkeypatch.setitem(registry._REGISTRY, "test_colour_pool", Stage(
        "test_colour_pool", "1", ("pool",), ColourParams, "pool", lambda inputs, params, ctx: {"n": np.int64(1)},
        doc="test", learned=ModelSlot(trainer="test_colour_fit")))
    stages, _, _ = run_stages(["test_colour_pool"], tmp_path / "out",
                              ["test_colour_pool.model=train", "test_colour_fit.pixels=0"], pool=images, gt=gt)
    rep = stages["test_colour_pool"]
    assert (rep.total, rep.skipped, rep.computed) == (1, 1, 0)


def test_the_run_device_reaches_every_item(tiny_pool, tmp_path, monkeypatch):
    from pipeline import runner

    monkeypatch.setattr(runner, "_resolve_device", lambda requested, needed: "cuda")  # no GPU needed: it is only read
    run_stages(["test_pid"], tmp_path / "out", pool=tiny_pool)
    assert [str(a["device"]) for a in _artifacts(tmp_path / "out", "test_pid")] == ["cuda"] * 4


def test_an_image_without_neighbours_gets_an_empty_list(tmp_path, monkeypatch):
    from pipeline.registry import NeighbourInputs

    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(2):  # the toy table lists no neighbours (-1) for pools of two images
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(pool / f"p{i}.png")
    registry.all_stages()
    monkeypatch.setitem(registry._REGISTRY, "test_unstored_neighbours", Stage(
        "test_unstored_neighbours", "1", ("pool",), MeanParams, "image", _sums_of_unstored_neighbours, doc="test",
        neighbour_inputs=NeighbourInputs("test_pair_table", ("test_unstored",))))
    out = tmp_path / "out"
    stages, _, _ = run_stages(["test_unstored_neighbours"], out, pool=pool)
    assert stages["test_unstored_neighbours"].computed == 2
    assert [a["sums"].size for a in _artifacts(out, "test_unstored_neighbours")] == [0, 0]


def test_on_cuda_a_gpu_stage_takes_its_gpu_batch_and_the_others_keep_their_cpu_batch(tiny_pool, tmp_path,
                                                                                     monkeypatch):
    from pipeline import runner

    def batches(out, stage):
        return {tuple(str(s) for s in a["batch"]) for a in _artifacts(out, stage)}

    run_stages(["test_batch_gpu", "test_batch_ctx"], tmp_path / "cpu", pool=tiny_pool)
    assert batches(tmp_path / "cpu", "test_batch_gpu") == {("img0", "img1", "img2"), ("img3",)}
    monkeypatch.setattr(runner, "_resolve_device", lambda requested, needed: "cuda")  # the stages only read it
    run_stages(["test_batch_gpu", "test_batch_ctx"], tmp_path / "cuda", pool=tiny_pool)
    assert batches(tmp_path / "cuda", "test_batch_gpu") == {("img0", "img1"), ("img2", "img3")}  # gpu_batch = 2
    assert batches(tmp_path / "cuda", "test_batch_ctx") == {("img0", "img1", "img2"), ("img3",)}  # not a GPU stage


def test_an_input_file_that_cannot_be_read_skips_its_item_only(tiny_pool, tmp_path, monkeypatch):
    from pipeline import runner

    real = runner.file_digest

    def digest(path):
        if Path(path).name == "img1.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(runner, "file_digest", digest)
    stages, lines, _ = run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool)
    assert (stages["pool"].total, stages["pool"].computed, stages["pool"].skipped) == (4, 3, 1)
    assert f"warning: {tiny_pool / 'img1.png'}: cannot be read (Permission denied)" in lines
    assert stages["test_mean"].computed == 3 and stages["test_mean"].skipped == 1


def test_two_items_with_two_jobs_are_computed_in_worker_processes(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(pool / f"p{i}.png")
    run_stages(["test_pid"], tmp_path / "out", pool=pool, jobs=2)
    pids = [int(a["pid"]) for a in _artifacts(tmp_path / "out", "test_pid")]
    assert len(pids) == 2 and os.getpid() not in pids


def test_with_a_dask_scheduler_every_item_runs_on_the_cluster(tiny_pool, tmp_path):
    import threading

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                                  protocol="tcp://", host="127.0.0.1") as cluster:
        # in-process workers: an item run on the cluster runs on one of its threads, not on this one
        run_stages(["test_pid", "test_pool_thread"], tmp_path / "out", pool=tiny_pool,
                   scheduler=f"dask://{cluster.scheduler_address}")
    here = threading.get_ident()
    threads = [int(a["thread"]) for a in _artifacts(tmp_path / "out", "test_pid")]
    threads += [int(a["thread"]) for a in _artifacts(tmp_path / "out", "test_pool_thread")]
    assert len(threads) == 5 and here not in threads  # the pool stage too: one task


def test_a_parallel_run_leaves_the_warning_filters_of_the_process_working(tiny_pool, tmp_path):
    import warnings

    run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool, jobs=2)
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are, none added
        warnings.warn("still shown", UserWarning)
    assert [str(w.message) for w in caught] == ["still shown"]


def test_the_report_holds_each_map_folder_and_the_stage_time(tiny_pool, tmp_path):
    import time

    out = tmp_path / "out"
    t0 = time.perf_counter()
    stages, _, report = run_stages(["test_mean"], out, pool=tiny_pool)
    wall = time.perf_counter() - t0
    assert report.map_dirs == {"test_mean": out / "test_mean"} and report.map_items["test_mean"] == [
        f"img{i}" for i in range(4)]
    assert 0.0 <= stages["test_mean"].seconds <= wall


def test_a_dask_scheduler_that_cannot_be_reached_or_used_is_one_error(tiny_pool, tmp_path, monkeypatch):
    import sys

    distributed = pytest.importorskip("distributed")
    calls = []

    def unreachable(address, **kw):
        calls.append((address, kw))
        raise OSError("Timed out trying to connect to tcp://127.0.0.1:1 after 10 s\nsecond line")

    monkeypatch.setattr(distributed, "Client", unreachable)
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool, scheduler="dask://127.0.0.1:1")
    assert str(err.value) == ("--scheduler dask://127.0.0.1:1: cannot reach the Dask scheduler "
                              "(Timed out trying to connect to tcp://127.0.0.1:1 after 10 s)")
    assert calls == [("127.0.0.1:1", {"timeout": "10s"})]

    def silent(address, **kw):
        raise TimeoutError()

    monkeypatch.setattr(distributed, "Client", silent)
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool, scheduler="dask://127.0.0.1:1")
    assert str(err.value) == "--scheduler dask://127.0.0.1:1: cannot reach the Dask scheduler (TimeoutError)"
    monkeypatch.setitem(sys.modules, "distributed", None)  # not installed
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], tmp_path / "out", pool=tiny_pool, scheduler="dask://127.0.0.1:1")
    assert str(err.value) == "--scheduler dask://... needs the [dask] extra: pip install '.[dask]'"


def test_without_a_pool_the_run_uses_the_embedded_demo_pool_and_says_where(tmp_path):
    from pipeline.pool import IMAGE_EXTENSIONS

    out = tmp_path / "out"
    stages, lines, report = run_stages(["test_mean"], out)  # no pool
    demo = out / "demo_pool"
    assert f"no --pool given: using the embedded demo pool written to {demo}" in lines
    images = [p for p in demo.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    assert report.pool_dir == demo and images and stages["test_mean"].computed == len(images)


def test_missing_or_empty_input_folders_are_named_exactly(tiny_pool, tmp_path):
    from pipeline.pool import IMAGE_EXTENSIONS

    out = tmp_path / "out"
    for option, what in (("pool", "pool"), ("priors", "priors"), ("gt", "gt")):
        missing = tmp_path / f"no_{option}"
        kw = {"pool": tiny_pool, option: missing}
        with pytest.raises(RunError) as err:
            run_stages(["test_mean"], out, **kw)
        assert str(err.value) == f"{what} folder {missing} does not exist"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError) as err:
        run_stages(["test_mean"], out, pool=empty)
    assert str(err.value) == f"pool folder {empty} holds no images ({', '.join(IMAGE_EXTENSIONS)})"


def test_prior_maps_may_be_npy_arrays(tiny_pool, tmp_path):
    priors = tmp_path / "priors"
    priors.mkdir()
    np.save(priors / "img0.npy", np.full((20, 30), 0.25, np.float32))
    stages, _, _ = run_stages(["priors"], tmp_path / "out", pool=tiny_pool, priors=priors)
    assert stages["priors"].computed == 1 and stages["priors"].skipped == 3


def test_the_lock_file_gets_the_mode_of_the_umask(tiny_pool, tmp_path):
    out = tmp_path / "out"
    run_stages(["test_mean"], out, pool=tiny_pool)
    mask = os.umask(0)
    os.umask(mask)
    assert (out / ".lock").stat().st_mode & 0o777 == 0o666 & ~mask
