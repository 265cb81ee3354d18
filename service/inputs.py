"""Parsing of untrusted request input shared by every blueprint: JSON bodies, numbers, integers.

One body parser (orjson) for every route: a nesting depth limit (the standard library's parser
recurses and raised RecursionError on a 64 KB body of brackets), no NaN or Infinity, numbers
beyond float range refused. Numbers are range-checked without converting huge integers to float
(``math.isfinite(10**400)`` raises OverflowError), and query integers are ASCII digits only
(``str.isdigit()`` accepts '²', which ``int()`` refuses, and reads '٣' as 3).
"""

from __future__ import annotations

import math
import re

import orjson

from service.errors import InvalidInput

MAX_DEPTH = 32  # deepest nesting of arrays/objects in a body (ours need 4)
_ASCII_INT = re.compile(r"[0-9]{1,9}")


def json_body(raw: bytes, message: str = "body must be JSON", field: str = "body") -> object:
    """The body as JSON, whatever its content type; 400 (InvalidInput) when it is not."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:  # invalid JSON or UTF-8, NaN, out-of-range numbers, > 1024 deep
        raise InvalidInput(message, field=field) from None
    if not _depth_at_most(value, MAX_DEPTH):
        raise InvalidInput(f"body nests deeper than {MAX_DEPTH} levels", field=field)
    return value


def _depth_at_most(value: object, limit: int) -> bool:
    stack = [(value, 1)]  # iterative: a deep body must not exhaust Python's recursion limit
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((c, depth + 1) for c in children)
    return True


def number(value: object, name: str, lo: float, hi: float) -> float:
    """``value`` as a float if it is a JSON number (not a boolean) in [lo, hi]; else 400."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a finite number", field=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number", field=name)
    # int vs float comparisons are exact in Python and never overflow; float() only once in range.
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} must be between {lo:g} and {hi:g}", field=name)
    return float(value)


def ascii_int(raw: str, name: str, lo: int, hi: int) -> int:
    """A query parameter as an integer in [lo, hi], written with ASCII digits only; else 400."""
    if not _ASCII_INT.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise InvalidInput(f"{name} must be an integer from {lo} to {hi}", field=name)
    return int(raw)
