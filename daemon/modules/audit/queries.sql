-- name: insert_event
INSERT INTO audit_events
    (actor_type, actor_id, action, target_type, target_id, client_addr, request_id, details)
VALUES
    (%(actor_type)s, %(actor_id)s, %(action)s, %(target_type)s, %(target_id)s,
     %(client_addr)s, %(request_id)s, %(details)s)
RETURNING id

-- name: insert_events
-- Many events at once, in the given order ("n"), as one JSON array of rows.
INSERT INTO audit_events
    (actor_type, actor_id, action, target_type, target_id, client_addr, request_id, details)
SELECT e.actor_type::audit_actor, e.actor_id, e.action, e.target_type, e.target_id,
       e.client_addr, e.request_id, coalesce(e.details, '{}')
FROM jsonb_to_recordset(%(events)s::jsonb)
     AS e(n integer, actor_type text, actor_id bigint, action text, target_type text,
          target_id text, client_addr text, request_id text, details jsonb)
ORDER BY e.n

-- name: audit_filter
-- The predicate of an AuditFilter over `audit_events` (every filter left NULL matches
-- everything): shared by the list and the CSV export (audit_filter_sql()).
(%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(action_prefix)s::text IS NULL OR starts_with(action, %(action_prefix)s::text))
  AND (%(actor_type)s::text IS NULL OR actor_type = %(actor_type)s::audit_actor)
  AND (%(actor_id)s::bigint IS NULL OR actor_id = %(actor_id)s::bigint)
  AND (%(target_type)s::text IS NULL OR target_type = %(target_type)s::text)
  AND (%(target_id)s::text IS NULL OR target_id = %(target_id)s::text)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR at < %(until)s::timestamptz)

-- name: list_events
-- Newest first; "filter" is the audit_filter predicate.
SELECT id, at, actor_type::text, actor_id, action, target_type, target_id, client_addr,
       request_id, details
FROM audit_events
WHERE {filter}
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s

-- name: chain_key
SELECT installation_key FROM audit_chain

-- name: latest_checkpoint
SELECT id, at, last_seq, last_event_id, last_hash, key_source, mac
FROM audit_checkpoints ORDER BY id DESC LIMIT 1

-- name: chain_head
SELECT last_seq, last_hash FROM audit_chain

-- name: chain_ends
SELECT min(seq), max(seq), count(*) FROM audit_events

-- name: first_event
SELECT seq, id, prev_hash FROM audit_events ORDER BY seq LIMIT 1

-- name: last_event
SELECT seq, id, hash FROM audit_events ORDER BY seq DESC LIMIT 1

-- name: first_broken_link
-- The first event (by chain position, from %(from_seq)s) whose hash is not the hash of
-- its predecessor's hash and its own content, or whose predecessor is not the event
-- before it (a gap, or a changed prev_hash). Reads in position order in one pass.
SELECT seq, id, intact, linked
FROM (
    SELECT e.seq, e.id,
           e.hash IS NOT DISTINCT FROM sha256(e.prev_hash || audit_event_material(e)) AS intact,
           (lag(e.seq) OVER w IS NULL
            OR (lag(e.seq) OVER w = e.seq - 1
                AND lag(e.hash) OVER w IS NOT DISTINCT FROM e.prev_hash)) AS linked
    FROM audit_events e
    WHERE e.seq >= %(from_seq)s
    WINDOW w AS (ORDER BY e.seq)
) c
WHERE NOT intact OR NOT linked
ORDER BY seq
LIMIT 1

-- name: purge_bound
-- The chain position of the oldest event still within its period: the purge deletes
-- only positions below it (a prefix of the chain), whatever the order of ``at``.
SELECT coalesce(min(seq), (SELECT last_seq + 1 FROM audit_chain))
FROM audit_events WHERE at >= %(cutoff)s

-- name: purge_events
-- The oldest events below %(below_seq)s, at most %(limit)s; the trigger lets a DELETE
-- through only with triaged.audit_purge on (set by the caller, transaction-local).
WITH doomed AS (
    SELECT seq FROM audit_events
    WHERE seq < %(below_seq)s
    ORDER BY seq
    LIMIT %(limit)s
)
DELETE FROM audit_events e USING doomed d
WHERE e.seq = d.seq
RETURNING e.seq, e.id, e.hash

-- name: insert_checkpoint
INSERT INTO audit_checkpoints (last_seq, last_event_id, last_hash, key_source, mac)
VALUES (%(last_seq)s, %(last_event_id)s, %(last_hash)s, %(key_source)s, %(mac)s)

-- name: count_below
SELECT count(*) FROM audit_events WHERE seq < %(below_seq)s

-- name: enable_purge
SELECT set_config('triaged.audit_purge', 'on', true)
