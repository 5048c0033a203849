-- Case work (issue 14): the case lifecycle open -> acknowledged -> resolved (reopen back
-- to open), an assignee who is a user, a resolution with a note, comments, an append-only
-- history of events, and the escalation ladder's position and next due time.
--
-- cases.assignee (text) stays what it was: the routing rules' assignee label (a team or
-- an address). The assignee who works the case is assignee_user_id; routing sets it when
-- its label is the email of an active analyst or admin.

ALTER TABLE cases
    ADD COLUMN version             integer NOT NULL DEFAULT 1,   -- the ETag; bumped by every update
    ADD COLUMN assignee_user_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN resolution          text,
    ADD COLUMN resolution_note     text,
    ADD COLUMN acknowledged_at     timestamptz,
    ADD COLUMN resolved_at         timestamptz,
    ADD COLUMN category            text,
    ADD COLUMN escalation_level    integer NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    -- When the next escalation step is due: the SLA deadline while open and not
    -- acknowledged, then each next level's time; NULL once acknowledged or resolved (the
    -- ladder stops) and set again on reopen (it restarts).
    ADD COLUMN escalation_due_at   timestamptz;

-- Every update of a case bumps its version (the If-Match / ETag of the API) and its
-- updated_at, whoever writes it (the API, the CLI, the escalation check, routing).
CREATE FUNCTION cases_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER cases_bump_version BEFORE UPDATE ON cases
    FOR EACH ROW EXECUTE FUNCTION cases_bump_version();

-- The escalation check's query: cases whose next step is due.
CREATE INDEX cases_escalation_due ON cases (escalation_due_at)
    WHERE escalation_due_at IS NOT NULL;
-- The list's filters (all newest first by id).
CREATE INDEX cases_assignee_user ON cases (assignee_user_id, id DESC)
    WHERE assignee_user_id IS NOT NULL;
CREATE INDEX cases_unassigned ON cases (id DESC) WHERE assignee_user_id IS NULL;
CREATE INDEX cases_severity ON cases (severity, id DESC);
CREATE INDEX cases_category ON cases (category, id DESC);
CREATE INDEX cases_level ON cases (escalation_level, id DESC) WHERE escalation_level > 0;
-- Overdue: not resolved and past its SLA deadline.
CREATE INDEX cases_unresolved_due ON cases (sla_due_at)
    WHERE status IN ('open', 'acknowledged');

-- The history of a case: append-only (rows go only with their case).
-- kind: opened, acknowledged, assigned, commented, escalated, resolved, reopened,
-- notified, severity_raised, and the kinds notifications add (delivered, delivery_failed).
-- actor: 'user:<id>', 'api_key:<id>', 'cli:<os user>', 'system'.
CREATE TABLE case_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id   bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    kind      text NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,39}$'),
    actor     text NOT NULL CHECK (length(actor) BETWEEN 1 AND 300),
    at        timestamptz NOT NULL DEFAULT now(),
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX case_events_case ON case_events (case_id, id);
CREATE INDEX case_events_kind_at ON case_events (kind, at);

CREATE FUNCTION case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_events_append_only();

CREATE TABLE case_comments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id         bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    author_user_id  bigint REFERENCES users (id) ON DELETE SET NULL,
    author          text NOT NULL CHECK (length(author) BETWEEN 1 AND 300),  -- the actor
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_comments_case ON case_comments (case_id, id);

-- Backfill the cases opened before: category from their analysis (else the document's),
-- the assignee user where the routing label is a working user's email, the times of
-- their state, the ladder of those still open, and an 'opened' event each.
ALTER TABLE cases DISABLE TRIGGER cases_bump_version;
UPDATE cases c
SET category = coalesce(
        (SELECT a.category FROM analyses a WHERE a.id = c.analysis_id),
        (SELECT d.category FROM documents d WHERE d.id = c.document_id)),
    assignee_user_id = (
        SELECT u.id FROM users u
        WHERE c.assignee IS NOT NULL AND lower(u.email) = lower(c.assignee)
          AND u.active AND u.role IN ('admin', 'analyst')),
    acknowledged_at = CASE WHEN c.status <> 'open' THEN c.updated_at END,
    resolved_at = CASE WHEN c.status IN ('resolved', 'closed') THEN c.updated_at END,
    escalation_due_at = CASE WHEN c.status = 'open' THEN c.sla_due_at END;
ALTER TABLE cases ENABLE TRIGGER cases_bump_version;

INSERT INTO case_events (case_id, kind, actor, at, detail)
SELECT c.id, 'opened', 'system', c.created_at,
       jsonb_build_object('severity', c.severity, 'sla_due_at', c.sla_due_at,
                          'backfilled', true)
FROM cases c
ORDER BY c.id;
