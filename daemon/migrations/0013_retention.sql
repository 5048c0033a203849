-- Retention (daemon/modules/retention): when each document finished, legal holds, the
-- purge's run reports; and a tamper-evident audit log (daemon/modules/audit/chain.py):
-- every event chained by hash to the one before it, checkpoints left by the purge.

-- When a document reached its terminal state (completed, failed, duplicate); NULL while
-- it is being worked on. Set by a trigger, so every writer gets it. The purge computes a
-- document's deadline as finished_at + the current period of its state, so a changed
-- period applies to existing rows at the next run.
ALTER TABLE documents ADD COLUMN finished_at timestamptz;

UPDATE documents SET finished_at = coalesce(completed_at, updated_at)
WHERE state IN ('completed', 'failed', 'duplicate');

CREATE FUNCTION documents_finished_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state NOT IN ('completed', 'failed', 'duplicate') THEN
        NEW.finished_at := NULL;
    ELSIF TG_OP = 'INSERT' THEN
        NEW.finished_at := coalesce(NEW.finished_at, now());
    ELSIF OLD.state IS DISTINCT FROM NEW.state
          AND NEW.finished_at IS NOT DISTINCT FROM OLD.finished_at THEN
        NEW.finished_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER documents_finished_at
    BEFORE INSERT OR UPDATE OF state ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_finished_at();

CREATE INDEX documents_finished ON documents (state, finished_at, id)
    WHERE finished_at IS NOT NULL;
CREATE INDEX document_events_at ON document_events (at, id);

-- Legal holds: while a hold stands (released_at IS NULL), its target and what the target
-- depends on are never purged. No foreign key (the target is a document or a case); a
-- hold is created only on a row that exists, under a lock the purge respects.
CREATE TABLE legal_holds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_type     text NOT NULL CHECK (target_type IN ('document', 'case')),
    target_id       bigint NOT NULL,
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz,
    released_by     text,
    release_reason  text CHECK (length(release_reason) <= 2000),
    CHECK ((released_at IS NULL) = (release_reason IS NULL))
);
CREATE INDEX legal_holds_standing ON legal_holds (target_type, target_id)
    WHERE released_at IS NULL;

-- The documents the purge must keep because of a standing hold: held documents, the
-- documents of held cases, and the originals of held duplicates (their content).
CREATE VIEW retention_held_documents AS
    SELECT h.target_id AS document_id
    FROM legal_holds h
    WHERE h.released_at IS NULL AND h.target_type = 'document'
    UNION
    SELECT c.document_id
    FROM legal_holds h JOIN cases c ON c.id = h.target_id
    WHERE h.released_at IS NULL AND h.target_type = 'case'
    UNION
    SELECT d.duplicate_of
    FROM legal_holds h JOIN documents d ON d.id = h.target_id
    WHERE h.released_at IS NULL AND h.target_type = 'document' AND d.duplicate_of IS NOT NULL;

-- A standing hold also refuses any other deletion of what it keeps (an admin's DELETE of
-- a document, a cascade from one): SQLSTATE 55H01, which the API answers with 409.
CREATE FUNCTION legal_hold_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'documents' THEN
        IF EXISTS (SELECT 1 FROM retention_held_documents k WHERE k.document_id = OLD.id) THEN
            RAISE EXCEPTION 'document % is under legal hold', OLD.id USING ERRCODE = '55H01';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM legal_holds h
                  WHERE h.released_at IS NULL AND h.target_type = 'case'
                    AND h.target_id = OLD.id)
          OR EXISTS (SELECT 1 FROM retention_held_documents k
                     WHERE k.document_id = OLD.document_id) THEN
        RAISE EXCEPTION 'case % is under legal hold', OLD.id USING ERRCODE = '55H01';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER documents_legal_hold BEFORE DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION legal_hold_guard();
CREATE TRIGGER cases_legal_hold BEFORE DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION legal_hold_guard();

-- One row per purge run; each batch adds its counts to ``report`` in the transaction
-- that deletes, so the counts are exact even for a run interrupted and resumed.
-- ``job_id``: the queue job that runs it (a retried job continues its run).
CREATE TABLE retention_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint UNIQUE,
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'command')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    report       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(report) = 'object')
);
CREATE INDEX retention_runs_unfinished ON retention_runs (trigger, id) WHERE finished_at IS NULL;

-- The hash chain of the audit log. ``audit_chain`` is its head (last position and hash)
-- and the installation's checkpoint key (used when TRIAGED_AUDIT_CHECKPOINT_KEY is not
-- set). A BEFORE INSERT trigger takes the head's row lock, so events are chained in the
-- order their transactions commit, whoever inserts them; the lock is held to commit.
CREATE TABLE audit_chain (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq          bigint NOT NULL DEFAULT 0,
    last_hash         bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
    installation_key  bytea NOT NULL
        DEFAULT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))
);
INSERT INTO audit_chain DEFAULT VALUES;

ALTER TABLE audit_events
    ADD COLUMN seq bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;

-- What an event's hash covers: every column but the hashes, as canonical JSON text
-- (jsonb's output is canonical; the time in UTC, so no session setting changes it).
CREATE FUNCTION audit_event_material(e audit_events) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT convert_to(jsonb_build_array(
        e.seq, e.id, to_jsonb(e.at AT TIME ZONE 'UTC'), e.actor_type::text, e.actor_id,
        e.action, e.target_type, e.target_id, e.client_addr, e.request_id, e.details
    )::text, 'UTF8')
$$;

-- Existing events are chained in id order (the trigger refusing updates is off for it).
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete;
DO $$
DECLARE
    e audit_events;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    n bigint := 0;
BEGIN
    FOR e IN SELECT * FROM audit_events ORDER BY id LOOP
        n := n + 1;
        e.seq := n;
        e.prev_hash := prev;
        e.hash := sha256(prev || audit_event_material(e));
        UPDATE audit_events SET seq = e.seq, prev_hash = e.prev_hash, hash = e.hash
        WHERE id = e.id;
        prev := e.hash;
    END LOOP;
    UPDATE audit_chain SET last_seq = n, last_hash = prev;
END
$$;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete;

ALTER TABLE audit_events
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);

CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_chain;
BEGIN
    SELECT * INTO head FROM audit_chain FOR UPDATE;
    NEW.seq := head.last_seq + 1;
    NEW.prev_hash := head.last_hash;
    NEW.hash := sha256(head.last_hash || audit_event_material(NEW));
    UPDATE audit_chain SET last_seq = NEW.seq, last_hash = NEW.hash;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_events_chain
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- Still append-only for everyone, except the purge: it deletes the oldest events past
-- their period with the transaction-local setting triaged.audit_purge = 'on', and
-- leaves a signed checkpoint in the same transaction. UPDATE and TRUNCATE stay refused.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('triaged.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Checkpoints: the position and hash of the last purged event, signed (HMAC-SHA256 with
-- the configured key, or the installation key). `triaged audit verify` starts from the
-- newest one.
CREATE TABLE audit_checkpoints (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    last_seq        bigint NOT NULL,
    last_event_id   bigint NOT NULL,
    last_hash       bytea NOT NULL,
    key_source      text NOT NULL CHECK (key_source IN ('settings', 'installation')),
    mac             bytea NOT NULL
);
