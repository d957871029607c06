"""Seed statistics shared by the benchmark comparisons (``compare_presets.py``, ``real_model.py``): a method's
spread over seeds, the seed-by-seed difference of two methods, and a curve read at a budget."""

from __future__ import annotations

import itertools
from typing import Any


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1; 0 for one value), min and max of ``values`` (NaN dropped).

    >>> spread([0.1, 0.2, 0.3])["std"]
    0.1
    """
    v = [x for x in values if x == x]
    if not v:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    m = sum(v) / len(v)
    var = sum((x - m) ** 2 for x in v) / (len(v) - 1) if len(v) > 1 else 0.0
    return {"n": len(v), "mean": m, "std": round(var**0.5, 12), "min": min(v), "max": max(v)}


def paired_difference(a: list[float], b: list[float]) -> dict[str, Any]:
    """``a - b`` seed by seed (``a[i]`` and ``b[i]`` from the same seed / warm start).

    Returns the per-seed differences, their mean, std, min and max, how many seeds ``a`` is above / below
    ``b``, and ``beyond_spread``: whether the difference of the means is larger than the seed spread of
    either method (the larger of the two standard deviations across seeds), i.e. whether the gap is
    bigger than how much one method moves from seed to seed. With one seed there is no spread: False.

    >>> d = paired_difference([0.5, 0.7], [0.2, 0.3]); d["mean"], d["above"], d["beyond_spread"]
    (0.35, 2, True)
    """
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs one value per seed for both: {len(a)} vs {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    d = spread(diffs)
    sa, sb = spread(a), spread(b)
    noise = max(sa["std"], sb["std"])
    gap = sa["mean"] - sb["mean"]
    return {"diffs": diffs, "mean": round(d["mean"], 12), "std": d["std"], "min": d["min"], "max": d["max"],
            "above": sum(x > 0 for x in diffs), "below": sum(x < 0 for x in diffs),
            "seed_spread": noise, "beyond_spread": len(a) > 1 and abs(gap) > noise}


def value_at_budget(points: list[tuple[float, float]], budget: float) -> float:
    """``points`` (x = e.g. answers sampled so far, y = accuracy there) read at x = ``budget``: linearly
    interpolated between the two points around it; the last point's y when the budget is past it; NaN when
    the budget comes before the first point.

    >>> value_at_budget([(0, 0.1), (256, 0.2), (768, 0.4)], 512)
    0.3
    """
    pts = sorted(points)
    if not pts or budget < pts[0][0]:
        return float("nan")
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= budget <= x1:
            return y0 if x1 == x0 else round(y0 + (y1 - y0) * (budget - x0) / (x1 - x0), 12)
    return pts[-1][1]


def average(runs: list[dict[str, Any]], key: str) -> float:
    """The mean of ``key`` over ``runs`` (one summary dict per seed).

    >>> average([{"steps": 10}, {"steps": 14}], "steps")
    12.0
    """
    return sum(r[key] for r in runs) / len(runs)
