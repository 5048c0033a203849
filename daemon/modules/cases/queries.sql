-- Cases: a document that needs a human.

-- name: open_cases
-- One case per document: a reanalysis that routes again keeps the case it has. Many
-- documents at once, as one JSON array of rows. The assignee user is the routing label's
-- user when it is the email of an active analyst or admin. Each new case gets its
-- 'opened' event and its escalation ladder starts at its SLA deadline.
WITH input AS (
    SELECT c.document_id, c.analysis_id, c.severity, c.sla_due_at, c.assignee,
           coalesce(c.tags, '{}') AS tags, c.reason, c.category
    FROM jsonb_to_recordset(%(cases)s::jsonb)
         AS c(document_id bigint, analysis_id bigint, severity text, sla_due_at timestamptz,
              assignee text, tags text[], reason text, category text)
), opened AS (
    INSERT INTO cases (document_id, analysis_id, severity, sla_due_at, assignee, tags, reason,
                       category, assignee_user_id, escalation_due_at)
    SELECT i.document_id, i.analysis_id, i.severity, i.sla_due_at, i.assignee, i.tags,
           i.reason, i.category,
           (SELECT u.id FROM users u
            WHERE i.assignee IS NOT NULL AND lower(u.email) = lower(i.assignee)
              AND u.active AND u.role IN ('admin', 'analyst')),
           i.sla_due_at
    FROM input i
    ORDER BY i.document_id
    ON CONFLICT (document_id) DO NOTHING
    RETURNING id, document_id, severity, sla_due_at, assignee_user_id, category
), events AS (
    INSERT INTO case_events (case_id, kind, actor, detail)
    SELECT o.id, 'opened', 'system',
           jsonb_build_object('severity', o.severity, 'sla_due_at', o.sla_due_at,
                              'category', o.category, 'assignee_user_id', o.assignee_user_id)
    FROM opened o
    ORDER BY o.id
)
SELECT document_id, id FROM opened

-- name: raise_case_severity
-- A reanalysis that routes a document with a case not yet resolved to a higher severity
-- raises the case's severity, and its deadline to the earlier of the one it has and the
-- new severity's; the ladder's next step too while no level has fired yet. A lower or
-- equal severity changes nothing (never lowered silently). Records 'severity_raised'.
WITH input AS (
    SELECT c.document_id, c.analysis_id, c.severity, c.sla_due_at, c.category
    FROM jsonb_to_recordset(%(cases)s::jsonb)
         AS c(document_id bigint, analysis_id bigint, severity text, sla_due_at timestamptz,
              category text)
), raised AS (
    UPDATE cases c
    SET severity = i.severity,
        analysis_id = i.analysis_id,
        category = i.category,
        sla_due_at = least(c.sla_due_at, i.sla_due_at),
        escalation_due_at = CASE
            WHEN c.escalation_due_at IS NOT NULL AND c.escalation_level = 0
            THEN least(c.escalation_due_at, i.sla_due_at)
            ELSE c.escalation_due_at END
    FROM input i, cases o
    WHERE c.document_id = i.document_id AND o.id = c.id
      AND c.status IN ('open', 'acknowledged')
      AND array_position(ARRAY['low', 'medium', 'high', 'critical'], i.severity)
        > coalesce(array_position(ARRAY['low', 'medium', 'high', 'critical'], c.severity), 0)
    RETURNING c.id, o.severity AS old_severity, c.severity, o.sla_due_at AS old_due,
              c.sla_due_at
), events AS (
    INSERT INTO case_events (case_id, kind, actor, detail)
    SELECT r.id, 'severity_raised', 'system',
           jsonb_build_object('from', r.old_severity, 'to', r.severity,
                              'sla_due_at_before', r.old_due, 'sla_due_at', r.sla_due_at)
    FROM raised r
    ORDER BY r.id
)
SELECT id FROM raised

-- name: record_case_event
INSERT INTO case_events (case_id, kind, actor, detail)
VALUES (%(case_id)s, %(kind)s, %(actor)s, %(detail)s)
RETURNING id, at

-- name: get_case
SELECT c.id, c.document_id, c.analysis_id, c.status::text, c.severity, c.sla_due_at,
       c.assignee, c.tags, c.reason, c.created_at, c.updated_at, d.title,
       c.version, c.assignee_user_id, c.resolution, c.resolution_note, c.acknowledged_at,
       c.resolved_at, c.category, c.escalation_level, c.escalation_due_at
FROM cases c JOIN documents d ON d.id = c.document_id
WHERE c.id = %(id)s

-- name: case_of_document
SELECT c.id, c.document_id, c.analysis_id, c.status::text, c.severity, c.sla_due_at,
       c.assignee, c.tags, c.reason, c.created_at, c.updated_at, d.title,
       c.version, c.assignee_user_id, c.resolution, c.resolution_note, c.acknowledged_at,
       c.resolved_at, c.category, c.escalation_level, c.escalation_due_at
FROM cases c JOIN documents d ON d.id = c.document_id
WHERE c.document_id = %(document_id)s

-- name: update_case_work
-- One lifecycle change, only if the case is still at the version it was read at (the
-- If-Match check is this WHERE, not a read before the write). The trigger bumps version.
UPDATE cases
SET status = %(status)s::case_status,
    assignee_user_id = %(assignee_user_id)s,
    resolution = %(resolution)s,
    resolution_note = %(resolution_note)s,
    acknowledged_at = %(acknowledged_at)s,
    resolved_at = %(resolved_at)s,
    escalation_level = %(escalation_level)s,
    escalation_due_at = %(escalation_due_at)s
WHERE id = %(id)s AND version = %(version)s
RETURNING version

-- name: assignable_user
SELECT role::text, active FROM users WHERE id = %(id)s

-- name: add_comment
INSERT INTO case_comments (case_id, author_user_id, author, body)
VALUES (%(case_id)s, %(author_user_id)s, %(author)s, %(body)s)
RETURNING id, case_id, author_user_id, author, body, created_at

-- name: list_comments
SELECT id, case_id, author_user_id, author, body, created_at
FROM case_comments
WHERE case_id = %(case_id)s AND (%(after_id)s::bigint IS NULL OR id > %(after_id)s)
ORDER BY id
LIMIT %(limit)s

-- name: list_case_events
SELECT id, case_id, kind, actor, at, detail
FROM case_events
WHERE case_id = %(case_id)s AND (%(after_id)s::bigint IS NULL OR id > %(after_id)s)
ORDER BY id
LIMIT %(limit)s

-- name: case_counts
-- Cases not resolved, by status, severity and escalation level; and how many are open
-- past their deadline. For the metrics scrape.
SELECT status::text, severity, escalation_level, count(*),
       count(*) FILTER (WHERE status = 'open' AND sla_due_at < now())
FROM cases
WHERE status IN ('open', 'acknowledged')
GROUP BY 1, 2, 3

-- name: time_to_acknowledge
-- Seconds from opening to acknowledgement of every acknowledged case, bucketed by the
-- histogram's upper bounds (bucket i: bounds[i-1] < s <= bounds[i]; past the last: +Inf).
SELECT b.bucket, count(*), sum(b.seconds)
FROM (
    SELECT extract(epoch FROM c.acknowledged_at - c.created_at)::float8 AS seconds,
           coalesce(array_position(
               array(SELECT x >= extract(epoch FROM c.acknowledged_at - c.created_at)
                     FROM unnest(%(bounds)s::float8[]) AS x),
               true), cardinality(%(bounds)s::float8[]) + 1) - 1 AS bucket
    FROM cases c
    WHERE c.acknowledged_at IS NOT NULL
) b
GROUP BY b.bucket
