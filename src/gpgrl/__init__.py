"""gpgrl: Group Policy Gradient (GPG) for reasoning language and vision-language models.

GPG (Chu et al. 2025, arXiv 2504.02546) fine-tunes a model with verifiable rewards using a plain
policy-gradient loss and group-mean advantages: no critic, no reference model, no KL, no ratio, no
clipping. GRPO, Dr. GRPO and DAPO are presets of the same trainer.

The public API::

    from gpgrl import Trainer, Config, get_preset, group_advantages, policy_loss, get_reward

    cfg = load_config("recipe.yaml")                         # or Config(...) / from_dict({...})
    Trainer.from_config(cfg).train()                        # builds model, data and rewards from cfg
    Trainer(cfg, model=m, tokenizer=t, dataset=records, rewards=[my_reward_fn]).train()

Names are imported lazily, so ``import gpgrl`` (and ``gpgrl --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Trainer": "gpgrl.train.trainer",
    "TrainingError": "gpgrl.train.trainer",
    "Config": "gpgrl.config",
    "load_config": "gpgrl.recipe",
    "from_dict": "gpgrl.config",
    "get_preset": "gpgrl.algorithms.presets",
    "AlgorithmConfig": "gpgrl.algorithms.presets",
    "group_advantages": "gpgrl.algorithms.advantages",
    "policy_loss": "gpgrl.algorithms.losses",
    "Objective": "gpgrl.algorithms.objective",
    "register_objective": "gpgrl.algorithms.objective",
    "get_reward": "gpgrl.rewards.registry",
    "register_reward": "gpgrl.rewards.registry",
    "evaluate": "gpgrl.eval.evaluator",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        if name in ("get_reward", "register_reward"):
            importlib.import_module("gpgrl.rewards")  # registers the built-in rewards
        return getattr(module, name)
    raise AttributeError(f"module 'gpgrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
