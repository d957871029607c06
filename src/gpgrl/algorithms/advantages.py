"""Group advantages and Accurate Gradient Estimation (AGE), as pure tensor functions.

Shapes: B = number of samples in the (global) batch = num_prompts * G, G = group size.
Rewards are ordered group by group: ``rewards[g * G : (g + 1) * G]`` are the G answers to prompt g.

The GPG advantage (paper eq. 7 and 9)::

    A_i = alpha * (r_i - mean(r_group)) / F_norm
    alpha = B / (B - M)        M = number of samples in groups whose rewards are all equal

Rules this module guarantees (each one tested against hand-computed numbers):

* A group is *degenerate* when all its rewards are exactly equal (``==``), never ``std < eps``: float
  noise must not decide whether a group carries a signal. Degenerate groups get advantages of exactly
  0.0 (not ``r - mean``, which can be 1e-17 when the mean of equal floats rounds).
* NaN rewards mean "this reward could not be computed". A NaN sample is left out of its group: it does
  not enter the group's mean or std, and its advantage is 0. A group with fewer than two finite rewards
  is degenerate. NaN samples count in M (they carry no signal), so alpha = B / (number of samples that
  carry a gradient signal).
* If no sample carries a signal (B - M = 0) the advantages are all zero, ``alpha`` is reported as 0.0
  and ``no_signal`` as 1.0: nothing divides by zero, and the trainer skips the update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

STD_EPS = 1e-4  # added to the std, as the original GPG / open-r1 code does


def _no_scale(r: torch.Tensor, finite: torch.Tensor, mean: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """F_norm = 1 (GPG, Dr. GRPO)."""
    return torch.tensor(1.0, dtype=torch.float64)


def _group_std(r: torch.Tensor, finite: torch.Tensor, mean: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """F_norm = each group's unbiased std over its finite rewards + 1e-4 (GRPO, DAPO): [num_groups, 1]."""
    r0 = torch.where(finite, r, torch.zeros_like(r))
    var = ((r0 - mean) ** 2 * finite).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
    return var.sqrt() + STD_EPS


def _batch_std(r: torch.Tensor, finite: torch.Tensor, mean: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """F_norm = the whole batch's unbiased std over its finite rewards + 1e-4 (a scalar)."""
    return r[finite].std(unbiased=True) + STD_EPS if finite.sum() > 1 else torch.tensor(1.0 + STD_EPS)


Scale = Literal["none", "group", "batch"]
#: F_norm by name (the ``scale`` setting). Each takes the grouped rewards ``r`` [num_groups, G] (float64, NaN
#: where a reward could not be computed), their ``finite`` mask, each group's ``mean`` and finite ``count``
#: ([num_groups, 1]), and returns F_norm, broadcastable to ``r``. ``Scale`` names the same keys
#: (tests/test_presets.py checks that they agree).
F_NORMS: dict[str, Callable[..., torch.Tensor]] = {"none": _no_scale, "group": _group_std, "batch": _batch_std}
SCALES: tuple[str, ...] = tuple(F_NORMS)


def _check_rewards(rewards: torch.Tensor, group_size: int) -> None:
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError(f"rewards must be a 1-D tensor [B], got {getattr(rewards, 'shape', type(rewards))}")
    if not rewards.is_floating_point():
        raise TypeError(f"rewards must be a float tensor, got dtype {rewards.dtype}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.numel() == 0 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"rewards has {rewards.numel()} entries, which is not a positive multiple of group_size="
            f"{group_size}; pass the rewards of whole groups, ordered group by group"
        )


def degenerate_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Boolean mask [num_groups]: True where a group carries no signal.

    A group is degenerate when its finite rewards are all exactly equal, or when fewer than two of its
    rewards are finite (NaN means "could not be computed").

    >>> r = torch.tensor([1., 1.,   1., 0.,   0., 0.5,   0., float("nan")])
    >>> degenerate_groups(r, 2).tolist()    # equal; mixed; mixed; one finite reward only
    [True, False, False, True]
    """
    _check_rewards(rewards, group_size)
    grouped = rewards.view(-1, group_size)  # [num_groups, G]
    finite = ~torch.isnan(grouped)
    big = torch.finfo(rewards.dtype).max
    # Exact comparison: max == min over finite members, computed without any subtraction.
    gmax = torch.where(finite, grouped, torch.full_like(grouped, -big)).amax(dim=1)
    gmin = torch.where(finite, grouped, torch.full_like(grouped, big)).amin(dim=1)
    return (gmax == gmin) | (finite.sum(dim=1) < 2)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    scale: Scale = "none",
    age: bool = True,
    alpha: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GPG advantages ``alpha * (r - group_mean) / F_norm`` and batch statistics.

    Args:
        rewards: float tensor [B], ordered group by group (B = num_prompts * group_size). NaN marks a
            reward that could not be computed (see the module docstring for the rule).
        group_size: G, the number of answers sampled per prompt.
        scale: F_norm. ``"none"``: 1 (GPG, Dr. GRPO). ``"group"``: the group's unbiased std + 1e-4
            (GRPO, DAPO). ``"batch"``: the whole batch's unbiased std + 1e-4.
        age: Accurate Gradient Estimation (GPG paper, eq. 9): multiply by alpha = B / (B - M),
            M = samples in degenerate groups. ``False``: alpha = 1.
        alpha: with ``age``, this factor instead of ``B / (B - M)`` (the original open-r1 trainer's
            ``1 / inverse_alpha``, see :func:`gpgrl.algorithms.resampling.gathered_alpha`).

    Returns:
        ``(advantages [B], stats)``; ``stats`` holds ``alpha``, ``num_samples``, ``num_valid_samples``,
        ``num_groups``, ``num_degenerate_groups``, ``frac_degenerate_groups``, ``num_all_correct_groups``,
        ``num_all_wrong_groups``, ``num_nan_rewards``, ``no_signal``, ``reward_mean``, ``reward_std``.
        "All correct" / "all wrong" are degenerate groups at the batch's highest / lowest reward; when
        the whole batch has one value, a group counts as all correct if that value is > 0, else all wrong.

    Two groups of G = 4; the second is all wrong, so M = 4, B = 8 and alpha = 8 / (8 - 4) = 2:

    >>> r = torch.tensor([1., 0., 0., 0.,   0., 0., 0., 0.])
    >>> adv, stats = group_advantages(r, group_size=4)
    >>> adv.tolist()                 # 2 * (r - 0.25) in group 1, exact zeros in group 2
    [1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    >>> stats["alpha"], stats["num_degenerate_groups"], stats["num_all_wrong_groups"]
    (2.0, 1.0, 1.0)
    >>> group_advantages(r, group_size=4, age=False)[0].tolist()
    [0.75, -0.25, -0.25, -0.25, 0.0, 0.0, 0.0, 0.0]
    >>> group_advantages(r, group_size=4, alpha=4.0)[0].tolist()   # an alpha counted elsewhere
    [3.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0]
    """
    _check_rewards(rewards, group_size)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")

    B = rewards.numel()
    r = rewards.detach().to(torch.float64).view(-1, group_size)  # [num_groups, G]; float64 for exact stats
    finite = ~torch.isnan(r)
    r0 = torch.where(finite, r, torch.zeros_like(r))  # NaN -> 0, masked out below
    count = finite.sum(dim=1, keepdim=True)  # [num_groups, 1]
    mean = r0.sum(dim=1, keepdim=True) / count.clamp(min=1)  # [num_groups, 1]

    degenerate = degenerate_groups(rewards, group_size)  # [num_groups]
    carries_signal = finite & ~degenerate.unsqueeze(1)  # [num_groups, G]

    f_norm = F_NORMS[scale](r, finite, mean, count)  # [num_groups, 1] or a scalar

    num_valid = int(carries_signal.sum())
    M = B - num_valid  # samples in degenerate groups, plus NaN samples
    if num_valid == 0:
        alpha = 0.0
    else:
        alpha = (B / (B - M) if alpha is None else float(alpha)) if age else 1.0  # AGE, paper eq. 9

    adv = torch.where(carries_signal, (r0 - mean) / f_norm, torch.zeros_like(r0)) * alpha
    advantages = adv.view(-1).to(rewards.dtype)

    # Degenerate groups at the batch's top / bottom reward ("all correct" / "all wrong").
    finite_all = rewards.detach()[~torch.isnan(rewards)]
    # Value of a degenerate group: max over its finite rewards. NaN must be filled with -inf, not 0, or a
    # group like [-1, nan, -1] would read as 0 (the batch's top) and count as "all correct".
    group_value = torch.where(finite, r, torch.full_like(r, -torch.inf)).amax(dim=1)
    all_correct = all_wrong = 0
    if finite_all.numel() > 0:
        top, bottom = float(finite_all.max()), float(finite_all.min())
        for g in torch.nonzero(degenerate).flatten().tolist():
            if count[g, 0] == 0:
                continue  # every reward failed: neither correct nor wrong
            v = float(group_value[g])
            if top == bottom:
                all_correct += v > 0
                all_wrong += v <= 0
            else:
                all_correct += v == top
                all_wrong += v == bottom

    num_groups = B // group_size
    stats = {
        "alpha": float(alpha),
        "num_samples": float(B),
        "num_valid_samples": float(num_valid),
        "num_groups": float(num_groups),
        "num_degenerate_groups": float(degenerate.sum()),
        "frac_degenerate_groups": float(degenerate.sum()) / num_groups,
        "num_all_correct_groups": float(all_correct),
        "num_all_wrong_groups": float(all_wrong),
        "num_nan_rewards": float((~finite).sum()),
        "no_signal": float(num_valid == 0),
        "reward_mean": float(finite_all.double().mean()) if finite_all.numel() else float("nan"),
        "reward_std": float(finite_all.double().std()) if finite_all.numel() > 1 else 0.0,
    }
    return advantages, stats
