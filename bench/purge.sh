#!/usr/bin/env bash
# Purge at growing sizes (issue 15), side by side in one run on one fresh cluster. For each size M:
# M expired rows spread over 10 days (received 18 to 8 days ago: 240 hourly debug partitions and
# 10 daily ones) beside FRESH rows received now; kasm-db purge vs DELETE of the same rows from an
# identical plain table (same indexes plus a btree on ingest_date), both after a VACUUM ANALYZE
# and a CHECKPOINT; and the filesystem's floor: the time to `rm` one file of the bytes purge gave
# back, and to `rm` files of the same sizes as the ones purge emptied (a partition is 5-7
# relations, each a file or more), by one process and by two at once (purge drops the two
# classes on two connections). Then the latency of a concurrent
# `kasm-db serve` load (bench/serve.sh's client) without and with a purge of SERVE_ROWS expired
# rows running, over the whole run and over the requests in flight during the purge.
# Usage: bench/purge.sh [SIZES="400000 4000000"]
#   FRESH=100000 (also the template the expired rows are copied from), SERVE_ROWS=largest size
#   (0 skips the serve part), C=8 clients x B=500-record batches for D=20 s per serve run.
source "$(dirname "$0")/lib.sh"
SIZES=${1:-"400000 4000000"}; FRESH=${FRESH:-100000}
SERVE_ROWS=${SERVE_ROWS:-${SIZES##* }}; C=${C:-8}; B=${B:-500}; D=${D:-20}
[ -x "$KASM_DB" ] || (cd "$ROOT" && cargo build --release --quiet)
machine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
PORT=$(start_cluster main)
PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
"$KASM_DB" gen-logs "$FRESH" > "$WORK/fresh.ndjson"

# expired DB M: a migrated database with FRESH rows received now and M copies of them (new
# log_ids) received over 10 days, 18 to 8 days ago. The copies are made by the server
# (INSERT .. SELECT), into partitions named and bounded as kasm-db names them.
expired() {
  local db=$1 m=$2
  "${PSQL[@]}" -c "CREATE DATABASE $db"
  KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$KASM_DB" -q migrate >/dev/null
  KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$KASM_DB" -q ingest "$WORK/fresh.ndjson" >/dev/null
  "${PSQL[@]}" -d "$db" <<SQL
SET TIME ZONE 'UTC';
CREATE TEMP TABLE span AS SELECT date_trunc('day', now() - interval '18 days') AS start;
DO \$\$
DECLARE h timestamptz; s timestamptz := (SELECT start FROM span);
BEGIN
  FOR h IN SELECT s + k * interval '1 hour' FROM generate_series(0, 239) k LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF logs_debug FOR VALUES FROM (%L) TO (%L)',
                   'logs_debug_p' || to_char(h, 'YYYYMMDDHH24'), h, h + interval '1 hour');
  END LOOP;
  FOR h IN SELECT s + k * interval '1 day' FROM generate_series(0, 9) k LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF logs_logs FOR VALUES FROM (%L) TO (%L)',
                   'logs_logs_p' || to_char(h, 'YYYYMMDD'), h, h + interval '1 day');
  END LOOP;
END \$\$;
CREATE TEMP TABLE tmpl AS SELECT row_number() OVER () - 1 AS n, * FROM logs;
INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
  SELECT gen_random_uuid(),
         span.start + (rep * $FRESH + t.n) * (interval '10 days' / $m),
         t.log_time, t.levelname, t.host, t.application, t.kasm_user_name, t.message, t.data
  FROM span, generate_series(0, $m / $FRESH - 1) rep, tmpl t;
SQL
}

parts_bytes() {  # parts_bytes DB: bytes of every partition of logs (heap, toast, indexes)
  "${PSQL[@]}" -d "$1" -At -c "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relname LIKE 'logs\\_%\\_p%' AND c.relkind = 'r'"
}

# recreate_gone DIR: the files purge emptied or removed (files.before/after), recreated at their
# sizes alternately in DIR/a and DIR/b; prints how many.
recreate_gone() {
  python3 - "$WORK/files.before" "$WORK/files.after" "$1" <<'PY'
import os, sys
before = dict(l.split() for l in open(sys.argv[1]))
after = dict(l.split() for l in open(sys.argv[2]))
gone = [(f, int(n)) for f, n in before.items() if int(n) > 0 and int(after.get(f, 0)) == 0]
for half in ("a", "b"):
    os.makedirs(os.path.join(sys.argv[3], half))
block = b"\0" * (1 << 20)
for i, (f, n) in enumerate(gone):
    with open(os.path.join(sys.argv[3], "ab"[i % 2], f), "wb") as out:
        while n > 0:
            n -= out.write(block[:min(n, len(block))])
print(len(gone))
PY
}

declare -a ROWS
for M in $SIZES; do
  db=k$M
  # Expired partitions of a real deployment are days old: vacuumed and analyzed long ago, so no
  # autovacuum worker holds them when purge comes (purge would wait deadlock_timeout for it to
  # be cancelled). The database-wide VACUUM ANALYZE below gives both sides that state.
  t0=$(now); expired "$db" "$M"; t1=$(now)
  "${PSQL[@]}" -d "$db" -c "CREATE TABLE plain (LIKE logs INCLUDING ALL)" \
    -c "CREATE INDEX ON plain (ingest_date)" -c "CREATE INDEX ON plain (levelname)" \
    -c "INSERT INTO plain SELECT * FROM logs" -c "VACUUM ANALYZE" -c "CHECKPOINT"
  parts=$("${PSQL[@]}" -d "$db" -At -c "SELECT count(*) FILTER (WHERE c.relname LIKE 'logs\\_debug\\_p%'), count(*) FILTER (WHERE c.relname LIKE 'logs\\_logs\\_p%') FROM pg_class c WHERE c.relkind = 'r'")
  echo "== $M expired + $FRESH fresh rows built in $(elapsed "$t0" "$t1") s; partitions (debug|logs): $parts"
  sync
  t0=$(now); "${PSQL[@]}" -d "$db" -c "DELETE FROM plain WHERE ingest_date < now() - interval '7 days'"; t1=$(now)
  del_s=$(elapsed "$t0" "$t1")
  before=$(parts_bytes "$db")
  # Both start clean: the pages DELETE dirtied are written out before purge is timed.
  "${PSQL[@]}" -d "$db" -c "CHECKPOINT"; sync
  dbdir="$WORK/main/data/base/$("${PSQL[@]}" -At -c "SELECT oid FROM pg_database WHERE datname = '$db'")"
  find "$dbdir" -type f -printf '%f %s\n' > "$WORK/files.before"
  t0=$(now)
  KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$KASM_DB" -q purge --json > "$WORK/purge.json"
  t1=$(now)
  purge_s=$(elapsed "$t0" "$t1")
  after=$(parts_bytes "$db")
  find "$dbdir" -type f -printf '%f %s\n' > "$WORK/files.after"
  read -r deleted dropped deferred < <(python3 -c "import json; d=json.load(open('$WORK/purge.json')); print(d['debug_deleted'] + d['logs_deleted'], d['partitions_dropped'], len(d['deferred']))")
  [ "$deleted" = "$M" ] || { echo "purge deleted $deleted of $M"; exit 1; }
  # The floor: remove one file of the bytes purge freed, on the same filesystem, written out first.
  freed=$((before - after))
  dd if=/dev/zero of="$WORK/main/floor" bs=1M count=$((freed / 1048576)) conv=fsync status=none; sync
  t0=$(now); rm "$WORK/main/floor"; t1=$(now)
  rm_s=$(elapsed "$t0" "$t1")
  # The floor for the same files: the files purge emptied or removed, recreated at their sizes
  # (alternately in two directories), removed by one process, then again by two at once (half
  # each), as purge gives the two classes' files back on two connections.
  nfiles=$(recreate_gone "$WORK/main/floor.d"); sync
  t0=$(now); rm -r "$WORK/main/floor.d"; t1=$(now)
  files_s=$(elapsed "$t0" "$t1")
  recreate_gone "$WORK/main/floor.d" >/dev/null; sync
  t0=$(now); rm -r "$WORK/main/floor.d/a" & rm -r "$WORK/main/floor.d/b"; wait; t1=$(now)
  files2_s=$(elapsed "$t0" "$t1"); rm -rf "$WORK/main/floor.d"
  echo "DELETE ${del_s} s; purge ${purge_s} s ($dropped partitions dropped, $deferred deferred, $((freed / 1048576)) MB freed); rm of $((freed / 1048576)) MB ${rm_s} s; rm of the same $nfiles files ${files_s} s, by two processes ${files2_s} s"
  ROWS+=("| $M | ${del_s} s | ${purge_s} s | $(ratio "$purge_s" "$del_s")× | $dropped | $((freed / 1048576)) MB | ${rm_s} s | $nfiles: ${files_s} s | ${files2_s} s ($(ratio "$files2_s" "$del_s")×) | $(python3 -c "print(f'{$purge_s - $files2_s:.3f}')") s |")
  echo "RESULT purge_ratio_$M $(ratio "$purge_s" "$del_s") purge_s=$purge_s delete_s=$del_s floor_2proc_s=$files2_s floor_1proc_s=$files_s"
  "${PSQL[@]}" -c "DROP DATABASE $db"
done
echo
echo "== purge vs DELETE (target at 4M: <= 0.1x, aim 0.05x); floors: rm of one file of the bytes purge freed, and of the same files (one process; two at once, as purge's two connections)"
echo "| expired rows | DELETE | kasm-db purge | purge/DELETE | partitions dropped | freed | rm of one file that size | rm of the same files | the same, two processes (/DELETE) | purge - rm by two |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"

[ "$SERVE_ROWS" -gt 0 ] || exit 0
# Serve under load, without and with a purge of SERVE_ROWS expired rows running.
expired srv "$SERVE_ROWS"
"${PSQL[@]}" -d srv -c "CHECKPOINT"
export KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/srv"
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM
KASM_DB_SERVER_LISTEN=127.0.0.1:$HTTP_PORT KASM_DB_SERVER_TOKEN=$TOKEN "$KASM_DB" -q serve 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$HTTP_PORT)).close()" 2>/dev/null && break
  sleep 0.2
done
load() { python3 "$BENCH_DIR/serve_load.py" "$HTTP_PORT" "$TOKEN" "$WORK/fresh.ndjson" "$C" "$B" "$D" "$1"; }
echo
echo "== serve load ($C clients x $B-record batches, $D s) without a purge"
load "$WORK/quiet.trace"
echo "== the same, with kasm-db purge of $SERVE_ROWS expired rows started after $((D / 4)) s"
load "$WORK/busy.trace" & LOAD=$!
sleep $((D / 4))
p0=$(now); "$KASM_DB" -q purge --json > "$WORK/purge.json"; p1=$(now)
wait "$LOAD"
echo "purge under load: $(elapsed "$p0" "$p1") s, $(python3 -c "import json; d=json.load(open('$WORK/purge.json')); print(d['debug_deleted'] + d['logs_deleted'], 'rows,', d['partitions_dropped'], 'partitions dropped,', len(d['deferred']), 'deferred')")"
python3 - "$WORK/quiet.trace" "$WORK/busy.trace" "$p0" "$p1" <<'PY'
import sys
def load(p): return [tuple(map(float, l.split())) for l in open(p)]
def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float('nan')
quiet, busy, p0, p1 = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
during = [d for (s, d, _) in busy if s < p1 and s + d > p0]
print("| serve load | requests | p50 | p99 | max |")
print("|---|---|---|---|---|")
for name, xs in [("without purge", [d for _, d, _ in quiet]), ("with purge, whole run", [d for _, d, _ in busy]),
                 ("with purge, requests in flight during it", during)]:
    print(f"| {name} | {len(xs)} | {pct(xs, .5):.1f} ms | {pct(xs, .99):.1f} ms | {max(xs) * 1000 if xs else float('nan'):.1f} ms |")
bad = sum(1 for *_, st in busy if st != 200)
print(f"non-200 answers during the purge run: {bad}")
PY
kill -TERM "$SERVE"; wait "$SERVE" || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
