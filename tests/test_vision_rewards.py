r"""Tests of the vision-language rewards (``gpgrl.rewards.vision``) against hand-computed values.

Each reward follows one of the GPG code base's vision forks (R1-V, Visual-RFT, VisualThinker-R1-Zero);
where a test pins a behaviour of the fork that looks odd, or a deliberate difference from it, the
comment says which (the full list is in docs/vision_rewards.md). Label files come from ../shared/data
(tests that need them are skipped when it is absent).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.rewards import get_reward, list_rewards, reward_aliases
from gpgrl.rewards.vision import (
    answer_content,
    box_iou,
    detection_scores,
    first_grounding_box,
    generalized_iou,
    match_detections,
    multiple_choice_letter,
    mv_equal,
    parse_detection_boxes,
)

VISION = SHARED_DATA / "vision"
NAMES = [
    "choice_accuracy",
    "classification",
    "detection_confidence",
    "detection_iou",
    "grounding_giou",
    "r1v_accuracy",
    "token_length",
    "visual_format",
]
SETTINGS = settings(max_examples=200, deadline=None)


def _think(answer: str, reasoning: str = "I look at the figure.") -> str:
    """A completion in the forks' format: ``<think>...</think> <answer>...</answer>``."""
    return f"<think>{reasoning}</think> <answer>{answer}</answer>"


def _boxes_json(*items: tuple[list[float], float]) -> str:
    """Visual-RFT's answer format (single quotes, as its prompt shows)."""
    return "[" + ", ".join(f"{{'Position': {pos}, 'Confidence': {c}}}" for pos, c in items) + "]"


# ---------------------------------------------------------------------------------------------------
# Registry and parameters
# ---------------------------------------------------------------------------------------------------


def test_all_vision_rewards_are_registered_and_named_for_metrics() -> None:
    for name in NAMES:
        assert name in list_rewards()
        assert get_reward(name).__name__ == name


def test_visual_rft_registry_keys_are_aliases() -> None:
    assert reward_aliases()["accuracy_iou"] == "detection_iou"
    assert reward_aliases()["accuracy_confidence"] == "detection_confidence"
    assert get_reward("accuracy_iou").__name__ == "detection_iou"


def test_every_vision_reward_documents_itself_with_its_name() -> None:
    for name in NAMES:
        doc = get_reward(name).__doc__ or ""
        assert doc.lstrip().startswith(f"``{name}``"), name


def test_unknown_param_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        get_reward("classification", match_empty=True)
    message = str(err.value)
    assert "match_empty" in message
    for param in ("empty_answer_matches", "math_verify_first", "timeout"):
        assert param in message


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("r1v_accuracy", {"timeout": 0}, "timeout"),
        ("choice_accuracy", {"timeout": -1.0}, "timeout"),
        ("classification", {"timeout": 0}, "timeout"),
        ("grounding_giou", {"timeout": 0}, "timeout"),
        ("detection_iou", {"iou_threshold": 1.0}, "iou_threshold"),
        ("detection_confidence", {"iou_threshold": -0.1}, "iou_threshold"),
        ("detection_iou", {"timeout": 0}, "timeout"),
        ("token_length", {"per_token": math.nan}, "per_token"),
        ("token_length", {"tokenizer": ""}, "tokenizer"),
    ],
)
def test_invalid_param_values_raise_with_the_param_name(name: str, params: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        get_reward(name, **params)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("visual_format", "token_length")])
def test_gold_column_is_required_and_aligned(name: str) -> None:
    fn = get_reward(name)
    with pytest.raises(ValueError, match="'answer'"):
        fn(["<answer>x</answer>"])
    with pytest.raises(ValueError, match="1 items for 2 completions"):
        fn(["a", "b"], answer=["a"])


def test_solution_column_is_read_when_there_is_no_answer_column() -> None:
    # The forks' datasets call the gold column "solution".
    assert get_reward("r1v_accuracy")([_think("3")], solution=["<answer>3</answer>"]) == [1.0]
    gold = "<answer>" + _boxes_json(([0, 0, 10, 10], 1)) + "</answer>"
    assert get_reward("detection_iou")([_think(_boxes_json(([0, 0, 10, 10], 0.5)))], solution=[gold]) == [1.0]


def test_chat_completions_are_read_like_strings() -> None:
    chat = [{"role": "assistant", "content": _think("B")}]
    assert get_reward("visual_format")([chat]) == [1.0]
    assert get_reward("choice_accuracy")([chat], answer=["B"]) == [1.0]


# ---------------------------------------------------------------------------------------------------
# visual_format: re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL)
# ---------------------------------------------------------------------------------------------------

FORMAT_CASES = [
    ("<think>a</think><answer>b</answer>", 1.0),  # no separator needed
    ("<think>a</think> \n\t <answer>b</answer>", 1.0),  # any whitespace between the blocks
    ("<think>line 1\nline 2</think>\n<answer>x\ny</answer>", 1.0),  # DOTALL: content spans lines
    ("<think></think><answer></answer>", 1.0),  # empty blocks are allowed
    ("<think>a</think><answer>1</answer><answer>2</answer>", 1.0),  # .*? stretches over "1</answer><answer>2"
    (" <think>a</think><answer>b</answer>", 0.0),  # fullmatch: nothing before <think>
    ("<think>a</think><answer>b</answer>\n", 0.0),  # ... and nothing after </answer>
    ("<think>a</think> so <answer>b</answer>", 0.0),  # only whitespace between the blocks
    ("<answer>b</answer><think>a</think>", 0.0),  # order matters
    ("<think>a</think>", 0.0),
    ("<answer>b</answer>", 0.0),
    ("a</think><answer>b</answer>", 0.0),  # no <think>: right only with prompt_opens_think
    ("", 0.0),
]


@pytest.mark.parametrize(("text", "expected"), FORMAT_CASES)
def test_visual_format_matches_the_forks_regex(text: str, expected: float) -> None:
    assert get_reward("visual_format")([text]) == [expected]


def test_visual_format_when_the_prompt_opens_think() -> None:
    # VisualThinker's base-model prompt ends with "<think>", so that fork prepends it before matching.
    fn = get_reward("visual_format", prompt_opens_think=True)
    # A completion that opens <think> again still matches: the second "<think>" is think content.
    texts = ["a</think> <answer>b</answer>", "<think>a</think><answer>b</answer>", "<answer>b</answer>"]
    assert fn(texts) == [1.0, 1.0, 0.0]


# ---------------------------------------------------------------------------------------------------
# r1v_accuracy
# ---------------------------------------------------------------------------------------------------


def test_answer_content_takes_the_first_block_or_the_whole_text() -> None:
    assert answer_content("<answer> 1 </answer><answer>2</answer>") == "1"
    assert answer_content("<answer>\n1\n</answer>") == "1"  # DOTALL (the forks: whole text here)
    assert answer_content("<answer>open only") == "<answer>open only"
    assert answer_content("  plain ") == "plain"


def test_r1v_exact_answer_after_stripping_both_sides() -> None:
    acc = get_reward("r1v_accuracy")
    golds = ["<answer> 3cm </answer>", "3cm", "3cm", "3cm", "3cm", "3cm"]
    completions = [
        _think("3cm"),  # gold written with tags: its content is compared
        _think("  3cm  "),  # stripped
        "<think>t</think><answer>\n3cm\n</answer>",  # a block on several lines (the fork: 0.0, see docs)
        "3cm",  # no tags: the whole text is the answer
        _think("3 cm"),  # exact string match: inner space differs
        _think("3"),  # no unit: math-verify finds nothing in "<answer>3</answer>", strings differ
    ]
    assert acc(completions, answer=golds) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_r1v_math_verify_on_the_whole_completion() -> None:
    acc = get_reward("r1v_accuracy")
    # No tags, a different spelling: only math-verify can accept it (8/6 = 4/3).
    assert acc(["The answer is $\\frac{8}{6}$."], answer=["\\frac{4}{3}"]) == [1.0]
    assert acc(["The answer is $\\frac{9}{6}$."], answer=["\\frac{4}{3}"]) == [0.0]
    # A value in the reasoning counts even when the answer block says otherwise: R1-V's own output on
    # GEOQA test record 4 of its log (gold 16, answer 16.2) is graded correct by this check.
    real = "the area of triangle ABC is 4.0 * 4 = 16.0.</think>\n<answer>16.2</answer>"
    assert acc(["<think>Since the area of ADE is 4.0, " + real], answer=["16"]) == [1.0]


def test_r1v_reads_sqrt_and_pi_glyphs_as_math_verify_does() -> None:
    # GEOQA golds write roots and pi as glyphs ("2√{3}", "4π"); math-verify reads only the leading
    # number of such a string, so a stated "2√{5}" matches the gold "2√{3}". This is the fork's
    # behaviour (docs/vision_rewards.md, caveats); the answer block alone is compared exactly.
    acc = get_reward("r1v_accuracy")
    assert acc(["Therefore, the answer is 2√{5}."], answer=["2√{3}"]) == [1.0]
    assert acc([_think("2√{5}")], answer=["2√{3}"]) == [0.0]


def test_r1v_empty_or_missing_gold_gives_none_and_numbers_are_accepted() -> None:
    acc = get_reward("r1v_accuracy")
    # The fork would compare "" with the answer and give an empty answer 1.0: no signal, so None here.
    assert acc([_think(""), _think("3"), _think("3")], answer=["", None, "<answer> </answer>"]) == [None] * 3
    # Counting golds may be stored as numbers.
    assert acc([_think("3"), _think("3"), _think("4")], answer=[3, 3.0, 3]) == [1.0, 1.0, 0.0]


def _geoqa_golds() -> list[str]:
    path = VISION / "geoqa" / "geoqa_test_prompts.jsonl"
    if not path.exists():
        pytest.skip(f"{DATA_MISSING}: no GEOQA labels at {path}")
    with path.open() as f:
        return [json.loads(line)["ground_truth"] for line in f if line.strip()]


def _next_different(golds: list[str], i: int) -> str:
    j = (i + 1) % len(golds)
    while golds[j] == golds[i]:
        j = (j + 1) % len(golds)
    return golds[j]


def test_every_geoqa_gold_grades_itself_and_not_its_neighbour() -> None:
    # All 754 GEOQA test golds (units, degrees, LaTeX, Chinese units: "140°", "3cm", "\frac{4}{3}",
    # "2√{3}米"), answered in the fork's format; the wrong answer is the next different gold.
    golds = _geoqa_golds()
    assert len(golds) == 754
    acc = get_reward("r1v_accuracy")
    completions, answers, expected = [], [], []
    for i, gold in enumerate(golds):
        completions += [_think(gold), _think(_next_different(golds, i))]
        answers += [gold, gold]
        expected += [1.0, 0.0]
    rewards = acc(completions, answer=answers)
    wrong = [(answers[k], completions[k], rewards[k]) for k in range(len(rewards)) if rewards[k] != expected[k]]
    assert wrong == []


def test_geoqa_values_stated_in_the_reasoning_are_found_by_math_verify() -> None:
    # Plain numbers, degrees, cm/m and \frac golds (651 of the 754): "Therefore, the answer is <gold>."
    # in the reasoning with an unrelated answer block is graded correct by the math-verify check.
    plain = re.compile(r"\d+(\.\d+)?(°|cm|m)?|\\frac\{\d+\}\{\d+\}")
    golds = [g for g in _geoqa_golds() if plain.fullmatch(g)]
    assert len(golds) == 651
    acc = get_reward("r1v_accuracy")
    completions = [_think("see above", reasoning=f"Therefore, the answer is {g}.") for g in golds]
    assert acc(completions, answer=golds) == [1.0] * len(golds)


# ---------------------------------------------------------------------------------------------------
# choice_accuracy
# ---------------------------------------------------------------------------------------------------

LETTER_CASES = [
    ("B", "B"),
    ("The answer is (C)", "C"),
    ("[D] fits", "D"),
    ("A or H", "H"),  # the last one
    ("(B) is wrong, so C", "C"),
    ("A B", "B"),  # lookarounds: the fork's regex consumes the space after A and reads "A" here
    ("C.", None),  # "." is not a delimiter
    ("B,", None),
    ("Between", None),  # a capital inside a word
    ("I think", None),  # I is not an option letter (A-H)
    ("a", None),  # capitals only
    ("", None),
]


@pytest.mark.parametrize(("answer", "expected"), LETTER_CASES)
def test_multiple_choice_letter(answer: str, expected: str | None) -> None:
    assert multiple_choice_letter(answer) == expected


def test_choice_accuracy_exact_answer_or_last_letter() -> None:
    acc = get_reward("choice_accuracy")
    cases = [
        (_think("left"), "left", 1.0),  # SAT golds are natural language: exact match
        (_think("Left"), "left", 0.0),  # case-sensitive, as in the fork
        (_think("The answer is B"), "B", 1.0),  # letter
        (_think("B or C"), "B", 0.0),  # the last letter counts
        (_think("B."), "B", 0.0),  # not standalone
        (_think("(B)"), "(B)", 1.0),  # exact
        (_think("It is B"), "(B)", 1.0),  # CV-Bench's "(B)" gold: its letter (the fork: 0.0)
        ("<think>A is wrong</think> <answer>C</answer>", "A", 0.0),  # letters in the reasoning do not count
        ("I would pick C", "C", 1.0),  # no tags: the whole text is the answer, as in the fork
        (_think(""), "C", 0.0),
    ]
    completions, golds, expected = zip(*cases)
    assert acc(list(completions), answer=list(golds)) == list(expected)


def test_choice_accuracy_skips_empty_golds() -> None:
    assert get_reward("choice_accuracy")([_think("")], answer=[""]) == [None]


# ---------------------------------------------------------------------------------------------------
# token_length
# ---------------------------------------------------------------------------------------------------


def test_token_length_counts_tokens_of_the_given_tokenizer(tmp_path: Path) -> None:
    from gpgrl.models.tiny import build_char_tokenizer

    build_char_tokenizer(save_dir=tmp_path)
    # The character tokenizer: "<think>" and "</think>" are one token each, other characters one each.
    texts = ["<think>ab</think>", "abcdefgh", ""]  # 4, 8 and 0 tokens
    assert get_reward("token_length", tokenizer=str(tmp_path), per_token=0.25)(texts) == [1.0, 2.0, 0.0]
    default = get_reward("token_length", tokenizer=str(tmp_path))(texts)  # the fork's 0.001 per token
    assert default == pytest.approx([0.004, 0.008, 0.0], abs=1e-12)


def test_token_length_loads_its_tokenizer_on_first_use_with_a_clear_error() -> None:
    fn = get_reward("token_length", tokenizer="/nonexistent/tokenizer")  # `gpgrl rewards` builds every reward
    with pytest.raises(ValueError, match=r"cannot load tokenizer '/nonexistent/tokenizer'.*tokenizer:"):
        fn(["abc"])


# ---------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------


def test_classification_containment_after_squashing() -> None:
    cls = get_reward("classification")
    cases = [
        (_think("Boeing 737"), "boeing_737", 1.0),  # spaces/underscores removed, lower-cased
        (_think("boeing"), "boeing_737", 1.0),  # a part of the name (answer in gold)
        (_think("a Boeing 737 in flight"), "boeing_737", 1.0),  # gold in answer
        (_think("Airbus A320"), "boeing_737", 0.0),
        ("I see a pug here.", "pug", 1.0),  # no tags: the whole text, as in the fork
        ("<think>t</think><answer>\npug\n</answer>", "pug", 1.0),  # block on several lines (fork: whole text)
        (_think("pug"), "<answer>pug</answer>", 1.0),  # gold with tags
    ]
    completions, golds, expected = zip(*cases)
    assert cls(list(completions), answer=list(golds)) == list(expected)


def test_classification_empty_answer_fixed_by_default_and_reproducible() -> None:
    completions = [_think(""), _think(" _ "), ""]  # all squash to ""
    assert get_reward("classification")(completions, answer=["pug"] * 3) == [0.0, 0.0, 0.0]
    # Visual-RFT: "" is contained in every class name -> 1.0.
    fork = get_reward("classification", empty_answer_matches=True)
    assert fork(completions, answer=["pug"] * 3) == [1.0, 1.0, 1.0]
    assert get_reward("classification")([_think("pug")], answer=[""]) == [None]


def test_classification_math_verify_first_reproduces_the_forks_number_matches() -> None:
    # math-verify reads "2000" out of both class names; the fork's first check then gives 1.0.
    completion = [_think("Falcon 2000")]
    assert get_reward("classification")(completion, answer=["Saab 2000"]) == [0.0]
    assert get_reward("classification", math_verify_first=True)(completion, answer=["Saab 2000"]) == [1.0]


CLASS_LISTS = ["fgvc_aircraft", "oxford_flowers", "pets", "stanford_cars"]


def _class_names(name: str) -> list[str]:
    path = VISION / "visual_rft_classification" / f"{name}.txt"
    if not path.exists():
        pytest.skip(f"{DATA_MISSING}: no class list at {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _other_class_matches(names: list[str], **params: object) -> list[tuple[str, str]]:
    """Ordered pairs (gold, answer) of different class names that score 1.0."""
    cls = get_reward("classification", **params)
    hits = []
    for gold in names:
        others = [o for o in names if o != gold]
        rewards = cls([_think(o) for o in others], answer=[gold] * len(others))
        hits += [(gold, o) for o, r in zip(others, rewards) if r == 1.0]
    return hits


@pytest.mark.parametrize("name", CLASS_LISTS)
def test_each_class_name_scores_itself_and_only_contained_names(name: str) -> None:
    names = _class_names(name)
    cls = get_reward("classification")
    assert cls([_think(n) for n in names], answer=names) == [1.0] * len(names)
    # Containment lets a few flower names match each other ("rose" in "pink primrose"): 12 ordered
    # pairs, all in Oxford Flowers; no other list has one.
    hits = _other_class_matches(names)
    assert len(hits) == (12 if name == "oxford_flowers" else 0)
    assert ("pink primrose", "rose") in hits or name != "oxford_flowers"


@pytest.mark.slow
def test_math_verify_first_matches_36_pairs_of_different_classes() -> None:
    # The figure quoted in the docstring and docs (about 5 s): math-verify-first on top of containment.
    extra = {}
    for name in CLASS_LISTS:
        names = _class_names(name)
        extra[name] = len(set(_other_class_matches(names, math_verify_first=True)) - set(_other_class_matches(names)))
    assert extra == {"fgvc_aircraft": 4, "oxford_flowers": 0, "pets": 0, "stanford_cars": 32}


# ---------------------------------------------------------------------------------------------------
# Boxes: IoU and GIoU
# ---------------------------------------------------------------------------------------------------


def test_box_iou_hand_values() -> None:
    assert box_iou((0, 0, 100, 100), (50, 50, 150, 150)) == 2500 / 17500  # inter 50*50, union 2*10000 - 2500
    assert box_iou((0, 0, 100, 100), (25, 25, 75, 75)) == 0.25  # contained: 2500 / 10000
    assert box_iou((0, 0, 100, 100), (100, 0, 200, 100)) == 0.0  # touching
    assert box_iou((0, 0, 100, 100), (100, 100, 0, 0)) == 1.0  # corners in the other order: the same box
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # no area


def test_generalized_iou_hand_values() -> None:
    # Contained: IoU 0.25 and the enclosing box is the big one (C = U = 10000), so GIoU = IoU.
    assert generalized_iou((0, 0, 100, 100), (25, 25, 75, 75)) == 0.25
    # Far apart in a 1000x1000 image: U = 100 + 100, C = 1000 * 1000 -> GIoU = -(10^6 - 200) / 10^6.
    assert generalized_iou((0, 0, 10, 10), (990, 990, 1000, 1000)) == pytest.approx(-0.9998, abs=1e-12)
    # Inverted corners are the box they span: (300,300),(200,200) is (200,200)-(300,300); with gold
    # (0,0)-(100,100): U = 20000, C = 300 * 300 -> GIoU = -70000 / 90000 (the fork: -0.5).
    assert generalized_iou((0, 0, 100, 100), (300, 300, 200, 200)) == pytest.approx(-7 / 9, abs=1e-12)
    # Two different points: no union area (IoU 0), C = 10 * 10 -> GIoU = 0 - 100 / 100.
    assert generalized_iou((0, 0, 0, 0), (10, 10, 10, 10)) == -1.0
    # One point twice: no union and no C -> GIoU = IoU = 0 (the fork's conventions).
    assert generalized_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0


coordinate = st.integers(min_value=0, max_value=1000) | st.floats(min_value=0, max_value=1000, allow_nan=False)
boxes = st.tuples(coordinate, coordinate, coordinate, coordinate)


def _has_area(box: tuple[float, ...]) -> bool:
    # The float product, not the sides: tiny sides can multiply to 0 (hypothesis found such a box).
    return (box[2] - box[0]) * (box[3] - box[1]) != 0


@SETTINGS
@given(boxes, boxes)
def test_iou_is_symmetric_bounded_and_ignores_corner_order(a: tuple, b: tuple) -> None:
    iou = box_iou(a, b)
    assert 0.0 <= iou <= 1.0
    assert iou == box_iou(b, a)
    assert iou == box_iou((a[2], a[3], a[0], a[1]), b)


@SETTINGS
@given(boxes, boxes)
def test_giou_is_symmetric_bounded_and_below_iou(a: tuple, b: tuple) -> None:
    giou = generalized_iou(a, b)
    assert -1.0 <= giou <= 1.0
    assert giou == pytest.approx(generalized_iou(b, a), abs=1e-12)
    assert giou <= box_iou(a, b) + 1e-12


@SETTINGS
@given(boxes)
def test_a_box_against_itself(a: tuple) -> None:
    expected = 1.0 if _has_area(a) else 0.0
    assert box_iou(a, a) == expected
    assert generalized_iou(a, a) == expected


# ---------------------------------------------------------------------------------------------------
# Detection: parsing with Visual-RFT's repairs
# ---------------------------------------------------------------------------------------------------

BOX_A = "{'Position': [10, 20, 30, 40], 'Confidence': 0.9}"
BOX_B = "{'Position': [50, 60, 70, 80], 'Confidence': 0.5}"
A = ((10.0, 20.0, 30.0, 40.0), 0.9)
B = ((50.0, 60.0, 70.0, 80.0), 0.5)

PARSE_CASES = [
    (f"<answer>[{BOX_A}, {BOX_B}]</answer>", [A, B]),
    ('<answer>[{"Position": [10, 20, 30, 40], "Confidence": 0.9}]</answer>', [A]),  # proper JSON
    (f"[{BOX_A}]", [A]),  # no tags: the whole text, as in the fork
    (f"<answer>[[{BOX_A}]]</answer>", [A]),  # "[[" -> "[", "]]" -> "]"
    (f"<answer>[{BOX_A},\n{BOX_B}\n]</answer>", [A, B]),  # newlines dropped (the fork: 0.0, see docs)
    (f"<answer>[{BOX_A}, {BOX_B}, {{'Position': [1, 2", [A, B]),  # cut off: the partial item is dropped
    (f"<answer>[{BOX_A}, {BOX_B}, {{'Position': [1, 2</answer>", [A, B]),  # closed early: the same repair
    (f"<answer>[{BOX_A}</answer>", None),  # no "}," to cut at: "...0.9}" + "}]" is not JSON (as in the fork)
    (f"<answer>[{BOX_A}, {BOX_A}, {BOX_B}]</answer>", [A, B]),  # duplicate positions: the first is kept
    ("<answer>[{'Position': [10, 20, 30, 40], 'Confidence': 0.1}, " + BOX_A + "]</answer>",
     [((10.0, 20.0, 30.0, 40.0), 0.1)]),  # duplicate position, other confidence: still the first
    ("<answer>[]</answer>", []),  # a valid "nothing there"
    ("<answer>[{'Position': [10, 20, 30, 40], 'Confidence': 'high'}]</answer>", [(A[0], 0.0)]),  # not a number
    ("<answer>[{'Position': [10, 20, 30, 40], 'Confidence': NaN}]</answer>", [(A[0], 0.0)]),
    ("<answer>[{'Position': [10, 20, 30, 40]}]</answer>", [(A[0], 0.0)]),  # missing (the fork: 0.0 reward)
    ("<answer>[{'Position': [10, 20, 30, 40], 'Confidence': '0.25'}]</answer>", [(A[0], 0.25)]),
    ("<answer>[{'Position': [10, 20, 30, 40], 'Confidence': 5}]</answer>", [(A[0], 5.0)]),  # clamped later
    ("<answer>I see two cats</answer>", None),
    ("<answer>{'Position': [10, 20, 30, 40], 'Confidence': 0.9}</answer>", None),  # a dict, not a list
    ("<answer>[10, 20, 30, 40]</answer>", None),  # items must be dicts
    (f"<answer>[{BOX_A}, 7]</answer>", None),
    ("<answer>[{'Box': [10, 20, 30, 40], 'Confidence': 0.9}]</answer>", None),  # no Position
    ("<answer>[{'Position': [10, 20, 30], 'Confidence': 0.9}]</answer>", None),  # 3 numbers
    ("<answer>[{'Position': ['10', 20, 30, 40], 'Confidence': 0.9}]</answer>", None),  # a string
    ("<answer>[{'Position': [NaN, 20, 30, 40], 'Confidence': 0.9}]</answer>", None),
    ("<answer>[{'Position': [true, 20, 30, 40], 'Confidence': 0.9}]</answer>", None),
    ("<answer>[{'Position': [" + "9" * 5000 + ", 20, 30, 40], 'Confidence': 0.9}]</answer>", None),  # huge int
    ("<answer>" + "[ " * 50_000 + "</answer>", None),  # nesting too deep for json
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_detection_boxes(text: str, expected: list | None) -> None:
    assert parse_detection_boxes(text) == expected


# ---------------------------------------------------------------------------------------------------
# Detection: matching and the two rewards
# ---------------------------------------------------------------------------------------------------

GOLD_BOX = (0, 0, 100, 100)


def test_greedy_matching_goes_by_confidence_not_by_iou() -> None:
    # P1 (IoU 60/100 = 0.6, c 0.9) is visited first and takes the only gold box, although P2 overlaps
    # it more (IoU 0.9, c 0.5); P2 is then unmatched.
    p1, p2 = ((0, 0, 100, 60), 0.9), ((0, 0, 100, 90), 0.5)
    assert match_detections([p2, p1], [GOLD_BOX]) == [(0.6, 0.9), (0.0, 0.5)]
    iou, conf = detection_scores([p2, p1], [GOLD_BOX])
    assert iou == 0.6 / 2  # sum of matched IoU / max(1 gold, 2 predictions)
    assert conf == pytest.approx((0.9 + 0.5) / 2, abs=1e-12)  # matched: c; unmatched: 1 - c = 0.5


def test_each_prediction_takes_its_best_unmatched_gold() -> None:
    golds = [(0, 0, 100, 100), (200, 0, 300, 100)]
    # P1 overlaps gold 1 with IoU 0.8 (8000/10000) and gold 0 not at all; P2 overlaps gold 1 with
    # IoU 0.9 but gold 1 is taken, and gold 0 with 0 -> unmatched. P3 overlaps gold 0 with 0.7.
    p1, p2, p3 = ((200, 0, 300, 80), 0.8), ((200, 0, 300, 90), 0.6), ((0, 0, 100, 70), 0.4)
    assert match_detections([p1, p2, p3], golds) == [(0.8, 0.8), (0.0, 0.6), (0.7, 0.4)]
    iou, conf = detection_scores([p1, p2, p3], golds)
    assert iou == pytest.approx((0.8 + 0.7) / 3, abs=1e-12)  # / max(2 golds, 3 predictions)
    assert conf == pytest.approx((0.8 + (1 - 0.6) + 0.4) / 3, abs=1e-12)


def test_matching_needs_iou_strictly_above_the_threshold() -> None:
    half = ((0, 0, 100, 50), 0.75)  # IoU exactly 5000/10000 = 0.5: not > 0.5
    assert detection_scores([half], [GOLD_BOX]) == (0.0, 0.25)
    assert detection_scores([half], [GOLD_BOX], iou_threshold=0.4) == (0.5, 0.75)


def test_detection_edge_cases() -> None:
    assert detection_scores([], []) == (1.0, 1.0)  # nothing there, nothing predicted (the fork: 0, 0)
    assert detection_scores([], [GOLD_BOX]) == (0.0, 0.0)
    assert detection_scores([((0, 0, 5, 5), 0.25)], []) == (0.0, 0.75)  # a false alarm: 1 - c
    # Confidences are clamped to [0, 1] per box before the mean: 5 -> 1 (matched), -1 -> 0 (unmatched).
    assert detection_scores([((0, 0, 100, 100), 5.0), ((500, 500, 600, 600), -1.0)], [GOLD_BOX]) == (0.5, 1.0)


def _gold(*positions: list[int]) -> str:
    return "<answer>" + _boxes_json(*[(p, 1) for p in positions]) + "</answer>"


def test_detection_rewards_on_completions() -> None:
    iou_fn, conf_fn = get_reward("detection_iou"), get_reward("detection_confidence")
    gold = _gold([0, 0, 100, 100], [200, 0, 300, 100])
    completions = [
        _think(_boxes_json(([0, 0, 100, 80], 0.75), ([200, 0, 300, 100], 0.5))),  # IoU 0.8 and 1.0
        _think(_boxes_json(([0, 0, 100, 80], 0.75))),  # one of two found
        _think(_boxes_json(([400, 400, 500, 500], 0.25))),  # a false alarm only
        _think("two boxes"),  # not a box list
        _think("[]"),  # nothing predicted
    ]
    golds = [gold] * len(completions)
    assert iou_fn(completions, answer=golds) == [(0.8 + 1.0) / 2, 0.8 / 2, 0.0, 0.0, 0.0]
    assert conf_fn(completions, answer=golds) == [(0.75 + 0.5) / 2, 0.75, 0.75, 0.0, 0.0]


def test_detection_gold_formats() -> None:
    iou_fn = get_reward("detection_iou")
    pred = _think(_boxes_json(([0, 0, 100, 80], 0.5)))
    golds = [
        _gold([0, 0, 100, 100]),  # Visual-RFT's solution string
        "[{'Position': [0, 0, 100, 100], 'Confidence': 1}]",  # without tags
        [{"Position": [0, 0, 100, 100]}],  # a structured column
        [[0, 0, 100, 100]],  # plain boxes
        "<answer>[]</answer>",  # no objects: a false alarm scores 0
        "not boxes",  # unusable gold -> None
        None,
    ]
    assert iou_fn([pred] * len(golds), answer=golds) == [0.8, 0.8, 0.8, 0.8, 0.0, None, None]
    assert get_reward("detection_confidence")([_think("[]")], answer=["<answer>[]</answer>"]) == [1.0]


def test_detection_math_verify_first_reproduces_the_forks_false_match() -> None:
    # math-verify reads one number (303) out of each box list, so the fork gives this wrong box 1.0.
    gold = [_gold([254, 303, 291, 365])]
    wrong = [_think(_boxes_json(([999, 303, 5, 5], 0.1)))]
    assert get_reward("detection_iou")(wrong, answer=gold) == [0.0]
    assert get_reward("detection_confidence")(wrong, answer=gold) == [0.9]  # an unmatched box: 1 - 0.1
    assert get_reward("detection_iou", math_verify_first=True)(wrong, answer=gold) == [1.0]
    assert get_reward("detection_confidence", math_verify_first=True)(wrong, answer=gold) == [1.0]


positions = st.lists(st.integers(0, 1000), min_size=4, max_size=4)
confidences = st.floats(min_value=-2, max_value=3, allow_nan=False)


@SETTINGS
@given(st.lists(st.tuples(positions, confidences), max_size=6), st.lists(positions, max_size=6))
def test_detection_scores_are_in_the_unit_interval(preds: list, golds: list) -> None:
    iou, conf = detection_scores([(tuple(p), c) for p, c in preds], [tuple(g) for g in golds])
    assert 0.0 <= iou <= 1.0 + 1e-12
    assert 0.0 <= conf <= 1.0 + 1e-12


@SETTINGS
@given(st.lists(positions, min_size=1, max_size=6, unique_by=tuple))
def test_predicting_the_gold_boxes_scores_one(golds: list) -> None:
    golds = [tuple(g) for g in golds if _has_area(g)]
    preds = [(g, 1.0) for g in golds]
    assert detection_scores(preds, golds) == (1.0, 1.0)


# ---------------------------------------------------------------------------------------------------
# grounding_giou
# ---------------------------------------------------------------------------------------------------


def test_first_grounding_box() -> None:
    assert first_grounding_box("( 1 , 2 ) , ( 3 , 4 )") == (1, 2, 3, 4)
    assert first_grounding_box("(1,2),(3,4),(5,6),(7,8)") == (1, 2, 3, 4)
    assert first_grounding_box("(1.5,2),(3,4)") is None  # integers only
    assert first_grounding_box("(-1,2),(3,4)") is None
    assert first_grounding_box("(1,2)") is None
    assert first_grounding_box("(" + "9" * 13 + ",2),(3,4)") is None  # absurdly long coordinates


LISA_GOLD = "<answer> (0,0),(100,100) </answer>"  # Visual-RFT's LISA solution: '<answer> ' + box + ' </answer>'


def test_grounding_giou_hand_values() -> None:
    giou = get_reward("grounding_giou")
    completions = [
        _think("(0,0),(100,100)"),  # exact string: 2.0
        _think("(0, 0), (100, 100)"),  # same box, other spacing: GIoU 1 -> 2.0
        _think("(50,0),(150,100)"),  # IoU 5000/15000, C = U -> GIoU 1/3 -> 4/3
        _think("(200,0),(300,100)"),  # IoU 0, U 20000, C 30000 -> GIoU -1/3 -> 2/3
        _think("(25,25),(75,75)"),  # contained: GIoU = IoU = 0.25 -> 1.25
        _think("(100,100),(0,0)"),  # corners swapped: the same box -> 2.0
        "The box is (0,0),(100,100).",  # no tags: the first box in the whole text -> 2.0
        _think("it is the dog on the left"),  # no box: 0.0
    ]
    rewards = giou(completions, answer=[LISA_GOLD] * len(completions))
    assert rewards == pytest.approx([2.0, 2.0, 4 / 3, 2 / 3, 1.25, 2.0, 2.0, 0.0], abs=1e-12)


def test_grounding_uses_the_first_box_of_several() -> None:
    # The answer's first box is the gold box -> 2.0. The fork pairs the top-left corners of the first
    # and second boxes, i.e. (0,0)-(500,500): IoU 10000/250000 = 0.04, C = U -> 1.04.
    completion = _think("(0,0),(100,100),(500,500),(600,600)")
    assert get_reward("grounding_giou")([completion], answer=[LISA_GOLD]) == [2.0]


def test_grounding_exact_match_decides_for_boxes_without_area() -> None:
    gold = "<answer>(5,5),(5,5)</answer>"
    # GIoU of a point with itself is 0 (no union, no enclosing area) -> 1.0; the exact string -> 2.0.
    assert get_reward("grounding_giou")([_think("(5,5),(5,5)"), _think("(5, 5),(5,5)")], answer=[gold] * 2) == [2.0, 1.0]


def test_grounding_gold_without_a_box_gives_none() -> None:
    giou = get_reward("grounding_giou")
    assert giou([_think("left"), _think("(1,2),(3,4)")], answer=["<answer>left</answer>", None]) == [None, None]


def test_math_verify_finds_nothing_in_lisa_golds() -> None:
    # Why grounding_giou's math-verify check (kept from the fork) never fires on LISA data: math-verify
    # extracts nothing from "(x1,y1),(x2,y2)", so even the gold itself is "no match".
    assert mv_equal(LISA_GOLD, LISA_GOLD, 5.0) is False
    assert mv_equal(LISA_GOLD, _think("(0,0),(100,100)"), 5.0) is False


@SETTINGS
@given(positions, positions)
def test_grounding_reward_is_in_zero_to_two(gold: list, pred: list) -> None:
    gold_text = f"<answer> ({gold[0]},{gold[1]}),({gold[2]},{gold[3]}) </answer>"
    completion = _think(f"({pred[0]},{pred[1]}),({pred[2]},{pred[3]})")
    (reward,) = get_reward("grounding_giou")([completion], answer=[gold_text])
    assert 0.0 <= reward <= 2.0


# ---------------------------------------------------------------------------------------------------
# math-verify runs under a hard time limit, in any thread
# ---------------------------------------------------------------------------------------------------

SLOW_FOR_SYMPY = "The answer is $9^{9^{9^{9}}}$."  # math-verify works on this until it is stopped


def test_math_verify_is_stopped_at_the_limit_in_the_main_thread() -> None:
    start = time.monotonic()
    assert get_reward("r1v_accuracy", timeout=0.5)([SLOW_FOR_SYMPY], answer=["5"]) == [0.0]
    assert time.monotonic() - start < 10.0  # generous: the limit is 0.5 s


def test_math_verify_runs_in_a_worker_outside_the_main_thread() -> None:
    results: dict[str, object] = {}

    def grade() -> None:
        acc = get_reward("r1v_accuracy", timeout=2.0)
        results["equal"] = acc(["The answer is $\\frac{8}{6}$."], answer=["\\frac{4}{3}"])  # starts the worker
        start = time.monotonic()
        results["slow"] = acc([SLOW_FOR_SYMPY], answer=["5"])
        results["slow_s"] = time.monotonic() - start
        results["after"] = acc(["The answer is $\\frac{8}{6}$."], answer=["\\frac{4}{3}"])  # a fresh worker

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert results["equal"] == [1.0]
    assert results["slow"] == [0.0]
    assert results["slow_s"] < 20.0  # generous: the limit is 2 s plus the worker's grace period
    assert results["after"] == [1.0]
