-- Declared (built-in) schedules: the ones a module declares in code and the process
-- upserts at start (daemon.queue.declared_schedules). An operator's schedules keep
-- declared = false and are never touched by that sync.
ALTER TABLE schedules
    ADD COLUMN declared boolean NOT NULL DEFAULT false,
    -- The timing the code declared last. The stored timing differing from it means an
    -- operator changed it: a later change in the code then leaves it alone.
    ADD COLUMN declared_cron text,
    ADD COLUMN declared_interval_seconds double precision,
    ADD COLUMN declared_timezone text,
    -- Set when the code stopped declaring the schedule and the sync disabled it;
    -- enabled_when_retired is the flag it had then, restored if it is declared again.
    ADD COLUMN retired_at timestamptz,
    ADD COLUMN enabled_when_retired boolean;
