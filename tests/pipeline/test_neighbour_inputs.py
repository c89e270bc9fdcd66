"""Image stages that read their neighbours (``Stage(neighbour_inputs=...)``): the neighbours' image
results and the pairs' results arrive in table order, a neighbour with a failed input is left out,
and a change of a neighbour's or a pair's result recomputes the image."""

from dataclasses import dataclass

import numpy as np
import pytest

from pipeline import registry
from pipeline.registry import NeighbourInputs, Stage
from tests.pipeline.conftest import run_stages


@dataclass(frozen=True)
class _NoParams:
    pass


def _read_neighbours(inputs, neighbours, params, ctx):
    own = inputs["test_slow"]["map"]
    return {"stem": np.array(ctx.item),
            "heights": np.array([nb["test_slow"]["map"].shape[0] for nb in neighbours], np.int64),
            "diffs": np.array([nb["test_fault_pair"]["diff"] for nb in neighbours], np.float64),
            "own_mean": np.float64(own.mean())}


@pytest.fixture
def neighbour_stage():
    registry.all_stages()  # the built-in stages first: they stay
    saved = dict(registry._REGISTRY)
    registry.register(Stage("test_neighbours", "1", ("test_slow",), _NoParams, "image", _read_neighbours,
                            doc="test", neighbour_inputs=NeighbourInputs("test_pair_table",
                                                                         ("test_slow", "test_fault_pair"))))
    yield "test_neighbours"
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def _results(out, name="test_neighbours"):
    """Each computed item's result, by stem."""
    from pipeline.cache import Cache

    cache = Cache(out)
    results = (cache.load(name, p.stem) for p in (cache.root / name).glob("*.npz"))
    return {str(r["stem"]): r for r in results}


def _heights(pool):
    from PIL import Image

    return {p.stem: Image.open(p).size[1] for p in pool.iterdir()}


def test_neighbours_arrive_in_table_order_with_their_pair_results(tiny_pool, tmp_path, neighbour_stage):
    stages, _, _ = run_stages([neighbour_stage], tmp_path / "o", pool=tiny_pool)
    assert stages[neighbour_stage].computed == 4
    h = _heights(tiny_pool)
    stems = sorted(h)
    got = _results(tmp_path / "o")
    slow = lambda s: np.asarray(__import__("PIL.Image").Image.open(tiny_pool / f"{s}.png"))[..., 0] / 255.0
    for i, s in enumerate(stems):  # test_pair_table: neighbours (i + 1) % n, (i + 2) % n
        others = [stems[(i + 1) % 4], stems[(i + 2) % 4]]
        np.testing.assert_array_equal(got[s]["heights"], [h[o] for o in others])
        # the pair results are those of (s, other): test_fault_pair's mean difference
        want = [slow(s).astype(np.float32).mean() - slow(o).astype(np.float32).mean() for o in others]
        np.testing.assert_allclose(got[s]["diffs"], want, atol=1e-3)


def test_a_neighbour_with_a_failed_input_is_left_out_and_changes_recompute(tiny_pool, tmp_path, neighbour_stage):
    h = _heights(tiny_pool)
    stems = sorted(h)
    failing = stems[0]
    stages, _, _ = run_stages([neighbour_stage], tmp_path / "o", [f"test_slow.fail_on={h[failing]}"], pool=tiny_pool)
    rep = stages[neighbour_stage]
    assert rep.computed == 3 and rep.skipped == 1  # the failed image itself has no own input
    got = _results(tmp_path / "o")
    assert failing not in got
    # stems[3] and stems[2] had it as a neighbour ((i + 1) % 4, (i + 2) % 4): they keep the other
    assert [len(got[s]["heights"]) for s in stems[1:]] == [2, 1, 1]
    again, _, _ = run_stages([neighbour_stage], tmp_path / "o", [f"test_slow.fail_on={h[failing]}"], pool=tiny_pool)
    assert again[neighbour_stage].cached == 3 and again[neighbour_stage].computed == 0
    changed, _, _ = run_stages([neighbour_stage], tmp_path / "o",
                               [f"test_slow.fail_on={h[failing]}", "test_fault_pair.delay=0.001"], pool=tiny_pool)
    assert changed[neighbour_stage].computed == 3  # a pair's result changed: its image is recomputed


def test_only_unbatched_stored_image_stages_read_neighbours():
    nb = NeighbourInputs("test_pair_table", ("test_slow",))
    for kw in ({"granularity": "pool"}, {"granularity": "image", "batched": True}):
        with pytest.raises(ValueError, match="only unbatched, stored image stages read neighbour inputs"):
            Stage("bad", "1", ("test_slow",), _NoParams, func=_read_neighbours, neighbour_inputs=nb, **kw)
    stage = Stage("ok", "1", ("test_slow",), _NoParams, "image", _read_neighbours, neighbour_inputs=nb)
    assert stage.all_inputs(_NoParams()) == ("test_slow", "test_pair_table")
