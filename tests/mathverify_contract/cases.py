"""The contract's probes: completions of many shapes built around benchmark gold answers.

Each probe is ``{"id", "reward", "gold", "completion"}``; ``reward`` names the original function it is
scored with (``accuracy_lv35``: the Qwen2.5-Math-7B recipes; ``accuracy``: the original's open-r1 YAML with
``accuracy``; ``cosine``: the R1-Distill (open-rs) recipes, ``max_len`` 1000). The golds come from the
benchmark files under the shared data folder (``GPGRL_DATA``, see the README's "Tests"), a fixed spread of
each set, so the probes are the same on every machine. Completions are built around a gold ``G`` and a
wrong answer ``W`` (another gold of the same set) in the :data:`SHAPES`; :data:`TARGETED` adds probes aimed
at one rule each.
"""

from __future__ import annotations

import json
from pathlib import Path

#: shape -> completion template (``{G}`` the gold, ``{W}`` a wrong answer). What each one exercises is its name.
SHAPES: dict[str, str] = {
    "boxed_in_dollars": "Adding up the cases we get the total.\nSo the answer is $\\boxed{{{G}}}$.",
    "bare_box": "Hence the result is \\boxed{{{G}}}",
    "final_answer_unboxed": "Solving the system gives the value.\nThe final answer is ${G}$. I hope it is correct.",
    "answer_colon_unboxed": "Answer: ${G}$",
    "two_boxes_last_right": "First \\boxed{{{W}}}, finally \\boxed{{{G}}}.",
    "two_boxes_last_wrong": "I claimed \\boxed{{{G}}} at first, but after checking the answer is \\boxed{{{W}}}.",
    "boxes_joined_by_and": "\\boxed{{{W}}} and \\boxed{{{G}}}",
    "three_boxes": "Try \\boxed{{{W}}}, then \\boxed{{{W}}}, and at last \\boxed{{{G}}}.",
    "answer_tag_bare": "<think>\nWork it out.\n</think>\n<answer>{G}</answer>",
    "answer_tag_dollars": "<think>\nWork it out.\n</think>\n<answer>\n${G}$\n</answer>",
    "answer_tag_boxed": "<think>\nWork it out.\n</think>\n<answer>\n\\boxed{{{G}}}\n</answer>",
    "no_latex": "After simplifying, the answer is {G}",
    "unclosed_box": "Therefore \\boxed{{{G}",
    "unclosed_dollar": "The answer is ${G}",
    "wrong_boxed": "So the answer is $\\boxed{{{W}}}$.",
    "display_math": "We conclude\n\\[\n\\boxed{{{G}}}\n\\]",
}

#: (completion, gold) probes aimed at one rule each (scored with accuracy_lv35): 0.5.2's reading of LaTeX
#: where later releases changed it (percent, case, and / or, units, unary and binary plus-minus, "0,111",
#: gamma, chains of relations, assignments, sets, intervals, equations) and of the text around it.
TARGETED: list[tuple[str, str]] = [
    ("The answer is $\\boxed{50\\%}$", "50"),
    ("The answer is $\\boxed{50}$%", "50"),
    ("The answer is $\\boxed{0.5}$", "50\\%"),
    ("The answer is $\\boxed{\\text{evelyn}}$", "\\text{Evelyn}"),
    ("The answer is $\\boxed{X}$", "x"),
    ("The answer is $\\boxed{\\text{a,c}}$", "\\text{A,C}"),
    ("The answer is $\\boxed{x \\in [-2,7] \\text{ and } 15x - 80}$", "x \\in [-2,7]"),
    ("The answer is $\\boxed{3 \\text{ and } 5}$", "3, 5"),
    ("The answer is $\\boxed{5 \\text{ cm}}$", "5"),
    ("The answer is $\\boxed{5 cm}$", "5"),
    ("The answer is $\\boxed{\\pm 2}$", "2, -2"),
    ("The answer is $\\boxed{x=\\pm 2}$", "\\pm 2"),
    ("The answer is $\\boxed{3 \\pm 2\\sqrt{2}}$", "3 \\pm \\sqrt{8}"),
    ("The answer is $\\boxed{1 + \\sqrt{19}, 1 - \\sqrt{19}}$", "1 \\pm \\sqrt{19}"),
    ("The answer is $\\boxed{0,111}$", "111"),
    ("The answer is $\\boxed{0,5}$", "\\frac12"),
    ("The answer is $\\boxed{\\Gamma}$", "\\gamma"),
    ("The answer is $\\boxed{2\\gamma+1}$", "3"),
    ("The answer is $\\boxed{\\Gamma(3)}$", "2"),
    ("The answer is $\\boxed{y = y\\leq 4-x}$", "y\\leq 4-x"),
    ("The answer is $\\boxed{1 < x < 3 < y}$", "1 < x < 3 < y"),
    ("The answer is $\\boxed{-1 \\le x < 2}$", "[-1, 2)"),
    ("The answer is $\\boxed{x = 05\\!:\\!00}$", "05\\!:\\!00"),
    ("The answer is $\\boxed{6 + 9 i}$", "6+9i"),
    ("The answer is $\\boxed{x = 3}$", "3"),
    ("The answer is $\\boxed{3}$", "x = 3"),
    ("The answer is $\\boxed{a = b = 4}$", "4"),
    ("The answer is $\\boxed{(1, 2)}$", "(1,2)"),
    ("The answer is $\\boxed{\\{1, 2\\}}$", "2, 1"),
    ("The answer is $\\boxed{(2, 5]}$", "2 < x \\le 5"),
    ("The answer is $\\boxed{\\frac{1}{3}}$", "0.333333"),
    ("The answer is $\\boxed{0.3333}$", "\\frac13"),
    ("The answer is $\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}$", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("The answer is $\\boxed{e}$", "e"),
    ("The answer is $\\boxed{\\text{east}}$", "\\text{east}"),
    ("The final answer is $\\frac{1}{2}$ and $\\frac{1}{3}$", "\\frac12, \\frac13"),
    ("The answer is $\\frac{1}{2}$, and $\\frac{1}{3}$", "\\frac12, \\frac13"),
    ("Answer: \\frac{3}{4} percent", "\\frac{3}{4}\\%"),
    ("\\boxed{7} so \\boxed{9}", "9"),
    ("\\boxed{9}, \\boxed{9}", "9"),
    ("\\boxed {5}", "5"),
    ("\\fbox{5}", "5"),
]

#: benchmark file -> (field holding the gold, how many golds to take for accuracy_lv35)
SOURCES: dict[str, tuple[str, int]] = {
    "math500/test.jsonl": ("answer", 60),
    "simplelr_level3to5/train.jsonl": ("answer", 20),
    "aime24/test.jsonl": ("answer", 4),
    "amc23/test.jsonl": ("answer", 4),
    "gsm8k/test.jsonl": ("answer", 4),
    "olympiadbench/sample20.jsonl": ("final_answer", 4),
}
#: The other two original functions get the first golds of MATH-500, bare and written in dollars.
OTHER_REWARDS = {"accuracy": 10, "cosine": 10}


def _gold(record: dict, field: str) -> str | None:
    value = record.get(field)
    if field == "answer" and isinstance(value, str) and "####" in value:  # GSM8K: the text after ####
        value = value.split("####")[-1].strip()
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def spread(items: list, k: int) -> list:
    """k items evenly spread over a list (its first one included), in order."""
    if k >= len(items):
        return list(items)
    return [items[(i * len(items)) // k] for i in range(k)]


def golds(math_dir: Path) -> dict[str, list[str]]:
    """{benchmark file: its chosen golds} for the files that exist under ``math_dir``."""
    out = {}
    for name, (field, k) in SOURCES.items():
        path = math_dir / name
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            values = [g for g in (_gold(r, field) for r in rows) if g is not None]
            out[name] = spread(values, k)
    return out


def build(math_dir: Path) -> list[dict]:
    """Every probe: each chosen gold in each shape (``accuracy_lv35``), and a few golds of MATH-500 bare and
    in dollars in each shape for ``accuracy`` and ``cosine``."""
    cases = []
    for name, values in golds(math_dir).items():
        for i, gold in enumerate(values):
            wrong = values[(i + 1) % len(values)]
            if wrong == gold:
                wrong = gold + "+1"
            for shape, template in SHAPES.items():
                cases.append({"id": f"accuracy_lv35|{name}#{i}|{shape}", "reward": "accuracy_lv35", "gold": gold,
                              "completion": template.format(G=gold, W=wrong), "shape": shape, "source": name})
    for i, (completion, gold) in enumerate(TARGETED):
        cases.append({"id": f"accuracy_lv35|targeted#{i}", "reward": "accuracy_lv35", "gold": gold,
                      "completion": completion})
    math500 = golds(math_dir).get("math500/test.jsonl", [])
    for reward, k in OTHER_REWARDS.items():
        for i, bare in enumerate(math500[:k]):
            wrong = math500[i + 1]
            for gold in (bare, f"${bare}$"):
                for shape, template in SHAPES.items():
                    cases.append({"id": f"{reward}|math500#{i}{'$' if gold != bare else ''}|{shape}", "reward": reward,
                                  "gold": gold, "completion": template.format(G=bare, W=wrong), "shape": shape,
                                  "source": "math500/test.jsonl"})
    return cases


#: Probes where gpgrl's ``semantics: math_verify_0.5.2`` still differs from math-verify 0.5.2, each with its
#: cause: ``{"id", "reward", "gold", "completion", "original", "gpgrl", "cause"}``. The test requires exactly
#: these to differ, with these values, and docs/recipes.md to hold :func:`remaining_differences_table`.
KNOWN_DIFFERENCES: list[dict] = []


def known_difference_cases() -> list[dict]:
    """The probes of :data:`KNOWN_DIFFERENCES`, in the probe's format."""
    return [{k: d[k] for k in ("id", "reward", "gold", "completion")} for d in KNOWN_DIFFERENCES]


def gpgrl_values(probes: list[dict]) -> dict[str, float | None]:
    """gpgrl's rewards as the recipes configure them, per probe id: ``accuracy`` with
    ``semantics: math_verify_0.5.2`` (``boxed_gold: true`` for ``accuracy_lv35``, the 7B recipes; ``false``
    for the original's ``accuracy``), ``cosine`` with it and ``max_len: 1000`` (the RS1 recipe)."""
    from gpgrl.rewards import get_reward

    rewards = {
        "accuracy_lv35": get_reward("accuracy", semantics="math_verify_0.5.2", boxed_gold=True),
        "accuracy": get_reward("accuracy", semantics="math_verify_0.5.2", boxed_gold=False),
        "cosine": get_reward("cosine", semantics="math_verify_0.5.2", max_len=1000),
    }
    out: dict[str, float | None] = {}
    for kind, fn in rewards.items():
        mine = [p for p in probes if p["reward"] == kind]
        if mine:
            values = fn([p["completion"] for p in mine], answer=[p["gold"] for p in mine])
            out.update({p["id"]: v for p, v in zip(mine, values, strict=True)})
    return out


def remaining_differences_table(probes: list[dict], found: dict[str, tuple]) -> str:
    """The markdown table of docs/recipes.md: the differing probes counted by cause (the causes of
    :data:`KNOWN_DIFFERENCES`; a difference that is not listed there counts as "unexplained")."""
    cause = {d["id"]: d["cause"] for d in KNOWN_DIFFERENCES}
    counts: dict[str, int] = {}
    for probe_id in found:
        counts[cause.get(probe_id, "unexplained")] = counts.get(cause.get(probe_id, "unexplained"), 0) + 1
    per_reward = ", ".join(f"{sum(p['reward'] == r for p in probes):,} `{r}`" for r in ("accuracy_lv35", "accuracy", "cosine"))
    lines = [f"Probes: {len(probes):,} ({per_reward}); {len(found)} differ.", "",
             "| probes that differ | cause |", "|---|---|"]
    lines += [f"| {n} | {c} |" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if not counts:
        lines.append("| 0 | none: every probe agrees |")
    return "\n".join(lines)
