"""RLOO: REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740, eq. 5).

What it changes relative to GPG: the baseline of an answer is the mean reward of the *other* G - 1 answers
to its prompt, ``A_i = r_i - 1/(G-1) sum_{j != i} r_j``, which is ``G / (G - 1) * (r_i - mean)`` (no AGE,
no std); the loss is REINFORCE's on whole answers, ``-1/B sum_i A_i * log pi(y_i | x)`` with
``log pi(y | x) = sum_t log pi(y_t)`` (``loss_agg: seq_sum_constant`` with ``loss_constant: 1``). A NaN
reward (could not be computed) leaves its answer out: the baseline averages the group's other finite
rewards, and its advantage is 0.

>>> import torch
>>> r = torch.tensor([1.0, 0.0, 0.0, 1.0,   1.0, 1.0, 1.0, 1.0,   0.5, float("nan"), 1.0, 0.0])
>>> [round(a, 4) for a in leave_one_out(r, 4)[0].tolist()]   # 1 - 1/3; equal rewards; 1 - (0.5 + 0) / 2
[0.6667, -0.6667, -0.6667, 0.6667, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.75, -0.75]
"""

from __future__ import annotations

import torch

from gpgrl.algorithms.advantages import group_advantages
from gpgrl.algorithms.objective import AdvantageInputs, register_objective
from gpgrl.algorithms.objectives.gpg import PolicyGradient
from gpgrl.algorithms.presets import AlgorithmConfig, register_preset

__all__ = ["RLOO", "leave_one_out"]


def leave_one_out(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    """RLOO advantages [B] ``n / (n - 1) * (r - group mean)`` (n = the group's finite rewards) and the
    statistics of :func:`group_advantages` (``alpha`` is 1: no AGE)."""
    adv, stats = group_advantages(rewards, group_size, scale="none", age=False)
    count = (~torch.isnan(rewards)).view(-1, group_size).sum(1, keepdim=True).to(adv.dtype)  # [groups, 1]
    factor = count / (count - 1).clamp(min=1)
    return (adv.view(-1, group_size) * factor).view(-1), stats


@register_objective("rloo")
class RLOO(PolicyGradient):
    """GPG's loss (the preset's settings: ``-A * log pi`` summed per answer, batch mean) with the
    leave-one-out advantage."""

    name = "rloo"

    def advantages(self, inputs: AdvantageInputs) -> tuple[torch.Tensor, dict[str, float]]:
        adv, stats = leave_one_out(inputs.rewards.cpu(), inputs.group_size)
        return adv[inputs.rows], stats


register_preset(
    AlgorithmConfig(name="rloo", scale="none", age=False, ratio=False, beta=0.0, loss_agg="seq_sum_constant",
                    loss_constant=1, resample_threshold=0.0),
    "RLOO (Ahmadian et al. 2024, arXiv 2402.14740): A = r - mean of the other G - 1 rewards = G/(G-1) (r - "
    "mean), plain -A * log pi(answer) summed over its tokens, batch mean; no AGE, no std, no KL")
