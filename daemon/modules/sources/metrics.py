"""Per-source metrics of this process: polls, items, documents created, failures, and
the last successful poll's time (a gauge operators alert on: ``time() - gauge``).

The ``source`` label is the source's id (stable across renames), bounded by
:data:`SOURCE_LABEL_LIMIT`: beyond it, further sources are counted as ``other``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from daemon.shared.metrics import Label, Registry

if TYPE_CHECKING:
    from daemon.modules.sources.store import Source

SOURCE_LABEL_LIMIT = 200


class SourceMetrics:
    def __init__(self, registry: Registry | None = None) -> None:
        registry = registry or Registry()
        source = Label("source", limit=SOURCE_LABEL_LIMIT)
        self.polls = registry.counter(
            "triaged_source_polls_total", "Polls of a source run in this process.", [source]
        )
        self.items = registry.counter(
            "triaged_source_items_total", "Items seen by polls of a source.", [source]
        )
        self.documents = registry.counter(
            "triaged_source_documents_created_total",
            "Documents created by polls of a source.",
            [source],
        )
        self.failures = registry.counter(
            "triaged_source_poll_failures_total", "Failed polls of a source.", [source]
        )
        self.last_success = registry.gauge(
            "triaged_source_last_success_timestamp_seconds",
            "Unix time of the last successful poll of a source (in this process).",
            [source],
        )
        self.poll_seconds = registry.histogram(
            "triaged_source_poll_seconds", "Duration of successful polls.", [source]
        )

    def polled(self, source: Source, *, items: int, created: int, duration: float) -> None:
        label = str(source.id)
        self.polls.inc(label)
        self.items.inc(label, amount=items)
        self.documents.inc(label, amount=created)
        self.last_success.set(time.time(), label)
        self.poll_seconds.observe(duration, label)

    def failed(self, source: Source) -> None:
        label = str(source.id)
        self.polls.inc(label)
        self.failures.inc(label)
