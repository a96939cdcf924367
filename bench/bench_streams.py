#!/usr/bin/python3
"""Stream update throughput: updates/s and scores/s into ONE stream.

Starts the build's lossd (durability on: WAL + synchronous=FULL, a 2xx only
after the group commit's fsync) on a free port of 127.0.0.1 with a fresh
--data-dir, creates a stream, and has --clients threads (default 32), each
on its own keep-alive connection, post --batch-score batches (default 1000
binary scores, as JSON arrays, each with its own batch_id) for --duration
seconds. Every reply must be 200 (a run with any other status is reported
as failed, never as a figure). Then checks that the stream's count equals
what was acknowledged, restarts the server and checks it again.

Prints JSON lines like the other benchmarks (bench/bench_util.h):
  {"id": "streams/update/<method>/b1000/c32", "impl": "lossd",
   "metric": "updates/s", "value": ...}  and the same with "scores/s".
stdlib only; only loopback is contacted. Usage:
  bench/bench_streams.py [--bin build/server/lossd] [--duration 10]
                         [--clients 32] [--batch 1000] [--method sketch]
                         [--step] [--history-read N]
--step: every update also carries "step" (client k's i-th update has step
i, so the clients add into the same points, as data-parallel workers do);
the id gets "/step". --history-read N: afterwards, a stream of N step
points (one update each) is read back whole (GET .../history?limit=N, then
format=csv) 20 times; the median milliseconds are emitted, with the
server's CPU milliseconds per read (utime + stime of the lossd process from
/proc, so a loaded machine's waiting is told apart from the work itself).
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def emit(id_, metric, value, **extra):
    d = {"id": id_, "impl": "lossd", "metric": metric, "value": round(float(value), 3)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def log(msg):
    print("bench_streams: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def start(binary, data_dir, threads):
    """lossd with request logging off (it would cost the server time)."""
    port = free_port()
    # --stream-memory: room for an exact stream's 10 s of scores.
    cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--data-dir", data_dir,
           "--log-level", "warn", "--max-inflight", "4096", "--stream-memory", "1GiB"]
    if threads:
        cmd += ["--threads", str(threads)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit("lossd exited: " + p.stderr.read().decode(errors="replace"))
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("lossd did not become ready")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def proc_cpu_ms(pid):
    """utime + stime of process pid in ms (Linux /proc), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def history_read(port, npoints, pid):
    """A stream of npoints step points, read back whole; median ms."""
    st, body = request(port, "POST", "/v1/streams", json.dumps(
        {"loss": "binary_crossentropy"}))
    sid = json.loads(body)["id"]
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(npoints):
        c.request("POST", "/v1/streams/%s/update" % sid,
                  body=json.dumps({"y_true": [0, 1, 1], "y_pred": [0.2, 0.7, 0.4],
                                   "step": i}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            log("FAILED: step update %d: %d" % (i, r.status))
            return 1
    for fmt in ("json", "csv"):
        times = []
        cpu0 = proc_cpu_ms(pid)
        for _ in range(20):
            t0 = time.perf_counter()
            c.request("GET", "/v1/streams/%s/history?limit=%d&format=%s" % (sid, npoints, fmt))
            r = c.getresponse()
            data = r.read()
            times.append((time.perf_counter() - t0) * 1000)
            if r.status != 200:
                log("FAILED: history read %d" % r.status)
                return 1
        n = len(json.loads(data)["steps"]) if fmt == "json" else data.count(b"\n") - 1
        if n != npoints:
            log("FAILED: read %d points of %d" % (n, npoints))
            return 1
        cpu1 = proc_cpu_ms(pid)
        cpu = None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) / len(times), 2)
        times.sort()
        med = times[len(times) // 2]
        emit("streams/history_read/%d/%s" % (npoints, fmt), "ms", med, bytes=len(data),
             server_cpu_ms=cpu)
        log("history: %d points as %s in %.2f ms median (%d bytes), server CPU %s ms per read"
            % (npoints, fmt, med, len(data), cpu))
    c.close()
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get(
        "LOSSD_BIN", os.path.join(HERE, "..", "build", "server", "lossd")))
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--method", default="sketch", choices=["sketch", "binned", "exact"])
    ap.add_argument("--threads", type=int, default=0, help="lossd --threads (0: default)")
    ap.add_argument("--step", action="store_true", help="updates carry a training step")
    ap.add_argument("--history-read", type=int, default=0, metavar="N",
                    help="then time reading back N step points")
    a = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="lossd-bench-streams-")
    p, port = start(a.bin, data_dir, a.threads)
    try:
        st, body = request(port, "POST", "/v1/streams", json.dumps(
            {"method": a.method, "loss": "binary_crossentropy"}))
        if st != 201:
            raise SystemExit("create failed: %d %r" % (st, body))
        sid = json.loads(body)["id"]
        rnd = random.Random(7)
        # A few distinct batches, pre-encoded; each request only appends its batch_id.
        prefixes = []
        for _ in range(8):
            y = [rnd.randrange(2) for _ in range(a.batch)]
            s = [round(rnd.random() * 0.7 + 0.3 * v, 6) for v in y]
            prefixes.append(json.dumps({"y_true": y, "y_pred": s})[:-1].encode())
        path = "/v1/streams/%s/update" % sid
        ok = [0] * a.clients
        bad = []
        go = threading.Event()
        stop_at = [0.0]

        def client(k):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            i = 0
            go.wait()
            while time.monotonic() < stop_at[0]:
                b = prefixes[i % len(prefixes)] + b',"batch_id":"c%d-%d"' % (k, i)
                b += (b',"step":%d}' % i) if a.step else b"}"
                i += 1
                c.request("POST", path, body=b, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    ok[k] += 1
                else:
                    bad.append(r.status)
                    break
            c.close()

        th = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in th:
            t.start()
        t0 = time.monotonic()
        stop_at[0] = t0 + a.duration
        go.set()
        for t in th:
            t.join()
        elapsed = time.monotonic() - t0
        n = sum(ok)
        if bad:
            log("FAILED: non-200 replies %r" % sorted(set(bad)))
            return 1
        st, body = request(port, "GET", "/v1/streams/" + sid)
        got = json.loads(body)
        if got["count"] != n * a.batch or got["updates"] != n:
            log("FAILED: stream holds %d updates, %d acknowledged" % (got["updates"], n))
            return 1
        stop(p)
        p, port = start(a.bin, data_dir, a.threads)
        st, body = request(port, "GET", "/v1/streams/" + sid)
        if json.loads(body)["updates"] != n:
            log("FAILED: after a restart the stream lost updates")
            return 1
        ups = n / elapsed
        id_ = "streams/update/%s/b%d/c%d%s" % (a.method, a.batch, a.clients,
                                               "/step" if a.step else "")
        emit(id_, "updates/s", ups, clients=a.clients, batch=a.batch, seconds=round(elapsed, 2))
        emit(id_, "scores/s", ups * a.batch, clients=a.clients, batch=a.batch)
        log("%d updates in %.1fs: %.0f updates/s, %.2fM scores/s (%s, durable, one stream%s)"
            % (n, elapsed, ups, ups * a.batch / 1e6, a.method, ", with step" if a.step else ""))
        if a.history_read:
            return history_read(port, a.history_read, p.pid)
        return 0
    finally:
        if p.poll() is None:
            stop(p)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
