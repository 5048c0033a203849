"""Request bodies as the server's chunks; multipart file parts parsed into memory, not
spooled to a temporary file, and taken without a copy."""

from __future__ import annotations

import io

import pytest
from quart import request
from quart.datastructures import FileStorage
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from daemon.api.uploads import ChunkedBody, Request, file_bytes


async def test_a_large_file_part_stays_in_memory():
    app = QuartTrio("uploads-test")
    app.request_class = Request
    seen = {}

    @app.post("/")
    async def upload():
        part = (await request.files)["file"]
        seen["stream"] = part.stream
        seen["size"] = len(part.read())
        return "ok"

    data = b"x" * (2 << 20)  # over Werkzeug's 500 KB spooling threshold
    client = app.test_client()
    response = await client.post(
        "/", files={"file": FileStorage(io.BytesIO(data), filename="big.txt")}
    )
    assert response.status_code == 200
    assert isinstance(seen["stream"], io.BytesIO)
    assert seen["size"] == len(data)


async def test_chunks_are_handed_over_once_and_forgotten():
    body = ChunkedBody(None, None)
    first, second = b"a" * 10, b"b" * 10
    body.append(first)
    body.append(second)
    body.set_complete()
    seen = [chunk async for chunk in body]
    assert seen == [first, second]
    assert seen[0] is first  # the server's chunk itself, not a copy
    assert not body._chunks


async def test_awaiting_the_body_joins_it_once():
    body = ChunkedBody(None, None)
    body.append(b"ab")
    body.append(b"cd")
    body.set_complete()
    whole = await body
    assert whole == b"abcd"
    assert await body is whole


async def test_a_body_over_the_limit_raises_and_is_dropped():
    body = ChunkedBody(None, 5)
    body.append(b"abc")
    body.append(b"def")
    assert not body._chunks
    with pytest.raises(RequestEntityTooLarge):
        await body


def test_file_bytes_shares_the_in_memory_buffer():
    stream = io.BytesIO()
    stream.write(b"x" * 1000)
    stream.seek(0)
    data = file_bytes(FileStorage(stream, filename="a.txt"))
    assert data == b"x" * 1000
    assert data is stream.getvalue()  # the same object: no copy
