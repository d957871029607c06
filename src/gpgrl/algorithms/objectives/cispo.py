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

from gpgrl.algorithms.objective import LossInputs, Objective, register_objective
from gpgrl.algorithms.presets import AlgorithmConfig, get_preset, register_preset  # noqa: F401 (doctest)

__all__ = ["CISPO"]


@register_objective("cispo")
class CISPO(Objective):
    """CISPO's clipped, detached importance weight times ``-A * log pi`` (``epsilon_low`` / ``epsilon_high``
    bound the weight), aggregated by ``loss_agg``; advantages as the preset's ``scale`` (group std)."""

    name = "cispo"
    kl_term = False

    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        s, logp = self.settings, inputs.logp
        mask, old, adv = self.ratio_inputs(inputs)
        ratio = torch.exp(logp.detach() - old)
        weight = ratio.clamp(1.0 - s.epsilon_low, 1.0 + s.epsilon_high)  # sg(clip(r)), eq. 5: no gradient
        loss = self.aggregate(-weight * adv * logp, mask, inputs)
        return loss, self.ratio_metrics(loss, mask, ratio, ratio < 1.0 - s.epsilon_low, ratio > 1.0 + s.epsilon_high)


register_preset(
    AlgorithmConfig(name="cispo", scale="group", age=False, ratio=True, epsilon_low=1.0, epsilon_high=4.0,
                    beta=0.0, loss_agg="token_mean", resample_threshold=0.0),
    "CISPO (MiniMax-M1, arXiv 2506.13585): GRPO's advantages, -sg(clip(r, 0, 5)) * A * logp: the importance "
    "weight is clipped and detached, so every token keeps its gradient; token mean over the batch, no KL")
