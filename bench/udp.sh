#!/usr/bin/env bash
# How much of a burst a real rsyslogd on loopback receives over UDP at each pace
# (`siem.udp_max_per_sec`, 0 = unlimited): `kasm-db ingest` of N Kasm-like records with both
# retention windows 0 (everything goes to the SIEM), a fresh rsyslogd (imudp, default settings,
# omfile) per run, counting the lines it wrote. UDP has no acknowledgement: what the receiver
# cannot take is lost without anyone knowing, which is why ingest counts these records as `sent`.
# Everything runs on 127.0.0.1 in a temp dir removed at exit.
#
#   N=4000 RATES="0 20000 10000 5000 2000 1000" bash bench/udp.sh   (BIN=... to use another build)
set -euo pipefail
N=${N:-4000}
RATES=${RATES:-0 50000 20000 10000 5000 2000 1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/kasm-db-bench-udp.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${PGBIN:-}" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -z "${BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$TARGET/release/kasm-db"
fi

PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
PGPORT=$(free_port)
mkdir -p "$WORK/pg" "$WORK/sock" && chown postgres "$WORK/pg" "$WORK/sock"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/pg/log" \
  -o "-p $PGPORT -k $WORK/sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
DB="postgres://postgres@127.0.0.1:$PGPORT/postgres"
"$BIN" --db "$DB" migrate >/dev/null

python3 - "$N" >"$WORK/in.ndjson" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"asctime": "2026-11-24 10:00:00,000", "levelname": ["INFO", "DEBUG"][i % 2],
        "name": "kasm_api.web", "application": "kasm_api", "host": "kasm-web-1", "process": 1234,
        "kasm_user_name": "user%d@example.com" % (i % 200), "kasm_id": "%032x" % i,
        "message": "GET /api/public/get_user_images 200 event %d" % i}))
PY
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; net.core.rmem_default $(cat /proc/sys/net/core/rmem_default)"
echo "records per run: $N ($(wc -c <"$WORK/in.ndjson") bytes of NDJSON)"

for rate in $RATES; do
  run="$WORK/run-$rate"; mkdir -p "$run"
  port=$(free_port)
  cat >"$run/rsyslog.conf" <<CONF
global(workDirectory="$run" maxMessageSize="64k")
module(load="imudp")
template(name="msg" type="string" string="%msg%\n")
ruleset(name="kasm") { action(type="omfile" file="$run/out.log" template="msg") }
input(type="imudp" address="127.0.0.1" port="$port" ruleset="kasm")
CONF
  /usr/sbin/rsyslogd -n -f "$run/rsyslog.conf" -i "$run/pid" & rs=$!; PIDS+=("$rs")
  sleep 1
  printf '[siem]\nkind = "syslog"\nurl = "udp://127.0.0.1:%s"\nspool_dir = "%s/spool"\nudp_max_per_sec = %s\n' \
    "$port" "$run" "$rate" >"$run/kasm-db.toml"
  start=$(date +%s.%N)
  KASM_DB_RETENTION_DEBUG=0 KASM_DB_RETENTION_LOGS=0 "$BIN" --config "$run/kasm-db.toml" --db "$DB" --json -q \
    ingest "$WORK/in.ndjson" >"$run/out.json" 2>"$run/stderr.log"
  secs=$(echo "$(date +%s.%N) - $start" | bc -l)
  # Wait until rsyslogd stops writing (or has everything).
  prev=-1; got=0
  for _ in $(seq 100); do
    got=$(wc -l <"$run/out.log" 2>/dev/null || echo 0)
    [ "$got" -ge "$N" ] || [ "$got" -eq "$prev" ] && break
    prev=$got; sleep 0.3
  done
  kill "$rs"; wait "$rs" 2>/dev/null || true
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$run/out.json")
  printf 'udp_max_per_sec %6s: ingest %.2f s, sent %d, rsyslogd received %d (%.1f%%)\n' \
    "$( [ "$rate" = 0 ] && echo unlimited || echo "$rate")" "$secs" "$sent" "$got" "$(echo "100 * $got / $N" | bc -l)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
