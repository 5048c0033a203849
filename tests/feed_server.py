"""A real HTTP server on loopback serving feeds and pages that tests change between
polls (stdlib ``ThreadingHTTPServer`` on its own thread: no mocked HTTP).

``FeedServer.entries`` is the feed's entry count; ``etag_salt`` changes the ETag without
changing the body; conditional requests get ``304`` when the ETag matches. Each request
is recorded (path, status, whether it carried an ``Authorization`` header).
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs


def rss2(count: int) -> bytes:
    items = "".join(
        f"<item><title>Entry {i}</title><link>http://example.invalid/e/{i}</link>"
        f"<guid isPermaLink='false'>entry-{i}</guid>"
        f"<description>Alert number {i}: the payment service is failing.</description>"
        f"<pubDate>Sun, 06 Dec 2026 0{i % 10}:00:00 GMT</pubDate></item>"
        for i in reversed(range(count))
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Alerts</title><link>http://example.invalid/</link>{items}</channel></rss>"
    ).encode()


def atom(count: int) -> bytes:
    entries = "".join(
        f"<entry><id>urn:entry:{i}</id><title>Atom {i}</title>"
        f"<updated>2026-12-06T00:00:{i % 60:02d}Z</updated>"
        f"<content type='html'>&lt;p&gt;Atom body {i}&lt;/p&gt;</content></entry>"
        for i in range(count)
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
        f"<title>A</title><id>urn:feed</id><updated>2026-12-06T00:00:00Z</updated>{entries}</feed>"
    ).encode()


def rss1(count: int) -> bytes:
    items = "".join(
        f"<item rdf:about='http://example.invalid/r/{i}'><title>RDF {i}</title>"
        f"<link>http://example.invalid/r/{i}</link><description>RDF body {i}</description></item>"
        for i in range(count)
    )
    return (
        "<?xml version='1.0'?><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'"
        " xmlns='http://purl.org/rss/1.0/'><channel rdf:about='http://example.invalid/'>"
        f"<title>R</title><link>http://example.invalid/</link><description>d</description>"
        f"</channel>{items}</rdf:RDF>"
    ).encode()


@attrs.define
class Hit:
    path: str
    status: int
    authorized: str | None


@attrs.define
class FeedServer:
    entries: int = 0
    etag_salt: str = ""
    page: bytes = b"Checkout is down for every customer."
    fail: bool = False
    redirects: dict[str, str] = attrs.Factory(dict)  # path -> Location (a 302)
    hits: list[Hit] = attrs.Factory(list)
    _server: ThreadingHTTPServer | None = None

    def body(self, path: str) -> tuple[bytes, str] | None:
        if path == "/feed.xml":
            return rss2(self.entries), "application/rss+xml"
        if path == "/atom.xml":
            return atom(self.entries), "application/atom+xml"
        if path == "/rdf.xml":
            return rss1(self.entries), "application/rdf+xml"
        if path == "/page.txt":
            return self.page, "text/plain; charset=utf-8"
        return None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def statuses(self, path: str) -> list[int]:
        return [hit.status for hit in self.hits if hit.path == path]

    def start(self) -> FeedServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path in owner.redirects:
                    owner.hits.append(Hit(self.path, 302, self.headers.get("Authorization")))
                    self.send_response(302)
                    self.send_header("Location", owner.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                found = owner.body(self.path)
                status = 200
                if owner.fail:
                    status = 503
                elif found is None:
                    status = 404
                else:
                    data, media_type = found
                    etag = (
                        '"' + hashlib.sha256(data + owner.etag_salt.encode()).hexdigest()[:16] + '"'
                    )
                    if self.headers.get("If-None-Match") == etag:
                        status = 304
                owner.hits.append(Hit(self.path, status, self.headers.get("Authorization")))
                self.send_response(status)
                if status == 200:
                    self.send_header("Content-Type", media_type)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    if status == 304:
                        self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
