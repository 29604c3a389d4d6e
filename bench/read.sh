#!/usr/bin/env bash
# The read side (issue 24), side by side in one run on a Kasm-shaped store of R records (default
# 10M) received over 7 days (1008 slices of 10 minutes through `kasm-db ingest --received-at`):
#  - the newest 100 for a host + level filter: `kasm-db logs` vs the floor, psql fetching those
#    same 100 rows by log_id (with the ingest_date each id carries, so the partitions prune; also
#    shown: by log_id alone, which scans, as kasm-db keeps no index on log_id);
#  - --grep over the last 24 h (a rare and a common term) and the 24 h volume histogram (the read
#    API of a running `serve`) vs psql running the equivalent SQL on the same rows;
#  - live tail: p99 from a writer's 200 to the record on a `kasm-db logs -f`'s stdout, while
#    bench/serve.sh's load (8 writers, batches of 500) runs;
#  - what the read side adds to ingest (migration 6's txid column and its btree): kasm-db ingest
#    of N records into the schema as it is and with both removed, each against psql \copy.
# Each timing is the median of REPS whole-command runs (process start included on both sides).
# Usage: bench/read.sh [R=10000000] [N=300000]   REPS (default 5)
source "$(dirname "$0")/lib.sh"
R=${1:-10000000}; N=${2:-300000}; REPS=${REPS:-5}
[ -x "$KASM_DB" ] || (cd "$ROOT" && cargo build --release --quiet)
machine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
PORT=$(start_cluster main)
PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "CREATE DATABASE k" -c "CREATE DATABASE j" -c "CREATE DATABASE base"
export KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/k"
"$KASM_DB" -q migrate >/dev/null

# The store: 1008 slices of 10 minutes (each slice's records share its receive time), newest last.
PER=$(( R / 1008 ))
"$KASM_DB" gen-logs "$PER" > "$WORK/slice.ndjson"
t0=$(now)
for m in $(seq 10070 -10 0); do
  "$KASM_DB" -q ingest --received-at "$(date -u -d "$m minutes ago" +%Y-%m-%dT%H:%M:%SZ)" "$WORK/slice.ndjson" >/dev/null
done
t1=$(now)
"${PSQL[@]}" -d k -c "VACUUM ANALYZE logs" -c "CHECKPOINT"
rows=$("${PSQL[@]}" -d k -At -c "SELECT count(*) FROM logs")
echo "store: $rows records over 7 days, $("${PSQL[@]}" -d k -At -c "SELECT pg_size_pretty(sum(pg_total_relation_size(relid))) FROM pg_partition_tree('logs')"), built in $(elapsed "$t0" "$t1") s"

median() {  # median CMD...: run REPS times, print the median wall time in seconds
  local ts=() t0 t1
  for _ in $(seq "$REPS"); do t0=$(now); "$@" >/dev/null; t1=$(now); ts+=("$(elapsed "$t0" "$t1")"); done
  printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}

# 1. The newest 100 for a host + level filter.
"$KASM_DB" logs -n 100 --host kasm-web-1 --level error --json > "$WORK/newest.ndjson"
[ "$(wc -l < "$WORK/newest.ndjson")" = 100 ] || { echo "expected 100 records"; exit 1; }
python3 - "$WORK/newest.ndjson" > "$WORK/floor.sql" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ids = ",".join(r["log_id"] for r in recs)
dates = ",".join('"' + r["ingest_date"] + '"' for r in recs)
print(f"SELECT log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data FROM logs WHERE log_id = ANY('{{{ids}}}'::uuid[]) AND ingest_date = ANY('{{{dates}}}'::timestamptz[]);")
print(f"SELECT log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data FROM logs WHERE log_id = ANY('{{{ids}}}'::uuid[]);")
PY
sed -n 1p "$WORK/floor.sql" > "$WORK/floor_dated.sql"; sed -n 2p "$WORK/floor.sql" > "$WORK/floor_id.sql"
[ "$("${PSQL[@]}" -d k -At -f "$WORK/floor_dated.sql" | wc -l)" = 100 ] || { echo "floor query does not find the 100"; exit 1; }
ours=$(median "$KASM_DB" logs -n 100 --host kasm-web-1 --level error --json)
floor=$(median "${PSQL[@]}" -d k -At -f "$WORK/floor_dated.sql")
floor_id=$(median "${PSQL[@]}" -d k -At -f "$WORK/floor_id.sql")
echo
echo "== newest 100, host + level"
echo "kasm-db logs -n 100 --host --level:          ${ours} s"
echo "psql, those 100 by log_id + ingest_date:     ${floor} s   ratio: $(ratio "$ours" "$floor")  (bar <= 3)"
echo "psql, those 100 by log_id alone (scans):     ${floor_id} s   ratio: $(ratio "$ours" "$floor_id")"
echo "RESULT newest_ratio $(ratio "$ours" "$floor") ours_s=$ours floor_s=$floor"

# 2. --grep over the last 24 h, a rare and a common term, vs the same SQL in psql.
SINCE=$(date -u -d '24 hours ago' +%Y-%m-%dT%H:%M:%SZ)
COLS="log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data, coalesce(txid, 0)"
for term in "request_kasm for user77@" "get_user_images"; do
  like=$(printf '%s' "$term" | sed "s/'/''/g")
  echo "SELECT $COLS FROM logs WHERE message ILIKE '%$like%' AND ingest_date >= '$SINCE' ORDER BY ingest_date DESC, log_id DESC LIMIT 100;" > "$WORK/grep.sql"
  ours=$(median "$KASM_DB" logs -n 100 --grep "$term" --since "$SINCE" --json)
  theirs=$(median "${PSQL[@]}" -d k -At -f "$WORK/grep.sql")
  matches=$("${PSQL[@]}" -d k -At -c "SELECT count(*) FROM logs WHERE message ILIKE '%$like%' AND ingest_date >= '$SINCE'")
  echo
  echo "== --grep \"$term\" over 24 h ($matches matches)"
  echo "kasm-db logs --grep --since 24h:  ${ours} s"
  echo "psql, the same SQL:               ${theirs} s   ratio: $(ratio "$ours" "$theirs")  (bar <= 1.2)"
  echo "RESULT grep_ratio $(ratio "$ours" "$theirs") term=\"$term\" ours_s=$ours psql_s=$theirs"
done

# 3. The 24 h volume histogram through serve's read API vs the same SQL in psql.
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM; RTOKEN=read-$RANDOM$RANDOM
KASM_DB_SERVER_LISTEN=127.0.0.1:$HTTP_PORT KASM_DB_SERVER_TOKEN=$TOKEN KASM_DB_SERVER_READ_TOKEN=$RTOKEN \
  "$KASM_DB" -q serve 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP_PORT/api/__healthcheck" >/dev/null 2>&1 && break; sleep 0.2; done
echo "SELECT to_timestamp(floor(extract(epoch FROM ingest_date)::float8 / 900::float8) * 900::float8) AS bucket, levelname, count(*) FROM logs WHERE ingest_date >= '$SINCE' GROUP BY 1, 2 ORDER BY 1, 2;" > "$WORK/volume.sql"
ours=$(median curl -fs -H "Authorization: Bearer $RTOKEN" "http://127.0.0.1:$HTTP_PORT/api/v1/logs/volume?since=$SINCE&bucket=15m")
theirs=$(median "${PSQL[@]}" -d k -At -f "$WORK/volume.sql")
echo
echo "== 24 h volume histogram (15 min buckets, per level)"
echo "GET /api/v1/logs/volume (curl):   ${ours} s"
echo "psql, the same SQL:               ${theirs} s   ratio: $(ratio "$ours" "$theirs")  (bar <= 1.2)"
echo "RESULT volume_ratio $(ratio "$ours" "$theirs") ours_s=$ours psql_s=$theirs"

# 4. Live tail latency under bench/serve.sh's load.
"$KASM_DB" gen-logs 100000 > "$WORK/load.ndjson"
echo
echo "== live tail under load (8 writers, batches of 500, 20 s)"
python3 "$BENCH_DIR/serve_load.py" "$HTTP_PORT" "$TOKEN" "$WORK/load.ndjson" 8 500 20 > "$WORK/load.out" &
LOAD=$!
python3 "$BENCH_DIR/tail_probe.py" "$KASM_DB" "$HTTP_PORT" "$TOKEN" 18
wait "$LOAD"; grep -E "records/s|p99" "$WORK/load.out" | head -3
kill -TERM "$SERVE"; wait "$SERVE" || true

# 5. What the read side adds to ingest: the schema as it is vs without txid's default and btree.
"$KASM_DB" gen-logs "$N" > "$WORK/ingest.ndjson"
"${PSQL[@]}" -d j -c "CREATE TABLE raw (data jsonb)"
KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/base" "$KASM_DB" -q migrate >/dev/null
"${PSQL[@]}" -d base -c "ALTER TABLE logs ALTER COLUMN txid DROP DEFAULT" -c "DROP INDEX logs_txid_idx"
echo
echo "== ingest of $N records: with the read side's txid (default + btree) and without"
for round in 1 2 3; do
  "${PSQL[@]}" -d j -c "TRUNCATE raw" -c "CHECKPOINT"; sync
  t0=$(now); "${PSQL[@]}" -d j -c "\\copy raw (data) FROM '$WORK/ingest.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"; t1=$(now)
  psql_s=$(elapsed "$t0" "$t1")
  for db in k base; do
    "${PSQL[@]}" -d "$db" -c "TRUNCATE logs" -c "CHECKPOINT"; sync
    t0=$(now); KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$KASM_DB" -q ingest "$WORK/ingest.ndjson" >/dev/null; t1=$(now)
    eval "${db}_s=$(elapsed "$t0" "$t1")"
  done
  echo "round $round: psql \\copy ${psql_s} s; with txid ${k_s} s ($(ratio "$k_s" "$psql_s")x); without ${base_s} s ($(ratio "$base_s" "$psql_s")x); txid costs $(ratio "$k_s" "$base_s")x"
  echo "RESULT ingest_ratio with=$(ratio "$k_s" "$psql_s") without=$(ratio "$base_s" "$psql_s") txid_cost=$(ratio "$k_s" "$base_s")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
