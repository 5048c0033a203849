"""The poller and scheduler groups of the supervisor.

They take part in start-up and in the drain like any group. Until the queue engine
(``daemon/queue``) is wired in, they hold no work: each starts, then waits for its stop.
"""

from __future__ import annotations

import logging

import trio

log = logging.getLogger("triaged.worker")


class IdleGroup:
    """A group with nothing to run yet; stops as soon as it is asked to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()


def poller_group() -> IdleGroup:
    return IdleGroup("poller")


def scheduler_group() -> IdleGroup:
    return IdleGroup("scheduler")
