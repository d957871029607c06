r"""Rewards of the GPG paper's vision-language runs, with the semantics of the original forks.

The GPG code base trains vision-language models in three forks of open-r1, each with its own rewards:

* **R1-V** (GEOQA geometry, counting): ``visual_format`` + ``r1v_accuracy``.
* **VisualThinker-R1-Zero** (SAT spatial reasoning, CV-Bench): ``visual_format`` + ``choice_accuracy``,
  optionally ``token_length``.
* **Visual-RFT** (few-shot classification, COCO/LVIS detection, LISA grounding): ``visual_format`` +
  ``classification``; ``detection_iou`` + ``detection_confidence``; ``grounding_giou``.

Every function reads the completion text and the gold answer column (``answer``, else ``solution``), and
returns ``None`` for a sample whose gold answer is empty or unusable (the trainer then leaves the sample
out) instead of a constant reward. ``docs/vision_rewards.md`` gives each formula, the original fork's
file and behaviour, and a table of every place where this module deliberately differs from it.

The forks' accuracy rewards first call math-verify on the *whole* completion against the whole gold
string. Model output is untrusted, so every math-verify call here goes through one function,
:func:`mv_equal`, which runs it under a hard wall-clock limit (see :mod:`gpgrl.rewards._deadline`).

>>> from gpgrl.rewards import get_reward
>>> get_reward("r1v_accuracy")(["<think>angle sum</think> <answer>140°</answer>", "<answer>40°</answer>"],
...                            answer=["140°", "140°"])
[1.0, 0.0]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from math_verify import parse, verify

from gpgrl.rewards._common import completion_text, gold_answers
from gpgrl.rewards._deadline import limited_call
from gpgrl.rewards.boxes import Box, box_iou, first_grounding_box, generalized_iou  # the one box geometry
from gpgrl.rewards.registry import RewardFn, register_reward

__all__ = [
    "Box",
    "answer_content",
    "box_iou",
    "detection_scores",
    "first_grounding_box",
    "generalized_iou",
    "match_detections",
    "multiple_choice_letter",
    "parse_detection_boxes",
]


# ----------------------------------------------------------------------------------------------------
# math-verify, always under a time limit
# ----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _parse_gold(gold_text: str) -> tuple:
    """math-verify parse of a gold string (cached: each gold is graded G times per step)."""
    return tuple(parse(gold_text, parsing_timeout=None))  # type: ignore[arg-type]


def _mv_match(gold_text: str, pred_text: str) -> bool:
    """The forks' check ``verify(parse(completion), parse(solution)) > 0``, with no time limit of its own.

    Only ever called through :func:`mv_equal`. The forks pass the completion in math-verify's ``gold``
    slot and the solution in its ``target`` slot; that order is kept so that the checks match theirs.
    math-verify's own ``signal.alarm`` timeouts are switched off (they fail outside the main thread and
    re-arm per comparison): the limit is applied around the whole call instead.
    """
    try:
        gold = _parse_gold(gold_text)
        if not gold:
            return False
        pred = parse(pred_text, parsing_timeout=None)  # type: ignore[arg-type]
        return bool(pred) and bool(verify(pred, list(gold), timeout_seconds=None))  # type: ignore[arg-type]
    except Exception:  # math-verify/sympy errors on odd input: not a match
        return False


def mv_equal(gold_text: str, pred_text: str, timeout: float) -> bool:
    """Whether math-verify finds the same answer in ``pred_text`` as in ``gold_text``, within ``timeout`` s.

    The single place where this module calls math-verify: in a killable worker process under a hard
    limit (:func:`gpgrl.rewards._deadline.limited_call`). A timeout, a parser error or a dead worker
    count as "no match".
    """
    return bool(limited_call("gpgrl.rewards.vision:_mv_match", (gold_text, pred_text), timeout, False))


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")


# ----------------------------------------------------------------------------------------------------
# Text helpers
# ----------------------------------------------------------------------------------------------------

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_content(text: str) -> str:
    r"""The first ``<answer>...</answer>`` block's content, stripped; the whole text stripped if none.

    This is how all three forks read both the completion and the gold answer, except that their regex
    has no DOTALL flag (a block spanning lines falls back to the whole text there; see the docs).

    >>> answer_content("<think>hm</think> <answer>\n 140° \n</answer>")
    '140°'
    >>> answer_content("  no tags ")
    'no tags'
    """
    match = _ANSWER.search(text)
    return (match.group(1) if match else text).strip()


def _gold_text(gold: Any) -> str | None:
    """A gold answer as text; None when it is missing, empty, or not a string or number."""
    if isinstance(gold, bool) or gold is None:
        return None
    if isinstance(gold, int):
        return str(gold)
    if isinstance(gold, float):
        if not math.isfinite(gold):
            return None
        return str(int(gold)) if gold.is_integer() else repr(gold)
    if isinstance(gold, str) and answer_content(gold):
        return gold
    return None


def _text_reward(
    completions: list[Any],
    columns: dict[str, Any],
    timeout: float,
    score: Callable[[str, str], bool],
    math_verify_first: bool = True,
) -> list[float | None]:
    """1.0 if math-verify matches the whole completion to the gold (when ``math_verify_first``), else
    ``score(answer, gold answer)``; None where the gold is unusable."""

    def one(text: str, gold: Any, gold_text: str) -> float:
        if math_verify_first and mv_equal(gold_text, text, timeout):
            return 1.0
        return float(score(answer_content(text), answer_content(gold_text)))

    return _each(completions, columns, _gold_text, one)


def _each(completions: list[Any], columns: dict[str, Any], read_gold: Callable[[Any], Any],
          score: Callable[[str, Any, Any], float]) -> list[float | None]:
    """``score(completion text, gold, read_gold(gold))`` per completion; None where ``read_gold`` gives None
    (a gold that is empty or cannot be read: the trainer leaves the sample out)."""
    out: list[float | None] = []
    for completion, gold in zip(completions, gold_answers(len(completions), columns), strict=True):
        parsed = read_gold(gold)
        out.append(None if parsed is None else score(completion_text(completion), gold, parsed))
    return out


# ----------------------------------------------------------------------------------------------------
# Format
# ----------------------------------------------------------------------------------------------------

# The forks' pattern, used with re.fullmatch and DOTALL: nothing may precede <think> or follow </answer>.
_VISUAL_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


@register_reward("visual_format")
def make_visual_format(prompt_opens_think: bool = False) -> RewardFn:
    r"""``visual_format``: 1.0 if the whole completion is ``<think>...</think>`` then ``<answer>...</answer>``.

    r = 1[re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, DOTALL)], the regex, flags
    and fullmatch of all three forks (R1-V, Visual-RFT, VisualThinker-R1-Zero). Only whitespace may
    separate the two blocks; nothing may precede ``<think>`` or follow ``</answer>``.

    Args:
        prompt_opens_think: the prompt already ends with ``<think>`` (VisualThinker's base-model
            prompt), so ``"<think>"`` is put before the completion before matching, as that fork does.

    >>> make_visual_format()(["<think>a</think>\n<answer>B</answer>", " <think>a</think><answer>B</answer>"])
    [1.0, 0.0]
    >>> make_visual_format(prompt_opens_think=True)(["a</think> <answer>B</answer>"])
    [1.0]
    """
    prefix = "<think>" if prompt_opens_think else ""

    def visual_format(completions: list[Any], **columns: Any) -> list[float | None]:
        return [1.0 if _VISUAL_FORMAT.fullmatch(prefix + completion_text(c)) else 0.0 for c in completions]

    return visual_format


# ----------------------------------------------------------------------------------------------------
# Text answers: R1-V, VisualThinker, Visual-RFT classification
# ----------------------------------------------------------------------------------------------------


@register_reward("r1v_accuracy")
def make_r1v_accuracy(timeout: float = 5.0) -> RewardFn:
    r"""``r1v_accuracy`` (R1-V: GEOQA, counting): 1.0 if the answer is right, else 0.0.

    r = 1 if math-verify finds the gold's answer in the whole completion (``verify(parse(completion),
    parse(gold))``, as the fork calls it), else 1[answer == gold answer], where "answer" is the first
    ``<answer>`` block's content, stripped (the whole text if there is none), for both sides. None when
    the gold answer is empty.

    Note what the fork's first check implies: math-verify reads the *whole* completion, reasoning
    included, and it extracts nothing from a bare ``<answer>140</answer>``; so a GEOQA gold with a unit
    (``140°``, ``3cm``) is matched either by the exact string in the answer block or by a value that
    math-verify finds in the text (e.g. "... so the angle is 140.").

    Args:
        timeout: seconds allowed for the math-verify check of one completion; a timeout is "no match".

    >>> acc = make_r1v_accuracy()
    >>> acc(["<think>...</think><answer>3cm</answer>", "<think>...</think><answer>3</answer>"], answer=["3cm"] * 2)
    [1.0, 0.0]
    """
    _check_timeout(timeout)

    def r1v_accuracy(completions: list[Any], **columns: Any) -> list[float | None]:
        return _text_reward(completions, columns, timeout, lambda answer, gold: answer == gold)

    return r1v_accuracy


# A standalone option letter: A-H with a space, "[" or "(" (or the start) before it, and a space, "]" or
# ")" (or the end) after it. Lookarounds, so that neighbouring letters do not hide each other (the fork
# consumes the delimiters, so in "A B" it only sees A).
_OPTION_LETTER = re.compile(r"(?:^|(?<=[\s\[(]))([A-H])(?=[\s\])]|$)")
_GOLD_LETTER = re.compile(r"([A-H])|\(([A-H])\)")  # "B" or "(B)"


def multiple_choice_letter(answer: str) -> str | None:
    """The last standalone option letter A-H in an answer (VisualThinker's ``extract_letters(...)[-1]``).

    >>> multiple_choice_letter("(B) is wrong, so the answer is C")
    'C'
    >>> multiple_choice_letter("A B")  # the fork reads "A" here (see docs/vision_rewards.md)
    'B'
    >>> multiple_choice_letter("Answer: C.") is None  # "C." is not standalone
    True
    """
    letters = _OPTION_LETTER.findall(answer)
    return letters[-1] if letters else None


@register_reward("choice_accuracy")
def make_choice_accuracy(timeout: float = 5.0) -> RewardFn:
    r"""``choice_accuracy`` (VisualThinker-R1-Zero: SAT, CV-Bench): 1.0 if the answer or option is right.

    r = 1 if math-verify matches the whole completion to the gold (as in ``r1v_accuracy``), or the
    answer equals the gold answer (both stripped, ``<answer>`` content or the whole text), or the last
    standalone letter A-H in the answer (:func:`multiple_choice_letter`) is the gold's letter; else 0.
    The gold's letter is the gold answer when that is a single letter ``B`` (as in the fork) or ``(B)``
    (CV-Bench's form; the fork never matches that one). None when the gold answer is empty.

    Args:
        timeout: seconds allowed for the math-verify check of one completion; a timeout is "no match".

    >>> acc = make_choice_accuracy()
    >>> acc(["<answer>left</answer>", "<answer>The answer is (B)</answer>", "<answer>B.</answer>"],
    ...     answer=["left", "(B)", "B"])
    [1.0, 1.0, 0.0]
    """
    _check_timeout(timeout)

    def score(answer: str, gold: str) -> bool:
        if answer == gold:
            return True
        gold_letter = _GOLD_LETTER.fullmatch(gold)
        if gold_letter is None:
            return False
        return multiple_choice_letter(answer) == (gold_letter.group(1) or gold_letter.group(2))

    def choice_accuracy(completions: list[Any], **columns: Any) -> list[float | None]:
        return _text_reward(completions, columns, timeout, score)

    return choice_accuracy


@lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # network, missing files, unknown id: all need the same fix
        raise ValueError(
            f"token_length: cannot load tokenizer {name!r} ({type(e).__name__}: {e}); pass "
            "params: {tokenizer: <hub id or local path of the policy's tokenizer>}"
        ) from e


@register_reward("token_length")
def make_token_length(tokenizer: str = "Qwen/Qwen2-VL-2B-Instruct", per_token: float = 0.001) -> RewardFn:
    r"""``token_length`` (VisualThinker-R1-Zero's optional ``length`` reward): r = per_token * #tokens.

    The number of tokens of the completion text as ``tokenizer`` encodes it (``tokenizer(text)``, as the
    fork calls it). Unbounded and independent of correctness: it pays for longer answers. The fork
    registers it as ``length``; its SAT training script does not enable it.

    Args:
        tokenizer: hub id or local path, loaded on first use (the fork hard-codes Qwen2-VL-2B-Instruct's
            processor and reloads it on every call).
        per_token: reward per token (the fork: 0.001).
    """
    if not tokenizer:
        raise ValueError("token_length: tokenizer must name a tokenizer (hub id or local path)")
    if not math.isfinite(per_token):
        raise ValueError(f"token_length: per_token must be a finite number, got {per_token}")

    def token_length(completions: list[Any], **columns: Any) -> list[float | None]:
        tok = _load_tokenizer(tokenizer)
        return [per_token * len(tok(completion_text(c))["input_ids"]) for c in completions]

    return token_length


def _squash(s: str) -> str:
    return s.replace(" ", "").replace("_", "").lower()


@register_reward("classification")
def make_classification(
    empty_answer_matches: bool = False, math_verify_first: bool = False, timeout: float = 5.0
) -> RewardFn:
    r"""``classification`` (Visual-RFT few-shot classification): 1.0 if the answer names the gold class.

    r = 1[g in a or a in g] with a, g the answer and the gold answer (``<answer>`` content or whole
    text, stripped), lower-cased with spaces and underscores removed; so "Boeing 737" is accepted for
    "boeing_737", and so is "boeing" (a part of the name). None when the gold answer is empty.

    Visual-RFT's reward differs in two ways, both available for reproducing its runs exactly
    (``empty_answer_matches=True, math_verify_first=True``):

    Args:
        empty_answer_matches: an empty answer (``<answer></answer>``, or only spaces and underscores)
            is contained in every class name, so the fork gives it 1.0. Off by default: it scores 0.0.
        math_verify_first: the fork first runs math-verify on the whole completion against the gold
            (as ``r1v_accuracy`` does) and gives 1.0 on a match. math-verify reads the numbers in class
            names, so "Falcon 2000" matches the gold "Saab 2000" (36 such ordered pairs of different
            classes among FGVC-Aircraft's and Stanford Cars' names); off by default.
        timeout: seconds allowed for that math-verify check; a timeout is "no match".

    >>> cls = make_classification()
    >>> cls(["<answer>Boeing 737</answer>", "<answer>boeing</answer>", "<answer></answer>"], answer=["boeing_737"] * 3)
    [1.0, 1.0, 0.0]
    >>> make_classification(empty_answer_matches=True)(["<answer></answer>"], answer=["boeing_737"])
    [1.0]
    """
    _check_timeout(timeout)

    def score(answer: str, gold: str) -> bool:
        a, g = _squash(answer), _squash(gold)
        if not a and not empty_answer_matches:
            return False
        return g in a or a in g

    def classification(completions: list[Any], **columns: Any) -> list[float | None]:
        return _text_reward(completions, columns, timeout, score, math_verify_first)

    return classification


# ----------------------------------------------------------------------------------------------------
# Boxes: reading them from answers (the geometry, IoU and GIoU, is gpgrl.rewards.boxes)
# ----------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float from a JSON number, else None (bools, strings, NaN, inf, huge ints)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _as_box(position: Any) -> Box | None:
    if not isinstance(position, list | tuple) or len(position) != 4:
        return None
    numbers = [_number(v) for v in position]
    if any(v is None for v in numbers):
        return None
    return tuple(numbers)  # type: ignore[return-value]


def _confidence(value: Any) -> float:
    """``float(value)``, or 0.0 if that fails or gives NaN (Visual-RFT's rule)."""
    try:
        c = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return 0.0 if math.isnan(c) else c


def _answer_or_truncated(text: str) -> str:
    """Text after the first ``<answer>`` up to the next ``</answer>`` or the end; the whole text if none."""
    start = text.find("<answer>")
    if start < 0:
        return text
    start += len("<answer>")
    end = text.find("</answer>", start)
    return text[start : end if end >= 0 else len(text)]


def _load_box_list(text: str) -> Any:
    """Visual-RFT's repairs of a model's box list, then ``json.loads``; None if it still does not parse.

    In order: take the answer (see :func:`_answer_or_truncated`) and strip it; ``[[`` -> ``[``,
    ``]]`` -> ``]``; drop newlines; if it does not end with ``]`` (cut off mid-list), drop everything
    after the last ``},`` and close with ``}]``; single quotes -> double quotes.
    """
    s = _answer_or_truncated(text).strip()
    s = s.replace("[[", "[").replace("]]", "]").replace("\n", "")
    if not s.endswith("]"):
        s = s.rsplit("},", 1)[0] + "}]"
    s = s.replace("'", '"')
    try:
        return json.loads(s)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so are over-long ints
        return None


def parse_detection_boxes(text: str) -> list[tuple[Box, float]] | None:
    r"""The predicted boxes in a completion, as Visual-RFT reads them: ``[(box, confidence), ...]``.

    The answer must be a JSON list (single quotes allowed) of ``{"Position": [x1, y1, x2, y2],
    "Confidence": c}``, after the repairs of :func:`_load_box_list`. Duplicate positions are dropped
    (the first one is kept, as the fork's ``remove_duplicates`` does). A confidence that is not a number,
    or is NaN or missing, counts as 0.0. Returns None when the answer is not such a list (not JSON, not a
    list, an item that is not a dict or has no 4-number ``Position``); ``[]`` is a valid empty answer.

    >>> parse_detection_boxes("<answer>[{'Position': [1, 2, 3, 4], 'Confidence': 0.9}, {'Position': [5, 6")
    [((1.0, 2.0, 3.0, 4.0), 0.9)]
    >>> parse_detection_boxes("<answer>[1, 2, 3, 4]</answer>") is None
    True
    """
    items = _load_box_list(text)
    if not isinstance(items, list):
        return None
    boxes: list[tuple[Box, float]] = []
    seen: set[tuple[Any, ...]] = set()
    for item in items:
        if not isinstance(item, dict):
            return None
        box = _as_box(item.get("Position"))
        if box is None:
            return None
        if box in seen:
            continue
        seen.add(box)
        boxes.append((box, _confidence(item.get("Confidence", 0.0))))
    return boxes


def _gold_boxes(gold: Any) -> list[Box] | None:
    """Gold boxes from a string in the fork's format (tags optional) or a list of dicts / 4-number lists."""
    if isinstance(gold, str):
        items = _load_box_list(gold)
    elif isinstance(gold, list | tuple):
        items = list(gold)
    else:
        return None
    if not isinstance(items, list):
        return None
    boxes = []
    for item in items:
        box = _as_box(item.get("Position") if isinstance(item, dict) else item)
        if box is None:
            return None
        boxes.append(box)
    return boxes


def match_detections(
    predictions: list[tuple[Box, float]], gold: list[Box], iou_threshold: float = 0.5
) -> list[tuple[float, float]]:
    """Greedy matching of Visual-RFT's detection reward: ``[(iou or 0, confidence), ...]``, one per prediction.

    Predictions are visited by decreasing confidence (ties keep their order); each takes the unmatched
    gold box with the highest IoU (the first on ties), and is matched if that IoU is > ``iou_threshold``;
    an unmatched prediction gets IoU 0.

    >>> match_detections([((0, 0, 10, 10), 0.2), ((0, 0, 10, 8), 0.9)], [(0, 0, 10, 10)])
    [(0.8, 0.9), (0.0, 0.2)]
    """
    order = sorted(predictions, key=lambda p: p[1], reverse=True)  # stable: ties keep their order
    taken: set[int] = set()
    results: list[tuple[float, float]] = []
    for box, confidence in order:
        best_iou, best = 0.0, -1
        for j, g in enumerate(gold):
            if j not in taken:
                iou = box_iou(box, g)
                if iou > best_iou:
                    best_iou, best = iou, j
        if best_iou > iou_threshold:
            taken.add(best)
            results.append((best_iou, confidence))
        else:
            results.append((0.0, confidence))
    return results


def detection_scores(
    predictions: list[tuple[Box, float]], gold: list[Box], iou_threshold: float = 0.5
) -> tuple[float, float]:
    """``(iou_reward, confidence_reward)`` of Visual-RFT's detection rewards, both in [0, 1].

    With the matches of :func:`match_detections` and c clamped to [0, 1]::

        iou_reward        = sum of matched IoUs / max(#gold, #predictions)
        confidence_reward = mean over predictions of (c if matched else 1 - c)

    No predictions and no gold boxes: (1.0, 1.0), the right answer "nothing there". No predictions but
    some gold boxes: (0.0, 0.0).

    >>> detection_scores([((0, 0, 100, 80), 0.75), ((500, 500, 600, 600), 0.25)], [(0, 0, 100, 100)])
    (0.4, 0.75)
    """
    if not predictions:
        return (0.0, 0.0) if gold else (1.0, 1.0)
    results = match_detections(predictions, gold, iou_threshold)
    iou_reward = sum(iou for iou, _ in results) / max(len(gold), len(results))
    clamped = [(iou, min(1.0, max(0.0, c))) for iou, c in results]
    confidence_reward = sum(c if iou > 0 else 1.0 - c for iou, c in clamped) / len(clamped)
    return iou_reward, confidence_reward


def _detection_reward(
    completions: list[Any],
    columns: dict[str, Any],
    *,
    which: int,
    iou_threshold: float,
    math_verify_first: bool,
    timeout: float,
) -> list[float | None]:
    def one(text: str, gold: Any, gold_boxes: Any) -> float:
        if math_verify_first and isinstance(gold, str) and mv_equal(gold, text, timeout):
            return 1.0
        predictions = parse_detection_boxes(text)
        return 0.0 if predictions is None else detection_scores(predictions, gold_boxes, iou_threshold)[which]

    return _each(completions, columns, _gold_boxes, one)


def _detection_fn(name: str, which: int, iou_threshold: float, math_verify_first: bool, timeout: float) -> RewardFn:
    """The reward ``name``: item ``which`` of :func:`detection_scores` (0 IoU, 1 confidence), parameters checked."""
    _check_timeout(timeout)
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"{name}: iou_threshold must be in [0, 1), got {iou_threshold}")

    def reward(completions: list[Any], **columns: Any) -> list[float | None]:
        return _detection_reward(completions, columns, which=which, iou_threshold=iou_threshold,
                                 math_verify_first=math_verify_first, timeout=timeout)

    reward.__name__ = reward.__qualname__ = name
    return reward


@register_reward("detection_iou", aliases=("accuracy_iou",))
def make_detection_iou(iou_threshold: float = 0.5, math_verify_first: bool = False, timeout: float = 5.0) -> RewardFn:
    """``detection_iou`` (Visual-RFT detection, its ``accuracy_iou``): matched IoU per box, in [0, 1].

    r = sum of matched IoUs / max(#gold boxes, #predicted boxes), see :func:`detection_scores`.

    The answer is a JSON list of ``{'Position': [x1, y1, x2, y2], 'Confidence': c}`` (read by
    :func:`parse_detection_boxes`, with Visual-RFT's repairs of malformed output); the gold column
    (``answer``/``solution``) holds the gold boxes in the same format (Visual-RFT's
    ``<answer>[{'Position': [...], 'Confidence': 1}, ...]</answer>``; tags optional), or as a list of
    such dicts or of 4-number lists. An answer that cannot be read scores 0.0; a gold that cannot be read
    gives None.

    Args:
        iou_threshold: a prediction matches a gold box if their IoU is > this (the fork: 0.5).
        math_verify_first: the fork's behaviour: first run math-verify on the whole completion against
            the gold string and give 1.0 on a match. math-verify reads one number out of a box list
            (``[999, 303, 5, 5]`` "equals" ``[254, 303, 291, 365]``), so this is off by default; set it
            to reproduce Visual-RFT's runs exactly.
        timeout: seconds allowed for that math-verify check.

    >>> gold = "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 1}]</answer>"
    >>> make_detection_iou()(["<answer>[{'Position': [0, 0, 100, 80], 'Confidence': 0.9}]</answer>"], answer=[gold])
    [0.8]
    """
    return _detection_fn("detection_iou", 0, iou_threshold, math_verify_first, timeout)


@register_reward("detection_confidence", aliases=("accuracy_confidence",))
def make_detection_confidence(
    iou_threshold: float = 0.5, math_verify_first: bool = False, timeout: float = 5.0
) -> RewardFn:
    """``detection_confidence`` (Visual-RFT detection, its ``accuracy_confidence``): calibration, in [0, 1].

    r = mean over predicted boxes of (c if the box matches a gold box else 1 - c), with c the box's
    confidence clamped to [0, 1], see :func:`detection_scores`. Input formats and parameters: as
    ``detection_iou``.

    >>> gold = "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 1}]</answer>"
    >>> pred = "<answer>[{'Position': [0, 0, 100, 80], 'Confidence': 0.75}, {'Position': [0, 0, 5, 5], 'Confidence': 0.5}]"
    >>> make_detection_confidence()([pred + "</answer>"], answer=[gold])  # (0.75 + (1 - 0.5)) / 2
    [0.625]
    """
    return _detection_fn("detection_confidence", 1, iou_threshold, math_verify_first, timeout)


@register_reward("grounding_giou")
def make_grounding_giou(timeout: float = 5.0) -> RewardFn:
    r"""``grounding_giou`` (Visual-RFT LISA reasoning grounding): GIoU of the answer box + 1, in [0, 2].

    With a = the answer (``<answer>`` content or whole text, stripped) and g the gold answer::

        r = 1.0                          if math-verify matches the whole completion to the gold
        r = 2.0                          elif a == g (exact string)
        r = GIoU(box(a), box(g)) + 1     elif a has a box
        r = 0.0                          otherwise

    where box() is the first ``(x1,y1),(x2,y2)`` in the text (integers; the fork's 0-1000 scale, which
    GIoU does not depend on). Corners may come in either order (see :func:`generalized_iou`). None when
    the gold has no box. With several boxes in the answer the first one counts: the fork pairs the
    first box's top-left corner with the *second* box's top-left corner instead (a bug, fixed here).
    math-verify finds nothing in a LISA gold ``<answer> (x1,y1),(x2,y2) </answer>``, so for such golds
    its check never fires; it is kept because the fork has it.

    Args:
        timeout: seconds allowed for the math-verify check of one completion; a timeout is "no match".

    >>> giou = make_grounding_giou()
    >>> gold = "<answer> (0,0),(100,100) </answer>"
    >>> [round(r, 4) for r in giou(["<answer>(50,0),(150,100)</answer>", "<answer>(200,0),(300,100)</answer>",
    ...                             "<answer>(0,0),(100,100)</answer>", "<answer>none</answer>"], answer=[gold] * 4)]
    [1.3333, 0.6667, 2.0, 0.0]
    """
    _check_timeout(timeout)

    def grounding_giou(completions: list[Any], **columns: Any) -> list[float | None]:
        golds = gold_answers(len(completions), columns)
        rewards: list[float | None] = []
        for completion, gold in zip(completions, golds, strict=True):
            gold_text = gold if isinstance(gold, str) else None
            gold_answer = answer_content(gold_text) if gold_text is not None else ""
            gold_box = first_grounding_box(gold_answer)
            if gold_text is None or gold_box is None:
                rewards.append(None)
                continue
            text = completion_text(completion)
            if mv_equal(gold_text, text, timeout):
                rewards.append(1.0)
                continue
            answer = answer_content(text)
            if answer == gold_answer:
                rewards.append(2.0)
                continue
            box = first_grounding_box(answer)
            rewards.append(0.0 if box is None else generalized_iou(gold_box, box) + 1.0)
        return rewards

    return grounding_giou
