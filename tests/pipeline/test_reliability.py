"""Outputs are a function of the current run; honest exit codes; clear errors; faults survived."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import cache as cache_mod
from pipeline.runner import RunError, RunLock
from tests.pipeline.conftest import run_stages

ROOT = Path(__file__).resolve().parents[2]


_run = run_stages


def cli(*args, plugins="tests.pipeline.plugin_stages", timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PIPELINE_PLUGINS", None)
    if plugins:
        env["PIPELINE_PLUGINS"] = plugins
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def _pngs(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.png")}


def _write_maps(folder: Path, stems, shape=(20, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*"):
        p.unlink()
    for i, s in enumerate(stems):
        Image.fromarray(np.full(shape, 40 * (i + 1), np.uint8)).save(folder / f"{s}.png")


def test_map_folders_hold_exactly_the_current_runs_items(tiny_pool, tmp_path):
    out, priors, gt = tmp_path / "out", tmp_path / "priors", tmp_path / "gt"
    _write_maps(priors, ["img0", "img1", "img2"])
    _write_maps(gt, ["img0", "img1", "img2", "img3"])
    _run(["priors"], out, pool=tiny_pool, priors=priors)
    assert _pngs(out / "priors") == {"img0", "img1", "img2"}
    # The priors folder now holds 1 of 3 maps: the two others are not this run's.
    _write_maps(priors, ["img1"])
    _, _, report = _run(["priors"], out, pool=tiny_pool, priors=priors)
    assert _pngs(out / "priors") == {"img1"} and report.map_items["priors"] == ["img1"]
    res = cli("evaluate", "--pred", str(out / "priors"), "--gt", str(gt), "--out", str(tmp_path / "ev"), "--rows", "0")
    assert res.returncode == 0, res.stderr
    assert "priors: 3 of 4 GT images have no map" in res.stderr  # reported, not scored


def test_a_map_whose_item_starts_failing_is_removed(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_slow"], out, pool=tiny_pool)
    assert _pngs(out / "test_slow") == {"img0", "img1", "img2", "img3"}
    stages, _, _ = _run(["test_slow"], out, ["test_slow.fail_on=24"], pool=tiny_pool)  # img1 is 24 px high
    assert stages["test_slow"].failed == 1
    assert _pngs(out / "test_slow") == {"img0", "img2", "img3"}


def test_a_map_of_an_image_that_left_the_pool_is_removed(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_mean", "test_after"], out, pool=tiny_pool)
    (tiny_pool / "img2.png").unlink()
    _run(["test_mean", "test_after"], out, pool=tiny_pool)
    assert _pngs(out / "test_mean") == _pngs(out / "test_after") == {"img0", "img1", "img3"}


def test_run_evaluation_scores_only_this_runs_maps_and_counts_the_missing(tiny_pool, tmp_path):
    out, priors, gt = tmp_path / "out", tmp_path / "priors", tmp_path / "gt"
    _write_maps(gt, ["img0", "img1", "img2", "img3"], shape=(20, 30))
    _write_maps(priors, ["img0", "img1", "img2"])
    cli("run", "--stages", "priors", "--pool", str(tiny_pool), "--priors", str(priors), "--out", str(out),
        "--no-progress", plugins="")
    _write_maps(priors, ["img0"])
    res = cli("run", "--stages", "priors", "--pool", str(tiny_pool), "--priors", str(priors), "--gt", str(gt),
              "--out", str(out), "--no-progress", "--eval-rows", "0", plugins="")
    assert res.returncode == 0, res.stderr
    import json

    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert list(metrics["methods"]["priors"]["per_image"]) == ["img0"]
    assert "3 of 4" in res.stderr  # the three maps without a prior are reported as missing


def test_exit_code_zero_on_a_one_image_pool_with_the_real_default_graph(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    from skimage import data

    Image.fromarray(data.chelsea()[::3, ::3]).save(pool / "cat.png")
    res = cli("run", "--pool", str(pool), "--out", str(tmp_path / "o"), "--no-progress", "--jobs", "1", plugins="",
              timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    for stage in ("u2netp", "contrast", "gradsal", "crf", "relearn"):  # relearn: one image, so no neighbour
        assert (tmp_path / "o" / stage / "cat.png").exists(), stage


def test_nothing_done_exits_1_with_the_reason(tiny_pool, tmp_path):
    res = cli("run", "--stages", "test_slow", "--set", "test_slow.delay=0", "--set", "test_slow.fail_on=24",
              "--pool", str(tiny_pool), "--out", str(tmp_path / "o"), "--no-progress")
    assert res.returncode == 0  # three of four images were done
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.zeros((24, 10, 3), np.uint8)).save(one / "x.png")
    res = cli("run", "--stages", "test_slow", "--set", "test_slow.fail_on=24", "--pool", str(one),
              "--out", str(tmp_path / "o2"), "--no-progress")
    assert res.returncode == 1
    assert "error: nothing could be done: test_slow: 1 failed of 1" in res.stderr


@pytest.mark.parametrize("args, env_plugins, message", [
    (["run", "--stages", "test_mean", "--scheduler", "dask://127.0.0.1:9"], "tests.pipeline.plugin_stages",
     "cannot reach the Dask scheduler"),
    (["run", "--stages", "test_mean"], "tests.pipeline.no_such_plugin",
     "PIPELINE_PLUGINS: cannot import stage module 'tests.pipeline.no_such_plugin'"),
    (["cache", "clear", "--stage", "nosuch"], "", "cache clear: no cached stage 'nosuch'"),
    (["run", "--stages", "test_slow", "--set", "test_slow.delay=nan"], "tests.pipeline.plugin_stages",
     "test_slow.delay = nan: expected a finite number, got nan"),
])
def test_user_errors_are_one_line(tiny_pool, tmp_path, args, env_plugins, message):
    if args[0] == "run":
        args = [*args, "--pool", str(tiny_pool), "--no-progress"]
    res = cli(*args, "--out", str(tmp_path / "o"), plugins=env_plugins, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, res.stderr


def test_outputs_follow_the_users_umask(tiny_pool, tmp_path):
    assert cache_mod._FILE_MODE == 0o666 & ~_current_umask()
    out = tmp_path / "out"
    _run(["test_mean"], out, pool=tiny_pool)
    png = out / "test_mean" / "img0.png"
    npz = next((out / ".cache" / "test_mean").glob("*.npz"))
    for f in (png, npz, out / "run_summary.json"):
        assert stat.S_IMODE(f.stat().st_mode) == cache_mod._FILE_MODE, f


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_two_runs_on_one_output_folder_do_not_overlap(tiny_pool, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with RunLock(out):
        with pytest.raises(RunError, match="is in use by another run"):
            _run(["test_mean"], out, pool=tiny_pool)
    stages, _, _ = _run(["test_mean"], out, pool=tiny_pool)  # the lock is released with its holder
    assert stages["test_mean"].computed == 4


def test_a_corrupted_cache_artifact_is_detected_and_recomputed(tiny_pool, tmp_path):
    out = tmp_path / "out"
    _run(["test_mean", "test_after"], out, pool=tiny_pool)
    before = {p.name: p.read_bytes() for p in (out / "test_after").glob("*.png")}
    arts = sorted((out / ".cache" / "test_mean").glob("*.npz"))
    arts[0].write_bytes(arts[0].read_bytes()[:-20])  # truncated
    data = bytearray(arts[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the compressed data
    arts[1].write_bytes(bytes(data))
    stages, _, _ = _run(["test_mean", "test_after"], out, pool=tiny_pool)
    assert stages["test_mean"].computed == 2 and stages["test_mean"].cached == 2
    assert {p.name: p.read_bytes() for p in (out / "test_after").glob("*.png")} == before


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_artifact(tiny_pool, tmp_path, monkeypatch):
    import errno

    real = np.savez_compressed

    def full_disk(fh, **arrays):
        real(fh, **arrays)  # part of the file is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    _run(["pool"], out, pool=tiny_pool)
    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(RunError, match=r"cannot write to .*No space left on device.*every finished item is kept"):
        _run(["test_mean"], out, pool=tiny_pool)
    assert not list((out / ".cache").rglob("*.tmp")) and not list((out / ".cache" / "test_mean").glob("*.npz"))
    monkeypatch.setattr(np, "savez_compressed", real)
    stages, _, _ = _run(["test_mean"], out, pool=tiny_pool)
    assert stages["pool"].cached == 4 and stages["test_mean"].computed == 4


def test_an_unwritable_cache_folder_is_one_clear_error(tiny_pool, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".cache").write_text("a file where the cache folder should be")
    with pytest.raises(RunError, match="cache folder .* cannot be written"):
        _run(["test_mean"], out, pool=tiny_pool)


def test_a_worker_crash_fails_only_its_item(tiny_pool, tmp_path):
    stages, lines, _ = _run(["test_slow"], tmp_path / "out", ["test_slow.crash_on=24"], pool=tiny_pool, jobs=2)
    assert stages["test_slow"].failed == 1 and stages["test_slow"].computed == 3
    assert any("test_slow failed on img1: the worker process died while computing this item" in line for line in lines)


# ---- SIGKILL at random points of each stage kind

FAULT_STAGES = {"image": "test_slow", "pair": "test_fault_pair", "pool": "test_fault_pool",
                "training": "test_colour_fit"}
DELAY = 0.25  # seconds per item, so that a kill lands inside a stage


def _fault_args(pool, gt, out):
    sets = [f"test_slow.delay={DELAY}", f"test_fault_pair.delay={DELAY}", f"test_fault_pool.delay={4 * DELAY}",
            f"test_colour_fit.delay={4 * DELAY}", "test_colour.model=train"]
    args = ["run", "--stages", "test_fault_pair,test_fault_pool,test_colour", "--pool", str(pool), "--gt", str(gt),
            "--out", str(out), "--jobs", "1", "--no-progress", "--eval-rows", "0"]
    for s in sets:
        args += ["--set", s]
    return args


def _artifacts(out: Path) -> dict[str, dict[str, dict]]:
    """stage -> cache key -> arrays (compared by content: zip member timestamps differ between runs)."""
    out_ = {}
    for d in sorted((out / ".cache").glob("*/")):
        out_[d.name] = {}
        for f in d.glob("*.npz"):
            with np.load(f, allow_pickle=False) as z:
                out_[d.name][f.stem] = {k: z[k] for k in z.files}
    return out_


def _counts(out: Path) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.npz"))) for d in (out / ".cache").glob("*/")} if (out / ".cache").is_dir() else {}


def _summary(out: Path):
    import json

    data = json.loads((out / "run_summary.json").read_text())
    return [s["name"] for s in data["stages"]], {s["name"]: s for s in data["stages"]}


@pytest.fixture(scope="module")
def fault_pool(tmp_path_factory):
    """Four images with masks, and the outputs of one uninterrupted run over the fault graph."""
    root = tmp_path_factory.mktemp("fault")
    pool, gt = root / "pool", root / "gt"
    pool.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(20, 30), (24, 24), (18, 26), (22, 28)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(pool / f"img{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[4:12, 5:15] = 255
        Image.fromarray(mask).save(gt / f"img{i}.png")
    clean = root / "clean"
    res = cli(*_fault_args(pool, gt, clean), plugins="tests.pipeline.plugin_stages")
    assert res.returncode == 0, res.stderr
    order, stages = _summary(clean)
    return pool, gt, clean, order, {n: s["total"] for n, s in stages.items()}


@pytest.mark.parametrize("kind, seed", [("image", 0), ("image", 1), ("pair", 0), ("pair", 1), ("pool", 0),
                                        ("training", 0)])
def test_sigkill_at_a_random_point_of_each_stage_kind(fault_pool, tmp_path, kind, seed):
    import signal
    import time

    pool, gt, clean, order, totals = fault_pool
    stage = FAULT_STAGES[kind]
    rng = np.random.default_rng(seed)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PIPELINE_PLUGINS="tests.pipeline.plugin_stages")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *_fault_args(pool, gt, out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    if totals[stage] > 1:  # kill after a random number of its items
        target = int(rng.integers(1, totals[stage]))
        while time.time() < deadline and _counts(out).get(stage, 0) < target:
            time.sleep(0.01)
    else:  # one item: kill at a random moment after the stage before it finished
        before = order[order.index(stage) - 1]
        while time.time() < deadline and _counts(out).get(before, 0) < totals[before]:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 2 * DELAY))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    present = _counts(out)
    assert present.get(stage, 0) < totals[stage], f"the kill must land inside {stage}"

    rerun = cli(*_fault_args(pool, gt, out), plugins="tests.pipeline.plugin_stages")
    assert rerun.returncode == 0, rerun.stderr
    _, stages = _summary(out)
    for name, total in totals.items():  # only what was unfinished is recomputed
        assert stages[name]["cached"] == present.get(name, 0), name
        assert stages[name]["computed"] == total - present.get(name, 0), name
    want, got = _artifacts(clean), _artifacts(out)
    assert want.keys() == got.keys()
    for name in want:
        assert want[name].keys() == got[name].keys(), name
        for key, arrays in want[name].items():
            assert arrays.keys() == got[name][key].keys()
            for k in arrays:
                np.testing.assert_array_equal(arrays[k], got[name][key][k], err_msg=f"{name}/{key}/{k}")
    for png in clean.glob("*/*.png"):
        rel = png.relative_to(clean)
        if rel.parts[0] != "evaluation":
            assert png.read_bytes() == (out / rel).read_bytes(), rel
    assert not list(out.glob(".cache/*/.*.tmp"))  # what a killed write left is gone
