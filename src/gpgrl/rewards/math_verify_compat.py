r"""The original GPG forks' answer check, with math-verify 0.5.2's rules, on today's math-verify.

The original GPG code (AMAP-ML/GPG, its open-r1 and open-rs forks) pins ``math-verify==0.5.2`` (with
``latex2sympy2_extended==1.0.6``) and scores answers with open-r1's reward functions. Later math-verify
releases changed what those same calls return (with two boxes, 0.5.2 grades the last one; today's makes a
set of both), so calling today's ``parse`` / ``verify`` with the original's arguments is not the original's
reward. This module rebuilds 0.5.2's *rules* (which text is the answer, how it is normalised, how two
answers are compared) and parses the normalised LaTeX with today's ``latex2sympy`` (a dependency of today's
math-verify). It never imports math-verify 0.5.2; the contract test ``tests/mathverify_contract`` runs the
original functions on the real 0.5.2 and lists every case where this module still differs, with its cause
(docs/recipes.md, "Accuracy reward vs math-verify 0.5.2").

The rules, as 0.5.2 applies them (each is a rule of 0.5.2 that a later release changed, or one the
original's arguments select):

1. **The gold** (:func:`parse_gold`). ``accuracy_lv35`` (the Qwen2.5-Math-7B runs) formats the gold ``G`` as
   the text ``$\\boxed{G}$`` (two backslash characters: the source's ``"$\\\\boxed{}$".format(sol)``) and
   parses it with the default configs; ``accuracy`` / ``cosine`` / ``len_reward`` parse ``G`` itself with
   ``LatexExtractionConfig()``, so a bare gold such as ``5`` has no LaTeX and parses to nothing. A gold that
   parses to nothing makes the original reward 1.0 ("skip this example"), whatever the answer.
2. **Where the completion's answer is** (:func:`parse_answer`). Regular expressions, tried by priority: a
   ``\boxed`` inside a math environment (``$...$``, ``$$...$$``, ``\(...\)``, ``\[...\]``, `` [...] ``) or a
   bare ``\boxed{...}`` (priority 0); "final answer ... is" followed by LaTeX (50); the word "answer" and a
   colon within 50 characters before LaTeX (100); the word "answer" within 50 characters before LaTeX
   (200). LaTeX here is a math environment or a plain ``\frac{n}{m}``, and up to six of them joined by
   "and", "or" or "," form one answer (a set). There is no match without such an anchor: a bare number,
   or LaTeX with no "answer" word before it, has no answer. The word may be the tag ``<answer>``, so
   ``<answer>\frac{9}{32}</answer>`` and ``<answer>$5$</answer>`` have an answer and ``<answer>5</answer>``
   has none. In the first priority with a match, the match ending last (then starting first) is the
   answer, whether or not it parses ("first_match"): no other match is tried.
3. **Which box** (:func:`boxed_content`). The bare-box pattern takes everything from the first
   ``\boxed{`` to the last ``}`` of the text and keeps the *last* box, and an earlier box only when nothing
   but "and", "or" or "," (and spaces) stands between the two: ``First \boxed{7}, finally \boxed{9}`` is 9,
   ``\boxed{1}, \boxed{2}`` is {1, 2}. (Today's math-verify also joins boxes less than 10 characters apart,
   or less than 70 with a separator word anywhere between, and drops repeated ones.) Boxes inside a math
   environment are all taken (``boxed="all"``), joined by commas.
4. **Normalisation** (:func:`normalize`): 0.5.2's ``normalize_latex``. It differs from today's in that
   "and" / "or" become ``;`` (today: ``,``), only ``percent`` (not "percentage" or "pct") becomes a percent
   sign, units are hardly removed (0.5.2's unit pattern can only match `` m east``; a trailing
   ``\text{...}`` is removed as today), an empty ``\text{}`` becomes a space, and ``equations=True`` keeps
   the last part of a chain ``a = b = c`` (no comma or semicolon in it).
5. **Parsing** (:func:`_to_sympy`): today's ``latex2sympy`` with 1.0.6's readings where they changed:
   symbols keep their case, ``x%`` is ``x * 1/100`` (today's ``verify`` would count ``9%`` equal to 9), a
   unary ``\pm`` does not parse, ``0,111`` is 111, ``\gamma`` / ``\Gamma`` are symbols; no retry on the
   last part of an equation (0.5.2 had none). A parse error, or 3 seconds (0.5.2's alarm), gives no
   expression. A match whose LaTeX does not parse still gives its normalised text, and texts compare by
   equality (``fallback_mode="first_match"``): a gold and an answer that normalise to the same string are
   equal even when neither parses.
6. **Comparison** (:func:`verify_052`): 0.5.2's ``verify(answer, gold)``, the completion first as the
   original calls it, with 0.5.2's order of checks (later releases keep assignments as equations, solve
   relations, compare symbol names case-insensitively, count a percentage equal to its number, and no
   longer compare printed text); each pair gets 3 seconds.

What cannot be rebuilt this way (today's latex2sympy grammar beyond the readings above, sympy's version,
the machine's speed under 0.5.2's alarms) is described, and any case the probes find is listed with its
cause, by the contract test.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "ANSWER_BOXES",
    "Normalization",
    "boxed_content",
    "normalize",
    "original_correct",
    "original_verdict",
    "parse_answer",
    "parse_gold",
    "verify_052",
]

# ----------------------------------------------------------------------------------------------------
# Normalisation (math-verify 0.5.2 / latex2sympy2_extended 1.0.6's normalize_latex)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalization:
    """Which groups of 0.5.2's normalisation run (the fields of its ``NormalizationConfig``)."""

    basic_latex: bool = True
    units: bool = False
    malformed_operators: bool = False
    nits: bool = False
    #: "all": every box's content, joined by commas; "last": the last box and the ones joined to it by
    #: a separator; anything else (the original cosine's ``True``): boxes are left in the text.
    boxed: Any = "all"
    equations: bool = False


#: ``LatexExtractionConfig()``'s normalisation in 0.5.2 (the gold's).
DEFAULT_NORMALIZATION = Normalization(basic_latex=True, units=True, malformed_operators=True, nits=True,
                                      boxed="all", equations=True)


def _answer_normalization(boxed: Any) -> Normalization:
    """The original rewards' normalisation of a completion (``boxed`` "all" in accuracy, True in cosine)."""
    return Normalization(basic_latex=True, units=True, malformed_operators=False, nits=False, boxed=boxed,
                         equations=True)


#: How the original accuracy rewards normalise the boxes of a completion (its cosine and len_reward: True).
ANSWER_BOXES = "all"

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_SEPARATOR_ONLY = re.compile(r"\s*(?:and|or|,)\s*")


def _closing_brace(text: str, opening: int, end: int) -> int | None:
    """Index of the ``}`` closing ``text[opening] == "{"`` before ``end`` (no escapes: 0.5.2 counts every brace)."""
    depth = 1
    for i in range(opening + 1, end):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def boxed_content(text: str, mode: Literal["all", "last"]) -> str:
    r"""The content of the boxes (``\boxed`` or ``\fbox``) of ``text``, read from the right, joined by ",".

    ``"last"``: the last box, and each earlier one only while nothing but "and", "or" or "," (and spaces)
    stands between it and the next; ``"all"``: every box. An unclosed last box gives the rest of the text
    from its brace; an earlier unclosed box, or a box command with no brace, ends the reading. Without a
    box the text is returned as it is.

    >>> boxed_content("First \\boxed{7}, finally \\boxed{9}.", "last")
    '9'
    >>> boxed_content("\\boxed{1}, \\boxed{2} and \\boxed{3}", "last")
    '1,2,3'
    >>> boxed_content("First \\boxed{7}, finally \\boxed{9}.", "all")
    '7,9'
    >>> boxed_content("so \\boxed{\\frac{1}{2", "last"), boxed_content("no box", "last")
    ('{\\frac{1}{2', 'no box')
    """
    found: list[str] = []
    search_end = len(text)  # where the next box command may start
    limit = len(text)  # where the next box's content must end
    later_box_start: int | None = None
    while True:
        start = max(text.rfind(command, 0, search_end) for command in _BOX_COMMANDS)
        if start < 0:
            break
        brace = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
        while brace < limit and text[brace].isspace():
            brace += 1
        if brace >= limit:
            break
        if text[brace] != "{":
            if not found:
                found.append(text[brace:])
            break
        close = _closing_brace(text, brace, limit)
        if close is None:
            if not found:
                found.append(text[brace:])
            break
        if (mode == "last" and later_box_start is not None
                and not _SEPARATOR_ONLY.fullmatch(text[close + 1 : later_box_start])):
            break
        found.append(text[brace + 1 : close].strip())
        later_box_start = limit = search_end = start
    return ",".join(reversed(found)) if found else text


# The basic clean-up (0.5.2's to_replace table): one pass, the first rule that matches at a position wins.
_REPLACEMENTS: tuple[tuple[str, str], ...] = (
    (r"\\math(?:rm|it|bf)", "\\text"),
    (r"\\text(?:normal|bf|it|rm)", "\\text"),
    (r"\\(?:d|t|c)frac", "\\frac"),
    (r"\s\.", " 0."),
    (r"\{\.", "{0."),
    (r"\~\=", "\\approx"),
    (r"\s*\{\s*,\s*\}", ","),
    (r"(?<!\w)(?:and|or)(?!\w)", ";"),  # today: "," (and ", and")
    (r"\\text{\s*(?:and|or)\s*}", ";"),
    (r"(?<!\\)\\\s", " "),
    (r"infinity", "\\infty"),
    (r",?\\ldots", " "),
    (r"\s*percent", "\\\\%"),  # the two backslashes are 0.5.2's
    (r"\\text{percent}", "\\\\%"),
    (r"(?<!\\)inf(?!inity)", "\\infty"),
    (r" sqrt", "\\sqrt"),
)
_REPLACE = re.compile("|".join(f"({pattern})" for pattern, _ in _REPLACEMENTS))
_LEFT = re.compile(r"\\m?left(\\\{|\{|\\\||\||\[|\(|\\rbracl|\\lgroup|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil|"
                   r"\\lfloor|\\langle|\\llcorner|\\ulcorner)")
_RIGHT = re.compile(r"\\m?right(\\\}|\}|\\\||\||\]|\)|\\rbrack|\\rgroup|\\rbrace|\\vert|\\rvert|\\rceil|"
                    r"\\rfloor|\\rangle|\\lrcorner|\\urcorner)")
_PERMUTATION = re.compile(r"\(([a-zA-Z0-9+\-*/\\ ]+?)\)_{([a-zA-Z0-9+\-*/\\ ]+?)}")
_REMOVE = re.compile(r"\\mathrm\{th\}|\\!\s*|\\text\s*\{\s*\}|\\\$|\$|(?<!\\)[\"\']|\\displaystyle")
_DOUBLE_BACKSLASH_COMMAND = re.compile(r"\\\\(?=[a-zA-Z])")
_EQUALS = re.compile(r"(?<!\\|\<|\!|\>)=")
_TRAILING_TEXT = re.compile(r"(\\(?:text|mbox){.*?})(\^\d|\{\^\d\})?$")
# 0.5.2's unit list is joined into alternatives that each need a space *at* the unit's first letter, so
# the only unit it can remove is " m east" (with the character after it).
_UNIT = re.compile(r"(?=\s) m east(?:s|es)?(?:$|\W)")
_EMPTY_TEXT = re.compile(r"\\text\s*\{\s*\}")
_MALFORMED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\^\s?\((.*?)\)"), r"^{\1}"),
    (re.compile(r"sqrt\s?\((.*?)\)"), r"\\sqrt{\1}"),
    (re.compile(r"\\frac\s?(\d)\s?(\d+)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\log_\s?(\d)\s?(\d+)"), r"\\log_{\1}{\2}"),
    (re.compile(r"\\frac\s?{(.*?)}\s?(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s?(\d)\s?{(.*?)}"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\sqrt\s?(\d)"), r"\\sqrt{\1}"),
)
_INTEGER_RATIO = re.compile(r"(-?\d+)/(-?\d+)")


def _replace_rule(match: re.Match[str]) -> str:
    return _REPLACEMENTS[match.lastindex - 1][1]  # type: ignore[operator]


def _sqrt_arguments(text: str) -> str:
    r"""``\sqrt3`` -> ``\sqrt{3}``: a root whose argument is not braced takes one character."""
    head, *roots = text.split("\\sqrt")
    out = [head]
    for part in roots:
        part = part.lstrip()
        out.append("\\sqrt" + (part if not part or part[0] in "{[" else "{" + part[0] + "}" + part[1:]))
    return "".join(out)


def _frac_arguments(text: str) -> str | None:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{2}`` -> ``\frac{1}{2}``; None (leave the text) when a
    ``\frac`` has fewer than two characters after it."""
    head, *fracs = text.split("\\frac")
    out = [head]
    for part in fracs:
        part = part.lstrip()
        if part.startswith("{"):
            out.append("\\frac" + part)
        elif len(part) < 2:
            return None
        elif part[1] != "{":
            out.append("\\frac{" + part[0] + "}{" + part[1] + "}" + part[2:])
        else:
            out.append("\\frac{" + part[0] + "}" + part[1:])
    return "".join(out)


def _integer_ratio(text: str) -> str:
    """``2/3`` -> ``\\frac{2}{3}`` when the whole text is two integers written plainly."""
    m = _INTEGER_RATIO.fullmatch(text)
    if m and text == f"{int(m.group(1))}/{int(m.group(2))}":
        return "\\frac{" + str(int(m.group(1))) + "}{" + str(int(m.group(2))) + "}"
    return text


def normalize(text: str, config: Normalization) -> str:
    r"""0.5.2's ``normalize_latex``: the groups of rules ``config`` switches on, in its order.

    >>> normalize("\\boxed{5} and \\boxed{7}", _answer_normalization("all"))
    '5,7'
    >>> normalize("x = 2 \\text{ and } y = 3", _answer_normalization("all"))
    'x = 2 ; y = 3'
    >>> normalize("\\dfrac12", DEFAULT_NORMALIZATION), normalize("a = b = 4", DEFAULT_NORMALIZATION)
    ('\\frac{1}{2}', '4')
    >>> normalize("5\\text{ cm}", DEFAULT_NORMALIZATION), normalize("0.5", DEFAULT_NORMALIZATION)
    ('5', '\\frac{1}{2}')
    """
    if config.boxed in ("all", "last"):
        text = boxed_content(text, config.boxed)
    if config.basic_latex:
        text = text.replace("\\mathrm{T}", "T").replace("\\mathrm{d}", "d").replace("{\\rm d}", "d")
        text = text.replace("\\left[\\begin{matrix}", "\\begin{bmatrix}")
        text = text.replace("\\end{matrix}\\right]", "\\end{bmatrix}")
        text = _LEFT.sub(r"\1", text)
        text = _RIGHT.sub(r"\1", text)
        text = _PERMUTATION.sub(r"\\frac{(\1)!}{((\1)-(\2))!}", text)
        text = _REMOVE.sub("", text)
        text = _REPLACE.sub(_replace_rule, text)
        text = text.replace("\n", " ").replace("\t", " ")
        if "matrix" not in text:
            text = _DOUBLE_BACKSLASH_COMMAND.sub(r"\\", text)
    if config.equations and "," not in text and ";" not in text:
        parts = _EQUALS.split(text)
        if len(parts) > 2:
            text = parts[-1]
    if config.units:
        stripped = _TRAILING_TEXT.sub("", text).strip()
        if stripped and stripped != text:
            text = stripped
        for _ in range(2):
            stripped = _UNIT.sub("", text)
            if stripped and stripped != text:
                text = stripped
        text = _EMPTY_TEXT.sub(" ", text)
    if config.nits:
        if text.startswith("."):
            text = "0" + text
        if text == "0.5":
            text = "\\frac{1}{2}"
    if config.malformed_operators:
        for pattern, repl in _MALFORMED:
            text = pattern.sub(repl, text)
        text = text.replace(" sqrt", "\\sqrt")
        if "\\sqrt" in text:
            text = _sqrt_arguments(text)
        text = _frac_arguments(text) or text
        if text.count("/") == 1:
            text = _integer_ratio(text)
    return text.strip()


# ----------------------------------------------------------------------------------------------------
# Extraction (math-verify 0.5.2's LaTeX patterns, priorities and "first_match" mode)
# ----------------------------------------------------------------------------------------------------

#: Math environments: (name, characters allowed inside, opening, closing).
_ENVIRONMENTS = (
    ("DisplayDollar", r"(?:[^$]|\$(?!\$))", r"(?<!\\)\$\$", r"(?<!\\)\$\$"),
    ("DisplayBracket", r"(?:[^\\]|\\(?!\]))", r"(?<!\\)\\\[", r"(?<!\\)\\\]"),
    ("InlineDollar", r"(?:\\[$]|[^\n$])", r"(?<!\\|\d)\$", r"(?<!\\)\$"),
    ("InlineParenthesis", r"(?:[^\\\n]|\\(?!\)))", r"(?<!\\)\\\(", r"(?<!\\)\\\)"),
    ("InlineBracket", r"[^\n\]\[]", r"\s\[", r"\]\s"),
)
_PERCENT = r"(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct)"
_GROUPS = ("first", "next1", "next2", "next3", "next4", "next5")


def _latex(prefix: str, boxed: bool) -> str:
    """One math environment (holding a ``\\boxed{}`` when ``boxed``; else also a plain ``\\frac{n}{m}``),
    then an optional percent sign; its groups are named ``{prefix}_latex<Kind>`` and ``{prefix}_percent``."""
    choices = []
    for kind, inside, opening, closing in _ENVIRONMENTS:
        body = f"{inside}*?\\\\boxed{{{inside}+?}}{inside}*?" if boxed else f"{inside}+?"
        choices.append(f"{opening}(?P<{prefix}_latex{kind}>{body}){closing}")
    if not boxed:
        number = r"-?\d+(?:[.,]\d+)?"
        choices.append(f"(?P<{prefix}_latexFraction>-?\\\\frac{{{number}}}{{{number}}})")
    return f"(?:(?:{'|'.join(choices)})\\s*(?P<{prefix}_percent>{_PERCENT})?)"


def _latex_list(boxed: bool) -> str:
    """Up to six environments joined by "and", "or" or "," (0.5.2: the word or comma alone, no ", and")."""
    tail = "".join(f"(?:\\s*(?:and|or|,)\\s*{_latex(g, boxed)})?" for g in _GROUPS[1:])
    return _latex(_GROUPS[0], boxed) + tail


@dataclass(frozen=True)
class _Extraction:
    """A ``LatexExtractionConfig`` of 0.5.2."""

    anchorless: bool
    boxed_priority: int
    normalization: Normalization


@functools.lru_cache(maxsize=8)
def _patterns(extraction: _Extraction) -> tuple[tuple[int, tuple[re.Pattern[str], ...]], ...]:
    """The patterns of a config grouped by priority, lowest (tried first) first, in 0.5.2's order."""
    latex = _latex_list(boxed=False)
    ranked: list[tuple[str, int]] = [
        (f"(?i:final answer is)\\:?\\s*{latex}\\.?\\s?I hope", 0),
        (f"(?i:final answer.{{0,100}}?)\\s+is\\:?\\s*{latex}", 50),
        (f"(?i:answer):.{{0,50}}?{latex}", 100),
        (f"(?i:answer).{{0,50}}?{latex}", 200),
    ]
    if extraction.anchorless:
        ranked.append((latex, 300))
    if extraction.boxed_priority >= 0:
        ranked.append((_latex_list(boxed=True), extraction.boxed_priority))
        ranked.append((r"(?P<first_latexBoxed>\\boxed{.+})", extraction.boxed_priority))
    priorities = sorted({p for _, p in ranked})
    return tuple((p, tuple(re.compile(s, re.DOTALL) for s, q in ranked if q == p)) for p in priorities)


#: ``LatexExtractionConfig()`` of 0.5.2 (the gold's).
GOLD_EXTRACTION = _Extraction(anchorless=True, boxed_priority=50, normalization=DEFAULT_NORMALIZATION)


def _answer_extraction(boxed: Any) -> _Extraction:
    """The original rewards' completion config: boxes first (priority 0), never without an anchor."""
    return _Extraction(anchorless=False, boxed_priority=0, normalization=_answer_normalization(boxed))


# latex2sympy2_extended 1.0.6's grammar has no unary plus-minus: "\pm 2", "x = \pm 2", "(\pm 1, 2)" do not parse
# (nor "\pmod{9}": both grammars read it as \pm then "od").
_UNARY_PM = re.compile(r"(?:^|[=(\[{,;]|\\\{)\s*\\(?:pm|mp)")
# A whole text written as a number with thousands commas; 1.0.6 reads "0,111" as 111 (today: 0.111).
_COMMA_NUMBER = re.compile(r"^\s*-?\d{1,3}(,\d{3})+(\.\d+)?\s*$")


def _to_sympy(latex: str) -> Any:
    """Today's latex2sympy on normalised LaTeX, as 0.5.2 called its own: real symbols unless the text
    looks complex, degrees kept, no normalisation; symbols keep their case (1.0.6 never lower-cased them).
    1.0.6's readings are kept where today's differ: a unary ``\\pm`` does not parse, ``0,111`` is 111,
    ``\\gamma`` / ``\\Gamma`` are symbols, a chain of relations is sympy's ``And`` built as 1.0.6 built it,
    and ``x%`` is ``x * 1/100``."""
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
    from math_verify.grader import should_treat_as_complex
    from sympy import Number

    if _UNARY_PM.search(latex):
        raise ValueError(f"no unary plus-minus in latex2sympy2_extended 1.0.6: {latex!r}")
    if latex.startswith("0") and _COMMA_NUMBER.match(latex):
        return Number(latex.translate(str.maketrans("", "", ", ")).lstrip("0") or "0")
    gamma = bool(_GAMMA_COMMAND.search(latex))
    expr = latex2sympy(_gamma_standins(latex) if gamma else latex, is_real=not should_treat_as_complex(latex),
                       convert_degrees=False, normalization_config=None,
                       conversion_config=ConversionConfig(lowercase_symbols=False))
    expr = _old_chains(expr)
    if gamma:
        expr = _gamma_named_back(expr)
    return _old_percents(expr) if "%" in latex else expr


def _old_chains(expr: Any) -> Any:
    """A chain of relations (``a < b < c``, ``y = y \\leq 4 - x``) as 1.0.6 built it: sympy's own ``And``
    (today's latex2sympy uses a subclass, whose ``doit()`` fails, so 0.5.2's "equal after doit" check
    would not apply), each further relation starting from the right side of the ``And``'s last argument in
    sympy's order (today: of the last one written)."""
    import sympy
    from latex2sympy2_extended.logic import And as ChainAnd

    if not isinstance(expr, sympy.Basic) or not expr.args:
        return expr
    if isinstance(expr, ChainAnd):
        relations = [_old_chains(r) for r in getattr(expr, "_unsorted_args", expr.args)]
        chain = relations[0]
        for relation in relations[1:]:
            previous = chain.args if isinstance(chain, sympy.And) else (chain,)
            chain = sympy.And(*previous, type(relation)(previous[-1].rhs, relation.rhs, evaluate=False))
        return chain
    return _with_args(expr, [_old_chains(a) for a in expr.args])


# 1.0.6 read \gamma and \Gamma as symbols (and \Gamma(3) as an unknown function named "\Gamma"); today's grammar
# reads them as Euler's constant and the gamma function ("2\gamma+1" is 3). They are parsed under a name
# today's latex2sympy does not know, then named back.
_GAMMA_COMMAND = re.compile(r"\\(gamma|Gamma)(?![a-zA-Z])")
_GAMMA_STANDIN = "gpgrlStandIn"


def _gamma_standins(latex: str) -> str:
    return _GAMMA_COMMAND.sub(lambda m: "\\text{" + _GAMMA_STANDIN + m.group(1) + "}", latex)


def _gamma_named_back(expr: Any) -> Any:
    """Symbols and undefined functions named with the stand-in get 1.0.6's names back."""
    import sympy
    from sympy.core.function import UndefinedFunction

    if not isinstance(expr, sympy.Basic):
        return expr
    mapping = {}
    for symbol in expr.atoms(sympy.Symbol):
        if _GAMMA_STANDIN in symbol.name:
            mapping[symbol] = sympy.Symbol(symbol.name.replace(_GAMMA_STANDIN, ""), **symbol.assumptions0)
    for call in expr.atoms(sympy.Function):
        if isinstance(call.func, UndefinedFunction) and _GAMMA_STANDIN in call.func.__name__:
            name = re.sub(r"\\text\{" + _GAMMA_STANDIN + r"(\w+)\}", r"\\\1", call.func.__name__)
            mapping[call] = sympy.Function(name)(*call.args)
    return expr.xreplace(mapping) if mapping else expr


def _percent(value: Any) -> Any:
    """``x%`` as 0.5.2 built it: ``x * 1/100`` unevaluated, a plain Rational factor (today's latex2sympy
    wraps it in ``UnevaluatedExpr``, which today's ``verify`` reads as "a percentage equals its number")."""
    import sympy

    return sympy.Mul(value, sympy.Rational(1, 100), evaluate=False)


def _old_percents(expr: Any) -> Any:
    """``expr`` with today's percentages (``x * UnevaluatedExpr(1/100)``, from ``\\%`` in the LaTeX) written
    as 0.5.2's (``x * 1/100`` unevaluated); other nodes are rebuilt unevaluated only where a child changed."""
    import sympy

    if not isinstance(expr, sympy.Basic) or not expr.args:
        return expr
    hundredth = sympy.UnevaluatedExpr(sympy.Rational(1, 100))
    if isinstance(expr, sympy.Mul) and hundredth in expr.args:
        return sympy.Mul(*[sympy.Rational(1, 100) if a == hundredth else _old_percents(a) for a in expr.args],
                         evaluate=False)
    return _with_args(expr, [_old_percents(a) for a in expr.args])


def _with_args(expr: Any, args: list[Any]) -> Any:
    """``expr`` itself when no argument changed, else the same node over ``args``, unevaluated where the
    node takes ``evaluate``."""
    if all(a is b for a, b in zip(args, expr.args)):
        return expr
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


#: 0.5.2 gives each LaTeX parse and each compared pair 3 seconds (``signal.alarm(3)``), then treats the step
#: as failed (no expression; unequal) and goes on.
STEP_LIMIT_S = 3.0


class _StepTimeout(Exception):
    """A step ran past :data:`STEP_LIMIT_S`: it failed, as under 0.5.2's alarm."""


def _step(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` within :data:`STEP_LIMIT_S` where a signal timer can run (the main thread, as in the
    grading worker); :class:`_StepTimeout` past it. Under an outer limit that ends first, the outer one
    still ends the whole call (:func:`gpgrl.rewards._deadline.deadline` re-arms it)."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    from gpgrl.rewards._deadline import GradingTimeout, deadline

    try:
        with deadline(STEP_LIMIT_S):
            return fn(*args)
    except GradingTimeout:
        raise _StepTimeout from None


def _extract(match: re.Match[str], normalization: Normalization) -> tuple[Any, str]:
    """(expression or None, normalised text) of one match: each of its environments normalised and
    parsed; several that all parse make one set, else the first one counts."""
    from latex2sympy2_extended.sets import FiniteSet

    groups = match.groupdict()
    exprs: list[Any] = []
    texts: list[str] = []
    for prefix in _GROUPS:
        hit = next(((name, value) for name, value in groups.items()
                    if name.startswith(prefix + "_latex") and value), None)
        if hit is None:
            continue
        name, value = hit
        config = replace(normalization, boxed="last") if name.endswith("_latexBoxed") else normalization
        text = normalize(value, config)
        texts.append(text)
        try:
            expr = _step(_to_sympy, text)
            exprs.append(_percent(expr) if groups.get(prefix + "_percent") else expr)
        except Exception:
            exprs.append(None)
    if not exprs:
        return None, ""
    if len(exprs) > 1 and all(e is not None for e in exprs):
        items: list[Any] = []
        for e in exprs:
            items.extend(e.args if isinstance(e, FiniteSet) else [e])
        return FiniteSet(*items), " and ".join(texts)
    return exprs[0], texts[0]


def _parse(text: str, extraction: _Extraction) -> list[Any]:
    """0.5.2's ``parse(text, [config], extraction_mode="first_match")`` (fallback_mode "first_match"):
    ``[expression, normalised text]``, ``[normalised text]`` when it does not parse, ``[]`` with no match."""
    for _, patterns in _patterns(extraction):
        matches = [m for pattern in patterns for m in pattern.finditer(text)]
        if not matches:
            continue
        # The match ending last, then starting first; ties keep the patterns' order (a stable sort).
        best = sorted(matches, key=lambda m: (m.end(), -m.start()), reverse=True)[0]
        expr, normalised = _extract(best, extraction.normalization)
        return [v for v in (expr, normalised or None) if v is not None]
    return []


def parse_gold(gold: str, boxed_gold: bool) -> list[Any]:
    r"""The original's parse of a gold answer: ``$\\boxed{gold}$`` with the default configs
    (``accuracy_lv35``), or the gold itself with ``LatexExtractionConfig()`` (``accuracy``, ``cosine``).

    The default configs also hold an ``ExprExtractionConfig``; it never takes part here: the bare-box
    pattern (priority 50) matches every non-empty gold wrapped so, and its matches end after any number in
    it, so the expression patterns (priority 300, or 0 / 50 after "final answer") are never reached.

    >>> parse_gold("\\frac{9}{32}", True)
    [9/32, '\\frac{9}{32}']
    >>> parse_gold("5", False), parse_gold("$5$", False)
    ([], [5, '5'])
    """
    if boxed_gold:
        return _parse("$" + "\\\\" + "boxed{" + gold + "}$", GOLD_EXTRACTION)
    return _parse(gold, GOLD_EXTRACTION)


def parse_answer(completion: str, boxed: Any = ANSWER_BOXES) -> list[Any]:
    r"""The original's parse of a completion: boxes first, then LaTeX after an answer anchor only.

    ``boxed`` is the normalisation's ``boxed``: ``"all"`` (the accuracy rewards) or ``True`` (the original
    cosine and length rewards: a box inside a math environment is left to the LaTeX parser).

    >>> parse_answer("First \\boxed{7}, finally \\boxed{9}.")
    [9, '9']
    >>> parse_answer("<answer>\\frac{9}{32}</answer>"), parse_answer("<answer>5</answer>"), parse_answer("so 5")
    ([9/32, '\\frac{9}{32}'], [], [])
    """
    return _parse(completion, _answer_extraction(boxed))


def _gold_text(gold: Any) -> str | None:
    """The gold as the original's ``str.format`` writes it (``27.0`` stays ``27.0``); None for no gold."""
    if isinstance(gold, str):
        return gold
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, (int, float)):
        return str(gold)
    return None


# ----------------------------------------------------------------------------------------------------
# Comparison (math-verify 0.5.2's verify, precision 6, strict)
# ----------------------------------------------------------------------------------------------------
# 0.5.2 decides in this order, and later releases changed most steps (assignments kept as equations,
# solving relations, case-insensitive symbol names, "9% = 9", no string comparison), so the order is
# rebuilt here on today's sympy objects. "gold" is the first argument, which the original passes the
# completion's answer as.


def _doit(expr: Any) -> Any:
    try:
        return expr.doit()
    except Exception:
        return expr


def _is_relation(expr: Any) -> bool:
    from sympy import And
    from sympy.core.relational import Relational

    return isinstance(expr, Relational) or (isinstance(expr, And)
                                            and all(isinstance(a, Relational) for a in expr.args))


def _is_equation(expr: Any) -> bool:
    from sympy import And, Eq

    return isinstance(expr, Eq) or (isinstance(expr, And) and bool(expr.args)
                                    and all(isinstance(a, Eq) for a in expr.args))


def _is_assignment(expr: Any) -> bool:
    """``x = ...`` (a left side made of symbols only), or a chain of equations starting so."""
    from latex2sympy2_extended import is_expr_of_only_symbols
    from sympy import And, Eq

    if isinstance(expr, Eq):
        return bool(is_expr_of_only_symbols(expr.lhs))
    return (isinstance(expr, And) and bool(expr.args) and all(isinstance(a, Eq) for a in expr.args)
            and bool(is_expr_of_only_symbols(expr.args[0].lhs)))


def _last_relation(expr: Any) -> Any:
    from sympy import And

    while isinstance(expr, And):
        expr = expr.args[-1]
    return expr


def _functions_as_symbols(expr: Any) -> Any:
    """``f(x)`` -> the symbol ``f_x`` (an undefined function), everywhere in ``expr``."""
    from sympy import Basic, Symbol
    from sympy.core.function import UndefinedFunction

    if not isinstance(expr, Basic):
        return expr
    if isinstance(getattr(expr, "func", None), UndefinedFunction):
        return Symbol(expr.func.__name__ + "_" + "_".join(str(_functions_as_symbols(a)) for a in expr.args))
    try:
        args = [_functions_as_symbols(a) for a in expr.args]
        if args:
            return expr.func(*args)
    except Exception:
        pass
    return expr


def _same_after_doit(a: Any, b: Any) -> bool:
    """Equal as sympy trees, or as printed text, after ``doit()``."""
    a, b = _doit(a), _doit(b)
    try:
        return bool(a == b) or str(a).strip() == str(b).strip()
    except Exception:
        return False


def _percent_of(expr: Any, kind: type) -> bool:
    """``expr`` is a ``kind`` or 0.5.2's percentage of one (``x * 1/100``, unevaluated)."""
    from sympy import Mul, Rational

    return isinstance(expr, kind) or (isinstance(expr, Mul) and len(expr.args) == 2
                                      and expr.args[1] == Rational(1, 100) and isinstance(expr.args[0], kind))


def _numbers_equal(a: Any, b: Any) -> bool:
    from sympy import Float, MatrixBase, Number
    from sympy.matrices.expressions import MatrixExpr

    if isinstance(a, (MatrixBase, MatrixExpr)) and isinstance(b, (MatrixBase, MatrixExpr)):
        a, b = _doit(a), _doit(b)
        if isinstance(a, MatrixBase) and isinstance(b, MatrixBase) and a.shape == b.shape:
            return all(_numbers_equal(x, y) for x, y in zip(a.flat(), b.flat()))
        return False
    if _percent_of(a, Number) or _percent_of(b, Number):
        if _percent_of(a, Float) or _percent_of(b, Float):
            a, b = _doit(a), _doit(b)
            return isinstance(a, Number) and isinstance(b, Number) and a.round(_PRECISION) == b.round(_PRECISION)
        return bool(_doit(a) == _doit(b))
    try:
        return bool((a - b).evalf(chop=True) == 0)
    except Exception:
        return False


def _simplifies_to_zero(a: Any, b: Any) -> bool:
    from sympy import Basic, MatrixBase, simplify

    try:
        difference = simplify(a - b)
    except Exception:
        return False
    if isinstance(difference, MatrixBase):
        return bool(difference.is_zero_matrix)
    return isinstance(difference, Basic) and bool(difference.is_zero)


def _relations_equal(gold: Any, pred: Any) -> bool:
    from sympy import And, Eq, GreaterThan, LessThan, StrictGreaterThan, StrictLessThan

    if isinstance(gold, And):
        return all(_relations_equal(g, p) for g, p in zip(gold.args, pred.args))
    try:
        if type(gold) is type(pred) and _expr_equal(gold.lhs - gold.rhs, pred.lhs - pred.rhs):
            return True
    except Exception:
        pass
    mirrored = ((GreaterThan, LessThan), (LessThan, GreaterThan), (StrictGreaterThan, StrictLessThan),
                (StrictLessThan, StrictGreaterThan), (Eq, Eq))
    if any(isinstance(gold, g) and isinstance(pred, p) for g, p in mirrored):
        try:
            return _expr_equal(gold.lhs - gold.rhs, pred.rhs - pred.lhs)
        except Exception:
            return False
    return False


def _sort_key(x: Any) -> Any:
    from sympy import default_sort_key

    if _is_assignment(x):
        x = _last_relation(x).rhs
    try:
        return default_sort_key(x.evalf())
    except Exception:
        return default_sort_key(x)


def _elements_equal(gold: Any, pred: Any) -> bool:
    """Two finite sets / tuples, element by element: a set's elements in sympy's order (by value), a
    tuple's as written; a tuple against latex2sympy's set takes the set's elements as written."""
    from latex2sympy2_extended.sets import FiniteSet
    from sympy import FiniteSet as SympyFiniteSet
    from sympy import Tuple, ordered

    if len(gold) != len(pred):
        return False
    if isinstance(gold, SympyFiniteSet):
        gold_args = list(ordered(gold.args, keys=_sort_key, default=False))
        pred_args = list(ordered(pred.args, keys=_sort_key, default=False))
    elif isinstance(gold, Tuple) and isinstance(pred, FiniteSet):
        gold_args, pred_args = list(gold.args), list(pred._unsorted_args)
    elif isinstance(pred, SympyFiniteSet):
        gold_args, pred_args = list(gold.args), list(ordered(pred.args, keys=_sort_key, default=False))
    else:
        gold_args, pred_args = list(gold.args), list(pred.args)
    return all(_expr_equal(a, b) for a, b in zip(gold_args, pred_args))


def _sets_equal(gold: Any, pred: Any) -> bool:
    from sympy import FiniteSet as SympyFiniteSet
    from sympy import Interval, Set, Tuple

    a = gold if isinstance(gold, (Set, Tuple)) else SympyFiniteSet(gold)
    b = pred if isinstance(pred, (Set, Tuple)) else SympyFiniteSet(pred)
    if isinstance(a, Interval) and isinstance(b, Interval):
        return (a.left_open == b.left_open and a.right_open == b.right_open
                and _expr_equal(a.start, b.start) and _expr_equal(a.end, b.end))
    if a == b:
        return True
    if isinstance(a, Set) and isinstance(b, Set) and a.symmetric_difference(b).is_empty:
        return True
    if isinstance(a, (SympyFiniteSet, Tuple)) and isinstance(b, (SympyFiniteSet, Tuple)):
        return _elements_equal(a, b)
    if isinstance(a, Interval) and isinstance(b, (SympyFiniteSet, Tuple)) and a.is_open and len(b) == 2:
        return _elements_equal(Tuple(a.start, a.end), b)
    if isinstance(b, Interval) and isinstance(a, (SympyFiniteSet, Tuple)) and b.is_open and len(a) == 2:
        return _elements_equal(a, Tuple(b.start, b.end))
    return False


def _symbols_equal(gold: Any, pred: Any) -> bool:
    """A symbol ``e`` / ``E`` is Euler's number; a symbol equals a product of symbols spelling its name
    (any case: ``\\text{east}`` parsed as e*a*s*t); otherwise sympy equality (case matters)."""
    from sympy import E, Mul, Symbol

    if (isinstance(gold, Symbol) and gold.name.lower() == "e" and pred == E) or (
            isinstance(pred, Symbol) and pred.name.lower() == "e" and gold == E):
        return True
    for one, other in ((gold, pred), (pred, gold)):
        if (isinstance(one, Symbol) and isinstance(other, Mul)
                and all(a == E or isinstance(a, Symbol) for a in other.args)):
            spelled = "".join(a.name if isinstance(a, Symbol) else "e" for a in other.args)
            return one.name.lower() == spelled.lower()
    return bool(gold == pred)


def _expr_equal(gold: Any, pred: Any) -> bool:
    from sympy import Basic, MatrixBase, Set, Symbol, Tuple

    if _is_assignment(gold) and not _is_equation(pred):
        gold = _last_relation(gold).rhs
    if _is_equation(pred) and not _is_equation(gold):
        pred = _last_relation(pred).rhs
    if _is_relation(gold) and isinstance(pred, Set):
        with contextlib.suppress(Exception):
            gold = _functions_as_symbols(gold).as_set()
    if _same_after_doit(gold, pred):
        return True
    if _is_relation(gold) and _is_relation(pred):
        return _relations_equal(gold, pred)
    if isinstance(gold, (Set, Tuple)) or isinstance(pred, (Set, Tuple)):
        return _sets_equal(gold, pred)
    if isinstance(gold, Symbol) or isinstance(pred, Symbol):
        return _symbols_equal(gold, pred)
    if isinstance(gold, (Basic, MatrixBase)) and isinstance(pred, (Basic, MatrixBase)):
        return _numbers_equal(gold, pred) or _simplifies_to_zero(gold, pred)
    return False


_PRECISION = 6


def verify_052(gold: list[Any], target: list[Any]) -> bool:
    """0.5.2's ``verify(gold, target)``: any pair equal, two sympy objects by its rules, two texts when
    both are non-empty and the same (stripped); an error in a pair makes that pair unequal.

    >>> import sympy
    >>> verify_052([sympy.Symbol("Evelyn")], [sympy.Symbol("evelyn")]), verify_052(["05:00"], [" 05:00"])
    (False, True)
    """
    from sympy import Basic, MatrixBase

    def equal(g: Any, t: Any) -> bool:
        try:
            if isinstance(g, (Basic, MatrixBase)) and isinstance(t, (Basic, MatrixBase)):
                return _expr_equal(g, t)
            if isinstance(g, str) and isinstance(t, str):
                return bool(g.strip()) and g.strip() == t.strip()
        except Exception:
            pass
        return False

    def within_limit(g: Any, t: Any) -> bool:
        try:
            return bool(_step(equal, g, t))
        except _StepTimeout:
            return False

    return any(within_limit(g, t) for g in gold for t in target)


def original_correct(completion: str, gold: str, boxed_gold: bool, boxes: Any = ANSWER_BOXES) -> bool | None:
    r"""The original reward's verdict: True / False, or None when the gold parses to nothing (the
    original then scores 1.0 whatever the answer). No time limit: see :func:`original_verdict`.

    >>> original_correct("First \\boxed{7}, finally \\boxed{9}.", "9", boxed_gold=True)
    True
    >>> original_correct("\\boxed{\\frac12}", "\\frac12", boxed_gold=True)
    False
    >>> original_correct("\\boxed{5}", "5", boxed_gold=False) is None
    True
    """
    gold_parsed = parse_gold(gold, boxed_gold)
    if not gold_parsed:
        return None
    answer = parse_answer(completion, boxes)
    return verify_052(answer, gold_parsed)


def original_verdict_safe(completion: str, gold: str, boxed_gold: bool, boxes: Any) -> int:
    """:func:`original_correct` as 1 / 0 / -1 (gold parses to nothing), 0 on any error (worker target)."""
    try:
        verdict = original_correct(completion, gold, boxed_gold, boxes)
    except Exception:
        return 0
    return -1 if verdict is None else int(verdict)


_TARGET = "gpgrl.rewards.math_verify_compat:original_verdict_safe"


def original_verdict(completion: str, gold: Any, *, boxed_gold: bool, boxes: Any = ANSWER_BOXES,
                     timeout: float = 5.0) -> bool | None:
    """:func:`original_correct` under a hard wall-clock limit (a killable worker process, as
    :func:`gpgrl.rewards.grade_answer`): a timeout, or any error, is a wrong answer (the original's
    parse and verify return nothing on their own timeouts). None: the gold parses to nothing."""
    from gpgrl.rewards._deadline import limited_call

    text = _gold_text(gold)
    if text is None or not isinstance(completion, str):
        return False
    verdict = limited_call(_TARGET, (completion, text, boxed_gold, boxes), timeout, 0)
    return None if verdict == -1 else bool(verdict)
