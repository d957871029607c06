"""The ``calculator`` tool: exact arithmetic on a typed expression, by walking its syntax tree (no ``eval``).

Numbers are exact fractions (``0.1 + 0.2`` is ``0.3``), so the tool never hands the policy a float
rounding artefact. The answer is written as

* an integer when the value is whole (``7006652``),
* else an exact decimal when its expansion ends (``0.125``),
* else the exact fraction with a 15-digit approximation (``1/3 ≈ 0.333333333333333``).

>>> calculator("1234*5678")
'7006652'
>>> calculator("0.1 + 0.2"), calculator("7/4"), calculator("-2**3"), calculator("(2+3)*4 - 10 // 3")
('0.3', '1.75', '-8', '17')
>>> calculator("1/3"), calculator("2**-2"), calculator("17 % 5")
('1/3 ≈ 0.333333333333333', '0.25', '2')
>>> calculator("9**9**9")
Traceback (most recent call last):
...
ValueError: the result would have at least 349875565 digits; the calculator stops at 4000
>>> calculator("__import__('os')")
Traceback (most recent call last):
...
ValueError: the calculator takes numbers, + - * / // % ** and parentheses only, not a function call
"""

from __future__ import annotations

import ast
import math
import operator
from decimal import Decimal, localcontext
from fractions import Fraction

__all__ = ["MAX_DIGITS", "MAX_EXPRESSION_CHARS", "calculator"]

#: Largest result (numerator or denominator), in decimal digits; bigger ones are refused before computing
#: (below Python's 4300-digit limit on printing integers).
MAX_DIGITS = 4_000
#: Longest expression the calculator reads.
MAX_EXPRESSION_CHARS = 2_000

_BITS_PER_DIGIT = math.log2(10)
_MAX_BITS = int(MAX_DIGITS * _BITS_PER_DIGIT) + 1
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_ALLOWED = "the calculator takes numbers, + - * / // % ** and parentheses only"
_NODE_NAMES = {ast.Call: "a function call", ast.Name: "a name", ast.Attribute: "an attribute",
               ast.Subscript: "an index", ast.Compare: "a comparison", ast.BoolOp: "and/or",
               ast.Lambda: "a lambda", ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict"}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic expression, e.g. "(12.5 + 3) * 4 / 7" (numbers, + - * / // % ** and parentheses)

    Returns:
        the exact value: an integer, a decimal, or a fraction with its approximate decimal value
    """
    if not isinstance(expression, str):
        raise TypeError(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression has {len(expression)} characters; the calculator reads at most "
                         f"{MAX_EXPRESSION_CHARS}")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueError(f"{expression.strip()!r} is not an arithmetic expression ({_ALLOWED})") from e
    try:
        return _format(_evaluate(tree.body))
    except RecursionError as e:
        raise ValueError("the expression is nested too deeply") from e


calculator.in_process = True  # type: ignore[attr-defined]  # bounded (sizes checked): the Toolbox calls it directly


def _size_bits(x: Fraction) -> int:
    return max(x.numerator.bit_length(), x.denominator.bit_length())


def _check_size(x: Fraction) -> Fraction:
    if _size_bits(x) > _MAX_BITS:
        raise ValueError(f"the result would have about {int(_size_bits(x) / _BITS_PER_DIGIT) + 1} digits; the "
                         f"calculator stops at {MAX_DIGITS}")
    return x


def _evaluate(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{_ALLOWED}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"the number {value!r} is too large")
        # repr gives the shortest decimal that reads back as the float: the digits the expression wrote.
        return _check_size(Fraction(value) if isinstance(value, int) else Fraction(repr(value)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        op = _OPS.get(type(node.op))
        if op is None:
            hint = " (write powers as **)" if isinstance(node.op, ast.BitXor) else ""
            raise ValueError(f"{_ALLOWED}, not the operator {type(node.op).__name__}{hint}")
        if right == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise ZeroDivisionError("division by zero")
        return _check_size(Fraction(op(left, right)))
    what = _NODE_NAMES.get(type(node), type(node).__name__)
    raise ValueError(f"{_ALLOWED}, not {what}")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ValueError("only whole-number exponents are supported (the calculator is exact)")
    e = exponent.numerator
    if base == 0 and e < 0:
        raise ZeroDivisionError("division by zero (0 to a negative power)")
    if base in (0, 1) or e == 0:
        return Fraction(1) if e == 0 else base
    if base == -1:
        return Fraction(-1 if e % 2 else 1)
    if (_size_bits(base) - 1) * abs(e) > _MAX_BITS:  # a lower bound on the result's size: refuse, do not compute
        digits = int((_size_bits(base) - 1) * abs(e) / _BITS_PER_DIGIT) + 1
        raise ValueError(f"the result would have at least {digits} digits; the calculator stops at {MAX_DIGITS}")
    return _check_size(base**e)


def _format(x: Fraction) -> str:
    """An integer, an exact decimal, or ``"a/b ≈ decimal"``."""
    if x.denominator == 1:
        return str(x.numerator)
    d, twos, fives = x.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d == 1:  # terminates: scale to an integer and put the point back
        places = max(twos, fives)
        scaled = abs(x.numerator) * 10**places // x.denominator
        digits = str(scaled).rjust(places + 1, "0")
        sign = "-" if x < 0 else ""
        return f"{sign}{digits[:-places]}.{digits[-places:]}"
    with localcontext() as ctx:
        ctx.prec = 15
        approx = Decimal(x.numerator) / Decimal(x.denominator)
    return f"{x.numerator}/{x.denominator} ≈ {format(approx, 'g')}"
