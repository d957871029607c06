"""Truncated importance sampling: correcting for an engine that samples slightly differently.

An external rollout engine (vLLM) samples answers with its own kernels, so the probability it sampled a
token with, ``pi_engine``, differs a little from the trainer's ``pi_train`` for the same weights. The
policy gradient is an expectation under ``pi_train``; weighting each token's term by
``w = pi_train / pi_engine`` corrects the mismatch, and truncating ``w`` at ``cap`` bounds the variance
(truncated importance sampling, "TIS", as verl's ``tis_imp_ratio_cap`` and TRL's
``vllm_importance_sampling_cap`` offer; Yao et al. 2025, "Your efficient RL framework secretly brings
you off-policy RL training")::

    w_t = min(exp(log pi_train(o_t) - log pi_engine(o_t)), cap)        (no gradient through w)

The weight multiplies the token's advantage: for GPG's ``-A * logp`` and for the clipped surrogate
(``w > 0`` factors out of the min) this is the same as weighting the token's loss.

>>> logp = torch.log(torch.tensor([[0.5, 0.2]]))
>>> engine = torch.log(torch.tensor([[0.25, 0.4]]))
>>> w, m = truncated_is_weights(logp, engine, torch.tensor([[1, 1]]), cap=1.5)
>>> [round(x, 4) for x in w[0].tolist()], m["is/clipped_frac"]   # 0.5/0.25 = 2 -> capped at 1.5; 0.2/0.4 = 0.5
([1.5, 0.5], 0.5)
"""

from __future__ import annotations

import torch


def truncated_is_weights(logp: torch.Tensor, sampling_logp: torch.Tensor, mask: torch.Tensor, *,
                         cap: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token weights ``min(exp(logp - sampling_logp), cap)`` [B, T] (no grad), 1 on padding.

    Returns the weights and metrics over real tokens: ``is/weight_mean``, ``is/weight_max`` (before the
    cap), ``is/clipped_frac`` (share of tokens at the cap) and ``is/logp_diff_abs`` (mean absolute
    log-prob difference between trainer and engine, the size of the mismatch).
    """
    if cap <= 0:
        raise ValueError(f"the importance-weight cap must be > 0, got {cap}")
    if logp.shape != sampling_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp {tuple(logp.shape)}, sampling_logp {tuple(sampling_logp.shape)} and mask "
                         f"{tuple(mask.shape)} must all be [B, T]")
    with torch.no_grad():
        real = mask.bool()
        diff = logp.detach().float() - sampling_logp.float()
        raw = torch.exp(diff.clamp(max=50.0))  # [B, T]; clamp only guards exp against overflow
        w = torch.where(real, raw.clamp(max=cap), torch.ones_like(raw))
        n = max(int(real.sum()), 1)
        metrics = {
            "is/weight_mean": float(torch.where(real, w, torch.zeros_like(w)).sum()) / n,
            "is/weight_max": float(raw[real].max()) if real.any() else 1.0,
            "is/clipped_frac": float((real & (raw >= cap)).sum()) / n,
            "is/logp_diff_abs": float(torch.where(real, diff.abs(), torch.zeros_like(diff)).sum()) / n,
        }
    return w, metrics
