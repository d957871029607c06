"""The algorithm core: pure tensor functions, no model and no I/O.

- :func:`group_advantages`: A = alpha * (r - group mean) / F_norm, with AGE (alpha = B / (B - M));
  F_norm by name in :data:`F_NORMS` (``scale``: none, group std, batch std).
- :func:`policy_loss`: GPG's -A * logp, or the PPO clipped surrogate + k3 KL, reduced by one of the
  aggregations in :data:`AGGREGATIONS` (``loss_agg``): GPG / DAPO (global token mean), GRPO
  (per-answer mean), Dr. GRPO (constant).
- :func:`get_preset` / :data:`PRESETS`: ``gpg``, ``grpo``, ``dr_grpo``, ``dapo`` and the presets the
  objectives register, as explicit settings.
- :class:`Objective` / :func:`register_objective` / :func:`make_objective`: one object per algorithm (its
  needs, advantages and loss), which the trainer runs (:mod:`gpgrl.algorithms.objective`); the built-in ones
  are one file each in :mod:`gpgrl.algorithms.objectives`.

The log-probs these functions take come from the model code (:mod:`gpgrl.models.logprobs`, whose
kernels live in :mod:`gpgrl.models.kernels`).
"""

from gpgrl.algorithms import objectives  # noqa: F401  (registers the built-in objectives and their presets)
from gpgrl.algorithms.advantages import F_NORMS, SCALES, degenerate_groups, group_advantages
from gpgrl.algorithms.aggregation import AGGREGATIONS, LOSS_AGGS, masked_mean, masked_sum
from gpgrl.algorithms.losses import policy_loss
from gpgrl.algorithms.objective import OBJECTIVES, Objective, make_objective, register_objective
from gpgrl.algorithms.presets import DAPO, DR_GRPO, GPG, GRPO, PRESETS, AlgorithmConfig, get_preset

__all__ = [
    "AGGREGATIONS",
    "DAPO",
    "DR_GRPO",
    "F_NORMS",
    "GPG",
    "GRPO",
    "LOSS_AGGS",
    "OBJECTIVES",
    "PRESETS",
    "SCALES",
    "AlgorithmConfig",
    "Objective",
    "degenerate_groups",
    "get_preset",
    "group_advantages",
    "make_objective",
    "masked_mean",
    "masked_sum",
    "policy_loss",
    "register_objective",
]
