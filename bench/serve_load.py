"""Load generator for `kasm-db serve`: C concurrent clients, each POSTing B-record NDJSON
batches to /api/v1/logs over a keep-alive connection for D seconds (127.0.0.1 only).
Prints records/s acknowledged, request latency p50/p99/max, and any non-200 answers. With a 7th
argument, also writes one line per request to that file: start (Unix time, s), latency (s), status."""
import http.client
import sys
import threading
import time

port, token, lines_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
clients, batch, duration = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
trace_path = sys.argv[7] if len(sys.argv) > 7 else None

with open(lines_path, "rb") as f:
    lines = [l for l in f.read().split(b"\n") if l.strip()]
bodies = [b"\n".join(lines[i:i + batch]) + b"\n" for i in range(0, len(lines) - batch + 1, batch)]
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/x-ndjson"}
lat, acked, errors, trace = [], [0], {}, []
lock = threading.Lock()
deadline = time.monotonic() + duration


def client(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = k
    while time.monotonic() < deadline:
        body = bodies[i % len(bodies)]
        i += clients
        t0 = time.monotonic()
        wall0 = time.time()
        conn.request("POST", "/api/v1/logs", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        dt = time.monotonic() - t0
        with lock:
            lat.append(dt)
            trace.append((wall0, dt, r.status))
            if r.status == 200:
                acked[0] += batch
            else:
                errors[r.status] = errors.get(r.status, 0) + 1


t0 = time.monotonic()
threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.monotonic() - t0
if trace_path:
    with open(trace_path, "w") as f:
        f.writelines(f"{w:.6f} {d:.6f} {s}\n" for w, d, s in trace)
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"{clients} clients x {batch}-record batches for {wall:.1f} s: {acked[0]} records acknowledged, "
      f"{acked[0] / wall:,.0f} records/s; latency p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, "
      f"max {lat[-1] * 1000:.1f} ms; non-200: {errors or 'none'}")
