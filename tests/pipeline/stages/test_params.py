"""Every stage's parameters: one source of defaults, documented, validated before a run."""

import dataclasses
import inspect
import math
import typing

import pytest

from pipeline import registry
from pipeline.runner import RunError, RunOptions, run

BUILTIN = [name for name, s in registry.all_stages().items() if s.func.__module__.startswith("pipeline.stages")]


def test_builtin_stages_are_found():
    assert {"pool", "gt", "priors", "u2netp", "contrast", "gradsal", "deep_features", "crf", "gist_hog",
            "neighbours", "slic", "proposals", "dense_sift", "siftflow", "alignment"} <= set(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_params_defaults_equal_the_method_keyword_defaults(name):
    stage = registry.get(name)
    if stage.method is None:
        pytest.skip(f"{name} mirrors no single method")
    sig = inspect.signature(stage.method).parameters
    # The method's options: keyword-only parameters and parameters with a default (data arguments
    # such as ``image`` or ``prior`` are not options, even when a stage parameter shares the name).
    options = {n: p for n, p in sig.items()
               if p.kind is inspect.Parameter.KEYWORD_ONLY or p.default is not inspect.Parameter.empty}
    shared = [f for f in dataclasses.fields(stage.params) if f.name in options]
    assert shared, f"{name}: no parameter in common with {stage.method.__qualname__}"
    for f in shared:
        method_default = sig[f.name].default
        assert method_default is not inspect.Parameter.empty, f"{name}.{f.name}: the method has no default"
        assert f.default == method_default, (
            f"{name}.{f.name}: Params default {f.default!r} != {stage.method.__qualname__} default {method_default!r}")


@pytest.mark.parametrize("name", BUILTIN)
def test_every_parameter_has_a_one_line_doc(name):
    stage = registry.get(name)
    docs = registry.param_docs(stage.params)
    for f in dataclasses.fields(stage.params):
        assert docs.get(f.name), f"{name}.{f.name} is not documented in {stage.params.__name__}'s docstring"


def _bad_values(f, tp):
    """Values a field must refuse, from its type and its declared range."""
    bases, optional = registry._base_types(tp)
    base = bases[0]
    meta = f.metadata
    bad = []
    if not optional:
        bad.append(None)
    if base in (int, float):
        bad += [float("nan"), "text", True]
        if "ge" in meta:
            bad.append(meta["ge"] - 1)
        if "gt" in meta:
            bad.append(meta["gt"])
        if "le" in meta:
            bad.append(meta["le"] + 1)
        if "lt" in meta:
            bad.append(meta["lt"])
        if not meta.get("allow_inf"):
            bad.append(math.inf)
        if base is int:
            bad.append(2.5)
    elif base is str:
        bad.append(3)
        if "choices" in meta:
            bad.append("no-such-choice")
        if meta.get("path"):
            bad.append("/no/such/file.bin")
    elif base is bool:
        bad.append("yes")
    return bad


@pytest.mark.parametrize("name", BUILTIN)
def test_bad_parameter_values_are_named_with_what_is_allowed(name):
    stage = registry.get(name)
    hints = typing.get_type_hints(stage.params)
    tried = 0
    for f in dataclasses.fields(stage.params):
        for value in _bad_values(f, hints[f.name]):
            params = dataclasses.replace(stage.default_params(), **{f.name: value})
            problems = registry.param_problems(stage, params)
            assert len(problems) == 1, (f.name, value, problems)
            assert problems[0].startswith(f"{name}.{f.name} = {value!r}: expected"), problems[0]
            tried += 1
    assert not registry.param_problems(stage, stage.default_params())
    if dataclasses.fields(stage.params):
        assert tried


def test_a_bad_value_stops_the_run_before_anything_runs(tmp_path):
    from pipeline.config import build_params

    params, _ = build_params(None, ["gradsal.gamma=nan", "gradsal.steps=-5"])
    with pytest.raises(RunError) as info:
        run(["gradsal"], params, RunOptions(out=tmp_path / "o", pool=tmp_path / "nowhere", progress=False))
    lines = str(info.value).splitlines()
    assert lines == ["gradsal.steps = -5: expected a number >= 1, got -5",
                     "gradsal.gamma = nan: expected a finite number, got nan"]
    assert not (tmp_path / "o").exists()  # nothing ran, nothing was written
