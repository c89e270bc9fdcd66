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
