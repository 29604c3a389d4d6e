"""Live-tail latency probe for bench/read.sh: starts `kasm-db logs -f --json` (grep on a marker),
POSTs one marked record every 50 ms to `serve` for D seconds while other writers load it, and
measures, per probe, the time from the POST's 200 to the record's line from the follower.
Prints p50/p99/max and how many probes were seen (each must be seen exactly once).
Usage: tail_probe.py KASM_DB PORT TOKEN D"""
import http.client
import json
import subprocess
import sys
import threading
import time

kasm_db, port, token, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
marker = f"probe-{int(time.time() * 1000)}"
follower = subprocess.Popen(
    [kasm_db, "-q", "logs", "-f", "--json", "-n", "0", "--grep", marker],
    stdout=subprocess.PIPE,
    text=True,
)
seen, acked = {}, {}
lock = threading.Lock()


def read():
    for line in follower.stdout:
        t = time.monotonic()
        seq = int(json.loads(line)["message"].split()[-1])
        with lock:
            seen.setdefault(seq, []).append(t)


threading.Thread(target=read, daemon=True).start()
time.sleep(1.0)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
headers = {"Authorization": "Bearer " + token}
seq, deadline = 0, time.monotonic() + duration
while time.monotonic() < deadline:
    body = json.dumps({"levelname": "INFO", "message": f"{marker} {seq}", "host": "probe"}) + "\n"
    conn.request("POST", "/api/v1/logs", body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status == 200:
        acked[seq] = time.monotonic()
    seq += 1
    time.sleep(0.05)
time.sleep(3.0)
follower.terminate()
follower.wait()
lat = sorted(seen[s][0] - acked[s] for s in acked if s in seen)
dups = sum(1 for s in seen if len(seen[s]) > 1)
missing = [s for s in acked if s not in seen]
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print(f"tail: {len(acked)} probes acknowledged, {len(lat)} seen, {len(missing)} missing, {dups} twice")
print(f"tail latency from 200 to the follower's line: p50 {pct(0.5):.3f} s, p99 {pct(0.99):.3f} s, max {lat[-1] if lat else float('nan'):.3f} s")
print(f"RESULT tail_p99_s {pct(0.99):.3f} missing={len(missing)} twice={dups}")
