"""The composition of job handlers: which module function runs each queue.

Handlers are thin: they turn a job payload into a call of ``daemon/modules``. The
business queues (ingestion steps, escalation, retention, source polling) register here
as they land; they use the main pool, while the queue's own statements (claims,
completions, lease renewals) run on a small pool of their own (see the supervisor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.queue import HandlerRegistry

if TYPE_CHECKING:
    from daemon.shared.config import Settings


def build_registry(settings: Settings) -> HandlerRegistry:
    """Every queue this process serves, with its handler and per-process concurrency."""
    return HandlerRegistry(default_concurrency=settings.worker_concurrency)
