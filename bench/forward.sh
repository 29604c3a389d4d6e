#!/usr/bin/env bash
# Forwarder throughput on this machine (issue 4): `kasm-db forward` of N stored records
#   1. to a local Splunk HEC receiver (gzip bodies, concatenated envelopes), and
#   2. to a local rsyslogd over TCP (RFC 5424, octet-counted),
# reporting events/s, the forwarder's peak RSS, and the receivers' CPU (to show they are not
# the bottleneck). Everything runs on 127.0.0.1 in a temp dir removed at exit.
# The forwarder's time includes reading the rows from PostgreSQL (a real backfill).
#
#   N=500000 bash bench/forward.sh        (CARGO_TARGET_DIR is honoured)
set -euo pipefail
N=${N:-500000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/kasm-db-bench-fwd.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${PGBIN:-}" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example forward_bench)
BIN="$TARGET/release/kasm-db"
DRIVER="$TARGET/release/examples/forward_bench"

# --- PostgreSQL with N Kasm-like records -------------------------------------------------
PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
PGPORT=$(free_port)
mkdir -p "$WORK/pg" "$WORK/sock" && chown postgres "$WORK/pg" "$WORK/sock"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/pg/log" \
  -o "-p $PGPORT -k $WORK/sock -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=256MB" start >/dev/null
DB="postgres://postgres@127.0.0.1:$PGPORT/postgres"
"$BIN" --db "$DB" migrate >/dev/null
psql -q "$DB" <<SQL
CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
SELECT gen_random_uuid(), now() - interval '1 day' + g * interval '1 ms', now() - interval '1 day' + g * interval '1 ms',
       'INFO', 'kasm-web-1', 'kasm_api', 'user' || (g % 200) || '@example.com', 'GET /api/public/get_user_images 200 session ' || g,
       jsonb_build_object('asctime', to_char(now(), 'YYYY-MM-DD HH24:MI:SS,MS'), 'levelname', 'INFO', 'name', 'kasm_api.web',
         'application', 'kasm_api', 'host', 'kasm-web-1', 'process', 1234 + g % 7, 'funcName', 'get_user_images',
         'lineno', 512, 'kasm_user_name', 'user' || (g % 200) || '@example.com', 'kasm_id', md5(g::text),
         'message', 'GET /api/public/get_user_images 200 session ' || g)
  FROM generate_series(1, $N) g;
SQL
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "records: $N ($(psql -qtA "$DB" -c "select pg_size_pretty(sum(pg_column_size(data))) from logs") of JSON)"

# The database side alone: the backfill's query, streamed to /dev/null.
start=$(date +%s.%N)
psql -q "$DB" -c "\\copy (SELECT levelname, log_time, host, application, kasm_user_name, message, data::text, ingest_date, log_id FROM logs ORDER BY ingest_date, log_id) TO /dev/null"
secs=$(echo "$(date +%s.%N) - $start" | bc -l)
printf 'database read alone (the backfill query to /dev/null): %.2f s = %.0f rows/s\n' "$secs" "$(echo "$N / $secs" | bc -l)"

run_forward() { # $1 = config file; prints "<seconds> <peak RSS KiB> <CPU seconds>"
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$WORK/time.out" "$BIN" --config "$1" --db "$DB" --json forward >"$WORK/fwd.json"
  end=$(date +%s.%N)
  read -r rss usr sys <"$WORK/time.out"
  echo "$(echo "$end - $start" | bc -l) $rss $(echo "$usr + $sys" | bc -l)"
}

# --- 1. Splunk HEC receiver (Python, counting newline-separated envelopes) ---------------
HEC_PORT=$(free_port)
cat >"$WORK/hec.py" <<'PY'
import gzip, sys, http.server
count = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_GET(self):
        self.reply(b'{"text":"HEC is healthy","code":17}')
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Authorization") != "Splunk bench-token":
            return self.reply(b'{"text":"Invalid token","code":4}', 403)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        count += body.count(b"\n")
        open(sys.argv[2], "w").write(str(count))
        self.reply(b'{"text":"Success","code":0}')
    def reply(self, b, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/hec.py" "$HEC_PORT" "$WORK/hec.count" & HEC_PID=$!; PIDS+=("$HEC_PID")
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$HEC_PORT") 2>/dev/null && break; sleep 0.1; done
cat >"$WORK/hec.toml" <<TOML
[siem]
kind = "splunk-hec"
url = "http://127.0.0.1:$HEC_PORT/services/collector/event"
token = "bench-token"
spool_dir = "$WORK/spool-hec"
TOML
c0=$(cpu_ticks "$HEC_PID")
read -r secs rss cpu < <(run_forward "$WORK/hec.toml")
c1=$(cpu_ticks "$HEC_PID")
got=$(cat "$WORK/hec.count")
printf 'splunk-hec (gzip): %d events in %.2f s = %.0f events/s; forwarder CPU %.2f s (%.0f events per CPU-second), peak RSS %d MiB; receiver CPU %.0f%% of one core; received %d; %s\n' \
  "$N" "$secs" "$(echo "$N / $secs" | bc -l)" "$cpu" "$(echo "$N / $cpu" | bc -l)" "$((rss / 1024))" "$(echo "($c1 - $c0) / $TCK / $secs * 100" | bc -l)" "$got" "$(cat "$WORK/fwd.json")"

alone() { # $1 = label, $2 = config, $3 = receiver pid
  local c0 c1 rss secs
  c0=$(cpu_ticks "$3")
  /usr/bin/time -f "%M" -o "$WORK/time.out" "$DRIVER" "$2" "$N" >"$WORK/alone.json"
  c1=$(cpu_ticks "$3")
  rss=$(cat "$WORK/time.out")
  secs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$WORK/alone.json")
  printf '%s, forwarder alone (records from memory, through the spool): %.0f events/s; peak RSS %d MiB (includes the %d records held in memory); receiver CPU %.0f%% of one core; %s\n' \
    "$1" "$(echo "$N / $secs" | bc -l)" "$((rss / 1024))" "$N" "$(echo "($c1 - $c0) / $TCK / $secs * 100" | bc -l)" "$(cat "$WORK/alone.json")"
}
sed -i "s|spool-hec|spool-hec-alone|" "$WORK/hec.toml"
alone "splunk-hec (gzip)" "$WORK/hec.toml" "$HEC_PID"

# --- 2. rsyslogd over TCP --------------------------------------------------------------------
SYS_PORT=$(free_port)
mkdir -p "$WORK/rsyslog"
cat >"$WORK/rsyslog/rsyslog.conf" <<CONF
global(workDirectory="$WORK/rsyslog" maxMessageSize="64k")
module(load="imtcp")
template(name="fields" type="string" string="%hostname% %app-name% %procid% %msg%\n")
ruleset(name="kasm") { action(type="omfile" file="$WORK/rsyslog/out.log" template="fields" asyncWriting="on" ioBufferSize="1m" flushOnTXEnd="off") }
input(type="imtcp" address="127.0.0.1" port="$SYS_PORT" ruleset="kasm")
CONF
/usr/sbin/rsyslogd -n -f "$WORK/rsyslog/rsyslog.conf" -i "$WORK/rsyslog/pid" & SYS_PID=$!; PIDS+=("$SYS_PID")
for _ in $(seq 100); do (echo -n >"/dev/tcp/127.0.0.1/$SYS_PORT") 2>/dev/null && break; sleep 0.1; done
cat >"$WORK/syslog.toml" <<TOML
[siem]
kind = "syslog"
url = "tcp://127.0.0.1:$SYS_PORT"
spool_dir = "$WORK/spool-syslog"
TOML
c0=$(cpu_ticks "$SYS_PID")
read -r secs rss cpu < <(run_forward "$WORK/syslog.toml")
c1=$(cpu_ticks "$SYS_PID")
for _ in $(seq 300); do [ "$(wc -l <"$WORK/rsyslog/out.log" 2>/dev/null || echo 0)" -ge "$N" ] && break; sleep 0.1; done
printf 'syslog TCP (RFC 5424): %d events in %.2f s = %.0f events/s; forwarder CPU %.2f s (%.0f events per CPU-second), peak RSS %d MiB; rsyslogd CPU %.0f%% of one core; received %d lines; %s\n' \
  "$N" "$secs" "$(echo "$N / $secs" | bc -l)" "$cpu" "$(echo "$N / $cpu" | bc -l)" "$((rss / 1024))" "$(echo "($c1 - $c0) / $TCK / $secs * 100" | bc -l)" "$(wc -l <"$WORK/rsyslog/out.log")" "$(cat "$WORK/fwd.json")"
sed -i "s|spool-syslog|spool-syslog-alone|" "$WORK/syslog.toml"
alone "syslog TCP (RFC 5424)" "$WORK/syslog.toml" "$SYS_PID"
