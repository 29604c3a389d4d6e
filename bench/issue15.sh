#!/usr/bin/env bash
# Issue 15's table from one run: every row as a ratio, measured side by side, one part after the
# other on this machine, with the load average before and after each part.
#   backup time and size / pg_dump -Fc   bench/backup.sh SCALE ROWS (the Kasm-like database)
#   restore / pg_restore -d              bench/restore.sh SCALE ROWS, ROUNDS rounds
#   ingest / psql \copy                  bench/ingest.sh N 0, INGEST_ROUNDS times
#   purge / DELETE, 400k and 4M rows     bench/purge.sh "400000 4000000" (with the rm floors)
# Each part starts and removes its own throwaway cluster; nothing else is touched. The parts'
# own output is kept in OUT (default: a new directory under /tmp) and named at the end.
# Usage: bench/issue15.sh [SCALE=30] [ROWS=1000000]
# Env:   ROUNDS=3 (restore), INGEST_ROUNDS=3, N=300000 (ingest records), LEVELS="6" (gzip levels
#        timed beside the default, for the record), PURGE_SIZES="400000 4000000", OUT=DIR.
# Takes about 15 minutes on 2 cores. Run it on a quiet machine: every ratio here is a ratio
# of wall times, and another process's CPU moves it (BENCHMARKS.md says by how much).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-30}; ROWS=${2:-1000000}
ROUNDS=${ROUNDS:-3}; INGEST_ROUNDS=${INGEST_ROUNDS:-3}; N=${N:-300000}
OUT=${OUT:-$(mktemp -d /tmp/kasm-db-issue15.XXXXXX)}
mkdir -p "$OUT"
[ -x target/release/kasm-db ] || cargo build --release
load() { cut -d' ' -f1 /proc/loadavg; }
part() {  # part NAME CMD...: run a part, its output to OUT/NAME.txt, its load before/after
  local name=$1; shift
  local before; before=$(load)
  echo "== $name: $*" >&2
  "$@" >"$OUT/$name.txt" 2>&1 || { tail -n 30 "$OUT/$name.txt" >&2; exit 1; }
  echo "LOAD $name $before $(load)" >>"$OUT/loads"
}
: >"$OUT/loads"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -r), $("$(pg_config --bindir)/postgres" --version)" | tee "$OUT/machine"
echo "kasm-db: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'), started $(date -u +%Y-%m-%dT%H:%MZ)" | tee -a "$OUT/machine"

part backup env BENCH_LEVELS="${LEVELS:-6}" bash bench/backup.sh "$SCALE" "$ROWS"
part restore env BENCH_ROUNDS="$ROUNDS" BENCH_REFS=0 BENCH_LOGS_LATER=0 bash bench/restore.sh "$SCALE" "$ROWS"
for r in $(seq 1 "$INGEST_ROUNDS"); do part "ingest$r" bash bench/ingest.sh "$N" 0; done
part purge env SERVE_ROWS=0 bash bench/purge.sh "${PURGE_SIZES:-400000 4000000}"
echo "finished $(date -u +%Y-%m-%dT%H:%MZ)" | tee -a "$OUT/machine"

python3 - "$OUT" <<'PY'
import glob, os, statistics, sys
out = sys.argv[1]
res = {}
for f in sorted(glob.glob(os.path.join(out, "*.txt"))):
    for line in open(f):
        if line.startswith("RESULT "):
            _, key, value, *rest = line.split()
            res.setdefault(key, []).append((float(value), " ".join(rest)))
loads = {l.split()[1]: (l.split()[2], l.split()[3]) for l in open(os.path.join(out, "loads"))}
def load(*parts):
    xs = [loads[p] for p in parts if p in loads]
    return f"{xs[0][0]} → {xs[-1][1]}" if xs else "?"
rows = [
    ("backup time / `pg_dump -Fc`", "backup_time", 0.6, 0.5, load("backup")),
    ("backup size / `pg_dump -Fc`", "backup_size", 1.10, 1.05, load("backup")),
    ("restore / `pg_restore -d`, checks included", "restore_ratio", 0.9, 0.8, load("restore")),
    ("ingest / `psql \\copy` into one jsonb column", "ingest_ratio", 1.1, 1.0,
     load(*[k for k in loads if k.startswith("ingest")])),
    ("purge / DELETE, 400k expired rows", "purge_ratio_400000", None, None, load("purge")),
    ("purge / DELETE, 4M expired rows over 10 days", "purge_ratio_4000000", 0.1, 0.05, load("purge")),
]
print()
print("| what | this run | each sample | bar (issue 15) | aim | met | load (1 min) |")
print("|---|---|---|---|---|---|---|")
for name, key, bar, aim, ld in rows:
    xs = [v for v, _ in res.get(key, [])]
    if not xs:
        print(f"| {name} | (not measured) | | | | | {ld} |")
        continue
    mid = statistics.median(xs)
    each = ", ".join(f"{x:.2f}×" for x in xs) if len(xs) > 1 else ""
    met = "report" if bar is None else ("yes" if mid <= bar else "**no**")
    label = f"{mid:.2f}×" + (" (median)" if len(xs) > 1 else "")
    print(f"| {name} | {label} | {each} | {'—' if bar is None else f'≤ {bar}×'} | "
          f"{'—' if aim is None else f'{aim}×'} | {met} | {ld} |")
print()
for key in ("backup_time", "purge_ratio_4000000", "purge_ratio_400000"):
    for v, rest in res.get(key, []):
        print(f"{key}: {v:.3f}  {rest}")
for key in ("restore_ratio", "ingest_ratio"):
    for v, rest in res.get(key, []):
        print(f"{key}: {v:.3f}  {rest}")
PY
echo "the parts' output: $OUT"
