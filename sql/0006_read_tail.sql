-- kasm-db migration 6 (issue 24): the order of the read side's live tail.
--
-- `txid` is the id of the transaction that wrote the row (txid_current(), epoch-extended, so
-- it never wraps). A follower emits rows in (txid, log_id) order, and only rows of
-- transactions below the oldest one still running (txid_snapshot_xmin), which are final: a
-- row committed late with an earlier ingest_date is still emitted, exactly once, and a
-- reconnect resumes after the last row it printed. Rows stored before this migration keep a
-- NULL txid: they are older than any tail. Adding a nullable column and then a default
-- rewrites nothing. Every row of one COPY shares its txid, so the btree deduplicates them
-- into posting lists (PostgreSQL 13+) and grows only at its right edge.
-- Runs with search_path set to database.schema.

ALTER TABLE logs ADD COLUMN txid bigint;
ALTER TABLE logs ALTER COLUMN txid SET DEFAULT txid_current();
CREATE INDEX logs_txid_idx ON logs (txid);
