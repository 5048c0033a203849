-- Cases: a document that needs a human.

-- name: open_cases
-- One case per document: a reanalysis that routes again keeps the case it has. Many
-- documents at once, as one JSON array of rows.
INSERT INTO cases (document_id, analysis_id, severity, sla_due_at, assignee, tags, reason)
SELECT c.document_id, c.analysis_id, c.severity, c.sla_due_at, c.assignee,
       coalesce(c.tags, '{}'), c.reason
FROM jsonb_to_recordset(%(cases)s::jsonb)
     AS c(document_id bigint, analysis_id bigint, severity text, sla_due_at timestamptz,
          assignee text, tags text[], reason text)
ORDER BY c.document_id
ON CONFLICT (document_id) DO NOTHING
RETURNING document_id, id

-- name: get_case
SELECT c.id, c.document_id, c.analysis_id, c.status::text, c.severity, c.sla_due_at,
       c.assignee, c.tags, c.reason, c.created_at, c.updated_at, d.title
FROM cases c JOIN documents d ON d.id = c.document_id
WHERE c.id = %(id)s

-- name: case_of_document
SELECT c.id, c.document_id, c.analysis_id, c.status::text, c.severity, c.sla_due_at,
       c.assignee, c.tags, c.reason, c.created_at, c.updated_at, d.title
FROM cases c JOIN documents d ON d.id = c.document_id
WHERE c.document_id = %(document_id)s

-- name: case_filter
-- The predicate of a CaseFilter over `cases c JOIN documents d` (every filter left NULL
-- matches everything): shared by the list and the CSV export (case_filter_sql()).
(%(status)s::text IS NULL OR c.status = %(status)s::case_status)
  AND (%(severity)s::text IS NULL OR c.severity = %(severity)s)
  AND (%(assignee)s::text IS NULL OR c.assignee = %(assignee)s)

-- name: list_cases
-- Newest first; "filter" is the case_filter predicate.
SELECT c.id, c.document_id, c.analysis_id, c.status::text, c.severity, c.sla_due_at,
       c.assignee, c.tags, c.reason, c.created_at, c.updated_at, d.title
FROM cases c JOIN documents d ON d.id = c.document_id
WHERE {filter}
  AND (%(before_id)s::bigint IS NULL OR c.id < %(before_id)s)
ORDER BY c.id DESC
LIMIT %(limit)s
