-- The queue's interface for SQL: enqueue jobs from a statement of the caller's own (a
-- data-modifying CTE), inside the caller's transaction, without a round trip of its
-- own. Same rows and the same NOTIFY as daemon.queue.enqueue_many without dedup keys:
-- max_attempts from the argument, else the queue's policy, else 5. Returns how many.
CREATE FUNCTION enqueue_jobs(queue_name text, payloads jsonb, attempts integer DEFAULT NULL)
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
                    (SELECT q.max_attempts FROM queues q WHERE q.name = queue_name), 5)
    FROM jsonb_array_elements(payloads) WITH ORDINALITY AS p(payload, n)
    ORDER BY p.n;
    GET DIAGNOSTICS created = ROW_COUNT;
    PERFORM pg_notify('triaged_queue', queue_name);
    RETURN created;
END
$$;
