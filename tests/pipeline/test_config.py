"""Parameters from TOML and --set: typed, validated, and every mistake named."""

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
