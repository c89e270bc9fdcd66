"""MIJR re-learning stages: parameters and their rules in-process, and a tiny synthetic pool that
trains (``python -m pipeline train relearn``) and promotes (``run --stages relearn``) end to end
through the CLI, and the shipped ``relearn-u2netp-duts`` model on a pool without ground truth."""

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import registry

ROOT = Path(__file__).resolve().parents[3]
STAGES = ("superpixel_features", "crf_pseudo_gt", "relearn_fit", "relearn")


@pytest.fixture
def relearn_stages():
    registry.all_stages()  # imports the built-in stage modules
    return {n: registry.get(n) for n in STAGES}


def test_params_mirror_the_methods_and_are_documented(relearn_stages):
    for name, stage in relearn_stages.items():
        sig = inspect.signature(stage.method).parameters
        shared = [f for f in dataclasses.fields(stage.params) if f.name in sig and
                  (sig[f.name].kind is inspect.Parameter.KEYWORD_ONLY or sig[f.name].default is not inspect.Parameter.empty)]
        assert shared, name
        for f in shared:
            assert f.default == sig[f.name].default, f"{name}.{f.name}"
        docs = registry.param_docs(stage.params)
        assert all(docs.get(f.name) for f in dataclasses.fields(stage.params)), name
    assert relearn_stages["relearn"].params().model == "relearn-u2netp-duts"
    # the default model reads the superpixel features the stage pools by default
    assert relearn_stages["superpixel_features"].params().features == "u2netp_features"
    assert relearn_stages["relearn"].learned.trainer == "relearn_fit"


def test_the_trainer_and_the_pseudo_gt_follow_the_promoters_prior(relearn_stages):
    from pipeline.config import build_params

    params, _ = build_params(None, ["relearn.prior=priors"])
    assert params["relearn_fit"].prior == params["crf_pseudo_gt"].prior == "priors"
    params, _ = build_params(None, ["relearn.prior=priors", "crf_pseudo_gt.prior=contrast"])
    assert params["crf_pseudo_gt"].prior == "contrast" and params["relearn_fit"].prior == "priors"
    params, _ = build_params(None, [])
    assert params["relearn"].prior == params["relearn_fit"].prior == params["crf_pseudo_gt"].prior == "u2netp"
    stage = relearn_stages["relearn"]
    assert set(stage.all_inputs(params["relearn"])) >= {"neighbours", "alignment", "u2netp", "crf_pseudo_gt"}


# --------------------------------------------------------------------------- end to end, CLI

H, W = 48, 64
FAST = ["slic.n_segments=40", "deep_features.size=64", "gist_hog.size=64", "gist_hog.hog_size=32",
        "proposals.n_candidates=50", "proposals.n_select=10", "dense_sift.size=48", "siftflow.n_levels=2",
        "siftflow.n_top_iterations=10", "siftflow.n_iterations=5", "relearn.prior=priors"]
# t1 = 1 makes every target superpixel "hard" for Table I: on this pool the CRF pseudo GT repairs
# almost all of the priors' misses (1 positive pair of 490 at the paper's t1 = 0.15), and these
# tests are of the stages' plumbing; tests/relearn tests the method on pools whose hard
# superpixels are known. The tests below need a model that corrects some superpixels: fitted here
# with the default joint_threshold 0.005 it corrects none of this pool's, with 0.5 it does.
# The tiny model of the fixture reads the ImageNet taps (at 64 x 64 here): on these 48 x 64 toy
# images U2-Netp's decoder taps (the default) leave its 300 steps too little to learn from.
DEEP = ["superpixel_features.features=deep_features"]
TRAIN = ["relearn_fit.widths=8,8,8,8,8", "relearn_fit.iterations=300", "relearn_fit.batch_size=32",
         "relearn_fit.learning_rate=0.05", "relearn_fit.t1=1.0", "relearn_fit.joint_threshold=0.5"]


def _pool(folder, n=6, seed=0):
    """``n`` images of a bright square (shifted a little each) on dark noise, their masks, and
    priors right except on a different third of the square in each (the hard superpixels)."""
    rng = np.random.default_rng(seed)
    dirs = [folder / d for d in ("images", "gt", "priors")]
    for d in dirs:
        d.mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((H, W), bool)
        r, c = 12 + i % 3, 16 + 2 * (i % 2)
        mask[r:r + 24, c:c + 30] = True
        img = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
        img[mask] = rng.integers(170, 255, (int(mask.sum()), 3), dtype=np.uint8)
        prior = np.where(mask, 0.95, 0.05)
        third = slice(c + 10 * (i % 3), c + 10 * (i % 3) + 10)
        prior[r:r + 24, third] = 0.05  # missed by the prior
        Image.fromarray(img).save(dirs[0] / f"im{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(dirs[1] / f"im{i}.png")
        Image.fromarray((prior * 255).astype(np.uint8)).save(dirs[2] / f"im{i}.png")
    return dirs


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipeline", *args, "--no-progress", "--jobs", "1"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def _sets(items):
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("relearn")
    images, gt, priors = _pool(folder / "pool")
    out = folder / "train"
    res = cli("train", "relearn", "--pool", str(images), "--gt", str(gt), "--priors", str(priors),
              "--out", str(out), *_sets(FAST + DEEP + TRAIN))
    assert res.returncode == 0, res.stdout + res.stderr
    return folder, images, gt, priors, out / "models" / "relearn.npz"


def test_a_tiny_pool_trains_a_relearn_model_with_its_card(trained):
    from pipeline import models

    _, _, _, _, model = trained
    meta = models.read_meta(model)
    assert meta["stage"] == "relearn"
    assert meta["hparams"]["filter"]["widths"] == [8, 8, 8, 8, 8] and meta["hparams"]["m"] == 5
    rec = meta["training"]["record"]
    assert meta["training"]["prior"] == "priors" and meta["training"]["data"]["images"] == 6
    assert rec["targets"] == 6 and 0 < rec["pairs_positive"] < rec["pairs_labelled"]
    card = json.loads(model.with_suffix(".card.json").read_text())
    assert card["stage"] == "relearn" and card["trainer"] == "relearn_fit"
    assert card["validation"]["filter_train_accuracy"] > 0.5


def test_the_trained_model_promotes_the_pool_through_the_cli(trained):
    from pipeline.cache import Cache

    folder, images, gt, priors, model = trained
    out = folder / "train"  # the training run's cache: only relearn itself is computed
    res = cli("run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors), "--out", str(out),
              *_sets(FAST + DEEP + [f"relearn.model={model}"]))
    assert res.returncode == 0, res.stdout + res.stderr
    summary = {s["name"]: s for s in json.loads((out / "run_summary.json").read_text())["stages"]}
    assert summary["relearn"]["computed"] == 6 and "relearn_fit" not in summary and "u2netp" not in summary
    assert summary["alignment"]["cached"] == 30 and summary["crf_pseudo_gt"]["cached"] == 6
    relearned = 0
    for i in range(6):
        out_map = np.asarray(Image.open(out / "relearn" / f"im{i}.png"), np.float32) / 255
        mask = np.asarray(Image.open(gt / f"im{i}.png")) > 128
        assert out_map.shape == (H, W)
        assert out_map[mask].mean() > out_map[~mask].mean() + 0.3  # the bright square is the object
    for p in (Cache(out).root / "relearn").glob("*.npz"):
        relearned += int(np.load(p)["relearned"].sum())
    assert relearned > 0  # some superpixels were re-learned, not only the prior copied


def _run_relearned(out, args):
    """Run; the summed ``relearned`` of the relearn artifacts it computed or read, and its summary."""
    from pipeline.cache import Cache

    root = Cache(out).root / "relearn"
    before = set(root.glob("*.npz")) if root.is_dir() else set()
    res = cli(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = {s["name"]: s for s in json.loads((out / "run_summary.json").read_text())["stages"]}
    new = set(root.glob("*.npz")) - before
    return sum(int(np.load(p)["relearned"].sum()) for p in new), summary["relearn"]


def test_the_ablations_run_through_the_cli(trained):
    folder, images, gt, priors, model = trained
    out = folder / "ablations"
    # which superpixels are candidates: every filter-passed one replaced (corrections_only off)
    base = ["run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors), "--out", str(out),
            *_sets(FAST + DEEP + [f"relearn.model={model}", "relearn.corrections_only=false"])]
    filtered, _ = _run_relearned(out, base)
    no_filter, summary = _run_relearned(out, base + ["--set", "relearn.use_filter=false"])
    assert summary["computed"] == 6  # a new parameter value: new cache items
    assert no_filter > filtered > 0  # without the filter every aligned superpixel is re-learned
    one, summary = _run_relearned(out, base + ["--set", "relearn.m=1"])
    assert summary["computed"] == 6 and one <= filtered  # its pairs are a subset of the M = 5 ones
    corrections, summary = _run_relearned(out, base + ["--set", "relearn.corrections_only=true"])
    assert summary["computed"] == 6 and corrections <= filtered  # of those, where the class changes
    res = cli(*base, "--set", "relearn.m=-1")
    assert res.returncode == 2 and "relearn.m" in res.stderr


def test_relearn_trains_on_u2netp_features_and_refuses_a_model_of_other_features(trained):
    from pipeline import models

    folder, images, gt, priors, deep_model = trained
    out = folder / "train"  # the training run's cache: retrieval, alignment and pseudo GT are read
    u2 = ["superpixel_features.features=u2netp_features"]
    u2_model = folder / "relearn-u2netp.npz"
    res = cli("train", "relearn", "--pool", str(images), "--gt", str(gt), "--priors", str(priors),
              "--out", str(out), "--model-out", str(u2_model), *_sets(FAST + TRAIN + u2))
    assert res.returncode == 0, res.stdout + res.stderr
    summary = {s["name"]: s for s in json.loads((out / "run_summary.json").read_text())["stages"]}
    assert summary["u2netp_features"]["computed"] == 6 and summary["superpixel_features"]["computed"] == 6
    assert summary["alignment"]["cached"] == 30 and "deep_features" not in summary
    meta = models.read_meta(u2_model)
    # four U2-Netp taps of 64 channels, two scales: 512 values per superpixel
    assert meta["features"] == "u2netp_features" and meta["hparams"]["feature_dim"] == 512
    assert meta["hparams"]["taps"] == ["s4", "s8", "s16", "s32"]
    assert models.read_meta(deep_model).get("features") == "deep_features"
    # the model of the ImageNet taps read with superpixel features of the U2-Netp taps: refused
    res = cli("run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors),
              "--out", str(folder / "mismatch"), *_sets(FAST + u2 + [f"relearn.model={deep_model}"]))
    assert res.returncode != 0
    assert "trained on superpixel features pooled from deep_features" in res.stdout + res.stderr
    assert "--set superpixel_features.features=deep_features" in res.stdout + res.stderr


def test_the_shipped_relearn_model_promotes_a_pool_without_ground_truth(tmp_path):
    from pipeline import models

    entry = models.shipped_models()["relearn-u2netp-duts"]
    assert entry.stage == "relearn" and entry.card is not None and entry.card.is_file()
    images, gt, priors = _pool(tmp_path / "pool", n=3)
    out = tmp_path / "o"
    # relearn.model left at its default, the shipped relearn-u2netp-duts; no --gt. The margin check below
    # reads the paper's rule (re-learned scores replace the prior where they correct it and are
    # surer): with the model shipped before the residual one, the default (odds multiplied on every
    # filtered superpixel) fell below this margin on one of these 64-pixel toy images, where the
    # shipped model is far from its training images.
    paper = ["relearn.merge=replace", "relearn.corrections_only=true", "relearn.confident_only=true"]
    res = cli("run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors), "--out", str(out),
              *_sets(FAST + paper))
    assert res.returncode == 0, res.stdout + res.stderr
    summary = {s["name"]: s for s in json.loads((out / "run_summary.json").read_text())["stages"]}
    assert summary["relearn"]["computed"] == 3 and "relearn_fit" not in summary
    for i in range(3):
        out_map = np.asarray(Image.open(out / "relearn" / f"im{i}.png"), np.float32) / 255
        mask = np.asarray(Image.open(gt / f"im{i}.png")) > 128
        assert out_map.shape == (H, W)
        assert out_map[mask].mean() > out_map[~mask].mean() + 0.3  # the bright square is the object
    # the defaults run on the same pool from the cache of every stage before relearn
    res = cli("run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors), "--out", str(out),
              *_sets(FAST))
    assert res.returncode == 0, res.stdout + res.stderr
    summary = {s["name"]: s for s in json.loads((out / "run_summary.json").read_text())["stages"]}
    assert summary["relearn"]["computed"] == 3 and summary["superpixel_features"]["computed"] == 0
    # the other shipped model, relearn-duts, reads the ImageNet taps
    assert models.shipped_models()["relearn-duts"].stage == "relearn"
    res = cli("run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors), "--out", str(out),
              *_sets(FAST + DEEP + ["relearn.model=relearn-duts"]))
    assert res.returncode == 0, res.stdout + res.stderr
    summary = {s["name"]: s for s in json.loads((out / "run_summary.json").read_text())["stages"]}
    assert summary["relearn"]["computed"] == 3 and summary["deep_features"]["computed"] == 3


def test_a_missing_model_file_is_a_clear_error(tmp_path):
    images, _, priors = _pool(tmp_path / "pool", n=2)
    res = cli("run", "--stages", "relearn", "--pool", str(images), "--priors", str(priors),
              "--out", str(tmp_path / "o"), "--set", "relearn.prior=priors", "--set", "relearn.model=no-such-model")
    assert res.returncode == 2
    assert "relearn.model = 'no-such-model': expected 'train', a model file or a shipped model" in res.stderr
