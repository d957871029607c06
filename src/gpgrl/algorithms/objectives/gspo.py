"""GSPO: Group Sequence Policy Optimization (Zheng et al. 2025, arXiv 2507.18071).

What it changes relative to GPG: the importance ratio and its clipping are per *answer*, not per token.
With the group-normalised advantage A_i = (r_i - mean) / std (the paper's eq. 6, GRPO's), GSPO maximises
(eq. 5) ``1/G sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)`` with the sequence ratio
(eq. 7) ``s_i = (pi(y_i | x) / pi_old(y_i | x)) ** (1 / |y_i|) = exp(mean_t (log pi - log pi_old))``:
the length-normalised likelihood ratio, clipped at 1 -/+ eps with eps of the order of 3e-4 / 4e-4 (the
paper's section 5.1). Each token of an answer carries its answer's ratio: the loss per token is
``-min(s_i A, clip(s_i) A)`` with ``s_i`` differentiated through every token's log-prob (``sg[s_i] *
pi_t / sg[pi_t]``, the paper's eq. 17 form, which lets A be per token), then each answer's token mean,
then the batch mean (``loss_agg: seq_mean_token_mean``). On-policy (``num_iterations: 1``) every s_i is 1.
No KL term (the paper's setting).

One answer of 2 tokens whose log-ratios are both 0.1 (s = e^0.1 = 1.105 > 1.0004, clipped) with A = 1,
and one of 1 token with log-ratio 0.0002 (s = 1.0002, inside) with A = -1:
loss = (-1.0004 + 1.0002) / 2 = -1e-4 (to 7 places), and only the second answer has a gradient (s / 2 = 0.5001):

>>> import torch
>>> logp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]], dtype=torch.float64, requires_grad=True)
>>> old = torch.tensor([[-1.1, -2.1], [-3.0002, 0.0]], dtype=torch.float64)
>>> inputs = LossInputs(logp, torch.tensor([[1, 1], [1, 0]]), torch.tensor([1.0, -1.0], dtype=torch.float64),
...                     num_tokens=3, num_sequences=2, max_completion_length=2, old_logp=old)
>>> loss, m = GSPO(get_preset("gspo")).loss(inputs)
>>> round(float(loss.detach()), 7), m["clip_frac_high"]   # 2 of the 3 tokens clipped
(-0.0001, 0.6666666666666666)
>>> loss.backward(); [[round(g, 6) for g in row] for row in logp.grad.tolist()]
[[0.0, 0.0], [0.5001, 0.0]]
"""

from __future__ import annotations

import torch

from gpgrl.algorithms.objective import LossInputs, Objective, register_objective
from gpgrl.algorithms.presets import AlgorithmConfig, get_preset, register_preset  # noqa: F401 (doctest)

__all__ = ["GSPO"]


@register_objective("gspo")
class GSPO(Objective):
    """GSPO's sequence-ratio clipped surrogate (``epsilon_low`` / ``epsilon_high`` clip s_i), aggregated by
    ``loss_agg``; advantages as the preset's ``scale`` (group std)."""

    name = "gspo"
    kl_term = False

    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        s, logp = self.settings, inputs.logp
        mask, old, adv = self.ratio_inputs(inputs)
        # log s_i: the mean over the answer's tokens of log pi - log pi_old (eq. 7), [n, 1]
        log_seq = ((logp - old) * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
        ratio = torch.exp(logp - logp.detach() + log_seq.detach())  # value s_i, gradient s_i * d log pi_t
        clipped = ratio.clamp(1.0 - s.epsilon_low, 1.0 + s.epsilon_high)
        loss = self.aggregate(-torch.minimum(ratio * adv, clipped * adv), mask, inputs)
        return loss, self.ratio_metrics(loss, mask, ratio, (ratio < 1.0 - s.epsilon_low) & (adv < 0),
                                        (ratio > 1.0 + s.epsilon_high) & (adv > 0))


register_preset(
    AlgorithmConfig(name="gspo", scale="group", age=False, ratio=True, epsilon_low=3e-4, epsilon_high=4e-4,
                    beta=0.0, loss_agg="seq_mean_token_mean", resample_threshold=0.0),
    "GSPO (Zheng et al. 2025, arXiv 2507.18071): GRPO's advantages with a per-answer importance ratio "
    "(pi / pi_old)^(1/|y|), clipped at 1 -/+ 3e-4 / 4e-4, per-answer token mean, no KL")
