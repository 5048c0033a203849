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
