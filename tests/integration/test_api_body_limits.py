"""Request bodies over real sockets: the read deadline (408) and the budget of body bytes
in flight (503 with Retry-After), on the anonymous login and on uploads."""

from __future__ import annotations

import json

import trio

from daemon.modules.auth import Role
from tests.e2e.raw_http import read_response
from tests.integration.api_server import serve_api

PROBLEM = "application/problem+json"


async def _open(port: int, path: str, head: str) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"POST {path} HTTP/1.1\r\nHost: test\r\n{head}\r\n".encode())
    return stream


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    with trio.move_on_after(10):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def test_a_trickled_login_body_is_cut_off_with_408(pool):
    async with serve_api(pool, http_body_timeout_seconds=1.0) as api:
        stream = await _open(
            api.settings.http_port,
            "/api/v1/auth/login",
            "Content-Type: application/json\r\nContent-Length: 100\r\n",
        )
        async with stream:
            started = trio.current_time()
            answer: list = []

            async def trickle() -> None:
                for _ in range(100):
                    await trio.sleep(0.3)
                    try:
                        await stream.send_all(b" ")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                answer.append(await read_response(stream))
                nursery.cancel_scope.cancel()
            elapsed = trio.current_time() - started
            status, headers, body = answer[0]
            assert status == 408
            assert headers["content-type"] == PROBLEM
            assert "did not arrive within 1 seconds" in json.loads(body)["detail"]
            assert elapsed < 10  # 1 s asked; generous for a loaded machine
            assert await _closed_by_server(stream)


async def test_a_stalled_chunked_body_is_cut_off_with_408(pool):
    async with serve_api(pool, http_body_timeout_seconds=1.0) as api:
        stream = await _open(
            api.settings.http_port,
            "/api/v1/auth/login",
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        )
        async with stream:
            await stream.send_all(b"1\r\n{\r\n")
            with trio.fail_after(10):
                status, _headers, body = await read_response(stream)
    assert status == 408
    assert json.loads(body)["status"] == 408


async def test_a_body_within_the_deadline_is_read(pool):
    async with serve_api(pool, http_body_timeout_seconds=2.0) as api:
        body = b'{"email": "nobody@example.org", "password": "wrong password"}'
        stream = await _open(
            api.settings.http_port,
            "/api/v1/auth/login",
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n",
        )
        async with stream:
            for index in range(0, len(body), 20):
                await trio.sleep(0.1)
                await stream.send_all(body[index : index + 20])
            status, _headers, _body = await read_response(stream)
    assert status == 401


def _upload_head(token: str, size: int) -> tuple[str, bytes, bytes]:
    """Headers, the multipart prologue and epilogue of an upload of ``size`` bytes."""
    boundary = "b0undary"
    prologue = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a.txt\r\n"
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    epilogue = f"\r\n--{boundary}--\r\n".encode()
    length = len(prologue) + size + len(epilogue)
    head = (
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n"
    )
    return head, prologue, epilogue


async def _upload(port: int, token: str, size: int) -> tuple[int, dict[str, str], bytes]:
    head, prologue, epilogue = _upload_head(token, size)
    stream = await _open(port, "/api/v1/documents", head)
    async with stream:
        await stream.send_all(prologue + b"x" * size + epilogue)
        return await read_response(stream)


async def test_bodies_over_the_budget_in_flight_get_503_and_the_budget_comes_back(pool):
    budget = 64 * 1024
    async with serve_api(pool, max_request_bytes=budget, http_body_bytes_in_flight=budget) as api:
        port = api.settings.http_port
        token = await api.token(Role.ANALYST)
        # A first upload declares 60 KiB and sends only its prologue: its share is held.
        head, prologue, epilogue = _upload_head(token, 60 * 1024)
        first = await _open(port, "/api/v1/documents", head)
        async with first:
            await first.send_all(prologue)
            await trio.sleep(0.2)
            # A declared length that does not fit: refused before it is read.
            status, headers, body = await _upload(port, token, 8 * 1024)
            assert status == 503, body
            assert headers["retry-after"] == "5"
            assert headers["content-type"] == PROBLEM
            assert headers["connection"] == "close"
            # A chunked body is refused once its bytes pass the budget.
            chunked = await _open(
                port,
                "/api/v1/documents",
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n",
            )
            async with chunked:
                await chunked.send_all(b"2000\r\n" + b" " * 0x2000 + b"\r\n")
                with trio.fail_after(10):
                    status, headers, _ = await read_response(chunked)
                assert status == 503
                assert headers["retry-after"] == "5"
            # The first upload, within the budget, completes and is stored.
            await first.send_all(b"x" * 60 * 1024 + epilogue)
            status, _, body = await read_response(first)
            assert status == 202, body
        # Its share is back: the whole budget is available again.
        status, _, body = await _upload(port, token, 60 * 1024)
        assert status == 202, body


async def test_the_share_of_a_client_gone_mid_body_comes_back(pool):
    budget = 64 * 1024
    async with serve_api(pool, max_request_bytes=budget, http_body_bytes_in_flight=budget) as api:
        port = api.settings.http_port
        token = await api.token(Role.ANALYST)
        head, prologue, _ = _upload_head(token, 60 * 1024)
        gone = await _open(port, "/api/v1/documents", head)
        await gone.send_all(prologue + b"x" * 1000)
        await trio.sleep(0.2)
        await gone.aclose()
        with trio.fail_after(20):
            while True:
                status, _, body = await _upload(port, token, 60 * 1024)
                if status != 503:
                    break
                await trio.sleep(0.1)
        assert status == 202, body


async def test_a_refused_body_the_client_goes_on_sending_still_gets_its_answer(pool):
    """Refused before it is read (its declared length is over the limit), the body keeps
    coming: the server drains it until the client is done (a lingering close), so the
    client reads the 413 instead of a broken pipe or a reset."""
    async with serve_api(pool) as api:
        stream = await _open(
            api.settings.http_port,
            "/api/v1/auth/login",
            "Content-Type: application/json\r\nContent-Length: 999999999\r\n",
        )
        async with stream:
            with trio.fail_after(20):
                for _ in range(64):  # 4 MB more, all of it written before reading
                    await stream.send_all(b" " * 65536)
                status, headers, body = await read_response(stream)
                assert await _closed_by_server(stream)
    assert status == 413
    assert headers["content-type"] == PROBLEM
    assert json.loads(body)["status"] == 413
