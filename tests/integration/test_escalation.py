"""The escalation check and notification deliveries on a real database, with a real
webhook receiver (signatures verified) and a real SMTP server in its own process."""

from __future__ import annotations

import email
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from daemon.modules.cases import record_case_event
from daemon.modules.ingestion import FetchPolicy
from daemon.modules.notifications import (
    DeliveryOptions,
    create_channel,
    deliver,
    parse_policy,
    run_escalation_check,
)
from daemon.shared.errors import ValidationFailed
from tests.webhook_receiver import WebhookReceiver

SECRET = "s3cret-signing-key"
LOOPBACK = FetchPolicy(allowed_networks=("127.0.0.0/8",), total_timeout=5.0)
OPTIONS = DeliveryOptions(fetch=LOOPBACK, max_attempts=3, backoff_max_seconds=0.1)
POLICY = parse_policy(
    '{"high": {"levels": [{"after": "0s", "channels": ["ops"]},'
    ' {"after": "1h", "channels": ["ops", "lead"], "assign_to": "lead@example.com"},'
    ' {"after": "30m", "channels": ["ops"]}]}}'
)


@pytest.fixture
def receiver():
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


async def new_cases(pool, n, *, severity="high", overdue="10 seconds", status="open"):
    """``n`` cases whose SLA deadline passed ``overdue`` ago."""
    async with pool.transaction() as conn:
        rows = await (
            await conn.execute(
                "WITH d AS (INSERT INTO documents (title) SELECT 'doc ' || g "
                "FROM generate_series(1, %(n)s) g RETURNING id) "
                "INSERT INTO cases (document_id, severity, status, sla_due_at, escalation_due_at) "
                "SELECT d.id, %(severity)s, %(status)s::case_status, "
                "now() - %(overdue)s::interval, "
                "CASE WHEN %(status)s = 'open' THEN now() - %(overdue)s::interval END "
                "FROM d ORDER BY d.id RETURNING id",
                {"n": n, "severity": severity, "overdue": overdue, "status": status},
            )
        ).fetchall()
    return [row[0] for row in rows]


async def add_channel(pool, name, url, config_format="json", **extra):
    config = {"url": url, "secret": SECRET, "format": config_format}
    async with pool.transaction() as conn:
        return await create_channel(
            conn, {"name": name, "kind": "webhook", "config": config, **extra}, LOOPBACK
        )


async def rows(pool, sql, *args):
    async with pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def deliver_all(pool, options=OPTIONS):
    """Run every pending delivery's attempts until each is delivered or failed (what the
    queue's handler does, without the queue's waits)."""
    outcomes = []
    for (delivery_id,) in await rows(
        pool, "SELECT id::text FROM notification_deliveries WHERE status = 'pending' ORDER BY id"
    ):
        while True:
            outcome = await deliver(pool, delivery_id, options)
            if outcome.status != "retry":
                outcomes.append(outcome.status)
                break
    return outcomes


async def test_a_due_case_escalates_notifies_its_channels_and_records_it(pool, receiver):
    await add_channel(pool, "ops", receiver.url)
    await add_channel(pool, "lead", receiver.url)
    [case_id] = await new_cases(pool, 1)
    report = await run_escalation_check(pool, POLICY)
    assert (report.examined, report.escalated) == (1, 1)
    [(level, due)] = await rows(
        pool, "SELECT escalation_level, escalation_due_at - sla_due_at FROM cases"
    )
    assert level == 1 and due.total_seconds() == 3600
    # A second check finds nothing due: the level fired once.
    assert (await run_escalation_check(pool, POLICY)).escalated == 0
    jobs = await rows(pool, "SELECT payload FROM jobs WHERE queue = 'notifications.deliver'")
    assert len(jobs) == 1
    assert await deliver_all(pool) == ["delivered"]
    [got] = receiver.snapshot()
    assert got.valid and got.body["type"] == "case.escalated"
    assert got.body["case"]["id"] == case_id and got.body["event"]["detail"]["level"] == 1
    kinds = [k for (k,) in await rows(pool, "SELECT kind FROM case_events ORDER BY id")]
    assert kinds == ["escalated", "notified"]
    [(detail,)] = await rows(pool, "SELECT detail FROM case_events WHERE kind = 'notified'")
    assert detail["outcome"] == "delivered" and detail["delivery_id"] == got.delivery_id


async def test_a_case_due_while_down_jumps_with_one_notification_per_channel(pool, receiver):
    await add_channel(pool, "ops", receiver.url)
    await add_channel(pool, "lead", receiver.url)
    await pool_users(pool)
    [case_id] = await new_cases(pool, 1, overdue="80 minutes")
    await run_escalation_check(pool, POLICY)
    events = await rows(pool, "SELECT kind, detail FROM case_events ORDER BY id")
    escalated = [d for k, d in events if k == "escalated"]
    assert len(escalated) == 1 and escalated[0]["level"] == 2
    assert escalated[0]["skipped_levels"] == [1]
    assert [k for k, _ in events] == ["escalated", "assigned"]
    [(level, assignee, user_id)] = await rows(
        pool, "SELECT escalation_level, assignee, assignee_user_id FROM cases"
    )
    assert level == 2 and assignee == "lead@example.com" and user_id is not None
    assert sorted(await deliver_all(pool)) == ["delivered", "delivered"]  # ops and lead
    assert len(set(receiver.ids())) == 2
    assert all(r.valid for r in receiver.snapshot())
    assert case_id


async def pool_users(pool):
    async with pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO users (email, display_name, role, password_hash) "
            "VALUES ('lead@example.com', 'Lead', 'analyst', 'x')"
        )


async def test_acknowledged_cases_never_escalate_and_reopened_ones_climb_again(pool, receiver):
    await add_channel(pool, "ops", receiver.url)
    await new_cases(pool, 1, status="acknowledged", overdue="3 hours")
    [reopened] = await new_cases(pool, 1, overdue="5 minutes")
    assert (await run_escalation_check(pool, POLICY)).escalated == 1
    # Acknowledged (the cases module clears the due time): the ladder stops.
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE cases SET status = 'acknowledged', escalation_due_at = NULL WHERE id = %s",
            (reopened,),
        )
    assert (await run_escalation_check(pool, POLICY)).examined == 0
    # Reopened: level 0 and a new deadline, one cycle later: level 1 fires again.
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE cases SET status = 'open', escalation_level = 0, "
            "escalation_due_at = now() - interval '1 second' WHERE id = %s",
            (reopened,),
        )
        await record_case_event(conn, reopened, "reopened", "user:1", {})
    assert (await run_escalation_check(pool, POLICY)).escalated == 1
    keys = await rows(pool, "SELECT cycle, level FROM case_escalations ORDER BY cycle")
    assert keys == [(0, 1), (1, 1)]
    assert await deliver_all(pool) == ["delivered", "delivered"]


async def test_three_checks_at_once_fire_each_level_exactly_once(pool, receiver):
    await add_channel(pool, "ops", receiver.url)
    await new_cases(pool, 200, overdue="1 minute")
    reports = []

    async def check():
        reports.append(await run_escalation_check(pool, POLICY, batch_size=20))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(check)
    assert sum(r.escalated for r in reports) == 200
    counts = await rows(
        pool,
        "SELECT count(*) FILTER (WHERE kind = 'escalated'), count(DISTINCT case_id) "
        "FROM case_events",
    )
    assert counts == [(200, 200)]
    [(deliveries, distinct)] = await rows(
        pool, "SELECT count(*), count(DISTINCT event_id) FROM notification_deliveries"
    )
    assert deliveries == distinct == 200


async def test_opened_and_resolved_events_reach_subscribed_channels_by_severity(pool, receiver):
    await add_channel(pool, "all", receiver.url, events=["opened", "resolved"])
    await add_channel(pool, "crit", receiver.url, events=["opened"], min_severity="critical")
    [high] = await new_cases(pool, 1, overdue="-1 hour")
    async with pool.transaction() as conn:
        await record_case_event(conn, high, "opened", "system", {})
        await record_case_event(conn, high, "commented", "user:1", {})
        await record_case_event(conn, high, "resolved", "user:1", {})
    got = await rows(
        pool,
        "SELECT nd.event_kind, ch.name FROM notification_deliveries nd "
        "JOIN notification_channels ch ON ch.id = nd.channel_id ORDER BY nd.event_kind",
    )
    assert got == [("opened", "all"), ("resolved", "all")]  # high < critical: not "crit"
    assert await deliver_all(pool) == ["delivered", "delivered"]
    assert sorted(r.body["type"] for r in receiver.snapshot()) == ["case.opened", "case.resolved"]


async def test_a_failing_receiver_is_retried_with_the_same_id_then_recorded_failed(pool, receiver):
    await add_channel(pool, "ops", receiver.url)
    await new_cases(pool, 1)
    await run_escalation_check(pool, POLICY)
    [(delivery_id,)] = await rows(pool, "SELECT id::text FROM notification_deliveries")
    receiver.fail = True
    first = await deliver(pool, delivery_id, OPTIONS)
    assert first.status == "retry" and "503" in first.reason
    receiver.fail = False
    assert (await deliver(pool, delivery_id, OPTIONS)).status == "delivered"
    assert receiver.ids() == [delivery_id]  # the one delivery id, on the retry too
    assert (await deliver(pool, delivery_id, OPTIONS)).status == "gone"  # never twice
    receiver.fail = True
    [case_id] = await new_cases(pool, 1)
    await run_escalation_check(pool, POLICY)
    assert await deliver_all(pool) == ["failed"]  # 3 attempts, then failed for good
    [(status, attempts, error)] = await rows(
        pool,
        "SELECT status, attempts, last_error FROM notification_deliveries WHERE case_id = %s",
        case_id,
    )
    assert (status, attempts) == ("failed", 3) and "503" in error
    [(detail,)] = await rows(
        pool, "SELECT detail FROM case_events WHERE case_id = %s AND kind = 'notified'", case_id
    )
    assert detail["outcome"] == "failed" and "503" in detail["reason"]


async def test_webhook_urls_must_pass_the_ssrf_guard(pool):
    async with pool.transaction() as conn:
        with pytest.raises(ValidationFailed) as caught:
            await create_channel(
                conn,
                {
                    "name": "x",
                    "kind": "webhook",
                    "config": {"url": "http://127.0.0.1:9/h", "secret": "k"},
                },
                FetchPolicy(),
            )
    assert caught.value.errors[0]["field"] == "config.url"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_sink(tmp_path):
    port = free_port()
    directory = tmp_path / "mail"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.smtp_sink", str(port), str(directory)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"ready")
    yield port, directory
    process.kill()
    process.wait()
    process.stdout.close()


async def test_an_email_channel_delivers_to_the_smtp_server(pool, smtp_sink):
    port, directory = smtp_sink
    async with pool.transaction() as conn:
        channel = await create_channel(
            conn,
            {
                "name": "ops",
                "kind": "email",
                "config": {
                    "to": ["duty@example.com"],
                    "host": "localhost",
                    "port": port,
                    "security": "none",  # no credentials: they go over TLS only
                },
            },
            LOOPBACK,
        )
    assert not channel.has_secret
    await new_cases(pool, 1)
    await run_escalation_check(pool, POLICY)
    assert await deliver_all(pool) == ["delivered"]
    deadline = time.monotonic() + 5
    while not list(directory.glob("*.eml")) and time.monotonic() < deadline:
        await trio.sleep(0.05)
    [mail] = directory.glob("*.eml")
    text = mail.read_text()
    assert "X-Sink-To: <duty@example.com>" in text
    assert "escalated to level 1" in text


async def test_metrics_count_escalations_and_deliveries(pool, api, receiver):
    await add_channel(pool, "ops", receiver.url)
    await new_cases(pool, 2)
    await run_escalation_check(pool, POLICY)
    receiver.fail = True
    [first, _] = await rows(pool, "SELECT id::text FROM notification_deliveries ORDER BY id")
    await deliver(pool, first[0], OPTIONS)  # one retry: still pending
    receiver.fail = False
    await deliver(pool, first[0], OPTIONS)
    async with api.client() as client:
        text = (await client.get("/metrics")).text
    assert 'triaged_case_escalations{severity="high",level="1"} 2' in text
    assert 'triaged_notification_deliveries{kind="webhook",outcome="delivered"} 1' in text
    assert 'triaged_notification_deliveries{kind="webhook",outcome="pending"} 1' in text


async def test_the_case_lifecycle_stops_and_restarts_the_ladder(pool, receiver):
    """With the cases module's own actions: acknowledge stops the ladder, resolve
    notifies a subscribed channel, reopen starts the ladder again (a new cycle)."""
    from datetime import UTC, datetime, timedelta

    from daemon.modules.audit import AuditContext
    from daemon.modules.cases import DEFAULT_SLA, CaseWorkConfig, Request, act_on_case

    config = CaseWorkConfig(resolutions=("fixed",), sla=DEFAULT_SLA)
    await add_channel(pool, "ops", receiver.url, events=["resolved"])
    [case_id] = await new_cases(pool, 1)
    assert (await run_escalation_check(pool, POLICY)).escalated == 1

    async def act(action, **fields):
        async with pool.transaction() as conn:
            return await act_on_case(
                conn,
                case_id,
                Request(action=action, **fields),
                config=config,
                context=AuditContext.system(),
                expected_version=None,
            )

    await act("acknowledge")
    assert (await run_escalation_check(pool, POLICY)).examined == 0
    await act("resolve", resolution="fixed")
    async with pool.transaction() as conn:  # reopened 4.5 h ago: its deadline passed 30 min ago
        await act_on_case(
            conn,
            case_id,
            Request(action="reopen"),
            config=config,
            context=AuditContext.system(),
            expected_version=None,
            now=datetime.now(UTC) - timedelta(hours=4, minutes=30),
        )
    report = await run_escalation_check(pool, POLICY)
    assert report.escalated == 1
    keys = await rows(pool, "SELECT cycle, level FROM case_escalations ORDER BY cycle")
    assert keys == [(0, 1), (1, 1)]
    kinds = [k for (k,) in await rows(pool, "SELECT event_kind FROM notification_deliveries")]
    assert sorted(kinds) == ["escalated", "escalated", "resolved"]
    assert await deliver_all(pool) == ["delivered"] * 3


async def test_slack_form_is_signed_text_and_a_refused_url_fails_at_once(pool, receiver):
    await add_channel(pool, "ops", receiver.url, config_format="slack")
    [case_id] = await new_cases(pool, 1)
    await run_escalation_check(pool, POLICY)
    assert await deliver_all(pool) == ["delivered"]
    [got] = receiver.snapshot()
    assert got.valid and set(got.body) == {"text"}
    assert f"case #{case_id} (high) escalated to level 1" in got.body["text"]
    # The address policy in force when sending refuses loopback: failed for good, once.
    await new_cases(pool, 1)
    await run_escalation_check(pool, POLICY)
    strict = DeliveryOptions(fetch=FetchPolicy(), max_attempts=5)
    assert await deliver_all(pool, strict) == ["failed"]
    [(attempts, error)] = await rows(
        pool, "SELECT attempts, last_error FROM notification_deliveries WHERE status = 'failed'"
    )
    assert attempts == 1 and "refused" in error


async def test_a_webhook_urls_path_never_reaches_the_delivery_or_the_case_history(pool):
    """A chat webhook's URL path is its credential: a failing delivery records the
    receiver's origin only (last_error, the retry reason, the viewer-visible event)."""
    impatient = DeliveryOptions(
        fetch=FetchPolicy(allowed_networks=("127.0.0.0/8",), total_timeout=0.5), max_attempts=2
    )
    with socket.socket() as silent:  # accepts connections, never answers: each try times out
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        await add_channel(pool, "ops", f"http://127.0.0.1:{port}/hooks/T0/B0/s3cr3tp4th?k=tok3n")
        [case_id] = await new_cases(pool, 1)
        await run_escalation_check(pool, POLICY)
        [(delivery_id,)] = await rows(pool, "SELECT id::text FROM notification_deliveries")
        first = await deliver(pool, delivery_id, impatient)
        assert first.status == "retry" and f"http://127.0.0.1:{port}" in first.reason
        assert await deliver_all(pool, impatient) == ["failed"]
    [(error,)] = await rows(pool, "SELECT last_error FROM notification_deliveries")
    [(detail,)] = await rows(
        pool, "SELECT detail FROM case_events WHERE case_id = %s AND kind = 'notified'", case_id
    )
    for text in (first.reason, error, detail["reason"]):
        assert "s3cr3tp4th" not in text and "tok3n" not in text and "/hooks" not in text


async def test_a_changed_destination_needs_the_secret_again(pool):
    from daemon.modules.notifications import update_channel

    channel = await add_channel(pool, "ops", "http://127.0.0.1:9/hook")
    async with pool.transaction() as conn:
        email = await create_channel(
            conn,
            {
                "name": "mail",
                "kind": "email",
                "config": {
                    "to": ["duty@example.com"],
                    "host": "smtp.example.org",
                    "security": "tls",
                    "username": "bot",
                    "password": "pw",
                },
            },
            LOOPBACK,
        )
    moves = [
        (channel.id, {"url": "http://127.0.0.2:9/hook"}, "config.secret"),
        (email.id, {"host": "smtp.example.net"}, "config.password"),
        (email.id, {"port": 2525}, "config.password"),
        (email.id, {"security": "none"}, "config.username"),
    ]
    for channel_id, config, field in moves:
        async with pool.transaction() as conn:
            with pytest.raises(ValidationFailed) as caught:
                await update_channel(conn, channel_id, {"config": config}, LOOPBACK)
        assert caught.value.errors[0]["field"] == field
    async with pool.transaction() as conn:  # the same origin keeps the secret
        kept = await update_channel(
            conn, channel.id, {"config": {"url": "http://127.0.0.1:9/other"}}, LOOPBACK
        )
        moved = await update_channel(
            conn, email.id, {"config": {"host": "smtp.example.net", "password": "pw2"}}, LOOPBACK
        )
        with pytest.raises(ValidationFailed) as caught:  # refused at configuration
            await update_channel(
                conn,
                email.id,
                {"config": {"host": "169.254.169.254", "password": "pw"}},
                FetchPolicy(),
            )
    assert kept.has_secret and moved.has_secret and moved.config["host"] == "smtp.example.net"
    assert caught.value.errors[0]["field"] == "config.host"
    [(secret,)] = await rows(
        pool, "SELECT secret FROM notification_channels WHERE id = %s", email.id
    )
    assert secret == "pw2"


async def test_a_title_with_line_breaks_is_mailed_and_a_hopeless_mail_fails_at_once(
    pool, smtp_sink
):
    port, directory = smtp_sink
    config = {"to": ["duty@example.com"], "host": "localhost", "port": port, "security": "none"}
    async with pool.transaction() as conn:
        channel = await create_channel(
            conn, {"name": "ops", "kind": "email", "config": config}, LOOPBACK
        )
    [case_id] = await new_cases(pool, 1)
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE documents SET title = %s WHERE id = (SELECT document_id FROM cases "
            "WHERE id = %s)",
            ("disk full\r\nBcc: all@example.com", case_id),
        )
    await run_escalation_check(pool, POLICY)
    assert await deliver_all(pool) == ["delivered"]
    deadline = time.monotonic() + 5
    while not list(directory.glob("*.eml")) and time.monotonic() < deadline:
        await trio.sleep(0.05)
    [mail] = directory.glob("*.eml")
    message = email.message_from_string(mail.read_text())
    assert message["Bcc"] is None  # the title stayed in the subject, on one line
    assert "disk full Bcc: all@example.com" in " ".join(str(message["Subject"]).split())
    # Credentials stored (before they needed TLS) on a cleartext channel: failed for good
    # at the first attempt, recorded in the case's history, never sent.
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE notification_channels SET secret = 'pw', "
            'config = config || \'{"username": "bot"}\' WHERE id = %s',
            (channel.id,),
        )
    [other] = await new_cases(pool, 1)
    await run_escalation_check(pool, POLICY)
    assert await deliver_all(pool) == ["failed"]
    [(attempts, error)] = await rows(
        pool, "SELECT attempts, last_error FROM notification_deliveries WHERE case_id = %s", other
    )
    assert attempts == 1 and "only over TLS" in error
    [(detail,)] = await rows(
        pool, "SELECT detail FROM case_events WHERE case_id = %s AND kind = 'notified'", other
    )
    assert detail["outcome"] == "failed"
