"""A step's rollout metrics from the gathered batch (pure: tensors in, a flat dict out)."""

from __future__ import annotations

import torch


def rollout_metrics(lengths: torch.Tensor, truncated: torch.Tensor, rewards_per_fn: torch.Tensor,
                    reward_names: list[str], rewards: torch.Tensor, stats: dict[str, float]) -> dict[str, float]:
    """``adv/*`` (from :func:`gpgrl.algorithms.group_advantages`' stats), ``reward/*`` and ``rollout/*``.

    Args:
        lengths: [B] completion tokens per answer. truncated: [B] 1.0 where no EOS came in the budget.
        rewards_per_fn: [B, F] each reward function's values (NaN = unusable). reward_names: F names.
        rewards: [B] total rewards (NaN = unusable). stats: the advantage statistics of this batch.

    >>> m = rollout_metrics(torch.tensor([2., 4.]), torch.tensor([0., 1.]), torch.tensor([[1.], [float("nan")]]),
    ...                     ["acc"], torch.tensor([1., float("nan")]), {"alpha": 2.0, "reward_mean": 1.0, "reward_std": 0.0})
    >>> m["reward/acc"], m["reward/failures"], m["rollout/completion_length"], m["rollout/truncation_rate"], m["adv/alpha"]
    (1.0, 1.0, 3.0, 0.5, 2.0)
    """
    m = {f"adv/{k}": v for k, v in stats.items() if not k.startswith("reward_")}
    m["reward/mean"] = stats["reward_mean"]
    m["reward/std"] = stats["reward_std"]
    for j, name in enumerate(reward_names):
        col = rewards_per_fn[:, j]
        finite = col[~torch.isnan(col)]
        m[f"reward/{name}"] = float(finite.mean()) if finite.numel() else float("nan")
    m["reward/failures"] = float(torch.isnan(rewards).sum())
    m["rollout/completion_length"] = float(lengths.float().mean())
    m["rollout/completion_length_max"] = float(lengths.max())
    m["rollout/truncation_rate"] = float(truncated.float().mean())
    return m
