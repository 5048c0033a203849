"""``/api/v1/documents`` and ``/api/v1/cases`` over real HTTP; the pipeline's steps are
run here by hand (the end-to-end tests run them in the real worker)."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfWriter

from daemon.composition import compose, pipeline_config
from daemon.modules.audit import AuditContext
from daemon.modules.auth import Role
from daemon.modules.ingestion import Pipeline
from daemon.modules.ingestion.states import DocumentState, step_from
from daemon.modules.sources import SourcePolicy, check_source_input, create_source
from daemon.shared.cpu_threads import CpuThreads
from tests.client_warnings import ABANDONED_REQUEST_BODY
from tests.integration.api_server import bearer, serve_api

CPU = CpuThreads(2, name="test-ingest")
OUTAGE = (
    "Production outage: the checkout service is down for all customers since 09:12. "
    "Error rate 100%. Incident INC-2231 opened."
)


async def run_pipeline(server, document_id: int) -> str:
    """Run the document's steps until it rests; its final state."""
    config = pipeline_config(compose(server.settings, cpu=CPU))
    pipeline = Pipeline(server.pool, config)
    for _ in range(50):  # a document that never rests fails instead of looping forever
        async with server.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT state::text FROM documents WHERE id = %s", (document_id,)
                )
            ).fetchone()
        step = step_from(DocumentState(row[0]))
        if step is None:
            return row[0]
        await pipeline.run_step(step, document_id)
    raise AssertionError(f"document {document_id} still moving after 50 steps: {row[0]}")


@pytest.fixture
async def analyst(api):
    return bearer(await api.token(Role.ANALYST))


async def test_json_intake_to_completed_with_history_analysis_and_case(api, analyst):
    async with api.client(headers=analyst) as client:
        response = await client.post(
            "/api/v1/documents",
            json={"title": "Checkout down", "content": OUTAGE, "metadata": {"team": "web"}},
            headers={"X-Request-ID": "intake-1"},
        )  # fmt: skip
        assert response.status_code == 202
        receipt = response.json()
        assert receipt["state"] == "received" and receipt["title"] == "Checkout down"
        assert response.headers["location"] == f"/api/v1/documents/{receipt['id']}"
        assert await run_pipeline(api, receipt["id"]) == "completed"
        document = (await client.get(response.headers["location"])).json()
    assert document["state"] == "completed"
    assert isinstance(document["source_id"], int)  # the built-in upload source
    assert document["metadata"] == {"team": "web"}
    assert document["history"][0]["to_state"] == "received"
    assert len(document["history"]) == 8
    assert document["analysis"]["category"] == "outage"
    assert document["analysis"]["severity"] in ("high", "critical")
    assert document["case"]["status"] == "open" and document["case"]["sla_due_at"]
    assert document["sha256"] and document["size_bytes"] == len(OUTAGE.encode())


async def test_uploads_of_each_type(api, analyst):
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    pdf = io.BytesIO()
    writer.write(pdf)
    files = {
        "notes.txt": ("text/plain", b"Plain text about a refund request."),
        "page.html": ("text/html", b"<html><script>x()</script><p>Invoice overdue</p></html>"),
        "data.json": ("application/json", b'{"ticket": {"id": 7, "text": "refund please"}}'),
        "rows.csv": ("text/csv", b"id;text\n1;outage in region eu\n"),
        "blank.pdf": ("application/pdf", pdf.getvalue()),
    }
    async with api.client(headers=analyst) as client:
        for name, (media_type, data) in files.items():
            response = await client.post(
                "/api/v1/documents",
                files={"file": (name, data, media_type)},
                data={"title": name, "metadata": '{"upload": true}'},
            )
            assert response.status_code == 202, (name, response.text)
            final = await run_pipeline(api, response.json()["id"])
            document = (await client.get(f"/api/v1/documents/{response.json()['id']}")).json()
            assert final == "completed", (name, document["error"])
            assert document["filename"] == name and document["metadata"] == {"upload": True}
            assert document["media_type"].startswith(media_type)


async def test_idempotency_key(api, analyst):
    async with api.client(headers=analyst) as client:
        body = {"title": "once", "content": "only once please"}
        first = await client.post(
            "/api/v1/documents", json=body, headers={"Idempotency-Key": "k-1"}
        )
        again = await client.post(
            "/api/v1/documents", json=body, headers={"Idempotency-Key": "k-1"}
        )
        other = await client.post(
            "/api/v1/documents",
            json={**body, "title": "twice"},
            headers={"Idempotency-Key": "k-1"},
        )
        listed = (await client.get("/api/v1/documents")).json()["items"]
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    assert len(listed) == 1


@ABANDONED_REQUEST_BODY  # the 21 MiB upload is refused before it is read
async def test_bad_input_gets_a_clear_4xx_or_a_failed_document(api, analyst):
    async with api.client(headers=analyst) as client:
        too_big = await client.post(
            "/api/v1/documents",
            files={"file": ("big.txt", b"a" * (21 * 1024 * 1024), "text/plain")},
        )
        wrong_type = await client.post(
            "/api/v1/documents", content=b"hello", headers={"Content-Type": "text/plain"}
        )
        image = await client.post(
            "/api/v1/documents", files={"file": ("x.png", b"\x89PNG....", "image/png")}
        )
        wrong_fields = await client.post(
            "/api/v1/documents", json={"title": 5, "content": ["a"], "metadata": "x"}
        )
        both = await client.post(
            "/api/v1/documents", json={"content": "a", "url": "http://example.org/"}
        )
        neither = await client.post("/api/v1/documents", json={"title": "nothing"})
        ftp = await client.post("/api/v1/documents", json={"url": "ftp://example.org/x"})
        assert too_big.status_code == 413
        assert wrong_type.status_code == 415
        assert image.status_code == 415 and "image/png" in image.json()["detail"]
        assert wrong_fields.status_code == 422
        assert {e["field"] for e in wrong_fields.json()["errors"]} >= {"title", "metadata"}
        assert both.status_code == neither.status_code == ftp.status_code == 422

        outcomes = {}
        for name, request in {
            "empty": {"files": {"file": ("empty.txt", b"", "text/plain")}},
            "corrupt pdf": {"files": {"file": ("c.pdf", b"%PDF-1.7\n garbage", "application/pdf")}},
            "invalid utf-8": {
                "files": {"file": ("u.txt", b"caf\xe9 \xff\xfe ok", "text/plain; charset=utf-8")}
            },
            "loopback url": {"json": {"url": "http://127.0.0.1:9/secret"}},
        }.items():
            response = await client.post("/api/v1/documents", **request)
            assert response.status_code == 202, (name, response.text)
            final = await run_pipeline(api, response.json()["id"])
            document = (await client.get(f"/api/v1/documents/{response.json()['id']}")).json()
            outcomes[name] = (final, document["failed_step"], document["error"])
    assert outcomes["empty"][:2] == ("failed", "hash") and "empty" in outcomes["empty"][2]
    assert outcomes["corrupt pdf"][:2] == ("failed", "extract")
    assert outcomes["invalid utf-8"][0] == "completed"
    assert outcomes["loopback url"][:2] == ("failed", "fetch")
    assert "loopback" in outcomes["loopback url"][2]


async def test_listing_filters_and_cursor(api, pool, analyst):
    pager = await create_source(
        pool,
        check_source_input({"name": "pager", "kind": "upload"}, SourcePolicy()),
        context=AuditContext.system(),
    )
    async with api.client(headers=analyst) as client:
        ids = []
        for index, text in enumerate(
            [OUTAGE, "Please send me a copy of my invoice.", OUTAGE + " x"]
        ):
            response = await client.post(
                "/api/v1/documents",
                json={"title": f"doc {index}", "content": text}
                | ({"source_id": pager.id} if index % 2 == 0 else {}),
            )
            ids.append(response.json()["id"])
            await run_pipeline(api, ids[-1])

        async def listed(**params):
            response = await client.get("/api/v1/documents", params=params)
            assert response.status_code == 200, response.text
            return [d["id"] for d in response.json()["items"]]

        assert await listed() == ids[::-1]
        assert await listed(source_id=str(pager.id)) == [ids[2], ids[0]]
        assert await listed(source_id=str(pager.id + 1000)) == []
        assert await listed(category="outage") == [ids[2], ids[0]]
        assert await listed(q="INVOICE") == [ids[1]]
        assert await listed(state="completed") == ids[::-1]
        assert await listed(state="failed") == []
        first = (await client.get("/api/v1/documents", params={"limit": 2})).json()
        rest = await listed(limit=2, cursor=first["next_cursor"])
        assert [d["id"] for d in first["items"]] + rest == ids[::-1]
        bad = await client.get("/api/v1/documents", params={"state": "sleeping", "limit": 0})
        assert bad.status_code == 422

        cases = (await client.get("/api/v1/cases", params={"status": "open"})).json()["items"]
        assert {c["document_id"] for c in cases} == {ids[0], ids[2]}
        shown = await client.get(f"/api/v1/cases/{cases[0]['id']}")
        assert shown.json()["document_id"] == cases[0]["document_id"]
        assert (await client.get("/api/v1/cases/999999")).status_code == 404


async def test_retry_reanalyze_delete_and_their_audit(api, analyst):
    admin = bearer(await api.token(Role.ADMIN))
    async with api.client(headers=analyst) as client:
        failed = (
            await client.post("/api/v1/documents", json={"url": "http://127.0.0.1:9/"})
        ).json()
        assert await run_pipeline(api, failed["id"]) == "failed"
        retried = await client.post(f"/api/v1/documents/{failed['id']}/retry")
        assert retried.status_code == 202 and retried.json()["state"] == "received"
        assert await run_pipeline(api, failed["id"]) == "failed"

        done = (await client.post("/api/v1/documents", json={"content": OUTAGE})).json()
        assert await run_pipeline(api, done["id"]) == "completed"
        assert (await client.post(f"/api/v1/documents/{done['id']}/retry")).status_code == 409
        again = await client.post(f"/api/v1/documents/{done['id']}/reanalyze")
        assert again.status_code == 202 and again.json()["state"] == "normalized"
        assert await run_pipeline(api, done["id"]) == "completed"
        document = (await client.get(f"/api/v1/documents/{done['id']}")).json()
        assert document["analysis_runs"] == 2 and document["analysis"]["run"] == 2
        fresh = (await client.post("/api/v1/documents", json={"content": "new"})).json()
        assert (await client.post(f"/api/v1/documents/{fresh['id']}/reanalyze")).status_code == 409

        assert (await client.delete(f"/api/v1/documents/{done['id']}")).status_code == 403
        deleted = await client.delete(f"/api/v1/documents/{done['id']}", headers=admin)
        assert deleted.status_code == 204
        assert (await client.get(f"/api/v1/documents/{done['id']}")).status_code == 404
        audit = await client.get(
            "/api/v1/audit", params={"action_prefix": "document."}, headers=admin
        )
    actions = [e["action"] for e in audit.json()["items"]]
    assert actions.count("document.created") == 3
    assert {"document.retry", "document.reanalyze", "document.deleted"} <= set(actions)


async def test_fetch_from_loopback_when_allowed(pool):
    async with serve_api(pool, fetch_allowed_networks="127.0.0.0/8") as api:
        token = bearer(await api.token(Role.ANALYST))
        async with api.client(headers=token) as client:
            response = await client.post(
                "/api/v1/documents", json={"url": f"{api.url}/openapi.json", "title": "spec"}
            )
            assert await run_pipeline(api, response.json()["id"]) == "completed"
            document = (await client.get(f"/api/v1/documents/{response.json()['id']}")).json()
    assert document["media_type"].startswith("application/json")
    assert document["history"][1]["detail"]["status"] == 200


async def test_reanalyze_with_another_analyzer_is_for_admins(api, analyst):
    admin = bearer(await api.token(Role.ADMIN))
    async with api.client(headers=analyst) as client:
        done = (await client.post("/api/v1/documents", json={"content": OUTAGE})).json()
        assert await run_pipeline(api, done["id"]) == "completed"
        path = f"/api/v1/documents/{done['id']}/reanalyze"
        refused = await client.post(path, json={"provider": "heuristic"})
        assert refused.status_code == 403
        unknown = await client.post(path, json={"provider": "magic"}, headers=admin)
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "provider"
        openai = await client.post(path, json={"provider": "openai"}, headers=admin)
        assert (
            openai.status_code == 422 and "not configured" in openai.json()["errors"][0]["message"]
        )
        model = await client.post(path, json={"provider": "heuristic", "model": "x"}, headers=admin)
        assert model.status_code == 422 and model.json()["errors"][0]["field"] == "model"
        chosen = await client.post(path, json={"provider": "heuristic"}, headers=admin)
        assert chosen.status_code == 202
        assert await run_pipeline(api, done["id"]) == "completed"
        document = (await client.get(f"/api/v1/documents/{done['id']}")).json()
        audit = await client.get(
            "/api/v1/audit", params={"action": "document.reanalyze"}, headers=admin
        )
    assert document["analysis_runs"] == 2 and document["analysis"]["provider"] == "heuristic"
    assert audit.json()["items"][0]["details"]["analyzer"] == {"provider": "heuristic"}


async def test_more_bad_input_is_422_not_500(api, analyst):
    async with api.client(headers=analyst) as client:
        cases = {
            "lone surrogate": {"json": {"content": "\ud800"}},
            "bad url": {"json": {"url": "http://[::1/x"}},
            "password in url": {"json": {"url": "https://user:s3cret@example.org/doc"}},
            "two files": {
                "files": [
                    ("file", ("a.txt", b"a", "text/plain")),
                    ("file", ("b.txt", b"b", "text/plain")),
                ]
            },
            "long source_id": {
                "files": {"file": ("a.txt", b"a", "text/plain")},
                "data": {"source_id": "s" * 201},
            },
            "unknown field": {"files": {"file": ("a.txt", b"a", "text/plain")}, "data": {"x": "1"}},
            "other file part": {"files": {"attachment": ("a.txt", b"a", "text/plain")}},
        }
        raw_bodies = {
            "lone surrogate": b'{"content": "\\ud800"}',
            "lone surrogate in the title": b'{"title": "a\\udc00", "content": "x"}',
            "lone surrogate in metadata": b'{"content": "x", "metadata": {"k\\ud800": 1}}',
            "NUL in metadata": b'{"content": "x", "metadata": {"k": "\\u0000"}}',
        }
        cases |= {name: {} for name in raw_bodies}
        for name, request in cases.items():
            if name in raw_bodies:
                response = await client.post(
                    "/api/v1/documents",
                    content=raw_bodies[name],
                    headers={"Content-Type": "application/json"},
                )
            else:
                response = await client.post("/api/v1/documents", **request)
            assert response.status_code == 422, (name, response.status_code, response.text)
        listed = (await client.get("/api/v1/documents")).json()["items"]
    assert listed == [] and "s3cret" not in str(listed)
