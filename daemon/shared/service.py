"""The shape of a supervised group: started with ``nursery.start``, stopped on request."""

from __future__ import annotations

from typing import Protocol

import trio


class Service(Protocol):
    """A long-lived part of the process (the http, poller or scheduler group).

    Contract: ``run`` calls ``task_status.started()`` once it is serving, and returns on
    its own after ``request_stop()`` once its in-flight work is done. ``request_stop`` is
    idempotent and safe before ``run`` started. If the supervisor's deadline passes first,
    ``run`` is cancelled; it must then release what it holds (shielded) and return.
    """

    name: str

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    def request_stop(self) -> None: ...
