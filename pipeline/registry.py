"""Stage declarations and the registry that holds them.

A stage is data: a name, a version, the stages it needs, a parameters dataclass whose defaults are
the papers' values, a granularity and a pure function. The runner (``pipeline.runner``) is the only
code that touches files, caches and processes; stage functions get numpy arrays and return dicts of
numpy arrays.

Granularities and function signatures
-------------------------------------
``"image"``
    ``func(inputs, params) -> dict[str, ndarray]``; ``inputs[s]`` is stage ``s``'s dict for this
    image, or ``s``'s whole dict when ``s`` is a pool-level stage. With ``batch > 0`` the function
    takes and returns lists instead (``func([inputs, ...], params) -> [dict, ...]``), so that a
    detector can run batched.
``"pair"``
    ``func(inputs_a, inputs_b, inputs_pair, params) -> dict``: one call per (target, neighbour)
    pair of the ``neighbours`` stage; ``inputs_pair[s]`` is pair-stage ``s``'s dict for the pair.
``"pool"``
    ``func(inputs, params) -> dict``; ``inputs[s]`` is a read-only lazy Mapping from stem (or
    ``(stem_a, stem_b)`` for pair stages) to that item's dict.

Map-producing stages set ``produces_map=True`` and return ``{"map": (H, W) float32 in [0, 1]}``;
the runner also writes ``<out>/<stage>/<stem>.png`` and evaluation picks those up.

A parameter whose name is listed in ``prior_params`` names another map-producing stage (for example
``relearn.prior = "u2netp"``); that stage becomes an input of this one.

Warnings a stage function emits (``warnings.warn``) are shown to the user as one-line notices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

GRANULARITIES = ("image", "pair", "pool")


@dataclass(frozen=True)
class Stage:
    """Declaration of one pipeline stage.

    Attributes
    ----------
    name : str
        Unique stage name (also its cache folder and output folder).
    version : str
        Bump it when the stage's results change for the same inputs: it is part of the cache key.
    inputs : tuple of str
        Names of the stages whose results this one needs.
    params : type
        A dataclass type; its field defaults are the documented defaults.
    granularity : {"image", "pair", "pool"}
        What one call of ``func`` computes.
    func : callable
        The pure function (see the module docstring for its signature).
    doc : str
        One line for ``python -m pipeline stages``.
    produces_map : bool
        Whether the result holds a saliency ``"map"`` (H, W) float32 in [0, 1].
    batch : int
        For image stages: > 0 makes ``func`` take lists of up to ``batch`` items.
    file_input : {None, "image", "prior"}
        The stage reads a user file for each item (the image, or the user's prior map); the runner
        passes its path as ``inputs["__file__"]`` and hashes the file's bytes into the cache key.
    prior_params : tuple of str
        Parameters whose value names a map-producing stage that becomes an extra input.
    run_input : str or None
        A run option this stage cannot do without (``"priors"``: needs ``--priors DIR``); with
        ``--stages all`` a stage whose run input is absent is skipped with a notice.
    """

    name: str
    version: str
    inputs: tuple[str, ...]
    params: type
    granularity: str
    func: Callable[..., Any]
    doc: str = ""
    produces_map: bool = False
    batch: int = 0
    file_input: str | None = None
    prior_params: tuple[str, ...] = ()
    run_input: str | None = None

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"stage {self.name}: granularity must be one of {GRANULARITIES}")
        if not dataclasses.is_dataclass(self.params):
            raise ValueError(f"stage {self.name}: params must be a dataclass type")
        for p in self.prior_params:
            if p not in {f.name for f in dataclasses.fields(self.params)}:
                raise ValueError(f"stage {self.name}: prior param {p!r} is not a parameter")
        if self.batch and self.granularity != "image":
            raise ValueError(f"stage {self.name}: batch is only for image stages")

    def default_params(self):
        return self.params()

    def all_inputs(self, params) -> tuple[str, ...]:
        """Static inputs plus the stages named by prior parameters."""
        extra = tuple(getattr(params, p) for p in self.prior_params if getattr(params, p))
        # Pair stages run over the (target, neighbour) pairs of the `neighbours` table.
        pairs = ("neighbours",) if self.granularity == "pair" else ()
        return tuple(dict.fromkeys(self.inputs + extra + pairs))


@dataclass(frozen=True)
class NoParams:
    """This stage has no parameters."""


_REGISTRY: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add a stage to the registry (a second registration of the same name replaces the first)."""
    _REGISTRY[stage.name] = stage
    return stage


def get(name: str) -> Stage:
    _load_stage_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(sorted(_REGISTRY))}") from None


def all_stages() -> dict[str, Stage]:
    _load_stage_modules()
    return dict(_REGISTRY)


_loaded = False


def _load_stage_modules():
    global _loaded
    if not _loaded:
        _loaded = True
        import pipeline.stages  # noqa: F401  (registers the built-in stages)
        load_plugins()


def load_plugins(modules: str | None = None) -> list[str]:
    """Import the modules named in ``PIPELINE_PLUGINS`` (comma-separated), which register stages."""
    import importlib
    import os

    names = modules if modules is not None else os.environ.get("PIPELINE_PLUGINS", "")
    loaded = []
    for mod in filter(None, (m.strip() for m in names.split(","))):
        importlib.import_module(mod)
        loaded.append(mod)
    return loaded


def params_as_dict(params) -> dict[str, Any]:
    return dataclasses.asdict(params)


def param_fields(stage: Stage) -> list[dataclasses.Field]:
    return list(dataclasses.fields(stage.params))


def topological_order(names: list[str], params: dict[str, Any]) -> list[str]:
    """The named stages plus everything they need, dependencies first.

    Raises
    ------
    KeyError
        For an unknown stage name (also one named by a prior parameter).
    ValueError
        For a dependency cycle.
    """
    stages = all_stages()
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]):
        if name not in stages:
            via = f" (needed by {chain[-1]})" if chain else ""
            raise KeyError(f"unknown stage {name!r}{via}; known stages: {', '.join(sorted(stages))}")
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError(f"stage dependency cycle: {' -> '.join(chain + (name,))}")
        state[name] = 1
        stage = stages[name]
        for dep in stage.all_inputs(params.get(name, stage.default_params())):
            visit(dep, chain + (name,))
        state[name] = 2
        order.append(name)

    for n in names:
        visit(n, ())
    return order


__all__ = [
    "Stage",
    "NoParams",
    "register",
    "get",
    "all_stages",
    "load_plugins",
    "topological_order",
    "params_as_dict",
    "param_fields",
    "field",
]
