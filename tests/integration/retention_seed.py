"""A seeded population for the retention tests (by SQL, for speed), and the rules it
was seeded with, restated independently of the purge's SQL so a test can say which rows
must be gone.

Document ``i`` (ids 1..n, in order):

* state by ``i % 10``: 0-5 completed, 6-7 failed, 8 duplicate (of ``i - 1``), 9 still
  being worked on (analyzed: never purged);
* finished 400 days ago when ``i % 7 < 4`` (past every default period), else 10 days ago
  (within every period);
* a blob, a text, one history event (at its finish time or now), a hash entry (not for
  duplicates), an analysis when completed;
* a case (with an event and a comment) when completed and ``i % 3 == 0``: resolved
  400 days ago when ``i % 2 == 0``, else open;
* a document hold when ``i % 97 == 0``; a case hold on the case of ``i`` when
  ``i % 101 == 0`` (and it has one).
"""

from __future__ import annotations

from collections import Counter

import attrs

SEED = """
INSERT INTO documents (id, title, state, sha256, duplicate_of, finished_at, created_at,
                       updated_at, completed_at)
OVERRIDING SYSTEM VALUE
SELECT i, 'doc ' || i,
       (CASE WHEN i % 10 <= 5 THEN 'completed' WHEN i % 10 <= 7 THEN 'failed'
             WHEN i % 10 = 8 THEN 'duplicate' ELSE 'analyzed' END)::document_state,
       sha256(convert_to('content ' || CASE WHEN i % 10 = 8 THEN i - 1 ELSE i END, 'UTF8')),
       CASE WHEN i % 10 = 8 THEN i - 1 END,
       now() - make_interval(days => CASE WHEN i % 7 < 4 THEN 400 ELSE 10 END),
       now() - interval '500 days', now(), NULL
FROM generate_series(1, %(n)s) AS i;
SELECT setval(pg_get_serial_sequence('documents', 'id'), %(n)s);
INSERT INTO document_blobs (document_id, data)
SELECT id, convert_to(title, 'UTF8') FROM documents;
INSERT INTO document_texts (document_id, extracted) SELECT id, title FROM documents;
INSERT INTO document_events (document_id, at, to_state)
SELECT id, coalesce(finished_at, now()), state FROM documents;
INSERT INTO document_hashes (sha256, document_id)
SELECT sha256, id FROM documents WHERE state <> 'duplicate';
INSERT INTO analyses (document_id, category, severity, summary, confidence, provider,
                      model, version, latency_ms, calls)
SELECT id, 'other', 'low', 's', 0.5, 'heuristic', 'm', 'v', 1, 1
FROM documents WHERE state = 'completed';
INSERT INTO cases (document_id, severity, status, resolved_at)
SELECT id, 'low',
       (CASE WHEN id % 2 = 0 THEN 'resolved' ELSE 'open' END)::case_status,
       CASE WHEN id % 2 = 0 THEN now() - interval '400 days' END
FROM documents WHERE state = 'completed' AND id % 3 = 0;
INSERT INTO case_events (case_id, kind, actor) SELECT id, 'opened', 'system' FROM cases;
INSERT INTO case_comments (case_id, author, body) SELECT id, 'system', 'note' FROM cases;
INSERT INTO legal_holds (target_type, target_id, reason)
SELECT 'document', id, 'seeded' FROM documents WHERE id % 97 = 0;
INSERT INTO legal_holds (target_type, target_id, reason)
SELECT 'case', c.id, 'seeded' FROM cases c WHERE c.document_id % 101 = 0;
ANALYZE documents; ANALYZE cases; ANALYZE document_events; ANALYZE legal_holds;
"""


def state(i: int) -> str:
    r = i % 10
    return "completed" if r <= 5 else "failed" if r <= 7 else "duplicate" if r == 8 else "analyzed"


KIND_OF_STATE = {
    "completed": "completed_documents",
    "failed": "failed_documents",
    "duplicate": "duplicate_documents",
}


@attrs.frozen
class Expected:
    gone: frozenset[int]  # documents a run must delete
    cases_gone: frozenset[int]  # documents whose case a run must delete
    deleted: dict[str, int]  # per kind
    held: dict[str, int]  # per kind: expired but kept by holds


def held_documents(n: int, *, released: frozenset[int] = frozenset()) -> set[int]:
    """The documents holds keep: held ones, those of held cases, originals of held
    duplicates."""
    ids = range(1, n + 1)
    has_case = {i for i in ids if state(i) == "completed" and i % 3 == 0}
    doc_hold = {i for i in ids if i % 97 == 0} - released
    case_hold = {i for i in has_case if i % 101 == 0} - released
    return doc_hold | case_hold | {i - 1 for i in doc_hold if state(i) == "duplicate"}


def expected(n: int, *, released: frozenset[int] = frozenset()) -> Expected:
    """What one run deletes from the seeded population (holds on the documents in
    ``released`` released, whatever their type)."""
    ids = range(1, n + 1)
    has_case = {i for i in ids if state(i) == "completed" and i % 3 == 0}
    case_expired = {i for i in has_case if i % 2 == 0}
    held_docs = held_documents(n, released=released)
    case_goes = {i for i in case_expired if i not in held_docs}
    gone: set[int] = set()
    deleted: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for i in ids:
        if state(i) == "analyzed" or i % 7 >= 4:
            continue
        kind = KIND_OF_STATE[state(i)]
        if i in held_docs:
            held[kind] += 1
        elif i not in has_case or i in case_goes:
            gone.add(i)
            deleted[kind] += 1
    deleted["resolved_cases"] = len(case_goes)
    held["resolved_cases"] = len(case_expired & held_docs)
    return Expected(
        gone=frozenset(gone),
        cases_gone=frozenset(case_goes),
        deleted=dict(deleted),
        held=dict(held),
    )


async def seed(pool, n: int) -> None:
    """Seed ``n`` documents (see the module docstring) in one transaction."""
    async with pool.transaction() as conn:
        for statement in SEED.replace("%(n)s", str(int(n))).split(";\n"):
            if statement.strip():
                await conn.execute(statement)
