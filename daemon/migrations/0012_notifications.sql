-- Escalation and notifications (issue 14): notification channels, one delivery per
-- (event, channel) with a stable id, and the key that makes each escalation level fire
-- once per case and ladder cycle.

-- A channel an admin configured. config holds what may be shown (url, to, host, ...);
-- secret what may not (a webhook's signing secret, an SMTP password): write-only.
CREATE TABLE notification_channels (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    kind          text NOT NULL CHECK (kind IN ('webhook', 'email')),
    config        jsonb NOT NULL DEFAULT '{}',
    secret        text,
    events        text[] NOT NULL DEFAULT '{}'
                  CHECK (events <@ ARRAY['opened', 'escalated', 'resolved']),
    min_severity  text NOT NULL DEFAULT 'low'
                  CHECK (min_severity IN ('low', 'medium', 'high', 'critical')),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Each level of a case's ladder fires once per cycle (cycle: how many times the case was
-- reopened before), however many processes run the check and whatever crashes between.
CREATE TABLE case_escalations (
    case_id   bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    cycle     integer NOT NULL CHECK (cycle >= 0),
    level     integer NOT NULL CHECK (level > 0),
    event_id  bigint,                  -- its escalated event
    fired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, cycle, level)
);

-- One delivery of one case event to one channel; its id is the webhook-id (the same on
-- every retry). status: pending until delivered, or failed once out of attempts.
CREATE TABLE notification_deliveries (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id      bigint NOT NULL REFERENCES case_events (id) ON DELETE CASCADE,
    case_id       bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    channel_id    bigint NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    event_kind    text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (event_id, channel_id)
);
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id);
CREATE INDEX notification_deliveries_case ON notification_deliveries (case_id);

-- Which channels hear of a case event, decided in the transaction that records it (so a
-- notification exists exactly when its event does): an opened, escalated or resolved
-- event goes to every enabled channel subscribed to its kind whose min_severity the
-- case's severity reaches; an escalated event also goes to the channels its level names
-- (detail.channels). Each delivery is a job on notifications.deliver.
CREATE FUNCTION case_event_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payloads jsonb;
BEGIN
    IF NEW.kind NOT IN ('opened', 'escalated', 'resolved') THEN
        RETURN NULL;
    END IF;
    WITH target AS (
        SELECT ch.id
        FROM notification_channels ch, cases c
        WHERE c.id = NEW.case_id AND ch.enabled
          AND ((NEW.kind = ANY (ch.events)
                AND array_position(ARRAY['low', 'medium', 'high', 'critical'], c.severity)
                    >= array_position(ARRAY['low', 'medium', 'high', 'critical'],
                                      ch.min_severity))
               OR (NEW.kind = 'escalated'
                   AND jsonb_typeof(NEW.detail -> 'channels') = 'array'
                   AND (NEW.detail -> 'channels') ? ch.name))
    ), created AS (
        INSERT INTO notification_deliveries (event_id, case_id, channel_id, event_kind)
        SELECT NEW.id, NEW.case_id, t.id, NEW.kind FROM target t ORDER BY t.id
        ON CONFLICT (event_id, channel_id) DO NOTHING
        RETURNING id
    )
    SELECT jsonb_agg(jsonb_build_object('delivery_id', created.id::text)) INTO payloads
    FROM created;
    PERFORM enqueue_jobs('notifications.deliver', payloads);
    RETURN NULL;
END;
$$;
CREATE TRIGGER case_event_notifications AFTER INSERT ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_event_notifications();
