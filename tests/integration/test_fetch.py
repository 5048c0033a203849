"""fetch_url against real HTTP servers on loopback (raw Trio sockets, so each test can
misbehave exactly as it needs: lie about lengths, drip, stall, redirect anywhere).

Loopback is refused by default, so tests that want a response allow ``127.0.0.0/8`` (or
a single address) explicitly. Every refusal test keeps a server listening at the refused
address and checks it saw no connection: the refusal is the policy's doing, not a
closed port. Nothing here leaves the machine: host names are ``localhost``, numeric
spellings the resolver parses without DNS, or names a fake resolver answers.
"""

from __future__ import annotations

import functools
import gzip
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio

from daemon.modules.ingestion import (
    ContentTooLarge,
    CorruptContent,
    FetchPolicy,
    FetchRefused,
    FetchRejected,
    FetchUnavailable,
    IngestionError,
    fetch_url,
)
from daemon.modules.ingestion.address_policy import AddressPolicy, IPAddress
from daemon.modules.ingestion.guarded_network import GuardedBackend
from daemon.shared.errors import DaemonError

LOOPBACK = ("127.0.0.0/8",)


# --- a tiny HTTP/1.1 server ------------------------------------------------------------


@attrs.frozen
class Request:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[trio.abc.Stream, Request], Awaitable[None]]


@attrs.define
class Server:
    host: str
    port: int = 0
    routes: dict[str, Handler] = attrs.Factory(dict)
    connections: int = 0
    requests: list[Request] = attrs.Factory(list)
    body_bytes_sent: int = 0
    tls: ssl.SSLContext | None = None
    server_names: list[str | None] = attrs.Factory(list)  # TLS SNI received (see tls_server)

    def url(self, path: str = "/", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        try:
            if self.tls is not None:
                stream = trio.SSLStream(stream, self.tls, server_side=True)
                await stream.do_handshake()
            while True:  # keep-alive: several requests may come on one connection
                request = await read_request(stream)
                if request is None:
                    return
                self.requests.append(request)
                handler = self.routes.get(request.path, not_found)
                await handler(stream, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client hung up (or refused our certificate), as it may
        finally:
            await stream.aclose()


async def read_request(stream: trio.abc.Stream) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request_line, *lines = head.split("\r\n")
    method, path, _version = request_line.split(" ")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method=method, path=path, headers=headers)


async def respond(
    stream: trio.abc.Stream,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    length: bool = True,
) -> None:
    lines = [f"HTTP/1.1 {status} Whatever"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    await stream.send_all(head + body)


async def not_found(stream: trio.abc.Stream, request: Request) -> None:
    await respond(stream, 404, b"no such page", {"Content-Type": "text/plain"})


def redirect(location: str, status: int = 302) -> Handler:
    async def handler(stream: trio.abc.Stream, request: Request) -> None:
        await respond(stream, status, b"", {"Location": location})

    return handler


def answer(status: int, body: bytes = b"", **headers: str) -> Handler:
    async def handler(stream: trio.abc.Stream, request: Request) -> None:
        await respond(stream, status, body, {k.replace("_", "-"): v for k, v in headers.items()})

    return handler


async def start_server(
    nursery: trio.Nursery, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Server:
    server = Server(host=host, tls=tls)
    listeners = await nursery.start(functools.partial(trio.serve_tcp, server.handle, 0, host=host))
    server.port = listeners[0].socket.getsockname()[1]
    return server


@pytest.fixture
async def server(nursery):
    return await start_server(nursery)


@pytest.fixture
async def other_server(nursery):
    """A second server, on 127.0.0.2 (all of 127/8 is loopback on Linux)."""
    return await start_server(nursery, "127.0.0.2")


def allow(*networks: str, **overrides) -> FetchPolicy:
    settings = {"total_timeout": 10.0, "connect_timeout": 5.0} | overrides
    return FetchPolicy(allowed_networks=networks or LOOPBACK, **settings)


def fake_resolver(*answers: list[str]):
    """A resolver answering the n-th lookup with ``answers[n]`` (the last one repeats)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        import ipaddress

        answer_ = answers[min(len(calls), len(answers) - 1)]
        calls.append(host)
        return [ipaddress.ip_address(a) for a in answer_]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# --- success -----------------------------------------------------------------------------


async def test_fetches_body_media_type_and_charset(server):
    body = "<p>café</p>".encode("latin-1")
    server.routes["/doc"] = answer(200, body, Content_Type='Text/HTML; charset="ISO-8859-1"')

    fetched = await fetch_url(server.url("/doc"), allow())

    assert fetched.data == body
    assert fetched.media_type == "text/html"
    assert fetched.charset == "iso-8859-1"
    assert fetched.final_url == server.url("/doc")
    assert fetched.status == 200
    assert fetched.redirects == 0


async def test_without_content_type_media_type_and_charset_are_none(server):
    server.routes["/raw"] = answer(200, b"plain bytes")
    fetched = await fetch_url(server.url("/raw"), allow())
    assert (fetched.data, fetched.media_type, fetched.charset) == (b"plain bytes", None, None)


async def test_sends_user_agent_identity_encoding_and_host(server):
    server.routes["/"] = answer(200, b"ok")
    await fetch_url(server.url("/"), allow(user_agent="triaged-test/1"))
    [request] = server.requests
    assert request.method == "GET"
    assert request.headers["user-agent"] == "triaged-test/1"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert "authorization" not in request.headers


async def test_gzip_body_is_decoded(server):
    server.routes["/gz"] = answer(
        200, gzip.compress(b"hello " * 100), Content_Encoding="gzip", Content_Type="text/plain"
    )
    fetched = await fetch_url(server.url("/gz"), allow())
    assert fetched.data == b"hello " * 100


async def test_corrupt_gzip_is_corrupt_content(server):
    server.routes["/gz"] = answer(200, b"not gzip at all", Content_Encoding="gzip")
    with pytest.raises(CorruptContent):
        await fetch_url(server.url("/gz"), allow())


async def test_no_proxy_from_the_environment(server, nursery, monkeypatch):
    proxy = await start_server(nursery)
    proxy.routes = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy.url("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.routes["/"] = answer(200, b"direct")

    fetched = await fetch_url(server.url("/"), allow())

    assert fetched.data == b"direct"
    assert proxy.connections == 0


# --- the address policy, enforced on real connections ----------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_loopback_is_refused_by_default(server, host):
    server.routes["/"] = answer(200, b"secret")
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1.* loopback address") as caught:
        await fetch_url(f"http://{host}:{server.port}/", FetchPolicy())
    assert isinstance(caught.value, IngestionError)  # permanent
    assert server.connections == 0
    # The same URL is fetched once loopback is allowed: the server was really there.
    assert (await fetch_url(f"http://{host}:{server.port}/", allow())).data == b"secret"


async def test_allow_private_reaches_loopback(server):
    server.routes["/"] = answer(200, b"intranet")
    fetched = await fetch_url(server.url("/"), FetchPolicy(allow_private=True))
    assert fetched.data == b"intranet"


async def test_localhost_is_refused_at_connect_time(server):
    """A host name is not checked before the request: the check happens on the
    addresses the backend resolves and is about to connect to."""
    server.routes["/"] = answer(200, b"secret")
    with pytest.raises(FetchRefused) as caught:
        await fetch_url(server.url("/", host="localhost"), FetchPolicy())
    assert "loopback address" in str(caught.value)
    assert "resolved from 'localhost'" in str(caught.value)
    assert server.connections == 0
    fetched = await fetch_url(server.url("/", host="localhost"), allow())
    assert fetched.data == b"secret"
    assert server.requests[-1].headers["host"] == f"localhost:{server.port}"


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.0.0.1", "017700000001"])
async def test_numeric_spellings_of_loopback_are_refused(server, host):
    """Spellings a URL parser takes for host names but the resolver for 127.0.0.1."""
    try:
        resolved = socket.inet_aton(host)  # parsed locally, so getaddrinfo sends no DNS
    except OSError:
        pytest.skip(f"this platform's resolver does not parse {host!r} as a number")
    assert resolved == socket.inet_aton("127.0.0.1")
    with pytest.raises(FetchRefused, match="loopback address"):
        await fetch_url(f"http://{host}:{server.port}/", FetchPolicy())
    assert server.connections == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/secret",
    ],
)
async def test_redirect_from_allowed_host_to_refused_address(other_server, server, location):
    """The allowed host is 127.0.0.2; the redirect points at 127.0.0.1, refused."""
    server.routes["/secret"] = answer(200, b"secret")
    other_server.routes["/go"] = redirect(location.format(port=server.port))

    with pytest.raises(FetchRefused, match="refused: "):
        await fetch_url(other_server.url("/go"), allow("127.0.0.2/32"))

    assert [r.path for r in other_server.requests] == ["/go"]
    assert server.connections == 0


async def test_redirect_to_an_allowed_address_is_followed(other_server, server):
    server.routes["/secret"] = answer(200, b"secret")
    other_server.routes["/go"] = redirect(server.url("/secret"), 307)
    fetched = await fetch_url(other_server.url("/go"), allow())
    assert fetched.data == b"secret"
    assert fetched.final_url == server.url("/secret")
    assert fetched.redirects == 1


async def test_dns_rebinding_is_caught_on_the_next_connection(server, other_server):
    """``rebind.test`` first resolves to the allowed 127.0.0.1, then to 127.0.0.2: the
    second connection (a redirect to another port of the same name) is refused."""
    resolver = fake_resolver(["127.0.0.1"], ["127.0.0.2"])
    server.routes["/start"] = redirect(f"http://rebind.test:{other_server.port}/inside")
    other_server.routes["/inside"] = answer(200, b"secret")

    with pytest.raises(FetchRefused, match=r"127\.0\.0\.2 is a loopback address"):
        await fetch_url(
            f"http://rebind.test:{server.port}/start", allow("127.0.0.1/32"), resolver=resolver
        )

    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert server.requests[0].headers["host"] == f"rebind.test:{server.port}"
    assert other_server.connections == 0


async def test_every_resolved_address_must_be_allowed(server):
    resolver = fake_resolver(["127.0.0.1", "10.0.0.1"])
    server.routes["/"] = answer(200, b"x")
    with pytest.raises(FetchRefused, match=r"10\.0\.0\.1 is a private address"):
        await fetch_url(f"http://two.test:{server.port}/", allow(), resolver=resolver)
    assert server.connections == 0


async def test_next_vetted_address_is_tried_when_one_refuses_connections(server):
    # Nothing listens on 127.0.0.3 at the server's port: ECONNREFUSED, then 127.0.0.1.
    resolver = fake_resolver(["127.0.0.3", "127.0.0.1"])
    server.routes["/"] = answer(200, b"second address")
    fetched = await fetch_url(f"http://multi.test:{server.port}/", allow(), resolver=resolver)
    assert fetched.data == b"second address"


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1:{port}/", "http://user:pw@127.0.0.1:{port}/", "file:///etc/passwd"],
)
async def test_schemes_and_userinfo_are_refused(server, url):
    server.routes["/"] = answer(200, b"x")
    with pytest.raises(FetchRefused, match="refused: "):
        await fetch_url(url.format(port=server.port), allow())
    assert server.connections == 0


async def test_redirect_to_another_scheme_is_refused(server):
    server.routes["/"] = redirect(f"ftp://127.0.0.1:{server.port}/file")
    with pytest.raises(FetchRefused, match="scheme ftp"):
        await fetch_url(server.url("/"), allow())


# --- redirects ---------------------------------------------------------------------------


def chain(server: Server, length: int, status: int = 302) -> None:
    """/r0 -> /r1 -> ... -> /r{length}, which answers 200 (relative Locations)."""
    for i in range(length):
        server.routes[f"/r{i}"] = redirect(f"r{i + 1}", status)
    server.routes[f"/r{length}"] = answer(200, b"end of chain")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_follows_each_redirect_status_with_relative_location(server, status):
    chain(server, 3, status)
    fetched = await fetch_url(server.url("/r0"), allow())
    assert fetched.data == b"end of chain"
    assert fetched.redirects == 3
    assert fetched.final_url == server.url("/r3")
    assert [r.method for r in server.requests] == ["GET"] * 4


async def test_redirect_limit(server):
    chain(server, 4)
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        await fetch_url(server.url("/r0"), allow())
    assert len(server.requests) == 4  # the 4th redirect was not followed

    server.requests.clear()
    with pytest.raises(FetchRefused, match="more than 0 redirects"):
        await fetch_url(server.url("/r0"), allow(max_redirects=0))
    assert len(server.requests) == 1


async def test_redirect_loop_ends_at_the_limit(server):
    server.routes["/loop"] = redirect("/loop")
    with pytest.raises(FetchRefused, match="more than 2 redirects"):
        await fetch_url(server.url("/loop"), allow(max_redirects=2))
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [300, 304, 305])
async def test_other_3xx_are_rejected(server, status):
    server.routes["/"] = redirect("/elsewhere", status)
    with pytest.raises(FetchRejected) as caught:
        await fetch_url(server.url("/"), allow())
    assert caught.value.status == status


async def test_redirect_without_location_is_rejected(server):
    server.routes["/"] = answer(302, b"")
    with pytest.raises(FetchRejected, match="without a Location"):
        await fetch_url(server.url("/"), allow())


# --- size cap ----------------------------------------------------------------------------


async def test_body_of_exactly_max_bytes_is_accepted(server):
    server.routes["/"] = answer(200, b"x" * 1000)
    assert len((await fetch_url(server.url("/"), allow(max_bytes=1000))).data) == 1000


async def test_content_length_over_the_cap_is_refused_before_reading(server):
    async def huge(stream, request):
        # Announce 100 MB, send none of it: reading would hang until the total timeout.
        await respond(stream, 200, headers={"Content-Length": "100000000"}, length=False)
        await trio.sleep_forever()

    server.routes["/"] = huge
    with trio.fail_after(5):
        with pytest.raises(ContentTooLarge, match="Content-Length 100000000") as caught:
            await fetch_url(server.url("/"), allow(max_bytes=1024 * 1024))
    assert caught.value.limit == 1024 * 1024
    assert isinstance(caught.value, IngestionError)


def endless_body(server: Server, *, chunked: bool) -> Handler:
    async def handler(stream, request):
        headers = {"Content-Type": "text/plain"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Connection"] = "close"  # body runs until the connection closes
        await respond(stream, 200, headers=headers, length=False)
        piece = b"x" * 65536
        while True:
            frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            await stream.send_all(frame)
            server.body_bytes_sent += len(piece)

    return handler


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "until-close"])
async def test_endless_body_without_length_stops_at_the_cap(server, chunked):
    server.routes["/"] = endless_body(server, chunked=chunked)
    cap = 256 * 1024
    with trio.fail_after(5):
        with pytest.raises(ContentTooLarge, match=f"larger than {cap} bytes"):
            await fetch_url(server.url("/"), allow(max_bytes=cap))
    # Only what fits in the socket buffers past the cap was ever sent.
    await trio.sleep(0.1)
    sent = server.body_bytes_sent
    await trio.sleep(0.2)
    assert server.body_bytes_sent == sent  # the server stopped: the connection is gone
    assert sent < 64 * 1024 * 1024


async def test_decompressed_size_counts_against_the_cap(server):
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))  # about 8 KiB on the wire
    server.routes["/"] = answer(200, bomb, Content_Encoding="gzip")
    assert len(bomb) < 64 * 1024
    with pytest.raises(ContentTooLarge):
        await fetch_url(server.url("/"), allow(max_bytes=1024 * 1024))


# --- time limits -------------------------------------------------------------------------


async def test_server_that_never_answers_times_out(server):
    async def stall(stream, request):
        await trio.sleep_forever()

    server.routes["/"] = stall
    start = trio.current_time()
    with pytest.raises(FetchUnavailable, match="total timeout") as caught:
        await fetch_url(server.url("/"), allow(total_timeout=0.5))
    assert 0.45 <= trio.current_time() - start < 2.0
    assert not isinstance(caught.value, IngestionError)  # transient
    assert caught.value.retry_after is None


async def test_dripping_body_is_bounded_by_the_total_timeout(server):
    """A byte every 50 ms never trips a per-read timeout; the total one stops it."""

    async def drip(stream, request):
        await respond(stream, 200, headers={"Content-Length": "1000"}, length=False)
        while True:
            await stream.send_all(b"x")
            await trio.sleep(0.05)

    server.routes["/"] = drip
    start = trio.current_time()
    with trio.fail_after(30), pytest.raises(FetchUnavailable, match="total timeout"):
        await fetch_url(server.url("/"), allow(total_timeout=0.6))
    assert 0.55 <= trio.current_time() - start < 2.0


async def test_connect_timeout_covers_dns(server):
    async def slow_dns(host, port):
        await trio.sleep_forever()

    start = trio.current_time()
    with pytest.raises(FetchUnavailable, match="timed out"):
        await fetch_url(
            f"http://slow.test:{server.port}/",
            allow(connect_timeout=0.3, total_timeout=10),
            resolver=slow_dns,
        )
    assert 0.25 <= trio.current_time() - start < 2.0


# --- status codes ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
async def test_permanent_4xx_is_rejected(server, status):
    server.routes["/"] = answer(status, b"no")
    with pytest.raises(FetchRejected, match=f"HTTP {status}") as caught:
        await fetch_url(server.url("/"), allow())
    assert caught.value.status == status
    assert isinstance(caught.value, IngestionError)


async def test_404_is_rejected(server):
    with pytest.raises(FetchRejected, match="HTTP 404"):
        await fetch_url(server.url("/missing"), allow())


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_unavailable(server, status):
    server.routes["/"] = answer(status, b"later")
    with pytest.raises(FetchUnavailable, match=f"HTTP {status}") as caught:
        await fetch_url(server.url("/"), allow())
    assert caught.value.retry_after is None
    assert isinstance(caught.value, DaemonError)
    assert not isinstance(caught.value, IngestionError)


async def test_503_with_retry_after_seconds(server):
    server.routes["/"] = answer(503, b"maintenance", Retry_After="120")
    with pytest.raises(FetchUnavailable) as caught:
        await fetch_url(server.url("/"), allow())
    assert caught.value.retry_after == 120.0


async def test_429_with_retry_after_date(server):
    server.routes["/"] = answer(429, b"slow down", Retry_After="Wed, 21 Oct 2015 07:28:00 GMT")
    with pytest.raises(FetchUnavailable) as caught:
        await fetch_url(server.url("/"), allow())
    assert caught.value.retry_after == 0.0  # a date in the past: retry now


async def test_204_is_an_empty_document(server):
    server.routes["/"] = answer(204)
    fetched = await fetch_url(server.url("/"), allow())
    assert (fetched.status, fetched.data) == (204, b"")


# --- network failures --------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, never listened, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_unavailable():
    with pytest.raises(FetchUnavailable) as caught:
        await fetch_url(f"http://127.0.0.1:{closed_port()}/", allow())
    assert not isinstance(caught.value, IngestionError)


async def test_dns_failure_is_unavailable():
    async def nxdomain(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchUnavailable, match=r"cannot resolve 'nowhere\.test'"):
        await fetch_url("http://nowhere.test/", allow(), resolver=nxdomain)


async def test_server_closing_without_answer_is_unavailable(server):
    async def hang_up(stream, request):
        await stream.aclose()

    server.routes["/"] = hang_up
    with pytest.raises(FetchUnavailable):
        await fetch_url(server.url("/"), allow())


async def test_body_cut_short_is_unavailable(server):
    async def cut(stream, request):
        await respond(stream, 200, headers={"Content-Length": "100"}, length=False)
        await stream.send_all(b"only ten b")
        await stream.aclose()

    server.routes["/"] = cut
    with pytest.raises(FetchUnavailable):
        await fetch_url(server.url("/"), allow())


async def test_garbage_response_is_unavailable(server):
    async def garbage(stream, request):
        await stream.send_all(b"this is not HTTP\r\n\r\n")

    server.routes["/"] = garbage
    with pytest.raises(FetchUnavailable):
        await fetch_url(server.url("/"), allow())


# --- the backend on its own --------------------------------------------------------------


async def test_backend_refuses_before_connecting(server):
    backend = GuardedBackend(AddressPolicy(), fake_resolver(["127.0.0.1"]))
    with pytest.raises(FetchRefused):
        await backend.connect_tcp("anything.test", server.port)
    with pytest.raises(FetchRefused):
        await backend.connect_tcp("127.0.0.1", server.port)
    with pytest.raises(FetchRefused):
        await backend.connect_unix_socket("/run/docker.sock")
    assert server.connections == 0


async def test_backend_connects_to_the_vetted_address(server):
    backend = GuardedBackend(AddressPolicy(allowed_networks=LOOPBACK), fake_resolver(["127.0.0.1"]))
    stream = await backend.connect_tcp("anything.test", server.port)
    try:
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", server.port)
    finally:
        await stream.aclose()


# --- TLS: connecting to a vetted IP still verifies the host name -------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for ``tls.test`` (made with the openssl CLI)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert),
        "-subj", "/CN=tls.test", "-addext", "subjectAltName=DNS:tls.test",
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        # Fail, never skip: these tests are what proves TLS is verified.
        pytest.fail(f"cannot make a test certificate with openssl (install openssl): {exc}")
    return cert, key


@pytest.fixture
async def tls_server(nursery, certificate):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server_names = []
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)
    server = await start_server(nursery, tls=context)
    server.server_names = server_names
    return server


def trusting(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


async def test_https_verifies_and_sends_the_host_name_not_the_ip(tls_server, certificate):
    tls_server.routes["/doc"] = answer(200, b"over tls", Content_Type="text/plain")
    resolver = fake_resolver(["127.0.0.1"])
    url = tls_server.url("/doc", host="tls.test")

    fetched = await fetch_url(url, allow(ssl_context=trusting(certificate)), resolver=resolver)

    assert fetched.data == b"over tls"
    assert fetched.final_url == url
    assert tls_server.server_names == ["tls.test"]  # SNI: the name, though we dialled an IP
    assert tls_server.requests[0].headers["host"] == f"tls.test:{tls_server.port}"


async def test_https_certificate_for_another_name_fails(tls_server, certificate):
    tls_server.routes["/"] = answer(200, b"x")
    resolver = fake_resolver(["127.0.0.1"])
    with pytest.raises(FetchUnavailable, match=r"CERTIFICATE_VERIFY_FAILED.*impostor\.test"):
        await fetch_url(
            tls_server.url("/", host="impostor.test"),
            allow(ssl_context=trusting(certificate)),
            resolver=resolver,
        )
    assert tls_server.requests == []


async def test_https_with_the_default_trust_store_refuses_a_self_signed_certificate(tls_server):
    tls_server.routes["/"] = answer(200, b"x")
    with pytest.raises(FetchUnavailable):
        await fetch_url(
            tls_server.url("/", host="tls.test"), allow(), resolver=fake_resolver(["127.0.0.1"])
        )
    assert tls_server.requests == []
