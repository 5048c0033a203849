-- One definition of the queue's enqueue defaults, for SQL and Python alike: the
-- NOTIFY channel and the default max_attempts. Every enqueue statement (queries.sql,
-- enqueue_jobs() below) calls these, and Python asks them (the listener its channel, a
-- COPY enqueue its queues' max_attempts) instead of restating them. IMMUTABLE SQL functions of a constant are inlined by the planner: a
-- call costs what the literal did.
CREATE FUNCTION queue_notify_channel() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'triaged_queue';

CREATE FUNCTION queue_default_max_attempts() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 5;

-- Same signature and behaviour as 0005's, the defaults now from the functions above.
CREATE OR REPLACE FUNCTION enqueue_jobs(queue_name text, payloads jsonb, attempts integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    created integer;
BEGIN
    IF payloads IS NULL OR jsonb_typeof(payloads) <> 'array'
       OR jsonb_array_length(payloads) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO jobs (queue, payload, max_attempts)
    SELECT queue_name, p.payload,
           coalesce(attempts,
                    (SELECT q.max_attempts FROM queues q WHERE q.name = queue_name),
                    queue_default_max_attempts())
    FROM jsonb_array_elements(payloads) WITH ORDINALITY AS p(payload, n)
    ORDER BY p.n;
    GET DIAGNOSTICS created = ROW_COUNT;
    PERFORM pg_notify(queue_notify_channel(), queue_name);
    RETURN created;
END
$$;

-- A new queue policy row's max_attempts (0002 restated the 5).
ALTER TABLE queues ALTER COLUMN max_attempts SET DEFAULT queue_default_max_attempts();
