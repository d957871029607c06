"""The algorithm core: pure tensor functions, no model and no I/O.

- :func:`group_advantages`: A = alpha * (r - group mean) / F_norm, with AGE (alpha = B / (B - M)).
- :func:`policy_loss`: GPG's -A * logp, or the PPO clipped surrogate + k3 KL, with the loss
  aggregations of GPG / DAPO (global token mean), GRPO (per-answer mean) and Dr. GRPO (constant).
- :func:`get_preset` / :data:`PRESETS`: ``gpg``, ``grpo``, ``dr_grpo``, ``dapo`` as explicit settings.

The log-probs these functions take come from the model code (:mod:`gpgrl.models.logprobs`, whose
kernels live in :mod:`gpgrl.models.kernels`).
"""

from gpgrl.algorithms.advantages import SCALES, degenerate_groups, group_advantages
from gpgrl.algorithms.losses import masked_mean, masked_sum, policy_loss
from gpgrl.algorithms.presets import DAPO, DR_GRPO, GPG, GRPO, LOSS_AGGS, PRESETS, AlgorithmConfig, get_preset

__all__ = [
    "DAPO",
    "DR_GRPO",
    "GPG",
    "GRPO",
    "LOSS_AGGS",
    "PRESETS",
    "SCALES",
    "AlgorithmConfig",
    "degenerate_groups",
    "get_preset",
    "group_advantages",
    "masked_mean",
    "masked_sum",
    "policy_loss",
]
