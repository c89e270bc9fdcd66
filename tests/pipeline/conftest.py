import numpy as np
import pytest
from PIL import Image

from pipeline import registry

registry.load_plugins("tests.pipeline.plugin_stages")


def run_stages(names, out, sets=(), **kw):
    """Run stages through the Python API with quiet options; (reports by stage, notice lines, report)."""
    from pipeline.config import build_params
    from pipeline.runner import RunOptions, run

    params, _ = build_params(None, list(sets))
    lines = []
    opts = RunOptions(out=out, jobs=kw.pop("jobs", 1), progress=False, echo=lines.append, **kw)
    report = run(names, params, opts)
    return {s.name: s for s in report.stages}, lines, report


def square_pool(folder, seed, n=4):
    """``n`` 40 x 48 images of a bright square (shifted by one row each) on dark noise, with their
    masks: ``(folder/images, folder/gt)``."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "gt").mkdir()
    for i in range(n):
        img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
        mask = np.zeros((40, 48), bool)
        mask[10 + i:28 + i, 12:34] = True
        img[mask] = rng.integers(170, 255, (mask.sum(), 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / "images" / f"im{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "gt" / f"im{i}.png")
    return folder / "images", folder / "gt"


def write_image(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture
def tiny_pool(tmp_path):
    """Four small, distinct RGB images."""
    pool = tmp_path / "pool"
    pool.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(20, 30), (24, 24), (18, 26), (22, 28)]):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        write_image(pool / f"img{i}.png", arr)
    return pool
