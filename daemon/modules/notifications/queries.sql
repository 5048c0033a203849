-- Notifications and escalation.

-- name: insert_channel
INSERT INTO notification_channels (name, kind, config, secret, events, min_severity, enabled)
VALUES (%(name)s, %(kind)s, %(config)s, %(secret)s, %(events)s, %(min_severity)s, %(enabled)s)
ON CONFLICT (name) DO NOTHING
RETURNING id, name, kind, config, secret IS NOT NULL, events, min_severity, enabled,
          created_at, updated_at

-- name: update_channel
UPDATE notification_channels
SET name = %(name)s, config = %(config)s, secret = %(secret)s, events = %(events)s,
    min_severity = %(min_severity)s, enabled = %(enabled)s, updated_at = now()
WHERE id = %(id)s
RETURNING id, name, kind, config, secret IS NOT NULL, events, min_severity, enabled,
          created_at, updated_at

-- name: channel_secret
SELECT secret FROM notification_channels WHERE id = %(id)s FOR UPDATE

-- name: name_taken
SELECT EXISTS (SELECT 1 FROM notification_channels WHERE name = %(name)s AND id <> %(id)s)

-- name: get_channel
SELECT id, name, kind, config, secret IS NOT NULL, events, min_severity, enabled,
       created_at, updated_at
FROM notification_channels WHERE id = %(id)s

-- name: list_channels
SELECT id, name, kind, config, secret IS NOT NULL, events, min_severity, enabled,
       created_at, updated_at
FROM notification_channels
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s

-- name: delete_channel
DELETE FROM notification_channels WHERE id = %(id)s RETURNING id

-- name: channel_for_send
SELECT id, name, kind, config, secret FROM notification_channels WHERE id = %(id)s

-- name: delivery_to_send
-- One delivery with what its message needs (None: its channel or case is gone).
SELECT nd.id::text, nd.status, nd.attempts, nd.event_id, nd.event_kind, nd.case_id,
       ch.id, ch.name, ch.kind, ch.config, ch.secret,
       e.actor, e.at, e.detail,
       c.severity, c.status::text, c.escalation_level, c.sla_due_at, d.title
FROM notification_deliveries nd
JOIN notification_channels ch ON ch.id = nd.channel_id
JOIN case_events e ON e.id = nd.event_id
JOIN cases c ON c.id = nd.case_id
JOIN documents d ON d.id = c.document_id
WHERE nd.id = %(id)s::uuid

-- name: finish_delivery
-- Mark a pending delivery delivered or failed; no row: it was finished already.
UPDATE notification_deliveries
SET status = %(status)s, attempts = attempts + 1, last_error = %(error)s, finished_at = now()
WHERE id = %(id)s::uuid AND status = 'pending'
RETURNING case_id

-- name: note_attempt
UPDATE notification_deliveries
SET attempts = attempts + 1, last_error = %(error)s
WHERE id = %(id)s::uuid AND status = 'pending'
RETURNING attempts

-- name: due_cases
-- The escalation check's batch: open cases whose next step is due (cases_escalation_due),
-- locked; those another check holds are skipped. NO KEY UPDATE: the check changes no key,
-- so rows that only reference the case (events, deliveries) do not make it skip one.
SELECT id, severity, escalation_level, escalation_due_at, now()
FROM cases
WHERE escalation_due_at <= now() AND status = 'open'
ORDER BY escalation_due_at
LIMIT %(limit)s
FOR NO KEY UPDATE SKIP LOCKED

-- name: ladder_cycle
SELECT count(*)::integer FROM case_events WHERE case_id = %(case_id)s AND kind = 'reopened'

-- name: claim_level
INSERT INTO case_escalations (case_id, cycle, level)
VALUES (%(case_id)s, %(cycle)s, %(level)s)
ON CONFLICT DO NOTHING
RETURNING level

-- name: note_level_event
UPDATE case_escalations SET event_id = %(event_id)s
WHERE case_id = %(case_id)s AND cycle = %(cycle)s AND level = %(level)s

-- name: assignee_by_email
SELECT id FROM users
WHERE lower(email) = lower(%(email)s) AND active AND role IN ('admin', 'analyst')

-- name: move_ladder
UPDATE cases
SET escalation_level = %(level)s, escalation_due_at = %(next_due_at)s
WHERE id = %(case_id)s

-- name: reassign
UPDATE cases SET assignee = %(label)s, assignee_user_id = %(user_id)s WHERE id = %(case_id)s

-- name: escalation_counts
SELECT c.severity, e.level, count(*)
FROM case_escalations e JOIN cases c ON c.id = e.case_id
GROUP BY c.severity, e.level

-- name: delivery_counts
SELECT ch.kind, nd.status, count(*)
FROM notification_deliveries nd JOIN notification_channels ch ON ch.id = nd.channel_id
GROUP BY ch.kind, nd.status
