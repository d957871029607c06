"""Scoring a batch of completions with several weighted reward functions, validating what they return.

:func:`score_batch` calls every reward function once on the whole batch and returns the weighted total
and each function's rewards as float64 tensors (rewards are later compared by exact equality, so every
bit the functions gave is kept). A value that cannot be used becomes NaN, which the algorithm core reads
as "could not be computed" (the answer leaves its group's mean and gets advantage 0), and the problem is
recorded in :class:`Scores` with the function's name and an example, so that the trainer can say what
went wrong:

* the function raised: every answer of the batch gets NaN, the exception is kept;
* it returned something that is not a sequence of one value per completion (a scalar, the wrong
  length): every answer gets NaN;
* an item is ``None`` (the function's way to say "no reward for this one"): NaN;
* an item is not a number (e.g. the string ``'yes'``), or is ``inf`` / ``NaN``: NaN, named.

The total is ``sum_f weight_f * r_f``; it is NaN when any function's value is NaN.

>>> from gpgrl.rewards import get_reward
>>> fns = as_reward_functions([("tag_count", 1.0), (lambda completions, **_: [0.5] * len(completions), 2.0)])
>>> s = score_batch(fns, ["<think>\\nx\\n</think>\\n<answer>\\n1\\n</answer>"], [{}])
>>> s.total.tolist(), s.per_fn.tolist(), s.problems
([2.0], [[1.0, 0.5]], {})
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gpgrl.rewards.registry import RewardFn, get_reward


@dataclass(frozen=True)
class RewardFunction:
    """A reward function with the name it is logged under (``reward/<name>``) and its weight."""

    name: str
    fn: RewardFn
    weight: float = 1.0


def as_reward_functions(items: Sequence[Any]) -> list[RewardFunction]:
    """Normalise rewards given in any of the accepted forms into :class:`RewardFunction` objects.

    Accepted: a registered name or ``"module:function"`` (``"accuracy"``), a callable, a
    ``(name_or_callable, weight)`` pair, a :class:`RewardFunction`, or an object with ``name``,
    ``weight`` and ``params`` attributes (a recipe's reward entry).
    """
    out: list[RewardFunction] = []
    for item in items:
        weight = 1.0
        params: dict[str, Any] = {}
        if isinstance(item, RewardFunction):
            out.append(item)
            continue
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(f"a reward given as a tuple must be (name_or_function, weight), got {item!r}")
            item, weight = item
        elif hasattr(item, "name") and hasattr(item, "weight"):
            timeout = getattr(item, "timeout", None)
            item, weight, params = item.name, item.weight, dict(getattr(item, "params", {}) or {})
            if timeout is not None:
                item = TimeLimited(item, params, timeout)
        if isinstance(item, TimeLimited):
            fn, name = item, item.__name__
        elif isinstance(item, str):
            fn = get_reward(item, **params)
            name = getattr(fn, "__name__", item)
        elif callable(item):
            fn, name = item, getattr(item, "__name__", type(item).__name__)
        else:
            raise ValueError(f"cannot use {item!r} as a reward: give a name, 'module:function' or a callable")
        if not isinstance(weight, numbers.Real) or not math.isfinite(float(weight)):
            raise ValueError(f"reward {name!r}: weight must be a finite number, got {weight!r}")
        out.append(RewardFunction(_unique(name, out), fn, float(weight)))
    if not out:
        raise ValueError("at least one reward is needed, e.g. rewards: [{name: accuracy}]")
    return out


def _unique(name: str, taken: list[RewardFunction]) -> str:
    names = {r.name for r in taken}
    if name not in names:
        return name
    k = 2
    while f"{name}_{k}" in names:
        k += 1
    return f"{name}_{k}"


@dataclass
class Scores:
    """The rewards of N completions under F functions, and what went wrong, by function name."""

    total: torch.Tensor  # [N] float64, NaN where any function's value is unusable
    per_fn: torch.Tensor  # [N, F] float64
    problems: dict[str, str] = field(default_factory=dict)  # name -> first problem seen in this call
    failed_all: list[str] = field(default_factory=list)  # functions that gave no usable value at all
    seconds: dict[str, float] = field(default_factory=dict)  # name -> wall-clock seconds of its call


def _as_float(value: Any) -> float | str:
    """A float, or a description of why ``value`` is not a usable reward."""
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, numbers.Real)) and not isinstance(value, complex):
        x = float(value)
        return x if math.isfinite(x) else f"the non-finite value {x!r}"
    return f"{type(value).__name__} {value!r:.40}"


def _validate(out: Any, n: int) -> tuple[list[float], str | None]:
    """Per-item floats (NaN where unusable) and a description of the first problem, if any."""
    if hasattr(out, "tolist") and not isinstance(out, (list, tuple)):  # a tensor or numpy array
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        return [math.nan] * n, (f"returned {type(out).__name__} {out!r:.40}; a reward must return a list with "
                                f"one float (or None) per completion ({n} here)")
    values = list(out)
    if len(values) != n:
        return [math.nan] * n, f"returned {len(values)} values for {n} completions"
    floats: list[float] = []
    problem = None
    for i, v in enumerate(values):
        x = _as_float(v)
        if isinstance(x, str):
            floats.append(math.nan)
            if problem is None and v is not None:
                problem = f"returned {x} for completion {i}; rewards must be finite numbers (or None)"
        else:
            floats.append(x)
    return floats, problem


def score_batch(rewards: Sequence[RewardFunction], completions: list[str], records: Sequence[dict[str, Any]], *,
                prompts: Sequence[str] | None = None, answer: Sequence[Any] | None = None,
                extra: dict[str, Sequence[Any]] | None = None) -> Scores:
    """Score ``completions`` with every reward (see the module docstring for the validation rules).

    Args:
        rewards: the weighted reward functions (:func:`as_reward_functions`).
        completions: N completion texts.
        records: N dataset records (dicts); their columns are passed to the functions as lists, each
            function reading the ones it needs (``answer``, ``solution``, ...).
        prompts: N prompt texts, passed as ``prompts``.
        answer: N gold answers, passed as ``answer`` (overrides a record column of that name).
        extra: more columns of N values each (a multi-turn episode's ``turns``, ``tool_calls``, ...;
            :func:`gpgrl.rollout.episodes.episode_columns`), passed by name.
    """
    n = len(completions)
    if len(records) != n:
        raise ValueError(f"score_batch: {len(records)} records for {n} completions")
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    columns: dict[str, list[Any]] = {k: [r.get(k) for r in records] for k in keys}
    if answer is not None:
        columns["answer"] = list(answer)
    if prompts is not None:
        columns["prompts"] = list(prompts)
    for name, values in (extra or {}).items():
        if len(values) != n:
            raise ValueError(f"score_batch: column {name!r} has {len(values)} values for {n} completions")
        columns[name] = list(values)
    per_fn = torch.full((n, len(rewards)), math.nan, dtype=torch.float64)
    problems: dict[str, str] = {}
    failed_all: list[str] = []
    seconds: dict[str, float] = {}
    for j, reward in enumerate(rewards):
        start = time.perf_counter()
        try:
            out = reward.fn(completions=completions, **columns)
            values, problem = _validate(out, n)
        except RewardTimeout as e:
            values, problem = [math.nan] * n, str(e)
        except Exception as e:  # a broken reward must not stop the step: its answers get NaN
            values, problem = [math.nan] * n, f"raised {type(e).__name__}: {e}"
        seconds[reward.name] = time.perf_counter() - start
        per_fn[:, j] = torch.tensor(values, dtype=torch.float64)
        if problem is not None:
            problems[reward.name] = problem
        if n and bool(torch.isnan(per_fn[:, j]).all()):
            failed_all.append(reward.name)
            problems.setdefault(reward.name, "returned None for every completion")
    weights = torch.tensor([r.weight for r in rewards], dtype=torch.float64)
    total = (per_fn * weights).sum(dim=1) if rewards else torch.zeros(n, dtype=torch.float64)
    return Scores(total, per_fn, problems, failed_all, seconds)


class RewardTimeout(RuntimeError):
    """A time-limited reward call gave no result within its limit (it was stopped)."""


class TimeLimited:
    """A user reward (``"package.module:function"``) called in a worker process that is stopped after
    ``timeout`` seconds per call (:func:`gpgrl.rewards._deadline.limited_call`); its answers then get no
    reward (NaN, counted in ``reward/failures``). The columns passed must be JSON-serialisable (text
    datasets are). Set in a recipe as ``rewards: [{name: pkg.mod:fn, timeout: 10}]``.
    """

    def __init__(self, path: str, params: dict[str, Any], timeout: float):
        if ":" not in path:
            raise ValueError(f"reward {path!r}: timeout is for your own rewards ('package.module:function'); the "
                             "built-in ones bound their own time (accuracy: its timeout parameter)")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"reward {path!r}: timeout must be > 0 seconds, got {timeout}")
        self.__name__ = getattr(get_reward(path, **params), "__name__", path)  # imports it here: errors now
        self.path, self.params, self.timeout = path, dict(params), timeout

    def __call__(self, completions: list[str], **columns: Any) -> list[Any]:
        import json

        from gpgrl.rewards._deadline import limited_call

        try:
            json.dumps(columns)
        except TypeError as e:
            raise ValueError(f"a time limit needs JSON-serialisable columns ({e})") from None
        missing = object()
        out = limited_call("gpgrl.rewards.scoring:_call_user_reward", (self.path, self.params, completions, columns),
                           self.timeout, default=missing)
        if out is missing:
            raise RewardTimeout(f"gave no result within its time limit of {self.timeout:g} s (stopped; or it raised: "
                                "call it without a timeout to see its error)")
        return out


def _call_user_reward(path: str, params: dict[str, Any], completions: list[str], columns: dict[str, Any]) -> Any:
    """Worker-side half of :class:`TimeLimited`: the reward's values as JSON-friendly floats / None."""
    out = get_reward(path, **params)(completions=completions, **columns)
    out = out.tolist() if hasattr(out, "tolist") else out
    return [v.item() if hasattr(v, "item") else v for v in out] if isinstance(out, (list, tuple)) else out



class FailureTracker:
    """Counts, per reward function, the steps in a row in which it gave no usable value for any answer.

    One such step is bad luck or a flaky service; several in a row are a bug that would otherwise waste
    the run (every update skipped). :meth:`end_step` returns the functions that reached ``limit``.

    >>> t = FailureTracker(["a", "b"], limit=2)
    >>> t.end_step({"a"}), t.end_step({"a", "b"}), t.end_step({"b"})
    ([], ['a'], ['b'])
    """

    def __init__(self, names: Sequence[str], limit: int):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.steps = dict.fromkeys(names, 0)

    def end_step(self, failed: set[str]) -> list[str]:
        """Record one step in which the functions in ``failed`` gave nothing usable; the ones over the limit."""
        for name in self.steps:
            self.steps[name] = self.steps[name] + 1 if name in failed else 0
        return [name for name, n in self.steps.items() if n >= self.limit]
