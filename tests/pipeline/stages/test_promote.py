"""Promoter stages ``crf`` and ``lps`` through the runner: train LPS on one pool, apply it on another."""

import numpy as np
import pytest
from PIL import Image

from pipeline.config import build_params
from pipeline.runner import RunOptions, run
from tests.pipeline.conftest import square_pool

_pool = square_pool


def _run(names, out, sets, **kw):
    params, _ = build_params(None, list(sets))
    report = run(names, params, RunOptions(out=out, jobs=1, progress=False, echo=lambda _: None, **kw))
    return {s.name: s for s in report.stages}


def test_lps_trains_on_one_pool_and_promotes_the_priors_of_another(tmp_path):
    imgs_a, gt_a = _pool(tmp_path / "A", 0)
    imgs_b, _ = _pool(tmp_path / "B", 1, n=2)
    fit = ["lps_fit.epochs=2", "lps_fit.batch_size=2", "lps_fit.channels=4", "lps_fit.dim=4"]
    stages = _run(["lps"], tmp_path / "oa", [*fit, "lps.model=train", "lps.prior=contrast"], pool=imgs_a, gt=gt_a)
    assert stages["lps_fit"].computed == 1 and stages["lps"].computed == 4
    from pipeline.cache import Cache

    model_file = next((Cache(tmp_path / "oa").root / "lps_fit").glob("*.npz"))
    stages = _run(["lps"], tmp_path / "ob", [f"lps.model={model_file}", "lps.prior=contrast", "lps.iterations=2"],
                  pool=imgs_b)
    assert stages["lps"].computed == 2 and "lps_fit" not in stages
    out = np.asarray(Image.open(tmp_path / "ob" / "lps" / "im0.png"))
    assert out.shape == (40, 48)


def test_the_shipped_lps_model_runs_on_a_pool_without_ground_truth(tmp_path):
    from pipeline import models

    entry = models.shipped_models()["lps-duts"]
    assert entry.stage == "lps" and entry.card is not None and entry.card.is_file()
    imgs, _ = _pool(tmp_path / "A", 0, n=1)
    stages = _run(["lps"], tmp_path / "o", [], pool=imgs)  # default: model lps-duts, prior u2netp
    assert stages["lps"].computed == 1 and stages["u2netp"].computed == 1
    out = np.asarray(Image.open(tmp_path / "o" / "lps" / "im0.png"), np.float32) / 255
    mask = np.asarray(Image.open(tmp_path / "A" / "gt" / "im0.png")) > 128
    assert out[mask].mean() > out[~mask].mean()  # the bright square is the salient object
