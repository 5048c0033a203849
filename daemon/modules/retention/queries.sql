-- Retention: legal holds, the purge's batches and counts, run reports.
-- Every purge batch deletes at most %(limit)s rows, oldest first, skipping rows another
-- transaction has locked (a document being retried, a hold being placed on it).

-- name: lock_batch
-- Purge batches take this lock shared, hold placement exclusive: a hold committed
-- before a batch starts is seen by that batch's statements.
SELECT pg_advisory_xact_lock_shared(hashtext('triaged.retention'))

-- name: lock_holds
SELECT pg_advisory_xact_lock(hashtext('triaged.retention'))

-- name: batch_timeout
SELECT set_config('statement_timeout', %(ms)s::text, true),
       set_config('lock_timeout', %(ms)s::text, true)

-- name: purge_cases
-- Resolved or closed cases past their period since resolved_at (migration 0011), not
-- held (nor their document). Their events and comments go with them (ON DELETE CASCADE).
WITH doomed AS (
    SELECT c.id FROM cases c
    WHERE c.status IN ('resolved', 'closed')
      AND coalesce(c.resolved_at, c.updated_at) < now() - make_interval(secs => %(period)s)
      AND NOT EXISTS (
          SELECT 1 FROM legal_holds h
          WHERE h.released_at IS NULL AND h.target_type = 'case' AND h.target_id = c.id)
      AND NOT EXISTS (
          SELECT 1 FROM retention_held_documents k WHERE k.document_id = c.document_id)
    ORDER BY c.id
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
DELETE FROM cases c USING doomed WHERE c.id = doomed.id
RETURNING c.id

-- name: purge_documents
-- Documents in %(state)s whose period has passed since they got there, not held, with
-- no case left (an open or unexpired case keeps its document). Their blob, text,
-- analyses, history, hash entry and idempotency keys go with them (ON DELETE CASCADE);
-- duplicates of them lose their duplicate_of link (ON DELETE SET NULL).
WITH doomed AS (
    SELECT d.id FROM documents d
    WHERE d.state = %(state)s::document_state
      AND d.finished_at < now() - make_interval(secs => %(period)s)
      AND NOT EXISTS (SELECT 1 FROM retention_held_documents k WHERE k.document_id = d.id)
      AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.document_id = d.id)
    ORDER BY d.finished_at, d.id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
DELETE FROM documents d USING doomed WHERE d.id = doomed.id
RETURNING d.id

-- name: purge_history
-- State-change events past their period, except those of held documents.
WITH doomed AS (
    SELECT e.id FROM document_events e
    WHERE e.at < now() - make_interval(secs => %(period)s)
      AND NOT EXISTS (
          SELECT 1 FROM retention_held_documents k WHERE k.document_id = e.document_id)
    ORDER BY e.at, e.id
    LIMIT %(limit)s
    FOR UPDATE OF e SKIP LOCKED
)
DELETE FROM document_events e USING doomed WHERE e.id = doomed.id
RETURNING e.id

-- name: due_cases
-- (due, held): what purge_cases would delete now, and what holds keep.
SELECT count(*) FILTER (WHERE NOT held), count(*) FILTER (WHERE held)
FROM (
    SELECT EXISTS (
               SELECT 1 FROM legal_holds h
               WHERE h.released_at IS NULL AND h.target_type = 'case' AND h.target_id = c.id)
           OR EXISTS (
               SELECT 1 FROM retention_held_documents k WHERE k.document_id = c.document_id)
           AS held
    FROM cases c
    WHERE c.status IN ('resolved', 'closed')
      AND coalesce(c.resolved_at, c.updated_at) < now() - make_interval(secs => %(period)s)
) x

-- name: due_documents
-- (due, held, waiting): documents past their period that a run would delete now
-- (counting those whose case the same run deletes first), kept by holds, kept by a case.
WITH expired AS (
    SELECT d.id,
           EXISTS (SELECT 1 FROM retention_held_documents k WHERE k.document_id = d.id) AS held,
           (SELECT c.status IN ('resolved', 'closed')
                   AND coalesce(c.resolved_at, c.updated_at) < now() - make_interval(secs => %(case_period)s)
                   AND NOT EXISTS (
                       SELECT 1 FROM legal_holds h
                       WHERE h.released_at IS NULL AND h.target_type = 'case'
                         AND h.target_id = c.id)
            FROM cases c WHERE c.document_id = d.id) AS case_goes
    FROM documents d
    WHERE d.state = %(state)s::document_state
      AND d.finished_at < now() - make_interval(secs => %(period)s)
)
SELECT count(*) FILTER (WHERE NOT held AND coalesce(case_goes, true)),
       count(*) FILTER (WHERE held),
       count(*) FILTER (WHERE NOT held AND NOT coalesce(case_goes, true))
FROM expired

-- name: due_history
SELECT count(*) FILTER (WHERE NOT held), count(*) FILTER (WHERE held)
FROM (
    SELECT EXISTS (
               SELECT 1 FROM retention_held_documents k WHERE k.document_id = e.document_id)
           AS held
    FROM document_events e
    WHERE e.at < now() - make_interval(secs => %(period)s)
) x

-- name: find_unfinished_run
SELECT id FROM retention_runs
WHERE trigger = 'command' AND finished_at IS NULL
ORDER BY id DESC LIMIT 1

-- name: start_run
-- A job's run: the same row again when the job is retried (it continues the run).
INSERT INTO retention_runs (job_id, trigger) VALUES (%(job_id)s, %(trigger)s)
ON CONFLICT (job_id) DO UPDATE SET finished_at = NULL
RETURNING id

-- name: add_deleted
-- In the batch's own transaction: the counts stay exact across a crash.
UPDATE retention_runs
SET report = report || jsonb_build_object(
        %(kind)s::text,
        coalesce(report -> %(kind)s::text, '{}'::jsonb) || jsonb_build_object(
            'deleted', coalesce((report -> %(kind)s::text ->> 'deleted')::bigint, 0)
                       + %(deleted)s::bigint,
            'seconds', round((coalesce((report -> %(kind)s::text ->> 'seconds')::numeric, 0)
                              + %(seconds)s::numeric), 3)))
WHERE id = %(run_id)s

-- name: finish_run
-- ``kept``: {kind: {"held": n, ...}}, counted at the end of the run, merged into each
-- kind's counts (a kind with no batch gets zeros).
UPDATE retention_runs
SET finished_at = now(),
    report = (SELECT coalesce(jsonb_object_agg(
                  k, coalesce(report -> k, '{"deleted": 0, "seconds": 0}'::jsonb)
                     || (%(kept)s::jsonb -> k)), '{}'::jsonb)
              FROM jsonb_object_keys(%(kept)s::jsonb) AS k)
WHERE id = %(run_id)s
RETURNING id, job_id, trigger, started_at, finished_at, report

-- name: list_runs
SELECT id, job_id, trigger, started_at, finished_at, report
FROM retention_runs
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s

-- name: insert_hold
INSERT INTO legal_holds (target_type, target_id, reason, created_by)
VALUES (%(target_type)s, %(target_id)s, %(reason)s, %(created_by)s)
RETURNING id, target_type, target_id, reason, created_by, created_at, released_at,
          released_by, release_reason

-- name: document_exists
-- FOR KEY SHARE: a delete of the row in flight (an admin's, not under the retention
-- lock) is waited for, and the row is then seen gone; a delete that comes later waits
-- for the hold's commit and its legal-hold trigger sees the hold.
SELECT 1 FROM documents WHERE id = %(id)s FOR KEY SHARE

-- name: case_exists
-- FOR KEY SHARE: as document_exists (a case also goes by its document's cascade).
SELECT 1 FROM cases WHERE id = %(id)s FOR KEY SHARE

-- name: release_hold
UPDATE legal_holds
SET released_at = now(), released_by = %(released_by)s, release_reason = %(reason)s
WHERE id = %(id)s AND released_at IS NULL
RETURNING id, target_type, target_id, reason, created_by, created_at, released_at,
          released_by, release_reason

-- name: get_hold
SELECT id, target_type, target_id, reason, created_by, created_at, released_at,
       released_by, release_reason
FROM legal_holds WHERE id = %(id)s

-- name: list_holds
SELECT id, target_type, target_id, reason, created_by, created_at, released_at,
       released_by, release_reason
FROM legal_holds
WHERE (%(include_released)s OR released_at IS NULL)
  AND (%(target_type)s::text IS NULL OR target_type = %(target_type)s::text)
  AND (%(target_id)s::bigint IS NULL OR target_id = %(target_id)s::bigint)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s
