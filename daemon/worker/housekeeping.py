"""Periodic clean-ups of the business modules, run by the scheduler group.

Each pass calls the modules' own pruning functions; a failing pass is logged and tried
again at the next interval (they are idempotent, and several processes may run them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import psycopg
import trio

from daemon.modules.auth import AuthPolicy, prune
from daemon.modules.ingestion import prune_idempotency_keys, requeue_stranded
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.housekeeping")

HOUSEKEEPING_INTERVAL_SECONDS = 300.0
FIRST_PASS_DELAY_SECONDS = 30.0  # not in the middle of start-up


class Housekeeping:
    """A Service: every five minutes, prunes expired sessions, idle login-throttle rows
    and document Idempotency-Keys older than a day, and gives stranded documents (in a
    working state with no job for a quarter of an hour) their job back."""

    name = "housekeeping"

    def __init__(
        self,
        pool: Pool,
        policy: AuthPolicy,
        max_attempts: int,
        *,
        interval: float = HOUSEKEEPING_INTERVAL_SECONDS,
        first_delay: float = FIRST_PASS_DELAY_SECONDS,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.max_attempts = max_attempts
        self.interval = interval
        self.first_delay = first_delay
        self._stop = trio.Event()
        self.passes = 0

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with trio.move_on_after(self.first_delay):
            await self._stop.wait()
        while not self._stop.is_set():
            try:
                await prune(self.pool, self.policy)
                await prune_idempotency_keys(self.pool)
                await requeue_stranded(self.pool, max_attempts=self.max_attempts)
            except (psycopg.Error, DatabaseError) as exc:
                log.warning(
                    "housekeeping pass failed: %s", exc, extra={"action": "housekeeping.failed"}
                )
            self.passes += 1
            with trio.move_on_after(self.interval):
                await self._stop.wait()
