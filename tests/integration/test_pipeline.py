"""The eight steps on a real database, run by hand: each advances exactly once, a
redelivered (or concurrent) job changes nothing, failures are kept with their step."""

from __future__ import annotations

import psycopg
import pytest
import trio

from daemon.composition import compose, pipeline_config
from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import (
    DocumentState,
    IntakeWriter,
    NewDocument,
    Pipeline,
    document_details,
    receive_document,
)
from daemon.modules.ingestion.states import STEPS, step_named
from daemon.shared.config import Settings
from daemon.shared.cpu_processes import CpuProcesses
from daemon.shared.cpu_threads import CpuThreads
from daemon.shared.errors import CpuWorkerLost

SYSTEM = AuditContext.system()
INCIDENT = (
    "Ransomware attack detected on the mail gateway. Attackers exploited CVE-2024-3400 "
    "and exfiltrated credentials. Contact security@example.org, ticket INC-4711."
)


CPU = CpuThreads(2, name="test-ingest")


def pipeline(pool, **settings) -> Pipeline:
    return Pipeline(pool, pipeline_config(compose(Settings(**settings), cpu=CPU)))


async def new_document(pool, text=INCIDENT, **fields) -> int:
    receipt = await receive_document(
        IntakeWriter(pool),
        NewDocument(title=fields.pop("title", "incident"), content=text.encode(), **fields),
        context=SYSTEM,
        max_bytes=1 << 20,
        max_attempts=5,
    )
    return receipt.id


async def jobs(pool, document_id):
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT queue, state::text FROM jobs WHERE payload->>'document_id' = %s "
                "ORDER BY id",
                (str(document_id),),
            )
        ).fetchall()
    return [(q, s) for q, s in rows]


async def state_of(pool, document_id) -> str:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT state::text FROM documents WHERE id = %s", (document_id,))
        ).fetchone()
    return row[0]


async def test_every_step_advances_once_and_a_redelivery_changes_nothing(pool):
    runner = pipeline(pool)
    document_id = await new_document(pool)
    assert await jobs(pool, document_id) == [("ingest.fetch", "created")]
    for index, step in enumerate(STEPS):
        first = await runner.run_step(step, document_id)
        assert (first.outcome, first.state) == ("advanced", step.to_state.value), step.name
        after_first = (await state_of(pool, document_id), await jobs(pool, document_id))
        again = await runner.run_step(step, document_id)
        assert again.outcome == "skipped", step.name
        assert (await state_of(pool, document_id), await jobs(pool, document_id)) == after_first
        queued = [q for q, _ in after_first[1]]
        expected = ["ingest.fetch"] + [s.queue for s in STEPS[1 : index + 2]]
        assert queued == expected, step.name  # exactly one job per next step
    async with pool.connection() as conn:
        details = await document_details(conn, document_id)
    assert details.document.state is DocumentState.COMPLETED
    assert [e.to_state for e in details.history] == [
        "received", "fetched", "hashed", "extracted", "normalized", "analyzed", "routed",
        "completed",
    ]  # fmt: skip
    assert len(details.analyses) == 1
    analysis = details.analyses[0]
    assert (analysis.category, analysis.severity) == ("security", "critical")
    assert analysis.provider == "heuristic" and analysis.calls >= 1
    assert details.case is not None and details.case.severity == "critical"
    assert details.case.sla_due_at is not None
    assert details.document.retain_until is not None and details.document.language == "en"


async def test_concurrent_deliveries_of_one_step_analyse_once(pool):
    runner = pipeline(pool)
    document_id = await new_document(pool)
    for step in STEPS[:4]:
        await runner.run_step(step, document_id)
    analyze = step_named("analyze")
    results = []

    async def deliver():
        results.append(await runner.run_step(analyze, document_id))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(deliver)
    assert sorted(r.outcome for r in results) == ["advanced"] + ["skipped"] * 4
    async with pool.connection() as conn:
        count = await (
            await conn.execute(
                "SELECT count(*) FROM analyses WHERE document_id = %s", (document_id,)
            )
        ).fetchone()
    assert count[0] == 1
    assert [q for q, _ in await jobs(pool, document_id)].count("ingest.route") == 1


async def test_identical_content_is_a_duplicate_of_the_first(pool):
    runner = pipeline(pool)
    first, second = await new_document(pool), await new_document(pool, title="again")
    for document_id in (first, second):
        for step in STEPS[:2]:
            await runner.run_step(step, document_id)
    assert await state_of(pool, first) == "hashed"
    assert await state_of(pool, second) == "duplicate"
    async with pool.connection() as conn:
        details = await document_details(conn, second)
    assert details.document.duplicate_of == first
    assert details.history[-1].detail["duplicate_of"] == first
    assert [q for q, _ in await jobs(pool, second)] == ["ingest.fetch", "ingest.hash"]


async def test_permanent_failures_keep_step_and_reason(pool):
    runner = pipeline(pool)
    receipt = await receive_document(
        IntakeWriter(pool),
        NewDocument(
            title="bad pdf",
            content=b"%PDF-1.4 this is not really a pdf",
            media_type="application/pdf",
        ),
        context=SYSTEM,
        max_bytes=1 << 20,
        max_attempts=5,
    )
    results = [await runner.run_step(step, receipt.id) for step in STEPS[:3]]
    assert [r.outcome for r in results] == ["advanced", "advanced", "failed"]
    async with pool.connection() as conn:
        details = await document_details(conn, receipt.id)
    assert details.document.state is DocumentState.FAILED
    assert details.document.failed_step == "extract"
    assert "pdf" in details.document.error.lower()
    assert details.history[-1].to_state == "failed"


async def test_a_step_out_of_attempts_fails_its_document(pool):
    runner = pipeline(pool)
    document_id = await new_document(pool)
    result = await runner.give_up(
        {
            "job_id": 1,
            "queue": "ingest.fetch",
            "payload": {"document_id": document_id},
            "attempts": 5,
            "error": "ConnectError: connection refused",
        }
    )
    assert result.outcome == "failed"
    async with pool.connection() as conn:
        details = await document_details(conn, document_id)
    assert details.document.failed_step == "fetch"
    assert details.document.error == "gave up after 5 attempt(s): ConnectError: connection refused"
    again = await runner.give_up({"queue": "ingest.fetch", "payload": {"document_id": document_id}})
    assert again.outcome == "skipped"


async def test_a_reupload_takes_over_from_a_failed_original(pool):
    runner = pipeline(pool)
    first, second = await new_document(pool), await new_document(pool, title="again")
    for step in STEPS[:2]:
        await runner.run_step(step, first)
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE documents SET state = 'failed', failed_step = 'analyze' WHERE id = %s",
            (first,),
        )
    for step in STEPS[:2]:
        await runner.run_step(step, second)
    assert await state_of(pool, second) == "hashed", "not a duplicate of a failed document"
    third = await new_document(pool, title="third")
    for step in STEPS[:2]:
        await runner.run_step(step, third)
    async with pool.connection() as conn:
        details = await document_details(conn, third)
    assert details.document.state is DocumentState.DUPLICATE
    assert details.document.duplicate_of == second


async def test_stranded_documents_get_their_job_back(pool):
    from daemon.modules.ingestion import requeue_stranded

    runner = pipeline(pool)
    document_id = await new_document(pool)
    await runner.run_step(STEPS[0], document_id)  # fetched; the hash job is queued
    async with pool.transaction() as conn:
        await conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = now()")
        await conn.execute(
            "UPDATE documents SET updated_at = now() - interval '1 hour' WHERE id = %s",
            (document_id,),
        )
    fresh = await new_document(pool, text="A recent document with its job.")
    assert await requeue_stranded(pool, max_attempts=5) == 1
    assert await requeue_stranded(pool, max_attempts=5) == 0  # it has a job now
    live = [(q, s) for q, s in await jobs(pool, document_id) if s == "created"]
    assert live == [("ingest.hash", "created")]
    assert [(q, s) for q, s in await jobs(pool, fresh)] == [("ingest.fetch", "created")]
    for step in STEPS[1:]:
        await runner.run_step(step, document_id)
    assert await state_of(pool, document_id) == "completed"


async def test_a_malformed_analyzer_choice_fails_permanently(pool):
    from daemon.queue import PermanentFailure

    runner = pipeline(pool)
    document_id = await new_document(pool)
    for step in STEPS[:4]:
        await runner.run_step(step, document_id)
    for choice in ("x", {"provider": 5}, {"provider": "openai"}):
        with pytest.raises(PermanentFailure):
            await runner.run_step(step_named("analyze"), document_id, {"analyzer": choice})
    assert await state_of(pool, document_id) == "normalized"


async def test_a_batch_moves_each_document_on_once_and_fails_only_the_bad_ones(pool):
    runner = pipeline(pool)
    good = [await new_document(pool, text=f"{INCIDENT} Copy {i}.") for i in range(5)]
    twins = [await new_document(pool, text="The same words twice.") for _ in range(2)]
    empty = await new_document(pool, text="", title="empty")
    corrupt = (
        await receive_document(
            IntakeWriter(pool),
            NewDocument(title="bad", content=b"%PDF-1.4 not a pdf", media_type="application/pdf"),
            context=SYSTEM,
            max_bytes=1 << 20,
            max_attempts=5,
        )
    ).id
    everyone = [*good, *twins, empty, corrupt]
    results = await runner.run_batch(STEPS[0], {i: {} for i in everyone})
    assert {r.state for r in results.values()} == {"fetched"}
    # One batch of the hash step: the twins are claimed together, the first given wins.
    results = await runner.run_batch(STEPS[1], {i: {} for i in everyone})
    assert results[twins[0]].state == "hashed" and results[twins[1]].state == "duplicate"
    assert results[empty].outcome == "failed" and "empty" in results[empty].error
    assert all(results[i].state == "hashed" for i in good)
    async with pool.connection() as conn:
        details = await document_details(conn, twins[1])
    assert details.document.duplicate_of == twins[0]
    # A redelivered batch (the same jobs again) changes nothing.
    again = await runner.run_batch(STEPS[1], {i: {} for i in everyone})
    assert {r.outcome for r in again.values()} == {"skipped"}
    moving = [*good, twins[0], corrupt]
    for step in STEPS[2:]:
        results = await runner.run_batch(step, {i: {} for i in moving})
        if step.name == "extract":
            assert results[corrupt].outcome == "failed"
            moving.remove(corrupt)
        assert all(results[i].outcome == "advanced" for i in moving), step.name
    for document_id in moving:
        queued = [q for q, _ in await jobs(pool, document_id)]
        assert queued == [s.queue for s in STEPS], document_id  # one job per step
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT d.id, d.state::text, count(a.id) FROM documents d "
                "LEFT JOIN analyses a ON a.document_id = d.id WHERE d.id = ANY(%s) "
                "GROUP BY d.id, d.state",
                (everyone,),
            )
        ).fetchall()
    states = {row[0]: (row[1], row[2]) for row in rows}
    assert all(states[i] == ("completed", 1) for i in moving)
    assert states[twins[1]] == ("duplicate", 0)
    assert states[empty] == ("failed", 0) and states[corrupt] == ("failed", 0)


async def test_a_value_the_database_refuses_costs_only_its_own_document(pool):
    runner = pipeline(pool)
    fine = [await new_document(pool, text=f"Fine text number {i}.") for i in range(3)]
    refused = await new_document(pool, text="refuse me")
    everyone = [*fine, refused]
    for step in STEPS[:2]:
        await runner.run_batch(step, {i: {} for i in everyone})
    async with pool.transaction() as conn:  # a real constraint, refusing one text
        await conn.execute(
            "ALTER TABLE document_texts ADD CONSTRAINT test_refuse CHECK (extracted <> 'refuse me')"
        )
    try:
        results = await runner.run_batch(step_named("extract"), {i: {} for i in everyone})
    finally:
        async with pool.transaction() as conn:
            await conn.execute("ALTER TABLE document_texts DROP CONSTRAINT test_refuse")
    assert all(results[i].state == "extracted" for i in fine)
    assert isinstance(results[refused], psycopg.errors.CheckViolation)  # its job retries
    assert await state_of(pool, refused) == "hashed"


class CountingThreads(CpuThreads):
    """CPU threads that count the calls given to them."""

    def __init__(self) -> None:
        super().__init__(1, name="test-counted")
        self.calls: list[str] = []

    async def run(self, function, *args):
        self.calls.append(function.__name__)
        return await super().run(function, *args)


class CountingProcesses(CpuProcesses):
    """CPU worker processes that count the calls given to them."""

    def __init__(self) -> None:
        super().__init__(1)
        self.calls: list[str] = []

    async def run(self, function, *args):
        self.calls.append(function.__name__)
        return await super().run(function, *args)


async def test_the_steps_compute_on_the_cpu_pools_they_are_given(pool):
    cpu, processes = CountingThreads(), CountingProcesses()
    runner = Pipeline(pool, pipeline_config(compose(Settings(), cpu=cpu, processes=processes)))
    document_ids = [await new_document(pool, text=f"outage number {n}") for n in range(3)]
    for step in STEPS[:5]:
        await runner.run_batch(step, {i: {} for i in document_ids})
    # hashing (which releases the GIL) on the threads; the work that holds the GIL in
    # the worker processes, one call per batch; none on a hidden pool of the modules
    assert cpu.calls == ["sha256_digests"]
    assert processes.calls == ["extract_all", "normalize_all", "heuristic_analyses"]
    assert {await state_of(pool, i) for i in document_ids} == {"analyzed"}


async def test_a_document_with_neither_content_nor_url_fails_at_fetch(pool):
    runner = pipeline(pool)
    document_id = await new_document(pool)
    async with pool.transaction() as conn:
        await conn.execute("DELETE FROM document_blobs WHERE document_id = %s", (document_id,))
    result = await runner.run_step(STEPS[0], document_id)
    assert result.outcome == "failed"
    assert result.error == "the document has neither content nor a URL"
    assert await state_of(pool, document_id) == "failed"


class DyingProcesses(CpuProcesses):
    """Worker processes where a call with ``poisoned`` among its documents loses its worker,
    as a document that exhausts a worker's memory would."""

    def __init__(self, poisoned: int) -> None:
        super().__init__(1)
        self.poisoned = poisoned
        self.calls: list[list[int]] = []

    async def run(self, function, *args):
        self.calls.append(sorted(args[0]))
        if self.poisoned in args[0]:
            raise CpuWorkerLost("a CPU worker process died during the call")
        return await super().run(function, *args)


async def test_a_worker_lost_on_a_batch_costs_only_the_document_that_caused_it(pool):
    everyone = [await new_document(pool, text=f"outage {n}") for n in range(4)]
    poisoned = everyone[2]
    processes = DyingProcesses(poisoned)
    runner = Pipeline(pool, pipeline_config(compose(Settings(), cpu=CPU, processes=processes)))
    for step in STEPS[:2]:  # fetch, hash
        await runner.run_batch(step, {i: {} for i in everyone})
    results = await runner.run_batch(step_named("extract"), {i: {} for i in everyone})
    # the batch, then each document alone: only the poisoned one keeps the error (its job
    # retries, with backoff, and fails the document once its attempts run out)
    assert processes.calls == [sorted(everyone), *[[i] for i in everyone]]
    assert isinstance(results[poisoned], CpuWorkerLost)
    assert await state_of(pool, poisoned) == "hashed"
    assert {await state_of(pool, i) for i in everyone if i != poisoned} == {"extracted"}
