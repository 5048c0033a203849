-- Queries of the cron/interval scheduler (daemon/queue/schedules.py). Every one is
-- parameterized. A slot fires in one transaction: claim_slot (row lock + fire row),
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
       last_slot, last_fired_at, last_job_id, skipped_through
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
