"""Parameters from TOML and --set: typed, validated, and every mistake named."""

import dataclasses

import pytest
from hypothesis import given, strategies as st

from pipeline.config import ConfigError, build_params, parse_set_option


def test_defaults_file_and_set_in_that_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\njobs = 1\n[test_mean]\nscale = 0.25\n[pool]\nmax_side = 512\n")
    params, run_options = build_params(cfg, ["test_mean.scale=0.75"])
    assert params["test_mean"].scale == 0.75
    assert params["pool"].max_side == 512
    assert run_options == {"jobs": 1}
    defaults, _ = build_params()
    assert defaults["pool"].max_side == 2048


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[test_mean]\nscael = 2\n", "unknown parameter test_mean.scael"),
        ("[nostage]\nx = 1\n", "unknown stage 'nostage'"),
        ("[pool]\nmax_side = 'big'\n", "pool.max_side: expected an integer, got 'big'"),
        ("[run]\npoool = 'x'\n", "unknown key run.poool"),
        ("[pool\n", "not valid TOML"),
    ],
)
def test_config_file_mistakes_name_the_key(tmp_path, toml, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_params(cfg)


def test_set_mistakes_name_the_key():
    with pytest.raises(ConfigError, match="expected STAGE.PARAM=VALUE"):
        build_params(None, ["scale=3"])
    with pytest.raises(ConfigError, match="test_mean.scale: expected a number, got 'abc'"):
        build_params(None, ["test_mean.scale=abc"])
    with pytest.raises(ConfigError, match="does not exist"):
        build_params("/nonexistent/config.toml")


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
       st.text(min_size=0, max_size=12).filter(lambda s: "\n" not in s))
def test_set_option_round_trips(stage, param, value):
    got = parse_set_option(f"{stage}.{param}={value}")
    assert got == (stage, param, value.strip())


# --- _coerce: every type a Params field uses, from TOML values and from --set strings ---------

from pipeline.config import _coerce  # noqa: E402


@pytest.mark.parametrize(
    "value, tp, expected",
    [
        ("3", int, 3), (3, int, 3), (4.0, int, 4), ("-2", int, -2),
        ("0.5", float, 0.5), (2, float, 2.0), ("1e3", float, 1000.0),
        ("true", bool, True), ("Yes", bool, True), ("1", bool, True), ("on", bool, True),
        ("false", bool, False), ("NO", bool, False), ("0", bool, False), ("off", bool, False),
        (True, bool, True), (False, bool, False),
        ("abc", str, "abc"), ("", str, ""),
        ("none", int | None, None), ("NULL", float | None, None), ("", str | None, None),
        (None, int | None, None), ("7", int | None, 7), ("0.25", float | None, 0.25),
        ("(1, 2,3)", tuple[int, ...], (1, 2, 3)), ("[a, b]", tuple[str, ...], ("a", "b")),
        ([1, 2], tuple[int, ...], (1, 2)), ((1.5,), tuple[float, ...], (1.5,)),
        ("", tuple[int, ...], ()), (" x ,y,", tuple[str, ...], ("x", "y")),
        ("4", str | int, "4"),  # the first member that accepts the value wins
        (5, str | int, 5),
        ({"a": 1}, dict, {"a": 1}),  # other types pass through unchanged
    ],
)
def test_coerce_converts_to_the_field_type(value, tp, expected):
    got = _coerce(value, tp, "here")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "value, tp, message",
    [
        ("abc", int, "here: expected an integer, got 'abc'"),
        (1.5, int, "here: expected an integer, got 1.5"),
        (True, int, "here: expected an integer, got True"),
        (None, int, "here: expected an integer, got None"),
        ("abc", float, "here: expected a number, got 'abc'"),
        (False, float, "here: expected a number, got False"),
        (None, float, "here: expected a number, got None"),
        ("maybe", bool, "here: expected true or false, got 'maybe'"),
        (1, bool, "here: expected true or false, got 1"),
        (3, str, "here: expected a string, got 3"),
        (None, str, "here: expected a string, got None"),
        ("x", int | None, "here: expected an integer, got 'x'"),
        ("none", int, "here: expected an integer, got 'none'"),
        (5, tuple[int, ...], "here: expected a list, got 5"),
        ("1,x", tuple[int, ...], "here: expected an integer, got 'x'"),
    ],
)
def test_coerce_names_the_key_and_the_bad_value(value, tp, message):
    with pytest.raises(ConfigError) as err:
        _coerce(value, tp, "here")
    assert str(err.value) == message


def test_a_union_without_none_does_not_accept_none():
    with pytest.raises(ConfigError, match="here: expected an integer, got 'none'"):
        _coerce("none", int | float, "here")


def test_parse_set_option_splits_at_the_first_dot_and_equals():
    assert parse_set_option(" pool.max_side = 512 ") == ("pool", "max_side", "512")
    assert parse_set_option("a.b.c=x=y") == ("a", "b.c", "x=y")
    assert parse_set_option("a.b=") == ("a", "b", "")
    for bad in ("ab=1", "a.b", "a=1.5", ""):
        with pytest.raises(ConfigError, match=r"^--set '.*': expected STAGE.PARAM=VALUE$"):
            parse_set_option(bad)


def test_build_params_types_values_and_reports(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\njobs = 2\nout = "o"\n[test_slow]\ndelay = 1\nfail_on = "3"\n')
    params, run_options = build_params(cfg, ["test_slow.delay=0.5", "test_mean.scale = 2"])
    assert params["test_slow"].delay == 0.5 and type(params["test_slow"].delay) is float
    assert params["test_slow"].fail_on == "3" and params["test_mean"].scale == 2.0
    assert run_options == {"jobs": 2, "out": "o"}
    assert build_params(cfg)[0]["test_slow"].delay == 1.0
    params, run_options = build_params()
    assert run_options == {} and params["test_slow"].delay == 0.0
    from pipeline import registry

    assert set(params) == set(registry.all_stages())
    assert all(type(p) is registry.get(n).params for n, p in params.items())


@pytest.mark.parametrize(
    "toml, message",
    [
        ("run = 3\n", "[run] must be a table"),
        ("test_mean = 3\n", "'test_mean' must be a table [test_mean] of stage parameters"),
        ("[pool]\nmax_side = -5\n", None),  # a range problem is the runner's, not a ConfigError
    ],
)
def test_config_file_structure_mistakes(tmp_path, toml, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    if message is None:
        assert build_params(cfg)[0]["pool"].max_side == -5
        return
    with pytest.raises(ConfigError) as err:
        build_params(cfg)
    assert str(err.value) == f"{cfg}: {message}"


def test_mistakes_list_what_is_known(tmp_path):
    from pipeline import registry

    with pytest.raises(ConfigError) as err:
        build_params(None, ["nostage.x=1"])
    known = ", ".join(sorted(registry.all_stages()))
    assert str(err.value) == f"--set: unknown stage 'nostage' (known: {known})"
    with pytest.raises(ConfigError) as err:
        build_params(None, ["test_mean.nope=1"])
    assert str(err.value) == "--set: unknown parameter test_mean.nope (known: scale)"
    with pytest.raises(ConfigError) as err:
        build_params(None, ["test_after.nope=1"])
    assert str(err.value) == "--set: unknown parameter test_after.nope (known: none)"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nwho = 1\n")
    with pytest.raises(ConfigError) as err:
        build_params(cfg)
    assert str(err.value) == (f"{cfg}: unknown key run.who (known: device, gt, jobs, out, pool, priors, "
                              "scheduler, threads)")
    with pytest.raises(ConfigError) as err:
        build_params(tmp_path / "missing.toml")
    assert str(err.value) == f"config file {tmp_path / 'missing.toml'} does not exist"
    cfg.write_text("[x\n")
    with pytest.raises(ConfigError, match=rf"^config file {cfg}: not valid TOML \(.+\)$"):
        build_params(cfg)


def test_an_old_stage_name_is_accepted_with_a_notice():
    from pipeline import registry

    old = next(iter(registry.ALIASES))
    new = registry.ALIASES[old]
    field = dataclasses.fields(registry.get(new).params)[0]
    notices = []
    value = "7" if field.type in (int, "int") else None
    if value is None:
        pytest.skip("the aliased stage's first parameter is not an integer")
    params, _ = build_params(None, [f"{old}.{field.name}={value}"], notices)
    assert getattr(params[new], field.name) == 7
    assert notices == [f"--set: stage {old} is now called {new}; the old name will be removed in the next release"]
    build_params(None, [f"{old}.{field.name}={value}"])  # without a notices list: no error


def test_parameters_a_params_class_refuses_are_a_config_error(monkeypatch):
    from pipeline import registry

    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int = 1

        def __post_init__(self):
            if self.n > 10:
                raise ValueError("n too big")

    stage = dataclasses.replace(registry.get("test_mean"), params=Checked)
    monkeypatch.setitem(registry._REGISTRY, "test_mean", stage)
    with pytest.raises(ConfigError) as err:
        build_params(None, ["test_mean.n=11"])
    assert str(err.value) == "stage test_mean: bad parameters (n too big)"


def test_a_trainer_follows_its_promoters_prior_unless_its_own_is_set():
    # ldps_fit (the trainer of the learned stage ldps) shares the prior parameter with it
    params, _ = build_params(None, ["ldps.prior=contrast"])
    assert params["ldps_fit"].prior == "contrast" and params["ldps"].prior == "contrast"
    params, _ = build_params(None, ["ldps.prior=contrast", "ldps_fit.prior=gradsal"])
    assert params["ldps_fit"].prior == "gradsal" and params["ldps"].prior == "contrast"
    params, _ = build_params(None, ["ldps_fit.prior=gradsal"])
    assert params["ldps_fit"].prior == "gradsal" and params["ldps"].prior == "u2netp"
    params, _ = build_params(None, ["lps.prior=contrast"])
    assert params["lps"].prior == "contrast"  # lps_fit has no prior: nothing to follow, no error
    params, _ = build_params(None, [])
    assert params["ldps_fit"].prior == params["ldps"].prior == "u2netp"


def test_an_unknown_parameter_lists_every_known_one_comma_separated():
    with pytest.raises(ConfigError) as err:
        build_params(None, ["test_slow.dealy=1"])
    assert str(err.value) == "--set: unknown parameter test_slow.dealy (known: crash_on, delay, fail_on)"


def test_a_bad_value_in_a_config_file_names_the_file_and_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[pool]\nmax_side = 'big'\n")
    with pytest.raises(ConfigError) as err:
        build_params(cfg)
    assert str(err.value) == f"{cfg}: pool.max_side: expected an integer, got 'big'"


def test_a_set_key_without_a_dot_is_refused_even_if_the_value_has_dots_and_equals():
    # the stage.param key is what comes before the first '=': a dot in the value does not make one
    for bad in ("max_side=a.b=c", "pool=x.y=1"):
        with pytest.raises(ConfigError, match=r"^--set '.*': expected STAGE.PARAM=VALUE$"):
            parse_set_option(bad)


def test_none_may_be_written_first_in_a_union():
    import typing

    assert _coerce("3", None | int, "here") == 3
    assert _coerce("none", None | int, "here") is None
    assert _coerce("0.5", typing.Optional[float], "here") == 0.5


def test_a_list_keeps_the_letters_of_its_items_only_brackets_and_spaces_are_stripped():
    assert _coerce("Xa, bX", tuple[str, ...], "here") == ("Xa", "bX")
    assert _coerce("[X1,Y2]", tuple[str, ...], "here") == ("X1", "Y2")


def test_an_unparametrised_tuple_field_reads_strings():
    import typing

    assert _coerce("a, b", typing.Tuple, "here") == ("a", "b")
    assert _coerce(["x"], typing.Tuple, "here") == ("x",)


def test_the_pseudo_gt_follows_the_prior_of_the_stage_that_reads_it_unless_its_own_is_set():
    # crf_pseudo_gt is read by relearn and relearn_fit: the pseudo GT is of the map being promoted
    params, _ = build_params(None, ["relearn.prior=contrast"])
    assert params["relearn"].prior == params["relearn_fit"].prior == "contrast"
    assert params["crf_pseudo_gt"].prior == "contrast"
    params, _ = build_params(None, ["relearn.prior=contrast", "crf_pseudo_gt.prior=gradsal"])
    assert params["crf_pseudo_gt"].prior == "gradsal" and params["relearn"].prior == "contrast"
    params, _ = build_params(None, [])
    assert params["crf_pseudo_gt"].prior == params["relearn"].prior == "u2netp"
