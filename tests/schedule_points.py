"""Counting a task's schedule points, for tests that assert when something happens in
the passes of Trio's run loop (not in wall time)."""

from __future__ import annotations

import trio


class StepsOf(trio.abc.Instrument):
    """Counts the steps of one task that ended: each is a schedule point it took. Add it
    with ``trio.lowlevel.add_instrument`` for the span to count."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task, self.ended = task, 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.ended += 1
