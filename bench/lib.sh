# Shared helpers for the benchmark scripts: a throwaway PostgreSQL cluster on loopback, timing,
# and peak RSS. Source it; it cleans up on exit. BENCH_PGBIN: another PostgreSQL's bin directory
# (default: pg_config --bindir).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
PGBIN=${BENCH_PGBIN:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
WORK=$(mktemp -d /tmp/kasm-db-bench-XXXXXX)
chmod 755 "$WORK"
KASM_DB=${KASM_DB:-"$ROOT/target/release/kasm-db"}
[ -n "${CARGO_TARGET_DIR:-}" ] && KASM_DB="$CARGO_TARGET_DIR/release/kasm-db"

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_cluster() {  # start_cluster NAME -> sets PGPORT_<NAME>, prints port
  local name=$1 dir="$WORK/$1" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"; [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
  echo "$port"
}

cleanup() {
  for d in "$WORK"/*/data; do [ -d "$d" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
# peak_rss_kb CMD...: run CMD under GNU time, print its peak RSS in KiB on fd 3.
peak_rss_kb() { /usr/bin/time -f '%M' -o "$WORK/rss" "$@"; cat "$WORK/rss"; }

machine() {
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "postgres: $("$PGBIN/postgres" --version)"
}
