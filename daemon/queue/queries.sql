-- Queries of the job queue engine. Every one is parameterized; job state changes of a
-- claimed job are fenced by its lease token, so a worker that lost its lease (the job
-- was rescued and may run elsewhere) can never complete, fail or release it.

-- name: insert_job
WITH inserted AS (
    INSERT INTO jobs (queue, payload, priority, run_at, max_attempts, backoff_base_seconds,
                      backoff_max_seconds, timeout_seconds, dedup_key)
    VALUES (
        %(queue)s, %(payload)s, %(priority)s, coalesce(%(run_at)s, now()),
        coalesce(%(max_attempts)s, (SELECT max_attempts FROM queues WHERE name = %(queue)s),
                 queue_default_max_attempts()),
        %(backoff_base)s, %(backoff_max)s, %(timeout)s, %(dedup_key)s
    )
    ON CONFLICT (queue, dedup_key)
        WHERE dedup_key IS NOT NULL AND state IN ('created', 'retry', 'active')
        DO NOTHING
    RETURNING id, run_at <= now() AS due
)
SELECT id, true AS created, CASE WHEN due THEN pg_notify(queue_notify_channel(), %(queue)s) END
FROM inserted
UNION ALL
SELECT id, false, NULL FROM jobs
WHERE queue = %(queue)s AND dedup_key = %(dedup_key)s
  AND state IN ('created', 'retry', 'active')
  AND NOT EXISTS (SELECT 1 FROM inserted)

-- name: insert_jobs
-- Bulk insert from parallel arrays (one element per job). Jobs whose dedup key is
-- already live are skipped; RETURNING gives the ids of the jobs created, in order.
INSERT INTO jobs (queue, payload, priority, run_at, max_attempts, backoff_base_seconds,
                  backoff_max_seconds, timeout_seconds, dedup_key)
SELECT v.queue, v.payload, v.priority, coalesce(v.run_at, now()),
       coalesce(v.max_attempts, q.max_attempts, queue_default_max_attempts()),
       v.backoff_base, v.backoff_max, v.timeout, v.dedup_key
FROM unnest(
    %(queues)s::text[], %(payloads)s::jsonb[], %(priorities)s::integer[],
    %(run_ats)s::timestamptz[], %(max_attempts)s::integer[], %(backoff_bases)s::float8[],
    %(backoff_maxes)s::float8[], %(timeouts)s::float8[], %(dedup_keys)s::text[]
) WITH ORDINALITY AS v(queue, payload, priority, run_at, max_attempts, backoff_base,
                       backoff_max, timeout, dedup_key, ord)
LEFT JOIN queues q ON q.name = v.queue
ORDER BY v.ord
ON CONFLICT (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('created', 'retry', 'active')
    DO NOTHING
RETURNING id

-- name: insert_jobs_plain
-- insert_jobs for a few jobs without dedup keys: one round trip, the NOTIFY included
-- (PostgreSQL folds repeated notifications of a transaction into one). The jobs come as
-- one JSON array (encoded in C; psycopg's array parameters cost a Python call per
-- element), each with its position "n".
WITH inserted AS (
    INSERT INTO jobs (queue, payload, priority, run_at, max_attempts, backoff_base_seconds,
                      backoff_max_seconds, timeout_seconds)
    SELECT v.queue, v.payload, coalesce(v.priority, 0), coalesce(v.run_at, now()),
           coalesce(v.max_attempts, q.max_attempts, queue_default_max_attempts()),
           v.backoff_base, v.backoff_max,
           v.timeout
    FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS v(n integer, queue text, payload jsonb, priority integer, run_at timestamptz,
             max_attempts integer, backoff_base float8, backoff_max float8, timeout float8)
    LEFT JOIN queues q ON q.name = v.queue
    ORDER BY v.n
    RETURNING id, queue, run_at
)
SELECT id, CASE WHEN run_at <= now() THEN pg_notify(queue_notify_channel(), queue) END
FROM inserted ORDER BY id

-- name: prepare_copy_jobs
-- One round trip before a COPY: %(count)s ids reserved from the sequence (in order),
-- the transaction's now() for jobs without run_at, and the default max_attempts of each
-- of %(queues)s (its policy's, else queue_default_max_attempts()). (The sequence is resolved once, behind OFFSET 0: resolving its
-- name per row made reserving 10,000 ids take 45 ms instead of 6.)
SELECT array(SELECT nextval(s.seq)
             FROM (SELECT pg_get_serial_sequence('jobs', 'id')::regclass AS seq OFFSET 0) s,
                  generate_series(1, %(count)s)),
       now(),
       (SELECT jsonb_object_agg(u.name, coalesce(q.max_attempts, queue_default_max_attempts()))
        FROM unnest(%(queues)s::text[]) AS u(name) LEFT JOIN queues q ON q.name = u.name)

-- name: copy_jobs
COPY jobs (id, queue, payload, priority, run_at, max_attempts, backoff_base_seconds,
           backoff_max_seconds, timeout_seconds) FROM STDIN

-- name: notify_channel
SELECT queue_notify_channel()

-- name: notify_queues
SELECT pg_notify(queue_notify_channel(), q) FROM unnest(%(queues)s::text[]) AS q

-- name: claim
-- Claims at most %(limit)s available jobs of one queue (fewer when the queue is paused
-- or its global cap leaves less room), leasing them with %(token)s.
WITH policy AS (
    SELECT coalesce(bool_or(q.paused), false) AS paused, min(q.global_concurrency) AS cap
    FROM queues q WHERE q.name = %(queue)s
),
async_commit AS (
    -- The claim's commit need not wait for its WAL flush: a claim lost in a server crash
    -- only makes its jobs claimable again (the old worker is fenced out by its token), so
    -- at-least-once holds. Local to the claim's transaction; policy has exactly one row,
    -- so the join below always evaluates it.
    SELECT set_config('synchronous_commit', 'off', true)
),
room AS (
    SELECT CASE
        WHEN policy.paused THEN 0
        WHEN policy.cap IS NULL THEN %(limit)s
        ELSE least(%(limit)s, greatest(0, policy.cap - (
            SELECT count(*) FROM jobs WHERE queue = %(queue)s AND state = 'active')))
    END AS n
    FROM policy CROSS JOIN async_commit
),
picked AS (
    SELECT id FROM jobs
    WHERE queue = %(queue)s AND state IN ('created', 'retry') AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT (SELECT n FROM room)
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET state = 'active', attempts = j.attempts + 1, started_at = now(),
    lease_token = %(token)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
    worker = %(worker)s
-- = ANY(ARRAY(...)), not a join with picked: the planner cannot know how many rows the
-- LIMIT lets through and, joining, chose a hash join over a scan of the whole table
-- (3.6 ms instead of 0.45 ms per claim of 10 jobs from 20,000).
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.payload, j.priority, j.attempts, j.max_attempts, j.timeout_seconds,
          j.backoff_base_seconds, j.backoff_max_seconds, j.created_at, j.run_at, j.started_at

-- name: due_queues
-- Which of %(queues)s have a job to claim now (not paused): one probe of jobs_available
-- per queue, in one statement, in place of an empty claim per queue.
SELECT q.name
FROM unnest(%(queues)s::text[]) AS q(name)
WHERE EXISTS (
    SELECT 1 FROM jobs j
    WHERE j.queue = q.name AND j.state IN ('created', 'retry') AND j.run_at <= now()
)
AND NOT EXISTS (SELECT 1 FROM queues p WHERE p.name = q.name AND p.paused)

-- name: lock_queue_claims
-- Serializes claims of a queue that has a global cap, so the count of active jobs that
-- the cap is checked against cannot be stale (taken before the claim, in its transaction).
SELECT pg_advisory_xact_lock(hashtextextended('triaged.queue.' || %(queue)s, 0))

-- name: queue_policy
SELECT paused, global_concurrency, max_attempts, backoff_base_seconds, backoff_max_seconds,
       timeout_seconds, dead_letter_queue, retain_completed_seconds, retain_failed_seconds
FROM queues WHERE name = %(queue)s

-- name: ensure_queue
INSERT INTO queues (name) VALUES (%(queue)s) ON CONFLICT (name) DO NOTHING

-- name: complete_jobs
UPDATE jobs j
SET state = 'completed', result = v.result::jsonb, finished_at = now(),
    lease_token = NULL, lease_expires_at = NULL
FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(id bigint, token uuid, result text)
WHERE j.id = v.id AND j.lease_token = v.token AND j.state = 'active'
  AND j.id = ANY(%(ids)s::bigint[])  -- primary-key lookups, whatever the statistics say
RETURNING j.id

-- name: fail_job
-- An attempt failed: back to 'retry' after %(delay)s seconds, or 'failed' when the
-- attempts are spent or the failure is permanent.
UPDATE jobs j
SET state = CASE WHEN %(permanent)s OR j.attempts >= j.max_attempts
                 THEN 'failed'::job_state ELSE 'retry'::job_state END,
    run_at = CASE WHEN %(permanent)s OR j.attempts >= j.max_attempts
                  THEN j.run_at ELSE now() + make_interval(secs => %(delay)s) END,
    finished_at = CASE WHEN %(permanent)s OR j.attempts >= j.max_attempts THEN now() END,
    last_error = %(error)s, lease_token = NULL, lease_expires_at = NULL
WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.state = 'active'
RETURNING j.state::text, j.queue

-- name: snooze_job
-- RetryLater: run again after %(delay)s seconds; the attempt is given back.
UPDATE jobs j
SET state = CASE WHEN j.attempts > 1 THEN 'retry'::job_state ELSE 'created'::job_state END,
    attempts = j.attempts - 1, run_at = now() + make_interval(secs => %(delay)s),
    started_at = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.state = 'active'
RETURNING j.queue

-- name: release_jobs
-- Drain: give claimed jobs back, available now, without spending their attempt.
UPDATE jobs j
SET state = CASE WHEN j.attempts > 1 THEN 'retry'::job_state ELSE 'created'::job_state END,
    attempts = j.attempts - 1, run_at = now(), started_at = NULL,
    lease_token = NULL, lease_expires_at = NULL
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS v(id, token)
WHERE j.id = v.id AND j.lease_token = v.token AND j.state = 'active'
  AND j.id = ANY(%(ids)s::bigint[])
RETURNING j.id, j.queue

-- name: renew_leases
UPDATE jobs j
SET lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS v(id, token)
WHERE j.id = v.id AND j.lease_token = v.token AND j.state = 'active'
  AND j.id = ANY(%(ids)s::bigint[])
RETURNING j.id, j.lease_token

-- name: dead_letter
-- Copies failed jobs whose queue has a dead-letter queue into it.
INSERT INTO jobs (queue, payload, max_attempts, dead_letter_of)
SELECT q.dead_letter_queue,
       jsonb_build_object('job_id', j.id, 'queue', j.queue, 'payload', j.payload,
                          'attempts', j.attempts, 'error', j.last_error),
       coalesce(dq.max_attempts, queue_default_max_attempts()), j.id
FROM jobs j
JOIN queues q ON q.name = j.queue AND q.dead_letter_queue IS NOT NULL
LEFT JOIN queues dq ON dq.name = q.dead_letter_queue
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.state = 'failed'
RETURNING id, queue

-- name: rescue_expired
-- Jobs whose lease expired (their worker died or hung): the attempt counts.
UPDATE jobs j
SET state = CASE WHEN j.attempts >= j.max_attempts
                 THEN 'failed'::job_state ELSE 'retry'::job_state END,
    finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
    run_at = now(),
    last_error = 'lease expired: worker ' || coalesce(j.worker, '?') || ' stopped renewing it',
    lease_token = NULL, lease_expires_at = NULL
WHERE j.id IN (
    SELECT id FROM jobs
    WHERE state = 'active' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.queue, j.state::text, j.attempts

-- name: try_maintenance_lock
SELECT pg_try_advisory_xact_lock(hashtextextended('triaged.queue.maintenance', 0))

-- name: shortest_retention
-- The shortest retention in force for finished jobs of %(state)s (seconds).
SELECT least(%(default_seconds)s::float8, min(
    CASE WHEN %(state)s = 'completed' THEN retain_completed_seconds
         ELSE retain_failed_seconds END))
FROM queues

-- name: purge_finished
-- Retention: deletes one batch of finished jobs older than their queue's period.
-- %(cutoff)s (now minus the shortest period in force) bounds finished_at by a constant,
-- so the scan is an index range over jobs_finished, not the whole table; the exact
-- per-queue check follows.
DELETE FROM jobs WHERE id IN (
    SELECT j.id FROM jobs j
    LEFT JOIN queues q ON q.name = j.queue
    WHERE j.state = %(state)s::job_state
      AND j.finished_at < %(cutoff)s
      AND j.finished_at < now() - make_interval(secs => coalesce(
          CASE WHEN j.state = 'completed' THEN q.retain_completed_seconds
               ELSE q.retain_failed_seconds END,
          %(default_seconds)s))
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
)

-- name: get_job
SELECT id, queue, state::text, payload, priority, run_at, attempts, max_attempts,
       timeout_seconds, dedup_key, worker, last_error, result, dead_letter_of,
       created_at, started_at, finished_at, lease_expires_at
FROM jobs WHERE id = %(id)s

-- name: list_jobs
SELECT id, queue, state::text, payload, priority, run_at, attempts, max_attempts,
       timeout_seconds, dedup_key, worker, last_error, result, dead_letter_of,
       created_at, started_at, finished_at, lease_expires_at
FROM jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::job_state)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s

-- name: set_paused
INSERT INTO queues (name, paused) VALUES (%(queue)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = now()

-- name: admin_cancel_job
-- Cancels a live job; its state before, or no row (unknown id, or already finished). An
-- active job's lease is dropped: its worker loses it at the next heartbeat, and any
-- outcome it still reports is fenced out.
WITH target AS (SELECT id, state FROM jobs WHERE id = %(id)s FOR UPDATE)
UPDATE jobs j
SET state = 'cancelled', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
FROM target
WHERE j.id = target.id AND target.state IN ('created', 'retry', 'active')
RETURNING target.state::text

-- name: job_state
SELECT state::text FROM jobs WHERE id = %(id)s

-- name: configure_queue
-- Upsert of a queue's policy: a psycopg.sql template whose three fields are filled in by
-- admin.configure_queue with column identifiers and named placeholders only (the given
-- fields: the others keep their value, or their default in a new row).
INSERT INTO queues (name{columns}) VALUES (%(name)s{values})
ON CONFLICT (name) DO UPDATE SET updated_at = now(){updates}
RETURNING paused, global_concurrency, max_attempts, backoff_base_seconds,
          backoff_max_seconds, timeout_seconds, dead_letter_queue,
          retain_completed_seconds, retain_failed_seconds

-- name: queue_stats
-- Every queue that has jobs or a policy row: jobs per state, the age of the oldest job
-- that is due and waiting, and the policy (NULLs where the queue has no row).
WITH counts AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'created') AS created,
           count(*) FILTER (WHERE state = 'retry') AS retry,
           count(*) FILTER (WHERE state = 'active') AS active,
           count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           min(run_at) FILTER (WHERE state IN ('created', 'retry') AND run_at <= now())
               AS oldest_due
    FROM jobs
    GROUP BY queue
)
SELECT coalesce(q.name, c.queue), q.name IS NOT NULL,
       coalesce(c.created, 0), coalesce(c.retry, 0), coalesce(c.active, 0),
       coalesce(c.completed, 0), coalesce(c.cancelled, 0), coalesce(c.failed, 0),
       extract(epoch FROM now() - c.oldest_due)::float8,
       coalesce(q.paused, false), q.global_concurrency,
       coalesce(q.max_attempts, queue_default_max_attempts()),
       q.backoff_base_seconds, q.backoff_max_seconds, q.timeout_seconds,
       q.dead_letter_queue, q.retain_completed_seconds, q.retain_failed_seconds
FROM queues q
FULL JOIN counts c ON c.queue = q.name
ORDER BY 1

-- name: admin_retry_job
-- Operator retry of a failed or cancelled job: runs again now with fresh attempts;
-- skipped (no row) when another live job of its queue holds its dedup key.
UPDATE jobs j
SET state = 'created', attempts = 0, run_at = now(), finished_at = NULL, started_at = NULL
WHERE j.id = %(id)s AND j.state IN ('failed', 'cancelled')
  AND NOT EXISTS (
      SELECT 1 FROM jobs live
      WHERE j.dedup_key IS NOT NULL AND live.queue = j.queue AND live.dedup_key = j.dedup_key
        AND live.state IN ('created', 'retry', 'active'))
RETURNING j.id, j.queue

-- name: insert_job_plain
-- insert_job for a job without a dedup key: no conflict to handle, so no CTE and no
-- lookup branch (measured: about a tenth more single enqueues per second).
INSERT INTO jobs (queue, payload, priority, run_at, max_attempts, backoff_base_seconds,
                  backoff_max_seconds, timeout_seconds)
VALUES (
    %(queue)s, %(payload)s, %(priority)s, coalesce(%(run_at)s, now()),
    coalesce(%(max_attempts)s, (SELECT max_attempts FROM queues WHERE name = %(queue)s),
             queue_default_max_attempts()),
    %(backoff_base)s, %(backoff_max)s, %(timeout)s
)
RETURNING id, true, CASE WHEN run_at <= now() THEN pg_notify(queue_notify_channel(), %(queue)s) END
