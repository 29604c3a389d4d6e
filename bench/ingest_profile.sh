#!/usr/bin/env bash
# Where ingest's server time goes (issue 15), on one fresh cluster, side by side:
#  1. server-only ladder: the same rows COPYed from a server-side binary file (no client at all),
#     into the raw one-jsonb-column table, then the typed `logs` with no index, + BRIN, + the
#     btrees, and into the leaf partitions directly instead of through the parent; with the WAL
#     bytes each writes;
#  2. end-to-end: kasm-db ingest with variants (ingest.parallel, ingest.batch_rows, schema
#     variants) beside psql \copy into one jsonb column, in alternating rounds.
# Usage: bench/ingest_profile.sh [N=300000] [ROUNDS=2]
#   VARIANTS="base par1 par3 batch50k batch2k nobtree noidx ff100" picks the end-to-end variants;
#   SKIP_E2E=1 runs only the server-only part. Results: BENCHMARKS.md, issue 15.
source "$(dirname "$0")/lib.sh"
N=${1:-300000}; ROUNDS=${2:-2}
[ -x "$KASM_DB" ] || (cd "$ROOT" && cargo build --release --quiet)
machine
PORT=$(start_cluster main)
PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
"$KASM_DB" gen-logs "$N" > "$WORK/logs.ndjson"
chmod 644 "$WORK/logs.ndjson"
SRV="$WORK/srv"; mkdir -p "$SRV"; [ "$(id -u)" -eq 0 ] && chown postgres "$SRV"
load() { cut -d' ' -f1-3 /proc/loadavg; }
lsn() { "${PSQL[@]}" -d postgres -At -c "SELECT pg_current_wal_lsn()"; }
walmb() { "${PSQL[@]}" -d postgres -At -c "SELECT round(pg_wal_lsn_diff('$2','$1')/1048576.0)"; }
timed() {  # timed DB SQL -> "seconds walMB"
  local db=$1 sql=$2 a b t0 t1
  "${PSQL[@]}" -d "$db" -c "CHECKPOINT"; a=$(lsn)
  t0=$(now); "${PSQL[@]}" -d "$db" -c "$sql"; t1=$(now); b=$(lsn)
  echo "$(elapsed "$t0" "$t1") s, WAL $(walmb "$a" "$b") MB"
}
fresh() {  # fresh DB [SQL]: a migrated database, SQL applied after migrate
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/$1" "$KASM_DB" -q migrate >/dev/null
  [ -z "${2:-}" ] || "${PSQL[@]}" -d "$1" -c "$2"
}
mkleaves() {  # mkleaves DB: the leaf partitions src has, with the same bounds
  local l b
  for l in $LEAVES; do
    b=$("${PSQL[@]}" -d src -At -c "SELECT pg_get_expr(c.relpartbound, c.oid) || '|' || p.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = i.inhparent WHERE c.relname = '$l'")
    "${PSQL[@]}" -d "$1" -c "CREATE TABLE $l PARTITION OF ${b#*|} ${b%|*}"
  done
}
FF100="DROP INDEX logs_levelname_idx, logs_host_idx, logs_kasm_user_name_idx; CREATE INDEX ON logs_logs (levelname) WITH (fillfactor = 100); CREATE INDEX ON logs (host) WITH (fillfactor = 100); CREATE INDEX ON logs (kasm_user_name) WITH (fillfactor = 100)"
RAWCOPY="COPY raw (data) FROM '$WORK/logs.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"

# The typed rows, as kasm-db stores them, in a server-side binary file (parent order) and one per leaf.
fresh src
KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/src" "$KASM_DB" -q ingest "$WORK/logs.ndjson" >/dev/null
COLS="log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data"
"${PSQL[@]}" -d src -c "COPY (SELECT $COLS FROM logs ORDER BY log_id) TO '$SRV/typed.bin' (FORMAT binary)"
LEAVES=$("${PSQL[@]}" -d src -At -c "SELECT c.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relkind = 'r' AND c.relname LIKE 'logs\\_%' ORDER BY 1")
for l in $LEAVES; do "${PSQL[@]}" -d src -c "COPY (SELECT $COLS FROM $l ORDER BY log_id) TO '$SRV/$l.bin' (FORMAT binary)"; done
echo "input: $N records, $(du -m "$WORK/logs.ndjson" | cut -f1) MB; leaves: $(echo $LEAVES)"

echo; echo "== 1. server only, one COPY stream from a server-side file (load $(load))"
for r in $(seq "$ROUNDS"); do
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS j" -c "CREATE DATABASE j"; "${PSQL[@]}" -d j -c "CREATE TABLE raw (data jsonb)"
  echo "round $r, load $(load)"
  echo "  raw jsonb, csv text (psql's work):        $(timed j "$RAWCOPY")"
  fresh s "DROP INDEX logs_levelname_idx, logs_host_idx, logs_kasm_user_name_idx, logs_ingest_date_brin"
  mkleaves s
  echo "  typed via parent, no index:               $(timed s "COPY logs ($COLS) FROM '$SRV/typed.bin' (FORMAT binary)")"
  fresh s "DROP INDEX logs_levelname_idx, logs_host_idx, logs_kasm_user_name_idx"
  mkleaves s
  echo "  typed via parent, BRIN:                   $(timed s "COPY logs ($COLS) FROM '$SRV/typed.bin' (FORMAT binary)")"
  fresh s
  mkleaves s
  echo "  typed via parent, BRIN + 3 btrees (now):  $(timed s "COPY logs ($COLS) FROM '$SRV/typed.bin' (FORMAT binary)")"
  fresh s "$FF100"
  mkleaves s
  echo "  same, btree fillfactor 100:               $(timed s "COPY logs ($COLS) FROM '$SRV/typed.bin' (FORMAT binary)")"
  fresh s "DROP INDEX logs_levelname_idx; CREATE INDEX ON logs_logs (levelname) WHERE levelname <> 'INFO'"
  mkleaves s
  echo "  same, levelname index partial (not INFO): $(timed s "COPY logs ($COLS) FROM '$SRV/typed.bin' (FORMAT binary)")"
  fresh s "DROP INDEX logs_ingest_date_brin"
  mkleaves s
  echo "  typed via parent, 3 btrees, no BRIN:      $(timed s "COPY logs ($COLS) FROM '$SRV/typed.bin' (FORMAT binary)")"
  fresh s
  mkleaves s
  sql=""; for l in $LEAVES; do sql="$sql COPY $l ($COLS) FROM '$SRV/$l.bin' (FORMAT binary);"; done
  echo "  typed into the leaves directly, all idx:  $(timed s "$sql")"
done

[ "${SKIP_E2E:-0}" = 1 ] && exit 0
echo; echo "== 2. end to end (kasm-db ingest vs psql \\copy), load $(load)"
PSQLCOPY="\\copy raw (data) FROM '$WORK/logs.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
psql_run() {
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS j" -c "CREATE DATABASE j"; "${PSQL[@]}" -d j -c "CREATE TABLE raw (data jsonb)" -c CHECKPOINT
  local t0 t1; t0=$(now); "${PSQL[@]}" -d j -c "$PSQLCOPY"; t1=$(now); elapsed "$t0" "$t1"
}
ours_run() {  # ours_run "ENV=..." [SQL]
  fresh k "${2:-}"; "${PSQL[@]}" -d k -c CHECKPOINT
  local a b t0 t1; a=$(lsn)
  t0=$(now); env KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/k" $1 "$KASM_DB" -q ingest "$WORK/logs.ndjson" >/dev/null; t1=$(now); b=$(lsn)
  echo "$(elapsed "$t0" "$t1") s, WAL $(walmb "$a" "$b") MB"
}
VARIANTS=${VARIANTS:-"base par1 par3 batch50k batch2k"}
for r in $(seq "$ROUNDS"); do
  echo "round $r, load $(load)"
  for v in $VARIANTS; do
    p=$(psql_run)
    case $v in
      base) o=$(ours_run "X=1");;
      par1) o=$(ours_run "KASM_DB_INGEST_PARALLEL=1");;
      par3) o=$(ours_run "KASM_DB_INGEST_PARALLEL=3");;
      batch50k) o=$(ours_run "KASM_DB_INGEST_BATCH_ROWS=50000");;
      batch2k) o=$(ours_run "KASM_DB_INGEST_BATCH_ROWS=2000");;
      nobtree) o=$(ours_run "X=1" "DROP INDEX logs_levelname_idx, logs_host_idx, logs_kasm_user_name_idx");;
      noidx) o=$(ours_run "X=1" "DROP INDEX logs_levelname_idx, logs_host_idx, logs_kasm_user_name_idx, logs_ingest_date_brin");;
      ff100) o=$(ours_run "X=1" "$FF100");;
    esac
    printf '  %-9s psql %s s | kasm-db %s | ratio %s | load %s\n' "$v" "$p" "$o" "$(ratio "${o%% s*}" "$p")" "$(load)"
  done
done
