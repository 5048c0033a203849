"""CPU worker processes: another interpreter, results and errors, priority, signals,
bounds, cancellation, a dead worker."""

from __future__ import annotations

import os
import signal
import time

import pytest
import trio

from daemon.modules.ingestion.errors import ContentTooLarge
from daemon.shared.cpu_processes import CpuProcesses
from daemon.shared.errors import CpuWorkerLost

# One pool for the module: the workers are process-wide and start once (~0.5 s each).
POOL = CpuProcesses(2)


def whoami() -> tuple[int, int]:
    return os.getpid(), os.getpriority(os.PRIO_PROCESS, 0)


def too_large(limit: int) -> None:
    raise ContentTooLarge(limit)


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def signal_self(signum: int) -> int:
    os.kill(os.getpid(), signum)
    time.sleep(0.2)  # a signal not ignored would have ended the process by now
    return os.getpid()


def die() -> None:
    os._exit(3)


async def test_work_runs_in_another_process_at_lower_priority():
    pid, nice = await POOL.run(whoami)
    assert pid != os.getpid()
    assert nice >= os.getpriority(os.PRIO_PROCESS, 0) + 10 or nice == 19


async def test_results_and_daemon_errors_come_back_whole():
    assert await POOL.run(sum, [1, 2, 3]) == 6
    with pytest.raises(ContentTooLarge) as caught:
        await POOL.run(too_large, 100)
    assert caught.value.limit == 100
    assert caught.value.message == "the document is larger than 100 bytes"


async def test_workers_ignore_the_signals_a_stop_sends_to_the_whole_group():
    # systemd's stop reaches every process of the unit; Ctrl-C the terminal's group:
    # the daemon alone decides when its workers end
    # (a worker the signal ended would fail the call with BrokenWorkerError)
    for signum in (signal.SIGTERM, signal.SIGINT):
        assert await POOL.run(signal_self, signum) != os.getpid()


async def test_at_most_n_calls_run_at_once():
    pids: list[int] = []

    async def one() -> None:
        pids.append(await POOL.run(sleep_then_pid, 0.5))

    await POOL.run(whoami)  # both workers warm: their start is not timed
    await POOL.run(whoami)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
    elapsed = trio.current_time() - started
    assert elapsed >= 0.95  # four calls of 0.5 s on two workers: two rounds
    assert len(pids) == 4 and os.getpid() not in pids


async def test_a_cancelled_caller_stops_waiting_at_once_and_the_pool_goes_on():
    started = trio.current_time()
    with trio.move_on_after(0.3) as scope:
        await POOL.run(sleep_then_pid, 30)
    assert scope.cancelled_caught and trio.current_time() - started < 10
    assert await POOL.run(sum, [2, 2]) == 4


async def test_a_worker_that_dies_fails_its_call_and_the_next_call_gets_a_new_one():
    with pytest.raises(CpuWorkerLost):
        await POOL.run(die)
    assert await POOL.run(sum, [1, 1]) == 2
