"""Webhook sources over real HTTP on loopback: a sender in the test signs deliveries as
the README tells senders to (HMAC-SHA256 of ``<timestamp>.<body>``, computed here with
``hmac``, not with the daemon's code), and the database shows what was created."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import trio

from daemon.modules.audit import AuditContext
from daemon.modules.sources import SourcePolicy, check_source_input, create_source, update_source
from tests.integration.api_server import serve_api

SYSTEM = AuditContext.system()
SECRET = "whsec-first-0123456789abcdef"
NEW_SECRET = "whsec-second-0123456789abcdef"


def signed(secret: str, body: bytes, delivery: str, *, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "Triaged-Delivery-Id": delivery,
        "Triaged-Timestamp": str(timestamp),
        "Triaged-Signature": f"v1={mac.hexdigest()}",
    }


@pytest.fixture
async def webhook(pool):
    checked = check_source_input(
        {"name": "hooks", "kind": "webhook", "config": {"secret": SECRET}}, SourcePolicy()
    )
    return await create_source(pool, checked, context=SYSTEM)


async def documents_of(pool, source_id: int) -> list[tuple]:
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        cursor = await conn.execute(
            "SELECT id, title, media_type, external_id FROM documents WHERE source_id = %s"
            " ORDER BY id",
            (source_id,),
        )
        return await cursor.fetchall()


async def test_signed_deliveries_create_one_document_each_and_retries_answer_the_same(
    pool, webhook
):
    async with serve_api(pool) as api, api.client() as client:
        url = f"/api/v1/sources/{webhook.id}/webhook"
        body = json.dumps({"title": "Outage", "content": "the checkout is down"}).encode()
        headers = {"Content-Type": "application/json", **signed(SECRET, body, "d-1")}
        first = await client.post(url, content=body, headers=headers)
        assert first.status_code == 202, first.text
        assert first.headers["Location"] == f"/api/v1/documents/{first.json()['id']}"
        assert first.json()["title"] == "Outage"
        assert "Idempotent-Replayed" not in first.headers

        # The sender did not hear back and retries: same delivery id, signed again later.
        await trio.sleep(1.05)
        retry_headers = {"Content-Type": "application/json", **signed(SECRET, body, "d-1")}
        assert retry_headers["Triaged-Timestamp"] != headers["Triaged-Timestamp"]
        retried = await client.post(url, content=body, headers=retry_headers)
        assert retried.status_code == 202, retried.text
        assert retried.json() == first.json()
        assert retried.headers["Idempotent-Replayed"] == "true"

        # Concurrent retries of a new delivery: exactly one document.
        body2 = b"raw bytes are a document too"
        answers = []

        async def send(n: int) -> None:
            sent = signed(SECRET, body2, "d-2", timestamp=int(time.time()) - n)
            response = await client.post(
                url, content=body2, headers={"Content-Type": "text/plain", **sent}
            )
            answers.append(response)

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(send, n)
        assert [a.status_code for a in answers] == [202] * 5
        assert len({a.json()["id"] for a in answers}) == 1

        # The same delivery id with another body is a conflict, and creates nothing.
        other = b"something else"
        conflict = await client.post(
            url,
            content=other,
            headers={"Content-Type": "text/plain", **signed(SECRET, other, "d-2")},
        )
        assert conflict.status_code == 409, conflict.text

    docs = await documents_of(pool, webhook.id)
    assert [(d[1], d[2], d[3]) for d in docs] == [
        ("Outage", "text/plain", "delivery:d-1"),
        ("", "text/plain", "delivery:d-2"),
    ]


async def test_bad_signature_stale_timestamp_and_replays_get_401_and_create_nothing(
    pool, webhook, caplog
):
    caplog.set_level(logging.INFO)
    async with serve_api(pool) as api, api.client() as client:
        url = f"/api/v1/sources/{webhook.id}/webhook"
        body = b"hello"
        now = int(time.time())
        refused = {
            "wrong secret": signed("not-the-secret-at-all", body, "x-1"),
            "stale": signed(SECRET, body, "x-2", timestamp=now - 301),
            "future": signed(SECRET, body, "x-3", timestamp=now + 301),
            "no signature": {"Triaged-Delivery-Id": "x-4", "Triaged-Timestamp": str(now)},
            "tampered": signed(SECRET, b"hello!", "x-5"),
        }
        for case, headers in refused.items():
            response = await client.post(
                url, content=body, headers={"Content-Type": "text/plain", **headers}
            )
            assert response.status_code == 401, (case, response.text)
            assert response.headers["Content-Type"] == "application/problem+json"
            assert "Triaged-Signature" in response.headers["WWW-Authenticate"]
        assert await documents_of(pool, webhook.id) == []

        # A captured delivery's signature under another delivery id: a replay, 401.
        original = signed(SECRET, body, "y-1")
        accepted = await client.post(
            url, content=body, headers={"Content-Type": "text/plain", **original}
        )
        assert accepted.status_code == 202
        replay = {**original, "Triaged-Delivery-Id": "y-2"}
        response = await client.post(
            url, content=body, headers={"Content-Type": "text/plain", **replay}
        )
        assert response.status_code == 401, response.text
        # A source that does not exist, or is not a webhook source: the same 401.
        missing = await client.post(
            "/api/v1/sources/987654/webhook",
            content=body,
            headers={"Content-Type": "text/plain", **signed(SECRET, body, "z-1")},
        )
        assert missing.status_code == 401
    assert len(await documents_of(pool, webhook.id)) == 1
    refusals = [r for r in caplog.records if r.__dict__.get("action") == "source.webhook_refused"]
    assert [r.reason for r in refusals] == [
        "bad_signature", "stale_timestamp", "stale_timestamp", "missing_headers",
        "bad_signature", "replayed", "bad_signature",
    ]  # fmt: skip
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert SECRET not in logged
    assert original["Triaged-Signature"][3:] not in logged  # the signature is never logged


async def test_rotation_overlap_accepts_both_secrets_until_the_previous_expires(pool, webhook):
    policy = SourcePolicy()
    until = datetime.now(UTC) + timedelta(hours=1)
    await update_source(
        pool,
        webhook.id,
        {"config": {"secret": NEW_SECRET, "previous_secret": SECRET,
                    "previous_secret_expires_at": until.isoformat()}},
        policy,
        context=SYSTEM,
    )  # fmt: skip
    async with serve_api(pool) as api, api.client() as client:
        url = f"/api/v1/sources/{webhook.id}/webhook"
        for n, secret in enumerate([SECRET, NEW_SECRET]):
            body = f"signed with secret {n}".encode()
            response = await client.post(
                url, content=body, headers={"Content-Type": "text/plain",
                                            **signed(secret, body, f"r-{n}")},
            )  # fmt: skip
            assert response.status_code == 202, response.text
        # The overlap ends: only the new secret is valid.
        await update_source(
            pool,
            webhook.id,
            {"config": {"previous_secret_expires_at":
                        (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}},
            policy,
            context=SYSTEM,
        )  # fmt: skip
        body = b"after the overlap"
        old = await client.post(
            url, content=body, headers={"Content-Type": "text/plain", **signed(SECRET, body, "r-3")}
        )
        assert old.status_code == 401
        new = await client.post(
            url, content=body,
            headers={"Content-Type": "text/plain", **signed(NEW_SECRET, body, "r-4")},
        )  # fmt: skip
        assert new.status_code == 202
    assert len(await documents_of(pool, webhook.id)) == 3


async def test_disabled_source_and_invalid_documents(pool, webhook):
    async with serve_api(pool) as api, api.client() as client:
        url = f"/api/v1/sources/{webhook.id}/webhook"
        bad = json.dumps({"title": "neither content nor url"}).encode()
        response = await client.post(
            url, content=bad,
            headers={"Content-Type": "application/json", **signed(SECRET, bad, "v-1")},
        )  # fmt: skip
        assert response.status_code == 422, response.text
        # Nothing was kept of the refused delivery: fixed and sent again, it is taken.
        good = json.dumps({"content": "now with content"}).encode()
        response = await client.post(
            url, content=good,
            headers={"Content-Type": "application/json", **signed(SECRET, good, "v-1")},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        await update_source(pool, webhook.id, {"enabled": False}, SourcePolicy(), context=SYSTEM)
        response = await client.post(
            url, content=good,
            headers={"Content-Type": "application/json", **signed(SECRET, good, "v-2")},
        )  # fmt: skip
        assert response.status_code == 409, response.text
    assert len(await documents_of(pool, webhook.id)) == 1


async def test_a_large_delivery_is_verified_off_the_event_loop_and_stored_whole(pool, webhook):
    body = b"".join(f"line {n} of a large report\n".encode() for n in range(20_000))  # ~0.5 MB
    async with serve_api(pool) as api, api.client() as client:
        url = f"/api/v1/sources/{webhook.id}/webhook"
        headers = {"Content-Type": "text/csv", **signed(SECRET, body, "big-1")}
        accepted = await client.post(url, content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        tampered = body[:-2] + b"X\n"
        headers = {"Content-Type": "text/csv", **signed(SECRET, body, "big-2")}
        refused = await client.post(url, content=tampered, headers=headers)
        assert refused.status_code == 401
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        row = await (
            await conn.execute(
                "SELECT d.media_type, b.data FROM documents d"
                " JOIN document_blobs b ON b.document_id = d.id WHERE d.source_id = %s",
                (webhook.id,),
            )
        ).fetchone()
    assert row[0].startswith("text/csv") and bytes(row[1]) == body


async def test_the_very_same_request_resent_answers_its_receipt(pool, webhook, caplog):
    """The answer was lost after the commit and the sender resends the exact request
    (same delivery id, timestamp and signature): the stored receipt, not a 401. Once the
    retention purge deleted its document, the receipt comes without a Location."""
    caplog.set_level(logging.INFO)
    async with serve_api(pool) as api, api.client() as client:
        url = f"/api/v1/sources/{webhook.id}/webhook"
        body = b"the answer to this one was lost"
        headers = {"Content-Type": "text/plain", **signed(SECRET, body, "lost-1")}
        first = await client.post(url, content=body, headers=headers)
        assert first.status_code == 202, first.text
        resent = [await client.post(url, content=body, headers=headers) for _ in range(2)]
        for answer in resent:
            assert answer.status_code == 202, answer.text
            assert answer.json() == first.json()
            assert answer.headers["Idempotent-Replayed"] == "true"
            assert answer.headers["Location"] == first.headers["Location"]
        # The same signed message under the same id but another body cannot happen (the
        # signature covers the body); under another id it is a replay.
        stolen = {**headers, "Triaged-Delivery-Id": "lost-2"}
        assert (await client.post(url, content=body, headers=stolen)).status_code == 401

        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            await conn.execute("DELETE FROM documents WHERE id = %s", (first.json()["id"],))
        purged = [
            await client.post(url, content=body, headers=headers),  # resent as it was
            await client.post(  # retried, signed again a second later
                url, content=body,
                headers={"Content-Type": "text/plain",
                         **signed(SECRET, body, "lost-1", timestamp=int(time.time()) + 1)},
            ),
        ]  # fmt: skip
        for answer in purged:
            assert answer.status_code == 202, answer.text
            assert answer.json() == first.json()
            assert answer.headers["Idempotent-Replayed"] == "true"
            assert "Location" not in answer.headers
    assert await documents_of(pool, webhook.id) == []
    refusals = [r for r in caplog.records if r.__dict__.get("action") == "source.webhook_refused"]
    assert [r.reason for r in refusals] == ["replayed"]
