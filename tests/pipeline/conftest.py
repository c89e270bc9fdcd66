import numpy as np
import pytest
from PIL import Image

from pipeline import registry

registry.load_plugins("tests.pipeline.plugin_stages")


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
