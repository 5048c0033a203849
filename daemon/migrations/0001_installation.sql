-- The installation: one row that identifies this triaged database.
CREATE TABLE installation (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO installation DEFAULT VALUES;
