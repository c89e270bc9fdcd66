"""Stage declarations: parameter checks, declaration errors, docs, plugins, dependency order."""

import dataclasses
import math

import pytest

from pipeline import registry
from pipeline.registry import ModelSlot, Stage, StageLoadError, param, param_docs, param_problems


@dataclasses.dataclass(frozen=True)
class P:
    """Parameters.

    Attributes
    ----------
    n : int
        A count,
        over two lines.
    x, y : float
        Two numbers.
    flag : bool
        A switch.

    name : str
        A choice.
    """

    n: int = param(1, ge=1)
    x: float = param(0.5, gt=0, lt=1)
    y: float = param(2.0, le=3, allow_inf=True)
    flag: bool = param(False)
    name: str = param("a", choices=("a", "b"))
    opt: float | None = param(None, ge=0)
    sizes: tuple[int, ...] = param((1, 2), ge=1)
    path: str = param("", path=True)
    prior: str = ""
    model: str = "m"


def _stage(**kw):
    base = dict(name="t", version="1", inputs=("pool",), params=P, granularity="image", func=lambda *a: {})
    return Stage(**{**base, **kw})


def _problems(**values):
    return param_problems(_stage(), P(**values))


def test_valid_values_have_no_problems(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    assert _problems() == []
    assert _problems(n=1, x=0.999, y=3, opt=0.0, sizes=(), path=str(f), name="b", flag=True) == []
    assert _problems(y=-math.inf, n=2.0) == []


@pytest.mark.parametrize(
    "values, line",
    [
        ({"n": 0}, "t.n = 0: expected a number >= 1, got 0"),
        ({"n": 1.5}, "t.n = 1.5: expected an integer, got 1.5"),
        ({"n": True}, "t.n = True: expected a number, got True"),
        ({"n": "3"}, "t.n = '3': expected a number, got '3'"),
        ({"n": None}, "t.n = None: expected a value, got None"),
        ({"x": 0}, "t.x = 0: expected a number > 0, got 0"),
        ({"x": 1}, "t.x = 1: expected a number < 1, got 1"),
        ({"x": math.nan}, "t.x = nan: expected a finite number, got nan"),
        ({"x": math.inf}, "t.x = inf: expected a finite number, got inf"),
        ({"y": 3.5}, "t.y = 3.5: expected a number <= 3, got 3.5"),
        ({"y": math.nan}, "t.y = nan: expected a finite number, got nan"),
        ({"flag": 1}, "t.flag = 1: expected true or false, got 1"),
        ({"name": "c"}, "t.name = 'c': expected one of 'a', 'b', got 'c'"),
        ({"name": 3}, "t.name = 3: expected a string, got 3"),
        ({"opt": -1.0}, "t.opt = -1.0: expected a number >= 0, got -1.0"),
        ({"sizes": [1]}, "t.sizes = [1]: expected a tuple, got [1]"),
        ({"sizes": (1, 0)}, "t.sizes = (1, 0): expected a number >= 1, got 0"),
        ({"path": "/no/such/file"}, "t.path = '/no/such/file': expected an existing file, got '/no/such/file' (no such file)"),
    ],
)
def test_each_invalid_value_is_one_line_naming_it(values, line):
    assert _problems(**values) == [line]


def test_several_problems_are_all_reported_in_field_order():
    assert _problems(x=2.0, n=0) == ["t.n = 0: expected a number >= 1, got 0",
                                     "t.x = 2.0: expected a number < 1, got 2.0"]


def test_param_keeps_only_the_given_checks():
    (f,) = [f for f in dataclasses.fields(P) if f.name == "x"]
    assert dict(f.metadata) == {"gt": 0, "lt": 1} and f.default == 0.5
    (g,) = [f for f in dataclasses.fields(P) if f.name == "path"]
    assert dict(g.metadata) == {"path": True}
    assert _stage().path_params() == ("path",)


def test_param_docs_one_line_per_field():
    docs = param_docs(P)
    assert docs["n"] == "A count, over two lines."
    assert docs["x"] == docs["y"] == "Two numbers."
    assert docs["flag"] == "A switch." and docs["name"] == "A choice."
    assert "opt" not in docs
    assert param_docs(type("NoDoc", (), {})) == {}


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"granularity": "pixel"}, "stage t: granularity must be one of ('image', 'pair', 'pool')"),
        ({"params": dict}, "stage t: params must be a dataclass type"),
        ({"prior_params": ("nope",)}, "stage t: prior param 'nope' is not a parameter"),
        ({"batched": True, "granularity": "pool"}, "stage t: only image stages without a file input can be batched"),
        ({"batched": True, "file_input": "image"}, "stage t: only image stages without a file input can be batched"),
        ({"file_input": "video"}, "stage t: file_input must be one of ('image', 'prior', 'gt')"),
        ({"granularity": "pair"}, "stage t: pair stages (and only they) name their pairs_from stage"),
        ({"pairs_from": "table"}, "stage t: pair stages (and only they) name their pairs_from stage"),
        ({"store": False, "produces_map": True}, "stage t: only image stages that produce no map can be unstored"),
        ({"store": False, "granularity": "pool"}, "stage t: only image stages that produce no map can be unstored"),
        ({"learned": ModelSlot("trainer", param="weights")}, "stage t: learned stage without a 'weights' parameter"),
    ],
)
def test_bad_declarations_are_refused(kw, message):
    with pytest.raises(ValueError) as err:
        _stage(**kw)
    assert str(err.value) == message


def test_good_declarations_are_accepted():
    _stage(batched=True)
    _stage(file_input="gt")
    _stage(granularity="pair", pairs_from="table")
    _stage(store=False)
    _stage(learned=ModelSlot("trainer"))
    assert _stage().default_params() == P()


def test_all_inputs_adds_priors_pairs_and_the_trainer_once():
    st = _stage(inputs=("pool", "a"), prior_params=("prior",), learned=ModelSlot("fit"))
    assert st.all_inputs(P()) == ("pool", "a")  # empty prior, a model that is not "train"
    assert st.all_inputs(P(prior="b")) == ("pool", "a", "b")
    assert st.all_inputs(P(prior="a")) == ("pool", "a")  # no duplicate
    assert st.all_inputs(P(model="train")) == ("pool", "a", "fit")
    pair = _stage(granularity="pair", pairs_from="table")
    assert pair.all_inputs(P()) == ("pool", "table")


def test_register_replace_alias_and_get(monkeypatch):
    registry.all_stages()  # load the built-in stages first, or they would land in the copy only
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "ALIASES", dict(registry.ALIASES))
    st = registry.register(_stage(name="t_reg"))
    assert registry.get("t_reg") is st
    st2 = registry.register(_stage(name="t_reg", version="2"))
    assert registry.get("t_reg") is st2 and registry.all_stages()["t_reg"] is st2
    registry.register_alias("t_old", "t_reg")
    assert registry.canonical("t_old") == "t_reg" and registry.canonical("t_reg") == "t_reg"
    assert registry.get("t_old") is st2
    with pytest.raises(KeyError, match=r"unknown stage 'zzz'; known stages: .*t_reg"):
        registry.get("zzz")
    stages = registry.all_stages()
    stages.pop("t_reg")
    assert "t_reg" in registry.all_stages()  # a copy


def test_load_plugins_names_the_module_and_the_reason(monkeypatch):
    assert registry.load_plugins("") == []
    assert registry.load_plugins(" tests.pipeline.plugin_stages , ") == ["tests.pipeline.plugin_stages"]
    with pytest.raises(StageLoadError) as err:
        registry.load_plugins("tests.pipeline.plugin_stages,no_such_module_xyz")
    assert str(err.value) == ("PIPELINE_PLUGINS: cannot import stage module 'no_such_module_xyz' "
                              "(No module named 'no_such_module_xyz')")
    monkeypatch.setenv("PIPELINE_PLUGINS", "tests.pipeline.plugin_stages")
    assert registry.load_plugins() == ["tests.pipeline.plugin_stages"]


def test_params_as_dict():
    assert registry.params_as_dict(P())["sizes"] == (1, 2)


def test_topological_order_puts_dependencies_first_once(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "ALIASES", dict(registry.ALIASES))
    reg = registry.register
    reg(_stage(name="o_a", inputs=()))
    reg(_stage(name="o_b", inputs=("o_a",)))
    reg(_stage(name="o_c", inputs=("o_a", "o_b"), prior_params=("prior",)))
    assert registry.topological_order(["o_c"], {}) == ["o_a", "o_b", "o_c"]
    assert registry.topological_order(["o_b", "o_c", "o_a"], {}) == ["o_a", "o_b", "o_c"]
    with pytest.raises(KeyError, match=r"unknown stage 'o_x' \(needed by o_c\)"):
        registry.topological_order(["o_c"], {"o_c": P(prior="o_x")})  # a prior names a stage
    reg(_stage(name="o_x", inputs=()))
    assert registry.topological_order(["o_c"], {"o_c": P(prior="o_x")}) == ["o_a", "o_b", "o_x", "o_c"]
    registry.register_alias("o_old", "o_b")
    assert registry.topological_order(["o_old"], {}) == ["o_a", "o_b"]
    reg(_stage(name="o_d", inputs=("o_missing",)))
    with pytest.raises(KeyError, match=r"unknown stage 'o_missing' \(needed by o_d\); known stages: "):
        registry.topological_order(["o_d"], {})
    with pytest.raises(KeyError, match=r"unknown stage 'o_none'; known"):
        registry.topological_order(["o_none"], {})
    reg(_stage(name="o_e", inputs=("o_f",)))
    reg(_stage(name="o_f", inputs=("o_g",)))
    reg(_stage(name="o_g", inputs=("o_e",)))
    with pytest.raises(ValueError) as err:
        registry.topological_order(["o_e"], {})
    assert str(err.value) == "stage dependency cycle: o_e -> o_f -> o_g -> o_e"


def test_checks_of_a_params_class_declared_at_run_time():
    # P above is built when this module is imported; a Params class built later must be checked the
    # same way (plugins declare theirs when they are loaded).
    @dataclasses.dataclass(frozen=True)
    class Q:
        k: int = param(2, ge=0, le=5)
        mode: str = param("x", choices=("x", "y"))

    st = _stage(params=Q)
    assert param_problems(st, Q()) == []
    assert param_problems(st, Q(k=-1, mode="z")) == [
        "t.k = -1: expected a number >= 0, got -1",
        "t.mode = 'z': expected one of 'x', 'y', got 'z'",
    ]
    assert param_problems(st, Q(k=6)) == ["t.k = 6: expected a number <= 5, got 6"]


def test_an_unknown_stage_lists_the_known_ones(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    registry.register(_stage(name="beta"))
    registry.register(_stage(name="alpha"))
    with pytest.raises(KeyError) as err:
        registry.get("gamma")
    assert err.value.args[0] == "unknown stage 'gamma'; known stages: alpha, beta"


# --- Checks that must hold for classes and stages declared at run time (plugins) ------------


def test_param_records_exactly_the_checks_given_at_run_time(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class R:
        a: float = param(0.5, gt=0, lt=1)
        b: float = param(1.0)
        c: float = param(1.0, allow_inf=True)
        f: str = param("", path=True)

    meta = {f.name: dict(f.metadata) for f in dataclasses.fields(R)}
    assert meta == {"a": {"gt": 0, "lt": 1}, "b": {}, "c": {"allow_inf": True}, "f": {"path": True}}
    st = _stage(params=R)
    assert st.path_params() == ("f",)
    assert param_problems(st, R()) == []
    assert param_problems(st, R(a=0, b=math.inf, c=math.inf)) == [
        "t.a = 0: expected a number > 0, got 0",
        "t.b = inf: expected a finite number, got inf",  # +-inf only where allow_inf is given
    ]
    assert param_problems(st, R(a=1)) == ["t.a = 1: expected a number < 1, got 1"]
    assert param_problems(st, R(f=str(tmp_path / "none.bin"))) == [
        f"t.f = {str(tmp_path / 'none.bin')!r}: expected an existing file, got {str(tmp_path / 'none.bin')!r} (no such file)"]


def test_param_docs_accepts_names_that_start_with_a_capital():
    class D:
        """Attributes
        ----------
        Alpha : float
            The weight.
        """

    assert param_docs(D) == {"Alpha": "The weight."}


def test_neighbour_inputs_only_for_unbatched_stored_image_stages():
    from pipeline.registry import NeighbourInputs

    nb = NeighbourInputs("table", ("a", "pairs"))
    st = _stage(neighbour_inputs=nb)  # an unbatched, stored image stage: accepted
    assert st.all_inputs(P()) == ("pool", "table", "a", "pairs")
    message = "stage t: only unbatched, stored image stages read neighbour inputs"
    for kw in ({"granularity": "pool"}, {"batched": True}, {"store": False}):
        with pytest.raises(ValueError) as err:
            _stage(neighbour_inputs=nb, **kw)
        assert str(err.value) == message, kw


def test_stage_modules_and_plugins_are_loaded_once_on_first_use(monkeypatch):
    registry.all_stages()
    calls = []
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "load_plugins", lambda modules=None: calls.append(modules) or [])
    stages = registry.all_stages()
    assert "pool" in stages and calls == [None]
    registry.all_stages()
    registry.get("pool")
    assert calls == [None]  # not again


def test_no_plugins_variable_means_no_plugins(monkeypatch):
    monkeypatch.delenv("PIPELINE_PLUGINS", raising=False)
    assert registry.load_plugins() == []


def test_a_plugin_failing_without_a_message_is_named_with_the_error_type(tmp_path, monkeypatch):
    (tmp_path / "silent_plugin_xyz.py").write_text("raise RuntimeError()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StageLoadError) as err:
        registry.load_plugins("silent_plugin_xyz")
    assert str(err.value) == "PIPELINE_PLUGINS: cannot import stage module 'silent_plugin_xyz' (RuntimeError)"


def test_an_unknown_dependency_lists_the_known_stages_comma_separated(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    registry.register(_stage(name="beta", inputs=()))
    registry.register(_stage(name="alpha", inputs=("gamma",)))
    with pytest.raises(KeyError) as err:
        registry.topological_order(["alpha"], {})
    assert err.value.args[0] == "unknown stage 'gamma' (needed by alpha); known stages: alpha, beta"
