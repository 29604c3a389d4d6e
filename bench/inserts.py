"""Turn NDJSON log lines into INSERT statements of 50 rows each: how Kasm stores logs today."""
import json
import sys


def q(value):
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


rows = []


def flush():
    if rows:
        print("INSERT INTO logs VALUES " + ",".join(rows) + ";")
        rows.clear()


for line in sys.stdin:
    d = json.loads(line)
    level, host = q(d.get("levelname")), q(d.get("host"))
    rows.append(f"(gen_random_uuid(), now(), {level}, {host}, {q(line.strip())}::jsonb)")
    if len(rows) == 50:
        flush()
flush()
