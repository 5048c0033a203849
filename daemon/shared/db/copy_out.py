"""``COPY ... TO STDOUT`` read in byte chunks, on a :class:`TrioConnection`.

psycopg's ``AsyncCopy`` hands out one row per ``read()``, each a trip through the
connection's ``wait()``: a few microseconds of Python per row, the bottleneck of a
million-row export. :func:`copy_out` starts the COPY with psycopg (parameters bound
client-side, the result checked) and then drains the libpq buffer itself: as many rows
as are already received, concatenated into one chunk of at most about ``chunk_bytes``,
per ``wait()``. Python then moves one bytes object per chunk.

Contract
--------
* **Streaming, bounded.** Nothing is read ahead of the consumer: the next chunk is read
  from the socket only when the consumer asks for it, so a slow consumer leaves the
  rows in the kernel's socket buffers and PostgreSQL blocks on its send (its query
  pauses). At most one chunk (plus one row) is held in Python.
* **Cancellation.** A cancellation while a chunk is read is the adapter's (see
  :mod:`daemon.shared.db.psycopg_trio`): a cancel request goes to the server, the rest
  of the COPY is discarded, the connection is left idle or in a failed transaction (the
  pool rolls it back). Leaving the iteration early (``aclose()``, an exception in the
  consumer) cancels the COPY the same way, through psycopg's ``AsyncCopy`` exit.
* **Rows.** Each chunk says how many COPY data messages it holds: one per row (the
  ``HEADER`` line of a CSV COPY is the first message).
* **Parameters** are bound client-side (COPY takes no bind parameters); aware datetimes
  are converted to UTC first, so they are accepted as in any other query.
* **Errors.** A query failing during the COPY raises its psycopg error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
from psycopg import errors as e
from psycopg import pq
from psycopg.waiting import Wait

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from psycopg.abc import PQGen, Query
    from psycopg.pq.abc import PGconn, PGresult

    from daemon.shared.db.psycopg_trio import TrioConnection

__all__ = ["DEFAULT_CHUNK_BYTES", "CopyChunk", "copy_out"]

DEFAULT_CHUNK_BYTES = 256 * 1024

_WAIT_R = Wait.R
_COMMAND_OK = pq.ExecStatus.COMMAND_OK


@attrs.frozen
class CopyChunk:
    """Bytes of COPY output (whole rows) and how many rows (COPY messages) they hold."""

    data: bytes
    messages: int


async def copy_out(
    conn: TrioConnection,
    statement: Query,
    params: Mapping[str, Any] | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> AsyncIterator[CopyChunk]:
    """Run ``statement`` (a ``COPY ... TO STDOUT``) and yield its output in chunks.

    Runs in the connection's current transaction (psycopg opens one when autocommit is
    off). Wrap the iteration in ``contextlib.aclosing()`` when it may be left early.

    Raises:
        psycopg.Error: the statement is not a COPY TO, or the query failed.
    """
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    if params is not None:
        params = {name: _in_utc(value) for name, value in params.items()}
    async with conn.cursor() as cursor, cursor.copy(statement, params):
        # cursor.copy() holds the connection lock for the block: the reads below are
        # this COPY's, as psycopg's own AsyncCopy.read() would do them.
        while True:
            data, messages, done = await conn.wait(_read_chunk(pgconn, chunk_bytes, encoding))
            if data:
                yield CopyChunk(data, messages)
            if done:
                return


def _in_utc(value: Any) -> Any:
    """An aware datetime in UTC; anything else as is.

    COPY takes no bind parameters: psycopg writes them into the statement as literals,
    and an aware datetime keeps its offset there, where PostgreSQL refuses offsets past
    +-15:59 that Python accepts (up to +-23:59). Bound as a parameter, as every other
    query does, the same value travels as UTC microseconds and is accepted.
    """
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def _read_chunk(pgconn: PGconn, limit: int, encoding: str) -> PQGen[tuple[bytes, int, bool]]:
    """Collect COPY rows until they make ``limit`` bytes or the COPY ends (then the
    final result is read and checked: the third value is True). Rows trickling in are
    collected too: one chunk per ``limit`` bytes keeps the cost per byte of the HTTP
    response low."""
    buffer = bytearray()
    messages = 0
    while True:
        nbytes, data = pgconn.get_copy_data(1)  # 1: async, never blocks
        if nbytes > 0:
            buffer += data
            messages += 1
            if len(buffer) >= limit:
                return bytes(buffer), messages, False
        elif nbytes == 0:  # nothing complete in libpq's buffer
            while not (yield _WAIT_R):
                pass
            pgconn.consume_input()
        else:  # -1: the COPY is over
            result = yield from _final_result(pgconn)
            _check(result, encoding)
            return bytes(buffer), messages, True


def _final_result(pgconn: PGconn) -> PQGen[PGresult | None]:
    """Read every result left after the COPY data; return the last one."""
    last = None
    while True:
        while pgconn.is_busy():
            while not (yield _WAIT_R):
                pass
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return last
        last = result


def _check(result: PGresult | None, encoding: str) -> None:
    if result is None:
        raise e.InternalError("COPY ended without a result")
    if result.status != _COMMAND_OK:
        raise e.error_from_result(result, encoding=encoding)
