#!/usr/bin/env bash
# Durable HTTP ingest through `kasm-db serve` (issue 5): C concurrent clients (default 8) POST
# B-record NDJSON batches (default 500) for D seconds (default 20) to /api/v1/logs; a 200 means
# the rows are committed. Reports acknowledged records/s, latency p50/p99, the server's peak RSS,
# and checks that the database holds exactly what was acknowledged.
# Usage: bench/serve.sh [C=8] [B=500] [D=20]
source "$(dirname "$0")/lib.sh"
C=${1:-8}; B=${2:-500}; D=${3:-20}
[ -x "$KASM_DB" ] || (cd "$ROOT" && cargo build --release --quiet)
machine
PORT=$(start_cluster main)
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE k"
export KASM_DB_URL="postgres://postgres@127.0.0.1:$PORT/k"
"$KASM_DB" -q migrate >/dev/null
"$KASM_DB" gen-logs 100000 > "$WORK/logs.ndjson"
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM
KASM_DB_SERVER_LISTEN=127.0.0.1:$HTTP_PORT KASM_DB_SERVER_TOKEN=$TOKEN \
  "$KASM_DB" -q serve 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$HTTP_PORT/api/__healthcheck" >/dev/null 2>&1 && break
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$HTTP_PORT)).close()" 2>/dev/null && break
  sleep 0.2
done
python3 "$BENCH_DIR/serve_load.py" "$HTTP_PORT" "$TOKEN" "$WORK/logs.ndjson" "$C" "$B" "$D" | tee "$WORK/load.out"
echo "serve peak RSS: $(awk '/VmHWM/{print $2, $3}' /proc/$SERVE/status)"
echo "serve CPU: $(awk -v t="$(getconf CLK_TCK)" '{printf "%.1f s", ($14+$15)/t}' /proc/$SERVE/stat) over the run (the load generator and PostgreSQL share the same cores)"
kill -TERM "$SERVE"; wait "$SERVE"; echo "serve exit on SIGTERM: $?"
acked=$(grep -o '[0-9]* records acknowledged' "$WORK/load.out" | cut -d' ' -f1)
stored=$("$PGBIN/psql" -X -h 127.0.0.1 -p "$PORT" -U postgres -d k -At -c "SELECT count(*) FROM logs")
echo "acknowledged $acked, in the database $stored"
[ "$stored" -ge "$acked" ] || { echo "LOST ACKNOWLEDGED RECORDS"; exit 1; }
