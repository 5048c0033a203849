"""A tiny HTTP/1.1 client over raw Trio streams: slow bodies, kept-alive idle connections."""

from __future__ import annotations

import json

import trio


async def read_response(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    """Read one response; raise ``EOFError`` if the server closed without answering."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError("connection closed before a response")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError("connection closed in the middle of a body")
        rest += chunk
    return status, headers, rest[:length]


async def slow_post(port: int, *, seconds: float, chunks: int = 10) -> tuple[int, dict]:
    """POST a 1,000-byte body to ``/test/body`` in ``chunks`` pieces over ``seconds``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        body = b"x" * 1000
        await stream.send_all(
            b"POST /test/body HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream"
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        size = len(body) // chunks
        for index in range(chunks):
            await trio.sleep(seconds / chunks)
            await stream.send_all(body[index * size : (index + 1) * size])
        status, _headers, payload = await read_response(stream)
        return status, json.loads(payload)


async def get(stream: trio.SocketStream, path: str) -> tuple[int, dict[str, str], bytes]:
    """One keep-alive GET on an open connection."""
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return await read_response(stream)
