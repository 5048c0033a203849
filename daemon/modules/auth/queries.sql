-- Users ---------------------------------------------------------------------------------

-- name: insert_user
INSERT INTO users (email, display_name, role, password_hash)
VALUES (%(email)s, %(display_name)s, %(role)s, %(password_hash)s)
ON CONFLICT ((lower(email))) DO NOTHING
RETURNING id, email, display_name, role::text, active, created_at, updated_at,
          password_changed_at

-- name: get_user
SELECT id, email, display_name, role::text, active, created_at, updated_at,
       password_changed_at
FROM users WHERE id = %(id)s

-- name: get_user_for_update
SELECT id, email, display_name, role::text, active, created_at, updated_at,
       password_changed_at
FROM users WHERE id = %(id)s
FOR UPDATE

-- name: get_user_by_email
SELECT id, email, display_name, role::text, active, created_at, updated_at,
       password_changed_at
FROM users WHERE lower(email) = lower(%(email)s)

-- name: list_users
SELECT id, email, display_name, role::text, active, created_at, updated_at,
       password_changed_at
FROM users
WHERE (%(role)s::user_role IS NULL OR role = %(role)s::user_role)
  AND (%(active)s::boolean IS NULL OR active = %(active)s::boolean)
  AND (%(after_id)s::bigint IS NULL OR id > %(after_id)s::bigint)
ORDER BY id
LIMIT %(limit)s

-- name: any_user
SELECT EXISTS (SELECT 1 FROM users)

-- name: admin_lock
-- Serialises every change that could remove an active admin (and the bootstrap): the
-- count below then sees the other transactions' committed results.
SELECT pg_advisory_xact_lock(%(key)s)

-- name: count_other_active_admins
SELECT count(*) FROM users WHERE role = 'admin' AND active AND id <> %(id)s

-- name: update_user
UPDATE users
SET display_name = %(display_name)s, role = %(role)s, active = %(active)s, updated_at = now()
WHERE id = %(id)s
RETURNING id, email, display_name, role::text, active, created_at, updated_at,
          password_changed_at

-- name: delete_user
DELETE FROM users WHERE id = %(id)s

-- name: get_password_hash
SELECT password_hash FROM users WHERE id = %(id)s

-- name: set_password_hash
UPDATE users
SET password_hash = %(password_hash)s, password_changed_at = now(), updated_at = now()
WHERE id = %(id)s

-- name: upgrade_password_hash
-- Only if the password was not changed meanwhile.
UPDATE users SET password_hash = %(new_hash)s
WHERE id = %(id)s AND password_hash = %(old_hash)s

-- name: get_login_user
SELECT id, email, display_name, role::text, active, created_at, updated_at,
       password_changed_at, password_hash
FROM users WHERE lower(email) = lower(%(email)s)

-- Sessions ------------------------------------------------------------------------------

-- name: insert_session
INSERT INTO sessions (user_id, token_hash, expires_at, client_addr)
VALUES (%(user_id)s, %(token_hash)s, now() + make_interval(secs => %(ttl)s), %(client_addr)s)
RETURNING id, expires_at

-- name: authenticate_session
-- One statement: find a live session of an active user, and record its use at most once
-- per touch interval (so most requests write nothing).
WITH found AS (
    SELECT s.id, s.user_id, s.expires_at, s.last_used_at, u.role, u.email
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.token_hash = %(token_hash)s
      AND s.revoked_at IS NULL
      AND s.expires_at > now()
      AND u.active
), touched AS (
    UPDATE sessions SET last_used_at = now()
    FROM found
    WHERE sessions.id = found.id
      AND (found.last_used_at IS NULL
           OR found.last_used_at < now() - make_interval(secs => %(touch_after)s))
)
SELECT id, user_id, role::text, email, expires_at,
       extract(epoch FROM expires_at - now())::float8 FROM found

-- name: revoke_session_by_hash
UPDATE sessions SET revoked_at = now()
WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
RETURNING id, user_id

-- name: revoke_user_sessions
UPDATE sessions SET revoked_at = now()
WHERE user_id = %(user_id)s AND revoked_at IS NULL AND expires_at > now()
  AND (%(except_id)s::bigint IS NULL OR id <> %(except_id)s::bigint)
RETURNING id

-- API keys ------------------------------------------------------------------------------

-- name: insert_api_key
INSERT INTO api_keys (name, prefix, secret_hash, role, created_by, expires_at)
VALUES (%(name)s, %(prefix)s, %(secret_hash)s, %(role)s, %(created_by)s, %(expires_at)s)
RETURNING id, name, prefix, role::text, created_by, created_at, expires_at, last_used_at,
          revoked_at

-- name: get_api_key
SELECT id, name, prefix, role::text, created_by, created_at, expires_at, last_used_at,
       revoked_at
FROM api_keys WHERE id = %(id)s

-- name: list_api_keys
SELECT id, name, prefix, role::text, created_by, created_at, expires_at, last_used_at,
       revoked_at
FROM api_keys
WHERE %(include_revoked)s OR revoked_at IS NULL
ORDER BY id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now()
WHERE id = %(id)s AND revoked_at IS NULL
RETURNING id, name, prefix, role::text, created_by, created_at, expires_at, last_used_at,
          revoked_at

-- name: authenticate_api_key
WITH found AS (
    SELECT id, name, role, expires_at, last_used_at
    FROM api_keys
    WHERE secret_hash = %(secret_hash)s
      AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > now())
), touched AS (
    UPDATE api_keys SET last_used_at = now()
    FROM found
    WHERE api_keys.id = found.id
      AND (found.last_used_at IS NULL
           OR found.last_used_at < now() - make_interval(secs => %(touch_after)s))
)
SELECT id, name, role::text, expires_at, extract(epoch FROM expires_at - now())::float8
FROM found

-- Login throttling ----------------------------------------------------------------------

-- name: throttle_lock
-- The key as counted (account keys lowercased by PostgreSQL, as the user lookup compares
-- emails), locked for the rest of the transaction: the attempts of one key are decided
-- one after the other, and each sees the reservations of the ones before it.
SELECT keyed.key
FROM (SELECT CASE WHEN %(scope)s = 'account' THEN lower(%(key)s) ELSE %(key)s END AS key)
     AS keyed,
     LATERAL pg_advisory_xact_lock(hashtextextended('login_throttle:' || %(scope)s || ':'
                                                    || keyed.key, 0)) AS locked

-- name: throttle_state
-- Recent failures (0 once the window passed), the seconds the key is still blocked, the
-- attempts in flight (reservations younger than %(in_flight)s seconds), and the failures
-- as stored (what a success of this attempt forgives).
SELECT coalesce((SELECT CASE WHEN t.last_failure_at < now() - make_interval(secs => %(window)s)
                             THEN 0 ELSE t.failures END
                 FROM login_throttle t WHERE t.scope = %(scope)s AND t.key = %(key)s), 0),
       coalesce((SELECT greatest(extract(epoch FROM t.blocked_until - now()), 0)::float8
                 FROM login_throttle t WHERE t.scope = %(scope)s AND t.key = %(key)s), 0),
       (SELECT count(*) FROM login_attempts a
        WHERE a.scope = %(scope)s AND a.key = %(key)s
          AND a.started_at > now() - make_interval(secs => %(in_flight)s)),
       coalesce((SELECT t.failures FROM login_throttle t
                 WHERE t.scope = %(scope)s AND t.key = %(key)s), 0)

-- name: throttle_reserve
INSERT INTO login_attempts (scope, key) VALUES (%(scope)s, %(key)s)
RETURNING id

-- name: throttle_release
-- Idempotent: the reservation may be gone already.
DELETE FROM login_attempts WHERE id = ANY(%(ids)s)

-- name: throttle_fail
-- The attempt failed: count it (afresh if the last failure left the window) and drop its
-- reservation, in one statement: whoever reads the key sees one or the other.
WITH released AS (
    DELETE FROM login_attempts WHERE id = %(id)s
)
INSERT INTO login_throttle AS t (scope, key, failures, last_failure_at)
VALUES (%(scope)s, %(key)s, 1, now())
ON CONFLICT (scope, key) DO UPDATE
SET failures = CASE
        WHEN t.last_failure_at < now() - make_interval(secs => %(window)s) THEN 1
        ELSE t.failures + 1
    END,
    last_failure_at = now()
RETURNING failures

-- name: throttle_block
UPDATE login_throttle
SET blocked_until = greatest(blocked_until, now() + make_interval(secs => %(seconds)s))
WHERE scope = %(scope)s AND key = %(key)s

-- name: throttle_forgive_account
-- The right password: forget the account's failures counted before the attempt began
-- (%(before)s); failures of attempts that ran alongside it stay, with the block they set
-- (no block was in force when it began, or it would have been refused).
WITH forgiven AS (
    UPDATE login_throttle SET failures = failures - %(before)s
    WHERE scope = 'account' AND key = %(key)s AND failures > %(before)s
)
DELETE FROM login_throttle
WHERE scope = 'account' AND key = %(key)s AND failures <= %(before)s

-- name: throttle_recently_audited
-- Refusals of one blocked key are audited at most once a minute (the log is append-only:
-- an attacker must not be able to fill it for free).
SELECT EXISTS (
    SELECT 1 FROM audit_events
    WHERE target_type = %(target_type)s AND target_id = %(target_id)s
      AND action = 'auth.login_throttled' AND at > now() - interval '60 seconds'
)

-- Housekeeping ------------------------------------------------------------------------

-- name: prune_sessions
-- Sessions expired for longer than the grace period (revoked ones expire too: every
-- session has an expiry). Uses sessions_expires; bounded per statement.
DELETE FROM sessions
WHERE id IN (
    SELECT id FROM sessions
    WHERE expires_at < now() - make_interval(secs => %(keep)s)
    LIMIT %(batch)s
)

-- name: prune_login_throttle
-- Counters that would start afresh anyway (idle past the window) and block nobody; and
-- reservations of attempts whose process died (they stopped counting long before: an hour
-- is far beyond throttle.IN_FLIGHT_SECONDS).
WITH dead_reservations AS (
    DELETE FROM login_attempts
    WHERE started_at < now() - make_interval(secs => greatest(%(window)s, 3600))
)
DELETE FROM login_throttle
WHERE last_failure_at < now() - make_interval(secs => %(window)s)
  AND (blocked_until IS NULL OR blocked_until < now())
