"""CPU-bound pure functions in a few worker processes, so the event loop keeps its GIL.

Threads keep CPU work off the event loop's *task*, not off its *interpreter*: a thread
running Python code (or a regular expression, or ``unicodedata``, which hold the GIL
for their whole call) makes the loop wait for the GIL each time it wakes, up to the
switch interval and often longer, so every request and probe waits behind the work
(measured in ``bench/README.md``; the decision in ``docs/adr/0006``). Work run here has
an interpreter of its own.

Contract of :meth:`CpuProcesses.run`: ``function`` (importable by name: a module-level
function) runs exactly once with ``args`` in one of at most ``processes`` worker
processes; arguments and result travel pickled (so do exceptions, traceback included).
A cancelled caller stops waiting at once: the worker running its call is killed and a
new one replaces it on the next call. A worker that dies (killed, out of memory) fails
the call running in it with :class:`~daemon.shared.errors.CpuWorkerLost`; the next call
gets a new worker. Call from the event loop of the main thread (``trio-parallel``
configures its workers from there).

Workers (``trio-parallel``'s, started with ``spawn``: nothing of the daemon's state,
its sockets or its threads is inherited) start on first use and stop after
``IDLE_TIMEOUT`` seconds without work, or with the daemon. They run at a lower OS
priority (``nice`` +10, as the CPU threads), so the scheduler runs the event loop first
on a busy host; and they ignore SIGINT and SIGTERM (a terminal's Ctrl-C and systemd's
stop reach the whole process group or cgroup), so the daemon alone decides when they
end: it closes their pipes when it exits, and a worker whose daemon died exits too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import trio
import trio_parallel

from daemon.shared.errors import CpuWorkerLost
from daemon.shared.loop_priority import yield_to_foreground

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

IDLE_TIMEOUT = 600.0  # seconds an idle worker waits for work before it exits
LOW_PRIORITY_NICE = 10

_configure_lock = threading.Lock()
_configured = False


class CpuProcesses:
    """At most ``processes`` worker processes, shared by everything in this process that
    hands CPU work to this object (one per process: built by the composition root)."""

    def __init__(self, processes: int, *, nice: int = LOW_PRIORITY_NICE) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.processes = processes
        self.nice = nice
        self._limiter = trio.CapacityLimiter(processes)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        await yield_to_foreground()
        _configure_workers(self.nice)
        try:
            return await trio_parallel.run_sync(
                function, *args, limiter=self._limiter, kill_on_cancel=True
            )
        except trio_parallel.BrokenWorkerError as exc:
            raise CpuWorkerLost(f"a CPU worker process died during the call: {exc}") from None


def _configure_workers(nice: int) -> None:
    """Set up ``trio-parallel``'s process-wide workers once (first call wins)."""
    global _configured
    with _configure_lock:
        if not _configured:
            trio_parallel.configure_default_context(
                idle_timeout=IDLE_TIMEOUT, init=_WorkerInit(nice)
            )
            _configured = True


class _WorkerInit:
    """Run first in each worker process (pickled by reference: keep it module-level)."""

    def __init__(self, nice: int) -> None:
        self.nice = nice

    def __call__(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.nice > 0:
            with contextlib.suppress(OSError):  # not permitted: the daemon's priority
                os.nice(self.nice)
