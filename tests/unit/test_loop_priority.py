"""Reads first: background work steps aside while foreground work is in flight, at most
``max_defer`` at a time; the HTTP edge marks reads foreground and other requests
background; a streaming response stops being foreground when it starts streaming."""

from __future__ import annotations

import httpx
import trio
import trio.testing
from quart import Response

from daemon.api import ApiContext, create_app, create_asgi
from daemon.api.access import public
from daemon.shared.config import Settings
from daemon.shared.health import HealthState
from daemon.shared.loop_priority import LoopPriority, yield_to_foreground


async def test_outside_the_background_yielding_does_nothing():
    priority = LoopPriority()
    with priority.foreground(), trio.testing.assert_no_checkpoints():
        await yield_to_foreground()
    assert priority.deferrals == 0


async def test_a_background_task_waits_until_the_foreground_is_done():
    priority = LoopPriority(max_defer=10)
    passed: list[float] = []

    async def background() -> None:
        priority.background()
        await yield_to_foreground()
        passed.append(trio.current_time())

    read = priority.foreground()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(background)
        await trio.sleep(0.2)
        assert passed == []  # still waiting: the read is in flight
        ended = trio.current_time()
        read.end()
        read.end()  # idempotent
    assert passed and passed[0] - ended < 1
    assert priority.in_flight == 0 and priority.deferrals == 1


async def test_under_a_steady_foreground_the_background_still_passes_every_max_defer():
    priority = LoopPriority(max_defer=0.1)
    priority.background()
    with priority.foreground():  # never ends while the background works
        started = trio.current_time()
        for _ in range(3):
            await yield_to_foreground()
        elapsed = trio.current_time() - started
    assert 0.29 <= elapsed < 3
    assert priority.deferrals == 3


async def test_background_is_inherited_by_the_tasks_a_background_task_starts():
    priority = LoopPriority(max_defer=10)
    waited: dict[str, bool] = {}

    async def probe(name: str) -> None:
        with trio.move_on_after(0.2) as scope:
            await yield_to_foreground()
        waited[name] = scope.cancelled_caught

    async def background_group() -> None:
        priority.background()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, "child of the background")

    with priority.foreground():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(background_group)
            nursery.start_soon(probe, "foreground sibling")
    assert waited == {"child of the background": True, "foreground sibling": False}


async def test_spans_nest_and_overlap():
    priority = LoopPriority()
    outer = priority.foreground()
    with priority.foreground():
        assert priority.in_flight == 2
    assert priority.in_flight == 1
    outer.end()
    assert priority.in_flight == 0


def _edge_client(seen: dict[str, object]) -> tuple[httpx.AsyncClient, LoopPriority]:
    settings = Settings()
    context = ApiContext(
        settings=settings, health=HealthState(expected_schema_version=1), pool=None
    )
    priority = context.parts.priority
    app = create_app(context)

    async def observe(name: str) -> None:
        in_flight = priority.in_flight
        with trio.move_on_after(0.05) as scope:
            with priority.foreground():  # a read elsewhere: does this request step aside?
                await yield_to_foreground()
        seen[name] = (in_flight, scope.cancelled_caught)

    @app.get("/test/read")
    @public
    async def read():
        await observe("read")
        return {"ok": True}

    @app.post("/test/write")
    @public
    async def write():
        await observe("write")
        return {"ok": True}

    @app.get("/test/stream")
    @public
    async def stream():
        async def chunks():
            yield b"first,"
            seen["streaming"] = priority.in_flight
            yield b"second"

        return Response(chunks(), mimetype="text/csv")

    transport = httpx.ASGITransport(app=create_asgi(app, context))
    return httpx.AsyncClient(transport=transport, base_url="http://test"), priority


async def test_the_edge_marks_reads_foreground_and_writes_background():
    seen: dict[str, object] = {}
    client, priority = _edge_client(seen)
    async with client:
        assert (await client.get("/test/read")).status_code == 200
        assert (await client.post("/test/write", json={})).status_code == 200
        response = await client.get("/test/stream")
    assert response.text == "first,second"
    # foreground in flight while the app runs, and whether it steps aside for a read
    # elsewhere: a read is foreground and never waits for another; a write waits
    assert seen["read"] == (1, False)
    assert seen["write"] == (0, True)
    assert seen["streaming"] == 0  # a streaming response is no longer a read to wait for
    assert priority.in_flight == 0
