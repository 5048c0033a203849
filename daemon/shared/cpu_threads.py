"""CPU-heavy calls on a few dedicated threads at a lower OS priority.

``trio.to_thread`` keeps the event loop free of the work, but not of the CPU: on a small
host, a burst of argon2 hashes (each itself several threads) can keep every core busy,
and the event-loop thread then waits its turn like any other, so ``/livez`` and every
request slow down. Threads made here lower their own priority (``nice`` +10, per thread
on Linux; threads they start, such as argon2's lanes, inherit it), so the scheduler runs
the event loop first whenever it has something to do. The work still gets every idle
cycle.

Contract of :meth:`CpuThreads.run`: the call runs exactly once, on one of at most
``threads`` threads, in submission order; its return value or exception is handed back.
A cancelled caller stops waiting at once; a call not started yet is then skipped, one
already running cannot be interrupted: it runs to its end and its result is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio

from daemon.shared.loop_priority import yield_to_foreground

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("triaged.cpu")

T = TypeVar("T")

LOW_PRIORITY_NICE = 10


class CpuThreads:
    """A small pool of low-priority daemon threads, all started on first use; they live
    as long as the process (daemon threads: they never delay its exit)."""

    def __init__(self, threads: int, *, nice: int = LOW_PRIORITY_NICE, name: str = "cpu") -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.nice = nice
        self.name = name
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        await yield_to_foreground()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[outcome.Outcome[T]] = []
        abandoned = False

        def job() -> None:
            if abandoned:  # the caller stopped waiting before a thread was free: skip it
                return
            result.append(outcome.capture(function, *args))
            with contextlib.suppress(trio.RunFinishedError):  # caller's run gone: no one to tell
                token.run_sync_soon(done.set)

        self._submit(job)
        try:
            await done.wait()
        except BaseException:
            abandoned = True
            raise
        return result[0].unwrap()

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if not self._started:
                for number in range(1, self.threads + 1):
                    threading.Thread(
                        target=self._work, name=f"{self.name}-{number}", daemon=True
                    ).start()
                self._started = True  # only once they all run (a failed start retries)
        self._queue.put(job)

    def _work(self) -> None:
        _lower_own_priority(self.nice)
        while True:
            self._queue.get()()


def _lower_own_priority(nice: int) -> None:
    """Raise the calling thread's nice value (Linux: per thread; elsewhere a no-op,
    because ``setpriority`` there would apply to the whole process)."""
    if sys.platform != "linux" or nice <= 0:
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, nice))
    except OSError as exc:
        log.debug("could not lower a worker thread's priority: %s", exc)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and systemd's
    CPUAffinity narrow), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
