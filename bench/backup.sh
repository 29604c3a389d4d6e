#!/usr/bin/env bash
# Backup benchmark (issue 6): `kasm-db backup` to a directory vs `pg_dump -Fc -f FILE`, side by
# side in one run on the same throwaway cluster and database: wall time, archive size, peak RSS
# (/usr/bin/time -v; for kasm-db it covers its pg_dump child too), and the ratios the issue asks
# for. The database is Kasm-like: pgbench tables plus generated log records in kasm-db's `logs`.
#
# Usage: bench/backup.sh [PGBENCH_SCALE] [LOG_ROWS]
#   defaults 30 and 1000000 (the issue's ~650 MB recipe; 988 MB here); run `60 2000000` to show RSS does not grow.
# Env:   BENCH_BIN  the kasm-db binary (default: target/release/kasm-db, built if missing)
#        BENCH_S3=1 also back up to a local moto_server (S3 protocol) and time it
#        BENCH_LEVEL=N gzip level for kasm-db (default: backup.compression_level's default)
# Starts and removes its own cluster; touches no other server.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-30}
LOG_ROWS=${2:-1000000}

source bench/kasm_like.sh
[ -n "${BENCH_LEVEL:-}" ] && export KASM_DB_BACKUP_COMPRESSION_LEVEL=$BENCH_LEVEL

measure pg_dump "$bindir/pg_dump" -Fc -f "$work/pgdump.fc" bench
pd_s=$secs; pd_rss=$rss; pd_bytes=$(stat -c %s "$work/pgdump.fc")
measure kasm "$BIN" backup -q --json --to "$work/backups"
kd_s=$secs; kd_rss=$rss; kd_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size_bytes"])' "$work/kasm.out")

printf '\ndatabase: %s MB (pgbench scale %s + %s log records), %s cores\n' "$((db_bytes / 1000000))" "$SCALE" "$LOG_ROWS" "$(nproc)"
printf '%-28s %10s %14s %12s\n' tool seconds archive_bytes peak_rss_MiB
printf '%-28s %10s %14s %12s\n' "pg_dump -Fc -f" "$pd_s" "$pd_bytes" "$((pd_rss / 1024))"
printf '%-28s %10s %14s %12s\n' "kasm-db backup (directory)" "$kd_s" "$kd_bytes" "$((kd_rss / 1024))"

if [ "${BENCH_S3:-0}" = 1 ]; then
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  moto_server -H 127.0.0.1 -p "$mport" >/dev/null 2>&1 & moto_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
  python3 - "$mport" <<'PY'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/bench", method="PUT")).read()
PY
  KASM_DB_S3_ENDPOINT="http://127.0.0.1:$mport" KASM_DB_S3_FORCE_PATH_STYLE=true KASM_DB_S3_REGION=us-east-1 \
    measure kasm_s3 "$BIN" backup -q --json --to s3://bench/kasm
  printf '%-28s %10s %14s %12s\n' "kasm-db backup (local S3)" "$secs" "-" "$((rss / 1024))"
  s3_s=$secs
fi

python3 - "$pd_s" "$kd_s" "$pd_bytes" "$kd_bytes" "${s3_s:-}" <<'PY'
import sys
pd_s, kd_s, pd_b, kd_b = (float(x) for x in sys.argv[1:5])
print(f"\ntime  kasm-db/pg_dump: {kd_s / pd_s:.2f}x  (issue: <= 1.0x, aim <= 0.5x)")
print(f"size  kasm-db/pg_dump: {kd_b / pd_b:.2f}x  (issue: <= 1.15x)")
if sys.argv[5]:
    print(f"time  kasm-db S3/pg_dump: {float(sys.argv[5]) / pd_s:.2f}x  (issue: <= 1.2x)")
PY
