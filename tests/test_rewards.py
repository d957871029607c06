"""Tests of the reward registry and the built-in rewards, against hand-computed values."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from gpgrl.rewards import get_reward, list_rewards, register_reward
from gpgrl.rewards import registry as registry_module
from gpgrl.rewards.math_rewards import cosine_scaled

BUILTIN = ["accuracy", "cosine", "format", "length", "reasoning_steps", "repetition_penalty", "tag_count", "think_close"]
VISION = ["choice_accuracy", "classification", "detection_confidence", "detection_iou", "grounding_giou", "r1v_accuracy",
          "token_length", "visual_format"]
EPISODE = ["environment", "tool_errors"]  # multi-turn episodes (gpgrl.rewards.episode)


def _with_length(answer: str, length: int) -> str:
    """A completion of exactly ``length`` characters whose final answer is ``answer``."""
    text = "\\boxed{" + answer + "}"
    assert len(text) <= length
    return "." * (length - len(text)) + text


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------


def test_list_rewards() -> None:
    assert list_rewards() == sorted(BUILTIN + VISION + EPISODE)


def test_an_alias_gives_the_registered_reward_under_its_own_name() -> None:
    from gpgrl.rewards import reward_aliases

    assert reward_aliases()["format_v2"] == "think_close"
    fn = get_reward("format_v2")
    assert fn.__name__ == "think_close"  # logged as reward/think_close, whatever the recipe called it
    # "\n</think>\n" exactly once -> 1; twice or never -> 0
    assert fn(["a\n</think>\nb", "a\n</think>\n\n</think>\n", "<think>a</think>"]) == [1.0, 0.0, 0.0]


def test_returned_functions_are_named_for_metrics() -> None:
    for name in BUILTIN:
        assert get_reward(name).__name__ == name


def test_unknown_name_lists_valid_names_and_the_module_form() -> None:
    with pytest.raises(ValueError) as err:
        get_reward("acuracy")
    message = str(err.value)
    assert "'acuracy'" in message
    for name in BUILTIN:
        assert name in message
    assert "module:function" in message


def test_unknown_param_names_the_reward_and_its_params() -> None:
    with pytest.raises(ValueError) as err:
        get_reward("cosine", max_length=10)
    message = str(err.value)
    assert "'cosine'" in message and "max_length" in message
    for param in ("min_value_wrong", "max_value_wrong", "min_value_correct", "max_value_correct", "max_len"):
        assert param in message
    with pytest.raises(ValueError, match=r"'tag_count'.*\(none\)"):
        get_reward("tag_count", foo=1)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("repetition_penalty", {"max_penalty": 0.5}),
        ("repetition_penalty", {"ngram_size": 0}),
        ("cosine", {"max_len": 0}),
        ("accuracy", {"timeout": 0}),
        ("reasoning_steps", {"min_steps": 0}),
    ],
)
def test_invalid_param_values_raise(name: str, params: dict) -> None:
    with pytest.raises(ValueError, match=name if name != "accuracy" else "timeout"):
        get_reward(name, **params)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_user_rewards.py").write_text(
        textwrap.dedent(
            """
            def exact(completions, answer, bonus=0.0, **kwargs):
                return [None if a is None else float(c.strip() == a) + bonus for c, a in zip(completions, answer)]

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_user_rewards"


def test_user_function_by_module_path(user_module: str) -> None:
    fn = get_reward(f"{user_module}:exact")
    assert fn(["4", "5", "6"], answer=["4", "4", None], prompts=["p"] * 3, extra=[1, 2, 3]) == [
        1.0,
        0.0,
        None,
    ]
    bound = get_reward(f"{user_module}:exact", bonus=0.5)
    assert bound(["4", "5"], answer=["4", "4"]) == [1.5, 0.5]
    assert bound.__name__ == "exact"


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("no_such_module_xyz:fn", "no module 'no_such_module_xyz' is installed or on PYTHONPATH; put its file next"),
        ("my_user_rewards:missing", "has no 'missing'"),
        ("my_user_rewards:NOT_CALLABLE", "not callable"),
        ("my_user_rewards:", "package.module:function"),
    ],
)
def test_user_function_errors(user_module: str, path: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_reward(path)


def test_register_a_new_reward_and_reject_duplicates() -> None:
    @register_reward("test_constant")
    def make_constant(value: float = 1.0):
        def constant(completions, **kwargs):
            return [value] * len(completions)

        return constant

    try:
        assert "test_constant" in list_rewards()
        assert get_reward("test_constant", value=2.0)(["a", "b"]) == [2.0, 2.0]
        with pytest.raises(ValueError, match="already registered"):
            register_reward("test_constant")(make_constant)
    finally:
        del registry_module._REGISTRY["test_constant"]


# ---------------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------------


def test_accuracy_values_and_none_for_missing_gold() -> None:
    acc = get_reward("accuracy")
    completions = ["so \\boxed{\\frac{1}{2}}", "\\boxed{3}", "\\boxed{1}", "\\boxed{1}", "no answer at all"]
    answers = ["0.5", "2", "", None, "4"]
    assert acc(completions, answer=answers, prompts=["q"] * 5, level=[3] * 5) == [1.0, 0.0, None, None, 0.0]


def test_accuracy_accepts_chat_completions_and_the_solution_column() -> None:
    acc = get_reward("accuracy")
    chat = [[{"role": "assistant", "content": "\\boxed{7}"}], [{"role": "assistant", "content": "8"}]]
    assert acc(chat, solution=["The sum is $\\boxed{7}$.", "$\\boxed{7}$"]) == [1.0, 0.0]


def test_accuracy_needs_a_gold_column_of_the_right_length() -> None:
    acc = get_reward("accuracy")
    with pytest.raises(ValueError, match="'answer'"):
        acc(["\\boxed{1}"], prompts=["q"])
    with pytest.raises(ValueError, match="2 items for 1"):
        acc(["\\boxed{1}"], answer=["1", "2"])


# ---------------------------------------------------------------------------------------------------
# format, tag_count, reasoning_steps
# ---------------------------------------------------------------------------------------------------

GOOD = "<think>\nreasoning\n</think>\n<answer>\n42\n</answer>"


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        (GOOD, 1.0, 1.0),
        ("<think>\nmulti\nline\n</think>\n<answer>\n4\n2\n</answer>", 1.0, 1.0),
        (GOOD + "\ntext after, on a new line", 1.0, 0.0),  # open-r1's MULTILINE "$": accepted when strict
        (GOOD + " trailing", 0.0, 0.0),
        ("<think>reasoning</think><answer>42</answer>", 0.0, 1.0),
        ("  <think>r</think>\n\n<answer>42</answer>\n", 0.0, 1.0),
        ("preamble\n" + GOOD, 0.0, 0.0),
        ("<answer>\n42\n</answer>\n<think>\nr\n</think>", 0.0, 0.0),
        ("<think>\nreasoning\n</think>", 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_format(text: str, strict: float, lenient: float) -> None:
    assert get_reward("format")([text]) == [strict]
    assert get_reward("format", lenient=True)([text]) == [lenient]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, 1.0),
        ("<think>\nr\n</think>\n<think>\nr\n</think>\n<answer>\n4\n</answer>", 0.5),  # both think tags twice
        ("<think>\nr\n</think>\n", 0.5),
        ("<think>r</think><answer>4</answer>", 0.0),
        ("\n<answer>\n4\n</answer>", 0.5),
        ("", 0.0),
    ],
)
def test_tag_count(text: str, expected: float) -> None:
    assert get_reward("tag_count")([text]) == [expected]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("Step 1: add.\nStep 2: divide.", 2),
        ("1. a\n2. b\n3. c", 1),  # open-r1's "^\d+\." has no MULTILINE: only the first item counts
        ("List:\n- a\n- b\n* c", 3),
        ("First, a. Second, b. Next, c. Finally, d.", 4),
        ("first, lower case does not count", 0),
        ("", 0),
    ],
)
def test_reasoning_steps(text: str, count: int) -> None:
    assert get_reward("reasoning_steps")([text]) == [min(1.0, count / 3)]
    assert get_reward("reasoning_steps", min_steps=1)([text]) == [min(1.0, float(count))]


# ---------------------------------------------------------------------------------------------------
# repetition_penalty
# ---------------------------------------------------------------------------------------------------


def test_repetition_penalty_hand_counted() -> None:
    rep = get_reward("repetition_penalty")
    # "a b c a b c a b c": 7 trigrams (abc bca cab abc bca cab abc), 3 distinct -> -(1 - 3/7) = -4/7.
    # "The cat the CAT the cat": lower-cased, 4 trigrams (the cat the, cat the cat, the cat the,
    # cat the cat), 2 distinct -> -(1 - 2/4) = -0.5.
    # "one two three four": 2 trigrams, both distinct -> 0. "a b": fewer words than n -> 0. "" -> 0.
    texts = ["a b c a b c a b c", "The cat the CAT the cat", "one two three four", "a b", ""]
    assert rep(texts) == pytest.approx([-4 / 7, -0.5, 0.0, 0.0, 0.0])
    # 4 words "x x x x": 3 bigrams, 1 distinct -> scaling 2/3; times max_penalty -0.5 -> -1/3.
    assert get_reward("repetition_penalty", ngram_size=2, max_penalty=-0.5)(["x x x x"]) == pytest.approx(
        [-1 / 3]
    )


# ---------------------------------------------------------------------------------------------------
# cosine
# ---------------------------------------------------------------------------------------------------

RECIPE_DEFAULTS = dict(
    min_value_wrong=0.0, max_value_wrong=-0.5, min_value_correct=0.5, max_value_correct=1.0, max_len=1000
)
PAPER_WRONG = dict(RECIPE_DEFAULTS, min_value_wrong=-1.0, max_value_wrong=-0.5)


@pytest.mark.parametrize(
    ("length", "correct", "bounds", "expected"),
    [
        # correct: 0.5 + 0.25 * (1 + cos(pi * L / 1000))
        (0, True, RECIPE_DEFAULTS, 1.0),
        (250, True, RECIPE_DEFAULTS, 0.5 + 0.25 * (1 + math.sqrt(0.5))),  # 0.92678
        (500, True, RECIPE_DEFAULTS, 0.75),
        (1000, True, RECIPE_DEFAULTS, 0.5),
        # wrong with the recipe defaults: -0.5 + 0.25 * (1 + cos): 0.0 at L=0 down to -0.5 at max_len
        (0, False, RECIPE_DEFAULTS, 0.0),
        (500, False, RECIPE_DEFAULTS, -0.25),
        (1000, False, RECIPE_DEFAULTS, -0.5),
        # wrong with the paper's bounds: -0.5 - 0.25 * (1 + cos): -1.0 at L=0 up to -0.5 at max_len
        (0, False, PAPER_WRONG, -1.0),
        (500, False, PAPER_WRONG, -0.75),
        (1000, False, PAPER_WRONG, -0.5),
        # beyond max_len: clipped to the max_len value
        (2000, True, RECIPE_DEFAULTS, 0.5),
        (1500, False, PAPER_WRONG, -0.5),
    ],
)
def test_cosine_formula(length: int, correct: bool, bounds: dict, expected: float) -> None:
    assert cosine_scaled(length, correct, **bounds) == pytest.approx(expected, abs=1e-12)


def test_cosine_without_clipping_is_open_r1s_formula() -> None:
    # open-r1 does not clip: at 2 * max_len cos(2 pi) = 1, the value of an empty completion.
    assert cosine_scaled(2000, True, **RECIPE_DEFAULTS, clip_len=False) == pytest.approx(1.0)
    assert cosine_scaled(1500, True, **RECIPE_DEFAULTS, clip_len=False) == pytest.approx(0.75)


def test_cosine_reward_on_completions() -> None:
    cos = get_reward("cosine")  # recipe defaults
    completions = [
        _with_length("7", 500),
        _with_length("7", 1000),
        _with_length("8", 500),
        _with_length("8", 1000),
    ]
    assert cos(completions, answer=["7"] * 4) == pytest.approx([0.75, 0.5, -0.25, -0.5], abs=1e-12)
    paper = get_reward("cosine", min_value_wrong=-1.0, max_value_wrong=-0.5, max_len=2000)
    assert paper(completions[2:], answer=["7", "7"]) == pytest.approx(
        [-1.0 + 0.25 * (1 - math.sqrt(0.5)), -0.75]
    )
    assert cos([_with_length("7", 500)], answer=[""]) == [None]


# ---------------------------------------------------------------------------------------------------
# length (Kimi 1.5)
# ---------------------------------------------------------------------------------------------------


def test_kimi_length_reward_per_prompt_group() -> None:
    kimi = get_reward("length")
    completions = [
        # prompt p: lengths 10, 20, 30, 50 -> lambda = 0.5 - (L - 10) / 40 = 0.5, 0.25, 0.0, -0.5
        _with_length("1", 10),  # correct -> 0.5
        _with_length("2", 20),  # wrong -> min(0, 0.25) = 0.0
        _with_length("1", 30),  # correct -> 0.0
        _with_length("2", 50),  # wrong -> min(0, -0.5) = -0.5
        # prompt q: equal lengths -> 0.0 for all, right or wrong
        _with_length("5", 40),
        _with_length("6", 40),
        # prompt r: no gold -> None
        _with_length("5", 40),
    ]
    prompts = ["p"] * 4 + ["q"] * 2 + ["r"]
    answers = ["1"] * 4 + ["5", "5", ""]
    assert kimi(completions, answer=answers, prompts=prompts) == pytest.approx(
        [0.5, 0.0, 0.0, -0.5, 0.0, 0.0, None]
    )


def test_kimi_length_without_prompts_uses_the_whole_batch() -> None:
    kimi = get_reward("length")
    # lengths 10, 30 (correct), 20 (wrong): lambda = 0.5, -0.5, 0.0
    completions = [_with_length("3", 10), _with_length("3", 30), _with_length("4", 20)]
    assert kimi(completions, answer=["3"] * 3) == pytest.approx([0.5, -0.5, 0.0])
    # Chat-format prompts (lists of messages) group too.
    chat = [[{"role": "user", "content": "a"}]] * 2 + [[{"role": "user", "content": "b"}]]
    assert kimi(completions, answer=["3"] * 3, prompts=chat) == pytest.approx([0.5, -0.5, 0.0])


# ---------------------------------------------------------------------------------------------------
# A recipe: names, weights, params
# ---------------------------------------------------------------------------------------------------


def test_weighted_recipe_sum() -> None:
    recipe = [
        {"name": "format", "weight": 1.0},
        {"name": "cosine", "weight": 2.0, "params": {"max_len": 1000}},
    ]
    fns = [(get_reward(r["name"], **r.get("params", {})), r["weight"]) for r in recipe]
    completion = "<think>\n" + "." * 454 + "\n</think>\n<answer>\n\\boxed{5}\n</answer>"
    assert len(completion) == 500
    total = sum(w * fn([completion], answer=["5"])[0] for fn, w in fns)
    assert total == pytest.approx(1.0 * 1.0 + 2.0 * 0.75)


def test_returned_functions_carry_the_documentation() -> None:
    for name in BUILTIN:
        doc = get_reward(name).__doc__
        assert doc and doc.strip().startswith(f"``{name}``"), name


# ---------------------------------------------------------------------------------------------------
# semantics="math_verify_0.5.2": the original GPG code's answer check
# ---------------------------------------------------------------------------------------------------

ORIGINAL = {"semantics": "math_verify_0.5.2"}


def test_original_accuracy_lv35_values() -> None:
    """Expected values: open-r1/src/open_r1/rewards.py ``accuracy_reward_lv35`` (AMAP-ML/GPG e096da8) run on
    math-verify 0.5.2, the fork's setup.py pin (tests/mathverify_contract's probe gives these numbers)."""
    lv35 = get_reward("accuracy", **ORIGINAL, boxed_gold=True)
    ours = get_reward("accuracy")
    cases = [  # (completion, gold, the original's reward, gpgrl's default grader)
        ("First \\boxed{7}, finally \\boxed{9}.", "9", 1.0, 0.0),  # two boxes: 0.5.2 grades the last
        ("First \\boxed{7}, finally \\boxed{9}.", "7", 0.0, 0.0),
        ("\\boxed{1}, \\boxed{2} and \\boxed{3}", "1,2,3", 1.0, 1.0),  # joined by separators only: a set
        ("<think>\nok\n</think>\n<answer>\\frac{9}{32}</answer>", "\\frac{9}{32}", 1.0, 1.0),  # "answer" anchors LaTeX
        ("<answer>3</answer>", "3", 0.0, 1.0),  # no LaTeX after the anchor: no answer
        ("So \\boxed{\\frac12}", "\\frac12", 0.0, 1.0),  # the gold is normalised to \frac{1}{2}, the answer is not
        ("The answer is $\\boxed{50\\%}$", "50", 0.0, 1.0),  # 50% is 1/2
        ("The answer is $\\boxed{\\text{evelyn}}$", "\\text{Evelyn}", 0.0, 1.0),  # symbols keep their case
        ("The answer is $5$", "5", 1.0, 1.0),
        ("Answer: 5", "5", 0.0, 0.0),  # no LaTeX: no answer
    ]
    completions, golds = [c[0] for c in cases], [c[1] for c in cases]
    assert lv35(completions, answer=golds) == [c[2] for c in cases]
    assert ours(completions, answer=golds) == [c[3] for c in cases]


def test_original_accuracy_reads_the_gold_as_written_and_rewards_an_unparsed_gold_with_one() -> None:
    """open-r1 ``accuracy_reward``: the gold parsed with ``LatexExtractionConfig()`` only, so a bare "5" has no
    LaTeX; "If the gold solution is not parseable, we reward 1 to skip this example"."""
    plain = get_reward("accuracy", **ORIGINAL, boxed_gold=False)
    assert plain(["\\boxed{4}", "\\boxed{4}", "\\boxed{5}"], answer=["5", "$5$", "$5$"]) == [1.0, 0.0, 1.0]
    # the empty gold too; only a missing one (None) is left out
    assert get_reward("accuracy", **ORIGINAL)(["\\boxed{4}", "\\boxed{4}"], answer=["", None]) == [1.0, None]


def test_original_cosine_and_length() -> None:
    """open-rs ``get_cosine_scaled_reward`` / ``len_reward``: correctness from math-verify 0.5.2, the gold as
    written; 1.0 (cosine) or "correct" (length) where the gold parses to nothing."""
    cos = get_reward("cosine", **ORIGINAL, max_len=100)
    right, wrong = "." * 41 + "\\boxed{7}", "." * 41 + "\\boxed{8}"  # 50 characters: c = cos(pi / 2) = 0
    assert cos([right, wrong, right], answer=["$7$", "$7$", "7"]) == [0.75, -0.25, 1.0]
    length = get_reward("length", **ORIGINAL)
    assert length(["\\boxed{7}", "\\boxed{8}" + "." * 10, "\\boxed{8}" + "." * 20], answer=["$7$"] * 3) == [0.5, 0.0, -0.5]
    assert length(["\\boxed{8}", "\\boxed{8}" + "." * 10], answer=["7", "7"]) == [0.5, -0.5]  # unparsed gold: correct


def test_original_semantics_refuses_gpgrl_grader_settings() -> None:
    with pytest.raises(ValueError, match="answer_tag set\\(s\\) gpgrl's grader"):
        get_reward("accuracy", semantics="math_verify_0.5.2", answer_tag=False)
    with pytest.raises(ValueError, match="boxes, fallback set\\(s\\) gpgrl's grader"):
        get_reward("cosine", semantics="math_verify_0.5.2", boxes="last", fallback=True)
    with pytest.raises(ValueError, match="semantics must be 'gpgrl'"):
        get_reward("length", semantics="math_verify_0.9")
    with pytest.raises(ValueError, match=r"boxed_gold applies to semantics 'math_verify_0\.5\.2' only"):
        get_reward("accuracy", boxed_gold=False)
