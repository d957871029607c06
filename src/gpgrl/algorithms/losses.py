"""Policy losses, as pure tensor functions (their aggregations, by name: :mod:`gpgrl.algorithms.aggregation`).

Shapes: B answers in this (micro-)batch, T completion tokens (padded), V vocabulary.
``logp[b, t]`` is log pi(o_b,t | q, o_b,<t) for the policy being trained, ``mask[b, t]`` is 1 on real
completion tokens (up to and including the first EOS) and 0 on padding.

GPG (arXiv 2504.02546, eq. 7)::

    L = -(1 / sum_i |o_i|) * sum_i sum_t A_i * log pi(o_i,t)

The denominator is the number of completion tokens in the *whole global batch*. Pass it as
``num_tokens`` when the batch is split into micro-batches or across processes: each piece then returns
its share of the full-batch loss, and the pieces' gradients add up to exactly the full batch's gradient.
"""

from __future__ import annotations

import torch

from gpgrl.algorithms.aggregation import AGGREGATIONS, masked_mean, masked_sum
from gpgrl.algorithms.presets import AlgorithmConfig, get_preset

__all__ = ["masked_mean", "masked_sum", "policy_loss"]


def policy_loss(
    logp: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    preset: str | AlgorithmConfig = "gpg",
    num_tokens: int | float | torch.Tensor | None = None,
    num_sequences: int | float | None = None,
    loss_constant: int | None = None,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The policy-gradient loss of a preset, aggregated so that micro-batches add up exactly.

    Args:
        logp: [B, T] log-probs of the completion tokens under the policy (with grad).
        mask: [B, T] 1 on completion tokens, 0 on padding.
        advantages: [B] one advantage per answer (from :func:`group_advantages`), or [B, T] one per
            token (e.g. an answer's advantage times a per-token importance weight).
        preset: a preset name (``gpg``, ``grpo``, ``dr_grpo``, ``dapo``) or an :class:`AlgorithmConfig`.
        num_tokens: completion tokens in the whole global batch (``token_mean``); default: ``mask.sum()``.
        num_sequences: answers in the whole global batch (``seq_mean_token_mean``, ``seq_sum_constant``);
            default: B.
        loss_constant: the constant of ``seq_sum_constant`` (Dr. GRPO), when the config leaves it None.
        old_logp: [B, T] log-probs of the policy that sampled the answers (needed when ``ratio``);
            default: ``logp.detach()`` (on-policy, ratio = 1).
        ref_logp: [B, T] log-probs of the reference model (needed when ``beta > 0``).

    Returns:
        ``(loss, metrics)``. ``metrics`` has ``pg_loss``, ``kl`` (mean k3 over tokens), ``clip_frac_low``,
        ``clip_frac_high``, ``ratio_mean`` and ``num_tokens`` (of this piece), as floats.

    GPG on two answers of 2 and 1 tokens, A = (+1, -1): L = -(1*(-1) + 1*(-2) + -1*(-3)) / 3 = 0:

    >>> logp = torch.tensor([[-1., -2.], [-3., 0.]], requires_grad=True)
    >>> mask = torch.tensor([[1, 1], [1, 0]])
    >>> loss, m = policy_loss(logp, mask, torch.tensor([1., -1.]))
    >>> loss.item()
    0.0
    >>> loss.backward(); logp.grad.tolist()      # -A * mask / num_tokens
    [[-0.3333333432674408, -0.3333333432674408], [0.3333333432674408, 0.0]]
    """
    cfg = get_preset(preset)
    if logp.shape != mask.shape or logp.dim() != 2:
        raise ValueError(f"logp {tuple(logp.shape)} and mask {tuple(mask.shape)} must both be [B, T]")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages must be [B]={logp.shape[0]} or [B, T]={tuple(logp.shape)}, "
                         f"got {tuple(advantages.shape)}")
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype)
    adv = adv.unsqueeze(1) if adv.dim() == 1 else adv  # [B, 1] or [B, T]

    metrics: dict[str, float] = {"num_tokens": float(mask.sum())}
    if cfg.ratio:
        old = logp.detach() if old_logp is None else old_logp
        ratio = torch.exp(logp - old)  # [B, T]
        clipped = ratio.clamp(1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high)
        per_token = -torch.minimum(ratio * adv, clipped * adv)  # PPO clipped surrogate
        with torch.no_grad():
            low = (ratio < 1.0 - cfg.epsilon_low) & (adv < 0)
            high = (ratio > 1.0 + cfg.epsilon_high) & (adv > 0)
            metrics["clip_frac_low"] = float(masked_mean(low.to(logp.dtype), mask))
            metrics["clip_frac_high"] = float(masked_mean(high.to(logp.dtype), mask))
            metrics["ratio_mean"] = float(masked_mean(ratio, mask))
    else:
        per_token = -adv * logp  # GPG, paper eq. 7: no ratio, no clip

    metrics["pg_loss"] = float(_aggregate(per_token.detach(), mask, cfg, num_tokens, num_sequences, loss_constant))
    if cfg.beta > 0:
        if ref_logp is None:
            raise ValueError(f"beta={cfg.beta} > 0 needs ref_logp (log-probs of the reference model)")
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1.0  # k3 estimator of KL(pi || ref), always >= 0
        per_token = per_token + cfg.beta * kl
        metrics["kl"] = float(masked_mean(kl.detach(), mask))

    loss = _aggregate(per_token, mask, cfg, num_tokens, num_sequences, loss_constant)
    return loss, metrics


def _aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    cfg: AlgorithmConfig,
    num_tokens: int | float | torch.Tensor | None,
    num_sequences: int | float | None,
    loss_constant: int | None,
) -> torch.Tensor:
    """Reduce [B, T] per-token losses to a scalar, normalised by *global* counts."""
    n_seq = per_token.shape[0] if num_sequences is None else num_sequences
    return AGGREGATIONS[cfg.loss_agg](per_token, mask, num_tokens=num_tokens, num_sequences=n_seq,
                                      constant=cfg.loss_constant or loss_constant)
