"""A short supervised warm-start: teach a tiny model a task's answer format before RL.

RL with verifiable rewards needs a policy that is *sometimes* right: a random model never produces a
correct ``<answer>``, so every group is degenerate and GPG has no signal. The quickstart therefore
first fine-tunes on reference completions (``task.solution(question)``) for a couple of hundred steps and
stops early, while the model formats its answers correctly but is still often wrong, which leaves room for RL.

The loss is the usual next-token cross-entropy, counted only on completion tokens (the answer and its
EOS), never on the prompt or padding: the model is trained to answer, not to write questions.

>>> from gpgrl.models.tiny import build_char_tokenizer
>>> tok = build_char_tokenizer()
>>> batch = build_sft_batch(tok, ["1+2"], ["<answer>3</answer>"])
>>> tok.decode(batch["input_ids"][0])    # 6 prompt tokens, then 3 completion tokens and EOS
'<|user|>1+2<|end|><|assistant|><answer>3</answer><eos>'
>>> batch["labels"][0].tolist()[:6]      # the prompt is masked out of the loss
[-100, -100, -100, -100, -100, -100]
>>> tok.decode(batch["labels"][0, 6:])
'<answer>3</answer><eos>'
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gpgrl.data.prompts import PromptBuilder
from gpgrl.models.vision import token_type_inputs

IGNORE_INDEX = -100  # labels with this value add nothing to the loss (torch cross_entropy's default)


def build_sft_batch(
    tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], completions: Sequence[str],
    images: Sequence[Sequence[Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` [N, L], ``attention_mask`` [N, L] and ``labels`` [N, L] for SFT.

    Each row is the chat-formatted prompt (the same text the trainer and the evaluation feed the
    model) followed by the completion's tokens and EOS. ``labels`` equal ``input_ids`` on completion
    tokens and :data:`IGNORE_INDEX` on the prompt and on padding (transformers shifts them inside
    the model, so label t is predicted from tokens < t). With a vision model's processor as
    ``tokenizer`` and ``images`` (a list of images per question), the image inputs are added too.
    """
    if len(questions) != len(completions):
        raise ValueError(f"{len(questions)} questions but {len(completions)} completions")
    builder = PromptBuilder(tokenizer, "plain")
    tok = builder.tokenizer  # a processor's own tokenizer
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    rows: list[tuple[list[int], list[int], list[int]]] = []
    extra: list[dict[str, torch.Tensor]] = []
    for i, (question, completion) in enumerate(zip(questions, completions)):
        prompt = builder.build(question, images[i] if images is not None else ())[0]
        extra.append(prompt.model_inputs)
        completion_ids = tok(completion, add_special_tokens=False)["input_ids"] + [eos]
        rows.append((prompt.ids, completion_ids, [1] * len(completion_ids)))  # completion tokens only
    batch = _padded(rows, pad)
    if any(extra):  # per-image inputs, concatenated in row order
        batch.update({k: torch.cat([e[k] for e in extra]) for k in extra[0]})
    return batch


#: One reference episode: the policy's turns (text, each ended by EOS) and, between them, the environment's
#: messages (a list of chat messages, e.g. a tool's result). A one-turn answer is ``[text]``.
Episode = Sequence[str | Sequence[dict[str, Any]]]


def episode_row(tokenizer: PreTrainedTokenizerBase, episode: Episode, renderer: Any) -> tuple[list[int], list[int]]:
    """The completion ids of ``episode`` (what follows its prompt), and its loss mask (1 = the policy's token), exactly as
    :func:`gpgrl.rollout.episodes.run_episodes` lays an episode out: each policy turn's tokens and EOS, then
    each observation as ``renderer`` (a :class:`~gpgrl.rollout.episodes.TurnRenderer`) renders it after that
    EOS (the messages and the opening of the next assistant turn).

    >>> from gpgrl.models.tiny import build_char_tokenizer
    >>> from gpgrl.rollout.episodes import TurnRenderer
    >>> tok = build_char_tokenizer()
    >>> ids, mask = episode_row(tok, ["<tool_call>2*3</tool_call>",
    ...                               [{"role": "tool", "content": "6"}], "<answer>6</answer>"], TurnRenderer(tok))
    >>> tok.decode(ids)
    '<tool_call>2*3</tool_call><eos><|user|><tool_response>6</tool_response><|end|><|assistant|><answer>6</answer><eos>'
    >>> tok.decode([t for t, m in zip(ids, mask) if m])    # the policy's tokens: the two turns and their EOS
    '<tool_call>2*3</tool_call><eos><answer>6</answer><eos>'
    """
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    mask: list[int] = []
    for part in episode:
        if isinstance(part, str):  # a policy turn
            turn = tokenizer(part, add_special_tokens=False)["input_ids"] + [eos]
            ids += turn
            mask += [1] * len(turn)
        else:  # the environment's messages, after the policy's last token
            obs = renderer.ids(list(part), ids[-1] if ids else None)
            ids += obs
            mask += [0] * len(obs)
    if not episode or not isinstance(episode[-1], str):
        raise ValueError("an episode ends with a policy turn (its answer), not with the environment's messages")
    return ids, mask


def build_episode_sft_batch(
    tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], episodes: Sequence[Episode],
    tools: Sequence[Any] = (),
) -> dict[str, torch.Tensor]:
    """:func:`build_sft_batch` for multi-turn episodes: right-padded ``input_ids``, ``attention_mask`` and
    ``labels`` [N, L], each row the prompt (listing ``tools`` through the chat template, as
    ``PromptBuilder(tokenizer, "plain", tools=tools)`` builds it for RL) then the episode's tokens
    (:func:`episode_row`); the labels are the policy's tokens only, never the prompt's, the tool's or padding.
    A string in ``episodes`` is a one-turn answer.
    """
    from gpgrl.rollout.episodes import TurnRenderer

    if len(questions) != len(episodes):
        raise ValueError(f"{len(questions)} questions but {len(episodes)} episodes")
    builder = PromptBuilder(tokenizer, "plain", tools=tools)
    tok = builder.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    renderer = TurnRenderer(tokenizer)
    rows = []
    for question, episode in zip(questions, episodes):
        prompt = builder.build(question)[0].ids
        ids, mask = episode_row(tok, [episode] if isinstance(episode, str) else episode, renderer)
        rows.append((prompt, ids, mask))
    return _padded(rows, pad)


def _padded(rows: Sequence[tuple[list[int], list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` [N, L] of ``(prompt ids, completion ids,
    completion mask)`` rows: the labels are the completion's tokens where its mask is 1, :data:`IGNORE_INDEX`
    on the prompt, the masked tokens and padding."""
    width = max(len(p) + len(c) for p, c, _ in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # [N, L]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [N, L]
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # [N, L]
    for i, (p, c, m) in enumerate(rows):
        n = len(p) + len(c)
        input_ids[i, :n] = torch.tensor(p + c, dtype=torch.long)
        attention_mask[i, :n] = 1
        labels[i, len(p) : n] = torch.tensor([t if keep else IGNORE_INDEX for t, keep in zip(c, m)], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class SFTConfig:
    """Settings of :func:`supervised_warm_start`."""

    steps: int = 150  # optimizer steps (the most, if ``target_accuracy`` stops it earlier)
    batch_size: int = 32  # examples per step
    lr: float = 3e-3  # AdamW peak learning rate (linear warm-up over the first 10% of steps)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0  # order of the examples
    check_every: int = 10  # steps between calls of ``check`` (if given)
    target_accuracy: float | None = None  # stop as soon as ``check`` returns at least this...
    min_steps: int = 0  # ...but not before this many steps (the answer format settles first)


def supervised_warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    completions: Sequence[str] | Sequence[Episode],
    cfg: SFTConfig,
    *,
    check: Callable[[], float] | None = None,
    log: Callable[[str], None] | None = None,
    images: Sequence[Sequence[Any]] | None = None,
    tools: Sequence[Any] | None = None,
) -> list[dict[str, float]]:
    """Fine-tune ``model`` in place on (question, completion) pairs with AdamW; returns per-step metrics.

    Every ``cfg.check_every`` steps ``check()`` (e.g. greedy accuracy on a validation set) is called and
    recorded as ``sft/check``; training stops early once it reaches ``cfg.target_accuracy``. This is
    how the quickstart stops "partly right" at a similar point whatever the seed. For a vision model,
    ``tokenizer`` is its processor and ``images`` holds each question's images. With ``tools`` (the functions
    the prompt lists; ``[]`` lists none), ``completions`` are episodes (:data:`Episode`, or a one-turn answer
    as a string) and the rows are :func:`build_episode_sft_batch`'s.
    """
    if not questions:
        raise ValueError("supervised_warm_start needs at least one example")
    rng = random.Random(cfg.seed)
    order: list[int] = []
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(1, cfg.steps + 1):
        if len(order) < cfg.batch_size:  # epochs of shuffled examples
            fresh = list(range(len(questions)))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        if tools is not None:
            batch = build_episode_sft_batch(tokenizer, [questions[i] for i in idx], [completions[i] for i in idx],
                                            tools)
        else:
            batch = build_sft_batch(tokenizer, [questions[i] for i in idx], [completions[i] for i in idx],
                                    [images[i] for i in idx] if images is not None else None)
        batch.update(token_type_inputs(model, batch["input_ids"]) if images is not None else {})
        device = next(model.parameters()).device
        out = model(**{k: v.to(device) for k, v in batch.items()})  # mean CE over completion tokens
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        metrics = {"sft/step": float(step), "sft/loss": float(out.loss.detach()), "sft/grad_norm": float(grad_norm),
                   "sft/seconds": time.perf_counter() - t0}
        if check is not None and (step % cfg.check_every == 0 or step == cfg.steps):
            metrics["sft/check"] = check()
            model.train()
        history.append(metrics)
        if log is not None and "sft/check" in metrics:
            log(f"warm-start step {step:4d}  training loss {metrics['sft/loss']:.3f}  "
                f"validation accuracy {metrics['sft/check']:.0%}")
        if cfg.target_accuracy is not None and step >= cfg.min_steps and metrics.get("sft/check", -1.0) >= cfg.target_accuracy:
            break
    model.eval()
    return history
