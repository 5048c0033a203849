-- CSV exports: one COPY per kind. {columns} are the selected columns (each with its
-- neutralisation or time formatting, daemon/modules/exports/columns.py), {filter} the
-- predicate of the matching list's filter (the module's *_filter_sql()). Oldest first,
-- by id: the order the rows were created in, stable across runs.

-- name: export_documents
COPY (SELECT {columns} FROM documents d WHERE {filter} ORDER BY d.id)
TO STDOUT WITH (FORMAT csv, HEADER, ENCODING 'UTF8')

-- name: export_cases
COPY (SELECT {columns} FROM cases c JOIN documents d ON d.id = c.document_id
      WHERE {filter} ORDER BY c.id)
TO STDOUT WITH (FORMAT csv, HEADER, ENCODING 'UTF8')

-- name: export_audit
COPY (SELECT {columns} FROM audit_events WHERE {filter} ORDER BY id)
TO STDOUT WITH (FORMAT csv, HEADER, ENCODING 'UTF8')

-- name: export_session
-- For the export's transaction: the text form of a timestamp without time zone that the
-- time columns rely on ("2026-12-06 03:59:27.123456") whatever the connection's
-- DateStyle; and no parallel workers: a Gather Merge of wide rows costs more CPU than
-- it saves here, CPU taken from the API's own queries on a small machine.
SELECT set_config('DateStyle', 'ISO, YMD', true),
       set_config('max_parallel_workers_per_gather', '0', true)
