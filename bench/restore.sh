#!/usr/bin/env bash
# Restore benchmark (issue 7): `kasm-db restore` from a directory target vs `pg_restore -d` of a
# local `pg_dump -Fc` file into an empty database, side by side in one run on the same
# throwaway cluster and the same Kasm-like database as bench/backup.sh (pgbench tables plus
# generated log records in kasm-db's `logs`). kasm-db's time includes everything it does:
# reading and checking the object (size, SHA-256), gunzip to scratch space, writing the
# archive's data offsets, `pg_restore -j`,
# the row-count checks, ANALYZE and the swap. pg_restore -j N is shown too, for reference. And
# `restore --logs-later` (issue 17): the time until the swap vs the plain restore's, as a ratio.
#
# Usage: bench/restore.sh [PGBENCH_SCALE] [LOG_ROWS]   (defaults 30 and 1000000: the issue's ~650 MB recipe, 988 MB here)
# Env:   BENCH_BIN     the kasm-db binary (default: target/release/kasm-db, built if missing)
#        BENCH_BEFORE  an earlier kasm-db binary, timed in the same rounds (before/after)
#        BENCH_ROUNDS  rounds of pg_restore -d / before / kasm-db (default 1)
#        BENCH_REFS    0 skips the pg_restore -j references (default 1)
#        BENCH_JOBS    --jobs for kasm-db and the reference pg_restore -j (default: nproc)
#        BENCH_LOGS_LATER  0 skips the --logs-later comparison (default 1)
# Starts and removes its own cluster; touches no other server.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-30}
LOG_ROWS=${2:-1000000}
JOBS=${BENCH_JOBS:-$(nproc)}

source bench/kasm_like.sh

echo "making the archives (pg_dump -Fc -f, kasm-db backup)..." >&2
"$bindir/pg_dump" -Fc -f "$work/pgdump.fc" bench
"$BIN" backup -q --json --to "$work/backups" >/dev/null

# Rounds: pg_restore -d, then (with BENCH_BEFORE) the previous kasm-db, then this kasm-db, one
# after the other, BENCH_ROUNDS times; each round's databases are dropped after it.
ROUNDS=${BENCH_ROUNDS:-1}
BEFORE=${BENCH_BEFORE:-}
breakdown() {
  python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"fetch+check+unpack {j['fetch_s']:.2f} s, pg_restore {j['restore_s'] - j['check_s']:.2f} s, "
      f"row counts+ANALYZE after it {j['check_s']:.2f} s, total {j['duration_s']:.2f} s")
PY
}
results=()
for r in $(seq 1 "$ROUNDS"); do
  "$bindir/createdb" "plain$r"
  measure "pg_restore$r" "$bindir/pg_restore" -d "plain$r" "$work/pgdump.fc"
  pr_s=$secs; pr_rss=$rss
  if [ -n "$BEFORE" ]; then
    measure "before$r" "$BEFORE" restore -q --json --jobs "$JOBS" --from "$work/backups" --target "postgres:///before$r"
    b_s=$secs
  fi
  # The target does not exist yet (a fresh standby): no previous database, same work otherwise.
  measure "kasm$r" "$BIN" restore -q --json --jobs "$JOBS" --from "$work/backups" --target "postgres:///restored$r"
  kr_s=$secs; kr_rss=$rss
  rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$work/kasm$r.out")
  same=$("$bindir/psql" -X -At -d "restored$r" -c "SELECT count(*) FROM pgbench_accounts")
  line="round $r (load $(cut -d' ' -f1-3 /proc/loadavg)): pg_restore -d $pr_s s (rss $((pr_rss / 1024)) MiB)"
  [ -n "$BEFORE" ] && line="$line | before: $b_s s = $(python3 -c "print(f'{$b_s / $pr_s:.2f}x')")"
  line="$line | kasm-db: $kr_s s = $(python3 -c "print(f'{$kr_s / $pr_s:.2f}x')") (rss $((kr_rss / 1024)) MiB)"
  results+=("$line")
  [ -n "$BEFORE" ] && results+=("   before breakdown: $(breakdown "$work/before$r.out")")
  results+=("   kasm-db breakdown: $(breakdown "$work/kasm$r.out"); $rows rows checked; pgbench_accounts: $same")
  results+=("RESULT restore_ratio $(python3 -c "print(f'{$kr_s / $pr_s:.3f}')") round=$r kasm_s=$kr_s pg_restore_s=$pr_s")
  for d in "plain$r" "before$r" "restored$r"; do "$bindir/dropdb" --if-exists "$d"; done
done
if [ "${BENCH_REFS:-1}" = 1 ]; then
  "$bindir/createdb" plainj
  measure pg_restore_j "$bindir/pg_restore" -j "$JOBS" -d plainj "$work/pgdump.fc"
  prj_s=$secs
  # kasm-db's archive as written to a pipe (no data offsets): how does pg_restore -j do on it?
  "$bindir/createdb" plainnooff
  gunzip -c "$(ls "$work"/backups/*/dump.gz)" >"$work/kasm.fc"
  measure pg_restore_nooff "$bindir/pg_restore" -j "$JOBS" -d plainnooff "$work/kasm.fc"
  pno_s=$secs
fi

if [ "${BENCH_LOGS_LATER:-1}" = 1 ]; then
# --logs-later (issue 17) onto a fresh database, beside a plain restore onto another: how long
# until the swap (the application can connect), then the logs loaded into the live database.
measure kasm_plain "$BIN" restore -q --json --jobs "$JOBS" --from "$work/backups" --target "postgres:///restored_pl"
measure kasm_ll "$BIN" restore -q --json --jobs "$JOBS" --logs-later --from "$work/backups" --target "postgres:///restored_ll"
for d in restored_pl restored_ll; do "$bindir/dropdb" --if-exists "$d"; done
fi

printf '\ndatabase: %s MB (pgbench scale %s + %s log records), %s cores, jobs %s\n' \
  "$((db_bytes / 1000000))" "$SCALE" "$LOG_ROWS" "$(nproc)" "$JOBS"
printf '%s\n' "${results[@]}"
if [ "${BENCH_REFS:-1}" = 1 ]; then
  echo "pg_restore -j $JOBS -d (reference): $prj_s s; pg_restore -j $JOBS of kasm-db's archive without offsets: $pno_s s"
fi
echo "(issue 15: kasm-db restore / pg_restore -d <= 0.9x, aim 0.8x)"
[ "${BENCH_LOGS_LATER:-1}" = 1 ] || exit 0
python3 - "$work/kasm_ll.out" "$work/kasm_plain.out" <<'PY'
import json, sys
ll = json.load(open(sys.argv[1])); plain = json.load(open(sys.argv[2]))
d = ll["durations"]
print(f"kasm-db restore --logs-later: swapped in after {d['until_swap_s']:.2f} s, logs "
      f"({ll['logs_later']['rows']} rows) loaded {d['logs_s']:.2f} s later, total {d['total_s']:.2f} s")
print(f"time to swap  --logs-later / plain restore: {d['until_swap_s'] / plain['durations']['until_swap_s']:.2f}x "
      f"({d['until_swap_s']:.2f} s vs {plain['durations']['until_swap_s']:.2f} s)")
PY
