"""SMTP over TLS to a vetted address: the connection goes to the checked IP, the
certificate is still verified against (and SNI names) the configured host, and the
password travels only inside TLS. A real TLS SMTP server on loopback, in a thread."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess

import pytest
import trio

from daemon.modules.ingestion import FetchPolicy
from daemon.modules.notifications import DeliveryFailed
from daemon.modules.notifications.email_sender import send_email


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for ``localhost`` only (made with the openssl CLI)."""
    directory = tmp_path_factory.mktemp("smtp-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert),
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot make a test certificate with openssl (install openssl): {exc}")
    return cert, key


def serve_one(listener: socket.socket, context: ssl.SSLContext, starttls: bool, seen: dict):
    """One SMTP session: implicit TLS, or STARTTLS before anything else is accepted."""
    listener.settimeout(10)  # never hang the test: a client that failed never connects
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    conn.settimeout(10)
    try:
        if not starttls:
            conn = context.wrap_socket(conn, server_side=True)
        reader = conn.makefile("rb")

        def reply(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        reply("220 tls-sink ESMTP")
        while raw := reader.readline():
            verb = raw[:4].upper()
            if verb == b"EHLO":
                tls = isinstance(conn, ssl.SSLSocket)
                reply("250-tls-sink")
                reply("250 AUTH PLAIN" if tls else "250 STARTTLS")
            elif verb == b"STAR":
                reply("220 go ahead")
                conn = context.wrap_socket(conn, server_side=True)
                reader = conn.makefile("rb")
            elif verb == b"AUTH":
                seen["auth_over_tls"] = isinstance(conn, ssl.SSLSocket)
                seen["credentials"] = base64.b64decode(raw.split()[2]).split(b"\0")[1:]
                reply("235 ok")
            elif verb == b"DATA":
                reply("354 go on")
                while reader.readline() not in (b".\r\n", b""):
                    pass
                seen["delivered"] = True
                reply("250 queued")
            elif verb == b"QUIT":
                reply("221 bye")
                return
            else:
                reply("250 ok")
    except (OSError, ssl.SSLError) as exc:
        seen["server_error"] = type(exc).__name__
    finally:
        conn.close()


async def session(certificate, host: str, security: str) -> tuple[dict, BaseException | None]:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    seen: dict = {}
    server_context.sni_callback = lambda _s, name, _c: seen.update(sni=name)
    policy = FetchPolicy(
        allowed_networks=("127.0.0.0/8",),
        ssl_context=ssl.create_default_context(cafile=str(cert)),
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        config = {
            "to": ["duty@example.org"],
            "host": host,
            "port": listener.getsockname()[1],
            "security": security,
            "username": "bot",
            "password": "pw",
        }
        failure = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                trio.to_thread.run_sync, serve_one, listener, server_context,
                security == "starttls", seen,
            )  # fmt: skip
            try:
                await send_email(config, "s", "t", delivery_id="d", timeout=5, policy=policy)
            except DeliveryFailed as exc:
                failure = exc
    return seen, failure


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_credentials_go_inside_tls_to_the_named_host(certificate, security):
    seen, failure = await session(certificate, "localhost", security)
    assert failure is None
    assert seen["sni"] == "localhost" and seen["auth_over_tls"] is True
    assert seen["credentials"] == [b"bot", b"pw"] and seen["delivered"]


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_a_certificate_for_another_name_is_refused_before_the_password(certificate, security):
    seen, failure = await session(certificate, "127.0.0.1", security)  # cert: localhost only
    assert isinstance(failure, DeliveryFailed) and "SSL" in str(failure)
    assert "credentials" not in seen and "pw" not in str(failure)
