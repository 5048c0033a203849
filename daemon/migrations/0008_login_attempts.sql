-- Login attempts in flight (daemon/modules/auth/throttle.py). An attempt is reserved here
-- before its password is checked and removed when the outcome is known; login_throttle
-- counts failures only, so a correct password is never counted as one. A reservation
-- whose process died stops counting after a minute (throttle.IN_FLIGHT_SECONDS) and is
-- deleted by the auth housekeeping.
CREATE TABLE login_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope       text NOT NULL CHECK (scope IN ('account', 'address')),
    key         text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_key ON login_attempts (scope, key, started_at);

COMMENT ON TABLE login_throttle IS
    'Failed logins (and wrong current passwords), never attempts in flight: see login_attempts';
