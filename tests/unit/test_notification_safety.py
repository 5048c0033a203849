"""What a notification may not leak or be made to do: webhook URLs (a chat webhook's
credential) out of errors, SMTP servers held to the SSRF guard, credentials only over
TLS, a secret not kept when its destination changes, untrusted titles inert in Slack
text and in mail headers."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import trio

from daemon.modules.ingestion import FetchPolicy, FetchRefused, FetchUnavailable, post_guarded
from daemon.modules.notifications import DeliveryFailed, DeliveryOptions
from daemon.modules.notifications.channel_rules import check_secret_follows, split_config
from daemon.modules.notifications.email_sender import check_smtp_host, send_email
from daemon.modules.notifications.messages import Notice, email_text, summary, webhook_body
from daemon.modules.notifications.sending import redacted, send
from daemon.shared.errors import ValidationFailed

LOOPBACK = FetchPolicy(allowed_networks=("127.0.0.0/8",), total_timeout=2.0)
HOOK_PATH = "/services/T000/B000/XXXXSECRETXXXX"


def notice(title: str) -> Notice:
    return Notice(
        delivery_id="d-1",
        event_id=1,
        event_kind="opened",
        actor="system",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        detail={},
        case_id=7,
        severity="high",
        status="open",
        level=0,
        sla_due_at=None,
        title=title,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def field_of(caught: pytest.ExceptionInfo[ValidationFailed]) -> str:
    return caught.value.errors[0]["field"]


# 1. The webhook URL's path and query never reach an error.


async def test_a_webhook_error_names_the_origin_never_the_path_or_query():
    port = closed_port()
    url = f"http://127.0.0.1:{port}{HOOK_PATH}?token=t0ps3cret"
    with pytest.raises(FetchUnavailable) as caught:
        await post_guarded(url, b"{}", {}, LOOPBACK)
    assert f"http://127.0.0.1:{port}" in str(caught.value)
    assert "XXXXSECRETXXXX" not in str(caught.value) and "t0ps3cret" not in str(caught.value)
    options = DeliveryOptions(fetch=LOOPBACK)
    with pytest.raises(DeliveryFailed) as failed:
        await send("webhook", {"url": url}, "k", notice("t"), options)
    assert "XXXXSECRETXXXX" not in str(failed.value) and "t0ps3cret" not in str(failed.value)


async def test_a_silent_receiver_times_out_without_the_path():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}{HOOK_PATH}"
        policy = FetchPolicy(allowed_networks=("127.0.0.0/8",), total_timeout=0.3)
        with pytest.raises(FetchUnavailable) as caught:
            await post_guarded(url, b"{}", {}, policy)
    assert "no answer" in str(caught.value) and "XXXXSECRETXXXX" not in str(caught.value)


def test_redaction_removes_the_url_and_its_path_wherever_they_appear():
    url = f"https://hooks.example.org{HOOK_PATH}?k=v1"
    text = redacted(f"boom at {url}; path {HOOK_PATH}; query k=v1", url)
    assert "XXXXSECRETXXXX" not in text and "k=v1" not in text
    assert "https://hooks.example.org:443" in text


# 2. SMTP servers are held to the SSRF guard.


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "Mail.LOCALHOST.",
        "127.1",
        "2130706433",
        "169.254.169.254",
        "10.1.2.3",
        "::1",
    ],
)
def test_refused_smtp_hosts_are_refused_at_configuration(host):
    with pytest.raises(FetchRefused):
        check_smtp_host(host, 25, FetchPolicy())


def test_smtp_hosts_follow_the_fetch_settings():
    check_smtp_host("smtp.example.org", 587, FetchPolicy())  # a name: resolved when sending
    check_smtp_host("localhost", 25, LOOPBACK)  # loopback allowed by the settings
    with pytest.raises(FetchRefused):  # the egress allowlist narrows
        check_smtp_host("smtp.example.org", 587, FetchPolicy(egress="hooks.example.org"))


async def test_sending_resolves_and_refuses_before_connecting():
    with socket.socket() as listener:  # a server that would accept: never reached
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        config = {"to": ["a@example.org"], "host": "127.0.0.1", "port": port, "security": "none"}
        with pytest.raises(FetchRefused):
            await send_email(config, "s", "t", delivery_id="d", timeout=1, policy=FetchPolicy())
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


async def test_an_smtp_error_names_no_banner_or_server_text():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"554 secret-internal-host.corp ESMTP Postfix 3.1 go away\r\n")
                conn.recv(100)

        config = {"to": ["a@example.org"], "host": "localhost", "port": port, "security": "none"}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, serve)
            with pytest.raises(DeliveryFailed) as caught:
                await send_email(config, "s", "t", delivery_id="d", timeout=2, policy=LOOPBACK)
    assert "554" in str(caught.value) and "secret-internal" not in str(caught.value)
    assert caught.value.permanent  # a 5xx answer: retrying cannot help


# 3. Credentials only over TLS.


@pytest.mark.parametrize("extra", [{"username": "bot"}, {"password": "pw"}])
def test_credentials_need_tls(extra):
    config = {"to": ["a@example.org"], "host": "smtp.example.org", "security": "none", **extra}
    with pytest.raises(ValidationFailed) as caught:
        split_config("email", config, old_secret=None, creating=True)
    assert field_of(caught) == f"config.{next(iter(extra))}"
    for security in ("tls", "starttls"):
        split_config("email", {**config, "security": security}, old_secret=None, creating=True)


def test_a_kept_password_cannot_be_downgraded_to_cleartext():
    config = {"to": ["a@example.org"], "host": "smtp.example.org", "security": "none"}
    with pytest.raises(ValidationFailed) as caught:
        split_config("email", config, old_secret="pw", creating=False)
    assert field_of(caught) == "config.password"


async def test_credentials_stored_before_are_never_sent_in_clear():
    config = {"to": ["a@example.org"], "host": "localhost", "port": 9, "security": "none",
              "username": "bot", "password": "pw"}  # fmt: skip
    with pytest.raises(DeliveryFailed) as caught:
        await send_email(config, "s", "t", delivery_id="d", timeout=1, policy=LOOPBACK)
    assert caught.value.permanent and "pw" not in str(caught.value)


# 4. A secret does not follow its channel to another server.


EMAIL = {"to": ["a@example.org"], "host": "smtp.example.org", "port": 587, "security": "starttls"}
HOOK = {"url": f"https://hooks.example.org{HOOK_PATH}", "format": "slack"}


@pytest.mark.parametrize(
    ("kind", "old", "change", "field"),
    [
        ("email", EMAIL, {"host": "evil.example.net"}, "config.password"),
        ("email", EMAIL, {"port": 2525}, "config.password"),
        ("webhook", HOOK, {"url": f"https://evil.example.net{HOOK_PATH}"}, "config.secret"),
        ("webhook", HOOK, {"url": f"http://hooks.example.org{HOOK_PATH}"}, "config.secret"),
        ("webhook", HOOK, {"url": f"https://hooks.example.org:8443{HOOK_PATH}"}, "config.secret"),
    ],
)
def test_a_new_destination_needs_the_secret_again(kind, old, change, field):
    with pytest.raises(ValidationFailed) as caught:
        check_secret_follows(kind, old, change, True)
    assert field_of(caught) == field
    secret_key = field.removeprefix("config.")
    check_secret_follows(kind, old, {**change, secret_key: "new"}, True)  # given again
    check_secret_follows(kind, old, change, False)  # no secret stored: nothing to move


def test_the_same_destination_keeps_the_secret():
    same_server = {"to": ["b@example.org"], "host": "SMTP.example.org"}
    check_secret_follows("email", EMAIL, same_server, True)
    check_secret_follows("webhook", HOOK, {"url": "https://hooks.example.org:443/other"}, True)


# 5. Slack text is escaped.


def test_slack_text_escapes_mentions_and_links():
    body = webhook_body(notice("<!channel> see <https://evil.example|your bank> & more"), "slack")
    text = body.decode()
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in text and "&amp; more" in text


def test_json_bodies_keep_the_title_as_it_is():
    assert b"<!channel>" in webhook_body(notice("<!channel>"), "json")


# 6. Control characters never reach a mail header.


def test_a_title_with_line_breaks_makes_one_line():
    title = "disk full\r\nBcc: everyone@example.org\x00\u2028x"
    assert "\r" not in summary(notice(title)) and "\n" not in summary(notice(title))
    subject, text = email_text(notice(title))
    assert all(ch not in subject for ch in "\r\n\x00\u2028")
    assert text.splitlines()[0] == subject


async def test_a_message_no_header_can_hold_fails_for_good():
    config = {"to": ["a@example.org"], "host": "localhost", "port": 9, "security": "none"}
    with pytest.raises(DeliveryFailed) as caught:
        await send_email(config, "a\r\nb", "t", delivery_id="d", timeout=1, policy=LOOPBACK)
    assert caught.value.permanent
