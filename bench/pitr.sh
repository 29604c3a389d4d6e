#!/usr/bin/env bash
# Point-in-time recovery (issue 25) beside pgBackRest (Debian's package) in one run, on one
# Kasm-like database (bench/kasm_like.sh: pgbench tables + kasm-db's logs):
#  - base backup: `kasm-db backup --physical` to a directory vs `pgbackrest backup --type=full`
#    to a local repository (both gzip; pgBackRest with process-max=2 like kasm-db's 2 cores),
#    time and stored size;
#  - restore to the latest point until the server answers a query: `kasm-db restore --physical
#    --to-latest --start --port P` vs `pgbackrest restore` + `pg_ctl start`, each into a new data
#    directory on its own port, asked `SELECT count(*) FROM pgbench_accounts` the same way from
#    the restore's start until it first answers (read-only while it replays: both recover on
#    their port as hot standbys), then until it is promoted.
# The cluster archives WAL to pgBackRest (archive_command) while kasm-db's `wal stream` runs, so
# each restores from its own archive. Usage: bench/pitr.sh [SCALE=50] [LOG_ROWS=400000]
# BENCH_ORDER=pgbackrest: pgBackRest's base backup first (default: kasm-db's first).
set -euo pipefail
SCALE=${1:-50}; LOG_ROWS=${2:-400000}
cd "$(dirname "$0")/.."
source bench/kasm_like.sh
command -v pgbackrest >/dev/null || { echo "pgbackrest is not installed (scripts/setup installs it)"; exit 1; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%Y-%m-%dT%H:%MZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "postgres: $("$bindir/postgres" --version); $(pgbackrest version)"
echo "database: $(( db_bytes / 1000000 )) MB"

# pgBackRest's repository and the WAL archiving it needs (a restart with archive_mode on).
repo=$work/pgbr; mkdir -p "$repo" "$work/pgbr-log" "$work/pgbr-spool"
cat > "$work/pgbackrest.conf" <<CONF
[global]
repo1-path=$repo
repo1-retention-full=2
process-max=2
compress-type=gz
log-path=$work/pgbr-log
spool-path=$work/pgbr-spool
lock-path=$work/pgbr-spool
start-fast=y
[bench]
pg1-path=$work/data
pg1-port=$port
pg1-socket-path=$work
CONF
[ "$(id -u)" = 0 ] && chown -R postgres "$work"
PGBR="pgbackrest --config=$work/pgbackrest.conf --stanza=bench"
as_pg "'$bindir/pg_ctl' -D '$work/data' -m fast stop" >/dev/null
as_pg "'$bindir/pg_ctl' -D '$work/data' -l '$work/server.log' -w -o \"-p $port -k $work -c listen_addresses='' -c fsync=off -c max_wal_size=4GB -c autovacuum=off -c archive_mode=on -c archive_command='$PGBR archive-push %p' -c max_wal_senders=10\" start" >/dev/null
as_pg "$PGBR stanza-create" >/dev/null

# kasm-db's archive: the stream running for the whole run.
kdir=$work/kasm-target; mkdir -p "$kdir"; [ "$(id -u)" = 0 ] && chown postgres "$kdir"
export KASM_DB_BACKUP_FILE_MODE=0644 KASM_DB_BACKUP_WAL_FLUSH=1s
"$BIN" wal stream --to "$kdir" --staging-dir "$work/staging" 2>"$work/stream.log" &
stream=$!
trap 'kill "$stream" 2>/dev/null || true; cleanup' EXIT
sleep 3

# BENCH_ORDER=pgbackrest takes pgBackRest's backup first (the one taken second replays less WAL).
if [ "$(id -u)" = 0 ]; then run_pg=(su postgres -s /bin/sh -c); else run_pg=(sh -c); fi
backup_kasm() {
  measure kasm_backup "$BIN" -q backup --physical --to "$kdir" --json
  k_backup_s=$secs
  k_backup_bytes=$(python3 -c "import json; print(json.load(open('$work/kasm_backup.out'))['size_bytes'])")
}
backup_pgbr() {
  measure pgbr_backup "${run_pg[@]}" "$PGBR --type=full backup"
  p_backup_s=$secs
  p_backup_bytes=$(du -sb "$repo/backup" | cut -f1)
}
if [ "${BENCH_ORDER:-kasm}" = pgbackrest ]; then backup_pgbr; backup_kasm; else backup_kasm; backup_pgbr; fi
echo "order: ${BENCH_ORDER:-kasm} first"

# A few more writes after the backups, then a switch so both archives hold them.
"$bindir/psql" -X -q -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0" \
  -c "SELECT pg_switch_wal()" >/dev/null
sleep 4
kill -TERM "$stream"; wait "$stream" || true

# Restore to the latest point, until the restored server answers.
newport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(newport)
# Both servers are asked the same question the same way, from the moment their restore starts:
# `answered` polls for the socket (a file test, every 10 ms), then asks for the count every
# 20 ms until it first answers; then for `pg_is_in_recovery()` until it says f (promoted).
answered() {  # answered SOCKET_DIR PORT T0 NAME: seconds from T0 to the first count into $work/NAME
  local dir=$1 p=$2 t0=$3 name=$4
  until [ -S "$dir/.s.PGSQL.$p" ] && "$bindir/psql" -X -At -h "$dir" -p "$p" -d bench \
      -c "SELECT count(*) FROM pgbench_accounts" > "$work/$name.count" 2>/dev/null; do
    [ -S "$dir/.s.PGSQL.$p" ] && sleep 0.02 || sleep 0.01
  done
  python3 -c "import time; print(f'{time.time() - $t0:.2f}')" > "$work/$name"
}
promoted() {  # promoted SOCKET_DIR PORT T0 NAME
  until [ "$("$bindir/psql" -X -At -h "$1" -p "$2" -d bench -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; do sleep 0.02; done
  python3 -c "import time; print(f'{time.time() - $3:.2f}')" > "$work/$4"
}
restore_kasm() {  # the restore runs on --port from the start: it answers read-only while it replays
  local s0 r; s0=$(date +%s.%N)
  date -u +%Y-%m-%dT%H:%M:%S.%NZ > "${TMPDIR:-/tmp}/kasm-db-bench-restore.began"
  "$BIN" restore --physical --from "$kdir" --data-dir "$work/kasm-restored" --to-latest --start --port "$kport" >/dev/null 2>"$work/kasm_restore.log" &
  r=$!
  answered "$work/kasm-restored" "$kport" "$s0" kasm_answered
  promoted "$work/kasm-restored" "$kport" "$s0" kasm_promoted
  wait "$r"  # the restore returns once the promoted server is up again on --port
  cp "$work/kasm_restore.log" "${TMPDIR:-/tmp}/kasm-db-bench-restore.log" 2>/dev/null || true
  python3 -c "import time; print(f'{time.time() - $s0:.2f}')" > "$work/kasm_done"
  "$bindir/psql" -X -At -h "$work/kasm-restored" -p "$kport" -d bench -c "SELECT count(*) FROM pgbench_accounts"
}
pport=$(newport)
restore_pgbr() {  # pgbackrest restore, then pg_ctl start; asked as above
  local s0; s0=$(date +%s.%N)
  mkdir -p "$work/pgbr-restored"; [ "$(id -u)" = 0 ] && chown postgres "$work/pgbr-restored" && chmod 700 "$work/pgbr-restored"
  as_pg "$PGBR --pg1-path=$work/pgbr-restored restore"
  python3 -c "import time; print(f'{time.time() - $s0:.2f}')" > "$work/pgbr_restored"
  as_pg "'$bindir/pg_ctl' -D '$work/pgbr-restored' -l '$work/pgbr-restored.log' -o \"-p $pport -k $work/pgbr-restored -c listen_addresses='' -c archive_mode=off\" start" >/dev/null
  answered "$work/pgbr-restored" "$pport" "$s0" pgbr_answered
  promoted "$work/pgbr-restored" "$pport" "$s0" pgbr_promoted
  "$bindir/psql" -X -At -h "$work/pgbr-restored" -p "$pport" -d bench -c "SELECT count(*) FROM pgbench_accounts"
}
replayed() {  # replayed SERVER_LOG: how long the server spent between the first and last segment restored
python3 - "$1" <<'PY' || true
import re, sys, datetime
ts = []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
    if m and "restored log file" in line:
        ts.append(datetime.datetime.fromisoformat(m.group(1)))
if len(ts) > 1:
    span = (ts[-1] - ts[0]).total_seconds()
    print(f"  WAL replayed: {len(ts)} segments restored, {span:.2f} s from the first to the last ({span / (len(ts) - 1):.3f} s each)")
PY
}
timed() {  # timed NAME FUNCTION: wall seconds into $secs, stdout into $work/NAME.out
  "$bindir/psql" -X -q -c CHECKPOINT >/dev/null; sync
  local t0 t1; t0=$(date +%s.%N); "$2" > "$work/$1.out"; t1=$(date +%s.%N)
  secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
}
timed kasm_restore restore_kasm
k_restore_s=$(cat "$work/kasm_answered"); k_promoted_s=$(cat "$work/kasm_promoted"); k_rows=$(tail -1 "$work/kasm_restore.out")
timed pgbr_restore restore_pgbr
# Both servers' logs kept for a look at their phases (the work folder goes at exit).
cp "$work/kasm-restored/kasm-db-recovery.log" "${TMPDIR:-/tmp}/kasm-db-bench-recovery.log" 2>/dev/null || true
cp "$work/pgbr-restored.log" "${TMPDIR:-/tmp}/kasm-db-bench-pgbr-server.log" 2>/dev/null || true
p_promoted_s=$(cat "$work/pgbr_promoted"); p_restore_s=$(cat "$work/pgbr_answered"); p_rows=$(tail -1 "$work/pgbr_restore.out")
as_pg "'$bindir/pg_ctl' -D '$work/kasm-restored' -m fast stop" >/dev/null 2>&1 || true
as_pg "'$bindir/pg_ctl' -D '$work/pgbr-restored' -m fast stop" >/dev/null 2>&1 || true
want=$(( SCALE * 100000 ))
[ "$k_rows" = "$want" ] && [ "$p_rows" = "$want" ] || { echo "rows after restore: kasm-db $k_rows, pgBackRest $p_rows, want $want"; exit 1; }

echo
echo "== base backup"
echo "kasm-db backup --physical:   ${k_backup_s} s, $(( k_backup_bytes / 1000000 )) MB"
echo "pgbackrest backup (full):    ${p_backup_s} s, $(( p_backup_bytes / 1000000 )) MB"
echo "RESULT pitr_backup time_ratio=$(python3 -c "print(f'{$k_backup_s / $p_backup_s:.3f}')") size_ratio=$(python3 -c "print(f'{$k_backup_bytes / $p_backup_bytes:.3f}')")  (bar: time <= 1.0)"
echo "== restore to latest until the server answers"
echo "kasm-db restore --physical --start: ${k_restore_s} s until it answers (read-only, while it replays), ${k_promoted_s} s until promoted, $(cat "$work/kasm_done") s until the restore returned (restarted on its own configuration); its phases:"
grep -E "checked in|unpacked into|answers read-only|recovered and promoted|shut down in|started on port|private port" "$work/kasm_restore.log" | sed -E 's/^.*(INFO|info)[^a-z]*/  /' || true
replayed "$work/kasm-restored/kasm-db-recovery.log"
echo "pgbackrest restore + pg_ctl start:  ${p_restore_s} s until it answers, ${p_promoted_s} s until promoted; its phases:"
echo "  pgbackrest restore (files in place) in $(cat "$work/pgbr_restored") s"
replayed "$work/pgbr-restored.log"
echo "RESULT pitr_restore ratio=$(python3 -c "print(f'{$k_restore_s / $p_restore_s:.3f}')")  (until the first answer, the count above; bar <= 1.0) promoted_ratio=$(python3 -c "print(f'{$k_promoted_s / $p_promoted_s:.3f}')")  (until promoted: a primary that takes writes)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
