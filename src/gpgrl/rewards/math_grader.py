r"""Grade a model's final math answer against a dataset's gold answer.

:func:`grade_answer` is the public entry point. It works in three stages:

1. **Extract** the final answer from the model's whole output (:func:`extract_answer`): the last
   ``\boxed{...}`` / ``\fbox{...}`` with balanced braces, else the last ``<answer>...</answer>`` block,
   else the last number in the text. Linear time, so 100 KB outputs cost milliseconds.
2. **Normalise** both sides (:func:`normalize_answer`): ``$``/``\(...\)`` wrappers, ``\dfrac``/``\tfrac``,
   ``\left``/``\right``, spacing macros, ``\text{...}`` units and trailing unit words, degrees
   (``^\circ``, ``°``), ``\$``, thousands separators (``1,000``, ``10,\!080``), ``np.`` prefixes.
3. **Compare** (``_equivalent``): exact string match; several answers ("2, 3", "1 and 2",
   ``a \pm b``) as an order-insensitive multiset; a leading ``x =`` / ``f(x) =`` dropped; plain numbers
   (integers incl. zero padding, decimals, ``27.0``, scientific ``4.5e33`` / ``4.5 \times 10^{33}``,
   fractions, percentages) compared exactly in Python; word answers ("Evelyn", "east") compared
   case-insensitively; everything else (expressions, tuples, intervals, sets, matrices, equations)
   by math-verify's ``parse`` + ``verify``.

Safety: untrusted output must never hang or crash training. Grading first runs in the calling process
with sympy switched off: extraction is linear in the text, answers longer than :data:`MAX_ANSWER_CHARS`
are compared as strings only, and string and number comparisons are bounded, so most answers are
decided there in microseconds. An answer that needs sympy (an expression, a set, an interval) is
graded again in a killable worker process under a hard wall-clock limit (``timeout``, default 5 s; see
:mod:`gpgrl.rewards._deadline`). Any exception or timeout counts as a wrong answer: :func:`grade_answer`
never raises.

>>> grade_answer("... so the answer is \\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}")
True
>>> grade_answer("The answer is \\boxed{025}.", "25")
True
>>> grade_answer("\\boxed{3, 2}", "2, 3")
True
>>> grade_answer("\\boxed{4}", "5")
False
"""

from __future__ import annotations

import contextvars
import logging
import math
import re
from collections import deque
from fractions import Fraction
from functools import lru_cache

from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from gpgrl.rewards._deadline import limited_call

__all__ = [
    "MAX_ANSWER_CHARS",
    "answers_equivalent",
    "extract_answer",
    "grade_answer",
    "normalize_answer",
]

#: Extracted answers longer than this are compared as exact strings only: parsing them with sympy
#: could take unbounded time and memory, and no benchmark gold answer comes close (MATH-500's longest
#: is 53 characters).
MAX_ANSWER_CHARS = 1000
#: Only the last this many ``\boxed`` openings are tried when looking for a balanced one.
_MAX_BOX_TRIES = 20


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its own timeouts are off; we switch them off on purpose (the limit
    is applied around the whole call, see :mod:`gpgrl.rewards._deadline`), so that warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())

# ----------------------------------------------------------------------------------------------------
# 1. Extraction
# ----------------------------------------------------------------------------------------------------

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE = re.compile(r"\\boxed +([^\s$]+)")
_LAST_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = deque(pattern.finditer(text), maxlen=1)
    return last[0] if last else None


def _balanced_content(text: str, open_brace: int) -> str | None:
    """Content of the brace group opening at ``text[open_brace] == "{"``, or None if unbalanced."""
    depth = 0
    i = open_brace
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":  # skip escaped characters such as \{ and \}
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : i]
        i += 1
    return None


def _last_boxed(text: str) -> str | None:
    starts = [m.end() - 1 for m in _BOX_OPEN.finditer(text)]
    for brace in reversed(starts[-_MAX_BOX_TRIES:]):
        content = _balanced_content(text, brace)
        if content is not None:
            return content
    bare = _last_match(_BOX_BARE, text)
    return bare.group(1) if bare else None


def _all_boxed(text: str) -> str | None:
    """Every balanced ``\\boxed{}`` (the last :data:`_MAX_BOX_TRIES`), joined by ", ", in text order."""
    starts = [m.end() - 1 for m in _BOX_OPEN.finditer(text)][-_MAX_BOX_TRIES:]
    contents = [c.strip() for c in (_balanced_content(text, b) for b in starts) if c is not None and c.strip()]
    return ", ".join(contents) if contents else _last_boxed(text)


# Math segments of a prediction: $$...$$, $...$, \(...\), \[...\] (content in the named group).
_MATH_SEGMENT = re.compile(r"\$\$(?P<a>[^$]+?)\$\$|(?<!\\)\$(?P<b>[^$]+?)(?<!\\)\$|\\\((?P<c>.+?)\\\)|\\\[(?P<d>.+?)\\\]",
                           re.DOTALL)


def _last_expression(text: str) -> str | None:
    """The last-number fallback: the last LaTeX expression or the last number outside LaTeX, whichever
    ends later. A number *inside* an expression is never taken alone (``$\\frac{1+\\sqrt5}{2}$`` is the
    whole fraction, not its denominator)."""
    math = _last_match(_MATH_SEGMENT, text)
    spans = [m.span() for m in _MATH_SEGMENT.finditer(text)] if math else []
    number = None
    for m in _LAST_NUMBER.finditer(text):
        if not any(a <= m.start() < b for a, b in spans):
            number = m
    if math is not None and (number is None or math.end() > number.end()):
        content = next(g for g in math.groups() if g is not None).strip()
        return content or None
    return number.group(0) if number else None


def _answer_block(text: str) -> str | None:
    start = text.rfind("<answer>")
    if start < 0:
        return None
    end = text.find("</answer>", start)
    content = text[start + len("<answer>") : end if end >= 0 else len(text)].strip()
    return content or None


def _extract(text: str, *, boxes: str = "last", fallback: bool = True,
             answer_tag: bool = True) -> tuple[str | None, str]:
    """(answer, source) with source one of "boxed", "answer_tag", "last_number", "anchored_latex", "none".

    ``boxes="all"`` joins every ``\\boxed{}`` (a list answer given one box per item); ``fallback``
    takes the last expression or number when there is neither a box nor an ``<answer>`` block; without
    it, a text with LaTeX is left to math-verify's anchored extraction ("the answer is $5$"), as the
    original GPG / open-r1 accuracy reward does, and a text without LaTeX has no answer. ``answer_tag``
    False skips the ``<answer>`` block (the original reward has no such rule).
    """
    boxed = _all_boxed(text) if boxes == "all" else _last_boxed(text)
    if boxed is not None:
        return boxed.strip(), "boxed"
    block = _answer_block(text) if answer_tag else None
    if block is not None:
        return block, "answer_tag"
    if fallback:
        last = _last_expression(text)
        return (last, "last_number") if last is not None else (None, "none")
    if _MATH_SEGMENT.search(text) and len(text) <= 20 * MAX_ANSWER_CHARS:
        return text, "anchored_latex"
    return None, "none"


def extract_answer(text: str) -> str | None:
    r"""The final answer in a model's output: last ``\boxed{}``, else ``<answer>`` block, else the last
    LaTeX expression or number (see :func:`_last_expression`).

    >>> extract_answer("First \\boxed{1}, then \\boxed{\\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_answer("<think>\n2+2\n</think>\n<answer>\n4\n</answer>")
    '4'
    >>> extract_answer("so we pay 1,250 dollars.")
    '1,250'
    >>> extract_answer("no digits here") is None
    True
    """
    return _extract(text)[0]


# ----------------------------------------------------------------------------------------------------
# 2. Normalisation
# ----------------------------------------------------------------------------------------------------

_MATH_WRAPPERS = (("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$"))
_DOLLAR = re.compile(r"(?<!\\)\$")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)\b\.?")
_THIN_SPACE_THOUSANDS = re.compile(r"(?<=\d),?\\[,!]\s*(?=\d{3}(?!\d))")
_BRACE_COMMA = re.compile(r"\{,\}")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\\circ\b")
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|mbox)\s*\{([^{}]*)\}")
# Font commands around symbols keep their letters: \mathrm{e} is Euler's e, \mathbf{v} a vector.
_LETTER_WRAP = re.compile(r"\\(?:mathrm|mathbf|mathit|mathsf|boldsymbol|operatorname)\s*\{([^{}]*)\}")
_AND_OR = re.compile(r"\\text\{\s*(?:and|or)\s*\}|\s+(?:and|or)\s+")
_EMPTY_ITEMS = re.compile(r",(?:\s*,)+")  # "1, 2, and 3" -> "1, 2,, 3" -> "1, 2, 3"
_TRAILING_WORDS = re.compile(r"(?<=[\d}).])\s+[A-Za-z]{2,}(?:\s+[A-Za-z]+)*\s*\.?$")
_NP_PREFIX = re.compile(r"\bnp\.(?=[a-z])")
_SQRT_DIGIT = re.compile(r"\\sqrt(\d)")
_FRAC_DIGITS = re.compile(r"\\frac(\d)(\d)")
_SUB_BRACED = re.compile(r"_\{(\w+)\}")
_OPTION = re.compile(r"^\(([A-Ea-e])\)$")


def _strip_wrappers(s: str) -> str:
    s = s.strip()
    changed = True
    while changed:
        changed = False
        for left, right in _MATH_WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
                changed = True
    return s


def normalize_answer(answer: str) -> str:
    r"""Canonical string for an extracted answer (LaTeX clean-up, no maths).

    >>> normalize_answer("$\\dfrac{1}{2}$")
    '\\frac{1}{2}'
    >>> normalize_answer("10,\\!080")
    '10080'
    >>> normalize_answer("90^\\circ")
    '90'
    >>> normalize_answer("5.4 \\text{ cents}")
    '5.4'
    >>> normalize_answer("\\text{Evelyn}")
    'Evelyn'
    """
    s = _strip_wrappers(answer)
    if "\\boxed" in s or "\\fbox" in s:
        inner = _last_boxed(s)
        if inner is not None:
            s = _strip_wrappers(inner)
    s = s.replace("\\displaystyle", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _THIN_SPACE_THOUSANDS.sub("", s)
    s = _BRACE_COMMA.sub(",", s)
    s = s.replace("\\$", "").replace("\\%", "%")
    s = _DOLLAR.sub("", s)
    s = _LEFT_RIGHT.sub("", s)
    s = _AND_OR.sub(", ", s)
    s = _EMPTY_ITEMS.sub(",", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = _NP_PREFIX.sub("\\\\", s)
    s = _LETTER_WRAP.sub(lambda m: m.group(1).replace("~", " ").strip(), s)
    # \text{...}: units after a value are dropped, a whole-answer text is unwrapped.
    without_text = _TEXT_GROUP.sub("", s).strip()
    if without_text and without_text not in {",", "."} and _TEXT_GROUP.search(s):
        s = without_text
    else:
        s = _TEXT_GROUP.sub(lambda m: m.group(1), s)
    s = _TRAILING_WORDS.sub("", s)
    s = _SQRT_DIGIT.sub(r"\\sqrt{\1}", s)
    s = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", s)
    s = _SUB_BRACED.sub(r"_\1", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".").strip()
    if _THOUSANDS.fullmatch(s.lstrip("+-")):
        s = s.replace(",", "")
    option = _OPTION.match(s)
    if option:
        s = option.group(1).upper()
    return s


def _key(s: str) -> str:
    return s.replace(" ", "")


# ----------------------------------------------------------------------------------------------------
# 3. Comparison
# ----------------------------------------------------------------------------------------------------


def _split_items(s: str) -> list[str]:
    """Split on top-level commas/semicolons (not inside (), [], {}, or \\{ \\})."""
    items: list[str] = []
    depth = 0
    current: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            current.append(s[i : i + 2])
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch in ",;" and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current).strip())
    return [item for item in items if item]


def _expand_pm(items: list[str]) -> list[str]:
    r"""``a \pm b`` -> ``a + b``, ``a - b`` (one ``\pm`` per item)."""
    out: list[str] = []
    for item in items:
        if item.count("\\pm") == 1 and "," not in item:
            out.append(item.replace("\\pm", "+").strip())
            out.append(item.replace("\\pm", "-").strip())
        else:
            out.append(item)
    return out


_ASSIGNMENT = re.compile(
    r"^\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?(?:\([A-Za-z0-9, ]*\))?\s*(?:=|\\in\b)\s*(?P<rhs>[^=<>]+)$"
)


def _strip_assignment(s: str) -> str:
    """``x = 3`` -> ``3``; ``f(n) = n`` -> ``n``; equations with a non-trivial left side stay."""
    m = _ASSIGNMENT.match(s)
    return m.group("rhs").strip() if m else s


_DECIMAL = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(rf"^(?P<m>{_DECIMAL})(?:[eE](?P<e>[+-]?\d+))?(?P<pct>%?)$")
_TIMES_TEN = re.compile(
    rf"^(?P<m>{_DECIMAL})\s*(?:\\times|\\cdot|\*|x|×)\s*10\s*\^\s*\{{?\s*(?P<e>[+-]?\d+)\s*\}}?(?P<pct>%?)$"
)
_POWER_OF_TEN = re.compile(r"^(?P<sign>[+-]?)10\s*\^\s*\{?\s*(?P<e>[+-]?\d+)\s*\}?$")
_FRACTION = re.compile(
    r"^(?P<sign>[+-]?)\\frac\{(?P<n>\d+)\}\{(?P<d>\d+)\}$|^(?P<n2>[+-]?\d+)\s*/\s*(?P<d2>\d+)$"
)
_MAX_EXPONENT = 400
_MAX_DIGITS = 400


def _to_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_percentage) for plain numeric answers, else None. Exact (Fraction) arithmetic."""
    s = s.strip().replace(" ", "")
    if len(s) > _MAX_DIGITS:
        return None
    m = _PLAIN_NUMBER.match(s) or _TIMES_TEN.match(s)
    if m:
        exponent = int(m.group("e") or 0)
        if abs(exponent) > _MAX_EXPONENT:
            return None
        return Fraction(m.group("m")) * Fraction(10) ** exponent, bool(m.group("pct"))
    m = _POWER_OF_TEN.match(s)
    if m:
        exponent = int(m.group("e"))
        if abs(exponent) > _MAX_EXPONENT:
            return None
        value = Fraction(10) ** exponent
        return (-value if m.group("sign") == "-" else value), False
    m = _FRACTION.match(s)
    if m:
        if m.group("n") is not None:
            if int(m.group("d")) == 0:
                return None
            value = Fraction(int(m.group("n")), int(m.group("d")))
            return (-value if m.group("sign") == "-" else value), False
        if int(m.group("d2")) == 0:
            return None
        return Fraction(int(m.group("n2")), int(m.group("d2"))), False
    return None


def _close(a: Fraction, b: Fraction) -> bool:
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False  # two integers: exact
    # A rounded decimal against an exact value: relative tolerance 1e-6 (math-verify rounds to 6 digits).
    return abs(a - b) <= Fraction(1, 10**6) * max(abs(a), abs(b))


def _numbers_equal(gold: tuple[Fraction, bool], pred: tuple[Fraction, bool]) -> bool:
    (g, g_pct), (p, p_pct) = gold, pred
    if _close(g, p):
        return True
    # "50%" and "0.5" name the same quantity, whichever side carries the percent sign.
    if g_pct and not p_pct:
        return _close(g / 100, p)
    if p_pct and not g_pct:
        return _close(g, p / 100)
    return False


_WORDS = re.compile(r"^[A-Za-z']+(?: [A-Za-z']+)*$")
_REAL_WORD = re.compile(r"[A-Za-z']{3,}")


def _is_word_answer(s: str) -> bool:
    """A natural-language answer ("Evelyn", "east", "even"): compared as text, not as a product of
    symbols (sympy would read "even" as e*v*e*n, equal to "neve")."""
    return bool(_WORDS.match(s)) and bool(_REAL_WORD.search(s))


_LATEX_CONFIG = LatexExtractionConfig(
    boxed_match_priority=0,
    normalization_config=NormalizationConfig(
        basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all", equations=False
    ),
)
_EXTRACTION = (_LATEX_CONFIG, ExprExtractionConfig())


class _NeedsSympy(Exception):
    """Raised by the math-verify helpers while grading in the calling process: hand over to the worker."""


_SYMPY_OFF = contextvars.ContextVar("gpgrl_sympy_off", default=False)


def _sympy_allowed() -> None:
    if _SYMPY_OFF.get():
        raise _NeedsSympy


@lru_cache(maxsize=4096)
def _mv_parse(answer: str) -> tuple:
    """math-verify parse of a bare answer string (cached: a gold answer is graded G times per step)."""
    _sympy_allowed()
    return tuple(
        parse("\\boxed{" + answer + "}", extraction_config=_EXTRACTION, parsing_timeout=None)  # type: ignore[arg-type]
    )


@lru_cache(maxsize=1024)
def _mv_parse_text(text: str) -> tuple:
    """math-verify parse of free text (e.g. "The answer is $5$."), using its answer anchors."""
    _sympy_allowed()
    return tuple(parse(text, parsing_timeout=None))  # type: ignore[arg-type]


_ANCHORED = (
    LatexExtractionConfig(
        boxed_match_priority=0,
        try_extract_without_anchor=False,
        normalization_config=NormalizationConfig(
            # the original also sets equations=True, which math-verify 0.9 ignores (its parser handles them)
            basic_latex=True, units=True, malformed_operators=False, nits=False, boxed="all", equations=False
        ),
    ),
)


def _mv_parse_anchored(text: str) -> tuple:
    """The original GPG / open-r1 accuracy reward's extraction: LaTeX after an answer anchor only."""
    _sympy_allowed()
    return tuple(parse(text, extraction_config=_ANCHORED, extraction_mode="first_match",  # type: ignore[arg-type]
                       parsing_timeout=None))


def _mv_equal(gold: tuple, pred: tuple) -> bool:
    _sympy_allowed()
    if not gold or not pred:
        return False
    return bool(verify(list(gold), list(pred), timeout_seconds=None))


def _atom_equivalent(gold: str, pred: str) -> bool:
    gold, pred = _strip_assignment(gold), _strip_assignment(pred)
    if _key(gold) == _key(pred):
        return True
    gold_num, pred_num = _to_number(gold), _to_number(pred)
    if gold_num is not None and pred_num is not None:
        return _numbers_equal(gold_num, pred_num)
    if _is_word_answer(gold) or _is_word_answer(pred):
        return gold.lower() == pred.lower()
    return _mv_equal(_mv_parse(gold), _mv_parse(pred))


def _multiset_equivalent(gold_items: list[str], pred_items: list[str]) -> bool:
    if len(gold_items) != len(pred_items):
        return False
    unused = list(pred_items)
    for g in gold_items:
        for j, p in enumerate(unused):
            if _atom_equivalent(g, p):
                del unused[j]
                break
        else:
            return False
    return True


_COLLECTION = re.compile(r"^(?:\\\{.*\\\}|\{.*\}|\(.*\)|\[.*\]|\[.*\)|\(.*\])$", re.DOTALL)


def answers_equivalent(gold: str, pred: str) -> bool:
    r"""Whether two extracted answer strings are mathematically equivalent (no time limit: see
    :func:`grade_answer` for the safe, time-limited entry point).

    >>> answers_equivalent("4.5e33", "4.5 \\times 10^{33}")
    True
    >>> answers_equivalent("x=3", "3")
    True
    """
    if len(gold) > MAX_ANSWER_CHARS or len(pred) > MAX_ANSWER_CHARS:
        return gold.strip() == pred.strip()
    g, p = normalize_answer(gold), normalize_answer(pred)
    if not g or not p:
        return False
    if _key(g) == _key(p):
        return True
    g_items, p_items = _expand_pm(_split_items(g)), _expand_pm(_split_items(p))
    if len(g_items) == 1 and len(p_items) == 1:
        return _atom_equivalent(g_items[0], p_items[0])
    # Several answers ("2, 3" or "x = 1 or x = -1"): the same multiset, in any order.
    if _multiset_equivalent(g_items, p_items):
        return True
    # A list against one plain item can only match if that item is itself a collection ("\{1, 2\}" vs
    # "1, 2"): never let one item of a list pass for the whole list.
    for items in (g_items, p_items):
        if len(items) == 1 and not _COLLECTION.match(items[0]):
            return False
    # Otherwise let math-verify judge the whole (sets vs. sets, unions of intervals, ...).
    return _mv_equal(_mv_parse(g), _mv_parse(p))


def _grade_extracted(pred_answer: str, source: str, gold: str) -> bool:
    """Grade an already extracted answer (runs under the caller's time limit)."""
    if source == "anchored_latex":  # no box, no tag, no fallback: what math-verify finds after an anchor
        gold_norm = normalize_answer(gold)
        return bool(gold_norm) and _mv_equal(_mv_parse(gold_norm), _mv_parse_anchored(pred_answer))
    if answers_equivalent(gold, pred_answer):
        return True
    if source == "answer_tag" and len(pred_answer) <= MAX_ANSWER_CHARS:
        # The block may be prose ("The answer is $5$."): let math-verify find the answer in it.
        gold_norm = normalize_answer(gold)
        return bool(gold_norm) and _mv_equal(_mv_parse(gold_norm), _mv_parse_text(pred_answer))
    return False


def _grade_extracted_safe(pred_answer: str, source: str, gold: str) -> bool:
    try:
        return _grade_extracted(pred_answer, source, gold)
    except Exception:
        return False


def _grade_without_sympy(pred_answer: str, source: str, gold: str) -> bool | None:
    """The verdict when no step needs sympy (exactly the verdict of the full grading), else None."""
    token = _SYMPY_OFF.set(True)
    try:
        return _grade_extracted(pred_answer, source, gold)
    except _NeedsSympy:
        return None
    except Exception:
        return False
    finally:
        _SYMPY_OFF.reset(token)


_TARGET = "gpgrl.rewards.math_grader:_grade_extracted_safe"


def _gold_to_str(gold: object) -> str | None:
    if isinstance(gold, str):
        return gold
    if isinstance(gold, bool) or gold is None:
        return None
    if isinstance(gold, int):
        return str(gold)
    if isinstance(gold, float) and math.isfinite(gold):
        return str(int(gold)) if gold.is_integer() else repr(gold)
    return None


_NUMBER = re.compile(r"-?(\d+|\d{1,3}(,\d{3})+)(\.\d+)?")


def is_written_number(answer: str) -> bool:
    """True if an extracted answer is a number written out (sign, digits, thousands commas, decimals),
    not an expression that merely evaluates to one.

    >>> [is_written_number(a) for a in ("1156", " -1,156.5 ", "$71$", "639+517", "2^3", "1,15")]
    [True, True, True, False, False, False]
    """
    return bool(_NUMBER.fullmatch(answer.strip().strip("$").replace(" ", "")))


def grade_answer(prediction: str, gold: str, *, timeout: float | None = 5.0, boxes: str = "last",
                 fallback: bool = True, answer_tag: bool = True, number: bool = False) -> bool:
    r"""True if the final answer in ``prediction`` (a model's whole output) is equivalent to ``gold``.

    Args:
        prediction: the model's output; the answer is taken from the last ``\boxed{}``, else the
            ``<answer>`` block, else the last number (see :func:`extract_answer`).
        gold: a dataset's answer string (bare LaTeX, ``$...$``-wrapped, a number with commas, ...).
            Ints and floats are accepted too (``27.0`` -> ``"27"``).
        timeout: hard wall-clock limit in seconds for the sympy part of the grading, which runs in a
            worker process (``None``: no limit and no worker, trusted input only). On timeout the answer
            counts as wrong.
        boxes: ``"last"`` (the default, evaluation's usual rule): the last ``\boxed{}`` is the answer;
            ``"all"`` (the original GPG / open-r1 reward): every box, as a list.
        fallback: with neither a box nor an ``<answer>`` block, take the last LaTeX expression or
            number (the default, as evaluation toolkits do); ``False``: only LaTeX after an answer anchor
            counts, as in the original reward (a policy cannot learn to game a bare trailing number).
        answer_tag: read the ``<answer>`` block when there is no box (default); ``False``: as the
            original reward's math-verify settings, which give ``<answer>3</answer>`` no answer.
        number: the answer must be a number written out (:func:`is_written_number`); math-verify alone
            counts ``\boxed{639+517}`` right for gold ``1156``, so on arithmetic a policy can learn to box
            the question instead of adding (``False``, the default: equivalence only, as the original).

    Never raises: malformed input, parser errors and timeouts all return ``False``.

    >>> grade_answer("<answer>\n1,000\n</answer>", "1000")
    True
    >>> grade_answer("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3, \\frac{\\pi}{2})")
    True
    >>> grade_answer(None, "1")  # type: ignore[arg-type]
    False
    >>> grade_answer("\\boxed{639+517}", "1156"), grade_answer("\\boxed{639+517}", "1156", number=True)
    (True, False)
    """
    try:
        gold_str = _gold_to_str(gold)
        if gold_str is None or not isinstance(prediction, str) or not gold_str.strip():
            return False
        if boxes not in ("last", "all"):
            return False
        pred_answer, source = _extract(prediction, boxes=boxes, fallback=fallback, answer_tag=answer_tag)
        if pred_answer is None or (number and not is_written_number(pred_answer)):
            return False
        args = (pred_answer, source, gold_str)
        if timeout is None:
            return _grade_extracted_safe(*args)
        verdict = _grade_without_sympy(*args)  # bounded: no sympy
        if verdict is not None:
            return verdict
        return bool(limited_call(_TARGET, args, timeout, False))  # sympy: a killable process, a hard limit
    except Exception:
        return False


def is_gradable_gold(gold: object) -> bool:
    """False for an empty or missing gold answer (a reward then returns None for that sample).

    >>> is_gradable_gold("$\\frac{1}{2}$"), is_gradable_gold("  "), is_gradable_gold(None)
    (True, False, False)
    """
    gold_str = _gold_to_str(gold)
    return gold_str is not None and bool(normalize_answer(gold_str))
