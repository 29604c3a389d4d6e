-- kasm-db migration 3: size samples, recorded by `serve` on the schedule.size_sample cron and
-- read by `size` (growth trend) and `report` (sizes over time). One row per sample; bytes only,
-- so that sampling never scans a table. Runs with search_path set to database.schema.

CREATE TABLE size_samples (
    sampled_at          timestamptz NOT NULL DEFAULT now(),
    database_bytes      bigint      NOT NULL,
    logs_debug_bytes    bigint      NOT NULL DEFAULT 0,
    logs_logs_bytes     bigint      NOT NULL DEFAULT 0,
    logs_rows_estimate  bigint      NOT NULL DEFAULT 0
);

COMMENT ON TABLE size_samples IS 'created by kasm-db migrate: database and logs sizes over time';

CREATE INDEX size_samples_sampled_at_idx ON size_samples (sampled_at);
