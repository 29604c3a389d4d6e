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
# Env:   BENCH_BIN   the kasm-db binary (default: target/release/kasm-db, built if missing)
#        BENCH_JOBS  --jobs for kasm-db and the reference pg_restore -j (default: nproc)
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

"$bindir/createdb" plain1
measure pg_restore "$bindir/pg_restore" -d plain1 "$work/pgdump.fc"
pr_s=$secs; pr_rss=$rss
"$bindir/createdb" plainj
measure pg_restore_j "$bindir/pg_restore" -j "$JOBS" -d plainj "$work/pgdump.fc"
prj_s=$secs
# kasm-db's archive is written to a pipe (no data offsets): how does pg_restore -j do on it?
"$bindir/createdb" plainnooff
gunzip -c "$(ls "$work"/backups/*/dump.gz)" >"$work/kasm.fc"
measure pg_restore_nooff "$bindir/pg_restore" -j "$JOBS" -d plainnooff "$work/kasm.fc"
pno_s=$secs
# The target does not exist yet (a fresh standby): no previous database, same work otherwise.
measure kasm "$BIN" restore -q --json --jobs "$JOBS" --from "$work/backups" --target "postgres:///restored"
kr_s=$secs; kr_rss=$rss
# --logs-later onto another fresh database: how long until the swap (the application can
# connect), then the logs loaded into the live database.
measure kasm_ll "$BIN" restore -q --json --jobs "$JOBS" --logs-later --from "$work/backups" --target "postgres:///restored_ll"
kll_s=$secs
rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$work/kasm.out")
same=$("$bindir/psql" -X -At -d restored -c "SELECT count(*) FROM pgbench_accounts") 

printf '\ndatabase: %s MB (pgbench scale %s + %s log records), %s cores, jobs %s\n' \
  "$((db_bytes / 1000000))" "$SCALE" "$LOG_ROWS" "$(nproc)" "$JOBS"
printf '%-40s %10s %12s\n' tool seconds peak_rss_MiB
printf '%-40s %10s %12s\n' "pg_restore -d (pg_dump -Fc file)" "$pr_s" "$((pr_rss / 1024))"
printf '%-40s %10s %12s\n' "pg_restore -j $JOBS -d (reference)" "$prj_s" "-"
printf '%-40s %10s %12s\n' "pg_restore -j $JOBS of kasm-db's archive" "$pno_s" "-"
printf '%-40s %10s %12s\n' "kasm-db restore -j $JOBS (checks included)" "$kr_s" "$((kr_rss / 1024))"
python3 - "$work/kasm.out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"kasm-db breakdown: fetch+check+gunzip {j['fetch_s']:.2f} s, pg_restore {j['restore_s'] - j['check_s']:.2f} s, "
      f"row counts+ANALYZE {j['check_s']:.2f} s, total {j['duration_s']:.2f} s")
PY
echo "kasm-db restored $rows rows (row counts checked against the manifest); pgbench_accounts: $same"
python3 - "$work/kasm_ll.out" "$work/kasm.out" <<'PY'
import json, sys
ll = json.load(open(sys.argv[1])); plain = json.load(open(sys.argv[2]))
d = ll["durations"]
print(f"kasm-db restore --logs-later: swapped in after {d['until_swap_s']:.2f} s, logs "
      f"({ll['logs_later']['rows']} rows) loaded {d['logs_s']:.2f} s later, total {d['total_s']:.2f} s")
print(f"time to swap  --logs-later / plain restore: {d['until_swap_s'] / plain['durations']['until_swap_s']:.2f}x "
      f"({d['until_swap_s']:.2f} s vs {plain['durations']['until_swap_s']:.2f} s)")
PY
python3 - "$pr_s" "$kr_s" <<'PY'
import sys
pr, kr = (float(x) for x in sys.argv[1:3])
print(f"\ntime  kasm-db restore / pg_restore -d: {kr / pr:.2f}x  (issue: <= 1.5x, aim <= 0.8x)")
PY
