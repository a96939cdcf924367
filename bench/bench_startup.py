#!/usr/bin/python3
"""Start-up after a crash with many streams and a big store (issue 19 item 2).

Builds stores with bench/startup_store (the server's own store code, so
heads and the commit marker are real; same arguments, same store), then for
each: starts lossd, kills it with SIGKILL once it is ready, restarts it and
times the start to the first /readyz 200 (median of --runs restarts), then
times GET /v1/streams (default page and limit=1000, median of 20) and reads
the process's RSS. The stores:
  big      150 exact streams, 4 deltas of 250,000 rows each: 1.8 GB
  pending  150 exact streams, 6,667 deltas of 150 rows: 10^6 deltas, 1.8 GB
  small    10,000 exact streams of one 10-row delta each
(--smoke: 6 / 6 / 200 streams of a few rows: checks that it all runs.)

Beside each start it reports what bounds it: the warm read of the database
file (the disk, from page cache: cat lossd.db > /dev/null, best of 3) and
the CPU seconds the process used to get ready (user + system, from
/proc/PID/stat), whose ratio to the store's size is the decode rate per
core. Memory: (RSS with the store - RSS with an empty store) / streams, the
bookkeeping per stream (the small store's states are ~200 bytes each).

Prints JSON lines (bench/bench_util.h):
  {"id": "startup/<store>/ready", "impl": "lossd", "metric": "s", ...}
  startup/<store>/{cpu, disk_read, list, list1000, bytes_per_stream, ...}
Stores live in --dir (default a temporary directory, removed after);
--keep keeps them there and reuses them when their arguments match.
stdlib only; only loopback is contacted. Usage:
  bench/bench_startup.py [--bin build/server/lossd] [--builder build/bench/startup_store]
                         [--smoke] [--runs 3] [--only big,pending,small] [--dir D --keep]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

#          name       streams deltas rows
FULL = [("big", 150, 4, 250000), ("pending", 150, 6667, 150), ("small", 10000, 1, 10)]
SMOKE = [("big", 6, 2, 2000), ("pending", 6, 200, 10), ("small", 200, 1, 10)]


def emit(id_, metric, value, **extra):
    d = {"id": id_, "impl": "lossd", "metric": metric, "value": round(float(value), 4)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def log(msg):
    print("bench_startup: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def get(port, path, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def proc_stat(pid):
    """(cpu seconds, RSS bytes) of pid."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


def start(binary, data_dir, deadline_s=600):
    """lossd on data_dir; returns (proc, port, seconds to the first /readyz 200)."""
    port = free_port()
    cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--data-dir", data_dir,
           "--log-level", "warn", "--stream-memory", "64GiB"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while time.monotonic() - t0 < deadline_s:
        if p.poll() is not None:
            raise SystemExit("lossd exited: " + p.stderr.read().decode(errors="replace"))
        try:
            if get(port, "/readyz", timeout=5)[0] == 200:
                return p, port, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.005)
    p.kill()
    raise SystemExit("lossd did not become ready")


def kill9(p):
    p.send_signal(signal.SIGKILL)
    p.wait()


def warm_read(path):
    """Seconds to read path from the page cache (best of 3, after one read)."""
    best = None
    for _ in range(4):
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.readinto(BUF):
                pass
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


BUF = bytearray(8 << 20)


def list_ms(port, path, n=20):
    times = []
    body = b""
    for _ in range(n):
        t0 = time.perf_counter()
        st, body = get(port, path)
        times.append((time.perf_counter() - t0) * 1000)
        if st != 200:
            raise SystemExit("list failed: %d %r" % (st, body[:200]))
    times.sort()
    return times[len(times) // 2], json.loads(body)


def build_store(builder, d, streams, deltas, rows, keep):
    stamp = os.path.join(d, "bench-args")
    want = "%d %d %d" % (streams, deltas, rows)
    if keep and os.path.exists(stamp) and open(stamp).read() == want:
        log("reusing %s" % d)
        return
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run([builder, d, "exact", str(streams), str(deltas), str(rows)], check=True,
                   stdout=sys.stderr)
    with open(stamp, "w") as f:
        f.write(want)
    log("built %s in %.1f s" % (d, time.monotonic() - t0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get(
        "LOSSD_BIN", os.path.join(HERE, "..", "build", "server", "lossd")))
    ap.add_argument("--builder", default=os.path.join(HERE, "..", "build", "bench",
                                                      "startup_store"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="big,pending,small")
    ap.add_argument("--dir")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the stores")
    a = ap.parse_args()

    root = a.dir or tempfile.mkdtemp(prefix="lossd-bench-startup-")
    os.makedirs(root, exist_ok=True)
    cores = os.cpu_count() or 1
    try:
        # the empty store's RSS: the base the per-stream figure is taken from
        empty = os.path.join(root, "empty")
        shutil.rmtree(empty, ignore_errors=True)
        p, port, _ = start(a.bin, empty)
        time.sleep(0.2)
        rss0 = proc_stat(p.pid)[1]
        kill9(p)
        for name, streams, deltas, rows in (SMOKE if a.smoke else FULL):
            if name not in a.only.split(","):
                continue
            d = os.path.join(root, name)
            build_store(a.builder, d, streams, deltas, rows, a.keep)
            db = os.path.join(d, "lossd.db")
            size = os.path.getsize(db)
            disk = warm_read(db)
            p, port, _ = start(a.bin, d)  # a first start: then every restart follows a kill -9
            kill9(p)
            ready, cpu, rss = [], [], 0
            for _ in range(a.runs):
                p, port, t = start(a.bin, d)
                c, rss = proc_stat(p.pid)
                ready.append(t)
                cpu.append(c)
                if len(ready) < a.runs:
                    kill9(p)
            try:
                ms, page = list_ms(port, "/v1/streams")
                ms1000, page1000 = list_ms(port, "/v1/streams?limit=1000")
                want = min(streams, 100)
                if len(page["streams"]) != want:
                    raise SystemExit("listed %d streams, want %d" % (len(page["streams"]), want))
                st, body = get(port, "/healthz")
                time.sleep(0.2)
                rss = proc_stat(p.pid)[1]
            finally:
                kill9(p)
            ready.sort()
            cpu.sort()
            med, cpu_med = ready[len(ready) // 2], cpu[len(cpu) // 2]
            load = open("/proc/loadavg").read().split()[0]
            base = "startup/%s" % name
            extra = {"streams": streams, "deltas": streams * deltas, "db_bytes": size,
                     "load": float(load)}
            emit(base + "/ready", "s", med, runs=[round(x, 3) for x in ready], **extra)
            emit(base + "/cpu", "s", cpu_med)
            emit(base + "/disk_read", "s", disk)
            emit(base + "/decode_rate", "MB/s per core", size / 1e6 / max(cpu_med, 1e-3))
            emit(base + "/cpu_bound", "s", cpu_med / cores, cores=cores)
            emit(base + "/list", "ms", ms)
            emit(base + "/list1000", "ms", ms1000, listed=len(page1000["streams"]))
            emit(base + "/bytes_per_stream", "B", (rss - rss0) / streams, rss=rss, rss_empty=rss0)
            log("%s: %d streams, %d deltas, %.2f GB: ready in %.3f s (runs %s), %.2f s CPU, "
                "file read warm %.3f s; list %.1f ms, limit=1000 %.1f ms; %.0f B/stream; "
                "load %s" % (name, streams, streams * deltas, size / 1e9, med,
                             ", ".join("%.3f" % x for x in ready), cpu_med, disk, ms, ms1000,
                             (rss - rss0) / streams, load))
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
