# Shared by bench/backup.sh and bench/restore.sh (source it after setting SCALE and LOG_ROWS):
# a throwaway cluster on a Unix socket (removed at exit, with a moto_server the caller started
# and put in $moto_pid), the Kasm-like database `bench` (pgbench tables at scale $SCALE plus
# $LOG_ROWS generated records in kasm-db's `logs`), its size in $db_bytes, and
# `measure NAME CMD...` (wall seconds and peak RSS into $secs and $rss). Touches no other server.
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/kasm-db}
if [ ! -x "$BIN" ]; then cargo build --release; fi

bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
work=$(mktemp -d /tmp/kasm-db-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
moto_pid=""
cleanup() {
  as_pg "'$bindir/pg_ctl' -D '$work/data' -m fast stop" >/dev/null 2>&1 || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$work"
as_pg "'$bindir/initdb' -D '$work/data' -U postgres --auth=trust --no-sync -E UTF8 --locale=C" >/dev/null
as_pg "'$bindir/pg_ctl' -D '$work/data' -l '$work/server.log' -w -o \"-p $port -k $work -c listen_addresses='' -c fsync=off -c max_wal_size=4GB\" start" >/dev/null

export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=bench
for v in $(env | grep -o '^KASM_DB_[A-Z_]*' || true); do unset "$v"; done
"$bindir/createdb" bench
echo "building the database: pgbench scale $SCALE + $LOG_ROWS log records..." >&2
"$bindir/pgbench" -i -q -s "$SCALE" bench >/dev/null 2>&1
"$BIN" migrate -q >/dev/null
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE logs_debug_all PARTITION OF logs_debug FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
SELECT gen_random_uuid(), now() - (i || ' s')::interval, now() - (i || ' s')::interval,
       (ARRAY['DEBUG','INFO','INFO','WARNING','ERROR'])[1 + i % 5], 'kasm-agent-' || (i % 7),
       (ARRAY['kasm_api','kasm_manager','kasm_agent','kasm_proxy'])[1 + i % 4], 'user' || (i % 300) || '@example.com',
       'session ' || md5(i::text) || ' state change ' || (i % 17),
       jsonb_build_object('levelname','INFO','message','session ' || md5(i::text),'host','kasm-agent-' || (i % 7),'seq',i)
FROM generate_series(1, $LOG_ROWS) i;
VACUUM ANALYZE;
SQL
db_bytes=$("$bindir/psql" -X -At -c "SELECT pg_database_size('bench')")

# measure NAME CMD...: wall seconds and peak RSS (KiB) into $secs / $rss
measure() {
  local name=$1; shift
  /usr/bin/time -v "$@" >"$work/$name.out" 2>"$work/$name.time" || { cat "$work/$name.time" >&2; exit 1; }
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$work/$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/$name.time")
}
