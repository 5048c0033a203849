"""The ``http`` kind: GET a URL on the schedule; each distinct body is one document.

Through the SSRF-guarded transport (:func:`daemon.modules.ingestion.fetch_url`, the
process's fetch policy narrowed by the source's limits: size cap, timeout, redirects).
A conditional request carries the last answer's validators (``If-None-Match``,
``If-Modified-Since``): a ``304`` creates nothing. A ``200`` body's SHA-256 is its
identity, so an unchanged body under a new ETag creates nothing either (and a body that
returns to an earlier version is not a new document). The optional auth header (a
secret) goes to the configured origin only, never to a redirect's other host. A body
over :data:`INLINE_HASH_BYTES` is hashed in the CPU threads (``config.cpu``; else a
worker thread), never on the event loop: bodies go up to the source's item limit.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import trio

from daemon.modules.ingestion import fetch_url
from daemon.modules.sources.polling import BatchOutcome, PolledItem

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from daemon.modules.ingestion import Fetched
    from daemon.modules.sources.polling import PollContext
    from daemon.shared.cpu_threads import CpuThreads

INLINE_HASH_BYTES = 64 * 1024  # larger bodies are hashed off the event loop


def request_headers(context: PollContext) -> dict[str, str]:
    """The auth header (if configured) and the validators of the last answer."""
    source = context.source
    headers: dict[str, str] = {}
    auth = source.secrets.get("auth_header")
    if auth:
        headers[str(source.config.get("auth_header_name", "Authorization"))] = str(auth)
    state = source.poll_state
    if state.get("etag"):
        headers["If-None-Match"] = str(state["etag"])
    if state.get("last_modified"):
        headers["If-Modified-Since"] = str(state["last_modified"])
    return headers


def validators(fetched: Fetched, previous: dict[str, Any]) -> dict[str, Any]:
    """The poll state to keep: this answer's validators (a 304 may omit them)."""
    return {
        "etag": fetched.etag or (previous.get("etag") if fetched.not_modified else None),
        "last_modified": fetched.last_modified
        or (previous.get("last_modified") if fetched.not_modified else None),
    }


async def fetch_conditionally(context: PollContext) -> Fetched:
    """GET the source's ``config.url`` conditionally; sets ``context.next_state``."""
    fetched = await fetch_url(
        str(context.source.config["url"]),
        context.fetch_policy(),
        headers=request_headers(context),
    )
    context.next_state = validators(fetched, context.source.poll_state)
    return fetched


def media_type_of(fetched: Fetched) -> str | None:
    if fetched.media_type and fetched.charset:
        return f"{fetched.media_type}; charset={fetched.charset}"
    return fetched.media_type


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def content_sha256(data: bytes, cpu: CpuThreads | None) -> str:
    """The hex SHA-256 of ``data``: inline when small, else in ``cpu``'s threads (None:
    a ``trio.to_thread`` worker), so the event loop never hashes megabytes. Cancellable
    (the hash itself runs to its end; its result is dropped)."""
    if len(data) <= INLINE_HASH_BYTES:
        return _sha256_hex(data)
    if cpu is not None:
        return await cpu.run(_sha256_hex, data)
    return await trio.to_thread.run_sync(_sha256_hex, data, abandon_on_cancel=True)


class HttpPoller:
    def __init__(self, context: PollContext) -> None:
        self.context = context

    async def batches(self) -> AsyncGenerator[Sequence[PolledItem], None]:
        fetched = await fetch_conditionally(self.context)
        if fetched.not_modified or not fetched.data:
            return
        digest = await content_sha256(fetched.data, self.context.config.cpu)
        yield [
            PolledItem(
                identity=f"sha256:{digest}",
                title=fetched.final_url,
                content=fetched.data,
                media_type=media_type_of(fetched),
                metadata={"source_url": fetched.final_url},
                remember={"etag": fetched.etag, "last_modified": fetched.last_modified},
            )
        ]

    async def after_commit(self, outcome: BatchOutcome) -> None:
        return None
