-- Sources (issue 13): where documents come from. Push kinds (upload, webhook) receive;
-- pull kinds (http, feed, directory) are polled on their schedule by `sources.poll` jobs.

CREATE TABLE sources (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind                  text NOT NULL
                          CHECK (kind IN ('upload', 'webhook', 'http', 'feed', 'directory')),
    config                jsonb NOT NULL DEFAULT '{}',   -- the kind's settings, no secrets
    secrets               jsonb NOT NULL DEFAULT '{}',   -- write-only: never returned
    schedule              jsonb,          -- {"interval_seconds": N} | {"cron", "timezone"}
    enabled               boolean NOT NULL DEFAULT true,
    metadata              jsonb NOT NULL DEFAULT '{}',   -- default metadata of its documents
    title_template        text NOT NULL DEFAULT '{title}' CHECK (length(title_template) <= 500),
    max_items_per_poll    integer NOT NULL DEFAULT 100 CHECK (max_items_per_poll > 0),
    max_item_bytes        bigint NOT NULL DEFAULT 10485760 CHECK (max_item_bytes > 0),
    timeout_seconds       double precision NOT NULL DEFAULT 30 CHECK (timeout_seconds > 0),
    poll_state            jsonb NOT NULL DEFAULT '{}',   -- the kind's memory (ETag, ...)
    last_poll_at          timestamptz,
    last_success_at       timestamptz,
    last_error            text,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    next_poll_at          timestamptz,    -- backing off: scheduled polls before it are skipped
    disabled_reason       text,
    builtin               boolean NOT NULL DEFAULT false,
    deleted_at            timestamptz,    -- deleted: hidden and disabled, its documents kept
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sources_name ON sources (name) WHERE deleted_at IS NULL;

-- Every item a source has seen, once: the unique key decides what is new.
CREATE TABLE source_items (
    source_id      bigint NOT NULL REFERENCES sources (id),
    identity       text NOT NULL CHECK (length(identity) BETWEEN 1 AND 2000),
    document_id    bigint REFERENCES documents (id) ON DELETE SET NULL,
    state          jsonb NOT NULL DEFAULT '{}',  -- what the kind remembers (etag, mtime, size)
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, identity)
);
CREATE INDEX source_items_document ON source_items (document_id) WHERE document_id IS NOT NULL;

CREATE TABLE source_polls (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id          bigint NOT NULL REFERENCES sources (id),
    job_id             bigint,
    trigger            text NOT NULL DEFAULT 'schedule',  -- schedule | manual
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    items_seen         integer NOT NULL DEFAULT 0,
    documents_created  integer NOT NULL DEFAULT 0,
    error              text,
    duration_ms        double precision
);
CREATE INDEX source_polls_source ON source_polls (source_id, id DESC);

-- The built-in source of manual uploads, then one `upload` source per free-text source id
-- the documents had (named by it): documents.source_id becomes a foreign key.
INSERT INTO sources (name, kind, builtin) VALUES ('upload', 'upload', true);
-- An id empty or blank (the old JSON upload accepted "") names no source: the built-in one.
INSERT INTO sources (name, kind)
SELECT DISTINCT nullif(btrim(source_id), ''), 'upload' FROM documents
WHERE nullif(btrim(source_id), '') IS NOT NULL AND source_id <> 'upload'
ORDER BY 1
ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING;

ALTER TABLE documents ADD COLUMN source_ref bigint REFERENCES sources (id);
UPDATE documents d SET source_ref = s.id
FROM sources s
WHERE s.deleted_at IS NULL AND s.name = coalesce(nullif(btrim(d.source_id), ''), 'upload');
DROP INDEX documents_source;
ALTER TABLE documents DROP COLUMN source_id;
ALTER TABLE documents RENAME COLUMN source_ref TO source_id;
ALTER TABLE documents ALTER COLUMN source_id SET NOT NULL;
-- A document written without a source (the upload route without source_id, a script, a
-- test) belongs to the built-in upload source.
CREATE FUNCTION builtin_upload_source() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT id FROM sources WHERE builtin AND kind = 'upload' $$;
ALTER TABLE documents ALTER COLUMN source_id SET DEFAULT builtin_upload_source();
CREATE INDEX documents_source ON documents (source_id, id DESC);

INSERT INTO queues (name, dead_letter_queue, timeout_seconds, max_attempts) VALUES
    ('sources.poll', NULL, 600, 3)
ON CONFLICT (name) DO NOTHING;
