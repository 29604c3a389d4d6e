-- kasm-db migration 4: the admin UI's filter indexes on `logs` become single-column.
--
-- Migration 1 led each btree with the filter column and added ingest_date, so every entry was
-- distinct and btree deduplication (PostgreSQL 13+) could not apply: 48 MB of index per 300k
-- records. On the column alone, the few hosts, users and levels of a Kasm deployment collapse
-- into posting lists: 6.5 MB for the same records, and ingest spends a third less on index
-- upkeep (bench/ingest.sh). Time ranges are served by the BRIN index on ingest_date and by
-- partition pruning (one partition per hour or day), which the planner combines with these
-- in a bitmap AND. Runs with search_path set to database.schema.

DROP INDEX logs_levelname_idx;
DROP INDEX logs_host_idx;
DROP INDEX logs_kasm_user_name_idx;

CREATE INDEX logs_levelname_idx ON logs_logs (levelname);
CREATE INDEX logs_host_idx ON logs (host);
CREATE INDEX logs_kasm_user_name_idx ON logs (kasm_user_name);
