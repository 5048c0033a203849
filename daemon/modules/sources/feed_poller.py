"""The ``feed`` kind: each entry of an RSS or Atom feed becomes a document once.

The feed is fetched conditionally like an ``http`` source (a ``304`` creates nothing),
parsed off the event loop (the process's CPU threads), and its entries yielded oldest
first in batches. An entry's identity is its id/guid, else its link, else a hash of its
title and date (:func:`.feed_entries.entry_identity`). Its document is the entry's
content or summary (HTML or text as the feed says); with ``fetch_linked_page`` it is the
entry's link, downloaded by the pipeline's fetch step (an entry without a link then
falls back to its content).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from daemon.modules.sources.feed_entries import FeedEntry, parse_feed
from daemon.modules.sources.http_poller import fetch_conditionally
from daemon.modules.sources.polling import BatchOutcome, PolledItem

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from daemon.modules.sources.polling import PollContext

BATCH = 50


class FeedPoller:
    def __init__(self, context: PollContext) -> None:
        self.context = context

    async def batches(self) -> AsyncGenerator[Sequence[PolledItem], None]:
        fetched = await fetch_conditionally(self.context)
        if fetched.not_modified:
            return
        processes = self.context.config.processes
        if processes is not None:  # feedparser is pure Python: off the loop's GIL
            entries = await processes.run(parse_feed, fetched.data)
        else:
            entries = await trio.to_thread.run_sync(parse_feed, fetched.data)
        linked = bool(self.context.source.config.get("fetch_linked_page"))
        items = [self._item(entry, linked=linked) for entry in entries]
        for start in range(0, len(items), BATCH):
            yield items[start : start + BATCH]

    def _item(self, entry: FeedEntry, *, linked: bool) -> PolledItem:
        metadata = {"feed_entry": entry.identity, "link": entry.link, "published": entry.published}
        if linked and entry.link:
            return PolledItem(identity=entry.identity, title=entry.title, url=entry.link,
                              metadata=metadata)  # fmt: skip
        return PolledItem(
            identity=entry.identity,
            title=entry.title,
            content=entry.content.encode("utf-8"),
            media_type=f"{entry.content_type}; charset=utf-8",
            metadata=metadata,
        )

    async def after_commit(self, outcome: BatchOutcome) -> None:
        return None
