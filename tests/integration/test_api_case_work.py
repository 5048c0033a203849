"""Case work over real HTTP: the lifecycle with If-Match (412 stale, 428 missing, 409
with the current state), the ladder stopped and restarted, viewers refused on every
write, the list's filters, comments and the history with actor and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from daemon.modules.auth import Role
from tests.integration.api_server import bearer
from tests.integration.test_case_opening import routed_case

WRITES = [
    ("acknowledge", None),
    ("assign", {"user_id": None}),
    ("resolve", {"resolution": "fixed"}),
    ("reopen", {"note": "x"}),
    ("comments", {"body": "hello"}),
]


async def sql(pool, query, *params):
    async with pool.transaction() as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall() if cursor.description else None


async def test_a_viewer_gets_403_on_every_write_and_changes_nothing(api, pool):
    _, case_id = await routed_case(pool)
    viewer = bearer(await api.token(Role.VIEWER))
    async with api.client(headers=viewer) as client:
        before = await client.get(f"/api/v1/cases/{case_id}")
        tag = before.headers["ETag"]
        for action, body in WRITES:
            response = await client.post(
                f"/api/v1/cases/{case_id}/{action}", json=body, headers={"If-Match": tag}
            )
            assert response.status_code == 403, (action, response.text)
        after = await client.get(f"/api/v1/cases/{case_id}")
        events = (await client.get(f"/api/v1/cases/{case_id}/events")).json()["items"]
        comments = (await client.get(f"/api/v1/cases/{case_id}/comments")).json()["items"]
    assert after.json() == before.json()
    assert [e["kind"] for e in events] == ["opened"] and comments == []


async def test_acknowledge_stops_the_ladder_and_reopen_restarts_it(api, pool):
    _, case_id = await routed_case(pool)
    analyst = await api.user(Role.ANALYST)
    base = f"/api/v1/cases/{case_id}"
    async with api.client(headers=bearer(await api.session(analyst))) as client:
        shown = await client.get(base)
        assert shown.json()["escalation_due_at"] is not None
        assert shown.headers["ETag"] == f'"{shown.json()["version"]}"'
        acked = await client.post(
            f"{base}/acknowledge", headers={"If-Match": shown.headers["ETag"]}
        )
        assert acked.status_code == 200, acked.text
        assert acked.json()["status"] == "acknowledged"
        assert acked.json()["escalation_due_at"] is None and acked.json()["acknowledged_at"]
        assert acked.headers["ETag"] == f'"{shown.json()["version"] + 1}"'
        # An invalid transition: 409 naming the state the case is in.
        again = await client.post(
            f"{base}/acknowledge", headers={"If-Match": acked.headers["ETag"]}
        )
        assert again.status_code == 409
        assert again.json()["case_status"] == "acknowledged"
        # The escalation check had raised it meanwhile: reopen starts again from level 0.
        await sql(pool, "UPDATE cases SET escalation_level = 2 WHERE id = %s", case_id)
        current = (await client.get(base)).headers["ETag"]
        before = datetime.now(UTC)
        reopened = await client.post(
            f"{base}/reopen", json={"note": "back"}, headers={"If-Match": current}
        )
        assert reopened.status_code == 200, reopened.text
        case = reopened.json()
        assert (case["status"], case["escalation_level"]) == ("open", 0)
        due = datetime.fromisoformat(case["escalation_due_at"])
        assert (
            before + timedelta(minutes=59) < due < datetime.now(UTC) + timedelta(hours=1, minutes=1)
        )
        assert case["acknowledged_at"] is None
        # Resolving stops it too, with its resolution; an unknown one names the field.
        tag = reopened.headers["ETag"]
        wrong = await client.post(
            f"{base}/resolve", json={"resolution": "meh"}, headers={"If-Match": tag}
        )
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "resolution"
        resolved = await client.post(
            f"{base}/resolve",
            json={"resolution": "false_positive", "note": "test data"},
            headers={"If-Match": tag},
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["escalation_due_at"] is None
        assert (resolved.json()["resolution"], resolved.json()["resolution_note"]) == (
            "false_positive", "test data",
        )  # fmt: skip
        events = (await client.get(f"{base}/events")).json()["items"]
    assert [e["kind"] for e in events] == ["opened", "acknowledged", "reopened", "resolved"]
    assert {e["actor"] for e in events[1:]} == {f"user:{analyst.id}"}
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times) and times[-1] <= datetime.now(UTC)
    audited = await sql(
        pool,
        "SELECT action, actor_id FROM audit_events WHERE target_type = 'case' AND target_id = %s "
        "ORDER BY id",
        str(case_id),
    )
    assert audited == [
        ("case.acknowledged", analyst.id), ("case.reopened", analyst.id),
        ("case.resolved", analyst.id),
    ]  # fmt: skip


async def test_if_match_is_required_and_a_stale_version_answers_412(api, pool):
    _, case_id = await routed_case(pool)
    base = f"/api/v1/cases/{case_id}"
    first, second = bearer(await api.token()), bearer(await api.token())
    async with api.client(headers=first) as one, api.client(headers=second) as two:
        tag = (await one.get(base)).headers["ETag"]
        missing = await one.post(f"{base}/acknowledge")
        assert missing.status_code == 428
        assigned = await one.post(
            f"{base}/assign", json={"user_id": None}, headers={"If-Match": tag}
        )
        assert assigned.status_code == 200
        # The second analyst read the same version: told, not overwritten silently.
        stale = await two.post(
            f"{base}/resolve", json={"resolution": "fixed"}, headers={"If-Match": tag}
        )
        assert stale.status_code == 412
        assert stale.json()["version"] == assigned.json()["version"]
        for junk in ('W/"1"', "1", '"x"'):
            refused = await two.post(f"{base}/acknowledge", headers={"If-Match": junk})
            assert refused.status_code == 412, junk
        shown = (await two.get(base)).json()
    assert shown["status"] == "open" and shown["version"] == assigned.json()["version"]


async def test_two_analysts_acting_at_once_on_one_version_one_wins(api, pool):
    _, case_id = await routed_case(pool)
    base = f"/api/v1/cases/{case_id}"
    tokens = [bearer(await api.token()) for _ in range(4)]
    async with api.client() as client:
        tag = (await client.get(base, headers=tokens[0])).headers["ETag"]
        statuses = []

        async def acknowledge(headers):
            response = await client.post(
                f"{base}/acknowledge", headers={**headers, "If-Match": tag}
            )
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for headers in tokens:
                nursery.start_soon(acknowledge, headers)
    assert sorted(statuses) == [200, 412, 412, 412]
    kinds = await sql(pool, "SELECT kind FROM case_events WHERE case_id = %s", case_id)
    assert sorted(k for (k,) in kinds) == ["acknowledged", "opened"]


async def test_assign_takes_working_analysts_and_the_list_filters(api, pool):
    ids = [(await routed_case(pool, f" Case {n}."))[1] for n in range(3)]
    analyst = await api.user(Role.ANALYST)
    viewer = await api.user(Role.VIEWER)
    past = datetime.now(UTC) - timedelta(hours=2)
    # Case 0: medium, legal, overdue; case 1: acknowledged, level 2; case 2 as routed.
    await sql(
        pool,
        "UPDATE cases SET severity = 'medium', category = 'legal', sla_due_at = %s WHERE id = %s",
        past, ids[0],
    )  # fmt: skip
    await sql(
        pool,
        "UPDATE cases SET status = 'acknowledged', escalation_level = 2 WHERE id = %s",
        ids[1],
    )
    await sql(pool, "UPDATE documents SET title = 'Quarterly Breach report' "
              "WHERE id = (SELECT document_id FROM cases WHERE id = %s)", ids[2])  # fmt: skip
    async with api.client(headers=bearer(await api.session(analyst))) as client:
        tag = (await client.get(f"/api/v1/cases/{ids[0]}")).headers["ETag"]
        refused = await client.post(
            f"/api/v1/cases/{ids[0]}/assign", json={"user_id": viewer.id}, headers={"If-Match": tag}
        )
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "user_id"
        assigned = await client.post(
            f"/api/v1/cases/{ids[0]}/assign",
            json={"user_id": analyst.id},
            headers={"If-Match": tag},
        )
        assert assigned.status_code == 200 and assigned.json()["assignee_user_id"] == analyst.id

        async def listed(**params):
            response = await client.get("/api/v1/cases", params=params)
            assert response.status_code == 200, (params, response.text)
            return [c["id"] for c in response.json()["items"]]

        assert await listed(assignee="me") == [ids[0]]
        assert await listed(assignee=str(analyst.id)) == [ids[0]]
        assert await listed(assignee="none") == [ids[2], ids[1]]
        assert await listed(overdue="true") == [ids[0]]
        assert await listed(overdue="false") == [ids[2], ids[1]]
        assert await listed(severity="medium") == [ids[0]]
        assert await listed(category="legal") == [ids[0]]
        assert await listed(escalation_level=2) == [ids[1]]
        assert await listed(min_escalation_level=1) == [ids[1]]
        assert await listed(status="acknowledged") == [ids[1]]
        assert await listed(q="breach REP") == [ids[2]]
        assert await listed(q="100%_") == []
        now = datetime.now(UTC)
        assert await listed(due_before=now.isoformat()) == [ids[0]]
        assert await listed(due_after=now.isoformat()) == [ids[2], ids[1]]
        assert await listed(created_after=(now - timedelta(hours=1)).isoformat()) == ids[::-1]
        assert await listed(created_before=(now - timedelta(hours=1)).isoformat()) == []
        first = await client.get("/api/v1/cases", params={"limit": 2})
        rest = await client.get(
            "/api/v1/cases", params={"limit": 2, "cursor": first.json()["next_cursor"]}
        )
        assert [c["id"] for c in first.json()["items"] + rest.json()["items"]] == ids[::-1]
        bad = await client.get("/api/v1/cases", params={"assignee": "someone"})
        assert bad.status_code == 422
    key = await api.api_key(Role.VIEWER)
    async with api.client(headers=bearer(key)) as client:
        me = await client.get("/api/v1/cases", params={"assignee": "me"})
        assert me.status_code == 422 and me.json()["errors"][0]["field"] == "assignee"


async def test_comments_are_kept_in_order_and_in_the_history(api, pool):
    _, case_id = await routed_case(pool)
    analyst = await api.user(Role.ANALYST)
    base = f"/api/v1/cases/{case_id}"
    async with api.client(headers=bearer(await api.session(analyst))) as client:
        for text in ("first look", "  escalated to vendor  "):
            created = await client.post(f"{base}/comments", json={"body": text})
            assert created.status_code == 201, created.text
        blank = await client.post(f"{base}/comments", json={"body": "   "})
        assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "body"
        comments = (await client.get(f"{base}/comments")).json()["items"]
        events = (await client.get(f"{base}/events")).json()["items"]
        version = (await client.get(base)).json()["version"]
    assert [(c["body"], c["author"], c["author_user_id"]) for c in comments] == [
        ("first look", f"user:{analyst.id}", analyst.id),
        ("escalated to vendor", f"user:{analyst.id}", analyst.id),
    ]
    assert [(e["kind"], e["detail"].get("comment_id")) for e in events] == [
        ("opened", None), ("commented", comments[0]["id"]), ("commented", comments[1]["id"]),
    ]  # fmt: skip
    assert version == 1  # comments add; they do not change the case


async def test_metrics_count_cases_by_severity_and_level_overdue_and_time_to_ack(api, pool):
    ids = [(await routed_case(pool, f" Metric {n}."))[1] for n in range(3)]
    await sql(
        pool, "UPDATE cases SET sla_due_at = now() - interval '1 minute' WHERE id = %s", ids[0]
    )
    await sql(pool, "UPDATE cases SET escalation_level = 1 WHERE id = %s", ids[1])
    await sql(
        pool, "UPDATE cases SET created_at = now() - interval '10 minutes' WHERE id = %s", ids[2]
    )
    async with api.client(headers=bearer(await api.token())) as client:
        tag = (await client.get(f"/api/v1/cases/{ids[2]}")).headers["ETag"]
        acked = await client.post(f"/api/v1/cases/{ids[2]}/acknowledge", headers={"If-Match": tag})
        assert acked.status_code == 200
        text = (await client.get("/metrics")).text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    unresolved = "triaged_cases_unresolved{{status={!r},severity={!r},level={!r}}}"

    def value(key):
        return float(lines[key.replace("'", '"')])

    assert value(unresolved.format("open", "critical", "0")) == 1
    assert value(unresolved.format("open", "critical", "1")) == 1
    assert value(unresolved.format("acknowledged", "critical", "0")) == 1
    assert value("triaged_cases_overdue{severity='critical'}") == 1
    histogram = "triaged_case_time_to_acknowledge_seconds"
    assert value(f"{histogram}_count") == 1
    assert 600 <= value(f"{histogram}_sum") < 700
    assert value(f"{histogram}_bucket{{le='300'}}") == 0
    assert value(f"{histogram}_bucket{{le='900'}}") == 1
