-- kasm-db migration 1: the `logs` relation of the contract.
--
-- Partitioned first by retention class (a LIST on the normalised level: DEBUG is class `debug`,
-- every other level class `logs`), then each class by RANGE of ingest_date (debug hourly, logs
-- daily, UTC). The range partitions are created ahead and on demand by kasm-db; there is no
-- DEFAULT partition, so retention is always "drop a partition", never a mass DELETE.
-- Runs with search_path set to database.schema.

CREATE TABLE logs (
    log_id          uuid        NOT NULL,
    ingest_date     timestamptz NOT NULL,
    log_time        timestamptz,
    levelname       text        NOT NULL,
    host            text,
    application     text,
    kasm_user_name  text,
    message         text,
    data            jsonb       NOT NULL
) PARTITION BY LIST (levelname);

COMMENT ON TABLE logs IS 'created by kasm-db migrate: component logs partitioned by retention class and ingest_date';

CREATE TABLE logs_debug PARTITION OF logs
    FOR VALUES IN ('DEBUG')
    PARTITION BY RANGE (ingest_date);

CREATE TABLE logs_logs PARTITION OF logs
    FOR VALUES IN ('INFO', 'WARNING', 'ERROR', 'CRITICAL')
    PARTITION BY RANGE (ingest_date);

-- The Kasm admin UI filters by time, level, host and user. ingest_date only grows, so a BRIN
-- index serves time ranges at almost no ingest cost; the others are btrees led by the filter.
-- The level index exists only on class `logs`: every row of class `debug` is DEBUG.
CREATE INDEX logs_ingest_date_brin ON logs USING brin (ingest_date);
CREATE INDEX logs_levelname_idx ON logs_logs (levelname, ingest_date);
CREATE INDEX logs_host_idx ON logs (host, ingest_date);
CREATE INDEX logs_kasm_user_name_idx ON logs (kasm_user_name, ingest_date);
