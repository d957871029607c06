"""Multi-turn episodes, token in / token out, on any engine.

An episode is a rollout of several turns. The policy samples until it ends its turn (an EOS or a stop
string); its environment (:mod:`gpgrl.rollout.environments`: the tools of ``rollout.tools``, or a
``rollout.environment``) reads the turn and answers with messages, which the model's own chat template
renders as the next turn's input; the policy continues from the exact token ids it sampled, never from a
re-tokenised transcript, until the environment says the episode is done, ``max_turns`` turns were taken,
the episode's token budget is spent, or the model's context is full. A single-turn answer is an episode of
one turn.

The episodes of a call advance together: each turn is one batched ``engine.generate`` over every live
episode (the first turn samples G per prompt, so a group's prompt is prefilled once where the engine
shares prompts), and the environments of a turn step concurrently, so a slow tool costs one turn at most
its limit, not one per episode. Any :class:`~gpgrl.rollout.engine.RolloutEngine` runs episodes: the hf
engine and both vLLM engines take each turn's prompt as token ids.

What comes back is one :class:`~gpgrl.rollout.batch.RolloutBatch`, row by row as the engine's: the
completion of a row is everything after the prompt (the policy's tokens and the environment's, in order),
``loss_mask`` is 1 on the policy's own tokens only (the loss, its token count, the entropy and the
importance metrics skip a tool's output), ``sampling_logprobs`` are the engine's on the policy's tokens
(0 on the environment's), ``texts`` the whole episode decoded, and ``episodes`` an :class:`EpisodeInfo`
per row.

Budget: ``max_new_tokens`` of the sampling parameters is the episode's (``rollout.max_completion_length``:
the policy's tokens and the environment's together), each turn gets what is left of it. An episode whose
next turn would not fit (the budget or the model's context) ends there and is flagged: ``ended`` says how.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import Prompt, RolloutEngine, SamplingParams, as_prompts, left_pad, right_pad
from gpgrl.rollout.environments import EnvironmentFactory, Step

logger = logging.getLogger(__name__)

#: How an episode ended: the environment said so (``done``: an answer, a solved game), the policy's turn ran
#: out of the episode's token budget (``length``), the next turn would not fit the model's context
#: (``context``), or ``max_turns`` were taken with the environment still waiting (``max_turns``).
ENDINGS = ("done", "length", "context", "max_turns")


@dataclass
class EpisodeInfo:
    """What happened in one episode (saved with each rollout and summed in the ``episode/`` metrics)."""

    turns: int = 0  # policy turns taken
    tool_calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error kind -> count (tool errors, bad actions)
    env_tokens: int = 0  # tokens the environment added (masked out of the loss)
    ended: str = "done"  # one of ENDINGS
    reward: dict[str, float] = field(default_factory=dict)  # the environment's reward parts, summed over turns
    turn_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of each policy turn in the completion

    def to_dict(self) -> dict[str, Any]:
        return {"turns": self.turns, "tool_calls": self.tool_calls, "errors": dict(self.errors),
                "env_tokens": self.env_tokens, "ended": self.ended, "reward": dict(self.reward),
                "turn_spans": [list(s) for s in self.turn_spans]}


@dataclass
class _Live:
    prompt: Prompt
    env: Any
    ids: list[int] = field(default_factory=list)  # everything after the prompt
    mask: list[int] = field(default_factory=list)  # 1 = the policy's token
    logps: list[float] = field(default_factory=list)
    info: EpisodeInfo = field(default_factory=EpisodeInfo)
    done: bool = False
    logps_missing: bool = False


class TurnRenderer:
    """The token ids that follow a policy turn: the environment's messages as the chat template renders them,
    then the template's opening of the next assistant turn.

    The template is rendered twice, a short conversation ending with an assistant turn and the same with the
    messages added (``add_generation_prompt=True``); what the second adds is the observation. The policy's
    turn ended at its EOS: where the template closes an assistant turn with that EOS and more (Qwen's
    ``<|im_end|>\\n``), the rest (``\\n``) comes first, so the tokens read as the template would lay them out.

    >>> from gpgrl.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> r = TurnRenderer(tok)
    >>> tok.decode(r.ids([{"role": "tool", "name": "calculator", "content": "42"}], tok.eos_token_id))
    '<|user|><tool_response>42</tool_response><|end|><|assistant|>'
    """

    _MARK = "GPGRL-TURN-MARK"

    def __init__(self, tokenizer: Any):
        self.owner = tokenizer
        self.tokenizer = tokenizer.tokenizer if hasattr(tokenizer, "image_processor") else tokenizer
        if getattr(self.owner, "chat_template", None) is None and getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError("multi-turn episodes render tool and environment messages with the model's chat "
                             "template, and this tokenizer has none; use an instruct model (or set one: "
                             "tokenizer.chat_template)")
        self._tails: dict[int, str] = {}

    def _render(self, messages: list[dict[str, Any]], generation: bool) -> str:
        owner = self.owner if getattr(self.owner, "chat_template", None) is not None else self.tokenizer
        return owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def text(self, messages: Sequence[dict[str, Any]], last_token: int | None) -> str:
        """The observation's text (see the class docstring)."""
        head = [{"role": "user", "content": "?"}, {"role": "assistant", "content": self._MARK}]
        base = self._render(head, False)
        full = self._render(head + list(messages), True)
        if not full.startswith(base):
            raise ValueError("the chat template renders a conversation's beginning differently once messages "
                             "follow it, so the episode's tokens cannot continue as the model sampled them; "
                             "multi-turn episodes need a template that only appends (docs/agents.md)")
        tail = base[base.rindex(self._MARK) + len(self._MARK):]  # what closes an assistant turn
        ended = self.tokenizer.decode([last_token]) if last_token is not None else ""
        lead = tail[len(ended):] if ended and tail.startswith(ended) else ""
        return lead + full[len(base):]

    def ids(self, messages: Sequence[dict[str, Any]], last_token: int | None) -> list[int]:
        return self.tokenizer(self.text(messages, last_token), add_special_tokens=False)["input_ids"]


def run_episodes(engine: RolloutEngine, prompts: Sequence[Prompt | Sequence[int]], records: Sequence[dict[str, Any]],
                 params: SamplingParams, num_samples: int, make_env: EnvironmentFactory, *, tokenizer: Any,
                 max_turns: int, pad_id: int, workers: int = 16,
                 on_turn: Callable[[int, int], None] | None = None) -> RolloutBatch:
    """``num_samples`` episodes per prompt, group by group (see the module docstring).

    Args:
        engine: any rollout engine. prompts / records: the prompts and their dataset rows (``records[i]``
            resets the environments of prompt i's episodes).
        params: sampling; ``max_new_tokens`` is each episode's budget after its prompt.
        make_env: builds one episode's environment. tokenizer: the policy's (its chat template renders
            the environment's messages). max_turns: most policy turns. pad_id: the padding token.
        workers: environments stepped at once (threads).
        on_turn: called as ``on_turn(turn, live_episodes)`` before each turn after the first (progress).
    """
    prompts = as_prompts(prompts)
    if len(records) != len(prompts):
        raise ValueError(f"run_episodes: {len(records)} records for {len(prompts)} prompts")
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    renderer = TurnRenderer(tokenizer)
    episodes: list[_Live] = []
    for p, record in zip(prompts, records):
        for _ in range(num_samples):
            env = make_env()
            env.reset(record)
            episodes.append(_Live(p, env))
    context = engine.max_model_len
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for turn in range(max_turns):
            live = [e for e in episodes if not e.done]
            if not live:
                break
            left = [params.max_new_tokens - len(e.ids) for e in live]
            budget = max(left)
            if turn and on_turn is not None:
                on_turn(turn + 1, len(live))
            if turn == 0:  # G per prompt in one call: the engine shares each group's prompt
                out = engine.generate(prompts, replace(params, max_new_tokens=budget), num_samples)
            else:
                turn_prompts = [replace(e.prompt, ids=e.prompt.ids + e.ids) for e in live]
                out = engine.generate(turn_prompts, replace(params, max_new_tokens=budget), 1)
            if len(out) != len(live):
                raise RuntimeError(f"the engine returned {len(out)} turns for {len(live)} live episodes")
            steps = []
            for k, e in enumerate(live):
                n = int(out.completion_mask[k].sum())
                new = out.completion_ids[k, :n].tolist()
                cut = n > left[k]  # this episode's budget is smaller than the call's
                new = new[: left[k]]
                lp = out.sampling_logprobs[k, : len(new)].tolist() if out.sampling_logprobs is not None else None
                start = len(e.ids)
                e.ids += new
                e.mask += [1] * len(new)
                e.logps += lp if lp is not None else [0.0] * len(new)
                e.logps_missing |= lp is None
                e.info.turns += 1
                e.info.turn_spans.append((start, len(e.ids)))
                if cut or bool(out.truncated[k]):  # the turn did not end: the budget or the context ran out
                    full = context is not None and len(e.prompt.ids) + len(e.ids) >= context
                    e.done, e.info.ended = True, "context" if full and not cut else "length"
                    steps.append(None)
                else:
                    steps.append(pool.submit(_step, e.env, out.texts[k]))
            for e, pending in zip(live, steps):
                if pending is None:
                    continue
                step: Step = pending.result()
                e.info.tool_calls += step.tool_calls
                for kind in step.errors:
                    e.info.errors[kind] = e.info.errors.get(kind, 0) + 1
                for name, value in step.reward.items():
                    e.info.reward[name] = e.info.reward.get(name, 0.0) + float(value)
                if step.done:
                    e.done, e.info.ended = True, "done"
                    continue
                if turn == max_turns - 1:
                    e.done, e.info.ended = True, "max_turns"
                    continue
                obs = renderer.ids(step.messages, e.ids[-1] if e.ids else None)
                used = len(e.ids) + len(obs)
                if used >= params.max_new_tokens:  # no room left for the policy's next turn
                    e.done, e.info.ended = True, "length"
                elif context is not None and len(e.prompt.ids) + used >= context:
                    e.done, e.info.ended = True, "context"
                else:
                    e.ids += obs
                    e.mask += [0] * len(obs)
                    e.logps += [0.0] * len(obs)
                    e.info.env_tokens += len(obs)
    return _assemble(episodes, renderer.tokenizer, pad_id)


def _step(env: Any, text: str) -> Step:
    """``env.step(text)``; an environment that raises ends its episode (counted as ``environment_exception``,
    logged once per kind of exception) instead of the whole batch."""
    try:
        step = env.step(text)
    except Exception as e:  # a bug in one environment must not cost the other episodes of the step
        key = f"{type(env).__name__}:{type(e).__name__}"
        if key not in _LOGGED:
            _LOGGED.add(key)
            logger.warning("environment %s raised %s: %s; its episode ends there (counted in "
                           "episode/tool_errors/environment_exception)", type(env).__name__, type(e).__name__, e)
        return Step(done=True, errors=["environment_exception"])
    if not isinstance(step, Step):
        raise TypeError(f"environment {type(env).__name__}.step returned {type(step).__name__}, not a "
                        "gpgrl.rollout.environments.Step")
    return step


_LOGGED: set[str] = set()


def _assemble(episodes: list[_Live], tokenizer: Any, pad_id: int) -> RolloutBatch:
    completion_ids, completion_mask = right_pad([e.ids for e in episodes], pad_id)
    loss_mask, _ = right_pad([e.mask for e in episodes], 0)
    prompt_ids, prompt_mask = left_pad([e.prompt.ids for e in episodes], pad_id)
    sampling = None
    if not any(e.logps_missing for e in episodes):
        sampling = torch.zeros(completion_ids.shape, dtype=torch.float32)
        for i, e in enumerate(episodes):
            sampling[i, : len(e.logps)] = torch.tensor(e.logps, dtype=torch.float32)
    truncated = torch.tensor([e.info.ended in ("length", "context") for e in episodes], dtype=torch.bool)
    texts = tokenizer.batch_decode([e.ids for e in episodes], skip_special_tokens=True)
    model_inputs = [e.prompt.model_inputs for e in episodes] if any(e.prompt.model_inputs for e in episodes) else None
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, texts,
                        sampling_logprobs=sampling, prompts=[e.prompt.text for e in episodes]
                        if any(e.prompt.text for e in episodes) else [], model_inputs=model_inputs,
                        loss_mask=loss_mask, episodes=[e.info for e in episodes]).trim()


def episode_metrics(infos: Sequence[EpisodeInfo], loss_mask_sum: float, completion_tokens: float) -> dict[str, float]:
    """The ``episode/`` metrics of a batch's episodes (every process's, gathered).

    >>> infos = [EpisodeInfo(turns=2, tool_calls=1, errors={"timeout": 1}, env_tokens=5),
    ...          EpisodeInfo(turns=1, ended="length")]
    >>> m = episode_metrics(infos, loss_mask_sum=15, completion_tokens=20)
    >>> m["episode/turns"], m["episode/tool_calls"], m["episode/tool_errors/timeout"], m["episode/env_token_frac"]
    (1.5, 0.5, 1.0, 0.25)
    >>> m["episode/ended_length"], m["episode/ended_context"]
    (1.0, 0.0)
    """
    n = max(len(infos), 1)
    errors: Counter[str] = Counter()
    for i in infos:
        errors.update(i.errors)
    ended = Counter(i.ended for i in infos)
    out = {"episode/turns": sum(i.turns for i in infos) / n,
           "episode/tool_calls": sum(i.tool_calls for i in infos) / n,
           "episode/tool_errors": float(sum(errors.values())),
           "episode/env_token_frac": 1.0 - loss_mask_sum / completion_tokens if completion_tokens else 0.0,
           **{f"episode/ended_{k}": float(ended.get(k, 0)) for k in ENDINGS}}
    from gpgrl.tools import ERROR_KINDS

    for kind in sorted(set(ERROR_KINDS) | set(errors)):
        out[f"episode/tool_errors/{kind}"] = float(errors.get(kind, 0))
    return out


@dataclass
class EpisodeSetup:
    """What a multi-turn run needs, built once from its settings (:func:`episode_setup`): the environment factory,
    the tools the prompt lists (``PromptBuilder(tools=...)``), the turn limit."""

    make_env: EnvironmentFactory
    max_turns: int
    tools: list[Any] = field(default_factory=list)  # functions, for apply_chat_template(tools=...)
    toolbox: Any = None  # the run's gpgrl.tools.Toolbox, if it has tools
    tool_instructions: str | None = None  # the tools in words, for a chat template that does not list them

    def close(self) -> None:
        if self.toolbox is not None:
            self.toolbox.close()


def episode_setup(*, tools: Sequence[Any] = (), environment: str | None = None,
                  environment_params: dict[str, Any] | None = None, max_turns: int = 4, tool_timeout: float = 10.0,
                  tool_call_format: str = "hermes") -> EpisodeSetup | None:
    """The :class:`EpisodeSetup` of ``rollout.tools`` / ``rollout.environment`` (None: single-turn answers).

    Tools (names, ``module:function`` or callables) make a :class:`~gpgrl.tools.Toolbox` and the ``tools``
    environment; an environment's constructor gets ``environment_params`` (and, when tools are given too and
    it takes a ``toolbox`` argument, the toolbox).
    """
    if not tools and environment is None:
        return None
    toolbox = None
    if tools:
        from gpgrl.tools import Toolbox

        toolbox = Toolbox(list(tools), timeout=tool_timeout, call_format=tool_call_format)
    params = dict(environment_params or {})
    if toolbox is not None:
        params["toolbox"] = toolbox
    from gpgrl.rollout.environments import environment_factory

    make_env = environment_factory(environment or "tools", params)
    if toolbox is None:
        return EpisodeSetup(make_env=make_env, max_turns=max_turns)
    try:
        instructions = toolbox.call_format.instructions(toolbox.schemas)
    except NotImplementedError:
        instructions = None
    return EpisodeSetup(make_env=make_env, max_turns=max_turns, tools=list(toolbox.functions), toolbox=toolbox,
                        tool_instructions=instructions)


def episode_columns(infos: Sequence[EpisodeInfo] | None) -> dict[str, list[Any]]:
    """What reward functions get about each episode, as keyword arguments: ``turns``, ``tool_calls``,
    ``tool_errors`` (errors of any kind), ``environment_reward`` (the environment's reward parts, summed; read by
    the ``environment`` reward) and ``episode`` (the :meth:`EpisodeInfo.to_dict`); nothing for single answers."""
    if not infos:
        return {}
    return {"turns": [i.turns for i in infos], "tool_calls": [i.tool_calls for i in infos],
            "tool_errors": [sum(i.errors.values()) for i in infos],
            "environment_reward": [sum(i.reward.values()) if i.reward else None for i in infos],
            "episode": [i.to_dict() for i in infos]}


def rollout_rows(batch: RolloutBatch, advantages: Sequence[float], step: int, rank: int = 0) -> list[dict[str, Any]]:
    """One JSON-ready row per answer of a trained batch, for ``rollouts.jsonl``: the prompt's and the
    completion's token ids, the loss mask (1 = the policy's token), the sampling log-probs, the text, the
    reward (and each function's), the advantage and, for an episode, its :class:`EpisodeInfo`."""
    rows = []
    for i in range(len(batch)):
        n = int(batch.completion_mask[i].sum())
        p = batch.prompt_ids[i][batch.prompt_mask[i].bool()]
        row: dict[str, Any] = {
            "step": step, "rank": rank, "prompt_ids": p.tolist(), "completion_ids": batch.completion_ids[i, :n].tolist(),
            "loss_mask": batch.action_mask[i, :n].tolist(), "text": batch.texts[i],
            "reward": _finite(float(batch.rewards[i])) if batch.rewards is not None else None,
            "rewards": [_finite(x) for x in batch.rewards_per_fn[i].tolist()] if batch.rewards_per_fn is not None else None,
            "advantage": float(advantages[i]), "truncated": bool(batch.truncated[i]),
        }
        if batch.sampling_logprobs is not None:
            row["sampling_logprobs"] = [round(x, 6) for x in batch.sampling_logprobs[i, :n].tolist()]
        if batch.prompt_index is not None:
            row["prompt_index"] = int(batch.prompt_index[i])
        if batch.episodes:
            row["episode"] = batch.episodes[i].to_dict()
        rows.append(row)
    return rows


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None
