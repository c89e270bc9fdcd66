"""Promoter stages: an image plus a prior map (any map stage, or the user's ``--priors``) in, a
better map out.

* ``crf`` wraps :func:`promote.dense_crf` (fully connected CRF, MIJR Eq. 5 kernel): the baseline
  every promoter is judged against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.registry import Stage, param, register
from promote import dense_crf


@dataclass(frozen=True)
class CrfParams:
    """Parameters of ``crf`` (:func:`promote.dense_crf`).

    Parameters
    ----------
    prior : str
        The map stage to refine (``priors``: the user's ``--priors`` maps).
    theta_alpha : float
        Proximity width of the appearance kernel, in pixels.
    theta_beta : float
        Colour width of the appearance kernel, in RGB units.
    theta_gamma : float
        Width of the smoothness kernel, in pixels.
    appearance_weight : float
        Weight w1 of the appearance kernel.
    smoothness_weight : float
        Weight w2 of the smoothness kernel.
    n_iterations : int
        Mean-field iterations.
    """

    prior: str = "u2netp"
    theta_alpha: float = param(80.0, gt=0)
    theta_beta: float = param(13.0, gt=0)
    theta_gamma: float = param(3.0, gt=0)
    appearance_weight: float = param(10.0, ge=0)
    smoothness_weight: float = param(3.0, ge=0)
    n_iterations: int = param(5, ge=0)


def run_crf(inputs, params: CrfParams, ctx):
    kwargs = asdict(params)
    prior = inputs[kwargs.pop("prior")]["map"]
    return {"map": dense_crf(inputs["pool"]["image"], prior, **kwargs)}


register(Stage(
    name="crf", version="1", inputs=("pool",), params=CrfParams, granularity="image", func=run_crf,
    method=dense_crf, produces_map=True, prior_params=("prior",),
    doc="dense-CRF refinement of a prior map (the baseline promoter; MIJR Eq. 5 kernel)",
))
