"""application/json: one ``path: value`` line per string, number or boolean, in document
order.

Paths join object keys with dots and add ``[i]`` for array items::

    {"ticket": {"id": 7, "tags": ["urgent"]}}   ->   ticket.id: 7
                                                     ticket.tags[0]: urgent

A scalar at the top level is a line of its own, without a path. ``null``, empty strings
and empty containers produce nothing. Invalid JSON is a permanent error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from daemon.modules.ingestion.errors import CorruptContent
from daemon.modules.ingestion.extraction.charset import decode_text
from daemon.modules.ingestion.extraction.media import JSON
from daemon.modules.ingestion.extraction.result import TextBuffer, finish

if TYPE_CHECKING:
    from collections.abc import Iterator

    from daemon.modules.ingestion.extraction.result import Extracted


def extract(data: bytes, *, charset: str | None, max_chars: int) -> Extracted:
    """The flattened document.

    Raises:
        CorruptContent: not text, or not valid JSON (the message says where), or nested
            too deeply for the parser.
    """
    decoded = decode_text(data, declared=charset, what="application/json document")
    try:
        document = json.loads(decoded.text)
    except json.JSONDecodeError as exc:
        raise CorruptContent(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise CorruptContent(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise CorruptContent("invalid JSON: nested too deeply") from None
    out = TextBuffer(max_chars)
    for line in flatten(document):
        out.write(line + "\n")
        if out.dropped:
            break
    return finish(
        out.getvalue().rstrip("\n"),
        media_type=JSON,
        charset=decoded.charset,
        max_chars=max_chars,
        warnings=decoded.warnings,
        dropped=out.dropped,
    )


def flatten(document: Any) -> Iterator[str]:
    """The ``path: value`` lines of a parsed JSON document, lazily, in document order.

    Iterative, so any depth the parser accepted is fine.
    """
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(value)]))
        else:
            text = _scalar(value)
            if text:
                yield f"{path}: {text}" if path else text


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value).strip()
