"""Stage declarations and the registry that holds them.

A stage is data: a name, a version, the stages it needs, a parameters dataclass (the one place its
defaults are written), a granularity and a pure function. The runner (``pipeline.runner``) is the
only code that touches files, caches and processes; stage functions get numpy arrays and return
dicts of numpy arrays.

Granularities and function signatures
-------------------------------------
``"image"``
    ``func(inputs, params, ctx) -> dict[str, ndarray]``; ``inputs[s]`` is stage ``s``'s dict for
    this image, or ``s``'s whole dict when ``s`` is a pool-level stage. A ``batched`` stage takes and
    returns lists instead (``func([inputs, ...], params, ctx) -> [dict, ...]``), so that a detector
    can run batched; the runner chooses the batch size (a resource, never a parameter). A stage
    that reads its neighbours (``neighbour_inputs=NeighbourInputs(table, stages)``) is called
    ``func(inputs, neighbours, params, ctx)``: ``neighbours`` is a list, one entry per neighbour of
    the image in the table's row order, each a dict of the named stages' results for that
    neighbour (image stages) and for the pair (image, neighbour) (pair stages).
``"pair"``
    ``func(inputs_a, inputs_b, inputs_pair, params, ctx) -> dict``: one call per (target,
    neighbour) pair of the table of the pool stage named by ``pairs_from``; ``inputs_pair[s]`` is
    pair-stage ``s``'s dict for the pair.
``"pool"``
    ``func(inputs, params, ctx) -> dict``; ``inputs[s]`` is a read-only lazy Mapping from stem (or
    ``(stem_a, stem_b)`` for pair stages) to that item's dict.

``ctx`` is an :class:`ItemContext`: the user file the item reads (``ctx.file``), the model a
learned stage applies (``ctx.model``), and the device torch work runs on (``ctx.device``).

Map-producing stages set ``produces_map=True`` and return ``{"map": (H, W) float32 in [0, 1]}``;
the runner also writes ``<out>/<stage>/<stem>.png`` and evaluation picks those up.

A parameter whose name is listed in ``prior_params`` names another map-producing stage (for example
``relearn.prior = "u2netp"``); that stage becomes an input of this one. A parameter listed in
``feature_params`` likewise names the feature stage a learned stage reads (``lps.features =
"u2netp_features"``); its value must be one of :data:`FEATURE_STAGES`.

A *learned* stage (``learned=ModelSlot(trainer=...)``) has a ``model`` parameter: ``"train"`` (fit on
this pool by the trainer, a pool stage whose result is the model), a model file path (its bytes are
hashed into the key), or the name of a model shipped with the package (:mod:`pipeline.models`).

Parameters are declared with :func:`param` (a dataclass field with its valid range); the runner
checks every parameter of every stage of a run before anything runs (:func:`validate_params`).
Device, threads, batch size and workers are run options and :class:`Resources` hints, never
parameters: changing them recomputes nothing.

Warnings a stage function emits (``warnings.warn``) are shown to the user as one-line notices.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

GRANULARITIES = ("image", "pair", "pool")
#: Stages whose per-image result is a dict of feature taps (``{tap: (C, h, w)}``, ``strides``, ``size``).
FEATURE_STAGES = ("deep_features", "u2netp_features")
FILE_INPUTS = ("image", "prior", "gt")


class StageLoadError(ImportError):
    """A stage module (built-in or named in ``PIPELINE_PLUGINS``) cannot be imported."""


# --------------------------------------------------------------------------- parameters


def param(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    allow_inf: bool = False,
    path: bool = False,
):
    """A Params dataclass field with its valid values, checked once before a run starts.

    Parameters
    ----------
    default
        The default (the paper's value; the method's keyword default must equal it).
    ge, gt, le, lt : float, optional
        Bounds of a number (each element of a tuple of numbers).
    choices : tuple, optional
        The allowed values.
    allow_inf : bool
        Accept +-inf (NaN is never accepted).
    path : bool
        The value is a file path (empty: none): the file must exist and its bytes are hashed into
        the cache key, so a changed file recomputes the stage.
    """
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "allow_inf": allow_inf,
            "path": path}
    # ``is not``: a bound of 0 (``ge=0``, ``gt=0``) equals False and must not be dropped.
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None and v is not False})


def _base_types(tp) -> tuple[list[Any], bool]:
    """The non-None members of a (possibly Optional) type hint, and whether None is allowed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _check_value(value, tp, meta) -> str | None:
    """Why ``value`` is not a valid value of a field of type ``tp`` with ``meta``; None if it is."""
    bases, optional = _base_types(tp)
    if value is None:
        return None if optional else "expected a value, got None"
    base = bases[0]
    if typing.get_origin(base) is tuple:
        if not isinstance(value, tuple):
            return f"expected a tuple, got {value!r}"
        inner = (typing.get_args(base) or (Any,))[0]
        for v in value:
            why = _check_value(v, inner, meta)
            if why:
                return why
        return None
    if base is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if base in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        if base is int and not float(value).is_integer():
            return f"expected an integer, got {value!r}"
        if math.isnan(value) or (math.isinf(value) and not meta.get("allow_inf")):
            return f"expected a finite number, got {value!r}"
        bounds = [("ge", ">=", lambda a, b: a >= b), ("gt", ">", lambda a, b: a > b),
                  ("le", "<=", lambda a, b: a <= b), ("lt", "<", lambda a, b: a < b)]
        for key, sym, ok in bounds:
            if key in meta and not ok(value, meta[key]):
                return f"expected a number {sym} {meta[key]}, got {value!r}"
    if base is str and not isinstance(value, str):
        return f"expected a string, got {value!r}"
    if "choices" in meta and value not in meta["choices"]:
        return f"expected one of {', '.join(repr(c) for c in meta['choices'])}, got {value!r}"
    if meta.get("path") and value and not Path(value).is_file():
        return f"expected an existing file, got {value!r} (no such file)"
    return None


def param_problems(stage: "Stage", params) -> list[str]:
    """One line per invalid parameter value: ``stage.param = value: expected ..., got ...``."""
    hints = typing.get_type_hints(stage.params)
    problems = []
    for f in dataclasses.fields(stage.params):
        value = getattr(params, f.name)
        why = _check_value(value, hints[f.name], f.metadata)
        if why:
            problems.append(f"{stage.name}.{f.name} = {value!r}: {why}")
    return problems


def param_docs(params_cls) -> dict[str, str]:
    """One line of documentation per field, from the numpydoc section of the Params docstring.

    The docstring lists each field as ``name : type`` followed by an indented description (a
    ``Parameters`` or ``Attributes`` section); several names may share one entry (``a, b : float``).
    """
    doc = params_cls.__doc__ or ""
    lines = doc.splitlines()
    out: dict[str, str] = {}
    entry = re.compile(r"^\s*([A-Za-z_][\w, ]*?)\s*:\s*\S.*$")
    for i, line in enumerate(lines):
        m = entry.match(line)
        if not m:
            continue
        names = [n.strip() for n in m.group(1).split(",")]
        indent = len(line) - len(line.lstrip())
        desc = []
        for nxt in lines[i + 1:]:
            if not nxt.strip():
                break
            if len(nxt) - len(nxt.lstrip()) <= indent:
                break
            desc.append(nxt.strip())
        text = " ".join(desc)
        for n in names:
            if n.isidentifier():
                out.setdefault(n, text)
    return out


# --------------------------------------------------------------------------- stage declaration


@dataclass(frozen=True)
class Resources:
    """How a stage wants to be run; never part of a result's key.

    Attributes
    ----------
    max_workers : int or None
        At most this many worker processes at once (None: as many as ``--jobs``).
    wants_gpu : bool
        The stage runs torch work that pays on CUDA: when the run's device is CUDA it runs in the
        main process, which alone owns the device, in batches of ``gpu_batch``.
    cpu_batch, gpu_batch : int
        Items per call of a batched stage on the CPU and on CUDA.
    """

    max_workers: int | None = None
    wants_gpu: bool = False
    cpu_batch: int = 1
    gpu_batch: int = 16


@dataclass(frozen=True)
class ModelSlot:
    """A learned stage's model: the ``model`` parameter and the pool stage that trains it."""

    trainer: str
    param: str = "model"


@dataclass(frozen=True)
class NeighbourInputs:
    """What an image stage reads of the image's neighbours (MIJR: of its retrieved images).

    Attributes
    ----------
    table : str
        The pool stage whose table (``stems``, ``index``: -1 none) lists each image's neighbours,
        as a pair stage's ``pairs_from``.
    stages : tuple of str
        Stages read per neighbour: image stages (the neighbour's result) and pair stages (the
        result of the pair (image, neighbour)). A neighbour one of them lacks (a failed item) is
        left out of the list, so an image keeps the neighbours that could be computed.
    """

    table: str
    stages: tuple[str, ...]


@dataclass(frozen=True)
class ItemContext:
    """What a stage function gets besides its inputs and parameters.

    Attributes
    ----------
    file : pathlib.Path or None
        The user file of this item (its image, prior map or GT mask) for stages with ``file_input``.
    model : pipeline.models.ModelRef or None
        The model a learned stage applies.
    device : str
        Where torch work runs: ``"cpu"`` or ``"cuda"`` (the run's ``--device``).
    item : str or tuple or None
        The item (stem, or (target, neighbour) for pairs), for messages.
    threads : int or None
        The compute threads this worker may use (its share of the cores; a speed setting, never
        part of a key). The runner already limits OpenMP, BLAS, torch, numba and OpenCV to it;
        libraries with their own pools (onnxruntime) are given it explicitly.
    """

    file: Path | None = None
    model: Any = None
    device: str = "cpu"
    item: Any = None
    threads: int | None = None


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
    batched : bool
        Image stages: ``func`` takes lists of items (the runner picks the batch size).
    file_input : {None, "image", "prior", "gt"}
        The stage reads a user file per item (the image, the user's prior map, the GT mask); the
        runner passes its path as ``ctx.file`` and hashes the file's bytes into the cache key.
    prior_params : tuple of str
        Parameters whose value names a map-producing stage that becomes an extra input.
    feature_params : tuple of str
        Parameters whose value names a feature stage (:data:`FEATURE_STAGES`) that becomes an
        extra input.
    run_input : str or None
        A run option this stage cannot do without (``"priors"``: needs ``--priors DIR``; ``"gt"``);
        with ``--stages all`` a stage whose run input is absent is left out with a notice.
    pairs_from : str or None
        Pair stages: the pool stage whose table (``stems``, ``index``) lists the pairs.
    method : callable or None
        The public method function the Params mirror: every Params field that is also a keyword
        of ``method`` has the same default (checked by the tests).
    learned : ModelSlot or None
        Learned stages: the model parameter and the stage that trains it on a pool.
    neighbour_inputs : NeighbourInputs or None
        Image stages that read the results of their neighbours too (see the module docstring).
    resources : Resources
        Workers, GPU and batch hints (outside the key).
    store : bool
        Keep each item's result in the cache (the default). ``False`` for image stages that are
        cheap to recompute and big to store (dense SIFT: 20 ms, 8 MB per image): the runner still
        computes every item once (so failures and notices are reported, and keys are the same),
        stores only a marker, and a consumer's worker recomputes the item when it reads it.
        Turning storing back on needs a version bump (the cache holds only markers).
    """

    name: str
    version: str
    inputs: tuple[str, ...]
    params: type
    granularity: str
    func: Callable[..., Any]
    doc: str = ""
    produces_map: bool = False
    batched: bool = False
    file_input: str | None = None
    prior_params: tuple[str, ...] = ()
    feature_params: tuple[str, ...] = ()
    run_input: str | None = None
    pairs_from: str | None = None
    method: Callable[..., Any] | None = None
    learned: ModelSlot | None = None
    neighbour_inputs: NeighbourInputs | None = None
    resources: Resources = Resources()
    store: bool = True

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"stage {self.name}: granularity must be one of {GRANULARITIES}")
        if not dataclasses.is_dataclass(self.params):
            raise ValueError(f"stage {self.name}: params must be a dataclass type")
        names = {f.name for f in dataclasses.fields(self.params)}
        for p in self.prior_params:
            if p not in names:
                raise ValueError(f"stage {self.name}: prior param {p!r} is not a parameter")
        for p in self.feature_params:
            if p not in names:
                raise ValueError(f"stage {self.name}: feature param {p!r} is not a parameter")
        if self.batched and (self.granularity != "image" or self.file_input):
            raise ValueError(f"stage {self.name}: only image stages without a file input can be batched")
        if self.file_input is not None and self.file_input not in FILE_INPUTS:
            raise ValueError(f"stage {self.name}: file_input must be one of {FILE_INPUTS}")
        if (self.granularity == "pair") != (self.pairs_from is not None):
            raise ValueError(f"stage {self.name}: pair stages (and only they) name their pairs_from stage")
        if not self.store and (self.granularity != "image" or self.produces_map):
            raise ValueError(f"stage {self.name}: only image stages that produce no map can be unstored")
        if self.learned is not None and self.learned.param not in names:
            raise ValueError(f"stage {self.name}: learned stage without a {self.learned.param!r} parameter")
        if self.neighbour_inputs is not None and (self.granularity != "image" or self.batched or not self.store):
            raise ValueError(f"stage {self.name}: only unbatched, stored image stages read neighbour inputs")

    def default_params(self):
        return self.params()

    def all_inputs(self, params) -> tuple[str, ...]:
        """Static inputs, the stages named by prior and feature parameters, the pair or neighbour
        table and the stages read of neighbours, the trainer."""
        extra = tuple(getattr(params, p) for p in self.prior_params + self.feature_params if getattr(params, p))
        pairs = (self.pairs_from,) if self.pairs_from else ()
        if self.neighbour_inputs is not None:
            pairs = (self.neighbour_inputs.table, *self.neighbour_inputs.stages)
        trainer = ()
        if self.learned is not None and getattr(params, self.learned.param) == "train":
            trainer = (self.learned.trainer,)
        return tuple(dict.fromkeys(self.inputs + extra + pairs + trainer))

    def path_params(self) -> tuple[str, ...]:
        """Parameters whose value is a file whose bytes belong in the key."""
        return tuple(f.name for f in dataclasses.fields(self.params) if f.metadata.get("path"))


@dataclass(frozen=True)
class NoParams:
    """This stage has no parameters."""


# --------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, Stage] = {}
# Old stage names that still work for one release, with the new name.
ALIASES: dict[str, str] = {}


def register(stage: Stage) -> Stage:
    """Add a stage to the registry (a second registration of the same name replaces the first)."""
    _REGISTRY[stage.name] = stage
    return stage


def register_alias(old: str, new: str) -> None:
    """Keep ``old`` working as a name of stage ``new`` (with a deprecation notice where it is used)."""
    ALIASES[old] = new


def canonical(name: str) -> str:
    """The current name of a stage (its alias resolved)."""
    return ALIASES.get(name, name)


def get(name: str) -> Stage:
    _load_stage_modules()
    try:
        return _REGISTRY[canonical(name)]
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
    """Import the modules named in ``PIPELINE_PLUGINS`` (comma-separated), which register stages.

    Raises
    ------
    StageLoadError
        A module cannot be imported (the message names it and says why, in one line).
    """
    import importlib
    import os

    names = modules if modules is not None else os.environ.get("PIPELINE_PLUGINS", "")
    loaded = []
    for mod in filter(None, (m.strip() for m in names.split(","))):
        try:
            importlib.import_module(mod)
        except Exception as exc:  # any failure of a plugin is the user's to fix: say which and why
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StageLoadError(f"PIPELINE_PLUGINS: cannot import stage module {mod!r} ({first})") from exc
        loaded.append(mod)
    return loaded


def params_as_dict(params) -> dict[str, Any]:
    return dataclasses.asdict(params)


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
        name = canonical(name)
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
    "ItemContext",
    "ModelSlot",
    "NeighbourInputs",
    "NoParams",
    "Resources",
    "Stage",
    "StageLoadError",
    "all_stages",
    "canonical",
    "get",
    "load_plugins",
    "param",
    "param_docs",
    "param_problems",
    "params_as_dict",
    "register",
    "register_alias",
    "topological_order",
]
