"""Ingestion through the real ``triaged serve`` process, with hard crashes.

500 documents of mixed types are posted concurrently over HTTP (each with its own
``Idempotency-Key``, and retried with it when the server is gone, as a careful client
does). ``triaged`` is SIGKILLed twice at random moments (once while documents are still
arriving, once while they are being processed) and restarted on the same port. Then
every document must end ``completed``, ``duplicate`` or ``failed``, and only the ones
meant to fail may fail, at the step and for the reason expected; none is missing, none
was created twice, none has two analyses.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal

import httpx
import pytest
import trio
from pypdf import PdfWriter

from daemon.shared.db import open_pool
from tests.client_warnings import ABANDONED_REQUEST_BODY
from tests.e2e.process import free_port

pytestmark = pytest.mark.e2e

TOTAL = 500
CLIENTS = 16
SEED = int(os.environ.get("TRIAGED_STRESS_SEED", random.randrange(1 << 30)))
ENV = {
    "TRIAGED_QUEUE_LEASE_SECONDS": "2",
    "TRIAGED_QUEUE_RESCUE_INTERVAL_SECONDS": "0.25",
    "TRIAGED_AUTH_HASH_TIME_COST": "1",
    "TRIAGED_AUTH_HASH_MEMORY_KIB": "8192",
    "TRIAGED_AUTH_HASH_PARALLELISM": "1",
    "TRIAGED_LOG_LEVEL": "WARNING",
}
TEXTS = [
    "Ransomware attack on the file server: attackers encrypted shares, CVE-2024-3400.",
    "Checkout outage: the payment service is down for all customers since 09:12.",
    "Please refund invoice INV-2024-0042, we were charged twice in March.",
    "Our lawyers received a subpoena regarding the contract with ACME Corp.",
    "A customer asks to delete their personal data under GDPR article 17.",
    "The new dashboard is slow and the export button does nothing. Very annoyed.",
    "Could you add dark mode to the reporting app? Thanks!",
]


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose content stream shows ``text``."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=400, height=200)
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream.set_data(f"BT /F1 10 Tf 20 100 Td ({escaped}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def plan(rng: random.Random) -> list[dict]:
    """The documents to post: kind (what must become of it) and request."""
    documents = []
    for index in range(TOTAL):
        text = f"{rng.choice(TEXTS)} Reference {index}-{rng.randrange(10**9)}."
        roll = rng.random()
        key = f"e2e-{SEED}-{index}"
        if roll < 0.40:
            request = {"json": {"title": f"json {index}", "content": text}}
            kind = "valid"
        elif roll < 0.55:
            html = f"<html><style>p{{}}</style><body><p>{text}</p></body></html>"
            request = {"files": {"file": (f"d{index}.html", html.encode(), "text/html")}}
            kind = "valid"
        elif roll < 0.65:
            csv = f"id;text\n{index};{text}\n"
            request = {"files": {"file": (f"d{index}.csv", csv.encode(), "text/csv")}}
            kind = "valid"
        elif roll < 0.72:
            data = json.dumps({"ticket": {"id": index, "body": text}}).encode()
            request = {"files": {"file": (f"d{index}.json", data, "application/json")}}
            kind = "valid"
        elif roll < 0.82:
            request = {"files": {"file": (f"d{index}.pdf", pdf_with_text(text), "application/pdf")}}
            kind = "valid"
        elif roll < 0.90:
            same = "Exactly the same text, posted many times: outage in region eu-west."
            request = {"json": {"title": f"same {index}", "content": same}}
            kind = "same"
        elif roll < 0.95:
            request = {
                "files": {
                    "file": (
                        f"c{index}.pdf",
                        b"%PDF-1.4\n1 0 obj garbage " + str(index).encode(),
                        "application/pdf",
                    )
                }
            }
            kind = "corrupt"
        else:
            request = {"files": {"file": (f"e{index}.txt", b"", "text/plain")}}
            kind = "empty"
        documents.append({"index": index, "kind": kind, "key": key, "request": request})
    return documents


async def admin_key(url: str, data_dir) -> str:
    password = (data_dir / "initial-admin-password").read_text().strip()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": "admin@triaged.localhost", "password": password}
        )
        token = login.json()["token"]
        key = await client.post(
            "/api/v1/api-keys",
            json={"name": "e2e ingest", "role": "analyst"},
            headers={"Authorization": f"Bearer {token}"},
        )
    return key.json()["key"]


@ABANDONED_REQUEST_BODY
async def test_500_documents_survive_two_sigkills(start_triaged, tmp_path, database_url):
    rng = random.Random(SEED)
    print(f"\nseed {SEED} (set TRIAGED_STRESS_SEED to replay the documents)")
    documents = plan(rng)
    port = str(free_port())
    data_dir = tmp_path / "data"
    env = ENV | {
        "TRIAGED_HTTP_PORT": port,
        "TRIAGED_INITIAL_ADMIN_PASSWORD_FILE": str(data_dir / "initial-admin-password"),
    }
    current = start_triaged("serve", **env)
    await current.wait_ready()
    key = await admin_key(current.url, data_dir)
    accepted: dict[int, int] = {}  # plan index -> document id
    first_kill_at = rng.randrange(100, 300)
    kills: list[str] = []

    async def restart(reason: str) -> None:
        nonlocal current
        current.proc.send_signal(signal.SIGKILL)
        current.proc.wait(10)
        kills.append(f"{reason} ({len(accepted)} accepted)")
        current = start_triaged("serve", **env)
        await current.wait_ready(timeout=60)

    async def post(client: httpx.AsyncClient, document: dict) -> None:
        # Retries while the server restarts, but not forever: a restart takes seconds.
        deadline = trio.current_time() + 120
        while True:
            assert trio.current_time() < deadline, f"#{document['index']} not accepted in 120 s"
            try:
                response = await client.post(
                    "/api/v1/documents",
                    headers={"Idempotency-Key": document["key"]},
                    **document["request"],
                )
            except httpx.TransportError:
                await trio.sleep(0.1)  # the server is gone: retry, same key
                continue
            if response.status_code == 503:  # the database is busy restarting: retry
                await trio.sleep(0.1)
                continue
            assert response.status_code == 202, response.text
            accepted[document["index"]] = response.json()["id"]
            return

    queue_send, queue_receive = trio.open_memory_channel(TOTAL)
    for document in documents:
        queue_send.send_nowait(document)
    queue_send.close()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=current.url,
        timeout=30,
        headers=headers,
        limits=httpx.Limits(max_connections=CLIENTS),
    ) as client:

        async def poster() -> None:
            async for document in queue_receive:
                await post(client, document)

        async def killer() -> None:
            with trio.fail_after(180):
                while len(accepted) < first_kill_at:
                    await trio.sleep(0.01)
            await restart("while posting")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(killer)
            for _ in range(CLIENTS):
                nursery.start_soon(poster)

    assert len(accepted) == TOTAL
    async with open_pool(database_url, max_size=2) as pool:

        async def states() -> dict[str, int]:
            async with pool.connection() as conn:
                rows = await (
                    await conn.execute("SELECT state::text, count(*) FROM documents GROUP BY 1")
                ).fetchall()
            return dict(rows)

        terminal = {"completed", "duplicate", "failed"}
        with trio.fail_after(180):
            while sum(n for s, n in (await states()).items() if s in terminal) < TOTAL * 0.4:
                await trio.sleep(0.02)
        await trio.sleep(rng.random() * 0.5)
        await restart("while processing")

        with trio.fail_after(180):
            while sum(n for s, n in (await states()).items() if s in terminal) < TOTAL:
                await trio.sleep(0.2)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT d.id, d.state::text, d.failed_step, d.error, d.duplicate_of,"
                    " (SELECT count(*) FROM analyses a WHERE a.document_id = d.id)"
                    " FROM documents d"
                )
            ).fetchall()
    print(f"kills: {kills}; final states: {await_states_summary(rows)}")
    assert len(kills) == 2
    assert len(rows) == TOTAL, "a document was created twice (or lost)"
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == set(accepted.values())
    problems = []
    for document in documents:
        _id, state, failed_step, error, _original, analyses = by_id[accepted[document["index"]]]
        kind = document["kind"]
        label = f"#{document['index']} ({kind})"
        if analyses > 1:
            problems.append(f"{label}: {analyses} analyses")
        if kind == "valid" and state != "completed":
            problems.append(f"{label}: {state} at {failed_step}: {error}")
        if kind == "same" and state not in ("completed", "duplicate"):
            problems.append(f"{label}: {state} at {failed_step}: {error}")
        if kind == "corrupt" and (state, failed_step) != ("failed", "extract"):
            problems.append(f"{label}: {state} at {failed_step}: {error}")
        failed_empty = (state, failed_step) == ("failed", "hash") and "empty" in (error or "")
        if kind == "empty" and not failed_empty:
            problems.append(f"{label}: {state} at {failed_step}: {error}")
        if state == "completed" and analyses != 1:
            problems.append(f"{label}: completed with {analyses} analyses")
    same = [by_id[accepted[d["index"]]] for d in documents if d["kind"] == "same"]
    assert sum(1 for row in same if row[1] == "completed") == 1
    original = next(row[0] for row in same if row[1] == "completed")
    assert all(row[4] == original for row in same if row[1] == "duplicate")
    assert not problems, "\n".join(problems[:30])


def await_states_summary(rows) -> dict[str, int]:
    summary: dict[str, int] = {}
    for row in rows:
        summary[row[1]] = summary.get(row[1], 0) + 1
    return summary
