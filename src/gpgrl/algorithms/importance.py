"""Importance sampling: correcting for an engine that samples with other numerics than the trainer's.

GPG's loss has no ratio: it is on-policy, ``-A * log pi(o_t)`` for answers drawn from the policy. An
external rollout engine (vLLM) draws them with its own kernels and precision, so the probability it
sampled a token with, ``pi_engine``, differs a little from the trainer's ``pi_train`` for the same
weights, and the samples are slightly off-policy. The policy gradient is an expectation under
``pi_train``; weighting each token's term by ``pi_train / pi_engine`` corrects that, and bounding the
weight bounds its variance (Yao et al. 2025, "Your efficient RL framework secretly brings you
off-policy RL training"; verl's ``tis_imp_ratio_cap``, TRL's ``vllm_importance_sampling_*``).

**What is compared.** The engine reports the log-prob of each sampled token under the distribution it
sampled from: after the temperature and top-k / top-p, renormalised (vLLM's ``processed_logprobs``).
The trainer computes the same quantity from its own logits
(:func:`gpgrl.models.logprobs.processed_logprobs`), so the ratio measures the engine's numerics only;
a recipe's deliberate top-k or untempered loss log-probs (the original's choices) are not "corrected"
away. The loss's own log-probs stay what the preset defines. A token the trainer's top-k / top-p set
excludes has ``pi_train = 0``: ratio 0 (never NaN).

**Modes** (TRL's four; ``C`` = the cap), the weight multiplying each token's advantage, no gradient
through it::

    token_truncate     w_t = min(r_t, C)                          r_t = pi_train(o_t) / pi_engine(o_t)
    token_mask         w_t = r_t if r_t <= C else 0
    sequence_truncate  w_t = min(R, C)                            R = prod_t r_t over the answer
    sequence_mask      w_t = R if R <= C else 0

**Default: ``token_truncate`` with C = 2** (:data:`DEFAULT_MODE`, :data:`DEFAULT_CAP`; TIS as Yao et al.
and verl run it) where samples come from vLLM; off for the ``hf`` engine, whose samples are the
trainer's own. Why per token rather than TRL's default ``sequence_mask``: GPG's loss is a token mean
with a per-token term, and its answers are long (3,584 tokens in the R1-Distill recipes). A sequence's
ratio is the product of its tokens' ratios, so a per-token log-gap of typical size ``s`` becomes a
sequence log-ratio of about ``s * sqrt(T)``: at ``s`` = 0.02 and T = 3,584 that is 1.2, and a fifth
of the answers cross log 3 and are dropped whole while the rest get weights spread over [0.07, 3] --
much of the batch's signal thrown away or reweighted by noise, where token truncation keeps every token
within 10 % of 1. Token truncation touches only the tokens that are actually off
(``tests/test_importance.py`` shows the modes on the same perturbed batches).

>>> logp = torch.log(torch.tensor([[0.5, 0.2]]))
>>> engine = torch.log(torch.tensor([[0.25, 0.4]]))
>>> w, s = importance_weights(logp, engine, torch.tensor([[1, 1]]), mode="token_truncate", cap=1.5)
>>> [round(x, 4) for x in w[0].tolist()], s["capped"]   # 0.5/0.25 = 2 -> capped at 1.5; 0.2/0.4 = 0.5
([1.5, 0.5], 1.0)
>>> w, s = importance_weights(logp, engine, torch.tensor([[1, 1]]), mode="sequence_mask", cap=1.5)
>>> [round(x, 4) for x in w[0].tolist()], s["masked"]   # R = 2 * 0.5 = 1 <= 1.5: both tokens weigh 1
([1.0, 1.0], 0.0)
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

Correction = Literal["auto", "off", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]
CORRECTIONS: tuple[str, ...] = get_args(Correction)
#: What ``auto`` means for samples that do not come from the trainer's own model (vLLM engines).
DEFAULT_MODE = "token_truncate"
#: The cap ``C`` when ``rollout.importance_cap`` is not set.
DEFAULT_CAP = 2.0
#: Engines whose samples are the trainer's own (``auto`` leaves them uncorrected).
OWN_SAMPLES_ENGINES = frozenset({"hf"})
#: exp() of a larger log-ratio would overflow; a ratio that large is capped or masked anyway.
MAX_LOG_RATIO = 50.0

#: The sums and extremes :func:`importance_weights` returns, how each combines over micro-batches and
#: processes (``sum``, ``max`` or ``min``).
STAT_REDUCTIONS = {
    "tokens": "sum", "gap_tokens": "sum", "gap_sum": "sum", "gap_max": "max", "ratio_sum": "sum",
    "ratio_sq_sum": "sum", "ratio_min": "min", "ratio_max": "max", "weight_sum": "sum", "capped": "sum",
    "masked": "sum", "outside": "sum",
}


def resolve_correction(correction: str, engine: str, cap: float | None) -> tuple[str, float]:
    """``(mode, cap)`` a run uses: ``auto`` is :data:`DEFAULT_MODE` for every engine but ``hf`` (whose
    samples are the trainer's own: ``off``); the cap is ``cap`` or :data:`DEFAULT_CAP`.

    >>> resolve_correction("auto", "vllm", None), resolve_correction("auto", "hf", 3.0)
    (('token_truncate', 2.0), ('off', 3.0))
    >>> resolve_correction("sequence_mask", "hf", None)
    ('sequence_mask', 2.0)
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"importance correction {correction!r} is not valid; choose one of {', '.join(CORRECTIONS)}")
    if cap is not None and not cap > 0:
        raise ValueError(f"the importance cap must be > 0, got {cap}")
    if correction == "auto":
        correction = "off" if engine in OWN_SAMPLES_ENGINES else DEFAULT_MODE
    return correction, DEFAULT_CAP if cap is None else float(cap)


def importance_weights(logp: torch.Tensor, sampling_logp: torch.Tensor, mask: torch.Tensor, *, mode: str,
                       cap: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token weights [B, T] (no grad; 1 on padding, and everywhere with ``mode="off"``) and the
    statistics of the gap over the real tokens (``mask``), for :func:`importance_metrics`.

    ``logp`` [B, T]: the trainer's log-probs of the sampled tokens under the distribution the engine sampled
    from (``-inf`` outside its top-k / top-p set); ``sampling_logp`` [B, T]: the engine's. The statistics
    are sums and extremes over this batch's real tokens (:data:`STAT_REDUCTIONS`): ``tokens``; the gap
    ``|logp - sampling_logp|`` where both are finite (``gap_tokens``, ``gap_sum``, ``gap_max``); the token
    ratios ``r`` before any cap (``ratio_sum``, ``ratio_sq_sum``, ``ratio_min``, ``ratio_max``); the
    weights (``weight_sum``); the tokens whose weight the cap lowered (``capped``) or the mask zeroed
    (``masked``; in the sequence modes every token of such an answer); the tokens outside the trainer's
    set (``outside``).
    """
    if mode not in CORRECTIONS or mode == "auto":
        raise ValueError(f"mode {mode!r} is not valid; choose one of {', '.join(CORRECTIONS[1:])} "
                         "(resolve 'auto' with resolve_correction)")
    if not cap > 0:
        raise ValueError(f"the importance cap must be > 0, got {cap}")
    if logp.shape != sampling_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp {tuple(logp.shape)}, sampling_logp {tuple(sampling_logp.shape)} and mask "
                         f"{tuple(mask.shape)} must all be [B, T]")
    with torch.no_grad():
        real = mask.bool()
        mine, theirs = logp.detach().float(), sampling_logp.detach().float().to(logp.device)
        both = torch.isfinite(mine) & torch.isfinite(theirs)
        # log r: -inf where the trainer excludes the token, MAX where only the engine does (a broken report)
        log_r = torch.where(both, mine - theirs, torch.where(torch.isfinite(mine), MAX_LOG_RATIO, -math.inf))
        log_r = log_r.clamp(max=MAX_LOG_RATIO)
        r = torch.exp(log_r)  # [B, T]
        ones = torch.ones_like(r)
        if mode == "off":
            w, lowered = ones, torch.zeros_like(real)
        elif mode.startswith("token"):
            lowered = real & (r > cap)
            w = r.clamp(max=cap) if mode == "token_truncate" else torch.where(lowered, 0.0, r)
        else:
            seq = torch.where(real, log_r, 0.0).sum(-1, keepdim=True).clamp(max=MAX_LOG_RATIO)  # [B, 1]
            big = torch.exp(seq)
            w = (big.clamp(max=cap) if mode == "sequence_truncate" else torch.where(big > cap, 0.0, big)).expand_as(r)
            lowered = real & (big > cap)
        w = torch.where(real, w, ones)
        gap = torch.where(real & both, (mine - theirs).abs(), 0.0)
        n = int(real.sum())
        stats = {
            "tokens": float(n),
            "gap_tokens": float((real & both).sum()),
            "gap_sum": float(gap.sum(dtype=torch.float64)),
            "gap_max": float(gap.max()) if n else 0.0,
            "ratio_sum": float(torch.where(real, r, 0.0).sum(dtype=torch.float64)),
            "ratio_sq_sum": float(torch.where(real, r.double() ** 2, 0.0).sum()),
            "ratio_min": float(r[real].min()) if n else math.inf,
            "ratio_max": float(r[real].max()) if n else -math.inf,
            "weight_sum": float(torch.where(real, w, 0.0).sum(dtype=torch.float64)),
            "capped": float(lowered.sum()) if mode.endswith("truncate") else 0.0,
            "masked": float(lowered.sum()) if mode.endswith("mask") else 0.0,
            "outside": float((real & torch.isneginf(mine)).sum()),
        }
    return w, stats


def combine_stats(parts: list[dict[str, float]]) -> dict[str, float]:
    """Statistics of several batches (micro-batches, or processes) as one (:data:`STAT_REDUCTIONS`).

    >>> combine_stats([{"tokens": 2.0, "gap_max": 0.5}, {"tokens": 3.0, "gap_max": 0.25}])
    {'tokens': 5.0, 'gap_max': 0.5}
    """
    out: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            how = STAT_REDUCTIONS[key]
            if key not in out:
                out[key] = value
            elif how == "sum":
                out[key] += value
            else:
                out[key] = max(out[key], value) if how == "max" else min(out[key], value)
    return out


def importance_metrics(stats: dict[str, float]) -> dict[str, float]:
    """The ``is/`` metrics of the (global) statistics of :func:`importance_weights`.

    ``is/logp_diff_abs`` and ``is/logp_gap_max``: mean and max ``|log pi_train - log pi_engine|`` over
    the tokens where both are finite; ``is/ratio_mean``, ``is/ratio_std``, ``is/ratio_min``,
    ``is/ratio_max``: the token ratios before any cap; ``is/weight_mean``: the weights applied (1 when
    the correction is off); ``is/capped_frac``, ``is/masked_frac``: the share of tokens whose weight the
    cap lowered or the mask zeroed; ``is/outside_frac``: the share of tokens outside the trainer's
    top-k / top-p set.

    >>> m = importance_metrics({"tokens": 4.0, "gap_tokens": 4.0, "gap_sum": 0.4, "gap_max": 0.2, "ratio_sum": 4.0,
    ...                         "ratio_sq_sum": 4.5, "ratio_min": 0.5, "ratio_max": 1.5, "weight_sum": 4.0,
    ...                         "capped": 1.0, "masked": 0.0, "outside": 0.0})
    >>> m["is/logp_diff_abs"], m["is/ratio_mean"], m["is/ratio_std"], m["is/capped_frac"]
    (0.1, 1.0, 0.3535533905932738, 0.25)
    """
    n = max(stats["tokens"], 1.0)
    mean = stats["ratio_sum"] / n
    return {
        "is/logp_diff_abs": stats["gap_sum"] / max(stats["gap_tokens"], 1.0),
        "is/logp_gap_max": stats["gap_max"],
        "is/ratio_mean": mean,
        "is/ratio_std": math.sqrt(max(stats["ratio_sq_sum"] / n - mean * mean, 0.0)),
        "is/ratio_min": stats["ratio_min"] if stats["tokens"] else 1.0,
        "is/ratio_max": stats["ratio_max"] if stats["tokens"] else 1.0,
        "is/weight_mean": stats["weight_sum"] / n,
        "is/capped_frac": stats["capped"] / n,
        "is/masked_frac": stats["masked"] / n,
        "is/outside_frac": stats["outside"] / n,
    }
