r"""Tests of :func:`gpgrl.rewards.grade_answer`: benchmark gold answers, a table of equivalences, safety.

The benchmark files live outside the repository in ``../shared/data`` (see its README); tests that
need them are skipped when that folder is absent.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.rewards import answers_equivalent, extract_answer, grade_answer, normalize_answer
from gpgrl.rewards._deadline import GradingTimeout, GradingWorker, deadline
from gpgrl.rewards.math_grader import MAX_ANSWER_CHARS, _last_boxed

DATA = SHARED_DATA / "math"


def _load(relative: str) -> list[dict]:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{DATA_MISSING} at {path}")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _amc_gold(value: float) -> str:
    # AMC23 golds are JSON floats, all whole numbers: a model would write 27, not 27.0.
    assert float(value).is_integer()
    return str(int(value))


def _golds(bench: str) -> list[str]:
    if bench == "math500":
        return [r["answer"] for r in _load("math500/test.jsonl")]
    if bench == "aime24":
        return [r["answer"] for r in _load("aime24/test.jsonl")]
    if bench == "amc23":
        return [_amc_gold(r["answer"]) for r in _load("amc23/test.jsonl")]
    if bench == "gsm8k":
        return [r["answer"].split("####")[-1].strip() for r in _load("gsm8k/test.jsonl")]
    if bench == "minerva":
        golds = []
        for r in _load("minerva_math/sample20.jsonl"):
            assert r["solution"].count("\\boxed") == 1
            golds.append(_last_boxed(r["solution"]))
        return golds
    if bench == "olympiadbench":
        return [r["final_answer"][0] for r in _load("olympiadbench/sample20.jsonl")]
    raise KeyError(bench)


BENCH_SIZES = {"math500": 500, "aime24": 30, "amc23": 40, "gsm8k": 1319, "minerva": 20, "olympiadbench": 20}

# Records whose own gold answer, boxed, is NOT graded correct. Every record of every benchmark passes,
# so these sets are empty; a record added here must carry a comment saying why it cannot be graded.
UNGRADABLE: dict[str, set[int]] = {bench: set() for bench in BENCH_SIZES}

# (bench, i) where record i's gold and the next gold that differs from it as a string are truly equal,
# so the "another record's gold is graded wrong" check expects True there.
TRULY_EQUAL_NEIGHBOURS = {
    ("math500", 22),  # gold "5"; the next differing gold is "x=5", the same value.
}


def _as_model_output(gold: str) -> str:
    return "Let me think step by step. ... so the answer is \\boxed{" + gold + "}"


def _next_different(golds: list[str], i: int) -> int:
    j = (i + 1) % len(golds)
    while golds[j] == golds[i]:
        j = (j + 1) % len(golds)
    return j


def _check_bench(bench: str, indices: list[int] | None = None) -> None:
    golds = _golds(bench)
    assert len(golds) == BENCH_SIZES[bench]
    wrong_self, wrong_other = [], []
    for i in range(len(golds)) if indices is None else indices:
        gold = golds[i]
        if grade_answer(_as_model_output(gold), gold) != (i not in UNGRADABLE[bench]):
            wrong_self.append((i, gold))
        other = golds[_next_different(golds, i)]
        if grade_answer(_as_model_output(other), gold) != ((bench, i) in TRULY_EQUAL_NEIGHBOURS):
            wrong_other.append((i, gold, other))
    assert wrong_self == [], f"own gold not graded correct: {wrong_self}"
    assert wrong_other == [], f"another record's gold graded correct: {wrong_other}"


@pytest.mark.parametrize("bench", list(BENCH_SIZES))
def test_every_benchmark_gold_grades_itself_and_not_its_neighbour(bench: str) -> None:
    # Every record (about 1,900 x 2 gradings, ~10 s on 2 CPU cores), so no slow marker is needed.
    _check_bench(bench)


def test_benchmark_golds_written_differently_by_a_model() -> None:
    aime = [r["answer"] for r in _load("aime24/test.jsonl")]
    padded = [g for g in aime if g.startswith("0")]
    assert len(padded) == 7
    for g in padded:
        assert grade_answer(f"\\boxed{{{int(g)}}}", g), g
        assert not grade_answer(f"\\boxed{{{int(g) + 1}}}", g), g
    amc = [r["answer"] for r in _load("amc23/test.jsonl")]
    for value in amc:
        assert grade_answer(f"\\boxed{{{value}}}", value), value  # "27.0" vs the float 27.0
        assert grade_answer(f"\\boxed{{{int(value)}}}", str(value)), value  # "27" vs "27.0"
    gsm = [r["answer"].split("####")[-1].strip() for r in _load("gsm8k/test.jsonl")]
    with_commas = [g for g in gsm if "," in g]
    assert len(with_commas) == 14
    for g in with_commas:
        plain = g.replace(",", "")
        assert grade_answer(f"So the total is {plain} dollars.", g), g  # last-number fallback
        assert grade_answer(f"So the total is ${g}.", plain), g
    assert grade_answer("\\boxed{4.5 \\times 10^{33}}", "4.5e33") and "4.5e33" in _golds("minerva")
    olympiad = _golds("olympiadbench")
    assert grade_answer("\\boxed{84, 69}", "$69$,$84$") and "$69$,$84$" in olympiad
    assert (
        grade_answer("\\boxed{\\frac{1}{2(n+1)}}", "$\\frac{1}{2 n+2}$") and "$\\frac{1}{2 n+2}$" in olympiad
    )


# (answer as the model boxes it, gold, expected)
EQUIVALENCE_CASES = [
    # fractions
    (r"\frac{1}{2}", r"\frac{1}{2}", True),
    (r"\dfrac{1}{2}", r"\frac{1}{2}", True),
    (r"\tfrac{1}{2}", r"\frac{1}{2}", True),
    (r"\frac12", r"\frac{1}{2}", True),
    (r"0.5", r"\frac{1}{2}", True),
    (r"1/2", r"\frac{1}{2}", True),
    (r"\frac{2}{4}", r"\frac{1}{2}", True),
    (r"\frac{1}{3}", r"\frac{1}{2}", False),
    # integers: zero padding, trailing .0, thousands separators
    ("25", "025", True),
    ("025", "25", True),
    ("250", "025", False),
    ("27", "27.0", True),
    ("27.00", "27", True),
    ("27.1", "27", False),
    ("1000", "1,000", True),
    ("1,000", "1000", True),
    ("10080", r"10,\!080", True),
    ("11111111100", r"11,\! 111,\! 111,\! 100", True),
    ("32348", r"\$32,\!348", True),
    (r"\$32,348", "32348", True),
    ("1{,}000", "1000", True),
    ("-50", "-50", True),
    ("50", "-50", False),
    # scientific notation
    (r"4.5 \times 10^{33}", "4.5e33", True),
    (r"4.5\cdot10^{33}", "4.5e33", True),
    ("4.5e33", r"4.5 \times 10^{33}", True),
    (r"4.6 \times 10^{33}", "4.5e33", False),
    (r"4.5 \times 10^{32}", "4.5e33", False),
    (r"3.83 \times 10^{35}", "3.83e35", True),
    (r"6 \times 10^{-3}", "0.006", True),
    # decimals
    (".15", "0.15", True),
    (r"\frac{3}{20}", "0.15", True),
    ("0.150", "0.15", True),
    ("0.16", "0.15", False),
    # degrees, percentages, units, text
    ("90", r"90^\circ", True),
    (r"90^{\circ}", r"90^\circ", True),
    ("90°", r"90^\circ", True),
    (r"91^\circ", r"90^\circ", False),
    ("140", "140°", True),
    (r"50\%", "50", True),
    ("50", r"50\%", True),
    ("0.5", r"50\%", True),
    (r"5\%", r"50\%", False),
    ("5.4", r"5.4 \text{ cents}", True),
    (r"5.4 \text{ cents}", "5.4", True),
    (r"3 \mathrm{~cm}", "3", True),
    ("3 cm", "3", True),
    (r"\frac{270}{7}", r"\frac{270}7\text{ degrees}", True),
    ("Evelyn", r"\text{Evelyn}", True),
    ("evelyn", r"\text{Evelyn}", True),
    ("Navin", r"\text{Evelyn}", False),
    (r"\text{neve}", r"\text{even}", False),  # not e*v*e*n == n*e*v*e
    ("East", r"\text{east}", True),
    ("(C)", r"\text{(C)}", True),
    ("C", r"\text{(C)}", True),
    ("B", r"\text{(C)}", False),
    # tuples (ordered), intervals, unions
    (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", True),
    (r"(3, \pi/2)", r"\left( 3, \frac{\pi}{2} \right)", True),
    (r"(\frac{\pi}{2}, 3)", r"\left( 3, \frac{\pi}{2} \right)", False),
    ("(1,-2)", "(-2,1)", False),
    ("(6, 31, -1)", "(6,31,-1)", True),
    (r"\left(3, 4\right]", "(3,4]", True),
    ("[3,4]", "(3,4]", False),
    (r"(-\infty,0)", r"(-\infty, 0]", False),
    (r"(3, \infty) \cup (-\infty, 2)", r"(-\infty, 2) \cup (3, \infty)", True),
    ("[-2, 7]", r"x \in [-2,7]", True),
    # several answers: a set of solutions, any order
    ("-2, 1", "1,-2", True),
    ("1, 2", "1,-2", False),
    ("1", "1,-2", False),
    ("7, 5, 3", "3, 5, 7", True),
    (r"3 \text{ and } 5", "3, 5", True),
    ("3 and 5", "3, 5", True),
    (r"x = 1 \text{ or } x = -1", "1, -1", True),
    (r"\{1, 2\}", r"\{2, 1\}", True),
    (r"\{1, 3\}", r"\{2, 1\}", False),
    (r"\pm 2", "2, -2", True),
    (r"1 \pm \sqrt{5}", r"1+\sqrt{5}, 1-\sqrt{5}", True),
    ("84, 69", "$69$,$84$", True),
    (r"(4,5,7), (1,8,19), (2,7,13)", r"$(1,8,19), (2,7,13), (4,5,7)$", True),
    # "x = 3" against "3"
    ("3", "x=3", True),
    ("x = 3", "3", True),
    ("x = 4", "x=3", False),
    ("f(x) = 2x", "$f(x)=2 x$", True),
    ("2 x", "$f(x)=2 x$", True),
    ("k = 1", "$k=1$", True),
    # expressions
    (r"\sqrt{117}", r"3\sqrt{13}", True),
    (r"3\sqrt{12}", r"3\sqrt{13}", False),
    (r"11\sqrt{2}", r"11\sqrt2", True),
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", True),
    ("-q+p", "p - q", True),
    ("q-p", "p - q", False),
    (r"(x-1)(x^4+x^2+1)", r"x^5 - x^4 + x^3 - x^2 + x - 1", True),
    ("6-5i", "6 - 5i", True),
    ("6+5i", "6 - 5i", False),
    ("3.14159", r"\pi", False),
    (r"-\pi/6", r"-\frac{\pi}{6}", True),
    ("2^{1010}", "$2^{1009}$", False),
    (r"\frac{1}{2(n+1)}", r"$\frac{1}{2 n+2}$", True),
    ("52_{8}", "52_8", True),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
    (r"\begin{pmatrix} 1 \\ 3 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", False),
    # empty
    ("", "5", False),
]


@pytest.mark.parametrize(("answer", "gold", "expected"), EQUIVALENCE_CASES)
def test_equivalence_table(answer: str, gold: str, expected: bool) -> None:
    assert grade_answer("... so the answer is \\boxed{" + answer + "}", gold) is expected


def test_equivalence_table_is_large_and_balanced() -> None:
    assert len(EQUIVALENCE_CASES) >= 60
    assert sum(not expected for *_, expected in EQUIVALENCE_CASES) >= 25


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("First \\boxed{1}, then \\boxed{2}.", "2"),  # the LAST box
        ("\\boxed{\\frac{a}{\\{b\\}}}", "\\frac{a}{\\{b\\}}"),  # balanced, escaped braces skipped
        ("\\fbox{7}", "7"),
        ("\\boxed 12", "12"),
        ("\\boxed{5} and a cut-off \\boxed{6", "5"),  # unbalanced last box: the previous one
        ("<think>\n\\frac{1}{2}\n</think>\n<answer>\n3\n</answer>", "3"),
        ("<answer>\\boxed{9}</answer> <answer>4</answer>", "9"),  # a box anywhere wins
        ("We get 3 apples and 1,250 pears.", "1,250"),
        ("It is -0.5.", "-0.5"),
        ("nothing", None),
    ],
)
def test_extract_answer(output: str, expected: str | None) -> None:
    assert extract_answer(output) == expected


def test_normalize_answer() -> None:
    assert normalize_answer("$\\left( 3, \\dfrac{\\pi}{2} \\right)$") == "( 3, \\frac{\\pi}{2} )"
    assert normalize_answer("\\$32,\\!348") == "32348"
    assert normalize_answer("\\text{(C)}") == "C"
    assert normalize_answer("\\boxed{42}") == "42"


def test_answer_tag_prose_and_fallbacks() -> None:
    assert grade_answer("<answer>The answer is $\\frac{1}{2}$.</answer>", "0.5")
    assert grade_answer("<think>\n...\n</think>\n<answer>\nThe final answer is 7\n</answer>", "7")
    assert not grade_answer("<answer>The answer is 8.</answer>", "7")
    assert grade_answer("He pays 1,250 dollars in total.", "1250")
    assert not grade_answer("I do not know.", "7")


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        (None, "1"),
        (42, "1"),
        ("\\boxed{1}", None),
        ("\\boxed{1}", ""),
        ("\\boxed{1}", ["1"]),
        ("\\boxed{", "1"),
    ],
)
def test_bad_inputs_are_wrong_never_raise(prediction: object, gold: object) -> None:
    assert grade_answer(prediction, gold) is False  # type: ignore[arg-type]


def test_numeric_gold_values_are_accepted() -> None:
    assert grade_answer("\\boxed{27}", 27.0)  # type: ignore[arg-type]
    assert grade_answer("\\boxed{0.25}", 0.25)  # type: ignore[arg-type]
    assert not grade_answer("\\boxed{1}", float("nan"))  # type: ignore[arg-type]


def test_parser_errors_count_as_wrong() -> None:
    # Malformed LaTeX makes latex2sympy raise; the grade is simply False.
    assert grade_answer("\\boxed{\\frac{1}{}}", "\\frac{1}{2}") is False
    assert grade_answer("\\boxed{)(}", "\\frac{1}{2}") is False
    assert answers_equivalent("\\sqrt{", "2") is False


# ---------------------------------------------------------------------------------------------------
# Time limits (these tests time calls on purpose: they check that a limit was enforced, with margins
# wide enough for a loaded machine; they are not benchmarks)
# ---------------------------------------------------------------------------------------------------

PATHOLOGICAL = [
    "\\boxed{" + "(" * 50_000 + "1" + ")" * 50_000 + "}",  # 100 KB inside one box
    "\\boxed{" * 14_000,  # 100 KB of unclosed boxes
    "1+" * 50_000,  # 100 KB, no box: last-number fallback
    "<answer>" + "\\frac{" * 12_000 + "</answer>",  # 100 KB answer block
    "x" * 100 + "\\boxed{" + "x^{" * 300 + "2" + "}" * 300 + "}",  # power tower under the length cap
]


@pytest.mark.parametrize("prediction", PATHOLOGICAL, ids=["parens", "boxes", "sum", "fracs", "tower"])
def test_pathological_answers_are_graded_within_the_limit(prediction: str) -> None:
    limit = 1.0
    start = time.monotonic()
    assert grade_answer(prediction, "2", timeout=limit) is False
    assert time.monotonic() - start < limit + 10.0  # bounded (the unbounded case takes minutes)


def test_100kb_prediction_with_correct_box_is_still_correct() -> None:
    prediction = "blah " * 20_000 + "\\boxed{\\frac{1}{2}}"
    assert len(prediction) > 100_000
    start = time.monotonic()
    assert grade_answer(prediction, "0.5", timeout=1.0)
    assert time.monotonic() - start < 10.0


def test_answers_over_the_length_cap_are_compared_as_strings_only() -> None:
    long_sum = "+".join(["1"] * (MAX_ANSWER_CHARS // 2 + 1))
    assert grade_answer("\\boxed{" + long_sum + "}", long_sum)
    assert not grade_answer("\\boxed{" + long_sum + "}", str(MAX_ANSWER_CHARS // 2 + 1))


@pytest.mark.parametrize("answer", ["9^{9^{9^{9}}}", "10^{10^{10}}", "(1+x)^{1000}"])
def test_expensive_sympy_work_is_stopped_at_the_limit(answer: str) -> None:
    grade_answer("\\boxed{x^2}", "x^2+0", timeout=30.0)  # the worker is up (its start-up is not timed)
    handler, timer = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    assert grade_answer("\\boxed{" + answer + "}", "(1+x)^{999}", timeout=0.5) is False
    # The worker is killed at the limit plus 0.5 s of grace whatever it is doing (in C code too); the
    # margin only absorbs a loaded machine. Without the limit this takes minutes.
    assert time.monotonic() - start < 10.0
    # ...and this process armed no alarm that could fire later, in unrelated code
    assert signal.getsignal(signal.SIGALRM) == handler and signal.getitimer(signal.ITIMER_REAL) == timer


def test_answers_without_sympy_are_graded_in_process() -> None:
    from gpgrl.rewards.math_grader import _grade_without_sympy

    assert _grade_without_sympy("0.5", "boxed", "\\frac{1}{2}") is True  # numbers: exact, in process
    assert _grade_without_sympy("3", "boxed", "2") is False
    assert _grade_without_sympy("x^2+1", "boxed", "1+x^2") is None  # needs sympy: the worker decides
    assert grade_answer("\\boxed{x^2+1}", "1+x^2", timeout=30.0) is True


def test_limit_works_outside_the_main_thread() -> None:
    results: dict[str, object] = {}

    def grade_in_thread() -> None:
        results["warm"] = grade_answer("\\boxed{\\frac12}", "0.5", timeout=1.0)  # starts the worker
        start = time.monotonic()
        results["hang"] = grade_answer("\\boxed{9^{9^{9^{9}}}}", "5", timeout=1.0)
        results["hang_s"] = time.monotonic() - start
        results["after"] = grade_answer("\\boxed{1,000}", "1000", timeout=1.0)

    thread = threading.Thread(target=grade_in_thread)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert results["warm"] is True
    assert results["hang"] is False
    assert results["hang_s"] < 10.0
    assert results["after"] is True


def test_worker_kills_a_call_that_ignores_the_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A "hang in C code" stand-in: the target disables SIGALRM, so only the parent's kill can stop it.
    (tmp_path / "stubborn_target.py").write_text(
        textwrap.dedent(
            """
            import signal, time

            def run(seconds):
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
                time.sleep(seconds)
                return "finished"
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    worker = GradingWorker("stubborn_target:run")
    try:
        assert worker.call((0.0,), limit=5.0) == "finished"
        start = time.monotonic()
        assert worker.call((30.0,), limit=0.5) is None
        assert time.monotonic() - start < 10.0  # killed, not waited for (30 s)
        assert worker.call((0.0,), limit=5.0) == "finished"  # a fresh worker took over
    finally:
        worker.close()


def test_deadline_restores_an_outer_timer_and_handler() -> None:
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 10.0)
        with pytest.raises(GradingTimeout), deadline(0.05):
            time.sleep(1.0)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 8.0 < remaining <= 10.0
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------------
# Faithful to the original reward, and list answers that cannot be gamed
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("prediction", "gold"), [
    ("\\boxed{21, 36, and 82}", "19, 46, and 82"),  # only the last item agrees
    ("\\boxed{5}", "2, 3, and 5"),  # one item of the list
    ("\\boxed{2, 3}", "2, 3, and 5"),  # a strict subset
    ("\\boxed{82}", "19, 46, and 82"),
])
def test_a_list_answer_must_match_every_item(prediction: str, gold: str) -> None:
    assert grade_answer(prediction, gold, timeout=None) is False
    assert grade_answer(prediction, gold, timeout=10.0) is False


@given(st.lists(st.integers(-50, 200), min_size=2, max_size=5, unique=True), st.data())
@settings(max_examples=40, deadline=None)
def test_no_strict_subset_of_a_list_gold_grades_correct(items: list[int], data: st.DataObject) -> None:
    words = [str(i) for i in items]
    gold = ", ".join(words[:-1]) + (", and " if data.draw(st.booleans()) else ", ") + words[-1]
    subset = data.draw(st.lists(st.sampled_from(words), min_size=1, max_size=len(words) - 1, unique=True))
    assert grade_answer("\\boxed{" + ", ".join(subset) + "}", gold, timeout=None) is False
    assert grade_answer("\\boxed{" + subset[0] + "}", gold, timeout=None) is False
    shuffled = data.draw(st.permutations(words))
    assert grade_answer("\\boxed{" + ", ".join(shuffled) + "}", gold, timeout=None) is True


def test_several_boxes_are_one_list_answer_for_the_training_reward() -> None:
    text = "\\boxed{(2,2)} and \\boxed{(6,2)}"
    assert grade_answer(text, "(2, 2), (6, 2)", timeout=None, boxes="all") is True  # the original's rule
    assert grade_answer(text, "(2, 2), (6, 2)", timeout=None) is False  # evaluation's: the last box
    assert grade_answer(text, "(6, 2)", timeout=None) is True
    # an intermediate box followed by the final one is a two-item list under "all"
    assert grade_answer("first \\boxed{3}, finally \\boxed{4}", "4", timeout=None, boxes="all") is False


@pytest.mark.parametrize(("prediction", "gold", "expected"), [
    ("$\\frac{1+\\sqrt5}{2}$", "2", False),  # the denominator is not the answer
    ("$\\frac{1+\\sqrt5}{2}$", "\\frac{1+\\sqrt{5}}{2}", True),  # the whole expression is
    ("The answer is $x=\\frac34$", "4", False),
    ("The answer is $x=\\frac34$", "0.75", True),
    ("$-[0,1)$", "1", False),
    ("so we pay 1,250 dollars.", "1250", True),  # no LaTeX: the last number
    ("$x = 2$, so the total is 17", "17", True),  # a number after the last expression
])
def test_the_fallback_takes_whole_expressions(prediction: str, gold: str, expected: bool) -> None:
    assert grade_answer(prediction, gold, timeout=None) is expected


def test_without_the_fallback_only_anchored_latex_counts() -> None:
    assert grade_answer("so 42", "42", timeout=None, fallback=False) is False  # the original gives 0
    assert grade_answer("The final answer is $42$.", "42", timeout=None, fallback=False) is True
    assert grade_answer("\\boxed{42}", "42", timeout=None, fallback=False) is True


def test_font_commands_keep_their_letters() -> None:
    assert normalize_answer("1-\\frac{1}{\\mathrm{e}}") == "1-\\frac{1}{e}"
    assert normalize_answer("\\mathbf{v}") == "v"
    assert normalize_answer("3 \\mathrm{~cm}") == "3"  # a unit after a number still goes
    assert grade_answer("\\boxed{1-\\frac{1}{\\mathrm{e}}}", "1 - e^{-1}", timeout=None) is True
