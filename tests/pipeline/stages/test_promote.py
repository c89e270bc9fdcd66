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
    fit = ["lps_fit.epochs=2", "lps_fit.batch_size=2", "lps_fit.channels=4", "lps_fit.dim=4",
           "lps.features=deep_features"]
    stages = _run(["lps"], tmp_path / "oa", [*fit, "lps.model=train", "lps.prior=contrast"], pool=imgs_a, gt=gt_a)
    assert stages["lps_fit"].computed == 1 and stages["lps"].computed == 4
    from pipeline.cache import Cache

    model_file = next((Cache(tmp_path / "oa").root / "lps_fit").glob("*.npz"))
    stages = _run(["lps"], tmp_path / "ob", [f"lps.model={model_file}", "lps.prior=contrast", "lps.iterations=2",
                                             "lps.features=deep_features"], pool=imgs_b)
    assert stages["lps"].computed == 2 and "lps_fit" not in stages
    out = np.asarray(Image.open(tmp_path / "ob" / "lps" / "im0.png"))
    assert out.shape == (40, 48)


def test_the_shipped_lps_model_runs_on_a_pool_without_ground_truth(tmp_path):
    from pipeline import models

    for name in ("lps-u2netp-duts", "lps-duts"):
        entry = models.shipped_models()[name]
        assert entry.stage == "lps" and entry.card is not None and entry.card.is_file()
    imgs, _ = _pool(tmp_path / "A", 0, n=1)
    stages = _run(["lps"], tmp_path / "o", [], pool=imgs)  # default: model lps-u2netp-duts, prior u2netp
    assert stages["lps"].computed == 1 and stages["u2netp"].computed == 1
    assert stages["u2netp_features"].computed == 1 and "deep_features" not in stages
    out = np.asarray(Image.open(tmp_path / "o" / "lps" / "im0.png"), np.float32) / 255
    mask = np.asarray(Image.open(tmp_path / "A" / "gt" / "im0.png")) > 128
    assert out[mask].mean() > out[~mask].mean()  # the bright square is the salient object


def test_lps_trains_and_promotes_on_u2netp_features(tmp_path):
    imgs_a, gt_a = _pool(tmp_path / "A", 0)
    fit = ["lps_fit.epochs=1", "lps_fit.batch_size=2", "lps_fit.channels=4", "lps_fit.dim=4"]
    stages = _run(["lps"], tmp_path / "o", [*fit, "lps.model=train", "lps.prior=contrast",
                                            "lps.features=u2netp_features"], pool=imgs_a, gt=gt_a)
    # The trainer follows lps.features: both read the U2-Netp taps, neither the ImageNet backbone's.
    assert stages["u2netp_features"].computed == 4 and stages["lps_fit"].computed == 1
    assert stages["lps"].computed == 4 and "deep_features" not in stages
    from pipeline.cache import Cache
    from pipeline.models import load_model

    model_file = next((Cache(tmp_path / "o").root / "lps_fit").glob("*.npz"))
    model = load_model(model_file)
    assert model.meta["features"] == "u2netp_features" and model.hparams["input_size"] == 320


def test_lps_refuses_features_its_model_was_not_trained_on(tmp_path):
    from pipeline.runner import RunError

    imgs, _ = _pool(tmp_path / "A", 0, n=1)
    # lps-duts was trained on deep_features (EfficientNet-Lite0 taps); the default features are U2-Netp's.
    params, _ = build_params(None, ["lps.model=lps-duts", "lps.prior=contrast"])
    report = run(["lps"], params, RunOptions(out=tmp_path / "o", jobs=1, progress=False, echo=lambda _: None,
                                             pool=imgs))
    lps = {s.name: s for s in report.stages}["lps"]
    assert lps.failed == 1
    assert any("trained on deep_features" in p for p in report.problems)
    with pytest.raises(RunError, match="lps.features = .u2netp.: expected a feature stage"):
        params, _ = build_params(None, ["lps.features=u2netp"])
        run(["lps"], params, RunOptions(out=tmp_path / "o2", jobs=1, progress=False, echo=lambda _: None,
                                        pool=imgs))
