"""The Trio connection pool against a real PostgreSQL (and a private embedded one for the
server-restart test)."""

from __future__ import annotations

import logging
import socket
import time

import psycopg
import pytest
import trio
from psycopg import pq

from daemon.shared.db import PoolStats, TrioConnection, embedded, open_pool
from daemon.shared.errors import DatabaseError, PoolClosed, PoolTimeout
from tests.conftest import with_database

IDLE = pq.TransactionStatus.IDLE


async def count_rows(url: str, table: str = "t") -> int:
    async with await TrioConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
    return row[0]


async def create_table(url: str) -> None:
    async with await TrioConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int)")


async def wait_until(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_connection_and_stats(database_url):
    async with open_pool(database_url, min_size=2, max_size=4, name="stats") as pool:
        await wait_until(lambda: pool.stats().idle == 2)
        async with pool.connection() as conn:
            assert isinstance(conn, TrioConnection)
            assert not conn.autocommit
            cur = await conn.execute("SELECT %s::int * 2", (21,))
            assert await cur.fetchone() == (42,)
            stats = pool.stats()
            assert (stats.size, stats.idle, stats.in_use, stats.waiting) == (2, 1, 1, 0)
        stats = pool.stats()
        assert isinstance(stats, PoolStats)
        assert stats.name == "stats" and stats.max_size == 4
        assert (stats.size, stats.idle, stats.in_use) == (2, 2, 0)
        assert stats.connections_opened_total == 2
        assert stats.connections_failed_total == 0 and stats.acquire_timeouts_total == 0
        with pytest.raises(AttributeError):
            stats.size = 3  # frozen


async def test_transaction_commits_or_rolls_back(database_url):
    await create_table(database_url)
    async with open_pool(database_url, max_size=2) as pool:
        async with pool.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
        assert await count_rows(database_url) == 1

        with pytest.raises(RuntimeError, match="boom"):
            async with pool.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")
        assert await count_rows(database_url) == 1

        with trio.move_on_after(0.1) as scope:
            async with pool.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (3)")
                await trio.sleep(5)
        assert scope.cancelled_caught
        with trio.move_on_after(0.2) as scope:
            async with pool.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (4)")
                await conn.execute("SELECT pg_sleep(5)")
        assert scope.cancelled_caught
        assert await count_rows(database_url) == 1

        with pytest.raises(psycopg.ProgrammingError):
            async with pool.transaction() as conn:
                await conn.commit()  # the block owns the transaction
        async with pool.transaction() as conn:
            async with conn.transaction():  # a savepoint
                await conn.execute("INSERT INTO t VALUES (5)")
            assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        assert await count_rows(database_url) == 2
        assert pool.stats().size <= 2


async def test_connections_come_back_clean(database_url):
    await create_table(database_url)
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
            await conn.execute("INSERT INTO t VALUES (1)")  # left uncommitted
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid  # the same connection...
            assert conn.info.transaction_status == IDLE  # ...rolled back
            with pytest.raises(psycopg.errors.UndefinedTable):
                await conn.execute("SELECT * FROM missing")  # left in error
        async with pool.connection() as conn:
            assert conn.info.transaction_status == IDLE
            await conn.set_autocommit(True)
            await conn.set_read_only(True)
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert not conn.autocommit and conn.read_only is None
            await conn.close()  # closed by its user: replaced
        async with pool.connection() as conn:
            assert conn.info.backend_pid != pid
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
        assert await count_rows(database_url) == 0


async def test_terminated_connection_is_replaced(database_url):
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        async with await TrioConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await trio.sleep(0.05)
        async with pool.connection(timeout=2) as conn:
            assert conn.info.backend_pid != pid
            assert (await (await conn.execute("SELECT 'fresh'")).fetchone()) == ("fresh",)
        assert pool.stats().connections_opened_total == 2


async def test_connection_killed_while_lent_is_discarded(database_url):
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                async with await TrioConnection.connect(database_url, autocommit=True) as admin:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                await conn.execute("SELECT 1")
        await pool.check(timeout=2)
        assert pool.stats().size == 1


async def test_acquire_timeout(database_url):
    async with (
        open_pool(database_url, max_size=2, name="tiny") as pool,
        trio.open_nursery() as nursery,
    ):
        release = trio.Event()

        async def hold(task_status=trio.TASK_STATUS_IGNORED):
            async with pool.connection():
                task_status.started()
                await release.wait()

        await nursery.start(hold)
        await nursery.start(hold)
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"within 0\.2s \(pool 'tiny'\)"):
            async with pool.connection(timeout=0.2):
                pass
        assert 0.19 <= time.monotonic() - started < 2.0  # its own timeout, loosely
        stats = pool.stats()
        assert stats.acquire_timeouts_total == 1 and stats.waiting == 0
        assert stats.size == 2 and stats.in_use == 2
        release.set()
    assert pool.stats().connections_opened_total == 2


async def test_each_waiter_gets_its_own_timeout(database_url):
    # The later waiter has the shorter timeout: it must give up first, on its own clock,
    # while the earlier one keeps waiting for its own. (Bounds are loose for a loaded host;
    # the order and the lower bounds carry the claim.)
    waited: dict[str, float] = {}
    both_gave_up = trio.Event()
    async with (
        open_pool(database_url, max_size=1) as pool,
        trio.open_nursery() as nursery,
        pool.connection(),
    ):

        async def borrow(name: str, timeout: float) -> None:
            queued = time.monotonic()
            with pytest.raises(PoolTimeout):
                async with pool.connection(timeout=timeout):
                    pass
            waited[name] = time.monotonic() - queued
            if len(waited) == 2:
                both_gave_up.set()

        nursery.start_soon(borrow, "patient", 1.5)
        await trio.sleep(0.01)
        nursery.start_soon(borrow, "hasty", 0.1)  # queued later, expires first
        with trio.fail_after(10):
            await both_gave_up.wait()
    assert list(waited) == ["hasty", "patient"]
    assert 0.1 <= waited["hasty"] < 1.0
    assert 1.5 <= waited["patient"] < 4.0
    assert pool.stats().acquire_timeouts_total == 2


async def test_waiters_are_served_in_arrival_order(database_url):
    order: list[int] = []
    async with (
        open_pool(database_url, min_size=1, max_size=1) as pool,
        trio.open_nursery() as nursery,
        pool.connection(),
    ):
        for i in range(5):

            async def borrow(i=i, task_status=trio.TASK_STATUS_IGNORED):
                task_status.started()
                async with pool.connection():
                    order.append(i)
                    await trio.sleep(0.005)

            await nursery.start(borrow)
            await trio.sleep(0.01)  # queued before the next one starts
        assert pool.stats().waiting == 5
    assert order == [0, 1, 2, 3, 4]


async def test_max_lifetime_recycles(database_url):
    async with open_pool(database_url, min_size=1, max_size=1, max_lifetime=0.3) as pool:
        async with pool.connection() as conn:
            first = conn.info.backend_pid
        await trio.sleep(0.4)
        async with pool.connection() as conn:
            second = conn.info.backend_pid
            await trio.sleep(0.4)  # expires while lent: closed when given back
        async with pool.connection() as conn:
            third = conn.info.backend_pid
        assert len({first, second, third}) == 3
        assert pool.stats().size == 1


async def test_idle_connections_above_min_size_are_closed(database_url):
    async with open_pool(database_url, min_size=1, max_size=3, max_idle=0.2) as pool:
        release = trio.Event()
        async with trio.open_nursery() as nursery:
            for _ in range(3):

                async def hold(task_status=trio.TASK_STATUS_IGNORED):
                    async with pool.connection():
                        task_status.started()
                        await release.wait()

                await nursery.start(hold)
            assert pool.stats().size == 3
            release.set()
        await wait_until(lambda: pool.stats().size == 1, timeout=3)


async def test_fifty_tasks_on_a_pool_of_five(database_url):
    peak = 0
    done = 0
    pids: set[int] = set()
    async with open_pool(database_url, min_size=1, max_size=5) as pool:

        async def work(i: int) -> None:
            nonlocal peak, done
            async with pool.transaction() as conn:
                peak = max(peak, pool.stats().size + pool.stats().opening)
                cur = await conn.execute("SELECT %s::int, pg_backend_pid(), pg_sleep(0.01)", (i,))
                value, pid, _ = await cur.fetchone()
                assert value == i
                pids.add(pid)
                done += 1

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(work, i)
        stats = pool.stats()
    assert done == 50
    assert peak <= 5 and stats.size <= 5 and len(pids) <= 5
    assert stats.connections_opened_total <= 5
    assert stats.acquire_timeouts_total == 0


async def test_check_after_idle_pings(database_url):
    async with open_pool(database_url, min_size=1, max_size=1, check_after_idle=0) as pool:
        for _ in range(3):
            async with pool.connection() as conn:
                assert not conn.autocommit
                assert conn.info.transaction_status == IDLE
        await pool.check()
        assert pool.stats().connections_opened_total == 1


async def test_closing_the_pool_fails_waiters_and_closes_connections(database_url):
    outcome: list[BaseException] = []
    lent: list[TrioConnection] = []
    async with trio.open_nursery() as nursery:
        async with open_pool(database_url, min_size=1, max_size=1) as pool:

            async def hold(task_status=trio.TASK_STATUS_IGNORED):
                async with pool.connection() as conn:
                    lent.append(conn)
                    task_status.started()
                    await trio.sleep_forever()

            async def wait_for_one():
                try:
                    async with pool.connection(timeout=5):
                        pass
                except PoolClosed as exc:
                    outcome.append(exc)

            await nursery.start(hold)
            nursery.start_soon(wait_for_one)
            await wait_until(lambda: pool.stats().waiting == 1)
        await wait_until(lambda: bool(outcome))
        nursery.cancel_scope.cancel()
    assert isinstance(outcome[0], PoolClosed)
    assert lent[0].closed  # given back after the pool closed: closed, not leaked
    with pytest.raises(PoolClosed):
        async with pool.connection():
            pass


async def test_errors_in_the_block_propagate_unwrapped(database_url):
    with pytest.raises(KeyError):
        async with open_pool(database_url):
            raise KeyError("not an ExceptionGroup")


async def test_unreachable_server_times_out_without_leaking_the_password(caplog):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://app:s3cr3t-pw@127.0.0.1:{port}/db"
    caplog.set_level(logging.DEBUG, logger="triaged.db")
    async with open_pool(url, acquire_timeout=0.5, connect_timeout=0.5, name="down") as pool:
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as caught:
            await pool.check()
        assert time.monotonic() - started < 3.0  # bounded by the 0.5 s timeouts
        assert pool.stats().connections_failed_total >= 1
    message = str(caught.value)
    assert "pool 'down'" in message and "last connection attempt failed" in message
    assert "s3cr3t" not in message
    reconnects = [r for r in caplog.records if getattr(r, "action", None) == "db.reconnect"]
    assert reconnects and reconnects[0].attempt == 1 and reconnects[0].delay > 0
    for record in caplog.records:
        assert "s3cr3t" not in record.getMessage()
        assert "s3cr3t" not in repr(vars(record))


@pytest.mark.parametrize(
    "bad",
    [{"min_size": 3, "max_size": 2}, {"max_size": 0}, {"acquire_timeout": 0}, {"max_lifetime": -1}],
)
async def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        async with open_pool("dbname=x", **bad):
            pass


async def test_pool_recovers_after_the_server_restarts(tmp_path):
    server = await trio.to_thread.run_sync(embedded.start, tmp_path)
    try:
        url = with_database(server.url, embedded.DATABASE_NAME)
        async with open_pool(
            url, min_size=1, max_size=2, acquire_timeout=1.0, connect_timeout=1.0
        ) as pool:
            await pool.check()
            await trio.to_thread.run_sync(embedded.stop, server)

            started = time.monotonic()
            with pytest.raises(DatabaseError):
                await pool.check()
            with pytest.raises(DatabaseError):
                await pool.check()
            assert time.monotonic() - started < 4.0  # bounded by the timeouts, no hang

            await trio.to_thread.run_sync(embedded.start, tmp_path)
            with trio.fail_after(15):
                while True:
                    try:
                        await pool.check()
                        break
                    except DatabaseError:
                        await trio.sleep(0.1)
            async with pool.transaction() as conn:
                assert (await (await conn.execute("SELECT 'back'")).fetchone()) == ("back",)
            assert pool.stats().connections_failed_total >= 1
    finally:
        await trio.to_thread.run_sync(embedded.stop, server)
