r"""Format and style rewards: ``format``, ``tag_count``, ``reasoning_steps``, ``repetition_penalty``.

They read only the completion text (no gold answer) and follow open-r1's definitions, so recipes that
name them mean the same thing here.
"""

from __future__ import annotations

import re
from typing import Any

from gpgrl.rewards._common import completion_text
from gpgrl.rewards.registry import RewardFn, register_reward

# open-r1's pattern and flags. MULTILINE makes "$" also match before any newline, so text on lines
# after "</answer>" is accepted; we keep that so that the reward means what it means in open-r1.
_STRICT_FORMAT = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)
# R1-V / GPG's vision recipes: tags in order, any whitespace around and between them.
_LENIENT_FORMAT = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)


@register_reward("format")
def make_format(lenient: bool = False) -> RewardFn:
    r"""``format``: 1.0 if the completion is ``<think>`` reasoning then ``<answer>`` answer, else 0.0.

    Strict (default, open-r1): ``re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$",
    text, DOTALL | MULTILINE)`` - the tags must sit on their own lines at the start of the text.
    Lenient (``lenient=True``, the R1-V/GPG vision recipes): the whole text fullmatches
    ``\s*<think>.*?</think>\s*<answer>.*?</answer>\s*`` - newlines optional.

    >>> make_format()(["<think>\nhm\n</think>\n<answer>\n4\n</answer>", "<think>hm</think><answer>4</answer>"])
    [1.0, 0.0]
    >>> make_format(lenient=True)(["<think>hm</think> <answer>4</answer>", "4"])
    [1.0, 0.0]
    """

    def format(completions: list[Any], **columns: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        if lenient:
            return [1.0 if _LENIENT_FORMAT.fullmatch(t) else 0.0 for t in texts]
        return [1.0 if _STRICT_FORMAT.match(t) else 0.0 for t in texts]

    return format


@register_reward("think_close", aliases=("format_v2",))
def make_think_close() -> RewardFn:
    r"""``think_close``: 1.0 if ``"\n</think>\n"`` occurs exactly once in the completion, else 0.0.

    For models whose chat template already opens ``<think>`` in the prompt (DeepSeek-R1-Distill), so
    the completion only has to close it once. This is the format reward of the original GPG code's
    DeepSeek-R1-Distill-Qwen-1.5B runs (open-rs): ``format_reward_v2`` in its open-r1 fork (accepted
    here as ``format_v2``), and the function that its open-rs fork registers as ``format``.

    >>> make_think_close()(["so 2+2=4.\n</think>\n\nThe final answer is \\boxed{4}.", "x\n</think>\n\n</think>\n"])
    [1.0, 0.0]
    """

    def think_close(completions: list[Any], **columns: Any) -> list[float | None]:
        return [1.0 if completion_text(c).count("\n</think>\n") == 1 else 0.0 for c in completions]

    return think_close


_TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")


@register_reward("tag_count")
def make_tag_count() -> RewardFn:
    r"""``tag_count``: 0.25 for each of ``<think>\n``, ``\n</think>\n``, ``\n<answer>\n``, ``\n</answer>``
    that occurs exactly once (open-r1's ``tag_count_reward``), so 0.0 to 1.0.

    >>> make_tag_count()(["<think>\nx\n</think>\n<answer>\n1\n</answer>", "<think>\nx</think>", "none"])
    [1.0, 0.25, 0.0]
    """

    def tag_count(completions: list[Any], **columns: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        return [0.25 * sum(t.count(tag) == 1 for tag in _TAGS) for t in texts]

    return tag_count


# open-r1's pattern, without MULTILINE: "^\d+\." therefore only matches a numbered item at the very
# start of the text, while "\n-" and "\n\*" catch bullets on later lines.
_STEP_PATTERN = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)")


@register_reward("reasoning_steps")
def make_reasoning_steps(min_steps: int = 3) -> RewardFn:
    r"""``reasoning_steps``: r = min(1, n / min_steps), n = number of step markers (open-r1).

    Markers (open-r1's regex ``(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)``): "Step k:",
    a numbered item "1." at the start of the text, bullets "-" or "*" at the start of a line (after the
    first), and the words "First,", "Second,", "Next,", "Finally,". ``min_steps`` defaults to 3, open-r1's
    "magic number".

    >>> make_reasoning_steps()(["Step 1: a\nStep 2: b\nStep 3: c\nStep 4: d", "First, a. Finally, b.", "a"])
    [1.0, 0.6666666666666666, 0.0]
    """
    if min_steps < 1:
        raise ValueError(f"reasoning_steps: min_steps must be >= 1, got {min_steps}")

    def reasoning_steps(completions: list[Any], **columns: Any) -> list[float | None]:
        counts = [len(_STEP_PATTERN.findall(completion_text(c))) for c in completions]
        return [min(1.0, n / min_steps) for n in counts]

    return reasoning_steps


def repetition_penalty_value(text: str, ngram_size: int, max_penalty: float) -> float:
    """The n-gram repetition penalty of one text (see :func:`make_repetition_penalty`).

    >>> repetition_penalty_value("a b a b a b", 2, -1.0)  # 5 bigrams, 2 distinct: -(1 - 2/5)
    -0.6
    """
    words = text.lower().split()
    if len(words) < ngram_size:
        return 0.0
    ngrams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    scaling = 1.0 - len(set(ngrams)) / len(ngrams)
    return scaling * max_penalty if scaling else 0.0


@register_reward("repetition_penalty")
def make_repetition_penalty(ngram_size: int = 3, max_penalty: float = -1.0) -> RewardFn:
    r"""``repetition_penalty``: r = max_penalty * (1 - distinct n-grams / total n-grams).

    Words are the lower-cased text split on whitespace; n-grams are consecutive word n-tuples. Texts with
    fewer than ``ngram_size`` words score 0. So a text without any repeated n-gram scores 0 and one that
    repeats a single n-gram forever tends to ``max_penalty``. Defaults are open-r1's recipe defaults
    (``repetition_n_grams=3``, ``repetition_max_penalty=-1.0``; Yeo et al. 2025, appendix C.2).

    >>> make_repetition_penalty()(["the cat sat the cat sat", "a b c d"])
    [-0.25, 0.0]
    """
    if max_penalty > 0:
        raise ValueError(f"repetition_penalty: max_penalty must be <= 0, got {max_penalty}")
    if ngram_size < 1:
        raise ValueError(f"repetition_penalty: ngram_size must be >= 1, got {ngram_size}")

    def repetition_penalty(completions: list[Any], **columns: Any) -> list[float | None]:
        return [repetition_penalty_value(completion_text(c), ngram_size, max_penalty) for c in completions]

    return repetition_penalty
