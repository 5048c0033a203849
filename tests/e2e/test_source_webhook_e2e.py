"""A webhook sender against the real ``triaged serve`` over loopback: the README's scheme,
computed here with ``hmac``; a valid delivery sent three times (each attempt signed
again) is one document; a replayed signature, a bad one and a stale timestamp get 401
and create nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest
import trio

from tests.e2e.process import analyst_key

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-0123456789abcdef"


def signed(body: bytes, delivery: str, *, secret: str = SECRET, timestamp: int | None = None):
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "Triaged-Delivery-Id": delivery,
        "Triaged-Timestamp": stamp,
        "Triaged-Signature": f"v1={mac}",
    }


async def test_a_sender_retrying_gets_one_document_and_forgeries_get_401(start_triaged, tmp_path):
    password_file = tmp_path / "initial-admin-password"
    triaged = start_triaged(
        "serve",
        TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(password_file),
        TRIAGED_AUTH_HASH_TIME_COST="1",
        TRIAGED_AUTH_HASH_MEMORY_KIB="8192",
        TRIAGED_AUTH_HASH_PARALLELISM="1",
    )
    await triaged.wait_ready(60)
    admin = {"Authorization": f"Bearer {await analyst_key(triaged.url, password_file, 'admin')}"}
    async with httpx.AsyncClient(base_url=triaged.url, timeout=30) as client:
        created = await client.post(
            "/api/v1/sources", headers=admin,
            json={"name": "alerts", "kind": "webhook", "config": {"secret": SECRET}},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        assert SECRET not in created.text and created.json()["secrets_set"] == ["secret"]
        source_id = created.json()["id"]
        url = f"/api/v1/sources/{source_id}/webhook"
        body = json.dumps({"title": "Disk full on db-3", "content": "98% used"}).encode()

        first_headers = signed(body, "evt-1", timestamp=int(time.time()) - 2)
        answers = [await client.post(url, content=body, headers=first_headers)]
        for ago in (1, 0):  # the sender retries, signing each attempt again
            answers.append(
                await client.post(
                    url,
                    content=body,
                    headers=signed(body, "evt-1", timestamp=int(time.time()) - ago),
                )
            )
        assert [a.status_code for a in answers] == [202, 202, 202], answers[-1].text
        assert len({a.json()["id"] for a in answers}) == 1

        refused = [
            await client.post(  # replayed under another delivery id
                url, content=body, headers={**first_headers, "Triaged-Delivery-Id": "evt-9"}
            ),
            await client.post(url, content=body, headers=signed(body, "evt-2", secret="x" * 20)),
            await client.post(
                url, content=body, headers=signed(body, "evt-3", timestamp=int(time.time()) - 600)
            ),
        ]
        assert [r.status_code for r in refused] == [401, 401, 401]

        listed = await client.get(
            "/api/v1/documents", params={"source_id": source_id}, headers=admin
        )
        assert listed.status_code == 200, listed.text
        assert [d["id"] for d in listed.json()["items"]] == [answers[0].json()["id"]]
    with trio.fail_after(10):  # the refusals are logged (with their reason) ...
        while True:
            reasons = [r.get("reason") for r in triaged.log_records()
                       if r.get("action") == "source.webhook_refused"]  # fmt: skip
            if len(reasons) == 3:
                break
            await trio.sleep(0.05)
    assert reasons == ["replayed", "bad_signature", "stale_timestamp"]
    # ... and neither the secret nor a signature ever is.
    assert SECRET not in triaged.output()
    assert first_headers["Triaged-Signature"][3:] not in triaged.output()
