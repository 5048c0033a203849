"""GroupCommit: concurrent submissions share writes, each caller gets its own outcome."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.shared.db.group_commit import GroupCommit


class Recorder:
    """A write that records its batches and can be held open by a test."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: trio.Event | None = None
        self.entered = trio.Event()

    async def write(self, items):
        self.batches.append(list(items))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_a_lone_submission_is_written_at_once():
    recorder = Recorder()
    writer = GroupCommit(recorder.write)
    with trio.fail_after(1):
        assert await writer.submit(4) == 40
    assert recorder.batches == [[4]]


async def test_submissions_during_a_write_make_the_next_batch():
    recorder = Recorder()
    recorder.gate = trio.Event()
    writer = GroupCommit(recorder.write)
    results: dict[int, int] = {}

    async def submit(i: int) -> None:
        results[i] = await writer.submit(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, 0)
        await recorder.entered.wait()  # the first batch is being written
        for i in range(1, 6):
            nursery.start_soon(submit, i)
            await trio.testing.wait_all_tasks_blocked()  # each queued in turn
        recorder.gate.set()
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]
    assert results == {i: i * 10 for i in range(6)}


async def test_batches_are_capped_and_every_caller_is_answered():
    recorder = Recorder()
    recorder.gate = trio.Event()
    writer = GroupCommit(recorder.write, max_batch=3)
    results: dict[int, int] = {}

    async def submit(i: int) -> None:
        results[i] = await writer.submit(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, 0)
        await recorder.entered.wait()
        for i in range(1, 8):
            nursery.start_soon(submit, i)
            await trio.testing.wait_all_tasks_blocked()
        recorder.gate.set()
    assert recorder.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert results == {i: i * 10 for i in range(8)}


async def test_each_item_gets_its_own_outcome_and_a_raising_write_fails_the_batch():
    recorder = Recorder()
    writer = GroupCommit(recorder.write)
    with pytest.raises(ValueError, match="bad -1"):
        await writer.submit(-1)
    assert await writer.submit(2) == 20

    async def broken(items):
        raise RuntimeError("database away")

    failing = GroupCommit(broken)
    for _ in range(2):  # a failed write leaves no lead behind: the next caller writes
        with trio.fail_after(1), pytest.raises(RuntimeError, match="database away"):
            await failing.submit(1)


async def test_a_cancelled_waiter_withdraws_its_item_and_the_lead_passes_on():
    recorder = Recorder()
    recorder.gate = trio.Event()
    writer = GroupCommit(recorder.write)
    results: dict[int, int] = {}

    async def submit(i: int) -> None:
        results[i] = await writer.submit(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, 0)
        await recorder.entered.wait()
        with trio.CancelScope() as withdrawn:
            withdrawn.cancel()
            # Cancelled before it could wait: its item must never be written.
            with pytest.raises(trio.Cancelled):
                await writer.submit(99)
        nursery.start_soon(submit, 1)
        await trio.testing.wait_all_tasks_blocked()
        recorder.gate.set()
    assert recorder.batches == [[0], [1]]
    assert results == {0: 0, 1: 10}


async def test_a_caller_cancelled_during_its_write_does_not_interrupt_it():
    recorder = Recorder()
    recorder.gate = trio.Event()
    writer = GroupCommit(recorder.write)
    finished = trio.Event()

    async def leader(scope_box: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_box.append(scope)
            await writer.submit(1)
        finished.set()

    async with trio.open_nursery() as nursery:
        box: list[trio.CancelScope] = []
        nursery.start_soon(leader, box)
        await recorder.entered.wait()
        box[0].cancel()  # the client went away while its batch is being written
        nursery.start_soon(writer.submit, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert not finished.is_set()  # the write is shielded: still in progress
        recorder.gate.set()
    assert recorder.batches == [[1], [2]]
    assert finished.is_set()


async def test_a_batch_stays_within_its_weight_and_a_heavy_item_goes_alone():
    recorder = Recorder()
    recorder.gate = trio.Event()
    writer = GroupCommit(recorder.write, weight=lambda i: i, max_weight=10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.submit, 1)
        await recorder.entered.wait()
        for item in (4, 5, 2, 30, 3):
            nursery.start_soon(writer.submit, item)
            await trio.testing.wait_all_tasks_blocked()
        recorder.gate.set()
    assert recorder.batches == [[1], [4, 5], [2], [30], [3]]
