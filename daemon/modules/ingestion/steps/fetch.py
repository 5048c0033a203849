"""The fetch step: content given at intake is there already; a URL is downloaded.

Documents with content move on together in one statement; each URL is downloaded
(at most ``fetch_concurrency`` at once in the process, each up to the document size
limit) and its document moves on with its bytes in a transaction of its own, as soon
as its download ends: a slow server holds up no other document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs
import trio

from daemon.modules.ingestion.errors import IngestionError
from daemon.modules.ingestion.fetch import Fetched, fetch_url
from daemon.modules.ingestion.states import step_named
from daemon.modules.ingestion.steps.contract import (
    Group,
    Move,
    Read,
    Settled,
    StepWork,
    split,
)
from daemon.modules.ingestion.store import in_state

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.fetch import FetchPolicy
    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import JobOptions
    from daemon.modules.ingestion.store import IngestionStore
    from daemon.shared.db.psycopg_trio import TrioConnection


@attrs.frozen(kw_only=True)
class FetchInput:
    """The URL to download; None: the content was given at intake."""

    url: str | None


@attrs.frozen
class FetchStep(StepWork[FetchInput, "Move[Fetched]", Fetched]):
    step: ClassVar[Step] = step_named("fetch")

    store: IngestionStore
    policy: FetchPolicy
    downloads: trio.CapacityLimiter  # URL downloads at once in the process

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[FetchInput]:
        ids = list(documents)
        rows = await self.store.read("step_input", ids)
        found: dict[int, FetchInput | Settled] = {}
        # needs=0: the state column; whether the input is there is told below.
        for document_id, row in in_state(self.step, ids, rows, needs=0, error="").items():
            found[document_id] = row if not isinstance(row, tuple) else _input_of(*row[1:])
        inputs, settled = split(found)
        given = {i: value for i, value in inputs.items() if value.url is None}
        groups = [Group(inputs=given)] if given else []
        groups += [
            Group(inputs={i: value}, transaction=True)
            for i, value in inputs.items()
            if value.url is not None
        ]
        return Read(groups=groups, settled=settled, concurrent=True)

    async def compute(self, inputs: Mapping[int, FetchInput]) -> dict[int, Move[Fetched] | Settled]:
        outputs: dict[int, Move[Fetched] | Settled] = {}

        async def fetch_one(document_id: int, url: str) -> None:
            try:
                async with self.downloads:
                    fetched = await fetch_url(url, self.policy)
            except Exception as exc:  # this document's outcome, not the batch's
                outputs[document_id] = exc
                return
            outputs[document_id] = Move(
                to_state=self.step.to_state,
                detail={
                    "url": fetched.final_url,
                    "status": fetched.status,
                    "bytes": len(fetched.data),
                },
                effect=fetched,
            )

        async with trio.open_nursery() as nursery:
            for document_id, value in inputs.items():
                if value.url is None:
                    outputs[document_id] = Move(to_state=self.step.to_state)
                else:
                    nursery.start_soon(fetch_one, document_id, value.url)
        return outputs

    async def after(self, conn: TrioConnection, moved: Mapping[int, Move[Fetched]]) -> None:
        for document_id, move in moved.items():
            fetched = move.effect
            if fetched is None:
                continue
            await self.store.insert_blob(conn, document_id, fetched.data)
            media_type = fetched.media_type
            if fetched.charset and media_type:
                media_type = f"{media_type}; charset={fetched.charset}"
            await self.store.set_fetched(conn, document_id, media_type, len(fetched.data))


def _input_of(url: str | None, has_content: bool) -> FetchInput | Settled:
    if has_content:
        return FetchInput(url=None)
    if url is not None:
        return FetchInput(url=url)
    return IngestionError("the document has neither content nor a URL")
