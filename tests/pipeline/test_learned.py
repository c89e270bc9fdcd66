"""Learned stages: train on one pool, apply on another by path or shipped name, model files and cards.

The toy learned stage ``test_colour`` (tests/pipeline/plugin_stages.py) is a per-pixel logistic
regression of colour against the ``gt`` masks, trained by the pool stage ``test_colour_fit``.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import models
from pipeline.config import build_params
from pipeline.runner import RunError
from tests.pipeline.conftest import run_stages

ROOT = Path(__file__).resolve().parents[2]


def _pool(folder: Path, seed: int, n: int = 4):
    """Red objects on blue-ish backgrounds, with their masks: colour predicts the mask."""
    rng = np.random.default_rng(seed)
    images, masks = folder / "images", folder / "gt"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(n):
        h, w = 24 + 2 * i, 30
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 2] = rng.integers(120, 220, size=(h, w))
        img[..., 1] = rng.integers(0, 60, size=(h, w))
        mask = np.zeros((h, w), bool)
        mask[5:15, 8 + i:20 + i] = True
        img[mask, 0] = rng.integers(180, 255, size=mask.sum())
        img[mask, 2] = rng.integers(0, 50, size=mask.sum())
        Image.fromarray(img).save(images / f"im{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(masks / f"im{i}.png")
    return images, masks


_run = run_stages


def _env(**extra):
    env = dict(os.environ, PIPELINE_PLUGINS="tests.pipeline.plugin_stages", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env or _env(), timeout=600)


@pytest.fixture
def pools(tmp_path):
    a = _pool(tmp_path / "A", seed=1)
    b = _pool(tmp_path / "B", seed=2, n=3)
    return a, b


def test_train_here_apply_there_by_path_and_by_shipped_name(pools, tmp_path, monkeypatch):
    (imgs_a, gt_a), (imgs_b, _) = pools
    # model = train: the trainer runs on pool A's gt, the stage applies its result.
    stages, _, _ = _run(["test_colour"], tmp_path / "outA", ["test_colour.model=train"], pool=imgs_a, gt=gt_a)
    assert stages["test_colour_fit"].computed == 1 and stages["test_colour"].computed == 4
    pred = np.asarray(Image.open(tmp_path / "outA" / "test_colour" / "im0.png"), float) / 255
    mask = np.asarray(Image.open(gt_a / "im0.png")) > 128
    assert pred[mask].mean() > 0.8 and pred[~mask].mean() < 0.2  # the toy model learned colour -> mask

    # `pipeline train` writes the model file and its card.
    res = cli("train", "test_colour", "--pool", str(imgs_a), "--gt", str(gt_a), "--out", str(tmp_path / "tr"),
              "--no-progress", "--jobs", "1")
    assert res.returncode == 0, res.stderr
    model_file = tmp_path / "tr" / "models" / "test_colour.npz"
    card = json.loads(model_file.with_suffix(".card.json").read_text())
    assert card["stage"] == "test_colour" and card["seed"] == 0 and card["data"]["images"] == 4
    assert card["sha256"] == models.cached_file_digest(model_file) and card["bytes"] == model_file.stat().st_size
    assert "train test_colour --pool" in card["command"] and card["duration_s"] is not None
    assert card["validation"]["train_accuracy"] > 0.9
    assert "# Model card" in model_file.with_suffix(".md").read_text()

    # Apply on pool B by path: the maps are the model's sigmoid of each pixel's colour.
    stages, _, _ = _run(["test_colour"], tmp_path / "outB", [f"test_colour.model={model_file}"], pool=imgs_b)
    assert "test_colour_fit" not in stages and stages["test_colour"].computed == 3
    m = models.load_model(model_file)
    img = np.asarray(Image.open(imgs_b / "im1.png"), float) / 255
    expected = 1 / (1 + np.exp(-(img @ m.arrays["coef"] + m.arrays["intercept"][0])))
    got = np.asarray(Image.open(tmp_path / "outB" / "test_colour" / "im1.png"), float) / 255
    np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)

    # Apply by a shipped name (a manifest in a model folder), same model -> same maps, same key.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(model_file, shipped / "colour.npz")
    entry = models.ShippedModel("toy-colour", "test_colour", shipped / "colour.npz",
                                models.cached_file_digest(model_file), model_file.stat().st_size, None)
    models.write_manifest(shipped, [entry])
    monkeypatch.setenv("PIPELINE_MODEL_DIRS", str(shipped))
    stages, _, _ = _run(["test_colour"], tmp_path / "outB", pool=imgs_b)  # default model = "toy-colour"
    assert stages["test_colour"].computed == 0 and stages["test_colour"].cached == 3

    # A shipped file that no longer matches its manifest is refused before anything runs.
    with open(shipped / "colour.npz", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(RunError, match="does not match the sha256 of its manifest"):
        _run(["test_colour"], tmp_path / "outC", pool=imgs_b)


def test_changing_the_model_file_recomputes_exactly_its_dependants(pools, tmp_path):
    (imgs_a, gt_a), (imgs_b, gt_b) = pools
    _run(["test_colour"], tmp_path / "trainA", ["test_colour.model=train"], pool=imgs_a, gt=gt_a)
    _run(["test_colour"], tmp_path / "trainB", ["test_colour.model=train"], pool=imgs_b, gt=gt_b)
    key_a = json.loads((tmp_path / "trainA" / "run_summary.json").read_text())["pool_keys"]["test_colour_fit"]
    key_b = json.loads((tmp_path / "trainB" / "run_summary.json").read_text())["pool_keys"]["test_colour_fit"]
    model = tmp_path / "model.npz"
    shutil.copy(tmp_path / "trainA" / ".cache" / "test_colour_fit" / f"{key_a}.npz", model)
    names = ["test_after_colour", "test_mean"]
    sets = [f"test_colour.model={model}"]
    first, _, _ = _run(names, tmp_path / "out", sets, pool=imgs_b)
    assert {n: s.computed for n, s in first.items()} == {"pool": 3, "test_colour": 3, "test_after_colour": 3, "test_mean": 3}
    shutil.copy(tmp_path / "trainB" / ".cache" / "test_colour_fit" / f"{key_b}.npz", model)  # same path, new bytes
    second, _, _ = _run(names, tmp_path / "out", sets, pool=imgs_b)
    assert {n: s.computed for n, s in second.items()} == {"pool": 0, "test_colour": 3, "test_after_colour": 3, "test_mean": 0}


def test_jobs_device_and_threads_recompute_nothing(pools, tmp_path):
    (imgs_a, gt_a), _ = pools
    sets = ["test_colour.model=train"]
    _run(["test_colour", "test_mean"], tmp_path / "out", sets, pool=imgs_a, gt=gt_a)
    for kw in ({"jobs": 2}, {"device": "cpu"}, {"threads": 1}, {"jobs": 2, "threads": 1, "device": "auto"}):
        again, _, report = _run(["test_colour", "test_mean"], tmp_path / "out", sets, pool=imgs_a, gt=gt_a, **kw)
        assert report.computed == 0, kw


def test_corrupted_or_foreign_model_file_is_one_line_error(pools, tmp_path):
    (imgs_a, _), _ = pools
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is no zip archive")
    res = cli("run", "--stages", "test_colour", "--set", f"test_colour.model={bad}", "--pool", str(imgs_a),
              "--out", str(tmp_path / "o"), "--no-progress")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "corrupted" in lines[0] and "Traceback" not in res.stderr
    foreign = models.save_model(tmp_path / "foreign.npz", {"w": np.zeros(3)}, {"stage": "lps"})
    with pytest.raises(RunError, match="a model for stage 'lps', not for 'test_colour'"):
        _run(["test_colour"], tmp_path / "o2", [f"test_colour.model={foreign}"], pool=imgs_a)
    with pytest.raises(RunError, match="expected 'train', a model file or a shipped model"):
        _run(["test_colour"], tmp_path / "o3", ["test_colour.model=no-such-model"], pool=imgs_a)


def test_an_unresolvable_default_model_leaves_the_stage_out_of_all(tmp_path):
    # With --stages all a learned stage whose (default) model cannot be found is left out with the
    # stages that need it; a stage the user named makes it an error (the test above).
    from pipeline.runner import RunOptions, Runner

    params, _ = build_params(None, [])
    lines = []
    runner = Runner(params, RunOptions(out=tmp_path / "o", progress=False, echo=lines.append))
    order = ["pool", "test_mean", "test_colour", "test_after_colour"]
    assert runner._resolve_models(order, explicit=set()) == ["pool", "test_mean"]
    assert any("stage test_colour left out" in line and "toy-colour" in line for line in lines)
    with pytest.raises(RunError, match="toy-colour"):
        runner._resolve_models(order, explicit={"test_after_colour"})


def test_model_files_are_never_unpickled(tmp_path):
    # An object array would need pickle: refused when written and when read.
    with pytest.raises(ValueError, match="object array"):
        models.model_result({"w": np.array([{"a": 1}], dtype=object)}, {"stage": "x"})
    path = tmp_path / "pickled.npz"
    np.savez(path, w=np.array([{"a": 1}], dtype=object), __meta__=np.array(json.dumps({"stage": "x"})))
    with pytest.raises(models.ModelFileError, match="cannot be read"):
        models.load_model(path)


def test_model_round_trip_keeps_arrays_and_meta(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([0.5])}
    path = models.save_model(tmp_path / "m.npz", arrays, {"stage": "lps", "hparams": {"d": 8}})
    m = models.load_model(path)
    assert m.meta["stage"] == "lps" and m.hparams == {"d": 8} and m.meta["format"] == models.FORMAT
    for k, v in arrays.items():
        np.testing.assert_array_equal(m.arrays[k], v)


def test_every_shipped_model_loads_and_matches_its_manifest():
    entries = models.shipped_models()
    for name, e in entries.items():
        assert e.path.is_file(), name
        assert models.cached_file_digest(e.path) == e.sha256, name
        assert e.path.stat().st_size == e.size, name
        m = models.load_model(e.path)
        assert m.meta["stage"] == e.stage, name
        assert e.card is not None and e.card.is_file(), name
        ref = models.resolve(e.stage, name)
        assert ref.digest == e.sha256
