"""The ``directory`` kind: each settled file of a watched directory becomes one document.

Every filesystem call runs in a worker thread (:mod:`.directory_scan` holds them, and
the rules). A poll scans the directory (its resolved path must still lie under an allowed
root), keeps the files whose mtime is at least ``config.settle_seconds`` old, asks the
core which identities (``name|size|mtime_ns``) it has already recorded, reads the others
(re-checking size and mtime around the read: a file written meanwhile waits for a later
poll) and yields them in batches bounded by count and bytes. The core commits each
batch's items, documents and first jobs in one transaction.

``config.after``:

* ``move`` (default): once a batch is committed, :meth:`DirectoryPoller.after_commit`
  moves its files into ``processed/``. A crash between the commit and the move leaves a
  file whose identity is recorded: the next poll yields it as known (no content, no
  document) and its ``after_commit`` moves it. A file rewritten since the commit is not
  moved: it is a new item.
* ``remember``: files stay; their recorded identities keep them from becoming documents
  again. A file changed in place (new size or mtime) is a new document.

A settled file larger than the source's item limit is skipped (logged each poll): it is
neither read nor moved.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from daemon.modules.sources.directory_scan import (
    FileState,
    FileTooLarge,
    check_directory,
    is_settled,
    item_identity,
    move_processed,
    read_file,
    scan_directory,
)
from daemon.modules.sources.errors import DirectoryRefused
from daemon.modules.sources.polling import BatchOutcome, PolledItem
from daemon.shared.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping, Sequence

    from daemon.modules.sources.kind_config import SourcePolicy
    from daemon.modules.sources.polling import PollContext

log = logging.getLogger("triaged.sources")
BATCH_FILES = 32
BATCH_BYTES = 16 << 20


async def check_directory_config(
    kind: str, config: Mapping[str, object] | None, policy: SourcePolicy
) -> None:
    """At configuration time, beyond the lexical check of the kind's model: the path
    with its symlinks resolved (in a thread) must lie under an allowed root too.

    Raises:
        ValidationFailed: naming ``config.path``.
    """
    if kind != "directory" or not config or not isinstance(config.get("path"), str):
        return
    try:
        await trio.to_thread.run_sync(check_directory, str(config["path"]), policy.directory_roots)
    except DirectoryRefused as exc:
        raise ValidationFailed([{"field": "config.path", "message": str(exc)}]) from None


class DirectoryPoller:
    def __init__(self, context: PollContext) -> None:
        self.context = context
        config = context.source.config
        self.directory = Path(str(config["path"]))
        self.roots = tuple(context.config.policy.directory_roots)
        self.include = tuple(config.get("include") or ())
        self.exclude = tuple(config.get("exclude") or ())
        self.settle_seconds = float(config.get("settle_seconds", 5.0))
        self.move = config.get("after", "move") == "move"
        self.limit = min(context.source.limits.bytes_per_item, context.config.max_document_bytes)
        self.files: dict[str, FileState] = {}

    async def batches(self) -> AsyncGenerator[Sequence[PolledItem], None]:
        files = await trio.to_thread.run_sync(
            functools.partial(
                scan_directory, self.directory, roots=self.roots,
                include=self.include, exclude=self.exclude,
            )
        )  # fmt: skip
        now_ns = time.time_ns()
        settled = [
            f for f in files if is_settled(f, now_ns=now_ns, settle_seconds=self.settle_seconds)
        ]
        too_large = 0
        for start in range(0, len(settled), BATCH_FILES):
            chunk = {item_identity(f): f for f in settled[start : start + BATCH_FILES]}
            known = await self.context.known(list(chunk))
            batch: list[PolledItem] = []
            size = 0
            for identity, file in chunk.items():
                if identity in known:
                    if self.move:  # committed by an earlier poll, not moved yet
                        self.files[identity] = file
                        batch.append(PolledItem(identity=identity, filename=file.name))
                    continue
                try:
                    data = await trio.to_thread.run_sync(
                        functools.partial(
                            read_file, self.directory, file, roots=self.roots, max_bytes=self.limit
                        )
                    )
                except FileTooLarge:
                    too_large += 1
                    continue
                if data is None:
                    continue  # changed or gone since the scan: a later poll sees it
                self.files[identity] = file
                batch.append(
                    PolledItem(
                        identity=identity,
                        title=file.name,
                        content=data,
                        filename=file.name,
                        metadata={"path": str(self.directory / file.name)},
                        remember={"name": file.name, "size": file.size, "mtime_ns": file.mtime_ns},
                    )
                )
                size += len(data)
                if size >= BATCH_BYTES:
                    yield batch
                    batch, size = [], 0
            if batch:
                yield batch
        if too_large:
            log.warning(
                "source %s: %d settled files are larger than %d bytes; skipped",
                self.context.source.id, too_large, self.limit,
                extra={"action": "source.files_too_large", "source_id": self.context.source.id},
            )  # fmt: skip

    async def after_commit(self, outcome: BatchOutcome) -> None:
        if not self.move:
            return
        done = [item for item in outcome.items if item.key in outcome.created]
        done += [*outcome.known, *outcome.skipped]
        for item in done:
            file = self.files.get(item.identity)
            if file is None:
                continue
            await trio.to_thread.run_sync(
                functools.partial(move_processed, self.directory, file.name, expect=file)
            )
