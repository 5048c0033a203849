"""The egress allowlist (``TRIAGED_FETCH_EGRESS_NETWORKS``) on real connections.

Servers listen on loopback; the allowlist lets loopback through, and every refused host
must be refused *before* any DNS query: the resolver is a dependency of the fetcher
(``resolver=``) and of :class:`GuardedBackend`, so each test injects one that records
its calls (and answers loopback, so a wrong call would show as a connection too) and
asserts it was never called. Invented names are under the reserved ``.invalid`` TLD, so
even a regression that reached the system resolver would not be a name anyone owns.
"""

from __future__ import annotations

import logging
import re

import pytest
import trio

from daemon.composition import compose, pipeline_config
from daemon.modules.auth import Role
from daemon.modules.ingestion import FetchPolicy, FetchRefused, IngestionError, Pipeline, fetch_url
from daemon.modules.ingestion.address_policy import AddressPolicy, IPAddress
from daemon.modules.ingestion.egress_policy import EgressPolicy
from daemon.modules.ingestion.guarded_network import GuardedBackend, note_configured_url
from daemon.modules.ingestion.states import DocumentState, step_from
from tests.integration.api_server import bearer, serve_api
from tests.integration.test_fetch import answer, redirect, start_server

LOOPBACK = ("127.0.0.0/8", "::1/128")


@pytest.fixture
async def server(nursery):
    return await start_server(nursery)


@pytest.fixture
async def other_server(nursery):
    return await start_server(nursery, "127.0.0.2")


class RecordingResolver:
    """A resolver that answers ``addresses`` for every name and records each lookup."""

    def __init__(self, *addresses: str) -> None:
        import ipaddress

        self.addresses = [ipaddress.ip_address(a) for a in addresses or ("127.0.0.1",)]
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        return list(self.addresses)


def confined(egress=LOOPBACK, **overrides) -> FetchPolicy:
    """Egress confined to ``egress``; the SSRF guard opens loopback (both fences apply)."""
    settings = {
        "total_timeout": 10.0,
        "connect_timeout": 5.0,
        "allowed_networks": ("127.0.0.0/8", "::1/128"),
    } | overrides
    return FetchPolicy(egress=egress, **settings)


# --- allowed -------------------------------------------------------------------------------


async def test_loopback_server_is_fetched_inside_the_allowlist(server):
    server.routes["/doc"] = answer(200, b"inside", Content_Type="text/plain")
    resolver = RecordingResolver()
    fetched = await fetch_url(server.url("/doc"), confined(), resolver=resolver)
    assert fetched.data == b"inside"
    assert resolver.calls == []  # an IP literal: nothing to resolve


@pytest.mark.parametrize(
    "host", ["127.1", "0x7f.1", "2130706433", "127.0.0.1.", "[::ffff:127.0.0.1]"]
)
async def test_odd_spellings_of_an_allowed_address_are_fetched_without_resolving(server, host):
    server.routes["/"] = answer(200, b"odd but inside")
    resolver = RecordingResolver("8.8.8.8")  # a lookup would lead outside: must not happen
    fetched = await fetch_url(f"http://{host}:{server.port}/", confined(), resolver=resolver)
    assert fetched.data == b"odd but inside"
    assert resolver.calls == []
    assert server.connections == 1


async def test_a_listed_host_name_is_resolved_and_fetched(server):
    server.routes["/"] = answer(200, b"by name")
    resolver = RecordingResolver("127.0.0.1")
    policy = confined(egress=("docs.corp.invalid",))
    fetched = await fetch_url(
        f"http://Docs.Corp.Invalid.:{server.port}/", policy, resolver=resolver
    )
    assert fetched.data == b"by name"
    assert resolver.calls == ["docs.corp.invalid."]
    assert server.requests[0].headers["host"] == f"docs.corp.invalid.:{server.port}"


async def test_localhost_is_resolved_and_must_land_inside(server):
    server.routes["/"] = answer(200, b"localhost")
    resolver = RecordingResolver("127.0.0.1", "::1")
    fetched = await fetch_url(f"http://localhost:{server.port}/", confined(), resolver=resolver)
    assert fetched.data == b"localhost"
    assert resolver.calls == ["localhost"]

    with pytest.raises(FetchRefused, match=r"::1 is outside the egress allowlist"):
        await fetch_url(
            f"http://localhost:{server.port}/", confined(egress=("127.0.0.0/8",)), resolver=resolver
        )
    assert server.connections == 1


async def test_localhost_with_the_system_resolver(server):
    """``localhost`` comes from /etc/hosts: no DNS query leaves the host."""
    server.routes["/"] = answer(200, b"system resolver")
    fetched = await fetch_url(f"http://localhost:{server.port}/", confined())
    assert fetched.data == b"system resolver"


# --- refused before DNS and before connecting ------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "docs.example.invalid",
        "intranet.invalid",
        "127.0.0.1.nip.invalid",  # looks like loopback, is a name
        "localhost.invalid",
        "xn--bcher-kva.invalid",
    ],
)
async def test_an_unlisted_name_is_refused_without_any_lookup(server, host, caplog):
    server.routes["/"] = answer(200, b"never")
    resolver = RecordingResolver("127.0.0.1")  # would lead to the server
    url = f"http://{host}:{server.port}/p?token=s3cret"
    outside = re.escape(f"host {host!r} is outside")
    with (
        caplog.at_level(logging.INFO, logger="triaged.egress"),
        pytest.raises(FetchRefused, match=outside) as caught,
    ):
        await fetch_url(url, confined(), resolver=resolver)
    assert isinstance(caught.value, IngestionError)
    assert resolver.calls == []
    assert server.connections == 0
    [logged] = [r for r in caplog.records if getattr(r, "action", "") == "egress.refused"]
    assert logged.host == host  # type: ignore[attr-defined]
    assert "s3cret" not in logged.getMessage() and "s3cret" not in str(caught.value)


async def test_an_unlisted_name_is_refused_with_the_system_resolver_too(server):
    """No resolver injected: the default (getaddrinfo) would send a DNS query for this
    name; the refusal comes first and fast (no lookup, no timeout)."""
    with trio.fail_after(5):
        with pytest.raises(FetchRefused, match="outside the egress allowlist"):
            await fetch_url(f"http://generated-{server.port}.example.invalid/", confined())
    assert server.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.2", "0x7f.0.0.2", "[::ffff:127.0.0.2]"])
async def test_an_address_outside_the_networks_is_refused_before_connecting(other_server, host):
    other_server.routes["/"] = answer(200, b"never")
    resolver = RecordingResolver()
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.2\)? is outside the egress allowlist"):
        await fetch_url(
            f"http://{host}:{other_server.port}/",
            confined(egress=("127.0.0.1/32",)),
            resolver=resolver,
        )
    assert other_server.connections == 0 and resolver.calls == []


async def test_the_backend_alone_refuses_before_resolving(server):
    """Any client built on the backend (not only fetch_url) is confined the same way."""
    resolver = RecordingResolver("127.0.0.1")
    backend = GuardedBackend(
        AddressPolicy(allowed_networks=LOOPBACK),
        resolver,
        egress=EgressPolicy.parse(LOOPBACK),
    )
    for host in ("anything.invalid", "8.8.8.8", "134744072"):
        with pytest.raises(FetchRefused, match="outside the egress allowlist"):
            await backend.connect_tcp(host, server.port)
    assert resolver.calls == [] and server.connections == 0
    stream = await backend.connect_tcp("127.1", server.port)
    try:
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", server.port)
    finally:
        await stream.aclose()
    assert resolver.calls == []


async def test_the_ssrf_guard_still_applies_inside_the_allowlist(server):
    """The allowlist narrows, never widens: loopback listed, but not opened by the SSRF
    guard, stays refused as loopback."""
    server.routes["/"] = answer(200, b"never")
    with pytest.raises(FetchRefused, match="loopback address"):
        await fetch_url(server.url("/"), FetchPolicy(egress=LOOPBACK))
    assert server.connections == 0


# --- redirects, hop by hop -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://127.0.0.2:{port}/secret", r"127\.0\.0\.2 is outside"),
        ("http://0x7f.0.0.2:{port}/secret", r"127\.0\.0\.2 is outside"),
        ("http://elsewhere.invalid:{port}/secret", "host 'elsewhere.invalid' is outside"),
        ("https://93.184.216.34/", r"93\.184\.216\.34 is outside"),
    ],
)
async def test_each_redirect_hop_is_checked(server, other_server, location, reason):
    other_server.routes["/secret"] = answer(200, b"secret")
    server.routes["/go"] = redirect(location.format(port=other_server.port))
    resolver = RecordingResolver("127.0.0.2")
    with pytest.raises(FetchRefused, match=reason):
        await fetch_url(server.url("/go"), confined(egress=("127.0.0.1/32",)), resolver=resolver)
    assert [r.path for r in server.requests] == ["/go"]
    assert other_server.connections == 0 and resolver.calls == []


async def test_a_redirect_inside_the_allowlist_is_followed(server, other_server):
    other_server.routes["/end"] = answer(200, b"end")
    server.routes["/go"] = redirect(other_server.url("/end"), 307)
    fetched = await fetch_url(server.url("/go"), confined())
    assert (fetched.data, fetched.redirects) == (b"end", 1)


# --- the model server note -----------------------------------------------------------------


def test_a_model_server_outside_the_allowlist_is_noted_at_start(caplog):
    egress = EgressPolicy.parse(LOOPBACK)
    with caplog.at_level(logging.WARNING, logger="triaged.egress"):
        assert note_configured_url(egress, "https://key:pw@llm.corp.invalid/v1", "the model")
        assert not note_configured_url(egress, "http://127.0.0.1:8000/v1", "the model")
        assert not note_configured_url(None, "https://llm.corp.invalid/v1", "the model")
        assert not note_configured_url(egress, None, "the model")
    [record] = caplog.records
    assert record.action == "egress.configured_outside"  # type: ignore[attr-defined]
    assert record.host == "llm.corp.invalid"  # type: ignore[attr-defined]
    assert "pw" not in record.getMessage() and "key" not in record.getMessage()


# --- a document, end to end: the refusal is its failure reason -------------------------


async def run_to_rest(server, document_id: int) -> str:
    pipeline = Pipeline(server.pool, pipeline_config(compose(server.settings)))
    with trio.fail_after(60):
        while True:
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


async def test_a_document_url_outside_the_allowlist_fails_with_the_reason(pool):
    async with serve_api(
        pool, fetch_egress_networks="127.0.0.0/8,::1", fetch_allowed_networks="127.0.0.0/8"
    ) as api:
        token = bearer(await api.token(Role.ANALYST))
        async with api.client(headers=token) as client:
            outside = await client.post(
                "/api/v1/documents", json={"url": "https://docs.example.invalid/a?key=s3cret"}
            )
            inside = await client.post("/api/v1/documents", json={"url": f"{api.url}/openapi.json"})
            assert await run_to_rest(api, outside.json()["id"]) == "failed"
            assert await run_to_rest(api, inside.json()["id"]) == "completed"
            failed = (await client.get(f"/api/v1/documents/{outside.json()['id']}")).json()
    error = failed["history"][-1]["detail"]["error"]
    assert error == (
        "refused: host 'docs.example.invalid' is outside the egress allowlist (not resolved)"
    )
