"""LDPS stages through the runner: self-supervised training on a pool's own priors (no --gt),
promotion with the trained and the shipped model, the single-image mode and the empty-FG notice."""

import numpy as np
from PIL import Image

from tests.pipeline.conftest import run_stages, square_pool

_pool = square_pool


def _priors(folder, images, value=None):
    """Prior maps by stem: the object square confident, a wavering strip, or a constant map."""
    folder.mkdir()
    for p in sorted(images.iterdir()):
        img = np.asarray(Image.open(p))
        m = (img.mean(axis=2) > 128).astype(np.float32)
        prior = np.where(m > 0, 0.97, 0.04) if value is None else np.full(m.shape, value)
        Image.fromarray((prior * 255).astype(np.uint8)).save(folder / p.name)
    return folder


def test_ldps_trains_on_the_pools_own_priors_without_ground_truth(tmp_path):
    imgs, _ = _pool(tmp_path / "A", 0)
    priors = _priors(tmp_path / "maps", imgs)
    sets = ["ldps.model=train", "ldps.prior=priors", "ldps_fit.epochs=2",
            "ldps_fit.batch_size=2", "ldps_fit.channels=4", "ldps_fit.hidden=4"]
    stages, _, _ = run_stages(["ldps"], tmp_path / "o", sets, pool=imgs, priors=priors)
    assert stages["ldps_fit"].computed == 1 and stages["ldps"].computed == 4
    assert "u2netp" not in stages  # the trainer followed ldps.prior to the user's maps
    out = np.asarray(Image.open(tmp_path / "o" / "ldps" / "im0.png"))
    assert out.shape == (40, 48)
    from pipeline import models
    from pipeline.cache import Cache

    model_file = next((Cache(tmp_path / "o").root / "ldps_fit").glob("*.npz"))
    assert models.read_meta(model_file)["stage"] == "ldps"
    stages, _, _ = run_stages(["ldps"], tmp_path / "o2", [f"ldps.model={model_file}", "ldps.prior=priors"],
                              pool=imgs, priors=priors)
    assert stages["ldps"].computed == 4 and "ldps_fit" not in stages


def test_the_shipped_ldps_model_and_the_single_image_mode_run_on_a_plain_pool(tmp_path):
    from pipeline import models

    for name in ("ldps-u2netp-duts", "ldps-duts"):
        entry = models.shipped_models()[name]
        assert entry.stage == "ldps" and entry.card is not None and entry.card.is_file()
    imgs, gt = _pool(tmp_path / "A", 0, n=1)
    stages, _, _ = run_stages(["ldps", "ldps_single"], tmp_path / "o", ["ldps_single.steps=3"], pool=imgs)
    assert stages["ldps"].computed == 1 and stages["ldps_single"].computed == 1 and stages["u2netp"].computed == 1
    # The default model reads the U2-Netp decoder taps; the single-image mode the ImageNet backbone's.
    assert stages["u2netp_features"].computed == 1 and stages["deep_features"].computed == 1
    mask = np.asarray(Image.open(gt / "im0.png")) > 128
    out = np.asarray(Image.open(tmp_path / "o" / "ldps_single" / "im0.png"), np.float32) / 255
    assert out[mask].mean() > out[~mask].mean() + 0.3  # the bright square is the object
    # U2-Netp hardly sees this synthetic square (mean 0.29 inside, one pixel above theta_fg), and
    # its taps carry the same view; the ImageNet taps of ldps-duts relate the square to that pixel.
    stages, _, _ = run_stages(["ldps"], tmp_path / "o2", ["ldps.model=ldps-duts", "ldps.features=deep_features"],
                              pool=imgs)
    out = np.asarray(Image.open(tmp_path / "o2" / "ldps" / "im0.png"), np.float32) / 255
    assert out[mask].mean() > out[~mask].mean() + 0.3
    assert stages["ldps"].computed == 1 and stages["deep_features"].computed == 1 and "u2netp_features" not in stages


def test_a_prior_without_confident_foreground_is_kept_with_a_notice(tmp_path):
    imgs, _ = _pool(tmp_path / "A", 0, n=1)
    priors = _priors(tmp_path / "maps", imgs, value=0.5)
    stages, lines, _ = run_stages(["ldps"], tmp_path / "o", ["ldps.prior=priors"], pool=imgs, priors=priors)
    assert stages["ldps"].computed == 1
    assert any("no location above theta_fg" in line for line in lines)
    out = np.asarray(Image.open(tmp_path / "o" / "ldps" / "im0.png"))
    assert np.abs(out.astype(int) - 127).max() <= 1  # the prior's 0.5, unchanged


def test_the_trainer_follows_the_promoters_prior_unless_its_own_is_set():
    from pipeline.config import build_params

    params, _ = build_params(None, ["ldps.prior=priors"])
    assert params["ldps_fit"].prior == "priors"
    params, _ = build_params(None, ["ldps.prior=priors", "ldps_fit.prior=contrast"])
    assert params["ldps_fit"].prior == "contrast" and params["ldps"].prior == "priors"
    params, _ = build_params(None, [])
    assert params["ldps_fit"].prior == params["ldps"].prior == "u2netp"


def test_ldps_trains_and_promotes_on_u2netp_features(tmp_path):
    from pipeline.cache import Cache
    from pipeline.models import load_model

    imgs, _ = _pool(tmp_path / "A", 0)
    priors = _priors(tmp_path / "maps", imgs)
    sets = ["ldps.model=train", "ldps.prior=priors", "ldps.features=u2netp_features", "ldps_fit.epochs=1",
            "ldps_fit.batch_size=2", "ldps_fit.channels=4", "ldps_fit.hidden=4"]
    stages, _, _ = run_stages(["ldps", "ldps_single"], tmp_path / "o", [*sets, "ldps_single.features=u2netp_features",
                                                                       "ldps_single.steps=2"], pool=imgs, priors=priors)
    # The trainer follows ldps.features; no stage reads the ImageNet backbone's taps.
    assert stages["u2netp_features"].computed == 4 and stages["ldps_fit"].computed == 1
    assert stages["ldps"].computed == 4 and stages["ldps_single"].computed == 4 and "deep_features" not in stages
    model = load_model(next((Cache(tmp_path / "o").root / "ldps_fit").glob("*.npz")))
    # U2-Netp caches no stride-2 tap: the network fuses the four it has, on the 320 / 4 grid.
    assert model.meta["features"] == "u2netp_features" and model.hparams["input_size"] == 320
    assert model.hparams["taps"] == ["s4", "s8", "s16", "s32"]


def test_ldps_refuses_features_its_model_was_not_trained_on(tmp_path):
    imgs, _ = _pool(tmp_path / "A", 0, n=1)
    priors = _priors(tmp_path / "maps", imgs)
    # ldps-duts was trained on deep_features (its meta predates the field: the fallback says so).
    stages, _, report = run_stages(["ldps"], tmp_path / "o", ["ldps.prior=priors", "ldps.features=u2netp_features",
                                                              "ldps.model=ldps-duts"], pool=imgs, priors=priors)
    assert stages["ldps"].failed == 1
    assert any("trained on deep_features" in p and "--set ldps.features=deep_features" in p
               for p in report.problems)
