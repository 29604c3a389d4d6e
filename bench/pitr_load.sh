#!/usr/bin/env bash
# Point-in-time recovery under load (issue 25), in one run on one throwaway cluster (fsync on):
#  1. ingest through `kasm-db serve` (bench/serve_load.py: C clients posting B-record batches for
#     D seconds) 2 x RUNS + 1 times, alternating: without a WAL stream, with `kasm-db wal stream`
#     storing every segment to a directory target, without, ..., without; acknowledged records/s, each
#     run with the stream against the mean of its neighbours (bar: at most 10% slower);
#  2. the crash: with the stream running and a base backup taken, a writer commits numbered
#     rows (one transaction each, its commit time kept) while the primary and the stream are
#     killed with SIGKILL at once (the host lost) and the primary's data directory deleted; `restore --physical --to-latest` onto a new directory; the
#     rows committed before the crash that are missing, and the span from the last commit
#     recovered to the crash (bar: at most backup.wal_flush).
# Usage: bench/pitr_load.sh [C=8] [B=500] [D=20] [FLUSH_S=10] [RUNS=4]
# FLOOR=1: the runs "with the stream" run Debian's pg_receivewal alone on the slot instead of
# `kasm-db wal stream` (no compression, no upload), and the crash is skipped: the ratio the
# stream's third-party part leaves, which no work of kasm-db's can raise.
# STAGING=DIR: the stream's staging directory (default: in the bench's work folder, on disk as in
# production; a tmpfs one measures what pg_receivewal's writes to disk cost).
# (RUNS runs with the stream, RUNS + 1 without: on 2 cores one pair of runs varies by 10%.)
source "$(dirname "$0")/lib.sh"
C=${1:-8}; B=${2:-500}; D=${3:-20}; FLUSH_S=${4:-10}; RUNS=${5:-4}
[ -x "$KASM_DB" ] || (cd "$ROOT" && cargo build --release --quiet)
machine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
PORT=$(start_cluster main)
psql_k() { "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$PORT" -U postgres -d k "$@"; }
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE k"
export KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/k"
"$KASM_DB" -q migrate >/dev/null
"$KASM_DB" gen-logs 100000 > "$WORK/logs.ndjson"
TARGET=$WORK/target; mkdir -p "$TARGET"; [ "$(id -u)" -eq 0 ] && chown postgres "$TARGET"
export KASM_DB_BACKUP_FILE_MODE=0644 KASM_DB_BACKUP_WAL_FLUSH=${FLUSH_S}s

HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM
KASM_DB_SERVER_LISTEN=127.0.0.1:$HTTP_PORT KASM_DB_SERVER_TOKEN=$TOKEN \
  "$KASM_DB" -q serve 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$HTTP_PORT)).close()" 2>/dev/null && break
  sleep 0.2
done
load() {  # load NAME: one run of the ingest load; records/s into $rate
  python3 "$BENCH_DIR/serve_load.py" "$HTTP_PORT" "$TOKEN" "$WORK/logs.ndjson" "$C" "$B" "$D" > "$WORK/$1.out"
  rate=$(grep -o '[0-9,]* records/s' "$WORK/$1.out" | tr -d ',' | cut -d' ' -f1)
  echo "  $1: $(cat "$WORK/$1.out")"
}
start_stream() {
  if [ -n "${FLOOR:-}" ]; then  # pg_receivewal alone on the slot: what kasm-db cannot remove
    mkdir -p "${STAGING:-$WORK/staging}"
    "$PGBIN/pg_receivewal" -h 127.0.0.1 -p "$PORT" -U postgres --slot kasm_db --create-slot --if-not-exists
    "$PGBIN/pg_receivewal" -h 127.0.0.1 -p "$PORT" -U postgres -D "${STAGING:-$WORK/staging}" --slot kasm_db 2>>"$WORK/stream.log" &
    STREAM=$!
  else
  "$KASM_DB" wal stream --to "$TARGET" --staging-dir "${STAGING:-$WORK/staging}" 2>>"$WORK/stream.log" &
  STREAM=$!
  fi
  for _ in $(seq 300); do
    [ "$(psql_k -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kasm_db' AND active")" = 1 ] && return
    sleep 0.1
  done
  echo "the stream did not start: $(cat "$WORK/stream.log")"; exit 1
}

echo "== ingest with and without the WAL stream ($C clients x $B records, $D s each, alternating)"
# The table grows through the runs and the rate drifts with it: runs alternate, and each run with
# the stream is set against the mean of the runs just before and after it.
load without_1; prev=$rate; ratios=()
for k in $(seq "$RUNS"); do
  start_stream
  load "with_stream_$k"; with=$rate
  cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo "?"; }
  if [ -n "${FLOOR:-}" ]; then
    echo "    the stream's CPU so far: pg_receivewal alone $(cpu "$STREAM") s, the primary's walsender $(cpu "$(pgrep -f 'postgres: walsender' | head -1)") s"
  else
    echo "    the stream's CPU so far: kasm-db $(cpu "$STREAM") s, pg_receivewal $(cpu "$(pgrep -P "$STREAM" pg_receivewal | head -1)") s, the primary's walsender $(cpu "$(pgrep -f 'postgres: walsender' | head -1)") s"
  fi
  kill -TERM "$STREAM"; wait "$STREAM" || true
  # The next run with the stream starts where the primary is: a slot kept through a run without
  # would hand it that run's WAL too (a backlog a stream that always runs never has).
  psql_k -c "SELECT pg_drop_replication_slot('kasm_db')" >/dev/null
  rm -rf "${STAGING:-$WORK/staging}"
  load "without_$((k + 1))"
  ratios+=("$(python3 -c "print($with / (($prev + $rate) / 2))")"); prev=$rate
done
kill -TERM "$SERVE"; wait "$SERVE" || true
echo "RESULT pitr_stream_ingest ratio=$(python3 -c "r = [$(IFS=,; echo "${ratios[*]}")]; print(f'{sum(r) / len(r):.3f} (runs ' + ', '.join(f'{x:.3f}' for x in r) + ')')")  (with the stream / without; bar >= 0.90)"

[ -n "${FLOOR:-}" ] && { echo "(FLOOR: pg_receivewal alone, no kasm-db; no crash test)"; exit 0; }
echo "== the crash: data lost with backup.wal_flush = ${FLUSH_S}s"
start_stream
"$KASM_DB" -q backup --physical --to "$TARGET" >/dev/null
psql_k -c "CREATE TABLE crash (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"
# The writer: one row per transaction; each commit's return time on its own line.
python3 - "$PORT" "$WORK/commits" "$PGBIN/psql" <<'PY' &
import subprocess, sys, time
port, out, psql = sys.argv[1], sys.argv[2], sys.argv[3]
p = subprocess.Popen([psql, "-X", "-q", "-At", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "k"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
with open(out, "w", buffering=1) as f:
    n = 0
    while True:
        n += 1
        try:
            p.stdin.write(f"INSERT INTO crash (n) VALUES ({n}) RETURNING n;\n"); p.stdin.flush()
            line = p.stdout.readline()
        except (BrokenPipeError, OSError):
            break
        if not line:
            break
        f.write(f"{line.strip()} {time.time():.6f}\n")
        time.sleep(0.01)
PY
WRITER=$!
sleep $((FLUSH_S * 3))
# The worst case: the primary and the stream die at once (one host lost), so what the archive
# holds is what the stream had stored by then: completed segments and the last partial copy.
crash_at=$(now)
postmaster=$(head -1 "$WORK/main/data/postmaster.pid")
kill -KILL "$postmaster" "$STREAM"
wait "$WRITER" 2>/dev/null || true
wait "$STREAM" 2>/dev/null || true
pkill -KILL -f "pg_receivewal.*$WORK/staging" 2>/dev/null || true
rm -rf "$WORK/main/data"
committed=$(tail -1 "$WORK/commits" | cut -d' ' -f1)
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
t0=$(now)
"$KASM_DB" restore --physical --from "$TARGET" --data-dir "$WORK/restored/data" --to-latest --start --port "$RPORT" --json > "$WORK/restore.json" 2>"$WORK/restore.log"
t1=$(now)
recovered=$("$PGBIN/psql" -X -At -h "$WORK/restored/data" -p "$RPORT" -U postgres -d k -c "SELECT count(*), coalesce(max(n), 0), coalesce(extract(epoch FROM max(at)), 0) FROM crash")
as_pg "$PGBIN/pg_ctl" -D "$WORK/restored/data" -m fast stop >/dev/null
IFS='|' read -r count maxn last_at <<<"$recovered"
[ "$count" = "$maxn" ] || { echo "rows 1..$maxn not all there: $count"; exit 1; }
missing=$((committed - maxn))
lost_s=$(python3 -c "print(f'{$crash_at - $last_at:.2f}')")
echo "  committed before the crash: $committed rows (the last at $(tail -1 "$WORK/commits" | cut -d' ' -f2)); recovered: rows 1..$maxn; missing: $missing"
echo "  restore to latest: $(elapsed "$t0" "$t1") s; recovered_to $(python3 -c "import json; print(json.load(open('$WORK/restore.json'))['recovered_to'])")"
echo "RESULT pitr_crash_lost seconds=$lost_s rows=$missing  (the last commit recovered to the crash; bar <= ${FLUSH_S} s)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
