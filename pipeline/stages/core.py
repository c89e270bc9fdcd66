"""The foundation's stages: ``pool`` (each image), ``priors`` (the user's maps), ``gt`` (masks).

``pool`` is not stored (``store=False``): decoding an image again costs milliseconds, storing it a
third of a megabyte per image. Every image is still read and checked once per run by the stage
itself, so a bad file is reported once, and a consumer's worker decodes the image when it reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.pool import BadInput, load_image, load_map
from pipeline.registry import Stage, param, register


@dataclass(frozen=True)
class PoolParams:
    """Parameters of the ``pool`` stage.

    Parameters
    ----------
    max_side : int
        Images whose longer side exceeds this many pixels are downscaled (0 = never).
    """

    max_side: int = param(2048, ge=0)


def run_pool(inputs, params: PoolParams, ctx):
    return {"image": load_image(ctx.file, max_side=params.max_side)}


register(Stage(
    name="pool", version="1", inputs=(), params=PoolParams, granularity="image", func=run_pool,
    method=load_image, file_input="image", store=False,
    doc="read each image of the pool as (H, W, 3) uint8 RGB (gray/RGBA/16-bit/palette converted)",
))


@dataclass(frozen=True)
class UserPriorParams:
    """The ``priors`` stage has no parameters: its maps come from ``--priors DIR`` (matched by stem)."""


def run_user_prior(inputs, params: UserPriorParams, ctx):
    image = inputs["pool"]["image"]
    return {"map": load_map(ctx.file, shape=image.shape[:2])}


register(Stage(
    name="priors", version="1", inputs=("pool",), params=UserPriorParams, granularity="image",
    func=run_user_prior, produces_map=True, file_input="prior", run_input="priors",
    doc="the user's saliency maps from --priors DIR (matched by stem, resized to the image)",
))


@dataclass(frozen=True)
class GtParams:
    """The ``gt`` stage has no parameters: masks come from ``--gt DIR``, binarised as the evaluation does."""


# A mask whose aspect ratio differs from its image's by more than this belongs to another image.
_ASPECT_TOLERANCE = 0.02


def run_gt(inputs, params: GtParams, ctx):
    """One mask -> ``{"mask": (H, W) bool}`` at the pool image's size.

    Binarised at > 128 of 255 exactly as the evaluation (``pipeline.evaluation.io.normalize_gt``).
    A mask of the image's original size (the pool stage downscaled an image larger than
    ``pool.max_side``) is resized with nearest neighbour; a mask of another shape is refused.
    """
    import cv2

    from pipeline.evaluation.io import normalize_gt, read_stored

    image = inputs["pool"]["image"]
    mask, _ = normalize_gt(read_stored(ctx.file))
    h, w = image.shape[:2]
    if mask.shape != (h, w):
        mh, mw = mask.shape
        if abs(mw / mh - w / h) > _ASPECT_TOLERANCE * (w / h):
            raise BadInput(f"{ctx.file}: mask of size {mw}x{mh} does not fit its image of size {w}x{h}")
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return {"mask": mask > 0}


register(Stage(
    name="gt", version="1", inputs=("pool",), params=GtParams, granularity="image", func=run_gt,
    file_input="gt", run_input="gt",
    doc="ground-truth masks from --gt DIR (matched by stem), binarised at 128 like the evaluation",
))

__all__ = ["PoolParams", "UserPriorParams", "GtParams"]
