"""TrioConnection against a real PostgreSQL: queries, cancellation, LISTEN/NOTIFY, COPY,
server-side cursors, and the psycopg internals the adapter depends on."""

from __future__ import annotations

import inspect
import itertools
import socket
import time
from contextlib import aclosing

import psycopg
import pytest
import trio
import trio.lowlevel
from psycopg import connection_async, generators, pq
from psycopg import errors as e
from psycopg.rows import dict_row
from psycopg.waiting import Ready, Wait

from daemon.shared.db import TrioConnection

IDLE = pq.TransactionStatus.IDLE
INERROR = pq.TransactionStatus.INERROR


async def connect(url: str, **kwargs) -> TrioConnection:
    return await TrioConnection.connect(url, connect_timeout=5, **kwargs)


async def backend_state(url: str, pid: int) -> str | None:
    """The pg_stat_activity state of backend ``pid``, seen from another connection."""
    async with await connect(url, autocommit=True) as other:
        cur = await other.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
    return None if row is None else row[0]


async def test_queries_with_parameters(database_url):
    async with await connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT %s::int + %s, %s::text, %s::text IS NULL", (40, 2, "é", None)
        )
        assert await cur.fetchone() == (42, "é", True)
        cur = await conn.execute("SELECT generate_series(1, %(n)s)", {"n": 5})
        assert [row[0] for row in await cur.fetchall()] == [1, 2, 3, 4, 5]
        async with conn.cursor(row_factory=dict_row) as dcur:
            await dcur.execute("SELECT 1 AS one, 'two' AS two")
            assert await dcur.fetchone() == {"one": 1, "two": "two"}
        assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        await conn.rollback()
        with pytest.raises(e.UndefinedTable):
            await conn.execute("SELECT * FROM no_such_table")
        assert conn.info.transaction_status == INERROR
        await conn.rollback()
        assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)


async def test_executemany_and_transaction_blocks(database_url):
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        async with conn.cursor() as cur:
            # executemany() runs in pipeline mode internally.
            await cur.executemany(
                "INSERT INTO t VALUES (%s, %s)", [(i, f"n{i}") for i in range(500)]
            )
        with pytest.raises(e.UniqueViolation):
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1000, 'x')")
                await conn.execute("INSERT INTO t VALUES (1, 'dup')")
        cur = await conn.execute("SELECT count(*), max(id) FROM t")
        assert await cur.fetchone() == (500, 499)


async def test_cancelled_query_stops_on_server_and_connection_is_reusable(database_url):
    async with await connect(database_url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        started = time.monotonic()
        with trio.move_on_after(0.2) as scope:
            await conn.execute("SELECT pg_sleep(5)")
        elapsed = time.monotonic() - started
        assert scope.cancelled_caught
        assert elapsed < 2.5, f"cancellation took {elapsed:.3f}s"  # not the 5 s sleep
        assert not conn.closed
        assert conn.info.transaction_status == IDLE
        assert await backend_state(database_url, pid) == "idle"
        cur = await conn.execute("SELECT 'still usable'")
        assert await cur.fetchone() == ("still usable",)
        assert conn.info.backend_pid == pid


async def test_cancel_inside_a_transaction_leaves_it_failed(database_url):
    async with await connect(database_url) as conn:
        await conn.execute("CREATE TABLE t (id int)")
        await conn.execute("INSERT INTO t VALUES (1)")
        with trio.move_on_after(0.1):
            await conn.execute("SELECT pg_sleep(5)")
        assert conn.info.transaction_status == INERROR
        await conn.rollback()
        cur = await conn.execute("SELECT to_regclass('t') IS NULL")
        assert await cur.fetchone() == (True,)  # the whole transaction was rolled back


@pytest.mark.parametrize("blocked_in", ["query", "trio"])
async def test_move_on_after_around_a_transaction(database_url, blocked_in):
    # Whether the deadline hits a query or plain Trio code, the block's exit rolls back
    # (in a cancelled scope) and leaves the connection idle.
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int)")
        started = time.monotonic()
        with trio.move_on_after(0.2) as scope:
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1)")
                if blocked_in == "query":
                    await conn.execute("SELECT pg_sleep(5)")
                else:
                    await trio.sleep(5)
        assert scope.cancelled_caught
        assert time.monotonic() - started < 2.5  # not the 5 s sleep
        assert conn.info.transaction_status == IDLE
        cur = await conn.execute("SELECT count(*) FROM t")
        assert await cur.fetchone() == (0,)


async def test_notify_wakes_a_listener_quickly(database_url):
    async with (
        await connect(database_url, autocommit=True) as listener,
        await connect(database_url, autocommit=True) as sender,
    ):
        await listener.execute("LISTEN jobs")
        received: list[tuple[psycopg.Notify, float]] = []

        async def listen(task_status=trio.TASK_STATUS_IGNORED):
            async with aclosing(listener.notifies(timeout=5)) as notes:
                task_status.started()
                async for note in notes:
                    received.append((note, time.monotonic()))
                    break

        async with trio.open_nursery() as nursery:
            await nursery.start(listen)
            await trio.sleep(0.05)  # the listener is parked on its socket
            sent_at = time.monotonic()
            await sender.execute("SELECT pg_notify('jobs', 'job-42')")
        ((note, woke_at),) = received
        assert (note.channel, note.payload, note.pid) == ("jobs", "job-42", sender.info.backend_pid)
        assert woke_at - sent_at < 0.5  # woken by the socket, not by the 5 s timeout


async def test_notifies_timeout_and_backlog(database_url):
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("LISTEN quiet")
        started = time.monotonic()
        assert [n async for n in conn.notifies(timeout=0.2)] == []
        assert 0.19 <= time.monotonic() - started < 2.0
        # Notifications arriving while nobody iterates are kept, and timeout=0 polls once.
        await conn.execute("NOTIFY quiet, 'a'")
        await conn.execute("NOTIFY quiet, 'b'")
        payloads = [n.payload async for n in conn.notifies(timeout=0)]
        assert payloads == ["a", "b"]


async def test_connection_is_reusable_after_leaving_notifies_early(database_url):
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("LISTEN ch")
        await conn.execute("NOTIFY ch, 'x'")
        async with aclosing(conn.notifies()) as notes:
            async for _ in notes:
                # Nested use from the task iterating the generator is refused, not a deadlock.
                with pytest.raises(psycopg.ProgrammingError, match="already in use"):
                    await conn.execute("SELECT 1")
                break
        assert await (await conn.execute("SELECT 2")).fetchone() == (2,)


async def test_close_wakes_a_task_blocked_on_the_connection(database_url):
    conn = await connect(database_url, autocommit=True)
    await conn.execute("LISTEN never")
    outcome: list[BaseException] = []

    async def wait_forever():
        try:
            async for _ in conn.notifies():
                pass
        except psycopg.OperationalError as exc:
            outcome.append(exc)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_forever)
            await trio.sleep(0.05)
            await conn.close()
    assert len(outcome) == 1
    assert conn.closed


async def test_copy_from_and_to_round_trip(database_url):
    rows = [(i, f"name {i}", i * 0.5) for i in range(10_000)]
    async with await connect(database_url) as conn:
        await conn.execute("CREATE TABLE t (id int, name text, score float8)")
        async with conn.cursor() as cur:
            async with cur.copy("COPY t (id, name, score) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
            assert cur.rowcount == 10_000
            copied = []
            query = "COPY (SELECT id, name, score FROM t ORDER BY id) TO STDOUT"
            async with cur.copy(query) as copy:
                copy.set_types(["int4", "text", "float8"])
                async for row in copy.rows():
                    copied.append(row)
        await conn.commit()
        assert copied == rows
        # Raw COPY TO of the same data, as CSV bytes.
        async with conn.cursor() as cur:
            chunks = []
            async with cur.copy("COPY t TO STDOUT (FORMAT csv)") as copy:
                async for chunk in copy:
                    chunks.append(bytes(chunk))
        assert b"".join(chunks).count(b"\n") == 10_000


async def test_cancelled_copy_in_is_aborted(database_url):
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int)")
        with trio.move_on_after(0.2) as scope:
            async with conn.cursor() as cur, cur.copy("COPY t FROM STDIN") as copy:
                for i in range(1000):
                    await copy.write_row((i,))
                    await trio.sleep(0.01)  # a slow producer
        assert scope.cancelled_caught
        assert not conn.closed
        assert conn.info.transaction_status == IDLE
        assert await (await conn.execute("SELECT count(*) FROM t")).fetchone() == (0,)


async def test_cancelled_copy_out_leaves_connection_usable(database_url):
    async with await connect(database_url, autocommit=True) as conn:
        seen = 0
        started = time.monotonic()
        with trio.CancelScope() as scope:
            query = "COPY (SELECT generate_series(1, 50000000)) TO STDOUT"
            async with conn.cursor() as cur, cur.copy(query) as copy:
                async for _ in copy:
                    seen += 1
                    if seen == 10_000:
                        scope.cancel()  # mid-stream: the server has millions more to send
        assert scope.cancelled_caught
        assert 10_000 <= seen < 50_000_000
        assert time.monotonic() - started < 5
        assert not conn.closed
        assert conn.info.transaction_status == IDLE
        assert await (await conn.execute("SELECT 3")).fetchone() == (3,)


async def test_server_side_cursor_iterates_past_itersize(database_url):
    async with await connect(database_url) as conn:
        async with conn.cursor("big") as cur:
            cur.itersize = 100
            await cur.execute("SELECT g, g * 2 FROM generate_series(1, 2500) AS g")
            seen = [row async for row in cur]
        assert len(seen) == 2500
        assert seen[0] == (1, 2) and seen[-1] == (2500, 5000)
        async with conn.cursor("chunks") as cur:
            await cur.execute("SELECT generate_series(1, 10)")
            assert [r[0] for r in await cur.fetchmany(4)] == [1, 2, 3, 4]
            assert [r[0] for r in await cur.fetchall()] == [5, 6, 7, 8, 9, 10]
        await conn.commit()


async def test_stream_left_early_is_cancelled_on_server(database_url):
    # cursor.stream() cancels the rest of its query through cancel_safe() on early exit.
    async with await connect(database_url, autocommit=True) as conn:
        query = "SELECT generate_series(1, 100000000)"
        async with conn.cursor() as cur, aclosing(cur.stream(query)) as rows:
            async for (value,) in rows:
                if value == 10:
                    break
        assert conn.info.transaction_status == IDLE
        assert await (await conn.execute("SELECT 4")).fetchone() == (4,)


async def test_operations_that_never_block_still_let_other_tasks_run(database_url):
    # set_autocommit() goes through wait() with a generator that completes at once: the
    # adapter must still yield to the scheduler every MAX_BUSY_TIME (5 ms).
    stamps: list[float] = []

    async def ticker():
        while True:
            await trio.lowlevel.checkpoint()
            stamps.append(time.monotonic())

    async with await connect(database_url) as conn, trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        started = time.monotonic()
        for _ in range(200_000):  # ~0.4 s of calls that never block
            await conn.set_autocommit(False)
        ended = time.monotonic()
        nursery.cancel_scope.cancel()
    marks = [started, *(t for t in stamps if started <= t <= ended), ended]
    gaps = sorted(b - a for a, b in itertools.pairwise(marks))
    # Without the adapter's schedule points there is one gap, the whole loop. The median
    # gap (not the longest: a loaded host may preempt the process) shows the cadence.
    assert len(marks) >= 10, f"the ticker ran {len(marks) - 2} times in {ended - started:.2f} s"
    median = gaps[len(gaps) // 2]
    assert median < 0.025, f"other tasks waited {median * 1000:.1f} ms between turns"


async def test_connect_failures(database_url):
    with socket.socket() as silent:  # accepts TCP connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(e.ConnectionTimeout):
            await TrioConnection.connect(f"host=127.0.0.1 port={port}", connect_timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2.0
    with pytest.raises(psycopg.OperationalError):
        await TrioConnection.connect(f"host=127.0.0.1 port={port} dbname=x", connect_timeout=2)
    async with await TrioConnection.connect(database_url + " connect_timeout=3") as conn:
        assert not conn.autocommit
        assert conn.info.dbname.startswith("triaged_test_")


def test_psycopg_internals_the_adapter_relies_on():
    """Fails first when a psycopg upgrade moves what psycopg_trio.py depends on."""
    assert issubclass(e._WaitTimeout, psycopg.OperationalError)
    assert callable(generators.connect) and callable(generators.cancel)
    assert callable(generators.notifies)
    assert (int(Wait.R), int(Wait.W), int(Wait.RW)) == (1, 2, 3)
    assert (int(Ready.NONE), int(Ready.R), int(Ready.W)) == (0, 1, 2)
    assert list(inspect.signature(psycopg.AsyncConnection.wait).parameters) == [
        "self",
        "gen",
        "interval",
        "timeout",
    ]
    source = inspect.getsource(connection_async)
    assert "self.lock = ALock()" in source  # the lock TrioConnection replaces
    assert "async with self.lock" in source
    assert "except e._WaitTimeout" in source  # notifies(timeout=) relies on it
    assert "await self.cancel_safe(" in source  # _try_cancel (stream, COPY) goes through it
    assert "self.pgconn.finish()" in inspect.getsource(psycopg.AsyncConnection.close)
