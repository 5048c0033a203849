-- Emails are stored in their Unicode NFKC form (daemon/modules/auth/users.py,
-- check_email), and typed ones are looked up in it: bring the addresses stored before to
-- that form, so that their accounts are still found. Each change is audited
-- (user.email_normalized, actor system, old and new address).
--
-- An address is left as it was when its normal form is taken by another account
-- (ignoring case, as the unique index users_email_key compares), or would be by two:
-- those are look-alikes for an admin to decide on; find them with
--   SELECT id, email FROM users WHERE email IS NOT NFKC NORMALIZED;
-- Addresses with control or invisible characters, or mixing Latin with Greek or Cyrillic
-- in a label, are not changed either (nothing here may guess what was meant): logins
-- refuse control and invisible characters, so such an account no longer logs in; an
-- admin deletes it, or recreates it under a clean address.
--
-- normalize() needs a UTF8 database: in another encoding this changes nothing, and such
-- addresses are found by their exact spelling only, as before.
DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RETURN;
    END IF;
    WITH normal AS (
        SELECT id, email AS old_email, btrim(normalize(email, NFKC)) AS email
        FROM users
        WHERE email IS NOT NFKC NORMALIZED
    ), unique_targets AS (
        SELECT n.id, n.old_email, n.email
        FROM normal n
        WHERE length(n.email) BETWEEN 3 AND 254
          AND NOT EXISTS (
              SELECT 1 FROM users u WHERE lower(u.email) = lower(n.email) AND u.id <> n.id)
          AND NOT EXISTS (
              SELECT 1 FROM normal o WHERE lower(o.email) = lower(n.email) AND o.id <> n.id)
    ), changed AS (
        UPDATE users SET email = t.email, updated_at = now()
        FROM unique_targets t
        WHERE users.id = t.id
        RETURNING users.id, t.old_email, t.email
    )
    INSERT INTO audit_events (actor_type, action, target_type, target_id, request_id, details)
    SELECT 'system', 'user.email_normalized', 'user', c.id::text, 'migration-0009',
           jsonb_build_object('email', jsonb_build_array(c.old_email, c.email))
    FROM changed c;
END
$$;
