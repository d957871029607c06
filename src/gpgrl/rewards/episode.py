"""Rewards of multi-turn episodes (``rollout.tools`` / ``rollout.environment``; docs/agents.md).

A reward scores the whole episode: ``completions`` are the episodes' texts (the policy's turns and the tool or
environment messages between them), and an episode's details come as columns
(:func:`gpgrl.rollout.episodes.episode_columns`): ``turns``, ``tool_calls``, ``tool_errors``,
``environment_reward``, ``episode``.
"""

from __future__ import annotations

from typing import Any

from gpgrl.rewards.registry import RewardFn, register_reward


@register_reward("environment")
def make_environment() -> RewardFn:
    """``environment``: the sum of the reward parts the episode's environment gave (``Step.reward``), None
    (no reward, counted as a failure) where the run has no environment that gives any.

    >>> make_environment()(["a", "b"], environment_reward=[1.5, None])
    [1.5, None]
    """

    def environment(completions: list[Any], environment_reward: list[float | None] | None = None,
                    **columns: Any) -> list[float | None]:
        if environment_reward is None:
            raise ValueError("the environment reward needs multi-turn episodes with an environment that gives reward "
                             "parts (rollout.environment)")
        return [None if r is None else float(r) for r in environment_reward]

    return environment


@register_reward("tool_errors")
def make_tool_errors(penalty: float = 1.0) -> RewardFn:
    """``tool_errors``: ``-penalty`` per failed tool call or bad action in the episode (a malformed call, an
    unknown tool, wrong arguments, an exception, a timeout), 0.0 for a clean episode.

    >>> make_tool_errors(0.5)(["a", "b"], tool_errors=[0, 2])
    [0.0, -1.0]
    """

    def tool_errors(completions: list[Any], tool_errors: list[int] | None = None, **columns: Any) -> list[float | None]:
        if tool_errors is None:
            raise ValueError("the tool_errors reward needs multi-turn episodes (rollout.tools or rollout.environment)")
        return [-penalty * float(n) if n else 0.0 for n in tool_errors]

    return tool_errors
