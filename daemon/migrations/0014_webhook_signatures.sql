-- Webhook sources (issue 13): the signed messages each source accepted, kept while their
-- timestamp is inside the tolerance window, so that a replayed signature is refused
-- unless it is the very request accepted before (same delivery id: a retry whose answer
-- was lost, answered with the stored receipt).
-- (A delivery's idempotency is its source_items row: identity 'delivery:<id>'.)

CREATE TABLE webhook_signatures (
    source_id   bigint NOT NULL REFERENCES sources (id),
    digest      bytea NOT NULL CHECK (length(digest) = 32),  -- SHA-256 of "<timestamp>.<body>"
    expires_at  timestamptz NOT NULL,                        -- timestamp + tolerance
    delivery_id text NOT NULL CHECK (length(delivery_id) BETWEEN 1 AND 200),  -- signed under
    PRIMARY KEY (source_id, digest)
);
CREATE INDEX webhook_signatures_expiry ON webhook_signatures (source_id, expires_at);
