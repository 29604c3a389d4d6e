-- serve (issue 5): byte offsets of followed files, committed in the same transaction as the
-- rows read from them; and the runs of scheduled jobs (one row per job and slot, so that among
-- several replicas a slot runs at most once).
CREATE TABLE follow_offsets (
    path text PRIMARY KEY,
    dev bigint NOT NULL,
    inode bigint NOT NULL,
    byte_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schedule_runs (
    job text NOT NULL,
    slot timestamptz NOT NULL,
    runner text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    ok boolean,
    error text,
    PRIMARY KEY (job, slot)
);
