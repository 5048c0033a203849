"""Request bodies held with as few copies as possible; multipart parts in memory.

What a 20 MB upload used to cost, copy by copy: Quart's body buffer (the chunks
appended to one ``bytearray``), a ``bytes`` copy of it handed to the form parser, the
parser's own buffer of that and the slices it cut, the file part's ``BytesIO``, and the
``read()`` of it for the database: five to six times the upload. Here:

- :class:`ChunkedBody` keeps the chunks the server delivered, as they are (no copy), and
  hands them to a reader one by one, dropping each: the form parser's buffer then holds
  one chunk at a time. Awaiting the whole body joins the chunks once.
- File parts are written to an in-memory ``BytesIO`` (never spooled to a temporary file
  with blocking writes on the event loop), and :func:`file_bytes` takes its bytes without
  a copy.

So an upload is held about once while it is parsed, plus its chunks when they arrive
faster than the route reads them. How many bytes of bodies the process holds at once is
bounded by :mod:`daemon.api.body_limits`.
"""

from __future__ import annotations

import io
from collections import deque
from typing import IO, TYPE_CHECKING, Any

from quart_trio.formparser import TrioFormDataParser
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

if TYPE_CHECKING:
    from collections.abc import Generator

    from quart.datastructures import FileStorage


class ChunkedBody(TrioBody):
    """A request body kept as the server's chunks (see the module docstring).

    Iterating yields each chunk once and forgets it; awaiting waits for the whole body
    and returns it joined (kept, so a second await returns the same bytes).
    """

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._chunks: deque[bytes] = deque()
        self._received = 0

    def append(self, data: bytes) -> None:
        if not data or self._must_raise is not None:
            return
        self._chunks.append(data)
        self._received += len(data)
        self._has_data.set()
        if self._max_content_length is not None and self._received > self._max_content_length:
            self._must_raise = RequestEntityTooLarge()
            self._chunks.clear()
            self.set_complete()

    async def __anext__(self) -> bytes:
        while True:
            if self._must_raise is not None:
                raise self._must_raise
            if self._chunks:
                return self._chunks.popleft()
            if self._complete.is_set():
                raise StopAsyncIteration()
            self._has_data.clear()
            await self._has_data.wait()

    def __await__(self) -> Generator[Any, None, Any]:
        if self._must_raise is not None:
            raise self._must_raise
        yield from self._complete.wait().__await__()
        if self._must_raise is not None:
            raise self._must_raise
        if len(self._chunks) > 1:
            whole = b"".join(self._chunks)
            self._chunks = deque([whole])
        return self._chunks[0] if self._chunks else b""

    def clear(self) -> None:
        self._chunks.clear()


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
    """The app's request class: bodies as chunks, file parts in memory."""

    body_class = ChunkedBody
    form_data_parser_class = InMemoryFormDataParser


def file_bytes(upload: FileStorage) -> bytes:
    """The whole content of an uploaded file part, without copying it when it is in
    memory (``BytesIO.getvalue`` shares its buffer until the stream is written again)."""
    stream = upload.stream
    if isinstance(stream, io.BytesIO):
        return stream.getvalue()
    stream.seek(0)
    return bytes(stream.read())
