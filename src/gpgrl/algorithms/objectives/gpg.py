"""GPG and the group-relative family it shares its maths with: GRPO, Dr. GRPO, DAPO.

The four differ only in settings (:mod:`gpgrl.algorithms.presets`): the advantage's normaliser and AGE
(:func:`gpgrl.algorithms.group_advantages`), GPG's plain ``-A * log pi`` or the PPO clipped surrogate, the
k3 KL to a reference, and the aggregation (:func:`gpgrl.algorithms.policy_loss`). Each is registered under
its own name, so that a preset selects its objective and an objective of another family can replace one.

>>> import torch
>>> obj = PolicyGradient(get_preset("gpg"))
>>> logp = torch.tensor([[-1., -2.], [-3., 0.]])
>>> inputs = LossInputs(logp, torch.tensor([[1, 1], [1, 0]]), torch.tensor([1., -1.]), num_tokens=3,
...                     num_sequences=2, max_completion_length=2)
>>> float(obj.loss(inputs)[0])     # -(1*(-1) + 1*(-2) - 1*(-3)) / 3
0.0
"""

from __future__ import annotations

import torch

from gpgrl.algorithms.losses import policy_loss
from gpgrl.algorithms.objective import LossInputs, Objective, register_objective, replace_settings
from gpgrl.algorithms.presets import get_preset  # noqa: F401  (the doctest's)

__all__ = ["PolicyGradient"]


class PolicyGradient(Objective):
    """GPG (Chu et al. 2025, arXiv 2504.02546, eq. 7 and 9) and, by their settings, GRPO, Dr. GRPO and DAPO."""

    name = "gpg"

    def for_step(self, stats: dict[str, float]) -> Objective:
        """With ``age_scales_kl`` (the open-r1 gpg.py translation), beta x alpha: the original divides its
        whole loss, KL included, by inverse_alpha."""
        s, alpha = self.settings, stats["alpha"]
        if s.age_scales_kl and s.age and s.beta > 0 and alpha > 0:
            return replace_settings(self, beta=s.beta * alpha)
        return self

    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        return policy_loss(inputs.logp, inputs.mask, self.weighted_advantages(inputs), preset=self.settings,
                           num_tokens=inputs.num_tokens, num_sequences=inputs.num_sequences,
                           loss_constant=inputs.max_completion_length, old_logp=inputs.old_logp,
                           ref_logp=inputs.ref_logp)


for _name in ("gpg", "grpo", "dr_grpo", "dapo"):
    register_objective(_name, PolicyGradient)
