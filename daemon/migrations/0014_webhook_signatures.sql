-- Webhook sources (issue 13): the signed messages each source accepted, kept while their
-- timestamp is inside the tolerance window, so that a replayed signature is refused.
-- (A delivery's idempotency is its source_items row: identity 'delivery:<id>'.)

CREATE TABLE webhook_signatures (
    source_id   bigint NOT NULL REFERENCES sources (id),
    digest      bytea NOT NULL CHECK (length(digest) = 32),  -- SHA-256 of "<timestamp>.<body>"
    expires_at  timestamptz NOT NULL,                        -- timestamp + tolerance
    PRIMARY KEY (source_id, digest)
);
CREATE INDEX webhook_signatures_expiry ON webhook_signatures (source_id, expires_at);
