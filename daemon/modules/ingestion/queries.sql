-- Documents and the ingestion pipeline. Parameters are named; see store.py (which
-- loads them), intake.py, documents.py and the steps (steps/*.py).

-- name: insert_documents
-- Intakes (one or many: every intake is written by this statement) in one statement:
-- the documents (ids drawn first, so that their content and first history event go in
-- beside them), in the given order.
-- The fields come as one JSON array of rows (position "n"), the contents as an array.
WITH input AS (
    SELECT nextval(pg_get_serial_sequence('documents', 'id')) AS id, i.*,
           (%(contents)b::bytea[])[i.n + 1] AS content, i.n AS ord
    FROM jsonb_to_recordset(%(documents)s::jsonb)
         AS i(n integer, title text, source_id bigint, external_id text, url text,
              filename text, media_type text, size_bytes bigint, metadata jsonb,
              created_by text)
), inserted AS (
    INSERT INTO documents (id, title, source_id, external_id, url, filename, media_type,
                           size_bytes, metadata, created_by)
    OVERRIDING SYSTEM VALUE
    SELECT id, title,
           coalesce(source_id, (SELECT s.id FROM sources s WHERE s.builtin AND s.kind = 'upload'
                                ORDER BY s.id LIMIT 1)),
           external_id, url, filename, media_type, size_bytes, metadata, created_by
    FROM input ORDER BY ord
    RETURNING id, created_at
), blobs AS (
    INSERT INTO document_blobs (document_id, data)
    SELECT id, content FROM input WHERE content IS NOT NULL ORDER BY ord
), events AS (
    INSERT INTO document_events (document_id, from_state, to_state, step, detail)
    SELECT id, NULL, 'received', NULL, '{}' FROM input ORDER BY ord
)
SELECT i.id, d.created_at FROM input i JOIN inserted d ON d.id = i.id ORDER BY i.ord

-- name: insert_blob
INSERT INTO document_blobs (document_id, data) VALUES (%(id)s, %(data)s)
ON CONFLICT (document_id) DO UPDATE SET data = EXCLUDED.data

-- name: insert_event
INSERT INTO document_events (document_id, from_state, to_state, step, detail)
VALUES (%(id)s, %(from_state)s, %(to_state)s, %(step)s, %(detail)s)

-- name: get_idempotency_key
SELECT request_hash, response FROM idempotency_keys
WHERE principal = %(principal)s AND key = %(key)s

-- name: insert_idempotency_key
INSERT INTO idempotency_keys (principal, key, request_hash, document_id, response)
VALUES (%(principal)s, %(key)s, %(request_hash)s, %(document_id)s, %(response)s)
ON CONFLICT (principal, key) DO NOTHING
RETURNING key

-- name: advance
-- Move documents from the step's state to the next one (each to its own: the hash step
-- sends duplicates elsewhere), record the transitions and enqueue the next step's job
-- of each document that reached %(onward_state)s (on %(next_queue)s; none when NULL),
-- in one statement; a document not returned was not in that state (a redelivered job
-- whose work is done, or an operator's change). The row locks taken here serialise
-- concurrent deliveries of the same step. Batch statements take their rows as one JSON array (%(rows)s):
-- encoded in C, where psycopg's array parameters cost a Python call per element.
-- A step with more to write inserts its CTEs where the marker line is (see
-- store.py); they may read "moved", and must not update documents again (a row
-- cannot be updated twice in one statement): a row's language, category and severity
-- come in with it here, and with %(new_analyses)s each document moved gets the id of
-- its new analysis (drawn here, inserted by the analysis step's CTE).
WITH input AS (
    SELECT i.*,
           CASE WHEN %(new_analyses)s
                THEN nextval(pg_get_serial_sequence('analyses', 'id')) END AS analysis_id
    FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS i(id bigint, to_state document_state, detail jsonb, language text,
             category text, severity text)
), moved AS (
    UPDATE documents d
    SET state = i.to_state, updated_at = now(),
        completed_at = CASE WHEN i.to_state = 'completed' THEN now() END,
        retain_until = CASE WHEN i.to_state = 'completed'
                            THEN now() + make_interval(secs => %(retention)s) END,
        language = coalesce(i.language, d.language),
        category = coalesce(i.category, d.category),
        severity = coalesce(i.severity, d.severity),
        analysis_id = coalesce(i.analysis_id, d.analysis_id)
    FROM input i
    WHERE d.id = i.id AND d.state = %(from_state)s::document_state
      -- Primary-key lookups: joined on the input alone, the planner (its statistics
      -- lagging behind a busy table) scanned every document in the state.
      AND d.id = ANY(%(ids)s::bigint[])
    RETURNING d.id, i.to_state, i.detail, i.analysis_id
), event AS (
    INSERT INTO document_events (document_id, from_state, to_state, step, detail)
    SELECT id, %(from_state)s::document_state, to_state, %(step)s, detail
    FROM moved ORDER BY id
), enqueued AS (
    -- The queue's SQL interface (migration 0005): one call for the batch.
    SELECT enqueue_jobs(
        %(next_queue)s::text,
        (SELECT jsonb_agg(jsonb_build_object('document_id', id) ORDER BY id)
         FROM moved WHERE to_state = %(onward_state)s::document_state),
        %(max_attempts)s::integer
    ) AS created
    WHERE %(next_queue)s::text IS NOT NULL
)
-- step writes --
SELECT m.id FROM moved m LEFT JOIN enqueued e ON true

-- name: step_input
-- The fetch step's input: state, URL, and whether the content is stored (given at
-- intake, or fetched before).
SELECT d.id, d.state::text, d.url,
       EXISTS (SELECT 1 FROM document_blobs b WHERE b.document_id = d.id)
FROM documents d WHERE d.id = ANY(%(ids)s)

-- name: sizes
SELECT id, coalesce(size_bytes, 0) FROM documents WHERE id = ANY(%(ids)s)

-- name: blob_input
-- The hash and extract steps' input: state, declared type and the bytes.
SELECT d.id, d.state::text, d.media_type, d.filename, b.data
FROM documents d LEFT JOIN document_blobs b ON b.document_id = d.id
WHERE d.id = ANY(%(ids)s)

-- name: extracted_input
SELECT d.id, d.state::text, t.extracted
FROM documents d LEFT JOIN document_texts t ON t.document_id = d.id
WHERE d.id = ANY(%(ids)s)

-- name: analysis_input
SELECT d.id, d.state::text, d.title, d.language, d.metadata, t.chunks, t.truncated
FROM documents d LEFT JOIN document_texts t ON t.document_id = d.id
WHERE d.id = ANY(%(ids)s)

-- name: route_input
-- Inside the routing transaction: lock the documents (in id order, as every batch
-- does) and read their current analysis.
SELECT d.id, d.state::text, a.id, a.category, a.severity, a.summary, a.entities,
       a.confidence, a.rationale
FROM documents d LEFT JOIN analyses a ON a.id = d.analysis_id
WHERE d.id = ANY(%(ids)s)
ORDER BY d.id
FOR UPDATE OF d

-- name: set_fetched
UPDATE documents SET media_type = coalesce(%(media_type)s, media_type), size_bytes = %(size)s
WHERE id = %(id)s

-- name: claim_hashes
-- The first document with each content becomes its original (of two in one batch, the
-- first given); the ids returned won. The others: see original_of_hash, which must be a
-- separate statement (a conflicting row committed while this one waited is not in this
-- statement's snapshot). Rows go in the given order: callers sort by hash, so that two
-- batches wait for each other's hashes in one order (no deadlock).
INSERT INTO document_hashes (sha256, document_id)
SELECT h.sha256, h.id
FROM unnest(%(sha256s)s::bytea[], %(ids)s::bigint[]) WITH ORDINALITY AS h(sha256, id, ord)
ORDER BY h.ord
ON CONFLICT (sha256) DO NOTHING
RETURNING document_id

-- name: claim_hash
-- One document's claim again, after its holder was deleted.
INSERT INTO document_hashes (sha256, document_id) VALUES (%(sha256)s, %(id)s)
ON CONFLICT (sha256) DO NOTHING
RETURNING document_id

-- name: original_of_hash
SELECT h.document_id, d.state::text
FROM document_hashes h JOIN documents d ON d.id = h.document_id
WHERE h.sha256 = %(sha256)s

-- name: take_over_hash
-- A failed original does not keep the content: the new document becomes the original
-- (only if the holder is still the failed one: of two takers, one wins).
UPDATE document_hashes SET document_id = %(id)s
WHERE sha256 = %(sha256)s AND document_id = %(holder)s
RETURNING document_id

-- name: stranded_documents
-- Documents in a working state for a while with no live job of the pipeline: their job
-- was cancelled by an operator, or the dead-letter handling itself gave up.
SELECT d.id, d.state::text
FROM documents d
WHERE d.state NOT IN ('completed', 'duplicate', 'failed')
  AND d.updated_at < now() - make_interval(secs => %(older_than)s)
  AND NOT EXISTS (
      SELECT 1 FROM jobs j
      WHERE j.state IN ('created', 'retry', 'active')
        AND j.queue LIKE 'ingest.%%'
        AND j.payload ->> 'document_id' = d.id::text
  )
ORDER BY d.id
LIMIT %(limit)s

-- name: set_hashes
UPDATE documents d SET sha256 = h.sha256, duplicate_of = h.duplicate_of
FROM unnest(%(ids)s::bigint[], %(sha256s)s::bytea[], %(duplicates_of)s::bigint[])
     AS h(id, sha256, duplicate_of)
WHERE d.id = h.id AND d.id = ANY(%(ids)s::bigint[])

-- name: write_extracted
-- CTE for advance (the extract step): the texts of the documents moved on.
, texts AS (
    INSERT INTO document_texts (document_id, extracted, extraction)
    SELECT w.id, w.text, w.extraction
    FROM jsonb_to_recordset(%(data)s::jsonb) AS w(id bigint, text text, extraction jsonb)
    JOIN moved m ON m.id = w.id
    ON CONFLICT (document_id) DO UPDATE
    SET extracted = EXCLUDED.extracted, extraction = EXCLUDED.extraction,
        normalized = NULL, chunks = NULL, truncated = false
)

-- name: write_normalized
-- CTE for advance (the normalize step): the normalized texts and chunks.
, texts AS (
    UPDATE document_texts t
    SET normalized = w.normalized, chunks = w.chunks, truncated = w.truncated
    FROM jsonb_to_recordset(%(data)s::jsonb)
         AS w(id bigint, normalized text, chunks jsonb, truncated boolean)
    JOIN moved m ON m.id = w.id
    WHERE t.document_id = w.id AND t.document_id = ANY(%(ids)s::bigint[])
)

-- name: write_analyses
-- CTE for advance (the analyze step): a new analysis run of each document moved, with
-- the id advance drew for it (advance made it the document's current one).
, analyses_written AS (
    INSERT INTO analyses (id, document_id, run, category, severity, summary, entities,
                          confidence, rationale, provider, model, version, latency_ms, calls,
                          repair_rounds, prompt_tokens, completion_tokens, chunked, truncated)
    OVERRIDING SYSTEM VALUE
    SELECT m.analysis_id, w.id,
           coalesce((SELECT max(a.run) FROM analyses a WHERE a.document_id = w.id), 0) + 1,
           w.category, w.severity, w.summary, w.entities, w.confidence, w.rationale,
           w.provider, w.model, w.version, w.latency_ms, w.calls, w.repair_rounds,
           w.prompt_tokens, w.completion_tokens, w.chunked, w.truncated
    FROM jsonb_to_recordset(%(data)s::jsonb)
        AS w(id bigint, category text, severity text, summary text, entities jsonb,
             confidence float8, rationale text, provider text, model text, version text,
             latency_ms float8, calls integer, repair_rounds integer, prompt_tokens integer,
             completion_tokens integer, chunked boolean, truncated boolean)
    JOIN moved m ON m.id = w.id
    ORDER BY w.id
)

-- name: fail_step
-- A step's document fails (permanently, or out of attempts): only if it is still where
-- the step found it.
UPDATE documents
SET state = 'failed', failed_step = %(step)s, error = %(error)s, updated_at = now()
WHERE id = %(id)s AND state = %(from_state)s
RETURNING id

-- name: restart
-- Operators: move a document back to where a step starts.
UPDATE documents
SET state = %(to_state)s, failed_step = NULL, error = NULL, updated_at = now()
WHERE id = %(id)s AND state = %(from_state)s
RETURNING id

-- name: lock_document
SELECT state::text, failed_step FROM documents WHERE id = %(id)s FOR UPDATE

-- name: get_document
SELECT id, title, source_id, external_id, url, filename, media_type, size_bytes,
       encode(sha256, 'hex'), state::text, failed_step, error, duplicate_of, metadata,
       language, category, severity, analysis_id, created_by, created_at, updated_at,
       completed_at, retain_until
FROM documents WHERE id = %(id)s

-- name: document_history
SELECT at, from_state::text, to_state::text, step, detail
FROM document_events WHERE document_id = %(id)s ORDER BY id

-- name: document_analyses
SELECT id, run, category, severity, summary, entities, confidence, rationale, provider,
       model, version, latency_ms, calls, repair_rounds, prompt_tokens, completion_tokens,
       chunked, truncated, created_at
FROM analyses WHERE document_id = %(id)s ORDER BY run

-- name: delete_document
DELETE FROM documents WHERE id = %(id)s RETURNING id, title, state::text

-- name: prune_idempotency_keys
DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %(keep)s)

-- name: document_filter
-- The predicate of a DocumentFilter over `documents d` (every filter left NULL matches
-- everything): shared by the list and the CSV export (document_filter_sql()).
(%(state)s::text IS NULL OR d.state = %(state)s::document_state)
  AND (%(source_id)s::bigint IS NULL OR d.source_id = %(source_id)s)
  AND (%(category)s::text IS NULL OR d.category = %(category)s)
  AND (%(severity)s::text IS NULL OR d.severity = %(severity)s)
  AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR d.created_at < %(until)s)
  AND (%(pattern)s::text IS NULL
       OR d.title ILIKE %(pattern)s
       OR EXISTS (SELECT 1 FROM document_texts t
                  WHERE t.document_id = d.id AND t.normalized ILIKE %(pattern)s))

-- name: list_documents
-- Newest first; "filter" is the document_filter predicate. Not prepared (see caller).
SELECT id, title, source_id, external_id, url, filename, media_type, size_bytes,
       encode(sha256, 'hex'), state::text, failed_step, error, duplicate_of, metadata,
       language, category, severity, analysis_id, created_by, created_at, updated_at,
       completed_at, retain_until
FROM documents d
WHERE {filter}
  AND (%(before_id)s::bigint IS NULL OR d.id < %(before_id)s)
ORDER BY d.id DESC
LIMIT %(limit)s

-- name: list_document_views
-- list_documents, each row as "view" (an expression over `d`: its JSON, built here);
-- "after" is empty on the first page, else the condition of the cursor; "limit" is a
-- literal (a prepared statement with a parameter there ran twice as slow: generic plan).
SELECT d.id, ({view})::text
FROM documents d
WHERE {filter} {after}
ORDER BY d.id DESC
LIMIT {limit}

-- name: document_counts
SELECT state::text, count(*) FROM documents GROUP BY state
