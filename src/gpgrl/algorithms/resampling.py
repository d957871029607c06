"""Threshold resampling (the original GPG code's ``min_inverse_alpha``), as pure functions.

A step draws P prompts and samples G answers to each. Groups whose rewards are all equal carry no
gradient signal (see :func:`gpgrl.algorithms.degenerate_groups`). While fewer than
``threshold * P`` of the groups drawn so far carry a signal, the step draws P more prompts, up to a
budget of draws. It then trains on exactly P groups: those with a signal first, in the order they were
drawn, filled up with degenerate ones in draw order, and the rest dropped. Every process runs the same
rule on its own share of the prompts; the decision to draw again uses the global count of kept groups
with a signal, so all processes draw the same number of times.

That is ``resample_count: kept``. The original open-r1 ``gpg_trainer.py`` counts differently
(``resample_count: gathered``, :func:`gathered_selection`, :func:`gathered_alpha`): its count is every group
with a signal drawn so far on any process, uncapped; a process keeps its groups with a signal in draw order,
then the degenerate groups of the *last* draw, cut to its share; and ``inverse_alpha = min(1, count / P)``
divides the loss. With one process the two agree on alpha (``P / min(valid, P)``, AGE's ``B / (B - M)`` on
the kept batch); with several they differ when one process draws more groups with a signal than its share
while another draws fewer.

>>> select_groups([True, False, True, False, False, True], num_groups=3)   # degenerate flags
[1, 3, 4]
>>> select_groups([True, True, False, True], num_groups=3)
[2, 0, 1]
>>> enough_signal(num_valid_kept=2, num_prompts=4, threshold=0.5), enough_signal(1, 4, 0.5)
(True, False)
>>> gathered_selection([[True, False], [False, True]], num_groups=2)   # two draws of 2 groups on this process
[1, 2]
>>> gathered_alpha(num_valid=3, num_prompts=4), gathered_alpha(6, 4)     # 1 / min(1, 3/4); 1 / min(1, 6/4)
(1.3333333333333333, 1.0)
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


def gathered_selection(degenerate_per_draw: Sequence[Sequence[bool]], num_groups: int) -> list[int]:
    """The original open-r1 trainer's kept groups on one process (``resample_count: gathered``).

    ``degenerate_per_draw`` holds, per draw, this process's groups' degenerate flags. Returned: indices
    into the groups of all draws concatenated: every group with a signal in draw order, then the
    degenerate groups of the last draw, the first ``num_groups`` of them. Raises ValueError when fewer
    than ``num_groups`` are available (the last draw alone has ``num_groups``, so it cannot happen when
    every draw has ``num_groups``).
    """
    offsets, flat = [], []
    for draw in degenerate_per_draw:
        offsets.append(len(flat))
        flat += list(draw)
    if not degenerate_per_draw:
        raise ValueError("no draws")
    last = range(offsets[-1], len(flat))
    chosen = [i for i, d in enumerate(flat) if not d] + [i for i in last if flat[i]]
    if len(chosen) < num_groups:
        raise ValueError(f"{len(chosen)} groups are available, {num_groups} are needed")
    return chosen[:num_groups]


def gathered_alpha(num_valid: int, num_prompts: int) -> float:
    """The original's AGE factor ``1 / inverse_alpha``, ``inverse_alpha = min(1, num_valid / num_prompts)``.

    ``num_valid`` counts every group with a signal drawn in the step over all processes (not capped at
    ``num_prompts``). With no group with a signal the original divides by zero; here alpha is 0 (no signal,
    as :func:`gpgrl.algorithms.group_advantages` reports it).
    """
    if num_prompts < 1:
        raise ValueError(f"num_prompts must be >= 1, got {num_prompts}")
    inverse = min(1.0, num_valid / num_prompts)
    return 1.0 / inverse if inverse > 0 else 0.0
