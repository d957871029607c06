"""Evaluation metrics from per-sample records: pass@1 over K samples, maj@K, pass@K, length, truncation.

A record is one sampled completion of one problem, a dict with at least ``benchmark``,
``problem_index``, ``sample_index``, ``correct`` (bool), ``extracted_answer`` (str or None),
``length`` (completion tokens) and ``truncated`` (bool). Definitions, for N problems with K samples:

* ``pass@1`` = (1/N) sum_i c_i / K, with c_i the correct samples of problem i: the expected accuracy of
  one sample, averaged over K samples to lower its variance (DeepSeek-R1's "pass@1 over k samples").
* ``maj@K`` = share of problems whose most frequent extracted answer (normalised string, see
  :func:`vote_key`; samples with no answer do not vote; ties go to the answer seen first) is
  graded correct.
* ``pass@K`` (K > 1) = share of problems with at least one correct sample (the unbiased estimator of
  Chen et al. 2021, ``1 - C(K-c, k)/C(K, k)``, at k = K).

>>> pass_at_1([[True, False], [False, False], [True, True]])
0.5
>>> majority_correct(["12", "12.0", "7", None], [True, True, False, False])
True
>>> maj_at_k([(["3", "4", "4"], [True, False, False]), (["5", "5", "6"], [True, True, False])])
0.5
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# --- answers -----------------------------------------------------------------------------------------


def extract_final_answer(text: str) -> str | None:
    """The answer a completion commits to (for the audit rows and majority voting): the grader's extraction.

    The last ``\\boxed{...}`` (braces balanced), else the last ``<answer>...</answer>`` block, else the
    last number; None when there is none (:func:`gpgrl.rewards.math_grader.extract_answer`).

    >>> extract_final_answer(r"so \\boxed{\\frac{1}{2}}."), extract_final_answer("<answer> 4 </answer>")
    ('\\\\frac{1}{2}', '4')
    """
    from gpgrl.rewards.math_grader import extract_answer

    return extract_answer(text)


def vote_key(answer: str | None) -> str | None:
    """The string under which an extracted answer votes in maj@K: trivially different spellings agree.

    The grader's LaTeX clean-up (:func:`gpgrl.rewards.math_grader.normalize_answer`: ``$``,
    ``\\dfrac``, ``\\left``, spacing, ``\\text{}`` units, degrees, thousands commas), then no spaces,
    and plain numbers written canonically (``27.0`` -> ``27``, ``0.50`` -> ``0.5``). It is not a maths
    equivalence check (``1/2`` and ``0.5`` vote apart); correctness comes from the grader.

    >>> vote_key(r"$\\dfrac{1}{2}$"), vote_key(" 27.0 "), vote_key("1,000."), vote_key("  ")
    ('\\\\frac{1}{2}', '27', '1000', None)
    >>> vote_key(r"\\left( 3, \\frac{\\pi}{2} \\right)")
    '(3,\\\\frac{\\\\pi}{2})'
    """
    if answer is None:
        return None
    from gpgrl.rewards.math_grader import normalize_answer

    s = re.sub(r"\s+", "", normalize_answer(answer))
    if not s:
        return None
    try:
        value = float(s)
    except ValueError:
        return s
    if not math.isfinite(value):
        return s
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


# --- pure metric functions -----------------------------------------------------------------------------


def pass_at_1(correct_by_problem: Sequence[Sequence[bool]]) -> float:
    """Mean over problems of the share of correct samples (0.0 for no problems).

    >>> pass_at_1([[True, True, False, False]]), pass_at_1([])
    (0.5, 0.0)
    """
    if not correct_by_problem:
        return 0.0
    return sum(sum(c) / len(c) for c in correct_by_problem) / len(correct_by_problem)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct out of ``n`` samples (Chen et al. 2021, eq. 1).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2), round(pass_at_k(4, 2, 2), 4)
    (0.25, 1.0, 0.0, 0.8333)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_answer(
    answers: Sequence[str | None], key: Callable[[str | None], str | None] = vote_key
) -> int | None:
    """Index of a representative sample of the most frequent answer (first seen wins ties); None if none.

    >>> majority_answer(["4", "3", "3.0", "4"]), majority_answer([None, None])
    (0, None)
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        k = key(a)
        if not k:
            continue
        counts[k] = counts.get(k, 0) + 1
        first.setdefault(k, i)
    if not counts:
        return None
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return first[best]


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether the majority answer of one problem's samples is correct (its first sample's grade)."""
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} grades")
    idx = majority_answer(answers)
    return bool(correct[idx]) if idx is not None else False


def maj_at_k(problems: Sequence[tuple[Sequence[str | None], Sequence[bool]]]) -> float:
    """Share of problems (each ``(answers, correct)``) whose majority answer is correct."""
    if not problems:
        return 0.0
    return sum(majority_correct(a, c) for a, c in problems) / len(problems)


# --- grounding (LISA): a sample's (intersection, union) is gpgrl.rewards.boxes.box_overlap ------------

def grounding_ious(pairs: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """``(gIoU, cIoU)`` of ``(intersection, union)`` pairs, one per sample: the mean of intersection / union
    (0 where the union is empty) and sum of intersections / sum of unions (0.0 for no samples).

    >>> grounding_ious([(50.0, 100.0), (0.0, 100.0)])  # IoUs 0.5 and 0.0
    (0.25, 0.25)
    >>> grounding_ious([(90.0, 100.0), (1.0, 10.0)])  # gIoU (0.9 + 0.1) / 2, cIoU 91 / 110
    (0.5, 0.8272727272727273)
    """
    pairs = list(pairs)
    if not pairs:
        return 0.0, 0.0
    giou = sum(i / u if u > 0 else 0.0 for i, u in pairs) / len(pairs)
    total_union = sum(u for _, u in pairs)
    return giou, (sum(i for i, _ in pairs) / total_union if total_union > 0 else 0.0)


# --- from records -------------------------------------------------------------------------------------


def group_records(records: Iterable[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    """``{benchmark: [samples of problem 0, samples of problem 1, ...]}``, each sorted by sample index."""
    by_bench: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], {}).setdefault(int(r["problem_index"]), []).append(r)
    return {
        bench: [sorted(problems[i], key=lambda r: int(r["sample_index"])) for i in sorted(problems)]
        for bench, problems in by_bench.items()
    }


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-benchmark numbers: problems, samples (K), pass@1, maj@K, pass@K (K > 1), length, truncation.

    Records of multi-turn episodes (with ``turns`` and ``tool_calls``) add ``turns``, ``tool_calls``,
    ``tool_errors`` (per episode) and ``used_tools`` (the share of episodes that called a tool).
    Records with ``intersection`` and ``union`` (grounding) add ``gIoU`` and ``cIoU``
    (:func:`grounding_ious`, over every sample); records with a ``category`` add
    ``pass@1/<category>`` for each.
    """
    out: dict[str, dict[str, float]] = {}
    for bench, problems in group_records(records).items():
        k = max(len(p) for p in problems)
        flat = [r for p in problems for r in p]
        correct = [[bool(r["correct"]) for r in p] for p in problems]
        row: dict[str, float] = {
            "problems": len(problems),
            "samples": k,
            "pass@1": pass_at_1(correct),
            f"maj@{k}": maj_at_k(
                [([r["extracted_answer"] for r in p], c) for p, c in zip(problems, correct, strict=True)]
            ),
        }
        if k > 1:
            row[f"pass@{k}"] = sum(pass_at_k(len(c), sum(c), len(c)) for c in correct) / len(correct)
        row["mean_length"] = sum(float(r["length"]) for r in flat) / len(flat)
        row["truncation_rate"] = sum(bool(r["truncated"]) for r in flat) / len(flat)
        if all("tool_calls" in r for r in flat):  # multi-turn episodes: tool use per episode
            row["turns"] = sum(float(r["turns"]) for r in flat) / len(flat)
            row["tool_calls"] = sum(float(r["tool_calls"]) for r in flat) / len(flat)
            row["tool_errors"] = sum(float(r["tool_errors"]) for r in flat) / len(flat)
            row["used_tools"] = sum(r["tool_calls"] > 0 for r in flat) / len(flat)
        if all("intersection" in r and "union" in r for r in flat):  # grounding (LISA): gIoU and cIoU
            row["gIoU"], row["cIoU"] = grounding_ious((float(r["intersection"]), float(r["union"])) for r in flat)
        categories = sorted({str(r["category"]) for r in flat if r.get("category") is not None})
        for cat in categories:  # e.g. CV-Bench's tasks: pass@1 over that task's problems
            mine = [c for p, c in zip(problems, correct, strict=True) if str(p[0].get("category")) == cat]
            row[f"pass@1/{cat}"] = pass_at_1(mine)
        out[bench] = row
    return out


def compute_metrics(records: Iterable[dict[str, Any]], prefix: str = "eval") -> dict[str, float]:
    """Flat metrics ``{prefix}/<bench>/<name>`` plus ``{prefix}/avg/<name>`` (unweighted mean over benchmarks).

    >>> recs = [dict(benchmark="b", problem_index=p, sample_index=s, correct=(p == 0), extracted_answer="1",
    ...              length=10, truncated=(s == 1)) for p in range(2) for s in range(2)]
    >>> m = compute_metrics(recs)
    >>> m["eval/b/pass@1"], m["eval/b/maj@2"], m["eval/b/pass@2"], m["eval/b/truncation_rate"], m["eval/avg/pass@1"]
    (0.5, 0.5, 0.5, 0.5, 0.5)
    """
    summary = summarize(records)
    metrics: dict[str, float] = {}
    for bench, row in summary.items():
        for name, value in row.items():
            if name not in ("problems", "samples"):
                metrics[f"{prefix}/{bench}/{name}"] = float(value)
    if summary:
        names = [n for n in next(iter(summary.values())) if n not in ("problems", "samples")]
        for name in names:
            values = [row[name] for row in summary.values() if name in row]
            if len(values) == len(summary):
                metrics[f"{prefix}/avg/{name}"] = sum(values) / len(values)
    return metrics
