r"""Correctness-based rewards: ``accuracy``, ``cosine`` (length-scaled correctness), ``length`` (Kimi 1.5).

All three grade with :func:`gpgrl.rewards.grade_answer` against the ``answer`` column (or ``solution``)
and return ``None`` for a sample whose gold answer is empty, so that the trainer leaves it out rather
than rewarding it. (open-r1 gives such samples 1.0, or counts them as correct in ``len_reward``; a
constant reward carries no signal and biases the group mean, so this project skips them instead.)
Lengths are counted in characters of the completion text, as open-r1 does.

``semantics="math_verify_0.5.2"`` swaps the grader for the original GPG code's own answer check, as the
math-verify release it pinned ran it (:mod:`gpgrl.rewards.math_verify_compat`), including its rule for a
gold that parses to nothing (accuracy and cosine 1.0, length "correct"): the shipped recipes and the
translation of the original's YAML set it, so that they train on the rewards the original computed.
"""

from __future__ import annotations

import math
from typing import Any

from gpgrl.rewards._common import completion_text, gold_answers
from gpgrl.rewards.math_grader import grade_answer, is_gradable_gold
from gpgrl.rewards.math_verify_compat import original_verdict
from gpgrl.rewards.registry import RewardFn, register_reward

#: ``semantics`` of the answer-graded rewards: this project's grader, or the original GPG code's answer
#: check as math-verify 0.5.2 (the release its forks pin) ran it.
GPGRL, ORIGINAL = "gpgrl", "math_verify_0.5.2"
SEMANTICS = (GPGRL, ORIGINAL)
#: gpgrl's grader settings: semantics ORIGINAL uses none of them (and refuses them when changed).
GRADER_PARAMS = ("boxes", "fallback", "answer_tag", "number")


def _correctness(completions: list[Any], columns: dict[str, Any], timeout: float, boxes: str,
                 fallback: bool, answer_tag: bool = True, number: bool = False) -> list[bool | None]:
    gold = gold_answers(len(completions), columns)
    return [
        grade_answer(completion_text(c), g, timeout=timeout, boxes=boxes, fallback=fallback, answer_tag=answer_tag,
                     number=number)
        if is_gradable_gold(g) else None
        for c, g in zip(completions, gold, strict=True)
    ]


def _check_grading(boxes: str) -> None:
    if boxes not in ("all", "last"):
        raise ValueError(f"boxes must be 'all' (every \\boxed{{}}, the original's rule) or 'last', got {boxes!r}")


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")


def _check_semantics(semantics: str, **grader_params: tuple[object, object]) -> None:
    """``semantics`` is known, and with the original's, none of gpgrl's grader settings is changed."""
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be {GPGRL!r} (this project's grader) or {ORIGINAL!r} (the original "
                         f"GPG code's answer check, as math-verify 0.5.2 ran it), got {semantics!r}")
    changed = sorted(name for name, (value, default) in grader_params.items() if value != default)
    if semantics == ORIGINAL and changed:
        raise ValueError(f"{', '.join(changed)} set(s) gpgrl's grader, which semantics {ORIGINAL!r} does not use "
                         "(the original's rules decide what the answer is): remove it, or use semantics 'gpgrl'")


def _original_correctness(completions: list[Any], columns: dict[str, Any], timeout: float, boxed_gold: bool,
                          boxes: Any) -> list[bool | str | None]:
    """The original's verdict per completion: True / False, ``"unparsed"`` where its gold parses to nothing
    (the original then rewards 1.0), None where there is no gold at all (a missing value)."""
    gold = gold_answers(len(completions), columns)
    out: list[bool | str | None] = []
    for c, g in zip(completions, gold, strict=True):
        if g is None or (isinstance(g, float) and g != g):
            out.append(None)
            continue
        verdict = original_verdict(completion_text(c), g, boxed_gold=boxed_gold, boxes=boxes, timeout=timeout)
        out.append("unparsed" if verdict is None else verdict)
    return out


@register_reward("accuracy")
def make_accuracy(timeout: float = 5.0, boxes: str = "all", fallback: bool = False,
                  answer_tag: bool = True, number: bool = False, semantics: str = GPGRL,
                  boxed_gold: bool = True) -> RewardFn:
    r"""``accuracy``: 1.0 if the completion's final answer equals the gold answer, else 0.0.

    r = 1[grade_answer(completion, answer, boxes=boxes, fallback=fallback)]; None when the gold answer
    is empty.

    Args:
        timeout: seconds allowed to grade one completion (default 5.0); a timeout counts as wrong.
        boxes: "all" (default, the original GPG / open-r1 reward: every ``\boxed{}`` of the answer, as
            a list) or "last" (only the last box, as evaluation does).
        fallback: with neither a box nor an ``<answer>`` block, take the last expression or number
            (evaluation's rule). Off by default, as the original (only LaTeX after an answer anchor
            counts): a policy can learn to game a bare trailing number.
        answer_tag: grade an ``<answer>`` block that has no ``\boxed{}`` (default). ``False``: the original
            open-r1 / open-rs reward's math-verify settings, where ``<answer>3</answer>`` has no answer
            (0.0); the translation of the original's recipes and the shipped recipes set it.
        number: the answer must be a number written out, not an expression equal to the gold
            (``\boxed{639+517}`` for 1156 scores 0.0). Off by default, as the original; for tasks whose
            question is itself an expression of the answer (``builtin:arithmetic``), where math-verify's
            equivalence would reward restating the question.
        semantics: ``"gpgrl"`` (default): this project's grader with the settings above;
            ``"math_verify_0.5.2"``: the original GPG code's reward as math-verify 0.5.2 computed it
            (:mod:`gpgrl.rewards.math_verify_compat`; the settings above do not apply): with two boxes the
            last one counts, LaTeX after the word "answer" counts (``<answer>\frac{9}{32}</answer>`` is an
            answer, ``<answer>5</answer>`` is not), and a gold that parses to nothing gives 1.0.
        boxed_gold: with ``semantics="math_verify_0.5.2"``, read the gold as ``$\\boxed{gold}$`` (open-r1's
            ``accuracy_reward_lv35``, the Qwen2.5-Math-7B runs; default) or, ``False``, as written
            (``accuracy_reward``, whose bare gold ``5`` has no LaTeX: 1.0 for every answer).

    >>> acc = make_accuracy()
    >>> acc(["so \\boxed{\\frac12}", "\\boxed{3}", "\\boxed{1}"], answer=["0.5", "2", ""])
    [1.0, 0.0, None]
    >>> acc(["\\boxed{(2,2)} and \\boxed{(6,2)}", "so 7"], answer=["(2, 2), (6, 2)", "7"])
    [1.0, 0.0]
    >>> acc(["<answer>3</answer>"], answer=["3"]), make_accuracy(answer_tag=False)(["<answer>3</answer>"], answer=["3"])
    ([1.0], [0.0])
    >>> acc(["\\boxed{639+517}"], answer=["1156"]), make_accuracy(number=True)(["\\boxed{639+517}"], answer=["1156"])
    ([1.0], [0.0])
    >>> two_boxes = "First \\boxed{7}, finally \\boxed{9}."
    >>> acc([two_boxes], answer=["9"]), make_accuracy(semantics="math_verify_0.5.2")([two_boxes], answer=["9"])
    ([0.0], [1.0])
    """
    _check_timeout(timeout)
    _check_grading(boxes)
    _check_semantics(semantics, boxes=(boxes, "all"), fallback=(fallback, False), answer_tag=(answer_tag, True),
                     number=(number, False))
    if semantics == GPGRL and not boxed_gold:
        raise ValueError("boxed_gold applies to semantics 'math_verify_0.5.2' only; remove it")

    def accuracy(completions: list[Any], **columns: Any) -> list[float | None]:
        if semantics == ORIGINAL:
            return [None if ok is None else 1.0 if ok == "unparsed" else float(ok)
                    for ok in _original_correctness(completions, columns, timeout, boxed_gold, "all")]
        return [None if ok is None else float(ok)
                for ok in _correctness(completions, columns, timeout, boxes, fallback, answer_tag, number)]

    return accuracy


def cosine_scaled(
    length: int,
    correct: bool,
    *,
    min_value_wrong: float,
    max_value_wrong: float,
    min_value_correct: float,
    max_value_correct: float,
    max_len: int,
    clip_len: bool = True,
) -> float:
    """The cosine schedule of :func:`make_cosine` for one completion (see there).

    >>> cosine_scaled(0, True, min_value_wrong=0.0, max_value_wrong=-0.5, min_value_correct=0.5,
    ...               max_value_correct=1.0, max_len=1000)
    1.0
    """
    progress = length / max_len
    if clip_len:
        progress = min(progress, 1.0)
    cosine = math.cos(progress * math.pi)
    if correct:
        lo, hi = min_value_correct, max_value_correct
    else:
        # open-r1 swaps the wrong-answer bounds: length 0 -> min_value_wrong, max_len -> max_value_wrong.
        lo, hi = max_value_wrong, min_value_wrong
    return lo + 0.5 * (hi - lo) * (1.0 + cosine)


@register_reward("cosine")
def make_cosine(
    min_value_wrong: float = 0.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_len: int = 1000,
    clip_len: bool = False,
    timeout: float = 5.0,
    boxes: str = "all",
    fallback: bool = False, answer_tag: bool = True,
    semantics: str = GPGRL,
) -> RewardFn:
    r"""``cosine``: correctness scaled by completion length on a cosine schedule (open-r1).

    From Yeo et al. 2025 (arXiv 2502.03373) as open-r1 implements it. With L the completion length in characters and c = cos(pi * min(L / max_len, 1))::

        correct: r = min_value_correct + 0.5 * (max_value_correct - min_value_correct) * (1 + c)
        wrong:   r = max_value_wrong   + 0.5 * (min_value_wrong   - max_value_wrong)   * (1 + c)

    so a correct answer earns ``max_value_correct`` at L = 0 falling to ``min_value_correct`` at
    ``max_len``, and a wrong answer earns ``min_value_wrong`` at L = 0 moving to ``max_value_wrong``
    at ``max_len`` (open-r1 swaps the wrong-answer bounds exactly like this).

    Defaults are open-r1's recipe defaults (``GRPOScriptArguments``: min_value_wrong=0.0,
    max_value_wrong=-0.5, min_value_correct=0.5, max_value_correct=1.0, max_len=1000), so
    ``reward_funcs: [cosine]`` means the same here. Note what they imply: a wrong answer gets 0.0 when
    empty and -0.5 at max_len, i.e. *longer* wrong answers are penalised more. The paper's intent
    (shorter wrong answers penalised more, open-r1's function-level defaults) is
    ``min_value_wrong=-1.0, max_value_wrong=-0.5``.

    ``clip_len=False`` (default) is the original's signal: lengths are not clipped, so past ``max_len``
    the cosine turns back up (a completion of 2 * max_len scores like an empty one). ``clip_len=True``
    scores every length beyond ``max_len`` as ``max_len`` (a monotone schedule). Correctness is graded
    as in ``accuracy`` (``boxes``, ``fallback``, ``answer_tag``). Samples with an empty gold answer give None.
    ``semantics="math_verify_0.5.2"``: correctness as the original cosine reward's math-verify 0.5.2 call
    decided it (the gold read as written; a box inside ``$...$`` is left to the LaTeX parser), and 1.0,
    not the schedule, where the gold parses to nothing.

    >>> cos = make_cosine(max_len=100)
    >>> cos(["\\boxed{7}" + "x" * 41, "\\boxed{8}" + "x" * 41], answer=["7", "7"])
    [0.75, -0.25]
    """
    _check_timeout(timeout)
    _check_grading(boxes)
    _check_semantics(semantics, boxes=(boxes, "all"), fallback=(fallback, False), answer_tag=(answer_tag, True))
    if max_len <= 0:
        raise ValueError(f"cosine: max_len must be > 0, got {max_len}")
    bounds = dict(
        min_value_wrong=min_value_wrong,
        max_value_wrong=max_value_wrong,
        min_value_correct=min_value_correct,
        max_value_correct=max_value_correct,
        max_len=max_len,
        clip_len=clip_len,
    )

    def cosine(completions: list[Any], **columns: Any) -> list[float | None]:
        if semantics == ORIGINAL:
            verdicts = _original_correctness(completions, columns, timeout, False, True)
            return [None if ok is None else 1.0 if ok == "unparsed"
                    else cosine_scaled(len(completion_text(c)), bool(ok), **bounds)
                    for c, ok in zip(completions, verdicts, strict=True)]
        correct = _correctness(completions, columns, timeout, boxes, fallback, answer_tag)
        return [
            None if ok is None else cosine_scaled(len(completion_text(c)), ok, **bounds)
            for c, ok in zip(completions, correct, strict=True)
        ]

    return cosine


def _group_key(prompt: Any) -> Any:
    return prompt if isinstance(prompt, str) else repr(prompt)


@register_reward("length")
def make_length(timeout: float = 5.0, boxes: str = "all", fallback: bool = False, answer_tag: bool = True,
                semantics: str = GPGRL) -> RewardFn:
    r"""``length``: Kimi 1.5 length reward (arXiv 2501.12599, sec. 2.3.3), as in open-r1's ``len_reward``.

    Within a group of completions of the same prompt, with lengths L_i in characters::

        lambda_i = 0.5 - (L_i - min_j L_j) / (max_j L_j - min_j L_j)
        correct: r_i = lambda_i          wrong: r_i = min(0, lambda_i)

    and r_i = 0 for the whole group when all lengths are equal. So the shortest correct answer gets
    +0.5, the longest -0.5, and a wrong answer is never rewarded for being short.

    Groups are formed from the ``prompts`` column (completions with equal prompts form a group); without
    it the whole batch is one group, which is what open-r1 does (it always uses the whole batch passed
    to it). Samples with an empty gold answer give None and do not take part in min/max.
    ``semantics="math_verify_0.5.2"``: correctness as the original ``len_reward``'s math-verify 0.5.2 call
    decided it (as ``cosine``'s), a gold that parses to nothing counting as correct, as there.

    >>> kimi = make_length()
    >>> kimi(["\\boxed{2}", "\\boxed{2} " + "a" * 10, "\\boxed{3} " + "a" * 21], answer=["2"] * 3)
    [0.5, 0.0, -0.5]
    """
    _check_timeout(timeout)
    _check_grading(boxes)
    _check_semantics(semantics, boxes=(boxes, "all"), fallback=(fallback, False), answer_tag=(answer_tag, True))

    def length(completions: list[Any], **columns: Any) -> list[float | None]:
        correct: list[bool | None]
        if semantics == ORIGINAL:
            correct = [None if ok is None else ok is True or ok == "unparsed"
                       for ok in _original_correctness(completions, columns, timeout, False, True)]
        else:
            correct = _correctness(completions, columns, timeout, boxes, fallback, answer_tag)
        prompts = columns.get("prompts")
        keys = [_group_key(p) for p in prompts] if prompts is not None else [0] * len(completions)
        if len(keys) != len(completions):
            raise ValueError(f"column 'prompts' has {len(keys)} items for {len(completions)} completions")
        lengths = [len(completion_text(c)) for c in completions]
        groups: dict[Any, list[int]] = {}
        for i, key in enumerate(keys):
            if correct[i] is not None:
                groups.setdefault(key, []).append(i)
        rewards: list[float | None] = [None] * len(completions)
        for members in groups.values():
            lo = min(lengths[i] for i in members)
            hi = max(lengths[i] for i in members)
            for i in members:
                if hi == lo:
                    rewards[i] = 0.0
                    continue
                lam = 0.5 - (lengths[i] - lo) / (hi - lo)
                rewards[i] = lam if correct[i] else min(0.0, lam)
        return rewards

    return length
