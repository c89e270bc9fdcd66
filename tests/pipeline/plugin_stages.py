"""Small stages registered only by the tests (through PIPELINE_PLUGINS), to exercise the runner."""

import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.registry import ModelSlot, Resources, Stage, register


@dataclass(frozen=True)
class MeanParams:
    scale: float = 1.0


def run_mean(inputs, params, ctx):
    image = inputs["pool"]["image"].astype(np.float32)
    gray = image.mean(axis=2) / 255.0
    return {"map": np.clip(gray * params.scale, 0, 1).astype(np.float32)}


@dataclass(frozen=True)
class SlowParams:
    delay: float = 0.0
    fail_on: str = ""
    crash_on: str = ""


def run_slow(inputs, params, ctx):
    import os

    time.sleep(params.delay)
    image = inputs["pool"]["image"]
    if params.fail_on and image.shape[0] == int(params.fail_on):
        raise ValueError(f"refusing images of height {params.fail_on}")
    if params.crash_on and image.shape[0] == int(params.crash_on):
        os._exit(3)  # a worker dying in native code
    # the threads the runner gave this worker (a speed hint, never part of a key)
    return {"map": (image[..., 0] / 255.0).astype(np.float32), "threads": np.int64(ctx.threads or -1)}


@dataclass(frozen=True)
class NoParams:
    pass


def run_after(inputs, params, ctx):
    return {"map": (1.0 - inputs["test_mean"]["map"]).astype(np.float32)}


def run_count(inputs, params, ctx):
    maps = inputs["test_mean"]
    return {"stems": np.array(sorted(maps)), "means": np.array([maps[s]["map"].mean() for s in sorted(maps)])}


def run_batch(batch, params, ctx):
    return [{"map": (b["pool"]["image"][..., 1] / 255.0).astype(np.float32)} for b in batch]


register(Stage("test_mean", "1", ("pool",), MeanParams, "image", run_mean, doc="test", produces_map=True))
register(Stage("test_slow", "1", ("pool",), SlowParams, "image", run_slow, doc="test", produces_map=True))
register(Stage("test_after", "1", ("test_mean",), NoParams, "image", run_after, doc="test", produces_map=True))
register(Stage("test_count", "1", ("test_mean",), NoParams, "pool", run_count, doc="test"))
register(Stage("test_batch", "1", ("pool",), NoParams, "image", run_batch, doc="test", produces_map=True, batched=True,
               resources=Resources(cpu_batch=3)))


@dataclass(frozen=True)
class PromoteParams:
    prior: str = "test_mean"


def run_promote(inputs, params, ctx):
    return {"map": np.sqrt(inputs[params.prior]["map"]).astype(np.float32)}


register(Stage("test_promote", "1", ("pool",), PromoteParams, "image", run_promote, doc="test",
               produces_map=True, prior_params=("prior",)))


# ---- a toy learned stage: per-pixel logistic regression of colour -> GT, trained on a pool


@dataclass(frozen=True)
class ColourFitParams:
    """Trainer of ``test_colour``.

    Parameters
    ----------
    seed : int
        Seed of the pixel sampling.
    pixels : int
        Pixels sampled per image.
    delay : float
        Seconds of sleep before fitting (for the fault tests).
    """

    seed: int = 0
    pixels: int = 200
    delay: float = 0.0


def run_colour_fit(inputs, params, ctx):
    from sklearn.linear_model import LogisticRegression

    from pipeline.models import model_result

    time.sleep(params.delay)
    rng = np.random.default_rng(params.seed)
    xs, ys = [], []
    for stem in sorted(inputs["gt"]):
        image = inputs["pool"][stem]["image"].reshape(-1, 3) / 255.0
        mask = inputs["gt"][stem]["mask"].reshape(-1)
        pick = rng.choice(mask.size, size=min(params.pixels, mask.size), replace=False)
        xs.append(image[pick])
        ys.append(mask[pick])
    x, y = np.concatenate(xs), np.concatenate(ys)
    clf = LogisticRegression().fit(x, y)
    return model_result({"coef": clf.coef_[0], "intercept": clf.intercept_},
                        {"stage": "test_colour", "hparams": {"inputs": "rgb"},
                         "training": {"seconds": 0.01, "data": {"images": len(xs)}},
                         "validation": {"train_accuracy": float(clf.score(x, y))}})


@dataclass(frozen=True)
class ColourParams:
    """A toy learned detector.

    Parameters
    ----------
    model : str
        ``train``, a model file, or a shipped model name.
    """

    model: str = "toy-colour"


def run_colour(inputs, params, ctx):
    model = ctx.model.load()
    image = inputs["pool"]["image"] / 255.0
    z = image @ model.arrays["coef"] + model.arrays["intercept"][0]
    ref = ctx.model  # where the model came from, as the runner resolved it
    return {"map": (1.0 / (1.0 + np.exp(-z))).astype(np.float32), "model_source": np.array(ref.source),
            "model_name": np.array(ref.name), "model_digest": np.array(ref.digest)}


register(Stage("test_colour_fit", "1", ("pool", "gt"), ColourFitParams, "pool", run_colour_fit, doc="test"))
register(Stage("test_colour", "1", ("pool",), ColourParams, "image", run_colour, doc="test", produces_map=True,
               learned=ModelSlot(trainer="test_colour_fit")))
register(Stage("test_after_colour", "1", ("test_colour",), NoParams, "image",
               lambda inputs, params, ctx: {"map": (1.0 - inputs["test_colour"]["map"]).astype(np.float32)},
               doc="test", produces_map=True))


# ---- a toy pair stage over its own pair table


def run_pair_table(inputs, params, ctx):
    stems = sorted(inputs["pool"])
    n = len(stems)
    index = np.array([[(i + 1) % n, (i + 2) % n] for i in range(n)], dtype=np.int64) if n > 2 else \
        np.full((n, 2), -1, np.int64)
    return {"stems": np.array(stems), "index": index}


def run_pair_diff(inputs_a, inputs_b, inputs_pair, params, ctx):
    a, b = inputs_a["test_mean"]["map"], inputs_b["test_mean"]["map"]
    return {"diff": np.float64(a.mean() - b.mean()), "target": np.array(ctx.item[0]), "other": np.array(ctx.item[1])}


register(Stage("test_pair_table", "1", ("pool",), NoParams, "pool", run_pair_table, doc="test"))
register(Stage("test_pair_diff", "1", ("test_mean",), NoParams, "pair", run_pair_diff, doc="test",
               pairs_from="test_pair_table"))


# ---- slow stages of each kind, for the fault tests (SIGKILL at random points)


@dataclass(frozen=True)
class DelayParams:
    delay: float = 0.0


def run_fault_pair(inputs_a, inputs_b, inputs_pair, params, ctx):
    time.sleep(params.delay)
    a, b = inputs_a["test_slow"]["map"], inputs_b["test_slow"]["map"]
    return {"diff": np.float64(a.mean() - b.mean())}


def run_fault_pool(inputs, params, ctx):
    time.sleep(params.delay)
    maps = inputs["test_slow"]
    return {"means": np.array([maps[s]["map"].mean() for s in sorted(maps)])}


register(Stage("test_fault_pair", "1", ("test_slow",), DelayParams, "pair", run_fault_pair, doc="test",
               pairs_from="test_pair_table"))
register(Stage("test_fault_pool", "1", ("test_slow",), DelayParams, "pool", run_fault_pool, doc="test"))


# ---- an unstored stage (recomputed by its consumers) and its consumers


@dataclass(frozen=True)
class UnstoredParams:
    offset: float = 0.0
    fail_on: str = ""


def run_unstored(inputs, params, ctx):
    image = inputs["pool"]["image"]
    if params.fail_on and image.shape[0] == int(params.fail_on):
        raise ValueError(f"refusing images of height {params.fail_on}")
    return {"big": image.astype(np.float32) / 255.0 + params.offset}


def run_uses_unstored(inputs, params, ctx):
    return {"map": np.clip(inputs["test_unstored"]["big"].mean(axis=2), 0, 1).astype(np.float32)}


def run_pool_of_unstored(inputs, params, ctx):
    big = inputs["test_unstored"]
    return {"sums": np.array([big[s]["big"].sum() for s in sorted(big)])}


register(Stage("test_unstored", "1", ("pool",), UnstoredParams, "image", run_unstored, doc="test", store=False))
register(Stage("test_uses_unstored", "1", ("test_unstored",), NoParams, "image", run_uses_unstored, doc="test",
               produces_map=True))
register(Stage("test_pool_of_unstored", "1", ("test_unstored",), NoParams, "pool", run_pool_of_unstored, doc="test"))


# ---- stages for the runner's claims (tests/pipeline/test_runner_claims.py)


def run_pid(inputs, params, ctx):
    import os

    import cv2

    image = inputs["pool"]["image"]
    # where it ran, and with the threads the runner gave it (OpenCV's pool, limited by the runner)
    return {"map": (image[..., 2] / 255.0).astype(np.float32), "pid": np.int64(os.getpid()),
            "threads": np.int64(ctx.threads or -1), "cv2_threads": np.int64(cv2.getNumThreads()),
            "device": np.array(ctx.device), "thread": np.int64(__import__("threading").get_ident())}


def run_pool_thread(inputs, params, ctx):
    import os
    import threading

    return {"pid": np.int64(os.getpid()), "thread": np.int64(threading.get_ident()), "n": np.int64(len(inputs["pool"]))}


def run_batch_ctx(batch, params, ctx):
    # each result records the batch it was computed in (ctx.item of a batch: its items, in order)
    return [{"map": (b["pool"]["image"][..., 0] / 255.0).astype(np.float32), "batch": np.array(ctx.item)}
            for b in batch]


@dataclass(frozen=True)
class BadOutputParams:
    kind: str = ""  # what img1 (the image of height 24) returns: list, int_map, cube, above_one, negative, nan, no_map


def run_bad_output(inputs, params, ctx):
    image = inputs["pool"]["image"]
    good = (image[..., 0] / 255.0).astype(np.float32)
    if image.shape[0] != 24:
        return {"map": good}
    return {
        "list": lambda: [good],
        "int_map": lambda: {"map": (good * 255).astype(np.int32)},
        "cube": lambda: {"map": np.stack([good, good], axis=2)},
        "above_one": lambda: {"map": good + 0.5},
        "negative": lambda: {"map": good - 0.5},
        "nan": lambda: {"map": np.where(good > 0.5, np.nan, good).astype(np.float32)},
        "no_map": lambda: {"values": good},
    }[params.kind]()


def run_pool_fail(inputs, params, ctx):
    raise ValueError("this pool stage always fails")


@dataclass(frozen=True)
class PathParams:
    table: str = field(default="", metadata={"path": True})


def _table_value(path: str) -> float:
    return len(open(path, "rb").read()) / 100.0 if path else 0.0


def run_path_image(inputs, params, ctx):
    return {"map": np.clip(inputs["test_mean"]["map"] + _table_value(params.table), 0, 1).astype(np.float32)}


def run_path_pair(inputs_a, inputs_b, inputs_pair, params, ctx):
    return {"value": np.float64(_table_value(params.table))}


register(Stage("test_pid", "1", ("pool",), NoParams, "image", run_pid, doc="test", produces_map=True))
register(Stage("test_pool_thread", "1", ("pool",), NoParams, "pool", run_pool_thread, doc="test"))
register(Stage("test_batch_ctx", "1", ("pool",), NoParams, "image", run_batch_ctx, doc="test", produces_map=True,
               batched=True, resources=Resources(cpu_batch=3)))
register(Stage("test_batch_gpu", "1", ("pool",), NoParams, "image", run_batch_ctx, doc="test", produces_map=True,
               batched=True, resources=Resources(wants_gpu=True, cpu_batch=3, gpu_batch=2)))
# not batched: a cpu_batch hint of an unbatched stage must not group its items
register(Stage("test_grouped_hint", "1", ("pool",), NoParams, "image", run_pid, doc="test", produces_map=True,
               resources=Resources(cpu_batch=3)))
register(Stage("test_bad_output", "1", ("pool",), BadOutputParams, "image", run_bad_output, doc="test",
               produces_map=True))
register(Stage("test_pool_fail", "1", ("pool",), NoParams, "pool", run_pool_fail, doc="test"))
register(Stage("test_path_image", "1", ("test_mean",), PathParams, "image", run_path_image, doc="test",
               produces_map=True))
register(Stage("test_path_pair", "1", ("test_mean",), PathParams, "pair", run_path_pair, doc="test",
               pairs_from="test_pair_table"))


def run_path_pool(inputs, params, ctx):
    return {"value": np.float64(_table_value(params.table)), "n": np.int64(len(inputs["test_mean"])),
            "item": np.array(ctx.item)}


def run_pair_of_pair(inputs_a, inputs_b, inputs_pair, params, ctx):
    mean = float(inputs_a["test_mean"]["map"].mean())
    return {"double": np.float64(2.0 * float(inputs_pair["test_pair_diff"]["diff"])), "mean_a": np.float64(mean)}


def run_pair_fail(inputs_a, inputs_b, inputs_pair, params, ctx):
    if ctx.item[0] == "img1":
        raise ValueError("refusing pairs of img1")
    return {"diff": np.float64(float(inputs_a["test_mean"]["map"].mean() - inputs_b["test_mean"]["map"].mean()))}


def run_pair_after_fail(inputs_a, inputs_b, inputs_pair, params, ctx):
    return {"diff": inputs_pair["test_pair_fail"]["diff"], "mean_b": np.float64(inputs_b["test_mean"]["map"].mean())}


def run_unstored_batched(batch, params, ctx):
    if ctx.device != "cpu":  # it reads its context, as a torch stage reads its device
        raise ValueError("test_unstored_batched runs on the CPU only")
    return [{"big": b["pool"]["image"].astype(np.float32) / 255.0 + params.offset} for b in batch]


def run_uses_unstored_batched(inputs, params, ctx):
    return {"map": np.clip(inputs["test_unstored_batched"]["big"].mean(axis=2), 0, 1).astype(np.float32)}


def run_empty_error(inputs, params, ctx):
    raise ValueError()  # no message: the report names the error type


register(Stage("test_path_pool", "1", ("test_mean",), PathParams, "pool", run_path_pool, doc="test"))
# an image input listed before the pair input
register(Stage("test_pair_of_pair", "1", ("test_mean", "test_pair_diff"), NoParams, "pair", run_pair_of_pair,
               doc="test", pairs_from="test_pair_table"))
register(Stage("test_pair_fail", "1", ("test_mean",), NoParams, "pair", run_pair_fail, doc="test",
               pairs_from="test_pair_table"))
# the pair input listed before the image input
register(Stage("test_pair_after_fail", "1", ("test_pair_fail", "test_mean"), NoParams, "pair", run_pair_after_fail,
               doc="test", pairs_from="test_pair_table"))
register(Stage("test_unstored_batched", "1", ("pool",), UnstoredParams, "image", run_unstored_batched, doc="test",
               store=False, batched=True, resources=Resources(cpu_batch=2)))
register(Stage("test_uses_unstored_batched", "1", ("test_unstored_batched",), NoParams, "image",
               run_uses_unstored_batched, doc="test", produces_map=True))
register(Stage("test_empty_error", "1", ("pool",), NoParams, "image", run_empty_error, doc="test", produces_map=True))


def run_batch_short(batch, params, ctx):
    return [{"map": (batch[0]["pool"]["image"][..., 0] / 255.0).astype(np.float32)}]  # one result per batch


@dataclass(frozen=True)
class WarnParams:
    fail: bool = False


def run_warn(inputs, params, ctx):
    import warnings

    warnings.warn(f"{ctx.item} looks odd")
    if params.fail:
        raise ValueError("and fails")
    return {"map": (inputs["pool"]["image"][..., 0] / 255.0).astype(np.float32)}


register(Stage("test_batch_short", "1", ("pool",), NoParams, "image", run_batch_short, doc="test", produces_map=True,
               batched=True, resources=Resources(cpu_batch=3)))
register(Stage("test_warn", "1", ("pool",), WarnParams, "image", run_warn, doc="test", produces_map=True))
