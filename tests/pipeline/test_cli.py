"""End-to-end: the CLI as a user runs it, in a subprocess, on a tiny pool."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, plugins=True, timeout=300, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if plugins:
        env["PIPELINE_PLUGINS"] = "tests.pipeline.plugin_stages"
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout, **kw
    )


def summary(out):
    return {s["name"]: s for s in json.loads((Path(out) / "run_summary.json").read_text())["stages"]}


def test_run_twice_then_cache_ls_and_clear(tiny_pool, tmp_path):
    out = tmp_path / "out"
    first = cli("run", "--stages", "test_after", "--pool", str(tiny_pool), "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "test_after" in first.stdout and (out / "test_after" / "img3.png").exists()
    second = cli("run", "--stages", "test_after", "--pool", str(tiny_pool), "--out", str(out), "--no-progress")
    assert second.returncode == 0
    assert "nothing to compute: every item came from the cache" in second.stdout
    ls = cli("cache", "ls", "--out", str(out))
    assert "test_mean" in ls.stdout and "pool" in ls.stdout
    cleared = cli("cache", "clear", "--out", str(out), "--stage", "test_mean")
    assert "removed 4 cached items" in cleared.stdout
    third = cli("run", "--stages", "test_after", "--pool", str(tiny_pool), "--out", str(out), "--no-progress")
    s = summary(out)
    assert third.returncode == 0 and s["test_mean"]["computed"] == 4 and s["test_after"]["cached"] == 4


def test_sigkill_mid_stage_then_rerun_finishes_identically_and_recomputes_only_unfinished(tmp_path):
    from PIL import Image

    pool = tmp_path / "pool"
    pool.mkdir()
    rng = np.random.default_rng(5)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)).save(pool / f"p{i}.png")
    args = ["run", "--stages", "test_slow", "--pool", str(pool), "--set", "test_slow.delay=0.5", "--jobs", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PIPELINE_PLUGINS="tests.pipeline.plugin_stages")
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    cache_dir = out / ".cache" / "test_slow"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache_dir.glob("*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(cache_dir.glob("*.npz")))
    assert 3 <= finished < 10, "the run must be killed mid-stage"
    rerun = cli(*args, "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    s = summary(out)
    assert s["test_slow"]["cached"] == finished and s["test_slow"]["computed"] == 10 - finished
    clean = cli(*args, "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0
    for png in (tmp_path / "clean" / "test_slow").glob("*.png"):
        assert png.read_bytes() == (out / "test_slow" / png.name).read_bytes()
    assert len(list((out / "test_slow").glob("*.png"))) == 10


def test_user_errors_are_one_line_without_traceback(tiny_pool, tmp_path):
    cases = [
        (["run", "--stages", "test_mean", "--pool", str(tmp_path / "nope")], "does not exist"),
        (["run", "--stages", "nosuch", "--pool", str(tiny_pool)], "unknown stage 'nosuch'"),
        (["run", "--stages", "test_mean", "--pool", str(tiny_pool), "--set", "test_mean.bad=1"], "unknown parameter test_mean.bad"),
        (["run", "--stages", "test_mean", "--pool", str(tiny_pool), "--jobs", "0"], "--jobs: expected a positive integer"),
        (["run", "--stages", "test_mean", "--pool", str(tiny_pool), "--force", "pool,zzz"], "--force zzz"),
    ]
    for args, message in cases:
        res = cli(*args, "--out", str(tmp_path / "o"), "--no-progress")
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_exit_code_is_nonzero_only_when_nothing_could_be_done(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "a.png").write_bytes(b"")
    (pool / "b.jpg").write_text("no")
    res = cli("run", "--stages", "test_mean", "--pool", str(pool), "--out", str(tmp_path / "o"), "--no-progress")
    assert res.returncode == 1
    assert "a.png: empty file" in res.stderr and "b.jpg: not an image file" in res.stderr


def test_stages_lists_parameters_with_defaults_and_help_is_complete():
    res = cli("stages")
    assert res.returncode == 0
    assert "pool.max_side : int = 2048" in res.stdout
    assert "test_mean.scale : float = 1.0" in res.stdout
    with_set = cli("stages", "--set", "test_mean.scale=2")
    assert "test_mean.scale : float = 2.0 (default 1.0)" in with_set.stdout
    help_text = cli("run", "--help").stdout
    for flag in ("--stages", "--pool", "--gt", "--priors", "--out", "--config", "--set", "--force", "--jobs", "--scheduler"):
        assert flag in help_text
    assert "ls" in cli("cache", "--help").stdout


def test_dask_scheduler_without_dask_is_a_clear_error(tiny_pool, tmp_path):
    pytest.importorskip("pipeline")
    try:
        import distributed  # noqa: F401

        pytest.skip("dask is installed here")
    except ImportError:
        pass
    res = cli("run", "--stages", "test_mean", "--pool", str(tiny_pool), "--out", str(tmp_path / "o"),
              "--scheduler", "dask://127.0.0.1:1", "--no-progress")
    assert res.returncode == 2 and "[dask] extra" in res.stderr
