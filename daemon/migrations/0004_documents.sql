-- Documents and the 8-step ingestion pipeline (DESIGN.md section 3), analyses, cases.

CREATE TYPE document_state AS ENUM (
    'received', 'fetched', 'hashed', 'extracted', 'normalized', 'analyzed', 'routed',
    'completed', 'duplicate', 'failed'
);

CREATE TABLE documents (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title          text NOT NULL DEFAULT '' CHECK (length(title) <= 1000),
    source_id      text CHECK (length(source_id) <= 200),
    external_id    text CHECK (length(external_id) <= 500),
    url            text CHECK (length(url) <= 4000),
    filename       text CHECK (length(filename) <= 1000),
    media_type     text CHECK (length(media_type) <= 200),  -- as declared, then as fetched
    size_bytes     bigint,
    sha256         bytea CHECK (length(sha256) = 32),
    state          document_state NOT NULL DEFAULT 'received',
    failed_step    text,
    error          text,
    duplicate_of   bigint REFERENCES documents (id) ON DELETE SET NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    language       text,
    category       text,            -- of the current analysis, for filtering
    severity       text,            -- of the current analysis, for filtering
    analysis_id    bigint,          -- the current analysis
    created_by     text,            -- 'user:1', 'api_key:2'
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    retain_until   timestamptz
);
CREATE INDEX documents_created_at ON documents (created_at);
CREATE INDEX documents_state ON documents (state, id DESC);
CREATE INDEX documents_source ON documents (source_id, id DESC) WHERE source_id IS NOT NULL;
CREATE INDEX documents_category ON documents (category, id DESC) WHERE category IS NOT NULL;
CREATE INDEX documents_severity ON documents (severity, id DESC) WHERE severity IS NOT NULL;
CREATE INDEX documents_duplicate_of ON documents (duplicate_of) WHERE duplicate_of IS NOT NULL;

-- The raw bytes (upload body, fetched response, posted content). In the database, not
-- on a local disk, so api and worker processes on different hosts share them.
CREATE TABLE document_blobs (
    document_id  bigint PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    data         bytea NOT NULL
);

-- The first document seen with each SHA-256: the one later identical ones link to.
CREATE TABLE document_hashes (
    sha256       bytea PRIMARY KEY CHECK (length(sha256) = 32),
    document_id  bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE
);
CREATE INDEX document_hashes_document ON document_hashes (document_id);

CREATE TABLE document_texts (
    document_id  bigint PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    extracted    text NOT NULL,
    extraction   jsonb NOT NULL DEFAULT '{}',  -- media type, charset, pages, warnings
    normalized   text,
    chunks       jsonb,                          -- list of strings
    truncated    boolean NOT NULL DEFAULT false
);

-- Every state change, with its time: a document's history.
CREATE TABLE document_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    from_state   document_state,
    to_state     document_state NOT NULL,
    step         text,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX document_events_document ON document_events (document_id, id);

CREATE TABLE analyses (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id        bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    run                integer NOT NULL DEFAULT 1,  -- 1, then 2... for each reanalysis
    category           text NOT NULL,
    severity           text NOT NULL,
    summary            text NOT NULL,
    entities           jsonb NOT NULL DEFAULT '[]',
    confidence         double precision NOT NULL,
    rationale          text,
    provider           text NOT NULL,
    model              text NOT NULL,
    version            text NOT NULL,
    latency_ms         double precision NOT NULL,
    calls              integer NOT NULL,
    repair_rounds      integer NOT NULL DEFAULT 0,
    prompt_tokens      integer,
    completion_tokens  integer,
    chunked            boolean NOT NULL DEFAULT false,
    truncated          boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, run)
);

CREATE TYPE case_status AS ENUM ('open', 'acknowledged', 'resolved', 'closed');

CREATE TABLE cases (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  bigint NOT NULL UNIQUE REFERENCES documents (id) ON DELETE CASCADE,
    analysis_id  bigint REFERENCES analyses (id) ON DELETE SET NULL,
    status       case_status NOT NULL DEFAULT 'open',
    severity     text NOT NULL,
    sla_due_at   timestamptz,
    assignee     text,
    tags         text[] NOT NULL DEFAULT '{}',
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_status ON cases (status, id DESC);
CREATE INDEX cases_analysis ON cases (analysis_id) WHERE analysis_id IS NOT NULL;

-- Idempotency-Key of document intake: a retried request gets the first answer.
CREATE TABLE idempotency_keys (
    principal     text NOT NULL,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash  bytea NOT NULL,
    document_id   bigint REFERENCES documents (id) ON DELETE CASCADE,
    response      jsonb NOT NULL,              -- the first answer, given again on a retry
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_document ON idempotency_keys (document_id);

-- The pipeline's queues: a step that fails for good is dead-lettered to ingest.dead,
-- whose handler marks the document failed with the step and the error.
-- Each step has a time limit per attempt (a hung extraction or model call is cancelled
-- and retried); operators change these with `triaged queues set`.
INSERT INTO queues (name, dead_letter_queue, timeout_seconds) VALUES
    ('ingest.fetch', 'ingest.dead', 300),
    ('ingest.hash', 'ingest.dead', 120),
    ('ingest.extract', 'ingest.dead', 600),
    ('ingest.normalize', 'ingest.dead', 300),
    ('ingest.analyze', 'ingest.dead', 3600),
    ('ingest.route', 'ingest.dead', 120),
    ('ingest.complete', 'ingest.dead', 120),
    ('ingest.dead', NULL, 120)
ON CONFLICT (name) DO UPDATE
SET dead_letter_queue = EXCLUDED.dead_letter_queue, timeout_seconds = EXCLUDED.timeout_seconds;
