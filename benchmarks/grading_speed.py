"""Grading speed: how many model predictions per second :func:`gpgrl.rewards.grade_answer` grades.

Builds 10,000 MATH-500-style predictions from the MATH-500 gold answers (20 per problem, like a
rollout group), a deterministic mix of

* ``correct_boxed``   - the gold answer boxed at the end of some reasoning text,
* ``correct_variant`` - an equivalent form (``\\dfrac``, ``$...$``, ``x = ...``, trailing ``.0``, ...),
* ``wrong_boxed``     - another problem's gold answer, boxed,
* ``messy``           - ``<answer>`` tags without a box, a last-number fallback, a truncated box,
  or long repetitive text (10-30 KB),

grades each against its gold (5 s hard limit per answer) and prints a table of predictions per second,
overall and per kind, and the share decided in the calling process without sympy (the rest go to the
killable grading worker process). ``--threaded`` grades from a non-main thread (the same path; kept
to show it). ``--write`` saves the table to ``benchmarks/results/grading_speed.md``.

Usage::

    .venv/bin/python benchmarks/grading_speed.py                 # 10,000 predictions, print the table
    .venv/bin/python benchmarks/grading_speed.py --write         # ... and write the results file
    .venv/bin/python benchmarks/grading_speed.py -n 1000 --threaded

The data comes from ``math/math500/test.jsonl`` in the benchmark data folder (``$GPGRL_DATA``, else
``../shared/data``; ``--data`` to point elsewhere).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from gpgrl.paths import data_dir
from gpgrl.rewards import grade_answer

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine

REPO = Path(__file__).resolve().parents[1]
#: MATH-500 in the benchmark data folder (gpgrl.paths.data_dir: $GPGRL_DATA, else ../shared/data)
DEFAULT_DATA = (data_dir() or REPO.parent / "shared" / "data") / "math" / "math500" / "test.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "grading_speed.md"
REASONING = "Let me work through this carefully. First, we set up the equation and simplify. "


def variant(gold: str, rng: random.Random) -> str:
    """An equivalent way a model might write ``gold``."""
    options = [f"${gold}$", gold.replace("\\frac", "\\dfrac"), f"x = {gold}" if "=" not in gold else gold]
    if re.fullmatch(r"-?\d+", gold):
        options += [f"{gold}.0", f"{int(gold):,}"]
    return rng.choice(options)


def build_predictions(golds: list[str], n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, prediction, gold) triples, deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        i = k % len(golds)
        gold = golds[i]
        other = golds[(i + 1 + rng.randrange(len(golds) - 1)) % len(golds)]
        kind = rng.choice(["correct_boxed", "correct_variant", "wrong_boxed", "messy"])
        prefix = REASONING * rng.randint(1, 8)
        if kind == "correct_boxed":
            pred = f"{prefix}So the answer is \\boxed{{{gold}}}."
        elif kind == "correct_variant":
            pred = f"{prefix}Therefore the final answer is \\boxed{{{variant(gold, rng)}}}."
        elif kind == "wrong_boxed":
            pred = f"{prefix}So the answer is \\boxed{{{other}}}."
        else:
            style = rng.randrange(4)
            if style == 0:
                pred = f"<think>\n{prefix}\n</think>\n<answer>\n{rng.choice([gold, other])}\n</answer>"
            elif style == 1:
                pred = f"{prefix}We get {rng.randint(0, 2000)} in the end"
            elif style == 2:
                pred = f"{prefix}So the answer is \\boxed{{{gold}"  # truncated: no balanced box
            else:
                pred = (REASONING * rng.randint(120, 380)) + f"\\boxed{{{rng.choice([gold, other])}}}"
        out.append((kind, pred, gold))
    return out


def run(predictions: list[tuple[str, str, str]], timeout: float) -> dict[str, list[float]]:
    """Grade every prediction; per kind, the list of seconds each took."""
    times: dict[str, list[float]] = defaultdict(list)
    for kind, pred, gold in predictions:
        start = time.perf_counter()
        grade_answer(pred, gold, timeout=timeout)
        times[kind].append(time.perf_counter() - start)
    return times


def table(times: dict[str, list[float]]) -> str:
    rows = [
        "| kind | predictions | total s | predictions / s | mean ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    all_times = [t for ts in times.values() for t in ts]
    for kind in [*sorted(times), "all"]:
        ts = all_times if kind == "all" else times[kind]
        total = sum(ts)
        name = "**all**" if kind == "all" else kind
        rows.append(
            f"| {name} | {len(ts):,} | {total:.1f} | {len(ts) / total:,.0f} | {1000 * total / len(ts):.2f} "
            f"| {1000 * max(ts):.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="number of predictions")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MATH-500 test.jsonl")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-answer limit, seconds")
    parser.add_argument("--threaded", action="store_true", help="grade from a non-main thread (worker path)")
    parser.add_argument(
        "--write", action="store_true", help=f"write the table to {RESULTS.relative_to(REPO)}"
    )
    args = parser.parse_args()

    if not args.data.exists():
        sys.exit(f"MATH-500 not found at {args.data}; pass --data")
    golds = [json.loads(line)["answer"] for line in args.data.open()]
    predictions = build_predictions(golds, args.n)

    start = time.perf_counter()
    if args.threaded:
        box: dict[str, dict[str, list[float]]] = {}
        grade_answer("\\boxed{1}", "1", timeout=args.timeout)  # start the worker outside the timing
        thread = threading.Thread(target=lambda: box.setdefault("t", run(predictions, args.timeout)))
        thread.start()
        thread.join()
        times = box["t"]
    else:
        times = run(predictions, args.timeout)
    wall = time.perf_counter() - start

    from gpgrl.rewards.math_grader import _extract, _gold_to_str, _grade_without_sympy

    extracted = [(_extract(pred), gold) for _, pred, gold in predictions]
    in_process = sum(ans is None or _grade_without_sympy(ans, source, _gold_to_str(gold)) is not None
                     for (ans, source), gold in extracted)
    n = len(predictions)
    command = "benchmarks/grading_speed.py" + (f" -n {args.n}" if args.n != 10_000 else "")
    command += " --threaded" if args.threaded else ""
    summary = (
        f"**{n / wall:,.0f} predictions / s** ({n:,} predictions in {wall:.1f} s, "
        f"{'from a worker thread' if args.threaded else 'from the main thread'}, hard limit {args.timeout:g} s "
        f"per answer; {in_process / n:.0%} decided in process without sympy, the rest in the grading worker)"
    )
    text = (
        "# Grading speed\n\n"
        f"Command: `.venv/bin/python {command}`\n\n"
        f"Machine: {machine()}\n\n"
        f"{summary}\n\n{table(times)}\n"
    )
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
