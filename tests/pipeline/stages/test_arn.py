"""ARN stages through the runner: training on a pool's --gt, applying the trained model, the model
file round trip and the shipped model on a plain pool."""

import numpy as np
from PIL import Image

from tests.pipeline.conftest import run_stages, square_pool

SMALL = ["arn_fit.widths=[2,2,4,4]", "arn_fit.rcl_steps=1", "arn_fit.epochs=3", "arn_fit.batch_size=2",
         "arn_fit.learning_rate=0.01"]


def test_arn_trains_on_the_pools_ground_truth_and_its_model_file_is_reused(tmp_path):
    imgs, gt = square_pool(tmp_path / "A", 0)
    stages, _, _ = run_stages(["arn"], tmp_path / "o", ["arn.model=train", *SMALL], pool=imgs, gt=gt)
    assert stages["arn_fit"].computed == 1 and stages["arn"].computed == 4
    out = np.asarray(Image.open(tmp_path / "o" / "arn" / "im0.png"))
    assert out.shape == (40, 48)  # back at the image's size
    from pipeline import models
    from pipeline.cache import Cache

    model_file = next((Cache(tmp_path / "o").root / "arn_fit").glob("*.npz"))
    meta = models.read_meta(model_file)
    assert meta["stage"] == "arn" and meta["hparams"]["widths"] == [2, 2, 4, 4]
    stages, _, _ = run_stages(["arn"], tmp_path / "o2", [f"arn.model={model_file}"], pool=imgs)
    assert stages["arn"].computed == 4 and "arn_fit" not in stages
    again = np.asarray(Image.open(tmp_path / "o2" / "arn" / "im0.png"))
    np.testing.assert_array_equal(again, out)  # the same model, the same map


def test_the_shipped_arn_model_runs_on_a_plain_pool(tmp_path):
    from pipeline import models

    entry = models.shipped_models()["arn-duts"]
    assert entry.stage == "arn" and entry.card is not None and entry.card.is_file()
    imgs, gt = square_pool(tmp_path / "A", 0, n=1)
    stages, _, _ = run_stages(["arn"], tmp_path / "o", [], pool=imgs)  # default: model arn-duts, no --gt
    assert stages["arn"].computed == 1 and "arn_fit" not in stages
    out = np.asarray(Image.open(tmp_path / "o" / "arn" / "im0.png"), np.float32) / 255
    mask = np.asarray(Image.open(gt / "im0.png")) > 128
    assert out.shape == mask.shape
    assert out[mask].mean() > out[~mask].mean() + 0.2  # the bright square on dark noise is the object
