"""Environments: what answers the policy between the turns of an episode.

An environment is a small object, one per episode (:mod:`gpgrl.rollout.episodes` builds it from its
factory for every episode and never shares it)::

    env.reset(record)      # the dataset row the episode is about (its question, answer, ...)
    env.step(text) -> Step # the policy's latest turn, as text: what comes back, and whether the episode is done

A :class:`Step` holds the messages the environment answers with (chat messages, ``{"role": "tool" | "user",
"content": ...}``, rendered by the model's own chat template as the next turn's input), ``done`` (the
episode ends with the policy's turn just taken), optional reward parts (summed into the ``environment``
reward), and counts for the metrics (tool calls, errors by kind).

:class:`ToolEnvironment` is the environment of ``rollout.tools``: each turn that calls tools gets their
results as tool messages; a turn that calls none is the answer and ends the episode. Others are registered
by name (:func:`register_environment`, ``rollout.environment``) or given as ``"module:Class"`` /
``"path/to/file.py:Class"``. :class:`GuessNumber` is the worked example of docs/agents.md.

>>> env = GuessNumber(); env.reset({"answer": "42"})
>>> env.step("<answer>50</answer>").messages[0]["content"], env.step("<answer>42</answer>").done
('50 is too high. Guess again.', True)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Step:
    """What an environment answers to one turn of the policy."""

    messages: list[dict[str, Any]] = field(default_factory=list)  # chat messages shown to the policy next
    done: bool = False  # the episode ends with the turn just taken (no messages are shown then)
    reward: dict[str, float] = field(default_factory=dict)  # reward parts, summed into the `environment` reward
    tool_calls: int = 0  # tool calls in the turn (for the metrics)
    errors: list[str] = field(default_factory=list)  # one error kind per failed call or bad action (metrics)


@runtime_checkable
class Environment(Protocol):
    """One episode's environment: :meth:`reset` with the dataset row, then :meth:`step` per policy turn."""

    def reset(self, record: dict[str, Any]) -> None: ...

    def step(self, text: str) -> Step: ...


#: ``() -> Environment``: builds a fresh environment for one episode.
EnvironmentFactory = Callable[[], Environment]

_REGISTRY: dict[str, Callable[..., Environment]] = {}


def register_environment(name: str) -> Callable[[type], type]:
    """Register an environment class under ``name`` (``rollout.environment: name``); its constructor's keyword
    arguments come from ``rollout.environment_params``."""
    def add(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"environment {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls
    return add


def list_environments() -> list[str]:
    return sorted(_REGISTRY)


def environment_factory(name: str, params: dict[str, Any] | None = None) -> EnvironmentFactory:
    """A factory of fresh environments named ``name``: registered, ``"module:Class"`` or ``"file.py:Class"``.

    >>> environment_factory("guess_numbr")
    Traceback (most recent call last):
    ...
    ValueError: unknown environment 'guess_numbr' (did you mean 'guess_number'?); valid: guess_number, multiply_steps, tools; or give your own as 'package.module:Class' or 'path/to/file.py:Class'
    """
    params = dict(params or {})
    if name in _REGISTRY:
        cls: Callable[..., Environment] = _REGISTRY[name]
    elif ":" in name:
        from gpgrl.user_code import load_user_object

        cls = load_user_object(name, what="environment")
    else:
        near = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown environment {name!r}{hint}; valid: {', '.join(list_environments())}; or give your "
                         "own as 'package.module:Class' or 'path/to/file.py:Class'")
    try:
        probe = cls(**params)
    except TypeError as e:
        raise ValueError(f"environment {name!r} cannot be built with rollout.environment_params={params}: {e}") from None
    missing = [m for m in ("reset", "step") if not callable(getattr(probe, m, None))]
    if missing:
        raise ValueError(f"environment {name!r} has no {' or '.join(missing)} method; an environment has "
                         "reset(record) and step(text) -> Step (gpgrl.rollout.environments)")
    return lambda: cls(**params)


@register_environment("tools")
class ToolEnvironment:
    """The environment of ``rollout.tools``: a turn that calls tools gets one tool message per call (its result,
    or the error the policy should read: a malformed call, an unknown tool, wrong arguments, an exception, a
    timeout); a turn that calls no tool is the episode's answer.

    Args:
        toolbox: a :class:`gpgrl.tools.Toolbox` (shared by the episodes of a run: it holds no episode state).
    """

    def __init__(self, toolbox: Any):
        self.toolbox = toolbox

    def reset(self, record: dict[str, Any]) -> None:
        pass

    def step(self, text: str) -> Step:
        results = self.toolbox.run(text)
        if results is None:
            return Step(done=True)
        return Step(messages=[r.message() for r in results], tool_calls=len(results),
                    errors=[r.error for r in results if r.error])


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


@register_environment("guess_number")
class GuessNumber:
    """The worked example of docs/agents.md: guess the record's ``answer`` (an integer); after each wrong guess
    the environment says "too high" or "too low". The episode ends at the right guess; its reward part
    ``solved`` is 1.0 then, and ``turns_left`` rewards guessing in few turns (0 when ``max_guesses`` are used).

    Args:
        max_guesses: guesses before the environment ends the episode itself.
        answer_column: the record's column holding the number.
    """

    def __init__(self, max_guesses: int = 6, answer_column: str = "answer"):
        self.max_guesses, self.answer_column = max_guesses, answer_column
        self.target, self.guesses = 0, 0

    def reset(self, record: dict[str, Any]) -> None:
        self.target, self.guesses = int(str(record[self.answer_column]).strip()), 0

    def step(self, text: str) -> Step:
        self.guesses += 1
        found = _ANSWER.findall(text)
        left = self.max_guesses - self.guesses
        try:
            guess = int(found[-1].strip()) if found else None
        except ValueError:
            guess = None
        if guess == self.target:
            return Step(done=True, reward={"solved": 1.0, "turns_left": left / self.max_guesses})
        if left <= 0:
            return Step(done=True, reward={"solved": 0.0, "turns_left": 0.0})
        if guess is None:
            return Step([{"role": "user", "content": "Write your guess as <answer>N</answer>."}], errors=["bad_action"])
        side = "high" if guess > self.target else "low"
        return Step([{"role": "user", "content": f"{guess} is too {side}. Guess again."}])


@register_environment("multiply_steps")
class MultiplySteps:
    """A multi-step arithmetic environment: the record's ``question`` ``"a*b"`` is worked out one partial
    product at a time. Each turn the policy writes ``<answer>N</answer>``; the environment checks it against
    the next partial product (``a`` times one digit of ``b``, from the last digit, shifted), says whether it
    was right, and asks for the next, then for the sum. Reward parts: ``steps_right`` (share of the steps
    answered right) and ``solved`` (the final sum right).
    """

    def __init__(self, question_column: str = "question"):
        self.question_column = question_column
        self.targets: list[int] = []
        self.at, self.right = 0, 0

    def reset(self, record: dict[str, Any]) -> None:
        a, b = (int(x) for x in str(record[self.question_column]).split("*"))
        digits = str(b)[::-1]
        self.targets = [a * int(d) * 10**i for i, d in enumerate(digits)] + [a * b]
        self.at, self.right = 0, 0

    def step(self, text: str) -> Step:
        found = _ANSWER.findall(text)
        try:
            value = int(found[-1].strip()) if found else None
        except ValueError:
            value = None
        ok = value == self.targets[self.at]
        self.right += ok
        self.at += 1
        if self.at == len(self.targets):
            return Step(done=True, reward={"steps_right": self.right / len(self.targets), "solved": float(ok)})
        what = "the sum of the partial products" if self.at == len(self.targets) - 1 else f"partial product {self.at + 1}"
        verdict = "Right." if ok else f"Wrong: it is {self.targets[self.at - 1]}."
        return Step([{"role": "user", "content": f"{verdict} Now {what}."}], errors=[] if value is not None
                    else ["bad_action"])
