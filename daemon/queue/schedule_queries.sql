-- Queries of the cron/interval scheduler (daemon/queue/schedule_store.py, the only
-- module running them). Every one is parameterized. A slot fires in one transaction: claim_slot (row lock + fire row),
-- the job's INSERT, record_fire.

-- name: upsert_schedule
-- Defines or redefines a schedule. active_since moves to now() only when the timing
-- changes or a disabled schedule is enabled: re-running the same definition (a deploy
-- script) keeps the missed slots that the catch-up window still allows.
INSERT INTO schedules AS s (name, cron, interval_seconds, timezone, queue, payload, enabled)
VALUES (%(name)s, %(cron)s, %(interval)s, %(timezone)s, %(queue)s, %(payload)s, %(enabled)s)
ON CONFLICT (name) DO UPDATE SET
    cron = excluded.cron,
    interval_seconds = excluded.interval_seconds,
    timezone = excluded.timezone,
    queue = excluded.queue,
    payload = excluded.payload,
    enabled = excluded.enabled,
    active_since = CASE
        WHEN (s.cron, s.interval_seconds, s.timezone)
             IS DISTINCT FROM (excluded.cron, excluded.interval_seconds, excluded.timezone)
          OR (excluded.enabled AND NOT s.enabled)
        THEN now() ELSE s.active_since END,
    updated_at = now()
RETURNING (xmax = 0) AS created

-- name: set_enabled
-- Enabling a disabled schedule starts it afresh: the slots it missed while disabled
-- never fire.
UPDATE schedules
SET enabled = %(enabled)s,
    active_since = CASE WHEN %(enabled)s AND NOT enabled THEN now() ELSE active_since END,
    updated_at = now()
WHERE name = %(name)s
RETURNING name

-- name: delete_schedule
-- Its schedule_fires rows go with it (ON DELETE CASCADE); jobs it enqueued stay.
DELETE FROM schedules WHERE name = %(name)s RETURNING name

-- name: list_schedules
SELECT name, cron, interval_seconds, timezone, queue, payload, enabled, active_since,
       last_slot, last_fired_at, last_job_id, skipped_through, declared, retired_at
FROM schedules
WHERE enabled OR NOT %(enabled_only)s
ORDER BY name

-- name: lock_schedule
-- The schedule's current state, its row locked until the transaction ends: fires and
-- skips of one schedule are serialized across processes.
SELECT enabled, active_since, greatest(last_slot, skipped_through, active_since) AS handled
FROM schedules WHERE name = %(name)s
FOR UPDATE

-- name: claim_slot
-- Locks the schedule row, then records the fire of %(slot)s if the schedule is enabled,
-- still has the definition the slot was computed from (active_since), and has neither
-- fired nor skipped this slot or a later one. The fire row's key is a second guard.
-- One row (no row: the schedule was deleted); fired = the caller must enqueue.
WITH s AS (
    SELECT name, enabled, active_since, queue, payload,
           greatest(last_slot, skipped_through, active_since) AS handled
    FROM schedules WHERE name = %(name)s
    FOR UPDATE
),
fire AS (
    INSERT INTO schedule_fires (schedule, slot)
    SELECT name, %(slot)s FROM s
    WHERE enabled AND active_since = %(active_since)s AND handled < %(slot)s
    ON CONFLICT DO NOTHING
    RETURNING slot
)
SELECT s.enabled, s.active_since, s.queue, s.payload, EXISTS (SELECT 1 FROM fire) AS fired
FROM s

-- name: record_fire
WITH fire AS (
    UPDATE schedule_fires SET job_id = %(job_id)s
    WHERE schedule = %(name)s AND slot = %(slot)s
)
UPDATE schedules
SET last_slot = %(slot)s, last_fired_at = now(), last_job_id = %(job_id)s
WHERE name = %(name)s

-- name: record_skip
UPDATE schedules SET skipped_through = %(through)s WHERE name = %(name)s

-- name: try_prune_lock
SELECT pg_try_advisory_xact_lock(hashtextextended('triaged.queue.schedule_fires', 0))

-- name: prune_fires
-- One batch of fire records older than %(keep_seconds)s. They are a record only: a slot
-- at or before the schedule's last_slot never fires again, pruned or not.
DELETE FROM schedule_fires WHERE (schedule, slot) IN (
    SELECT schedule, slot FROM schedule_fires
    WHERE fired_at < now() - make_interval(secs => %(keep_seconds)s)
    LIMIT %(limit)s
)

-- name: lock_declared_sync
-- Serializes the syncs of declared schedules (processes starting together) until the
-- transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('triaged.queue.declared_schedules', 0))

-- name: declared_rows
-- The rows a sync may touch: those declared before, and any row holding a name the code
-- declares now (an operator's, which the sync then leaves alone). Locked until commit.
SELECT name, declared, cron, interval_seconds, timezone, queue, payload,
       declared_cron, declared_interval_seconds, declared_timezone, retired_at
FROM schedules
WHERE declared OR name = ANY(%(names)s::text[])
ORDER BY name
FOR UPDATE

-- name: insert_declared
INSERT INTO schedules (name, cron, interval_seconds, timezone, queue, payload, enabled,
                       declared, declared_cron, declared_interval_seconds, declared_timezone)
VALUES (%(name)s, %(cron)s, %(interval)s, %(timezone)s, %(queue)s, %(payload)s, %(enabled)s,
        true, %(cron)s, %(interval)s, %(timezone)s)

-- name: update_declared
-- The code's queue and payload; the timing the caller decided (the code's, or the
-- operator's kept); the code's timing recorded as the last declared. A retired schedule
-- declared again gets back the enabled flag it had when retired (or keeps an operator's
-- enabling since). Slots restart from now when the timing changes or it is re-enabled.
UPDATE schedules AS s
SET queue = %(queue)s,
    payload = %(payload)s,
    cron = %(cron)s,
    interval_seconds = %(interval)s,
    timezone = %(timezone)s,
    declared_cron = %(declared_cron)s,
    declared_interval_seconds = %(declared_interval)s,
    declared_timezone = %(declared_timezone)s,
    enabled = CASE WHEN s.retired_at IS NULL THEN s.enabled
                   ELSE s.enabled OR coalesce(s.enabled_when_retired, false) END,
    active_since = CASE
        WHEN (s.cron, s.interval_seconds, s.timezone)
             IS DISTINCT FROM (%(cron)s::text, %(interval)s::double precision, %(timezone)s::text)
          OR (s.retired_at IS NOT NULL AND NOT s.enabled AND coalesce(s.enabled_when_retired, false))
        THEN now() ELSE s.active_since END,
    retired_at = NULL,
    enabled_when_retired = NULL,
    updated_at = now()
WHERE name = %(name)s AND declared

-- name: retire_declared
-- Disables declared schedules the code no longer declares, once (an operator may enable
-- one again; a later sync leaves it so). Returns those retired by this statement.
UPDATE schedules
SET enabled = false,
    enabled_when_retired = enabled,
    retired_at = now(),
    updated_at = now()
WHERE declared AND retired_at IS NULL AND name = ANY(%(names)s::text[])
RETURNING name
