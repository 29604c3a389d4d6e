#!/usr/bin/env bash
# Ingest and purge benchmarks (issue 3), side by side in one run on one fresh cluster:
#  - ingest of N generated Kasm records: kasm-db ingest vs psql \copy into a one-jsonb-column
#    table vs batched INSERTs of 50 rows (what Kasm does today);
#  - purge of M expired rows: kasm-db purge vs DELETE of the same rows from an identical plain
#    table, with the relation sizes after;
#    (bench/purge.sh measures purge at 400k and 4M rows over 10 days, with the rm floor and
#    serve latency during a purge);
#  - peak RSS of kasm-db ingest on a large file (BIG_MB, default 1024).
# Usage: bench/ingest.sh [N=300000] [M=400000]   (M=0 skips the purge part and the memory run,
#        BIG_MB=0 the memory run)
source "$(dirname "$0")/lib.sh"
N=${1:-300000}; M=${2:-400000}; BIG_MB=${BIG_MB:-1024}
[ -x "$KASM_DB" ] || (cd "$ROOT" && cargo build --release --quiet)
machine
PORT=$(start_cluster main)
PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "CREATE DATABASE k" -c "CREATE DATABASE j" -c "CREATE DATABASE i"
export KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/k"
"$KASM_DB" -q migrate >/dev/null
"$KASM_DB" gen-logs "$N" > "$WORK/logs.ndjson"
echo "input: $N records, $(du -m "$WORK/logs.ndjson" | cut -f1) MB, $(( $(stat -c %s "$WORK/logs.ndjson") / N )) bytes/record"

"${PSQL[@]}" -d j -c "CREATE TABLE raw (data jsonb)"
# psql \copy in text format would interpret backslashes; CSV with unused quote/delimiter keeps lines intact.
t0=$(now); "${PSQL[@]}" -d j -c "\\copy raw (data) FROM '$WORK/logs.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"; t1=$(now)
psql_s=$(elapsed "$t0" "$t1")
t0=$(now); "$KASM_DB" -q ingest "$WORK/logs.ndjson" >/dev/null; t1=$(now)
ours_s=$(elapsed "$t0" "$t1")
stored=$("${PSQL[@]}" -d k -At -c "SELECT count(*) FROM logs")
[ "$stored" = "$N" ] || { echo "stored $stored of $N"; exit 1; }

# Row-by-row batched INSERTs of 50 (Kasm today), on the first 30k records, scaled.
"${PSQL[@]}" -d i -c "CREATE TABLE logs (log_id uuid, ingest_date timestamptz, levelname text, host text, data jsonb)"
SAMPLE=$(( N < 30000 ? N : 30000 ))
head -n "$SAMPLE" "$WORK/logs.ndjson" | python3 "$BENCH_DIR/inserts.py" > "$WORK/inserts.sql"
t0=$(now); "${PSQL[@]}" -d i -f "$WORK/inserts.sql"; t1=$(now)
ins_s=$(python3 -c "print(f'{($t1 - $t0) * $N / $SAMPLE:.3f}')")

echo
echo "== ingest of $N records"
echo "psql \\copy (one jsonb column):     ${psql_s} s"
echo "kasm-db ingest (typed + indexes):  ${ours_s} s   ratio vs psql: $(ratio "$ours_s" "$psql_s")  (target <= 1.5, aim <= 1.0)"
echo "INSERT batches of 50 (scaled):     ${ins_s} s   kasm-db speed-up: $(ratio "$ins_s" "$ours_s")x"
echo "RESULT ingest_ratio $(ratio "$ours_s" "$psql_s") kasm_s=$ours_s psql_s=$psql_s"
[ "$M" -gt 0 ] || exit 0

# Purge: M expired rows received 8 days ago, vs DELETE of the same rows from a plain table.
"$KASM_DB" gen-logs "$M" > "$WORK/old.ndjson"
OLD=$(date -u -d '8 days ago' +%Y-%m-%dT%H:%M:%SZ)
"$KASM_DB" -q ingest --received-at "$OLD" "$WORK/old.ndjson" >/dev/null
# The same indexes as `logs` (LIKE copies the parent's: BRIN ingest_date, host, kasm_user_name;
# the levelname index lives on the logs class), plus a btree on ingest_date for DELETE's WHERE.
"${PSQL[@]}" -d k -c "CREATE TABLE plain (LIKE logs INCLUDING ALL)" \
  -c "CREATE INDEX ON plain (ingest_date)" -c "CREATE INDEX ON plain (levelname)" \
  -c "INSERT INTO plain SELECT * FROM logs" -c "VACUUM ANALYZE plain" -c "CHECKPOINT"
plain_before=$("${PSQL[@]}" -d k -At -c "SELECT pg_total_relation_size('plain')")
t0=$(now); "${PSQL[@]}" -d k -c "DELETE FROM plain WHERE ingest_date < now() - interval '7 days'"; t1=$(now)
del_s=$(elapsed "$t0" "$t1")
plain_after=$("${PSQL[@]}" -d k -At -c "SELECT pg_total_relation_size('plain')")
logs_before=$("${PSQL[@]}" -d k -At -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'logs\\_%\\_p%'")
# Both start clean: the pages DELETE dirtied are written out before purge is timed (otherwise
# that writeback lands in purge's time; DELETE itself was timed after a CHECKPOINT too).
"${PSQL[@]}" -d k -c "CHECKPOINT"; sync
t0=$(now); "$KASM_DB" -q purge --json > "$WORK/purge.json"; t1=$(now)
purge_s=$(elapsed "$t0" "$t1")
logs_after=$("${PSQL[@]}" -d k -At -c "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relname LIKE 'logs\\_%\\_p%'")
deleted=$(python3 -c "import json; d=json.load(open('$WORK/purge.json')); print(d['debug_deleted'] + d['logs_deleted'])")
echo
echo "== purge of $M expired rows (kasm-db deleted $deleted)"
echo "DELETE from a plain table:  ${del_s} s   size $((plain_before/1048576)) MB -> $((plain_after/1048576)) MB (space not returned)"
echo "kasm-db purge:              ${purge_s} s   size $((logs_before/1048576)) MB -> $((logs_after/1048576)) MB (the $N fresh rows remain)"
echo "ratio purge/DELETE: $(ratio "$purge_s" "$del_s")  (target <= 0.2, aim <= 0.01)"

if [ "$BIG_MB" -gt 0 ]; then
  per=$(( $(stat -c %s "$WORK/logs.ndjson") / N ))
  BIGN=$(( BIG_MB * 1048576 / per ))
  "$KASM_DB" gen-logs "$BIGN" > "$WORK/big.ndjson"
  "${PSQL[@]}" -c "CREATE DATABASE big"
  KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/big" "$KASM_DB" -q migrate >/dev/null
  t0=$(now)
  rss=$(KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/big" peak_rss_kb "$KASM_DB" -q ingest "$WORK/big.ndjson" 2>/dev/null | tail -n1)
  t1=$(now)
  echo
  echo "== memory: ingest of a $(du -m "$WORK/big.ndjson" | cut -f1) MB file ($BIGN records) in $(elapsed "$t0" "$t1") s: peak RSS $((rss/1024)) MiB"
fi
