"""The poll core (daemon/modules/sources/polling.py) on real PostgreSQL, with a poller
written here against the contract: exactly once per item across polls, a poll failing
halfway loses nothing and duplicates nothing, the quota, and failures disabling."""

from __future__ import annotations

import attrs
import pytest

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import FetchPolicy
from daemon.modules.sources import (
    PolledItem,
    SourcePolicy,
    SourcesConfig,
    check_source_input,
    create_source,
    get_source,
    list_polls,
    run_poll,
    set_source_enabled,
)
from daemon.shared.errors import DaemonError

CONFIG = SourcesConfig(
    policy=SourcePolicy(directory_roots=("/srv/in",)),
    fetch=FetchPolicy(),
    max_document_bytes=1 << 20,
    max_attempts=3,
    max_failures=3,
    backoff_base_seconds=0.0,
)


class ListPoller:
    """Yields ``items`` in batches of ``size``; raises after ``fail_after`` batches."""

    def __init__(self, items, *, size=4, fail_after=None):
        self.items, self.size, self.fail_after = items, size, fail_after
        self.outcomes = []

    async def batches(self):
        for n, start in enumerate(range(0, len(self.items), self.size)):
            if self.fail_after is not None and n >= self.fail_after:
                raise DaemonError("disk went away")
            yield self.items[start : start + self.size]

    async def after_commit(self, outcome):
        self.outcomes.append(outcome)


def items(count, *, prefix="f"):
    return [
        PolledItem(identity=f"{prefix}{i}", title=f"item {i}", content=f"text {i}".encode(),
                   media_type="text/plain")
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture
async def source(pool):
    body = {"name": "inbox", "kind": "directory", "config": {"path": "/srv/in/a"},
            "schedule": {"interval_seconds": 60}, "title_template": "[{source}] {title}",
            "metadata": {"team": "ops"}}  # fmt: skip
    return await create_source(
        pool, check_source_input(body, CONFIG.policy), context=AuditContext.system()
    )


async def documents_of(pool, source_id):
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT external_id, title, metadata FROM documents WHERE source_id = %s"
                " ORDER BY id",
                [source_id],
            )
        ).fetchall()
        jobs = await (
            await conn.execute(
                "SELECT count(*) FROM jobs j JOIN documents d"
                " ON d.id = (j.payload->>'document_id')::bigint"
                " WHERE d.source_id = %s AND j.queue = 'ingest.fetch'",
                [source_id],
            )
        ).fetchone()
    return rows, jobs[0]


async def test_each_item_once_across_polls_and_a_failure_halfway(pool, source, monkeypatch):
    from daemon.modules.sources import POLLERS

    poller = ListPoller(items(10), fail_after=2)
    monkeypatch.setitem(POLLERS, "directory", lambda context: poller)
    failed = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert failed.error == "disk went away" and failed.documents_created == 8
    assert [len(o.created) for o in poller.outcomes] == [4, 4]

    poller = ListPoller(items(12))
    monkeypatch.setitem(POLLERS, "directory", lambda context: poller)
    done = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert done.error is None and done.items_seen == 12 and done.documents_created == 4
    assert [len(o.known) for o in poller.outcomes] == [4, 4, 0]  # after_commit sees known

    again = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert again.documents_created == 0
    rows, jobs = await documents_of(pool, source.id)
    assert sorted(r[0] for r in rows) == sorted(f"f{i}" for i in range(12))
    assert jobs == 12  # each document has its first pipeline job
    assert rows[0][1] == "[inbox] item 0" and rows[0][2] == {"team": "ops"}
    polls = await list_polls(pool, source.id)
    assert [p.documents_created for p in polls.items] == [0, 4, 8]
    assert polls.items[2].error == "disk went away"
    healthy = await get_source(pool, source.id)
    assert healthy.consecutive_failures == 0 and healthy.last_success_at is not None


async def test_quota_leaves_the_rest_for_the_next_poll(pool, source, monkeypatch):
    from daemon.modules.sources import POLLERS, update_source

    source = await update_source(
        pool, source.id, {"limits": {"items_per_poll": 5}}, CONFIG.policy,
        context=AuditContext.system(),
    )  # fmt: skip
    monkeypatch.setitem(POLLERS, "directory", lambda context: ListPoller(items(12)))
    created = [
        (await run_poll(pool, CONFIG, source.id, trigger="manual")).documents_created
        for _ in range(4)
    ]
    assert created == [5, 5, 2, 0]


async def test_failures_back_off_then_disable_until_enabled(pool, source, monkeypatch):
    from daemon.modules.sources import POLLERS

    monkeypatch.setitem(POLLERS, "directory", lambda c: ListPoller(items(3), fail_after=0))
    for _ in range(3):
        await run_poll(pool, CONFIG, source.id, trigger="manual")
    disabled = await get_source(pool, source.id)
    assert not disabled.enabled and disabled.consecutive_failures == 3
    assert "3 consecutive failed polls" in disabled.disabled_reason
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT s.enabled, (SELECT count(*) FROM audit_events a"
                " WHERE a.action = 'source.disabled' AND a.target_id = %s)"
                " FROM schedules s WHERE s.name = %s",
                [str(source.id), f"source.{source.id}"],
            )
        ).fetchone()
    assert row == (False, 1)
    skipped = await run_poll(pool, CONFIG, source.id, trigger="schedule")
    assert skipped.skipped == "disabled"

    enabled = await set_source_enabled(pool, source.id, True, context=AuditContext.system())
    assert enabled.enabled and enabled.consecutive_failures == 0 and not enabled.disabled_reason
    monkeypatch.setitem(POLLERS, "directory", lambda c: ListPoller(items(3)))
    assert (await run_poll(pool, CONFIG, source.id)).documents_created == 3


async def test_after_a_failure_scheduled_polls_wait_but_poll_now_does_not(
    pool, source, monkeypatch
):
    from daemon.modules.sources import POLLERS

    slow = attrs.evolve(CONFIG, backoff_base_seconds=600.0)
    monkeypatch.setitem(POLLERS, "directory", lambda c: ListPoller(items(2), fail_after=0))
    await run_poll(pool, slow, source.id, trigger="schedule")
    backing_off = await get_source(pool, source.id)
    assert backing_off.consecutive_failures == 1 and backing_off.next_poll_at is not None
    assert backing_off.last_error == "disk went away"
    monkeypatch.setitem(POLLERS, "directory", lambda c: ListPoller(items(2)))
    skipped = await run_poll(pool, slow, source.id, trigger="schedule")
    assert skipped.skipped == "backing off after failures" and skipped.poll_id is None
    manual = await run_poll(pool, slow, source.id, trigger="manual")
    assert manual.documents_created == 2
    assert (await get_source(pool, source.id)).next_poll_at is None


async def test_outside_text_with_nul_characters_is_stored(pool, source, monkeypatch):
    from daemon.modules.sources import POLLERS

    odd = [PolledItem(identity="a\x00b", title="x\x00y", content=b"t", media_type="text/plain",
                      metadata={"k\x00": "v\x00"})]  # fmt: skip
    monkeypatch.setitem(POLLERS, "directory", lambda c: ListPoller(odd))
    assert (await run_poll(pool, CONFIG, source.id, trigger="manual")).documents_created == 1
    assert (await run_poll(pool, CONFIG, source.id, trigger="manual")).documents_created == 0
    rows, _ = await documents_of(pool, source.id)
    assert rows[0][0].startswith("sha256:") and rows[0][1] == "[inbox] xy"
    assert rows[0][2] == {"team": "ops", "k": "v"}


async def test_the_queue_schedule_follows_the_source(pool, source):
    from daemon.modules.sources import delete_source, update_source

    async def schedule():
        async with pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT cron, interval_seconds, timezone, enabled, queue, payload"
                    " FROM schedules WHERE name = %s",
                    [f"source.{source.id}"],
                )
            ).fetchone()

    assert await schedule() == (None, 60.0, "UTC", True, "sources.poll",
                                {"source_id": source.id})  # fmt: skip
    changes = {"schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}, "enabled": False}
    await update_source(pool, source.id, changes, CONFIG.policy, context=AuditContext.system())
    assert (await schedule())[:4] == ("0 3 * * *", None, "Europe/Berlin", False)
    await delete_source(pool, source.id, context=AuditContext.system())
    assert await schedule() is None
