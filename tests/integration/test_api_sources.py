"""``/api/v1/sources`` as an operator sees it: secrets never come back (responses, lists,
the audit log), refusals name the field, delete keeps the documents and hides the source,
and an upload names an upload source only."""

from __future__ import annotations

import pytest

from daemon.modules.auth import Role
from tests.integration.api_server import bearer

SECRET = "Bearer very-secret-token-0123456789"
HOOK_SECRET = "whsec-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
async def admin(api):
    return bearer(await api.token(Role.ADMIN))


def feed(name="alerts", **config):
    return {"name": name, "kind": "feed", "schedule": {"cron": "*/5 * * * *",
            "timezone": "Europe/Berlin"},
            "config": {"url": "https://feeds.example.org/alerts.xml", **config}}  # fmt: skip


async def test_secrets_are_write_only(api, admin):
    async with api.client(headers=admin) as client:
        created = await client.post("/api/v1/sources", json=feed(auth_header=SECRET))
        assert created.status_code == 201, created.text
        source = created.json()
        assert source["secrets_set"] == ["auth_header"] and "auth_header" not in source["config"]
        assert source["schedule"] == {"cron": "*/5 * * * *", "timezone": "Europe/Berlin"}
        hook = await client.post(
            "/api/v1/sources",
            json={"name": "hook", "kind": "webhook", "config": {"secret": HOOK_SECRET}},
        )
        assert hook.status_code == 201, hook.text
        # A PATCH of the configuration without the secret keeps it.
        patched = await client.patch(
            f"/api/v1/sources/{source['id']}",
            json={"config": {"url": "https://feeds.example.org/other.xml"}},
        )
        assert patched.status_code == 200 and patched.json()["secrets_set"] == ["auth_header"]
        # ... but not to another origin: the secret would go to that server.
        moved = await client.patch(
            f"/api/v1/sources/{source['id']}",
            json={"config": {"url": "https://attacker.example.net/other.xml"}},
        )
        assert moved.status_code == 422, moved.text
        assert [e["field"] for e in moved.json()["errors"]] == ["config.auth_header"]
        answers = [
            created, hook, patched,
            await client.get(f"/api/v1/sources/{source['id']}"),
            await client.get("/api/v1/sources"),
            await client.get("/api/v1/audit", params={"limit": 50}),
        ]  # fmt: skip
        for answer in answers:
            assert answer.status_code in (200, 201)
            assert "very-secret-token" not in answer.text
            assert "whsec-" not in answer.text
        cleared = await client.patch(
            f"/api/v1/sources/{source['id']}",
            json={"config": {"url": "https://feeds.example.org/a.xml", "auth_header": None}},
        )
        assert cleared.json()["secrets_set"] == []


REFUSALS = [
        (feed(url="http://127.0.0.1:8080/feed"), "config.url"),
        (feed(url="http://10.0.0.5/feed"), "config.url"),
        (feed(url="http://[fe80::1]/feed"), "config.url"),
        (feed(url="http://localhost/feed"), "config.url"),
        (feed(url="file:///etc/passwd"), "config.url"),
        (feed(colour="red"), "config.colour"),
        (feed(max_redirects=50), "config.max_redirects"),
        ({**feed(), "schedule": None}, "schedule"),
        ({**feed(), "schedule": {"cron": "61 * * * *"}}, "schedule.cron"),
        ({**feed(), "schedule": {"cron": "* * * * *", "timezone": "Mars/Base"}},
         "schedule.timezone"),
        ({**feed(), "schedule": {"interval_seconds": 0.5}}, "schedule.interval_seconds"),
        ({"name": "u", "kind": "upload", "schedule": {"interval_seconds": 60}}, "schedule"),
        ({"name": "w", "kind": "webhook", "config": {}}, "config.secret"),
        ({"name": "d", "kind": "directory", "config": {"path": "/etc"},
          "schedule": {"interval_seconds": 60}}, "config.path"),
        ({**feed(), "limits": {"items_per_poll": 0}}, "limits.items_per_poll"),
        ({**feed(), "kind": "ftp"}, "kind"),
]  # fmt: skip


async def test_refusals_name_the_field(api, admin):
    async with api.client(headers=admin) as client:
        for body, field in REFUSALS:
            response = await client.post("/api/v1/sources", json=body)
            assert response.status_code == 422, (field, response.text)
            assert response.json()["errors"][0]["field"] == field, response.text
        listed = await client.get("/api/v1/sources")
    assert [s["name"] for s in listed.json()["items"]] == ["upload"]  # nothing was created


async def test_delete_hides_the_source_and_keeps_its_documents(api, admin):
    analyst = bearer(await api.token(Role.ANALYST))
    async with api.client(headers=admin) as client:
        made = await client.post("/api/v1/sources", json={"name": "desk", "kind": "upload"})
        source_id = made.json()["id"]
        listed = (await client.get("/api/v1/sources", params={"kind": "upload"})).json()
        builtin = next(s for s in listed["items"] if s["builtin"])
        assert builtin["name"] == "upload"
    async with api.client(headers=analyst) as client:
        doc = await client.post(
            "/api/v1/documents", json={"content": "printer on fire", "source_id": source_id}
        )
        assert doc.status_code == 202, doc.text
        default = await client.post("/api/v1/documents", json={"content": "no source"})
        shown = await client.get(f"/api/v1/documents/{default.json()['id']}")
        assert shown.json()["source_id"] == builtin["id"]
        wrong = await client.post(
            "/api/v1/documents", json={"content": "x", "source_id": source_id + 1000}
        )
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "source_id"
    async with api.client(headers=admin) as client:
        assert (await client.delete(f"/api/v1/sources/{source_id}")).status_code == 204
        assert (await client.get(f"/api/v1/sources/{source_id}")).status_code == 404
        names = [s["name"] for s in (await client.get("/api/v1/sources")).json()["items"]]
        assert "desk" not in names
        again = await client.post("/api/v1/sources", json={"name": "desk", "kind": "upload"})
        assert again.status_code == 201  # the name is free again
        kept = await client.get("/api/v1/documents", params={"source_id": source_id})
        assert [d["id"] for d in kept.json()["items"]] == [doc.json()["id"]]
        assert (await client.delete(f"/api/v1/sources/{builtin['id']}")).status_code == 404
        push = await client.post(f"/api/v1/sources/{builtin['id']}/poll")
        assert push.status_code == 409
