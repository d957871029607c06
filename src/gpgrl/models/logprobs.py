"""Per-token log-probs of completions under a causal LM, without the [B, T, V] logits where possible.

Two paths give the same numbers (to float rounding):

- fused (:func:`~gpgrl.models.kernels.head_logprobs`): the model's forward returns the final hidden states
  and no logits (``logits_to_keep`` = an empty index), and the output head + log-softmax run a chunk of
  positions at a time, recomputed in backward: neither the logits nor their gradient exist whole.
- plain (:func:`~gpgrl.models.kernels.token_logprobs`): the model makes the [B, T + 1, V] logits of the
  completion positions (``logits_to_keep``) and the float32 log-softmax is taken a chunk at a time.

``fused=None`` (auto) takes the fused path where it is exact, as decided by :func:`fusable_head`: the head
must be a plain ``nn.Linear`` applied to the last hidden state and nothing else done to the logits, and
its parameters must be whole outside the forward pass (not FSDP / DeepSpeed ZeRO-3 shards).

Either path can also return, from the same logits, the log-probs of the distribution a rollout engine
sampled from (:func:`processed_logprobs`: temperature, then top-k / top-p, renormalised), which the
importance correction compares with the engine's own (:mod:`gpgrl.algorithms.importance`).
"""

from __future__ import annotations

import inspect
import warnings
from typing import NamedTuple

import torch

from gpgrl.models.kernels import DEFAULT_CHUNK_TOKENS, head_logprobs, token_entropy, token_logprobs

# Config fields of transformers models whose forward changes the logits after the head (soft-capping,
# scaling, vocabulary trimming) or the hidden state before it. The fused path would skip that: fall back.
# Found by reading every modeling_*.py of transformers 5.23 for code between the decoder and `lm_head`
# and after it (Gemma 2/3/3n/4, VaultGemma, Nanochat, Mistral-Large-4, T5Gemma, PaliGemma: softcapping;
# RecurrentGemma: logits_soft_cap; Cohere 1/2: logit_scale; Granite family: logits_scaling; MiniCPM3:
# logits_scaling (hidden / scale); Falcon-H1: lm_head_multiplier; Muse: output_multiplier; Inkling:
# logits_mup_width_multiplier, unpadded_vocab_size; MPT: logit_scale).
SOFTCAP_FIELDS = ("final_logit_softcapping", "logits_soft_cap")
SCALE_FIELDS = ("logit_scale", "logits_scaling", "lm_head_multiplier", "output_multiplier",
                "logits_mup_width_multiplier")
VOCAB_FIELDS = ("unpadded_vocab_size",)
# Model types whose forward edits the logits without a config field saying so (Chameleon masks its image
# tokens out of the softmax).
LOGIT_EDITING_MODEL_TYPES = frozenset({"chameleon"})


class Sampling(NamedTuple):
    """How a rollout engine sampled: ``softmax(logits / temperature)``, restricted to the ``top_k`` largest
    logits (0 = off) and then to the ``top_p`` nucleus (1 = off), renormalised. A temperature of 0
    (greedy) counts as 1, as vLLM's processed log-probs of greedy requests do."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


#: Elements of one row block of :func:`processed_logprobs` (its temporaries are a few copies of a block).
PROCESSED_BLOCK_ELEMENTS = 1 << 24


@torch.no_grad()
def processed_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0) -> torch.Tensor:
    """log-prob [n] float32 of each ``tokens`` [n] under the distribution an engine samples from ``logits``
    [n, V]: what vLLM returns as ``processed_logprobs`` (vllm/v1/sample/sampler.py, 0.17-0.34).

    vLLM divides the logits by the temperature, then keeps the ``top_k`` largest (every logit equal to
    the k-th largest stays, as its ``apply_top_k_top_p`` compares with that value), then the smallest
    set of most likely tokens whose probability reaches ``top_p`` (the token that crosses it included),
    sets the others to ``-inf`` and takes the log-softmax: the kept tokens are renormalised. A token
    outside the set gets ``-inf`` (never NaN). Tokens tied with the last one top-p keeps all stay (vLLM's
    sort keeps an arbitrary share of such exact ties). No gradient; the temporaries are a few float32
    copies of ``PROCESSED_BLOCK_ELEMENTS`` logits at a time, whatever n.

    Probabilities (1/2, 1/4, 1/8, 1/8): top-k 2 renormalises the first two to (2/3, 1/3); at temperature
    0.5 the weights are squared, (16, 4, 1, 1) / 22, and top-k 2 leaves (16, 4) / 20; top-p 0.5 keeps
    the first token only (it alone reaches half the mass):

    >>> logits = torch.log(torch.tensor([[4.0, 2.0, 1.0, 1.0]])).expand(4, 4)
    >>> [round(x, 4) for x in processed_logprobs(logits, torch.tensor([0, 1, 1, 2]), top_k=2).tolist()]  # log 2/3, log 1/3
    [-0.4055, -1.0986, -1.0986, -inf]
    >>> [round(x, 4) for x in processed_logprobs(logits[:2], torch.tensor([1, 1]), 0.5).tolist()]  # log(4/22)
    [-1.7047, -1.7047]
    >>> [round(x, 4) for x in processed_logprobs(logits[:1], torch.tensor([1]), 0.5, top_k=2).tolist()]  # log(4/20)
    [-1.6094]
    >>> processed_logprobs(logits[:2], torch.tensor([0, 1]), top_p=0.5).tolist()
    [0.0, -inf]
    """
    if logits.dim() != 2 or tokens.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [n, V] and tokens [n]; got {tuple(logits.shape)} and {tuple(tokens.shape)}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    n, V = logits.shape
    out = torch.empty(n, dtype=torch.float32, device=logits.device)
    step = max(1, PROCESSED_BLOCK_ELEMENTS // max(V, 1))
    for i in range(0, n, step):
        out[i : i + step] = _processed_block(logits[i : i + step], tokens[i : i + step].to(logits.device),
                                             temperature, top_k, top_p)
    return out


def _processed_block(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, top_k: int,
                     top_p: float) -> torch.Tensor:
    V = logits.shape[-1]
    x = logits.float()
    if temperature not in (0.0, 1.0):
        x = x / temperature  # a new tensor: the caller's logits are never changed
    picked = x.gather(-1, tokens.unsqueeze(-1))  # [n, 1]
    cut = None  # [n, 1]: the kept set is x >= cut
    top = None
    if 0 < top_k < V:
        top = x.topk(top_k, dim=-1).values  # [n, k], descending
        cut = top[:, -1:]
    if top_p < 1.0:
        peak = x.amax(-1, keepdim=True)
        if top is None:
            top = x.sort(dim=-1, descending=True).values  # [n, V]
            total = torch.exp(top - peak).sum(-1, keepdim=True)
        else:  # every logit tied with the k-th stays, so the mass is summed over the whole row
            total = torch.exp(x - peak).masked_fill_(x < cut, 0.0).sum(-1, keepdim=True)
        mass = torch.exp(top - peak)
        before = mass.cumsum(-1, dtype=torch.float64) - mass  # mass of the more likely tokens
        keep = before < top_p * total.double()  # a prefix; the first token always stays
        cut = top.gather(-1, keep.sum(-1, keepdim=True) - 1)
    if cut is None:
        return (picked - torch.logsumexp(x, dim=-1, keepdim=True)).squeeze(-1)
    lse = torch.logsumexp(x.masked_fill(x < cut, float("-inf")), dim=-1, keepdim=True)
    return torch.where(picked >= cut, picked - lse, float("-inf")).squeeze(-1)


class _ProcessedChunks:
    """The ``visit`` of :func:`~gpgrl.models.kernels.head_logprobs` (and the plain path's chunk loop): fills
    ``out`` [N] with :func:`processed_logprobs` of each chunk of logits already divided by the loss's
    temperature (``divided_by``), so that ``sampling``'s temperature is reached from them."""

    def __init__(self, tokens: torch.Tensor, sampling: Sampling, divided_by: float):
        self.tokens = tokens.reshape(-1)  # [N], row-major over [B, T]
        self.out = torch.empty(self.tokens.shape, dtype=torch.float32, device=tokens.device)
        t = sampling.temperature if sampling.temperature > 0 else 1.0
        self.temperature = t / divided_by  # (logits / divided_by) / (t / divided_by) = logits / t
        self.top_k, self.top_p = int(sampling.top_k), float(sampling.top_p)

    def __call__(self, rows: slice, z: torch.Tensor) -> None:
        self.out[rows] = processed_logprobs(z, self.tokens[rows].to(z.device), self.temperature, self.top_k,
                                            self.top_p).to(self.out.device)


def _sampling_is_the_loss(sampling: Sampling, loss_temperature: float, vocab: int) -> bool:
    """Whether the engine's processed distribution is the loss's own: same temperature, no truncation."""
    t = sampling.temperature if sampling.temperature > 0 else 1.0
    loss_t = loss_temperature if loss_temperature > 0 else 1.0
    return t == loss_t and not 0 < sampling.top_k < vocab and sampling.top_p >= 1.0


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them (so log-probs match sampling).

    >>> position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist()
    [[0, 0, 0, 1, 2]]
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP / DeepSpeed / FSDP / ``torch.compile`` wrappers (a peft model stays one).

    Only for reading its config, head and signature: the forward pass must still go through the wrapper
    (DDP syncs gradients from it).
    """
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=True)


def _is_sharded(model: torch.nn.Module, head: torch.nn.Module) -> bool:
    """Whether parameters are shards outside the forward pass (FSDP 1/2, DeepSpeed ZeRO-3)."""
    weight = head.weight
    if hasattr(weight, "ds_id") or weight.dim() != 2 or weight.numel() == 0:  # ZeRO-3 keeps an empty stub
        return True
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FullyShardedDataParallel

        try:
            from torch.distributed.tensor import DTensor
        except ImportError:  # torch < 2.5
            from torch.distributed._tensor import DTensor

        try:
            from torch.distributed.fsdp import FSDPModule  # FSDP2 (fully_shard), torch >= 2.6
        except ImportError:
            FSDPModule = FullyShardedDataParallel
        if isinstance(weight, DTensor):  # FSDP2 and tensor parallelism, between forward passes
            return True
        # The module classes say it even while FSDP2 holds the parameters unsharded (after the root's forward)
        return any(isinstance(m, (FullyShardedDataParallel, FSDPModule)) for m in model.modules())
    return False


def _config_edits_logits(config, head: torch.nn.Linear) -> str | None:
    configs = [config]
    if hasattr(config, "get_text_config"):
        configs.append(config.get_text_config())
    for cfg in configs:
        if getattr(cfg, "model_type", None) in LOGIT_EDITING_MODEL_TYPES:
            return f"{cfg.model_type} models edit their logits in the forward pass"
        for field in SOFTCAP_FIELDS:
            if getattr(cfg, field, None) is not None:
                return f"the config sets {field}={getattr(cfg, field)} (soft-capped logits)"
        for field in SCALE_FIELDS:
            if getattr(cfg, field, None) not in (None, 1, 1.0):
                return f"the config sets {field}={getattr(cfg, field)} (scaled logits)"
        for field in VOCAB_FIELDS:
            if getattr(cfg, field, None) not in (None, head.out_features):
                return f"the config sets {field}={getattr(cfg, field)} (logits trimmed after the head)"
    return None


def fusable_head(model: torch.nn.Module) -> tuple[torch.nn.Linear | None, str | None]:
    """``(head, None)`` when the fused log-prob path is exact for ``model``, else ``(None, reason)``.

    Exact means: the model's forward takes ``logits_to_keep``; its output head
    (``get_output_embeddings()``, tied to the input embeddings or not) is a plain ``torch.nn.Linear``
    with no hooks (not LoRA-wrapped, quantised, offloaded); the config neither soft-caps, scales nor
    trims the logits (:data:`SOFTCAP_FIELDS`, :data:`SCALE_FIELDS`, :data:`VOCAB_FIELDS`,
    :data:`LOGIT_EDITING_MODEL_TYPES`); and the parameters are whole outside the forward pass (not
    FSDP / DeepSpeed ZeRO-3 shards, whose gathering happens inside it). ``model`` may be wrapped (DDP,
    DeepSpeed, ``torch.compile``, peft).
    """
    inner = unwrap_model(model)
    get_head = getattr(inner, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        return None, "the model has no output head (get_output_embeddings() is None)"
    if type(head).forward is not torch.nn.Linear.forward or not isinstance(head, torch.nn.Linear):
        return None, f"the output head is a {type(head).__module__}.{type(head).__name__}, not a plain nn.Linear"
    if head._forward_hooks or head._forward_pre_hooks or hasattr(head, "_hf_hook") or "forward" in vars(head):
        return None, "the output head has forward hooks (offloading or another wrapper acts on it)"
    if _is_sharded(model, head):
        return None, "the parameters are sharded outside the forward pass (FSDP or DeepSpeed ZeRO-3)"
    if head.weight.device.type == "meta":
        return None, "the output head's weight is on the meta device (offloaded)"
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft: the wrapped model
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        return None, f"{type(base).__name__}.forward takes no logits_to_keep"
    reason = _config_edits_logits(getattr(inner, "config", None), head)
    if reason is not None:
        return None, reason
    return head, None


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
    fused: bool | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    temperature: float = 1.0,
    share_prompts: bool = False,
    sampling: Sampling | tuple[float, int, float] | None = None,
) -> tuple[torch.Tensor, ...]:
    """log pi(o_t | q, o_<t) for each completion token: [B, T] float32, plus the entropy [B, T] if asked.

    ``prompt_ids`` [B, P] are left-padded, ``completion_ids`` [B, T] right-padded. ``model_inputs`` are
    extra inputs (a vision model's ``pixel_values`` / ``image_grid_thw``); ``use_position_ids=False`` lets a
    model that computes its own positions (Qwen2-VL's 3-D rotary positions) do so.

    ``fused``: True = the fused path (hidden states -> head -> log-softmax a chunk of ``chunk_tokens``
    positions at a time; an error if :func:`fusable_head` says it would not be exact); False = the plain
    path (the model makes the [B, T + 1, V] logits); None = fused where exact, else plain. Either way the
    forward pass goes through ``model`` itself (a DDP wrapper syncs gradients from it), and the head runs
    in the weights' dtype, or in autocast's when the caller has autocast on: call this under the same
    autocast as the model's forward (``accelerator.autocast()``) for the fused path to round as the
    plain one does.

    ``temperature``: the log-probs (and entropy) of ``softmax(logits / temperature)``, the distribution
    that sampling at that temperature draws from -- what a policy gradient of answers sampled so must
    differentiate (as TRL's GRPOTrainer, which the original GPG code builds on, and verl do). A
    temperature of 0 (greedy) or 1 leaves the logits as they are.

    ``share_prompts``: where consecutive rows repeat a prompt (a group's G answers), run each distinct
    prompt once and its completions from its KV cache (:func:`shared_prompt_forward`): the same function of
    the weights, so the same log-probs and gradients to float rounding, with the prompt's share of the
    forward and backward work and memory divided by G. Where it does not apply (see
    :func:`prompt_sharing_blocker`) the whole rows run as without it.

    ``sampling`` (a :class:`Sampling` or ``(temperature, top_k, top_p)``): also return, as a third tensor
    [B, T] float32 without gradient, each token's log-prob under the distribution an engine sampled from
    with those settings (:func:`processed_logprobs`, ``-inf`` outside the top-k / top-p set), computed from
    the same logits as the first, a chunk at a time (on the fused path inside the head's chunk loop, so
    the logits still never exist whole). Where that distribution is the loss's own (the same temperature,
    no top-k / top-p) it is the first tensor itself, detached.
    """
    if temperature < 0 or temperature != temperature:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    scale = 1.0 if temperature in (0.0, 1.0) else 1.0 / temperature
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [B, P+T]
    T = completion_ids.shape[1]
    extra = dict(model_inputs or {})
    if extra:  # a vision model: its image inputs, and the token types its positions are computed from
        from gpgrl.models.vision import token_type_inputs

        extra.update(token_type_inputs(unwrap_model(model), input_ids))  # unwrapped: DDP has no .config
    if use_position_ids:
        extra["position_ids"] = position_ids_from_mask(attention_mask)

    head = None
    if fused is not False:
        head, reason = fusable_head(model)
        if head is None and fused:
            raise ValueError(f"fused=True, but the fused log-prob path would not be exact: {reason}. "
                             "Pass fused=None (auto) or fused=False.")
    spec = None if sampling is None else Sampling(*sampling)
    if spec is not None and not 0 < spec.top_p <= 1:
        raise ValueError(f"sampling top_p must be in (0, 1], got {spec.top_p}")

    def fused_head(hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:  # hidden [B, T, H]
        vocab = head.weight.shape[0]
        visit = None if spec is None or _sampling_is_the_loss(spec, temperature, vocab) else \
            _ProcessedChunks(completion_ids, spec, divided_by=1.0 / scale)
        logp, entropy = head_logprobs(hidden, head.weight, head.bias, completion_ids, chunk_tokens=chunk_tokens,
                                      with_entropy=with_entropy, scale=scale, visit=visit)
        if spec is None:
            return logp, entropy
        return logp, entropy, logp.detach() if visit is None else visit.out.view_as(logp)

    def plain(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:  # logits [B, T, V]
        logp, entropy = _logits_logprobs(logits, completion_ids, scale, chunk_tokens, with_entropy)
        if spec is None:
            return logp, entropy
        if _sampling_is_the_loss(spec, temperature, logits.shape[-1]):
            return logp, entropy, logp.detach()
        return logp, entropy, _chunked_processed(logits, completion_ids, spec, chunk_tokens)

    groups = None
    if (share_prompts and not model_inputs and use_position_ids and T > 0 and prompt_ids.shape[1] > 0
            and prompt_sharing_blocker(model) is None):
        groups = prompt_groups(prompt_ids, prompt_mask)
    if groups is not None:
        states = shared_prompt_forward(model, groups, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                       hidden=head is not None)
        if states is not None:
            return fused_head(states) if head is not None else plain(states)
    if head is not None:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            logits_to_keep=torch.empty(0, dtype=torch.long, device=input_ids.device),  # no logits at all
            output_hidden_states=-1,  # transformers >= 5.2x keeps only the last; older ones keep all
            use_cache=False,
            **extra,
        )
        hidden = _final_hidden(out, input_ids.shape)
        if hidden is not None:
            return fused_head(hidden[:, -(T + 1) : -1])  # [B, T, H]
        problem = (f"{type(unwrap_model(model)).__name__} returned no [B, L, H] final hidden state with empty "
                   "logits (output_hidden_states / logits_to_keep not honoured)")
        if fused:
            raise RuntimeError(f"fused=True: {problem}; pass fused=False")
        warnings.warn(f"{problem}: computing log-probs on the plain path", stacklevel=2)

    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_to_keep=T + 1,
        use_cache=False,
        **extra,
    )
    return plain(out.logits[:, -(T + 1) : -1, :])  # [B, T, V]: the logits that predict each completion token


def _logits_logprobs(logits: torch.Tensor, completion_ids: torch.Tensor, scale: float, chunk_tokens: int,
                     with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if scale != 1.0:
        logits = logits * scale
    logp = token_logprobs(logits, completion_ids, chunk_tokens)  # [B, T]
    entropy = token_entropy(logits, chunk_tokens) if with_entropy else None
    return logp, entropy


@torch.no_grad()
def _chunked_processed(logits: torch.Tensor, completion_ids: torch.Tensor, spec: Sampling,
                       chunk_tokens: int) -> torch.Tensor:
    """:func:`processed_logprobs` [B, T] of the model's (unscaled) logits [B, T, V], ``chunk_tokens``
    positions of one row at a time (one float32 chunk, as :func:`~gpgrl.models.kernels.token_logprobs`)."""
    B, T = completion_ids.shape
    visit = _ProcessedChunks(completion_ids, spec, divided_by=1.0)
    step = max(1, chunk_tokens)
    for b in range(B):
        for t0 in range(0, T, step):
            t1 = min(T, t0 + step)
            visit(slice(b * T + t0, b * T + t1), logits[b, t0:t1])
    return visit.out.view(B, T)


def takes_dynamic_cache(model: torch.nn.Module) -> bool:
    """Whether ``model`` (unwrapped) takes a plain ``DynamicCache`` as its forward's ``cache`` argument, as
    ``generate`` would give it (decoder-only, no static / quantized / offloaded cache asked for in its
    generation config)."""
    config = getattr(model, "config", None)
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    if config is None or supports is None or getattr(config, "is_encoder_decoder", False) or not supports():
        return False
    if getattr(getattr(model, "generation_config", None), "cache_implementation", None) not in (None, "dynamic"):
        return False
    return "cache" in inspect.signature(model.forward).parameters


def prompt_sharing_blocker(model: torch.nn.Module) -> str | None:
    """Why :func:`shared_prompt_forward` cannot run ``model``, or None where it can.

    It calls the model twice before one backward pass, which a DDP / DeepSpeed / FSDP wrapper does not
    allow (their gradient hooks expect one forward per backward): only an unwrapped model (or a peft
    model) shares. Gradient checkpointing turns the KV cache off in training, and the model must take a
    ``DynamicCache`` (:func:`takes_dynamic_cache`).
    """
    if unwrap_model(model) is not model:
        return f"the model is wrapped ({type(model).__name__}): one forward per backward"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the wrapped model
    name = "is_activation_checkpointing" if hasattr(base, "is_activation_checkpointing") else "is_gradient_checkpointing"
    if getattr(base, name, False):  # transformers 5's name, else 4.x's
        return "gradient checkpointing is on (the model runs without a KV cache in training)"
    if not takes_dynamic_cache(base):
        return f"{type(base).__name__} does not take a DynamicCache"
    return None


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(first, inverse)`` for runs of consecutive rows with the same prompt (ids and mask): ``first`` the
    first row of each run, ``inverse`` each row's run; None where no prompt repeats.

    >>> ids = torch.tensor([[0, 5], [0, 5], [7, 8], [7, 8], [7, 8], [0, 5]])
    >>> first, inverse = prompt_groups(ids, (ids > 0).long())
    >>> first.tolist(), inverse.tolist()
    ([0, 2, 5], [0, 0, 1, 1, 1, 2])
    >>> prompt_groups(ids[1:3], (ids[1:3] > 0).long()) is None
    True
    """
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    _, inverse, counts = torch.unique_consecutive(key, dim=0, return_inverse=True, return_counts=True)
    if len(counts) == len(key):
        return None
    return torch.cumsum(counts, 0) - counts, inverse


def shared_prompt_forward(model: torch.nn.Module, groups: tuple[torch.Tensor, torch.Tensor],
                          prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                          completion_mask: torch.Tensor, hidden: bool) -> torch.Tensor | None:
    """The final hidden states [B, T, H] (``hidden``) or logits [B, T, V] that predict each completion
    token, running each distinct prompt once (``groups`` from :func:`prompt_groups`).

    The distinct prompts run first, filling a ``DynamicCache``; its keys and values are then indexed out
    to every row (``batch_select_indices``: the backward pass sums a prompt's gradients over its rows)
    and the completions run from it, with the positions and attention mask the whole rows would have. The
    prediction of the first completion token comes from the prompt's last position. None where the model
    did not return the hidden states asked for (the caller then runs the whole rows).
    """
    from transformers import DynamicCache

    first, inverse = groups
    T = completion_ids.shape[1]
    ids, mask = prompt_ids[first], prompt_mask[first]
    cache = DynamicCache(config=unwrap_model(model).config.get_text_config(decoder=True))
    none = torch.empty(0, dtype=torch.long, device=ids.device)
    keep = {"logits_to_keep": none, "output_hidden_states": -1} if hidden else {"logits_to_keep": 1}
    head = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), cache=cache,
                 use_cache=True, **keep)
    cache.batch_select_indices(inverse)
    full = torch.cat([prompt_mask, completion_mask], dim=1)
    keep = keep if hidden else {"logits_to_keep": T}
    tail = model(input_ids=completion_ids, attention_mask=full, cache=cache, use_cache=True,
                 position_ids=position_ids_from_mask(full)[:, prompt_ids.shape[1] :], **keep)
    if not hidden:
        return torch.cat([head.logits[:, -1:][inverse], tail.logits[:, :-1]], dim=1)
    h_prompt, h_tail = _final_hidden(head, ids.shape), _final_hidden(tail, completion_ids.shape)
    if h_prompt is None or h_tail is None:
        return None
    return torch.cat([h_prompt[:, -1:][inverse], h_tail[:, :-1]], dim=1)


def _final_hidden(out, ids_shape: torch.Size) -> torch.Tensor | None:
    """The post-norm final hidden state [B, L, H] of a forward run with empty logits, or None.

    transformers sets ``hidden_states[-1]`` to the decoder's ``last_hidden_state`` (after the final norm),
    which is what the causal LM feeds its head. None where the model did not honour the request: its
    logits are not [B, 0, V] (so they were made after all) or the last hidden state is missing or sliced.
    """
    states = getattr(out, "hidden_states", None)
    logits = getattr(out, "logits", None)
    if not states or states[-1] is None or logits is None or logits.shape[:2] != (ids_shape[0], 0):
        return None
    hidden = states[-1]
    return hidden if hidden.dim() == 3 and hidden.shape[:2] == ids_shape else None
