"""CISPO: Clipped IS-weight Policy Optimization (MiniMax-M1, MiniMax 2025, arXiv 2506.13585, section 3.1).

What it changes relative to GPG: the loss is REINFORCE's ``-A * log pi`` weighted by the token's importance
ratio ``r = pi / pi_old``, clipped and detached (eq. 4 and 5)::

    J = 1 / sum_i |o_i| * sum_i sum_t sg(clip(r_i,t, 1 - eps_low, 1 + eps_high)) * A_i,t * log pi(o_i,t)

so every token keeps its gradient (PPO's clip zeroes the gradient of a clipped token; here only its weight is
bounded). The advantage is GRPO's group-normalised one (eq. 2), the normalisation a token mean over the batch.
The paper sets no lower bound (``epsilon_low: 1``: weights >= 0) and tunes the upper one only; the preset's
``epsilon_high: 4`` caps the weight at 5, as TRL's ``loss_type="cispo"`` does. On-policy every r is 1.
No KL term.

One answer of 2 tokens, log pi = (-1, -2), log pi_old = (-1.5, -2): r = (e^0.5 = 1.65, 1), clipped at
1 + 0.2 = 1.2 -> w = (1.2, 1); A = 2: loss = -(1.2 * 2 * -1 + 1 * 2 * -2) / 2 = 3.2, and the clipped token
keeps a gradient: d loss / d log pi = -w * A / 2 = (-1.2, -1):

>>> import torch
>>> logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
>>> inputs = LossInputs(logp, torch.ones(1, 2), torch.tensor([2.0]), num_tokens=2, num_sequences=1,
...                     max_completion_length=2, old_logp=torch.tensor([[-1.5, -2.0]]))
>>> loss, m = CISPO(get_preset("cispo", epsilon_high=0.2)).loss(inputs)
>>> round(float(loss.detach()), 6), m["clip_frac_high"]
(3.2, 0.5)
>>> loss.backward(); [round(g, 6) for g in logp.grad[0].tolist()]
[-1.2, -1.0]
"""

from __future__ import annotations

import torch

from gpgrl.algorithms.aggregation import AGGREGATIONS, masked_mean
from gpgrl.algorithms.objective import LossInputs, Needs, Objective, register_objective
from gpgrl.algorithms.presets import AlgorithmConfig, get_preset, register_preset  # noqa: F401 (doctest)

__all__ = ["CISPO"]


@register_objective("cispo")
class CISPO(Objective):
    """CISPO's clipped, detached importance weight times ``-A * log pi`` (``epsilon_low`` / ``epsilon_high``
    bound the weight), aggregated by ``loss_agg``; advantages as the preset's ``scale`` (group std)."""

    name = "cispo"

    def __init__(self, settings: AlgorithmConfig, *, importance: tuple[str, float] = ("off", 2.0)):
        if settings.beta > 0:
            raise ValueError(f"cispo has no KL term (beta={settings.beta}); set algorithm.beta: 0")
        super().__init__(settings, importance=importance)

    @property
    def needs(self) -> Needs:
        return Needs(old_logprobs=self.settings.num_iterations > 1)

    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        s, logp = self.settings, inputs.logp
        mask = inputs.mask.to(logp.dtype)
        old = logp.detach() if inputs.old_logp is None else inputs.old_logp
        adv = self.weighted_advantages(inputs).to(logp.dtype)
        adv = adv.unsqueeze(1) if adv.dim() == 1 else adv
        with torch.no_grad():
            ratio = torch.exp(logp.detach() - old)
            weight = ratio.clamp(1.0 - s.epsilon_low, 1.0 + s.epsilon_high)  # sg(clip(r)), eq. 5
        per_token = -weight * adv * logp
        loss = AGGREGATIONS[s.loss_agg](per_token, mask, num_tokens=inputs.num_tokens,
                                        num_sequences=inputs.num_sequences,
                                        constant=s.loss_constant or inputs.max_completion_length)
        metrics = {
            "num_tokens": float(mask.sum()), "pg_loss": float(loss.detach()),
            "clip_frac_low": float(masked_mean((ratio < 1.0 - s.epsilon_low).to(logp.dtype), mask)),
            "clip_frac_high": float(masked_mean((ratio > 1.0 + s.epsilon_high).to(logp.dtype), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }
        return loss, metrics


register_preset(
    AlgorithmConfig(name="cispo", scale="group", age=False, ratio=True, epsilon_low=1.0, epsilon_high=4.0,
                    beta=0.0, loss_agg="token_mean", resample_threshold=0.0),
    "CISPO (MiniMax-M1, arXiv 2506.13585): GRPO's advantages, -sg(clip(r, 0, 5)) * A * logp: the importance "
    "weight is clipped and detached, so every token keeps its gradient; token mean over the batch, no KL")
