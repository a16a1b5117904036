"""Built-in ``calc`` plugin: arithmetic by walking a whitelist of AST nodes — never ``eval``.

Numbers stay bounded: integers may not grow past ``MAX_INT_BITS`` bits (checked before a
power or product is computed), floats must stay finite, expressions are short and shallow.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from cortex.adapters.tools.decorator import tool
from cortex.errors import ToolError

MAX_EXPRESSION_CHARS = 1000
MAX_DEPTH = 100
MAX_INT_BITS = 4096

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


@tool(name="eval")
def evaluate(expression: str) -> dict[str, Number]:
    """Evaluate an arithmetic expression: + - * / // % **, parentheses, numbers, pi, e, tau
    and the functions abs, round, min, max, sqrt, exp, log, log2, log10, sin, cos, tan, asin,
    acos, atan, floor, ceil.

    Args:
        expression: For example "2 * (3 + 4) ** 2" or "sqrt(2) / 2".
    """
    return {"value": safe_eval(expression)}


def safe_eval(expression: str) -> Number:
    """Evaluate ``expression`` over the whitelist; ToolError for anything else or out-of-bounds."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"calc: expressions are limited to {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ToolError(f"calc: not an arithmetic expression: {expression!r}") from exc
    try:
        value = _eval(tree.body, 0)
    except ZeroDivisionError as exc:
        raise ToolError("calc: division by zero") from exc
    except (OverflowError, ValueError) as exc:
        raise ToolError(f"calc: {exc}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("calc: the result is not a finite number")
    return value


def _eval(node: ast.AST, depth: int) -> Number:
    """Evaluate one whitelisted node."""
    if depth > MAX_DEPTH:
        raise ToolError(f"calc: expression nested deeper than {MAX_DEPTH}")
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            raise ToolError(f"calc: only numbers are allowed, not {node.value!r}")
        return _bounded(node.value)
    if isinstance(node, ast.Name):
        if node.id not in _CONSTANTS:
            raise ToolError(f"calc: unknown name {node.id!r}")
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, depth + 1))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        _check_growth(node.op, left, right)
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _FUNCTIONS.get(node.func.id)
        if function is None:
            raise ToolError(f"calc: unknown function {node.func.id!r}")
        args = [_eval(arg, depth + 1) for arg in node.args]
        try:
            return _bounded(function(*args))
        except TypeError as exc:
            raise ToolError(f"calc: {node.func.id}: {exc}") from exc
    raise ToolError(f"calc: {type(node).__name__} is not allowed")


def _check_growth(op: ast.operator, left: Number, right: Number) -> None:
    """Refuse an integer power or product whose result would exceed ``MAX_INT_BITS`` bits."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    grows = isinstance(op, ast.Pow) and right > 0 and abs(left) > 1
    if grows and (right > MAX_INT_BITS or (abs(left).bit_length() - 1) * right > MAX_INT_BITS):
        raise ToolError(f"calc: {left} ** {right} is too large (limit {MAX_INT_BITS} bits)")
    if isinstance(op, ast.Mult) and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
        raise ToolError(f"calc: the product is too large (limit {MAX_INT_BITS} bits)")


def _bounded(value: Any) -> Number:
    """Accept only real, bounded numbers (complex results, e.g. of (-8) ** 0.5, are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"calc: the result is not a real number: {value!r}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"calc: the result is too large (limit {MAX_INT_BITS} bits)")
    return value
