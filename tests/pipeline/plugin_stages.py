"""Small stages registered only by the tests (through PIPELINE_PLUGINS), to exercise the runner."""

import time
from dataclasses import dataclass

import numpy as np

from pipeline.registry import Stage, register


@dataclass(frozen=True)
class MeanParams:
    scale: float = 1.0


def run_mean(inputs, params):
    image = inputs["pool"]["image"].astype(np.float32)
    gray = image.mean(axis=2) / 255.0
    return {"map": np.clip(gray * params.scale, 0, 1).astype(np.float32)}


@dataclass(frozen=True)
class SlowParams:
    delay: float = 0.0
    fail_on: str = ""


def run_slow(inputs, params):
    time.sleep(params.delay)
    image = inputs["pool"]["image"]
    if params.fail_on and image.shape[0] == int(params.fail_on):
        raise ValueError(f"refusing images of height {params.fail_on}")
    return {"map": (image[..., 0] / 255.0).astype(np.float32)}


@dataclass(frozen=True)
class NoParams:
    pass


def run_after(inputs, params):
    return {"map": (1.0 - inputs["test_mean"]["map"]).astype(np.float32)}


def run_count(inputs, params):
    maps = inputs["test_mean"]
    return {"stems": np.array(sorted(maps)), "means": np.array([maps[s]["map"].mean() for s in sorted(maps)])}


def run_batch(batch, params):
    return [{"map": (b["pool"]["image"][..., 1] / 255.0).astype(np.float32)} for b in batch]


register(Stage("test_mean", "1", ("pool",), MeanParams, "image", run_mean, doc="test", produces_map=True))
register(Stage("test_slow", "1", ("pool",), SlowParams, "image", run_slow, doc="test", produces_map=True))
register(Stage("test_after", "1", ("test_mean",), NoParams, "image", run_after, doc="test", produces_map=True))
register(Stage("test_count", "1", ("test_mean",), NoParams, "pool", run_count, doc="test"))
register(Stage("test_batch", "1", ("pool",), NoParams, "image", run_batch, doc="test", produces_map=True, batch=3))


@dataclass(frozen=True)
class PromoteParams:
    prior: str = "test_mean"


def run_promote(inputs, params):
    return {"map": np.sqrt(inputs[params.prior]["map"]).astype(np.float32)}


register(Stage("test_promote", "1", ("pool",), PromoteParams, "image", run_promote, doc="test",
               produces_map=True, prior_params=("prior",)))
