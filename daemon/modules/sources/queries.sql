-- The sources module's statements (loaded by name, see daemon/shared/db/queries.py).

-- name: insert_source
INSERT INTO sources (name, kind, config, secrets, schedule, enabled, metadata, title_template,
                     max_items_per_poll, max_item_bytes, timeout_seconds)
VALUES (%(name)s, %(kind)s, %(config)s, %(secrets)s, %(schedule)s, %(enabled)s, %(metadata)s,
        %(title_template)s, %(max_items_per_poll)s, %(max_item_bytes)s, %(timeout_seconds)s)
ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING
RETURNING id

-- name: update_source
UPDATE sources
SET name = %(name)s, config = %(config)s, secrets = %(secrets)s, schedule = %(schedule)s,
    enabled = %(enabled)s, metadata = %(metadata)s, title_template = %(title_template)s,
    max_items_per_poll = %(max_items_per_poll)s, max_item_bytes = %(max_item_bytes)s,
    timeout_seconds = %(timeout_seconds)s,
    disabled_reason = CASE WHEN %(enabled)s THEN NULL ELSE disabled_reason END,
    consecutive_failures = CASE WHEN %(enabled)s AND NOT enabled THEN 0
                                ELSE consecutive_failures END,
    next_poll_at = CASE WHEN %(enabled)s AND NOT enabled THEN NULL ELSE next_poll_at END,
    poll_state = CASE WHEN config IS DISTINCT FROM %(config)s THEN '{}'::jsonb
                      ELSE poll_state END,
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL

-- name: name_taken
SELECT EXISTS (SELECT 1 FROM sources
               WHERE name = %(name)s AND deleted_at IS NULL AND id <> %(id)s)

-- name: get_source
SELECT id, name, kind, config, schedule, enabled, metadata, title_template,
       max_items_per_poll, max_item_bytes, timeout_seconds, last_poll_at, last_success_at,
       last_error, consecutive_failures, next_poll_at, disabled_reason, builtin,
       created_at, updated_at, secrets, poll_state
FROM sources WHERE id = %(id)s AND deleted_at IS NULL

-- name: lock_source
SELECT id, name, kind, config, schedule, enabled, metadata, title_template,
       max_items_per_poll, max_item_bytes, timeout_seconds, last_poll_at, last_success_at,
       last_error, consecutive_failures, next_poll_at, disabled_reason, builtin,
       created_at, updated_at, secrets, poll_state
FROM sources WHERE id = %(id)s AND deleted_at IS NULL
FOR UPDATE

-- name: list_sources
SELECT id, name, kind, config, schedule, enabled, metadata, title_template,
       max_items_per_poll, max_item_bytes, timeout_seconds, last_poll_at, last_success_at,
       last_error, consecutive_failures, next_poll_at, disabled_reason, builtin,
       created_at, updated_at, secrets, poll_state
FROM sources
WHERE deleted_at IS NULL AND (%(after)s::bigint IS NULL OR id > %(after)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY id
LIMIT %(limit)s

-- name: delete_source
UPDATE sources
SET deleted_at = now(), enabled = false, disabled_reason = 'deleted', updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL AND NOT builtin
RETURNING id

-- name: set_enabled
UPDATE sources
SET enabled = %(enabled)s,
    disabled_reason = CASE WHEN %(enabled)s THEN NULL ELSE %(reason)s END,
    consecutive_failures = CASE WHEN %(enabled)s THEN 0 ELSE consecutive_failures END,
    next_poll_at = CASE WHEN %(enabled)s THEN NULL ELSE next_poll_at END,
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id

-- name: upload_source_exists
SELECT EXISTS (SELECT 1 FROM sources
               WHERE id = %(id)s AND kind = 'upload' AND deleted_at IS NULL)

-- name: start_poll
INSERT INTO source_polls (source_id, job_id, trigger)
VALUES (%(source_id)s, %(job_id)s, %(trigger)s)
RETURNING id

-- name: count_poll
UPDATE source_polls
SET items_seen = items_seen + %(seen)s, documents_created = documents_created + %(created)s
WHERE id = %(id)s

-- name: finish_poll
UPDATE source_polls
SET finished_at = clock_timestamp(), error = %(error)s,
    duration_ms = 1000 * extract(epoch FROM clock_timestamp() - started_at)
WHERE id = %(id)s

-- name: list_polls
SELECT id, job_id, trigger, started_at, finished_at, items_seen, documents_created, error,
       duration_ms
FROM source_polls
WHERE source_id = %(source_id)s AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s

-- name: known_items
SELECT identity FROM source_items
WHERE source_id = %(source_id)s AND identity = ANY(%(identities)s::text[])

-- name: claim_items
-- The items of a batch not seen before: inserted now (a concurrent poll of the same source
-- waits on our uncommitted rows and then finds them taken).
INSERT INTO source_items (source_id, identity, state)
SELECT %(source_id)s, i.identity, i.state
FROM jsonb_to_recordset(%(items)s::jsonb) AS i(identity text, state jsonb)
ORDER BY i.identity
ON CONFLICT (source_id, identity) DO NOTHING
RETURNING identity

-- name: link_items
UPDATE source_items s SET document_id = l.document_id
FROM jsonb_to_recordset(%(links)s::jsonb) AS l(identity text, document_id bigint)
WHERE s.source_id = %(source_id)s AND s.identity = l.identity

-- name: poll_succeeded
UPDATE sources
SET last_poll_at = now(), last_success_at = now(), last_error = NULL,
    consecutive_failures = 0, next_poll_at = NULL,
    poll_state = coalesce(%(poll_state)s::jsonb, poll_state)
WHERE id = %(id)s

-- name: poll_failed
UPDATE sources
SET last_poll_at = now(), last_error = %(error)s,
    consecutive_failures = consecutive_failures + 1,
    next_poll_at = now() + make_interval(secs => %(backoff)s)
WHERE id = %(id)s
RETURNING consecutive_failures

-- name: disable_failing
UPDATE sources
SET enabled = false, disabled_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s AND enabled
RETURNING id

-- name: source_document_counts
SELECT count(*) FROM documents WHERE source_id = %(id)s
