-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  integer NOT NULL
)

-- name: lock
SELECT pg_advisory_lock(%(key)s)

-- name: unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: applied
SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version

-- name: record
INSERT INTO schema_migrations (version, name, checksum, duration_ms)
VALUES (%(version)s, %(name)s, %(checksum)s, %(duration_ms)s)

-- name: table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL

-- name: latest_version
SELECT coalesce(max(version), 0) FROM schema_migrations
