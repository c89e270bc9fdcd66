"""The foundation's stages: ``pool`` (load and normalise every image) and ``priors`` (user maps)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.pool import load_image, load_map
from pipeline.registry import Stage, register


@dataclass(frozen=True)
class PoolParams:
    """Parameters of the ``pool`` stage.

    max_side : images whose longer side exceeds this are downscaled (0 = never).
    """

    max_side: int = 2048

    def __post_init__(self):
        if self.max_side < 0:
            raise ValueError(f"max_side must be >= 0, got {self.max_side}")


def run_pool(inputs, params: PoolParams):
    return {"image": load_image(inputs["__file__"], max_side=params.max_side)}


register(
    Stage(
        name="pool",
        version="1",
        inputs=(),
        params=PoolParams,
        granularity="image",
        func=run_pool,
        file_input="image",
        doc="read each image of the pool as (H, W, 3) uint8 RGB (gray/RGBA/16-bit/palette converted)",
    )
)


@dataclass(frozen=True)
class UserPriorParams:
    """The ``priors`` stage has no parameters: its maps come from ``--priors DIR`` (matched by stem)."""


def run_user_prior(inputs, params: UserPriorParams):
    image = inputs["pool"]["image"]
    return {"map": load_map(inputs["__file__"], shape=image.shape[:2])}


register(
    Stage(
        name="priors",
        version="1",
        inputs=("pool",),
        params=UserPriorParams,
        granularity="image",
        func=run_user_prior,
        produces_map=True,
        file_input="prior",
        run_input="priors",
        doc="the user's saliency maps from --priors DIR (matched by stem, resized to the image)",
    )
)
