"""Every recipe in recipes/ parses into a valid config (so a typo in a shipped recipe fails CI)."""

from pathlib import Path

import pytest
import yaml

from gpgrl.config import load_config

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_valid(path):
    from gpgrl.rewards.scoring import as_reward_functions

    cfg = load_config(path)
    assert cfg.model.name_or_path and cfg.data.dataset
    assert cfg.resolved_algorithm().name in ("gpg", "grpo", "dr_grpo", "dapo")
    assert as_reward_functions(cfg.rewards)  # every reward exists and takes the recipe's parameters
    assert path.read_text().startswith("#")  # a header: what it reproduces, hardware, launch command


@pytest.mark.parametrize("path", sorted((RECIPES[0].parent / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_are_yaml(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP")
