"""A step's metrics: rollout metrics from the gathered batch, the loss metrics' accumulator, timings.

Pure bookkeeping (numbers in, a flat dict of namespaced metrics out), so that the trainer only orders the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def rollout_metrics(lengths: torch.Tensor, truncated: torch.Tensor, rewards_per_fn: torch.Tensor,
                    reward_names: list[str], rewards: torch.Tensor, stats: dict[str, float]) -> dict[str, float]:
    """``adv/*`` (from :func:`gpgrl.algorithms.group_advantages`' stats), ``reward/*`` and ``rollout/*``.

    Args:
        lengths: [B] completion tokens per answer. truncated: [B] 1.0 where no EOS came in the budget.
        rewards_per_fn: [B, F] each reward function's values (NaN = unusable). reward_names: F names.
        rewards: [B] total rewards (NaN = unusable). stats: the advantage statistics of this batch.

    >>> m = rollout_metrics(torch.tensor([2., 4.]), torch.tensor([0., 1.]), torch.tensor([[1.], [float("nan")]]),
    ...                     ["acc"], torch.tensor([1., float("nan")]), {"alpha": 2.0, "reward_mean": 1.0, "reward_std": 0.0})
    >>> m["reward/acc"], m["reward/failures"], m["rollout/completion_length"], m["rollout/truncation_rate"], m["adv/alpha"]
    (1.0, 1.0, 3.0, 0.5, 2.0)
    """
    m = {f"adv/{k}": v for k, v in stats.items() if not k.startswith("reward_")}
    m["reward/mean"] = stats["reward_mean"]
    m["reward/std"] = stats["reward_std"]
    for j, name in enumerate(reward_names):
        col = rewards_per_fn[:, j]
        finite = col[~torch.isnan(col)]
        m[f"reward/{name}"] = float(finite.mean()) if finite.numel() else float("nan")
    m["reward/failures"] = float(torch.isnan(rewards).sum())
    m["rollout/completion_length"] = float(lengths.float().mean())
    m["rollout/completion_length_max"] = float(lengths.max())
    m["rollout/truncation_rate"] = float(truncated.float().mean())
    return m


class LossMeter:
    """One step's loss metrics, summed over its micro-batches (and iterations) and reduced over processes once.

    ``loss/total`` and ``loss/policy`` are sums (each piece's loss is already its share of the global loss),
    averaged over the iterations; every other metric of :func:`gpgrl.algorithms.policy_loss` (``kl``,
    ``clip_frac_*``, ...) and ``loss/entropy`` are averaged over the global batch's tokens.

    >>> meter = LossMeter()
    >>> meter.add(torch.tensor(0.5), {"num_tokens": 3.0, "pg_loss": 0.5, "kl": 0.1}, entropy_sum=3.0)
    >>> meter.add(torch.tensor(0.25), {"num_tokens": 1.0, "pg_loss": 0.25, "kl": 0.5}, entropy_sum=2.0)
    >>> {k: round(v, 6) for k, v in meter.result(lambda t: t, num_tokens=4, iterations=1).items()}
    {'loss/total': 0.75, 'loss/policy': 0.75, 'loss/kl': 0.2, 'loss/entropy': 1.25}
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.token_sums: dict[str, float] = {}  # token-weighted sums

    def add(self, loss: torch.Tensor, metrics: dict[str, float], *, entropy_sum: float) -> None:
        """One micro-batch: its loss, :func:`policy_loss`'s ``metrics`` (``num_tokens`` = this piece's) and the
        sum of its tokens' entropies."""
        m = dict(metrics)
        tokens = m.pop("num_tokens")
        self.sums["loss/total"] = self.sums.get("loss/total", 0.0) + float(loss.detach())
        self.sums["loss/policy"] = self.sums.get("loss/policy", 0.0) + m.pop("pg_loss")
        m["entropy"] = entropy_sum / max(tokens, 1.0)
        for key, value in {f"loss/{k}": v for k, v in m.items()}.items():
            self.token_sums[key] = self.token_sums.get(key, 0.0) + value * tokens

    def result(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor], *, num_tokens: int, iterations: int,
               device: torch.device | str = "cpu") -> dict[str, float]:
        """The metrics over every process: ``reduce_sum`` sums a tensor over them (``accelerator.reduce``);
        ``num_tokens`` are the global batch's completion tokens."""
        keys = sorted(self.sums) + sorted(self.token_sums)  # the same keys, in the same order, on every process
        local = torch.tensor([self.sums.get(k, self.token_sums.get(k)) for k in keys], dtype=torch.float64,
                             device=device)
        total = dict(zip(keys, reduce_sum(local).tolist()))
        out = {k: total[k] / iterations for k in self.sums}
        out.update({k: total[k] / max(num_tokens * iterations, 1) for k in self.token_sums})
        return out


class ImportanceMeter:
    """One step's importance-sampling statistics (:func:`gpgrl.algorithms.importance.importance_weights`),
    combined over its micro-batches and then over processes, as ``is/*`` metrics of the global batch.

    Sums add up and extremes take the max or min (:data:`~gpgrl.algorithms.importance.STAT_REDUCTIONS`),
    so a max over 8 processes is the max of the 8 batches, not a mean of their maxima.

    >>> meter = ImportanceMeter()
    >>> meter.add({"tokens": 2.0, "gap_tokens": 2.0, "gap_sum": 0.2, "gap_max": 0.15, "ratio_sum": 2.0,
    ...            "ratio_sq_sum": 2.02, "ratio_min": 0.9, "ratio_max": 1.1, "weight_sum": 2.0, "capped": 0.0,
    ...            "masked": 0.0, "outside": 0.0})
    >>> two = lambda t: torch.stack([t, t * torch.tensor([2.0] * 12)])   # a second process: every value doubled
    >>> m = meter.result(two)
    >>> round(m["is/logp_diff_abs"], 6), m["is/logp_gap_max"], m["is/ratio_max"], m["is/ratio_min"]
    (0.1, 0.3, 2.2, 0.9)
    """

    def __init__(self) -> None:
        self.parts: list[dict[str, float]] = []

    def add(self, stats: dict[str, float]) -> None:
        self.parts.append(stats)

    def result(self, gather: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str = "cpu") -> dict[str, float]:
        """The ``is/*`` metrics over every process: ``gather`` stacks a [K] tensor of each process into
        [processes, K] or concatenates it into [processes * K] (``accelerator.gather``)."""
        from gpgrl.algorithms.importance import STAT_REDUCTIONS, combine_stats, importance_metrics

        keys = list(STAT_REDUCTIONS)  # the same order on every process
        neutral = {"sum": 0.0, "max": -math.inf, "min": math.inf}
        local = combine_stats([{k: neutral[STAT_REDUCTIONS[k]] for k in keys}, *self.parts])
        rows = gather(torch.tensor([local[k] for k in keys], dtype=torch.float64, device=device)).reshape(-1, len(keys))
        return importance_metrics(combine_stats([dict(zip(keys, row.tolist())) for row in rows]))


def perf_metrics(rollout_seconds: float, reward_seconds: dict[str, float], step_seconds: float,
                 num_tokens: int) -> dict[str, float]:
    """``perf/*``: the step's time in generation (the rollout's time less the rewards'), in each reward
    function, in all, and the tokens per second.

    >>> perf_metrics(3.0, {"acc": 0.5, "fmt": 0.5}, 4.0, 100)
    {'perf/generation_seconds': 2.0, 'perf/reward_seconds': 1.0, 'perf/reward_seconds/acc': 0.5, 'perf/reward_seconds/fmt': 0.5, 'perf/step_seconds': 4.0, 'perf/tokens_per_s': 25.0}
    """
    rewards = sum(reward_seconds.values())
    m = {"perf/generation_seconds": rollout_seconds - rewards, "perf/reward_seconds": rewards}
    m.update({f"perf/reward_seconds/{name}": sec for name, sec in reward_seconds.items()})
    m["perf/step_seconds"] = step_seconds
    m["perf/tokens_per_s"] = num_tokens / max(step_seconds, 1e-9)
    return m


def slow_reward(reward_seconds: dict[str, float], step_seconds: float) -> str | None:
    """A warning when one reward function took over half of a step longer than a second, else None.

    >>> slow_reward({"acc": 0.1}, 2.0) is None, slow_reward({"acc": 1.5}, 2.0)[:24]
    (True, "reward 'acc' took 1.5 s ")
    """
    slowest = max(reward_seconds, key=reward_seconds.get, default=None)
    if slowest is None or reward_seconds[slowest] <= 0.5 * step_seconds or step_seconds <= 1.0:
        return None
    return (f"reward {slowest!r} took {reward_seconds[slowest]:.1f} s of this step's {step_seconds:.1f} s "
            f"(perf/reward_seconds/{slowest}); make it faster, or bound each call with its timeout (rewards: "
            "[{name: ..., timeout: SECONDS}])")
