-- Issue 16: API processes cache the principal of a bearer token for a few seconds; any
-- change that could end or narrow a credential notifies them on the channel
-- 'triaged_auth' at commit, whichever code or tool made it, and each process then drops
-- its whole cache before it serves another request (daemon/modules/auth/credential_cache.py).
-- Column lists: the touches of last_used_at (once a minute per credential) notify nobody.

CREATE FUNCTION auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('triaged_auth', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_auth_changed
    AFTER UPDATE OF user_id, token_hash, expires_at, revoked_at OR DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER sessions_auth_truncated
    AFTER TRUNCATE ON sessions FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();

CREATE TRIGGER api_keys_auth_changed
    AFTER UPDATE OF name, secret_hash, role, expires_at, revoked_at OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER api_keys_auth_truncated
    AFTER TRUNCATE ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();

CREATE TRIGGER users_auth_changed
    AFTER UPDATE OF email, role, active, password_hash OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER users_auth_truncated
    AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();

-- Issue 16: list pages built as JSON by the server (daemon/api/routes/*.py *_VIEW_SQL):
-- a time as the API writes it, ISO 8601 in UTC with a Z, microseconds only when not
-- zero (as Python's datetime.isoformat()). NULL stays NULL.
CREATE FUNCTION api_time(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC',
                   CASE WHEN extract(microseconds FROM t) % 1000000 = 0
                        THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
                        ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$$;
