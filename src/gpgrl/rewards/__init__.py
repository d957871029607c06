"""Reward functions for RL with verifiable rewards, and the math answer grader.

Every reward has the signature ``fn(completions: list[str], **columns) -> list[float | None]`` and is
looked up by name (or as ``"package.module:function"`` for your own) with :func:`get_reward`::

    >>> from gpgrl.rewards import get_reward
    >>> acc = get_reward("accuracy")
    >>> acc(["... so the answer is \\\\boxed{\\\\frac{1}{2}}", "\\\\boxed{2}"], answer=["0.5", "3"])
    [1.0, 0.0]

Built-in rewards (open-r1 semantics, see ``docs/rewards.md``): ``accuracy``, ``format``, ``tag_count``,
``reasoning_steps``, ``cosine``, ``repetition_penalty``, ``length``, ``think_close``. :func:`grade_answer` decides whether
a model output's final answer equals a gold answer, with a time limit, never raising.
"""

from gpgrl.rewards import episode, format_rewards, math_rewards, vision  # noqa: F401  (registers the built-ins)
from gpgrl.rewards.math_grader import answers_equivalent, extract_answer, grade_answer, normalize_answer
from gpgrl.rewards.registry import RewardFn, get_reward, list_rewards, register_reward, reward_aliases

__all__ = [
    "RewardFn",
    "answers_equivalent",
    "extract_answer",
    "get_reward",
    "grade_answer",
    "list_rewards",
    "normalize_answer",
    "register_reward",
    "reward_aliases",
]
