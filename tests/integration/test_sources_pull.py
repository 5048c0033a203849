"""HTTP and feed sources polled against a real loopback server whose feed changes
between polls: each entry once, 304 creates nothing, an unchanged body under a new
ETag creates nothing, RSS 1.0 / 2.0 / Atom, the auth header, and private addresses
refused at configuration time unless allowed."""

from __future__ import annotations

import attrs
import pytest

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import FetchPolicy
from daemon.modules.ingestion.address_policy import AddressPolicy
from daemon.modules.sources import (
    SourceMetrics,
    SourcePolicy,
    SourcesConfig,
    check_source_input,
    create_source,
    run_poll,
    update_source,
)
from daemon.shared.errors import ValidationFailed
from tests.feed_server import FeedServer

LOOPBACK = ("127.0.0.0/8",)
ALLOWED = SourcePolicy(address=AddressPolicy(allowed_networks=LOOPBACK))
CONFIG = SourcesConfig(
    policy=ALLOWED,
    fetch=FetchPolicy(allowed_networks=LOOPBACK),
    max_document_bytes=1 << 20,
    max_attempts=3,
)


@pytest.fixture
def server():
    server = FeedServer().start()
    yield server
    server.stop()


async def add(pool, kind, url, **extra):
    body = {"name": f"{kind}-{url}", "kind": kind, "config": {"url": url, **extra},
            "schedule": {"interval_seconds": 3600}}  # fmt: skip
    return await create_source(
        pool, check_source_input(body, ALLOWED), context=AuditContext.system()
    )


async def count(pool, source_id):
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM documents WHERE source_id = %s", [source_id])
        ).fetchone()
    return row[0]


async def test_feed_of_50_grown_by_10_polled_twice_more_is_60_documents(pool, server):
    server.entries = 50
    source = await add(pool, "feed", server.url("/feed.xml"))
    first = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert (first.error, first.documents_created) == (None, 50)
    server.entries = 60
    polls = [await run_poll(pool, CONFIG, source.id, trigger="manual") for _ in range(2)]
    assert [p.documents_created for p in polls] == [10, 0]
    assert await count(pool, source.id) == 60
    assert server.statuses("/feed.xml") == [200, 200, 304]  # the third poll: not modified
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT title, media_type, external_id FROM documents WHERE source_id = %s"
                " ORDER BY id",
                [source.id],
            )
        ).fetchall()
    assert rows[0] == ("Entry 0", "text/html", "id:entry-0")  # oldest first
    assert len({row[2] for row in rows}) == 60


async def test_unchanged_feed_with_a_new_etag_creates_nothing(pool, server):
    server.entries = 5
    source = await add(pool, "feed", server.url("/feed.xml"))
    await run_poll(pool, CONFIG, source.id, trigger="manual")
    server.etag_salt = "new"
    again = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert again.items_seen == 5 and again.documents_created == 0
    assert server.statuses("/feed.xml") == [200, 200]


@pytest.mark.parametrize(
    ("path", "identity"),
    [("/atom.xml", "id:urn:entry:0"), ("/rdf.xml", "id:http://example.invalid/r/0")],
)
async def test_atom_and_rss1(pool, server, path, identity):
    server.entries = 3
    source = await add(pool, "feed", server.url(path))
    assert (await run_poll(pool, CONFIG, source.id, trigger="manual")).documents_created == 3
    async with pool.connection() as conn:
        ids = await (
            await conn.execute(
                "SELECT external_id FROM documents WHERE source_id = %s", [source.id]
            )
        ).fetchall()
    assert identity in {row[0] for row in ids}


async def test_linked_page_mode_gives_the_documents_urls(pool, server):
    server.entries = 2
    source = await add(pool, "feed", server.url("/feed.xml"), fetch_linked_page=True)
    await run_poll(pool, CONFIG, source.id, trigger="manual")
    async with pool.connection() as conn:
        urls = await (
            await conn.execute("SELECT url FROM documents WHERE source_id = %s", [source.id])
        ).fetchall()
    assert sorted(row[0] for row in urls) == [f"http://example.invalid/e/{i}" for i in range(2)]


async def test_http_source_304_and_content_hash(pool, server):
    source = await add(pool, "http", server.url("/page.txt"), auth_header="Bearer s3cret-token")
    metrics = SourceMetrics()
    config = attrs.evolve(CONFIG, metrics=metrics)
    polls = [await run_poll(pool, config, source.id, trigger="manual")]
    polls.append(await run_poll(pool, config, source.id, trigger="manual"))  # 304
    server.etag_salt = "rotated"  # same body, new ETag: 200, same hash
    polls.append(await run_poll(pool, config, source.id, trigger="manual"))
    server.page = b"Checkout is back."
    polls.append(await run_poll(pool, config, source.id, trigger="manual"))
    label = str(source.id)
    assert (metrics.polls.get(label), metrics.documents.get(label)) == (4, 2)
    assert metrics.items.get(label) == 3 and metrics.failures.get(label) == 0
    assert metrics.last_success.values[(label,)] > 0
    assert [p.documents_created for p in polls] == [1, 0, 0, 1]
    assert server.statuses("/page.txt") == [200, 304, 200, 200]
    assert {hit.authorized for hit in server.hits} == {"Bearer s3cret-token"}
    assert await count(pool, source.id) == 2


async def test_failing_server_counts_failures(pool, server):
    server.fail = True
    source = await add(pool, "http", server.url("/page.txt"))
    result = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert "503" in result.error and result.documents_created == 0


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/feed", "http://10.1.2.3/x", "http://169.254.169.254/latest",
     "http://[::1]/x", "http://localhost:8080/x", "http://printer.local/x", "ftp://example.org/"],
)  # fmt: skip
def test_private_and_loopback_urls_refused_naming_the_field(url):
    body = {"name": "x", "kind": "feed", "config": {"url": url},
            "schedule": {"interval_seconds": 60}}  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        check_source_input(body, SourcePolicy())
    assert refused.value.errors[0]["field"] == "config.url"
    if "169.254" not in url and "ftp" not in url:
        check_source_input(body, SourcePolicy(address=AddressPolicy(allow_private=True)))


async def test_bodies_over_the_source_limit_fail_the_poll(pool, server):
    source = await add(pool, "http", server.url("/page.txt"))
    limited = await update_source(
        pool, source.id, {"limits": {"bytes_per_item": 10}}, ALLOWED,
        context=AuditContext.system(),
    )  # fmt: skip
    assert limited.limits.bytes_per_item == 10
    result = await run_poll(pool, CONFIG, source.id, trigger="manual")
    assert "larger than the limit of 10 bytes" in result.error
    assert await count(pool, source.id) == 0


async def test_the_auth_header_stays_with_its_origin_and_redirects_are_capped(pool, server):
    other = FeedServer().start()  # another origin (port)
    try:
        server.redirects["/moved"] = other.url("/page.txt")
        source = await add(pool, "http", server.url("/moved"), auth_header="Bearer s3cret")
        assert (await run_poll(pool, CONFIG, source.id, trigger="manual")).documents_created == 1
        assert [(h.path, h.authorized) for h in server.hits] == [("/moved", "Bearer s3cret")]
        assert [(h.path, h.authorized) for h in other.hits] == [("/page.txt", None)]
        looping = await add(pool, "http", server.url("/loop"), max_redirects=2)
        server.redirects["/loop"] = server.url("/loop")
        result = await run_poll(pool, CONFIG, looping.id, trigger="manual")
        assert "more than 2 redirects" in result.error
        assert server.statuses("/loop") == [302, 302, 302]
    finally:
        other.stop()
