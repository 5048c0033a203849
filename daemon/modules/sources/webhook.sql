-- The webhook kind's statements (loaded by name, see daemon/shared/db/queries.py).

-- name: webhook_source
SELECT id, kind, enabled, secrets, config, name, title_template, metadata, max_item_bytes
FROM sources WHERE id = %(id)s AND deleted_at IS NULL

-- name: forget_expired_signatures
DELETE FROM webhook_signatures WHERE source_id = %(source_id)s AND expires_at < now()

-- name: remember_signature
-- Nothing returned: the same signed message was accepted before (a replay, or a resent
-- request: a concurrent one waits for our commit).
INSERT INTO webhook_signatures (source_id, digest, expires_at, delivery_id)
VALUES (%(source_id)s, %(digest)s, to_timestamp(%(expires_at)s), %(delivery_id)s)
ON CONFLICT (source_id, digest) DO NOTHING
RETURNING source_id

-- name: signature_delivery
-- The delivery id a signed message was accepted under.
SELECT delivery_id FROM webhook_signatures
WHERE source_id = %(source_id)s AND digest = %(digest)s

-- name: claim_delivery
-- Nothing returned: the delivery id was seen before (a concurrent claim waits on ours).
INSERT INTO source_items (source_id, identity, state)
VALUES (%(source_id)s, %(identity)s, %(state)s)
ON CONFLICT (source_id, identity) DO NOTHING
RETURNING identity

-- name: stored_delivery
-- document_id is NULL once the retention purge deleted the document (the receipt stays).
SELECT state, document_id FROM source_items WHERE source_id = %(source_id)s AND identity = %(identity)s

-- name: record_delivery
UPDATE source_items SET document_id = %(document_id)s, state = %(state)s
WHERE source_id = %(source_id)s AND identity = %(identity)s
