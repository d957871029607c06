"""Reward registry: one signature for every reward, lookup by name or by ``"module:function"``.

A *reward function* scores a batch of completions::

    fn(completions: list[str], **columns) -> list[float | None]

``columns`` holds the dataset columns as lists aligned with ``completions`` (the gold answer as
``answer=[...]``, the prompt as ``prompts=[...]``); a reward reads the columns it needs and must accept
and ignore the rest through ``**kwargs``. ``None`` for an item means "could not be computed": the
trainer turns it into NaN and leaves that sample out of its group.

Built-in rewards are registered as *factories*, ``make(**params) -> RewardFn``, whose keyword
arguments are the reward's hyperparameters with their defaults, so that a recipe entry
``{name: cosine, weight: 2.0, params: {max_len: 1000}}`` becomes ``get_reward("cosine", max_len=1000)``.

>>> fn = get_reward("tag_count")
>>> fn(["<think>\\nhm\\n</think>\\n<answer>\\n4\\n</answer>"], answer=["4"])
[1.0]
>>> "accuracy" in list_rewards()
True
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol

from gpgrl.user_code import UserCodeError, is_file_reference, load_user_object

__all__ = ["RewardFactory", "RewardFn", "RewardLoadError", "describe_reward", "get_reward", "is_file_reference",
           "list_rewards", "load_user_object", "register_reward", "reward_aliases"]


class RewardFn(Protocol):
    """``fn(completions, **columns) -> list[float | None]`` (see the module docstring)."""

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]: ...


RewardFactory = Callable[..., RewardFn]

_REGISTRY: dict[str, RewardFactory] = {}
#: Other names a reward is known by (the original code's name for it) -> its registered name.
_ALIASES: dict[str, str] = {}


def register_reward(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[RewardFactory], RewardFactory]:
    """Register ``make(**params) -> RewardFn`` under ``name`` (and under each of ``aliases``).

    The factory's keyword arguments (with defaults) are the reward's hyperparameters; the returned
    function is named ``name`` so that metrics can be logged as ``reward/<name>``, also when it was
    looked up by an alias.
    """

    def decorator(factory: RewardFactory) -> RewardFactory:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"a reward named {key!r} is already registered")
        _REGISTRY[name] = factory
        _ALIASES.update({alias: name for alias in aliases})
        return factory

    return decorator


def list_rewards() -> list[str]:
    """Names of the registered rewards, sorted (aliases not included)."""
    return sorted(_REGISTRY)


def reward_aliases() -> dict[str, str]:
    """``{alias: registered name}``, e.g. the original GPG code's ``format_v2``."""
    return dict(_ALIASES)


def _valid_params(factory: RewardFactory) -> list[str]:
    return [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def describe_reward(name: str) -> tuple[str, list[tuple[str, Any]]]:
    """``(summary, [(parameter, default), ...])`` of a registered reward (or alias), for ``gpgrl rewards``.

    >>> describe_reward("reasoning_steps")[1]
    [('min_steps', 3)]
    """
    factory = _REGISTRY[_ALIASES.get(name, name)]
    doc = " ".join((factory.__doc__ or "").strip().split("\n\n")[0].split())
    summary = doc.replace("``", "")
    params = [(p.name, p.default) for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return summary, params


#: A user reward that cannot be loaded (one line: the file, the line, the fix); :class:`gpgrl.user_code.UserCodeError`.
RewardLoadError = UserCodeError


def get_reward(name_or_path: str, **params: Any) -> RewardFn:
    """The reward function for a registered name, or a user function given as ``"module:function"``.

    Args:
        name_or_path: a name from :func:`list_rewards`, or ``"package.module:function"`` (installed or on
            ``PYTHONPATH``) or ``"path/to/file.py:function"`` for a user function with the reward signature.
        **params: the reward's hyperparameters (for a user function: bound with ``functools.partial``).

    Raises:
        ValueError: unknown name (the message lists the valid ones), unknown parameter (the message
            lists the reward's parameters); :class:`RewardLoadError` (a ValueError) for a user function that
            cannot be imported, in one line: the file, the line and the fix.

    >>> get_reward("cosine", max_len=500).__name__
    'cosine'
    >>> get_reward("acuracy")
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'acuracy' (did you mean 'accuracy'?); valid names: accuracy, choice_accuracy, classification, cosine, detection_confidence, detection_iou, environment, format, grounding_giou, length, r1v_accuracy, reasoning_steps, repetition_penalty, tag_count, think_close, token_length, tool_errors, visual_format; or give your own function as 'package.module:function'
    """
    name_or_path = _ALIASES.get(name_or_path, name_or_path)
    if name_or_path in _REGISTRY:
        factory = _REGISTRY[name_or_path]
        valid = _valid_params(factory)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"reward {name_or_path!r} got unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(valid) if valid else '(none)'}"
            )
        fn = factory(**params)
        fn.__name__ = name_or_path  # type: ignore[attr-defined]
        if not fn.__doc__:
            fn.__doc__ = factory.__doc__  # the factory documents the formula and the parameters
        return fn
    if ":" in name_or_path:
        user_fn = load_user_object(name_or_path, "reward")
        if not params:
            return user_fn  # type: ignore[return-value]
        bound = functools.partial(user_fn, **params)
        functools.update_wrapper(bound, user_fn)
        return bound  # type: ignore[return-value]
    near = difflib.get_close_matches(name_or_path, [*list_rewards(), *_ALIASES], n=1)
    raise ValueError(
        f"unknown reward {name_or_path!r}{f' (did you mean {near[0]!r}?)' if near else ''}; valid names: "
        f"{', '.join(list_rewards())}; "
        "or give your own function as 'package.module:function'"
    )
