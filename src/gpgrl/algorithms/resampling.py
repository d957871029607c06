"""Threshold resampling (the original GPG code's ``min_inverse_alpha``), as pure functions.

A step draws P prompts and samples G answers to each. Groups whose rewards are all equal carry no
gradient signal (see :func:`gpgrl.algorithms.degenerate_groups`). While fewer than
``threshold * P`` of the groups drawn so far carry a signal, the step draws P more prompts, up to a
budget of draws. It then trains on exactly P groups: those with a signal first, in the order they were
drawn, filled up with degenerate ones in draw order, and the rest dropped. Every process runs the same
rule on its own share of the prompts; the decision to draw again uses the global count of kept groups
with a signal, so all processes draw the same number of times.

The original's ``inverse_alpha`` is ``min(1, valid groups / P)``; with the kept batch built as above,
AGE's ``alpha = B / (B - M)`` on that batch is its inverse (``P / min(valid, P)``).

>>> select_groups([True, False, True, False, False, True], num_groups=3)   # degenerate flags
[1, 3, 4]
>>> select_groups([True, True, False, True], num_groups=3)
[2, 0, 1]
>>> enough_signal(num_valid_kept=2, num_prompts=4, threshold=0.5), enough_signal(1, 4, 0.5)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence


def select_groups(degenerate: Sequence[bool], num_groups: int) -> list[int]:
    """Indices (into the groups drawn so far, in draw order) of the ``num_groups`` groups to train on.

    Groups with a signal come first, in draw order; degenerate groups fill the remaining places, in draw
    order; the rest are dropped. Raises ValueError when fewer than ``num_groups`` groups were drawn.
    """
    if num_groups < 0:
        raise ValueError(f"num_groups must be >= 0, got {num_groups}")
    if len(degenerate) < num_groups:
        raise ValueError(f"{len(degenerate)} groups were drawn, {num_groups} are needed")
    with_signal = [i for i, d in enumerate(degenerate) if not d]
    without = [i for i, d in enumerate(degenerate) if d]
    return (with_signal + without)[:num_groups]


def kept_with_signal(degenerate: Sequence[bool], num_groups: int) -> int:
    """How many of the groups :func:`select_groups` keeps carry a signal: ``min(#signal, num_groups)``.

    >>> kept_with_signal([False, False, True, False], 2)
    2
    """
    return min(sum(not d for d in degenerate), num_groups)


def enough_signal(num_valid_kept: int, num_prompts: int, threshold: float) -> bool:
    """Whether the kept batch meets the threshold: ``num_valid_kept >= threshold * num_prompts``.

    ``num_valid_kept`` is summed over processes (:func:`kept_with_signal` on each); ``threshold`` 0 never
    resamples, 1 resamples until every group carries a signal (DAPO's dynamic sampling).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return num_valid_kept >= threshold * num_prompts
