"""Loss aggregation: how per-token losses [B, T] become one scalar, by name (the ``loss_agg`` setting).

Each function takes the per-token losses, the completion mask and the *global* counts, so that the
pieces of a batch split into micro-batches or over processes add up to exactly the whole batch's loss:

* ``token_mean`` (GPG, DAPO): sum over every token / completion tokens in the global batch;
* ``seq_mean_token_mean`` (GRPO): each answer's token mean, summed / answers in the global batch;
* ``seq_sum_constant`` (Dr. GRPO): sum over every token / (answers in the global batch x a constant).

>>> per_token, mask = torch.tensor([[1., 2.], [3., 0.]]), torch.tensor([[1, 1], [1, 0]])
>>> [float(AGGREGATIONS[name](per_token, mask, num_tokens=None, num_sequences=2, constant=4)) for name in LOSS_AGGS]
[2.0, 2.25, 0.75]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` where ``mask`` is 1.

    >>> masked_sum(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([[1, 0], [1, 1]]))
    tensor(8.)
    """
    x = torch.where(mask.bool(), x, torch.zeros_like(x))  # where, not x * mask: -inf * 0 would be NaN
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1 (0 where the mask is empty).

    >>> masked_mean(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([[1, 0], [1, 1]]), dim=1)
    tensor([1.0000, 3.5000])
    """
    return masked_sum(x, mask, dim) / mask.sum(dim=dim).clamp(min=1)


def token_mean(per_token: torch.Tensor, mask: torch.Tensor, *, num_tokens: int | float | torch.Tensor | None,
               num_sequences: int | float, constant: int | None) -> torch.Tensor:
    """Sum over all tokens / the global token count (``num_tokens``; default: this piece's)."""
    n_tok = mask.sum() if num_tokens is None else num_tokens
    return masked_sum(per_token, mask) / max(float(n_tok), 1.0)


def seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor, *, num_tokens: int | float | torch.Tensor | None,
                        num_sequences: int | float, constant: int | None) -> torch.Tensor:
    """Each answer's mean over its tokens, summed and divided by the global number of answers."""
    return masked_mean(per_token, mask, dim=1).sum() / num_sequences


def seq_sum_constant(per_token: torch.Tensor, mask: torch.Tensor, *, num_tokens: int | float | torch.Tensor | None,
                     num_sequences: int | float, constant: int | None) -> torch.Tensor:
    """Every token weighs 1 / (global number of answers x ``constant``), whatever its answer's length."""
    if constant is None:
        raise ValueError("loss_agg='seq_sum_constant' needs loss_constant (e.g. max_completion_length)")
    return masked_sum(per_token, mask) / (num_sequences * constant)


LossAgg = Literal["token_mean", "seq_mean_token_mean", "seq_sum_constant"]
#: The aggregations by name; ``LossAgg`` names the same keys (tests/test_presets.py checks that they agree).
AGGREGATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "token_mean": token_mean, "seq_mean_token_mean": seq_mean_token_mean, "seq_sum_constant": seq_sum_constant,
}
LOSS_AGGS: tuple[str, ...] = tuple(AGGREGATIONS)
