"""Legal holds and run reports over HTTP: an admin holds and releases (audited, with the
reason), a held document survives the purge and an admin's DELETE, the run report is
served; other roles get 403."""

from __future__ import annotations

from daemon.composition import retention_config
from daemon.modules.auth import Role
from daemon.modules.retention import run_purge
from daemon.shared.config import Settings
from tests.integration.api_server import bearer
from tests.integration.retention_seed import seed


async def test_holds_and_runs_over_http(api):
    await seed(api.pool, 100)
    admin = bearer(await api.token(Role.ADMIN))
    analyst = bearer(await api.token(Role.ANALYST))
    target = 30  # completed, expired, its case resolved long ago: due at the next run
    async with api.client(headers=admin) as client:
        placed = await client.post(
            "/api/v1/holds",
            json={"target_type": "document", "target_id": target, "reason": "  subpoena 17 "},
        )
        assert placed.status_code == 201
        hold = placed.json()
        assert (hold["target_type"], hold["target_id"], hold["reason"]) == (
            "document", target, "subpoena 17",
        )  # fmt: skip
        assert hold["created_by"].startswith("user:") and hold["released_at"] is None
        assert placed.headers["Location"] == f"/api/v1/holds/{hold['id']}"
        blank = await client.post(
            "/api/v1/holds", json={"target_type": "document", "target_id": target, "reason": " "}
        )
        assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "reason"
        missing = await client.post(
            "/api/v1/holds", json={"target_type": "document", "target_id": 10**6, "reason": "x"}
        )
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "target_id"

        report = await run_purge(api.pool, retention_config(Settings()))
        assert report.report["completed_documents"]["held"] >= 1
        assert (await client.get(f"/api/v1/documents/{target}")).status_code == 200
        refused = await client.delete(f"/api/v1/documents/{target}")
        assert refused.status_code == 409 and "legal hold" in refused.json()["detail"]

        listed = (await client.get("/api/v1/holds", params={"target_id": target})).json()
        assert [h["id"] for h in listed["items"]] == [hold["id"]]
        released = await client.request(
            "DELETE", f"/api/v1/holds/{hold['id']}", json={"reason": "case settled"}
        )
        assert released.status_code == 200
        assert released.json()["release_reason"] == "case settled"
        assert released.json()["released_by"] == hold["created_by"]
        standing = (await client.get("/api/v1/holds")).json()["items"]
        assert [h["target_id"] for h in standing] == [97]  # the seeded one only
        every = await client.get("/api/v1/holds", params={"include_released": "true"})
        assert [h["target_id"] for h in every.json()["items"]] == [target, 97]

        second = await run_purge(api.pool, retention_config(Settings()))
        assert second.report["completed_documents"]["deleted"] == 1
        assert (await client.get(f"/api/v1/documents/{target}")).status_code == 404

        runs = (await client.get("/api/v1/retention/runs", params={"limit": 1})).json()
        [latest] = runs["items"]
        assert latest["id"] == second.id and latest["trigger"] == "command"
        assert latest["report"]["completed_documents"]["deleted"] == 1
        assert runs["next_cursor"] is not None
        older = await client.get("/api/v1/retention/runs", params={"cursor": runs["next_cursor"]})
        assert [r["id"] for r in older.json()["items"]] == [report.id]

        audit = await client.get("/api/v1/audit", params={"action_prefix": "legal_hold."})
        actions = [(e["action"], e["details"]["reason"]) for e in audit.json()["items"]]
        assert actions == [
            ("legal_hold.released", "case settled"),
            ("legal_hold.placed", "subpoena 17"),
        ]
    async with api.client(headers=analyst) as client:
        assert (await client.get("/api/v1/holds")).status_code == 403
        assert (await client.get("/api/v1/retention/runs")).status_code == 403
