"""Presets: each algorithm's settings, overrides, lookup errors and validation."""

from __future__ import annotations

import dataclasses

import pytest

from gpgrl.algorithms import DAPO, DR_GRPO, GPG, GRPO, LOSS_AGGS, PRESETS, SCALES, AlgorithmConfig, get_preset

FIELDS = (
    "scale",
    "age",
    "ratio",
    "epsilon_low",
    "epsilon_high",
    "beta",
    "loss_agg",
    "loss_constant",
    "resample_threshold",
    "max_resample_draws",
    "num_iterations",
)

EXPECTED = {
    # GPG: A = alpha (r - mean), plain -A logp, global token mean, threshold resampling 0.5.
    "gpg": ("none", True, False, 0.2, 0.2, 0.0, "token_mean", None, 0.5, 20, 1),
    # GRPO: group std, clipped surrogate 0.2, k3 KL 0.04, per-answer token mean.
    "grpo": ("group", False, True, 0.2, 0.2, 0.04, "seq_mean_token_mean", None, 0.0, 20, 1),
    # Dr. GRPO: no std, no per-answer length normaliser, no KL.
    "dr_grpo": ("none", False, True, 0.2, 0.2, 0.0, "seq_sum_constant", None, 0.0, 20, 1),
    # DAPO: group std, clip-higher 0.2 / 0.28, token mean, dynamic sampling (threshold 1).
    "dapo": ("group", False, True, 0.2, 0.28, 0.0, "token_mean", None, 1.0, 20, 1),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_preset_settings(name):
    cfg = get_preset(name)
    assert cfg.name == name
    assert tuple(getattr(cfg, f) for f in FIELDS) == EXPECTED[name]
    assert PRESETS[name] is cfg


def test_registry_contents():
    assert list(PRESETS)[:4] == ["gpg", "grpo", "dr_grpo", "dapo"]  # then those the objectives register
    assert {"gspo", "cispo", "rloo", "reinforce_pp"} <= set(PRESETS)
    assert PRESETS["gpg"] is GPG and PRESETS["grpo"] is GRPO
    assert PRESETS["dr_grpo"] is DR_GRPO and PRESETS["dapo"] is DAPO
    assert SCALES == ("none", "group", "batch")
    assert LOSS_AGGS == ("token_mean", "seq_mean_token_mean", "seq_sum_constant")
    # every field is explained (it shows in --help)
    assert all(f.metadata.get("help") for f in dataclasses.fields(AlgorithmConfig))


@pytest.mark.parametrize(("alias", "name"), [("GPG", "gpg"), ("Dr-GRPO", "dr_grpo"), ("DAPO", "dapo")])
def test_lookup_is_case_and_dash_insensitive(alias, name):
    assert get_preset(alias) is PRESETS[name]


def test_override_returns_new_validated_copy():
    cfg = get_preset("grpo", beta=0.0, epsilon_high=0.3)
    assert cfg.beta == 0.0 and cfg.epsilon_high == 0.3
    assert cfg.scale == "group" and cfg.loss_agg == "seq_mean_token_mean"  # the rest is unchanged
    assert GRPO.beta == 0.04  # the preset itself is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.beta = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="beta must be >= 0"):
        get_preset("grpo", beta=-1.0)


def test_config_passes_through_get_preset():
    cfg = AlgorithmConfig(scale="batch")
    assert get_preset(cfg) is cfg
    assert get_preset(cfg, age=False).age is False


def test_unknown_override_lists_valid_settings():
    with pytest.raises(
        ValueError, match=r"unknown algorithm setting\(s\) \['temperature'\]; valid: name, scale"
    ):
        get_preset("gpg", temperature=1.0)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown preset 'ppo'; valid presets: gpg, grpo, dr_grpo, dapo"):
        get_preset("ppo")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "std"}, "scale='std' is not valid; choose one of none, group, batch"),
        ({"loss_agg": "sum"}, "loss_agg='sum' is not valid; choose one of token_mean, seq_mean_token_mean"),
        ({"epsilon_low": -0.1}, "epsilon_low and epsilon_high must be >= 0"),
        ({"epsilon_high": -0.1}, "epsilon_low and epsilon_high must be >= 0"),
        ({"beta": -0.01}, "beta must be >= 0"),
        ({"resample_threshold": 1.5}, r"resample_threshold must be in \[0, 1\]"),
        ({"resample_threshold": -0.1}, r"resample_threshold must be in \[0, 1\]"),
        ({"max_resample_draws": 0}, "max_resample_draws must be >= 1"),
        ({"loss_constant": 0}, "loss_constant must be a positive integer"),
        ({"num_iterations": 0}, "num_iterations must be >= 1"),
        ({"num_iterations": 2}, "set ratio=True"),
    ],
)
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlgorithmConfig(**kwargs)


def test_num_iterations_needs_ratio():
    # GPG is on-policy: a second update on the same batch needs the PPO ratio, and the error says so.
    with pytest.raises(ValueError, match="num_iterations=4 reuses each rollout batch off-policy") as info:
        get_preset("gpg", num_iterations=4)
    assert "ratio=True" in str(info.value)
    assert get_preset("gpg", num_iterations=4, ratio=True).num_iterations == 4
    assert get_preset("grpo", num_iterations=2).num_iterations == 2  # GRPO already has the ratio


def test_boundary_values_are_valid():
    AlgorithmConfig(resample_threshold=0.0)
    AlgorithmConfig(resample_threshold=1.0)
    AlgorithmConfig(epsilon_low=0.0, epsilon_high=0.0, beta=0.0, loss_constant=1, max_resample_draws=1)


@pytest.mark.parametrize("name", list(PRESETS))
def test_to_dict_round_trip(name):
    cfg = get_preset(name)
    d = cfg.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(AlgorithmConfig)}
    assert d["name"] == name
    assert AlgorithmConfig(**d) == cfg
    custom = cfg.replace(loss_constant=512, resample_threshold=0.25)
    assert AlgorithmConfig(**custom.to_dict()) == custom
