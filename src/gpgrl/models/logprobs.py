"""Per-token log-probs of completions under a causal LM, without a full [B, T, V] float32 copy."""

from __future__ import annotations

import torch

from gpgrl.algorithms.losses import token_entropy, token_logprobs


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them (so log-probs match sampling).

    >>> position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist()
    [[0, 0, 0, 1, 2]]
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    with_entropy: bool = False,
    model_inputs: dict[str, torch.Tensor] | None = None,
    use_position_ids: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for each completion token: [B, T] float32, plus the entropy [B, T] if asked.

    ``prompt_ids`` [B, P] are left-padded, ``completion_ids`` [B, T] right-padded. Only the last T + 1
    positions' logits are computed where the model supports ``logits_to_keep`` (all recent transformers
    causal LMs do), and the log-softmax is taken a few rows at a time in float32. ``model_inputs`` are
    extra inputs (a vision model's ``pixel_values`` / ``image_grid_thw``); ``use_position_ids=False`` lets a
    model that computes its own positions (Qwen2-VL's 3-D rotary positions) do so.
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [B, P+T]
    T = completion_ids.shape[1]
    extra = dict(model_inputs or {})
    if extra:  # a vision model: its image inputs, and the token types its positions are computed from
        from gpgrl.models.vision import token_type_inputs

        extra.update(token_type_inputs(model, input_ids))
    if use_position_ids:
        extra["position_ids"] = position_ids_from_mask(attention_mask)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_to_keep=T + 1,
        use_cache=False,
        **extra,
    )
    logits = out.logits[:, -(T + 1) : -1, :]  # [B, T, V]: the logits that predict each completion token
    logp = token_logprobs(logits, completion_ids)  # [B, T]
    entropy = token_entropy(logits) if with_entropy else None
    return logp, entropy
