"""REINFORCE++ (Hu et al. 2025, arXiv 2501.03262): the KL to the reference in the reward, advantages
normalised over the global batch.

What it changes relative to GPG: the reward is per token, the answer's reward at its last token minus a
k1 KL penalty at every token, ``r_t = 1[t = last] r(x, y) - beta * KL_t`` with
``KL_t = log pi_old(y_t) - log pi_ref(y_t)``; the advantage of a token is its return (discount 1)
``A_t = r(x, y) - beta * sum_{s >= t} KL_s``; the advantages are then normalised over *every token of the
global batch*, ``(A_t - mean) / std`` (no per-group baseline, no AGE), where GPG normalises within groups.
The loss is PPO's clipped surrogate of the normalised advantage (token mean), with no KL term in it (the
KL is already in the reward). Answers whose reward is NaN are left out of the statistics (advantage 0).

Two answers, rewards (1, 0), of 2 and 1 tokens; KL = (0.5, 0) and (0); beta = 0.1:
returns (1 - 0.1 * 0.5, 1) = (0.95, 1) and (0); mean 0.65, unbiased std sqrt(0.635 / 2) = 0.5635:

>>> import torch
>>> adv = token_returns(torch.tensor([1.0, 0.0], dtype=torch.float64),
...                     torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=torch.float64), torch.tensor([[1, 1], [1, 0]]),
...                     beta=0.1)
>>> adv.tolist()
[[0.95, 1.0], [0.0, 0.0]]
>>> [round(a, 5) for a in normalise(adv, torch.tensor([[1, 1], [1, 0]]), lambda t: t)[0].flatten().tolist()]
[0.53241, 0.62115, -1.15356, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gpgrl.algorithms.advantages import group_advantages
from gpgrl.algorithms.objective import (
    AdvantageInputs,
    LossInputs,
    Needs,
    register_objective,
    replace_settings,
)
from gpgrl.algorithms.objectives.gpg import PolicyGradient
from gpgrl.algorithms.presets import AlgorithmConfig, register_preset

__all__ = ["ReinforcePlusPlus", "normalise", "token_returns"]

NORM_EPS = 1e-8  # added to the std


def token_returns(rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, *, beta: float) -> torch.Tensor:
    """[n, T] returns (discount 1) of the token rewards ``1[t = last] r - beta * kl_t``: ``r - beta *
    sum_{s >= t} kl_s`` on the answer's tokens, 0 on padding and where ``r`` is NaN."""
    real = mask.bool() & ~torch.isnan(rewards).unsqueeze(1)
    penalty = torch.where(real, beta * kl, torch.zeros_like(kl))
    to_go = penalty.flip(1).cumsum(1).flip(1)  # sum over s >= t
    r = torch.nan_to_num(rewards, nan=0.0).unsqueeze(1).to(kl.dtype)
    return torch.where(real, r - to_go, torch.zeros_like(kl))


def normalise(returns: torch.Tensor, mask: torch.Tensor,
              reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``(A - mean) / (std + 1e-8)`` over the real tokens of every process (``reduce_sum`` sums over them;
    the std unbiased), 0 on padding; and the std (0: no signal)."""
    real = mask.bool()
    local = torch.stack([real.sum().to(torch.float64), returns[real].double().sum(),
                         (returns[real].double() ** 2).sum()])
    n, total, squares = (float(x) for x in reduce_sum(local.to(returns.device)).tolist())
    if n < 2:
        return torch.zeros_like(returns), 0.0
    mean = total / n
    std = math.sqrt(max(squares - n * mean * mean, 0.0) / (n - 1))
    if std == 0.0:
        return torch.zeros_like(returns), 0.0
    return torch.where(real, (returns - mean) / (std + NORM_EPS), torch.zeros_like(returns)), std


@register_objective("reinforce_pp")
class ReinforcePlusPlus(PolicyGradient):
    """REINFORCE++: token returns with the k1 KL penalty (``beta``), normalised over the global batch; the
    preset's loss (PPO's clipped surrogate, token mean) without a KL term."""

    name = "reinforce_pp"

    @property
    def needs(self) -> Needs:
        return Needs(old_logprobs=True, ref_logprobs=self.settings.beta > 0, token_advantages=True)

    def advantages(self, inputs: AdvantageInputs) -> tuple[torch.Tensor, dict[str, float]]:
        _, stats = group_advantages(inputs.rewards.cpu(), inputs.group_size, age=False)  # the batch's counts
        lp = inputs.logprobs()
        mask = torch.cat(lp.mask)
        old = torch.cat(lp.old).double()
        kl = old - torch.cat(lp.ref).double() if self.settings.beta > 0 else torch.zeros_like(old)
        rewards = inputs.rewards[inputs.rows].to(old.device, torch.float64)
        adv, std = normalise(token_returns(rewards, kl, mask, beta=self.settings.beta), mask, inputs.reduce_sum)
        stats.update({"alpha": 1.0, "no_signal": float(std == 0.0), "return_std": std})
        return adv, stats

    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        kl_free = replace_settings(self, beta=0.0)  # the KL is in the reward, not in the loss
        return PolicyGradient.loss(kl_free, inputs)  # type: ignore[arg-type]


register_preset(
    AlgorithmConfig(name="reinforce_pp", scale="none", age=False, ratio=True, epsilon_low=0.2, epsilon_high=0.2,
                    beta=0.001, loss_agg="token_mean", resample_threshold=0.0),
    "REINFORCE++ (Hu et al. 2025, arXiv 2501.03262): token rewards with a k1 KL penalty (beta 0.001) to the "
    "reference, returns normalised over the whole batch's tokens (no group baseline), clipped surrogate, token mean")
