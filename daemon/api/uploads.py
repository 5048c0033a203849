"""Multipart uploads parsed into memory, never spooled to a temporary file.

Werkzeug's form parser spools a file part over 500 KB to a temporary file, written with
blocking calls on the event loop. A request body is already in memory whole (and bounded
by ``TRIAGED_MAX_REQUEST_BYTES``), so its file parts stay there too: no disk I/O on the
loop, at the cost of one more copy of an upload while it is parsed.
"""

from __future__ import annotations

import io
from typing import IO, Any

from quart_trio.formparser import TrioFormDataParser
from quart_trio.wrappers.request import TrioRequest


def _in_memory(
    total_content_length: int | None,
    content_type: str | None,
    filename: str | None,
    content_length: int | None = None,
) -> IO[bytes]:
    return io.BytesIO()


class InMemoryFormDataParser(TrioFormDataParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_factory", _in_memory)
        super().__init__(*args, **kwargs)


class Request(TrioRequest):
    """The app's request class: :class:`TrioRequest` with in-memory file parts."""

    form_data_parser_class = InMemoryFormDataParser
