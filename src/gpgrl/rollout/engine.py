"""Rollout engines: sample G completions per prompt behind one small interface.

An engine takes prompts (token ids, plus extra model inputs such as processed images) and returns a
:class:`~gpgrl.rollout.batch.RolloutBatch`. The transformers ``generate`` engine here is the reference;
the vLLM engines (:mod:`gpgrl.rollout.vllm`) implement the same interface.

Conventions (the trainer and the evaluator rely on them):

* the output holds ``len(prompts) * num_samples`` rows, group by group: rows ``g*G .. g*G+G-1`` are the
  G samples of prompt g;
* ``completion_mask`` is 1 up to and including the first EOS, 0 after it; tokens after the first EOS are
  replaced by the pad token; a completion with no EOS within ``max_new_tokens`` is ``truncated``;
  every id of the model's ``generation_config.eos_token_id`` (an int or a list) and the tokenizer's EOS
  count as EOS (a chat model's end of turn, such as ``<|im_end|>``, ends the answer);
* a completion that writes one of ``SamplingParams.stop`` ends there: its text is cut before the stop
  string, its length counts the tokens up to the one that completes it, and it is not ``truncated``;
* ``sampling_logprobs`` [N, T] are the log-probs of the sampled tokens under the distribution the engine
  sampled from (after temperature and top-k / top-p, renormalised: vLLM's ``processed_logprobs``), where
  the engine reports them (vLLM does; transformers ``generate`` does when it samples, from
  :class:`~gpgrl.rollout.sampling.ExactSampler`'s draw; greedy decoding gives None);
* before each optimizer update the trainer calls :meth:`RolloutEngine.sleep` and after it
  :meth:`RolloutEngine.update_weights`, which wakes the engine (engines that hold their own copy of the
  weights free their memory there and reload it in the sync; the in-process engine has nothing to do);
  after a resume it calls ``update_weights`` once, so the first rollout samples the checkpoint's weights;
* an engine that samples with the trainer's own module sets ``samples_with_trainer_module`` (its
  generation is then wrapped in a full-parameter gather under FSDP / ZeRO-3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from gpgrl.rollout.batch import RolloutBatch

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

    from gpgrl.config import Config  # types only: the config layer sits above the engines

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding; ``stop``: strings that end an answer
    (the text is cut before the first one written; none by default).

    >>> SamplingParams(64, 0.0, stop=["\\n\\nQuestion:"]).stop
    ('\\n\\nQuestion:',)
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(self.stop)!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


@dataclass(frozen=True)
class Prompt:
    """One prompt as an engine takes it.

    ``ids`` are the prompt's token ids (chat template applied). ``model_inputs`` are extra inputs the
    model needs with these ids (a vision model's processed ``pixel_values`` and ``image_grid_thw``);
    ``images`` the raw images, for engines that process images themselves (vLLM).
    """

    ids: list[int]
    text: str = ""
    model_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    images: tuple = ()


def as_prompts(prompts: Sequence[Prompt | Sequence[int]]) -> list[Prompt]:
    """Accept bare token-id lists where a :class:`Prompt` is expected."""
    return [p if isinstance(p, Prompt) else Prompt(list(p)) for p in prompts]


class RolloutEngine:
    """What the trainer and the evaluator need from a generator (subclass and implement ``generate``)."""

    #: Longest sequence (prompt + completion) the engine can handle; None = unknown.
    max_model_len: int | None = None
    #: True when :meth:`generate` runs the trainer's own module: under FSDP / ZeRO-3 the caller then
    #: gathers the full parameters around it (:func:`gpgrl.parallel.gathered_for_generation`). Engines
    #: with their own copy of the weights (vLLM) leave it False and are never wrapped in that gather.
    samples_with_trainer_module: bool = False
    #: Set by a caller that shows progress (the evaluator): called during :meth:`generate`, where the
    #: engine can, as ``on_step(new_tokens, step, max_steps)`` after each decoding step, ``new_tokens``
    #: being the tokens written by the rows still generating. None: nothing is reported.
    on_step: Callable[[int, int, int], None] | None = None
    #: Set by a caller that counts answers as they finish (the evaluator's progress): called during
    #: :meth:`generate`, where the engine can, as ``on_done(rows)`` with the indices (among the call's
    #: rows, group by group) of the answers that have just ended (an EOS or a stop string; an answer cut
    #: at the budget ends with the call). None: nothing is reported.
    on_done: Callable[[list[int]], None] | None = None

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, num_samples: int) -> RolloutBatch:
        """``num_samples`` completions of every prompt, group by group (see the module docstring)."""
        raise NotImplementedError

    def update_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (called after each optimizer step)."""

    def sleep(self) -> None:
        """Free the engine's memory while the trainer updates the model (optional)."""

    def wake_up(self) -> None:
        """Undo :meth:`sleep` (optional; :meth:`update_weights` wakes an engine that sleeps)."""

    def close(self) -> None:
        """Release the engine's resources (processes, connections)."""


def mask_after_eos(completion_ids: torch.Tensor, eos_ids: list[int], pad_id: int):
    """Keep tokens up to and including the first EOS; returns (ids, mask, truncated).

    >>> ids, mask, trunc = mask_after_eos(torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8]]), [1], pad_id=0)
    >>> ids.tolist(), mask.tolist(), trunc.tolist()
    ([[5, 1, 0, 0], [5, 6, 7, 8]], [[1, 1, 0, 0], [1, 1, 1, 1]], [False, True])
    """
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))  # [N, T]
    T = completion_ids.shape[1]
    idx = torch.arange(T, device=completion_ids.device).expand_as(completion_ids)
    first_eos = torch.where(is_eos, idx, torch.full_like(idx, T)).amin(dim=1, keepdim=True)  # [N, 1]
    mask = (idx <= first_eos).long()
    ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids, pad_id))
    return ids, mask, (first_eos.squeeze(1) == T)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ([N, P] ids, [N, P] mask).

    >>> ids, mask = left_pad([[3, 4], [5]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[3, 4], [0, 5]], [[1, 1], [0, 1]])
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def right_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into ([N, T] ids, [N, T] mask), at least one column wide.

    >>> ids, mask = right_pad([[3, 4], [5]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[3, 4], [5, 0]], [[1, 1], [1, 0]])
    """
    width = max(1, max((len(s) for s in seqs), default=0))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids, mask


def eos_token_ids(model: torch.nn.Module | None, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The EOS ids generation stops at: the generation config's (int or list) plus the tokenizer's."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(int(i) for i in gen_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("the model has no EOS token: set generation_config.eos_token_id or tokenizer.eos_token")
    return sorted(ids)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad token id, or its EOS id when it has none."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad token nor an EOS token; set tokenizer.pad_token")
    return int(pad)


def model_context_length(model: torch.nn.Module) -> int | None:
    """The longest sequence the model was built for (``max_position_embeddings``), if it says."""
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        value = getattr(cfg, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def budget_for(prompt_tokens: int, max_new_tokens: int, context: int | None) -> int:
    """New tokens allowed after a prompt of ``prompt_tokens``: ``max_new_tokens``, capped by the context.

    >>> budget_for(100, 3072, 512), budget_for(100, 64, 512), budget_for(100, 64, None)
    (412, 64, 64)
    >>> budget_for(512, 8, 512)
    Traceback (most recent call last):
    ...
    ValueError: a prompt of 512 tokens leaves no room to generate in the model's context of 512 tokens; shorten the prompts (data.max_prompt_length)
    """
    if context is None:
        return max_new_tokens
    room = context - prompt_tokens
    if room < 1:
        raise ValueError(
            f"a prompt of {prompt_tokens} tokens leaves no room to generate in the model's context of {context} "
            "tokens; shorten the prompts (data.max_prompt_length)"
        )
    return min(max_new_tokens, room)


def generate_sampling_kwargs(params: SamplingParams) -> dict:
    """``generate`` keyword arguments that sample from exactly ``params``'s distribution.

    Sampling (temperature > 0) runs in :class:`~gpgrl.rollout.sampling.ExactSampler`, with ``generate`` in
    greedy mode, and a repetition penalty or n-gram block from the model's ``generation_config`` is
    switched off, so nothing changes the distribution the loss assumes. Greedy decoding keeps
    ``generate``'s own argmax (and the model's generation config, as evaluation harnesses do).
    """
    from transformers import LogitsProcessorList

    from gpgrl.rollout.sampling import ExactSampler

    neutral = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if params.temperature == 0:
        return neutral
    return {**neutral, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
            "logits_processor": LogitsProcessorList([ExactSampler(params.temperature, params.top_k, params.top_p)])}


def text_tokenizer(tokenizer: Any) -> PreTrainedTokenizerBase:
    """The tokenizer itself: a vision model's processor gives its own (``processor.tokenizer``)."""
    return tokenizer.tokenizer if hasattr(tokenizer, "image_processor") else tokenizer


def stop_cut(ids: Sequence[int], tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> tuple[int, int] | None:
    """Where a completion ends at a stop string: ``(tokens up to and including the one that completes the
    first stop string, its text's length before that string)``; None when it writes none.

    >>> from gpgrl.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> stop_cut(tok("12 Q: 3")["input_ids"], tok, [" Q:"]), stop_cut(tok("12")["input_ids"], tok, [" Q:"])
    ((5, 2), None)
    """
    def first(text: str) -> int:
        return min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)

    if not stop or first(tokenizer.decode(list(ids), skip_special_tokens=True)) < 0:
        return None
    lo, hi = 1, len(ids)  # the shortest prefix whose text holds a stop string (holding one is monotone)
    while lo < hi:
        mid = (lo + hi) // 2
        if first(tokenizer.decode(list(ids[:mid]), skip_special_tokens=True)) >= 0:
            hi = mid
        else:
            lo = mid + 1
    return lo, first(tokenizer.decode(list(ids[:lo]), skip_special_tokens=True))


def assemble(rows: list[Prompt], completions: list[list[int]], tokenizer: PreTrainedTokenizerBase, pad_id: int,
             eos_ids: list[int], logps: list[list[float | None]] | None = None,
             stop: Sequence[str] = ()) -> RolloutBatch:
    """A :class:`RolloutBatch` from an engine's raw output, one row per completion (``rows[i]`` its prompt).

    Completions are cut after their first EOS (:func:`mask_after_eos`), or at a ``stop`` string
    (:func:`stop_cut`: the text before it, the tokens up to it, not truncated); ``logps`` are the engine's
    sampling log-probs of each completion token, where it reports them (None entries count as 0 and
    padding is 0).
    """
    cuts = [stop_cut(c[: _eos_end(c, eos_ids)], tokenizer, stop) if stop else None for c in completions]
    completions = [c if cut is None else c[: cut[0]] for c, cut in zip(completions, cuts, strict=True)]
    completion_ids, written = right_pad(completions, pad_id)
    completion_ids, completion_mask, truncated = mask_after_eos(completion_ids, eos_ids, pad_id)
    completion_mask = completion_mask * written  # a row shorter than the widest (cut at a stop string) ends there
    sampling = None
    if logps is not None:
        sampling = torch.zeros(completion_ids.shape, dtype=torch.float32)
        for i, row in enumerate(logps):
            n = min(len(row), sampling.shape[1])
            sampling[i, :n] = torch.tensor([x if x is not None else 0.0 for x in row[:n]], dtype=torch.float32)
        sampling = sampling * completion_mask
    prompt_ids, prompt_mask = left_pad([p.ids for p in rows], pad_id)
    texts = tokenizer.batch_decode([row[m.bool()] for row, m in zip(completion_ids, completion_mask)],
                                   skip_special_tokens=True)
    for i, cut in enumerate(cuts):
        if cut is not None:  # ended by a stop string: the text before it, a finished answer
            texts[i] = texts[i][: cut[1]]
            truncated[i] = False
    model_inputs = [p.model_inputs for p in rows] if any(p.model_inputs for p in rows) else None
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, texts,
                        sampling_logprobs=sampling, prompts=[p.text for p in rows] if any(p.text for p in rows) else [],
                        model_inputs=model_inputs).trim()


def _eos_end(ids: Sequence[int], eos_ids: Sequence[int]) -> int:
    """Tokens up to and including the first EOS (all of them when there is none)."""
    return next((i + 1 for i, t in enumerate(ids) if t in eos_ids), len(ids))


class _Watch:
    """A ``generate`` stopping criterion called after every new token: it ends the rows whose last few
    tokens' text holds a stop string, and reports the step to ``on_step`` and the rows that have just ended
    (their index plus ``offset``) to ``on_done`` (see :class:`RolloutEngine`)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_width: int, max_steps: int,
                 stop: Sequence[str], eos_ids: list[int], on_step: Callable[[int, int, int], None] | None,
                 on_done: Callable[[list[int]], None] | None = None, offset: int = 0):
        self.tokenizer, self.width, self.max_steps, self.stop, self.on_step = (tokenizer, prompt_width, max_steps,
                                                                                tuple(stop), on_step)
        self.on_done, self.offset = on_done, offset
        self.eos = torch.tensor(eos_ids)
        self.ended: torch.Tensor | None = None  # [rows] bool: the row wrote an EOS or a stop string
        # a stop string of n characters lies within the last n + 2 tokens (a token writes >= 1 character;
        # 2 spare for tokens that write nothing, such as a byte fragment)
        self.window = max((len(s) for s in self.stop), default=0) + 2

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        new = input_ids[:, self.width :]
        done = torch.zeros(new.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.stop:
            tails = self.tokenizer.batch_decode(new[:, -self.window :], skip_special_tokens=True)
            done = torch.tensor([any(s in t for s in self.stop) for t in tails], device=input_ids.device)
        if self.on_step is None and self.on_done is None:
            return done
        if self.eos.device != new.device:
            self.eos = self.eos.to(new.device)
        before = self.ended if self.ended is not None else torch.zeros_like(done)
        self.ended = before | done | torch.isin(new[:, -1], self.eos)
        was, now = torch.stack([before, self.ended]).cpu()  # one copy from the device per step
        if self.on_step is not None:  # the rows that wrote this step's token: those not ended before it
            self.on_step(int((~was).sum()), new.shape[1], self.max_steps)
        if self.on_done is not None:
            ended_now = (now & ~was).nonzero().flatten().tolist()
            if ended_now:
                self.on_done([self.offset + i for i in ended_now])
        return done


class HFGenerateEngine(RolloutEngine):
    """Samples with transformers ``generate``, ``batch_size`` rows at a time, in this process.

    Generation is capped at the model's context (``max_position_embeddings``) minus the prompt; the
    first time that shortens ``max_new_tokens`` a warning says so.

    The rows of a group share their prompt, so ``generate``'s prefill would run each prompt
    ``num_samples`` times: where the model takes a ``DynamicCache`` (and the call has no image inputs and
    its chunks hold whole groups), the prompt but its last token runs once per group and its KV cache is
    repeated for the group's rows (:meth:`_shared_prompt_cache`); ``generate`` then starts from the last
    prompt token. The same positions and masks, so the same distribution (the logits differ only in
    float rounding between matmul shapes).

    Args:
        model: the policy (unwrapped from DDP; under FSDP / ZeRO-3 the caller gathers the parameters).
        tokenizer: its tokenizer (for the pad token and decoding).
        batch_size: most rows (prompt x sample) per ``generate`` call; None = all at once.
        share_prompts: prefill each group's prompt once (above); False = ``generate``'s own prefill of
            every row.
    """

    samples_with_trainer_module = True  # the policy being trained: gathered around generate under FSDP / ZeRO-3

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int | None = None,
                 share_prompts: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.share_prompts = share_prompts
        self.pad_id = pad_token_id(tokenizer)
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.max_model_len = model_context_length(model)
        self._warned_cap = False
        from gpgrl.models.vision import placeholder_token_ids

        self.suppress = placeholder_token_ids(model)  # a vision model must not sample image placeholders

    def update_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # the same module the optimizer updates: nothing to copy

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt | Sequence[int]], params: SamplingParams,
                 num_samples: int) -> RolloutBatch:
        prompts = as_prompts(prompts)
        rows = [p for p in prompts for _ in range(num_samples)]  # group by group
        step = self.batch_size or len(rows)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        chunks, logps = [], []
        sampling = generate_sampling_kwargs(params)
        sampler = sampling["logits_processor"][0] if "logits_processor" in sampling else None  # None: greedy
        try:
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                ids, mask = left_pad([p.ids for p in part], self.pad_id)
                ids, mask = ids.to(device), mask.to(device)
                max_new = self._budget(ids.shape[1], params.max_new_tokens)
                extra = _collate(part, device)
                watch = _Watch(self.tokenizer, ids.shape[1], max_new, params.stop, self.eos_ids, self.on_step,
                               self.on_done, offset=start)
                if extra:  # a vision model: the token types its positions are computed from
                    from gpgrl.models.vision import token_type_inputs

                    extra.update(token_type_inputs(self.model, ids))
                else:
                    cache = self._shared_prompt_cache(part, num_samples, device)
                    if cache is not None:
                        extra["cache"] = cache
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, **sampling,
                                          pad_token_id=self.pad_id, eos_token_id=self.eos_ids, use_cache=True,
                                          suppress_tokens=self.suppress or None, **extra,
                                          stopping_criteria=[watch] if params.stop or self.on_step or self.on_done
                                          else None)
                chunks.append(out[:, ids.shape[1] :].cpu())
                if sampler is not None:  # [rows, steps]: column t is the log-prob new token t was drawn with
                    logps.append(sampler.take_logprobs().cpu())
        finally:
            self.model.train(was_training)
        completions = [row.tolist() for chunk in chunks for row in chunk]
        sampled = None if sampler is None else [row[: len(c)].tolist() for chunk, lp in zip(chunks, logps, strict=True)
                                                for c, row in zip(chunk, lp, strict=True)]
        return assemble(rows, completions, self.tokenizer, self.pad_id, self.eos_ids, logps=sampled, stop=params.stop)

    def _shared_prompt_cache(self, part: Sequence[Prompt], num_samples: int, device: torch.device) -> Any:
        """A ``DynamicCache`` of each group's prompt but its last token, run once per group and repeated
        ``num_samples`` times, for ``generate`` to continue from; None where that does not apply (one sample
        per prompt, a chunk that splits a group, a one-token prompt, a model without a default
        ``DynamicCache`` or without a ``cache`` argument, a static cache in its generation config)."""
        from gpgrl.models.logprobs import position_ids_from_mask, takes_dynamic_cache

        model = self.model
        if not self.share_prompts or num_samples < 2 or len(part) % num_samples or not takes_dynamic_cache(model):
            return None
        from transformers import DynamicCache

        ids, mask = left_pad([p.ids for p in part[::num_samples]], self.pad_id)  # rows are group by group
        if ids.shape[1] < 2:
            return None
        ids, mask = ids[:, :-1].to(device), mask[:, :-1].to(device)
        cache = DynamicCache(config=model.config.get_text_config(decoder=True))
        model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), cache=cache,
              use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(num_samples)
        return cache

    def _budget(self, prompt_tokens: int, max_new_tokens: int) -> int:
        budget = budget_for(prompt_tokens, max_new_tokens, self.max_model_len)
        if budget < max_new_tokens and not self._warned_cap:
            self._warned_cap = True
            logger.warning("generation capped at %d new tokens (asked for %d): the model's context is %d tokens "
                           "and prompts take %d", budget, max_new_tokens, self.max_model_len, prompt_tokens)
        return budget

def _collate(rows: Sequence[Prompt], device: torch.device) -> dict[str, torch.Tensor]:
    """The extra model inputs of several prompts' rows, concatenated along dimension 0."""
    if not any(p.model_inputs for p in rows):
        return {}
    keys = rows[0].model_inputs.keys()
    return {k: torch.cat([p.model_inputs[k] for p in rows]).to(device) for k in keys}


def build_hf_engine(cfg: Config, accelerator: Accelerator, model: torch.nn.Module, tokenizer: Any) -> HFGenerateEngine:
    """``rollout.engine: hf``: transformers ``generate`` on the policy being trained (its unwrapped module)."""
    return HFGenerateEngine(accelerator.unwrap_model(model), text_tokenizer(tokenizer),
                            batch_size=cfg.rollout.generation_batch_size)
