"""Low-priority CPU threads: results, errors, priority, bounds, cancellation."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import trio

from daemon.shared.cpu_threads import CpuThreads


async def test_results_and_errors_come_back():
    pool = CpuThreads(2)
    assert await pool.run(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await pool.run(lambda: 1 / 0)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux only")
async def test_threads_run_at_lower_priority_than_the_loop():
    pool = CpuThreads(1)

    def nice() -> tuple[int, str]:
        return os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()
        ), threading.current_thread().name

    value, name = await pool.run(nice)
    assert value >= 10 and name == "cpu-1"
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 10, "the loop is untouched"


async def test_at_most_n_calls_at_once():
    pool = CpuThreads(2)
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(pool.run, work)
    assert peak == 2


async def test_a_cancelled_caller_stops_waiting_and_the_pool_goes_on():
    pool = CpuThreads(1)
    with trio.move_on_after(0.05) as scope:
        await pool.run(time.sleep, 0.3)
    assert scope.cancelled_caught
    assert await pool.run(lambda: "next") == "next"
