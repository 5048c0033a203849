"""Parsing JSON from clients within fixed limits: nesting depth and number sizes.

Python's ``json`` recurses once per nested array or object and gives up with a
``RecursionError`` near 1,000 levels; it converts integers with ``int()``, which refuses
more than 4,300 digits with a ``ValueError``; and it reads ``1e999`` as infinity and
accepts the non-standard ``NaN`` and ``Infinity``, which PostgreSQL's ``jsonb`` and every
strict JSON reader refuse. :func:`parse_json` bounds all three before they can do harm:

- **Depth.** The nesting depth is measured without recursion (string literals removed by
  one linear regular expression, then a running sum over the brackets left) before the
  parser runs. Deeper than :data:`MAX_JSON_DEPTH` levels: :class:`MalformedInput` (400).
- **Numbers.** An integer of more than :data:`MAX_INTEGER_DIGITS` digits, a float that
  overflows to infinity, and ``NaN``/``Infinity`` are refused with
  :class:`ValidationFailed` (422) naming the field (``metadata.a.0``).

Pure functions, no I/O: safe to run in a worker thread for large bodies.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, Final

from daemon.shared.errors import MalformedInput, ValidationFailed

MAX_JSON_DEPTH: Final = 64
"""Most nested arrays and objects in a request's JSON (the top level counts as one)."""

MAX_INTEGER_DIGITS: Final = 100
"""Most digits of a JSON integer (a bigint has 19; ``jsonb`` stores any of these)."""

# A string literal, from its opening quote to its closing one or, unterminated, to the
# end of the input: it always matches where it starts, so the scan stays linear.
_STRING = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')
_OPEN, _CLOSE = 1, 255  # +1 and -1 once read as signed bytes
_BRACKETS = bytes.maketrans(b"[{]}", bytes([_OPEN, _OPEN, _CLOSE, _CLOSE]))
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar).

    Brackets inside string literals do not count. For text that is not valid JSON the
    figure is only an estimate (the parser then refuses the text anyway).
    """
    structure = _STRING.sub("", text).encode("ascii", "ignore")
    steps = memoryview(structure.translate(_BRACKETS, _NOT_BRACKETS)).cast("b")
    return max(accumulate(steps), default=0)


class _OutOfRange:
    """Stands in for a number refused while parsing, so the field can be named after."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _integer(text: str) -> int | _OutOfRange:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _OutOfRange(text)
    return int(text)


def _float(text: str) -> float | _OutOfRange:
    value = float(text)
    return value if math.isfinite(value) else _OutOfRange(text)


def json_text(raw: bytes | bytearray, *, what: str = "the body") -> str:
    """``raw`` decoded as JSON text (UTF-8, or UTF-16/32 as RFC 8259's detection says).

    Raises:
        MalformedInput: the bytes are not text in that encoding.
    """
    try:
        return raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"{what} is not valid JSON: {exc}") from None


def parse_json(raw: bytes | str, *, what: str = "the body", field: str = "") -> Any:
    """``raw`` parsed as JSON within :data:`MAX_JSON_DEPTH` and the number limits.

    ``what`` names the input in messages (``the body``, ``metadata``); ``field`` prefixes
    the dotted path of a refused number (``metadata`` gives ``metadata.a.0``).

    Raises:
        MalformedInput: not JSON (or not UTF-8/16/32 text), or nested too deep.
        ValidationFailed: a number out of range; ``errors`` names its field.
    """
    text = raw if isinstance(raw, str) else json_text(raw, what=what)
    if json_depth(text) > MAX_JSON_DEPTH:
        raise MalformedInput(
            f"{what} is nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
        )
    try:
        data = json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_OutOfRange)
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"{what} is not valid JSON: {exc}") from None
    found = _out_of_range_path(data, (field,) if field else ())
    if found is not None:
        raise ValidationFailed(
            [
                {
                    "field": found or "(body)",
                    "message": f"a number out of range (integers of at most "
                    f"{MAX_INTEGER_DIGITS} digits, finite floats)",
                }
            ]
        )
    return data


def _out_of_range_path(value: Any, path: tuple[str, ...]) -> str | None:
    """The dotted path of the first refused number, if any (depth is already bounded)."""
    if isinstance(value, _OutOfRange):
        return ".".join(path)
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _out_of_range_path(item, (*path, str(key)))
        if found is not None:
            return found
    return None
