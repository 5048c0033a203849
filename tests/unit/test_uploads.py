"""Multipart file parts are parsed into memory, not spooled to a temporary file."""

from __future__ import annotations

import io

from quart import request
from quart.datastructures import FileStorage
from quart_trio import QuartTrio

from daemon.api.uploads import Request


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
