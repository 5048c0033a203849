-- The job queue engine (daemon/queue): jobs, per-queue policies, cron schedules.

CREATE TYPE job_state AS ENUM ('created', 'retry', 'active', 'completed', 'cancelled', 'failed');

-- Per-queue policy. A queue without a row uses the defaults below.
CREATE TABLE queues (
    name                      text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    paused                    boolean NOT NULL DEFAULT false,
    global_concurrency        integer CHECK (global_concurrency > 0),
    max_attempts              integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    backoff_base_seconds      double precision NOT NULL DEFAULT 1 CHECK (backoff_base_seconds >= 0),
    backoff_max_seconds       double precision NOT NULL DEFAULT 600 CHECK (backoff_max_seconds >= 0),
    timeout_seconds           double precision CHECK (timeout_seconds > 0),
    dead_letter_queue         text,
    retain_completed_seconds  double precision CHECK (retain_completed_seconds >= 0),
    retain_failed_seconds     double precision CHECK (retain_failed_seconds >= 0),
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue                 text NOT NULL,
    state                 job_state NOT NULL DEFAULT 'created',
    payload               jsonb NOT NULL DEFAULT '{}',
    priority              integer NOT NULL DEFAULT 0,
    run_at                timestamptz NOT NULL DEFAULT now(),
    attempts              integer NOT NULL DEFAULT 0,
    max_attempts          integer NOT NULL CHECK (max_attempts > 0),
    backoff_base_seconds  double precision,
    backoff_max_seconds   double precision,
    timeout_seconds       double precision,
    dedup_key             text,
    lease_token           uuid,
    lease_expires_at      timestamptz,
    worker                text,
    last_error            text,
    result                jsonb,
    dead_letter_of        bigint,
    created_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    CHECK (state <> 'active' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- Fetch: the next available jobs of one queue, highest priority first, then oldest.
CREATE INDEX jobs_available ON jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('created', 'retry');
-- Leases: expired ones for the rescuer; active ones per queue for the global cap.
CREATE INDEX jobs_active ON jobs (queue, lease_expires_at) WHERE state = 'active';
-- Retention: finished jobs by age.
CREATE INDEX jobs_finished ON jobs (state, finished_at)
    WHERE state IN ('completed', 'cancelled', 'failed');
-- Dedup: at most one live job per (queue, key).
CREATE UNIQUE INDEX jobs_dedup ON jobs (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('created', 'retry', 'active');

-- Cron and interval schedules: they only enqueue jobs.
CREATE TABLE schedules (
    name              text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    cron              text,
    interval_seconds  double precision CHECK (interval_seconds > 0),
    timezone          text NOT NULL DEFAULT 'UTC',
    queue             text NOT NULL,
    payload           jsonb NOT NULL DEFAULT '{}',
    enabled           boolean NOT NULL DEFAULT true,
    last_slot         timestamptz,
    last_fired_at     timestamptz,
    last_job_id       bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);

-- One row per fired slot: the unique key makes each slot fire once, however many
-- schedulers run.
CREATE TABLE schedule_fires (
    schedule   text NOT NULL REFERENCES schedules (name) ON DELETE CASCADE,
    slot       timestamptz NOT NULL,
    job_id     bigint,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, slot)
);

-- A queue table churns: vacuum it early rather than at 20% dead rows.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE schedule_fires SET (autovacuum_vacuum_scale_factor = 0.05);
