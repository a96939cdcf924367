#!/usr/bin/python3
"""HTTP figures of lossd next to its ceiling and its peer, on loopback.

Small requests: wrk (bench/http/post.lua) posts the same 32x10-logits JSON
body (about 3.2 KB) at --connections connections for --duration seconds to
  lossd             the build's binary, POST /v1/loss
  mhd_ceiling       bare libmicrohttpd + jansson + the loss (bench/mhd_ceiling.c)
  mhd_fixed         the same server replying without parsing (HTTP alone)
  fastapi_w1/_w2    FastAPI + numpy under uvicorn (uvloop + httptools), 1 and
                    2 workers; fastapi_w1_h11 the pure-Python h11/asyncio stack
and reports req/s and the p99 latency from wrk --latency. A run with any
non-2xx reply or socket error is reported as failed, never as a figure
(a server answering 503 fast must not look fast).

Large requests (lossd only): one POST of (8192, 32000) float32 logits in
base64 (about 1.4 GB of body) and one of (4096, 1000) logits as nested JSON
arrays (about 45 MB), each timed end to end from the first byte sent to the
last byte of the reply; MB/s of body. The server is started fresh for each
kind so that VmHWM (peak RSS, /proc/PID/status) covers that request alone;
VmHWM less the idle server's RSS is compared with body + decoded tensors.

Large bodies read as they arrive (--body-only): the same base64 request sent
five times in a row to one server with a --body-cache that holds its tensor;
MB/s end to end and VmHWM over the decoded tensors (bench_body_stream). Then
the same for a request of (4096, 4000) logits as nested JSON arrays (about
180 MB of text) on a fresh server, beside bench_json_lossd's JSON lifting
rate (bench_body_json).

Every server is started here on a free port of 127.0.0.1 and stopped (by
its pid) when its figures are taken. Prints JSON lines like the C
benchmarks (bench/bench_util.h). Only loopback is ever contacted.
"""
import argparse
import base64
import http.client
import json
import os
import re
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def emit(id_, impl, metric, value, **extra):
    d = {"id": id_, "impl": impl, "metric": metric, "value": round(float(value), 6)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def log(msg):
    print("http_bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def post_timed(port, path, body, timeout=600):
    """POST body with a Content-Length on a raw socket: status, reply body,
    and the seconds from its last byte sent to the whole reply read (what
    is left of the request once the client is done: the loss and the
    reply, less what ran while the body arrived)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\nConnection: close\r\n\r\n" % (
                       path, len(body))).encode())
        s.sendall(body)
        t0 = time.perf_counter()
        got = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            got.append(b)
        tail = time.perf_counter() - t0
    finally:
        s.close()
    head, _, rest = b"".join(got).partition(b"\r\n\r\n")
    return int(head.split()[1]), rest, tail


def cpu_seconds(pid):
    """utime + stime of pid so far (/proc/PID/stat), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process started by this script, stopped by its pid."""

    def __init__(self, name, cmd, port, ready_path, ready_body=None, env=None):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix="bench-%s-" % name, suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log in %s" %
                                   (name, self.proc.returncode, self.log.name))
            try:
                method = "POST" if ready_body is not None else "GET"
                st, _ = request(port, method, ready_path, ready_body, timeout=5)
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("%s not ready after 60 s; log in %s" % (name, self.log.name))
            time.sleep(0.1)

    def vm(self, key):
        """A VmXXX figure of /proc/PID/status in bytes (kB there)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        if self.proc.poll() is None:
            # uvicorn with workers has children in the same new session:
            # signal the group this script created, and only it.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def small_body(rows=32, classes=10, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, classes)) * 3.0
    y = rng.integers(0, classes, rows)
    text = ('{"loss": "sparse_categorical_crossentropy", "from_logits": true, "y_true": [%s], '
            '"y_pred": [%s]}' % (", ".join(str(int(v)) for v in y),
                                 ", ".join("[" + ", ".join("%.5f" % v for v in row) + "]"
                                           for row in x)))
    xr = np.array([[float("%.5f" % v) for v in row] for row in x])
    m = xr.max(axis=1)
    ref = float(np.mean(m + np.log(np.exp(xr - m[:, None]).sum(axis=1)) - xr[np.arange(rows), y]))
    return text.encode(), ref


def parse_wrk(out):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        v = float(m.group(1))
        return round(v * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)], 3)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, val in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M):
        lat[pct] = dur(val)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = (int(non2xx.group(1)) if non2xx else 0)
    errs = sum(int(g) for g in sock.groups()) if sock else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, lat, bad, errs, total


def run_wrk(port, body_file, path, a):
    cmd = ["wrk", "-t%d" % a.wrk_threads, "-c%d" % a.connections, "-d%ds" % a.duration,
           "--latency", "-s", os.path.join(HERE, "http", "post.lua"),
           "http://127.0.0.1:%d%s" % (port, path)]
    env = dict(os.environ, BENCH_BODY=body_file)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                         timeout=a.duration + 60).stdout
    return parse_wrk(out), out


def start_perf(a, name, pid, secs):
    """With --perf DIR: profile pid for secs seconds into DIR/profile-NAME.txt."""
    if not a.perf:
        return None
    os.makedirs(a.perf, exist_ok=True)
    return subprocess.Popen([os.path.join(HERE, "profile.sh"), "-o",
                             os.path.join(a.perf, "profile-%s.txt" % name), "-p", str(pid),
                             str(secs)])


def bench_small(a, body, ref, body_file):
    servers = []
    if a.lossd:
        for name in ("lossd", "lossd_scalar"):
            servers.append((name, "/v1/loss", lambda p, name=name: Server(
                name, [a.lossd, "--bind", "127.0.0.1", "--port", str(p), "--data-dir",
                       tempfile.mkdtemp(prefix="bench-lossd-"), "--log-level", "warn"],
                p, "/healthz")))
    if a.ceiling:
        for mode in ("loss", "fixed"):
            servers.append(("mhd_ceiling" if mode == "loss" else "mhd_fixed", "/v1/loss",
                            lambda p, mode=mode: Server(
                                "mhd_" + mode, [a.ceiling, "--port", str(p), "--threads", "2",
                                                "--mode", mode], p, "/v1/loss", body)))
    if a.fastapi:
        # uvloop + httptools (what `pip install uvicorn[standard]` deploys) with 1 and 2
        # workers; and, for reference, the pure-Python h11/asyncio stack with 1 worker
        for name, w, extra in (("fastapi_w1", 1, []), ("fastapi_w2", 2, []),
                               ("fastapi_w1_h11", 1, ["--http", "h11", "--loop", "asyncio"])):
            servers.append((name, "/v1/loss", lambda p, w=w, extra=extra, name=name: Server(
                name,
                [PY, "-m", "uvicorn", "fastapi_app:app", "--app-dir", os.path.join(HERE, "peers"),
                 "--host", "127.0.0.1", "--port", str(p), "--workers", str(w),
                 "--no-access-log", "--log-level", "warning"] + extra, p, "/v1/loss", body)))
    # lossd_scalar: the same request with "per_class": false, so the reply is the
    # scalar figures only (about 100 bytes instead of 1.9 KB), like the ceiling's
    scalar = body.replace(b'"from_logits": true', b'"from_logits": true, "per_class": false', 1)
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json", delete=False) as f:
        f.write(scalar)
        scalar_file = f.name
    fails = 0
    for impl, path, start in servers:
        bfile, bbody = (scalar_file, scalar) if impl == "lossd_scalar" else (body_file, body)
        port = free_port()
        try:
            srv = start(port)
        except RuntimeError as e:
            log(str(e))
            fails += 1
            continue
        try:
            st, reply = request(port, "POST", path, bbody)
            if impl != "mhd_fixed":
                got = json.loads(reply).get("loss")
                if st != 200 or got is None or abs(got - ref) > 1e-5 * abs(ref):
                    log("%s answered %s %r, expected loss %.8g" % (impl, st, reply[:200], ref))
                    fails += 1
                    continue
            (rps, lat, bad, errs, total), out = run_wrk(port, bfile, path, a)
            if a.perf and impl in ("lossd", "mhd_ceiling"):
                # profiled in a run of its own: perf's sampling with call graphs
                # would otherwise be in the figures (p99 5 -> 13-41 ms for lossd)
                prof = start_perf(a, "http-small-" + impl, srv.proc.pid, max(1, a.duration - 2))
                run_wrk(port, bfile, path, a)
                prof.wait()
            if bad or errs:
                log("%s: %d non-2xx replies and %d socket errors in %d requests:\n%s" %
                    (impl, bad, errs, total, out))
                fails += 1
                continue
            emit("http/small", impl, "req/s", rps, p50_ms=lat.get("50"), p99_ms=lat.get("99"),
                 requests=total, connections=a.connections, duration_s=a.duration,
                 body_bytes=len(bbody), reply_bytes=len(reply))
            emit("http/small/p99", impl, "ms", lat.get("99", -1))
            log("%s: %.0f req/s, p99 %.2f ms" % (impl, rps, lat.get("99", -1)))
        finally:
            srv.stop()
    os.unlink(scalar_file)
    return fails


def lossd_large_cmd(a, port):
    return [a.lossd, "--bind", "127.0.0.1", "--port", str(port), "--data-dir",
            tempfile.mkdtemp(prefix="bench-lossd-"), "--log-level", "warn",
            "--max-body", "4GiB", "--max-elements", str(1 << 30), "--max-json-mem", "16GiB"]


def ce_ref(x, y):
    """Float64 mean sparse CE of float32 logits, in row chunks."""
    total = 0.0
    for i in range(0, x.shape[0], 512):
        c = x[i:i + 512].astype(np.float64)
        m = c.max(axis=1)
        lse = m + np.log(np.exp(c - m[:, None]).sum(axis=1))
        total += float((lse - c[np.arange(c.shape[0]), y[i:i + 512]]).sum())
    return total / x.shape[0]


def bench_large(a):
    fails = 0
    rng = np.random.default_rng(9)
    shapes = {"b64": (64, 1000) if a.smoke else (8192, 32000),
              "json": (64, 1000) if a.smoke else (4096, 1000)}
    for kind in ("b64", "json"):
        n, v = shapes[kind]
        x = (rng.standard_normal((n, v), dtype=np.float32) * 3.0)
        y = rng.integers(0, v, n).astype(np.int32)
        if kind == "b64":
            body = (('{"loss": "sparse_categorical_crossentropy", "from_logits": true, '
                     '"y_true": {"shape": [%d], "dtype": "int32", "b64": "' % n).encode()
                    + base64.b64encode(y.tobytes()) +
                    ('"}, "y_pred": {"shape": [%d, %d], "dtype": "float32", "b64": "' % (n, v))
                    .encode() + base64.b64encode(x.tobytes()) + b'"}}')
            decoded = x.nbytes + y.nbytes
        else:
            x = np.array(x, dtype=np.float32)
            rows = []
            for row in x:
                rows.append("[" + ", ".join("%.7g" % t for t in row) + "]")
            body = ('{"loss": "sparse_categorical_crossentropy", "from_logits": true, '
                    '"y_true": [%s], "y_pred": [%s]}' % (", ".join(str(int(t)) for t in y),
                                                        ", ".join(rows))).encode()
            # the decoded values are those of the text, as float64 (JSON numbers)
            x = np.array([float(t) for r in rows for t in r[1:-1].split(", ")],
                         dtype=np.float64).reshape(n, v)
            decoded = x.nbytes + y.size * 8
        ref = ce_ref(x, y)
        log("large %s: body %.1f MB, decoded %.1f MB" % (kind, len(body) / 1e6, decoded / 1e6))
        port = free_port()
        try:
            srv = Server("lossd-large", lossd_large_cmd(a, port), port, "/healthz")
        except RuntimeError as e:
            log(str(e))
            return fails + 1
        try:
            base_rss = srv.vm("VmRSS")
            secs = []
            for r in range(a.large_runs):
                t0 = time.perf_counter()
                st, reply = request(port, "POST", "/v1/loss", body)
                secs.append(time.perf_counter() - t0)
                if r == 0 and a.perf:  # profile a second request, timed apart
                    prof = start_perf(a, "http-large-" + kind, srv.proc.pid,
                                      max(1, int(secs[0] * 1.5) + 1))
                    time.sleep(0.3)
                    request(port, "POST", "/v1/loss", body)
                    prof.wait()
                if st != 200:
                    log("large %s: HTTP %d %r" % (kind, st, reply[:300]))
                    fails += 1
                    break
                got = json.loads(reply).get("loss")
                if got is None or abs(got - ref) > 1e-6 * abs(ref):
                    log("large %s: loss %r, float64 reference %.10g" % (kind, got, ref))
                    fails += 1
                    break
            else:
                med = statistics.median(secs)
                hwm = srv.vm("VmHWM")
                emit("http/large_%s" % kind, "lossd", "MB/s", len(body) / med / 1e6,
                     body_bytes=len(body), decoded_bytes=decoded, ms=round(med * 1e3, 1),
                     shape=[n, v], runs=a.large_runs)
                # the request's share of the peak: VmHWM less the idle server's RSS
                emit("http/large_%s/peak_rss" % kind, "lossd", "x(body+decoded)",
                     (hwm - base_rss) / (len(body) + decoded), vm_hwm=hwm,
                     rss_before=base_rss, body_bytes=len(body), decoded_bytes=decoded)
                log("large %s: %.0f MB/s, peak RSS %.2f GB (idle %.0f MB) = %.2fx "
                    "(body + decoded)" % (kind, len(body) / med / 1e6, hwm / 1e9, base_rss / 1e6,
                                          (hwm - base_rss) / (len(body) + decoded)))
        finally:
            srv.stop()
        del body, x
    return fails


def bench_body_stream(a):
    """A large base64 loss request read as it arrives (api/src/body.c): the
    (8192, 32000) float32 logits of bench_large, sent --body-runs times in a
    row to one server started with a --body-cache that holds its tensor.
    MB/s of body end to end (median), and the process's VmHWM after all of
    them over the decoded tensors' bytes (bound: 1.1x)."""
    rng = np.random.default_rng(9)
    n, v = (512, 1000) if a.smoke else (8192, 32000)  # smoke: 2.7 MB, still streamed
    x = rng.standard_normal((n, v), dtype=np.float32) * 3.0
    y = rng.integers(0, v, n).astype(np.int32)
    body = (('{"loss": "sparse_categorical_crossentropy", "from_logits": true, '
             '"y_true": {"shape": [%d], "dtype": "int32", "b64": "' % n).encode()
            + base64.b64encode(y.tobytes()) +
            ('"}, "y_pred": {"shape": [%d, %d], "dtype": "float32", "b64": "' % (n, v)).encode()
            + base64.b64encode(x.tobytes()) + b'"}}')
    decoded = x.nbytes + y.nbytes
    ref = ce_ref(x, y)
    del x
    log("body stream: body %.1f MB, decoded %.1f MB, %d runs" % (len(body) / 1e6, decoded / 1e6,
                                                                 a.body_runs))
    return run_body(a, "body stream", body, decoded, ref, 1e-6, "http/body_b64", (n, v),
                    "http-body-stream")


def bench_body_json(a):
    """A large JSON loss request read as it arrives (api/src/body.c lifts its
    number arrays row by row): (4096, 4000) logits as nested arrays of
    "%.7g" numbers, sent --body-runs times in a row to a fresh server. MB/s
    of body end to end (median), and the process's VmHWM after all of them
    over the decoded tensors' bytes (float64, as JSON numbers decode)."""
    rng = np.random.default_rng(10)
    n, v = (256, 1000) if a.smoke else (4096, 4000)  # smoke: 2.8 MB, still streamed
    x = rng.standard_normal((n, v)) * 3.0
    y = rng.integers(0, v, n)
    rows = ["[" + ", ".join(map("%.7g".__mod__, r)) + "]" for r in x.tolist()]
    body = ('{"loss": "sparse_categorical_crossentropy", "from_logits": true, '
            '"y_true": [%s],\n "y_pred": [%s]}' % (", ".join(map(str, y.tolist())),
                                                    ",\n  ".join(rows))).encode()
    del rows
    x = np.array(["%.7g" % t for t in x.ravel()], dtype=np.float64).reshape(n, v)
    decoded = x.nbytes + y.size * 8
    ref = ce_ref(x, y)
    del x
    log("body json: body %.1f MB, decoded %.1f MB, %d runs" % (len(body) / 1e6, decoded / 1e6,
                                                               a.body_runs))
    return run_body(a, "body json", body, decoded, ref, 1e-9, "http/body_json", (n, v),
                    "http-body-json")


def run_body(a, what, body, decoded, ref, tol, id_, shape, profile):
    """Sends body --body-runs times in a row to a fresh server with a
    --body-cache that holds its tensors; checks every reply's loss against
    ref (relative tol); emits id_ (MB/s of body end to end, the median) and
    id_/hwm (the process's VmHWM after all of them over `decoded`). With
    --perf, one more request is profiled (bench/profiles/profile-<profile>.txt)."""
    port = free_port()
    try:
        srv = Server("lossd-" + id_.replace("http/", "").replace("_", "-"),
                     lossd_large_cmd(a, port) + ["--body-cache", "2GiB"], port, "/healthz")
    except RuntimeError as e:
        log(str(e))
        return 1
    try:
        secs, tails, cpus = [], [], []
        for r in range(a.body_runs):
            c0 = cpu_seconds(srv.proc.pid)
            t0 = time.perf_counter()
            st, reply, tail = post_timed(port, "/v1/loss", body)
            secs.append(time.perf_counter() - t0)
            tails.append(tail)
            cpus.append(cpu_seconds(srv.proc.pid) - c0)
            got = json.loads(reply).get("loss") if st == 200 else None
            if got is None or abs(got - ref) > tol * abs(ref):
                log("%s: HTTP %d %r, float64 reference %.10g" % (what, st, reply[:300], ref))
                return 1
        hwm = srv.vm("VmHWM")
        if a.perf:  # one more, profiled
            prof = start_perf(a, profile, srv.proc.pid, max(1, int(max(secs)) + 1))
            time.sleep(0.2)
            request(port, "POST", "/v1/loss", body)
            prof.wait()
        med = statistics.median(secs)
        emit(id_, "lossd", "MB/s", len(body) / med / 1e6, body_bytes=len(body),
             decoded_bytes=decoded, ms=round(med * 1e3, 1), shape=list(shape),
             runs=a.body_runs, runs_ms=[round(t * 1e3, 1) for t in secs],
             last_byte_to_reply_ms=round(statistics.median(tails) * 1e3, 1),
             server_cpu_s=round(statistics.median(cpus), 3))
        emit(id_ + "/hwm", "lossd", "x(decoded)", hwm / decoded, vm_hwm=hwm,
             decoded_bytes=decoded, runs=a.body_runs)
        log("%s: %.0f MB/s (median of %d: %s ms), VmHWM %.3f GB = %.2fx decoded "
            "(body %.2fx decoded); last byte to reply %.0f ms, server CPU %.2f s "
            "(medians)" % (
                what, len(body) / med / 1e6, a.body_runs,
                ", ".join("%.0f" % (t * 1e3) for t in secs), hwm / 1e9, hwm / decoded,
                len(body) / decoded, statistics.median(tails) * 1e3,
                statistics.median(cpus)))
    finally:
        srv.stop()
    return 0


def count_syncs(pid, secs):
    """fsync + fdatasync calls of pid over secs seconds (perf tracepoints;
    they cost next to nothing, unlike strace). None when perf cannot."""
    try:
        out = subprocess.run(["perf", "stat", "-x", ",", "-e",
                              "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
                              "-p", str(pid), "--", "sleep", str(secs)],
                             capture_output=True, text=True, timeout=secs + 30).stderr
        return sum(int(line.split(",")[0]) for line in out.splitlines()
                   if "sys_enter_f" in line and line.split(",")[0].isdigit())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def bench_streams(a):
    """Acknowledged stream updates/s: --connections clients posting
    1,000-score batches to one sketch stream, durability on (lossd's
    default: a 2xx only after the update is fsynced). The data dir is on
    the machine's disk (/var/tmp), never tmpfs, where fsync would be free."""
    rng = np.random.default_rng(13)
    y = (rng.random(1000) < 0.3).astype(int)
    sc = 1.0 / (1.0 + np.exp(-(rng.standard_normal(1000) + y)))
    body = ('{"y_true": [%s], "y_score": [%s]}' % (", ".join(str(v) for v in y),
                                                    ", ".join("%.6f" % v for v in sc))).encode()
    with tempfile.NamedTemporaryFile(prefix="bench-upd-", suffix=".json", delete=False) as f:
        f.write(body)
        body_file = f.name
    data_dir = tempfile.mkdtemp(prefix="bench-streams-", dir=a.streams_dir)
    port = free_port()
    fails = 0
    try:
        srv = Server("lossd-streams", [a.lossd, "--bind", "127.0.0.1", "--port", str(port),
                                       "--data-dir", data_dir, "--log-level", "warn"],
                     port, "/healthz")
    except RuntimeError as e:
        log(str(e))
        shutil.rmtree(data_dir, ignore_errors=True)
        return 1
    try:
        st, reply = request(port, "POST", "/v1/streams", b'{"method": "sketch"}')
        if st != 201:
            log("streams: create answered %d %r" % (st, reply[:200]))
            return 1
        sid = json.loads(reply)["id"]
        path = "/v1/streams/%s/update" % sid
        st, reply = request(port, "POST", path, body)
        if st != 200:
            log("streams: update answered %d %r" % (st, reply[:200]))
            return 1
        sync_secs = max(1, a.duration - 4)
        holder = {}

        def syncs():
            time.sleep(2)
            holder["n"] = count_syncs(srv.proc.pid, sync_secs)
        th = threading.Thread(target=syncs)
        th.start()
        (rps, lat, bad, errs, total), out = run_wrk(port, body_file, path, a)
        th.join()
        st, reply = request(port, "GET", "/v1/streams/%s" % sid)
        count = json.loads(reply).get("count") if st == 200 else None
        if bad or errs or count is None or count < (total + 1) * 1000:
            log("streams: %d non-2xx, %d socket errors, %s scores counted for %d acknowledged "
                "updates:\n%s" % (bad, errs, count, total + 1, out))
            return 1
        n = holder.get("n")
        per_sync = rps * sync_secs / n if n else None
        emit("streams/update_1000", "lossd", "updates/s", rps, p50_ms=lat.get("50"),
             p99_ms=lat.get("99"), clients=a.connections, scores_per_s=rps * 1000,
             fsyncs_per_s=(n / sync_secs) if n else None, updates_per_fsync=per_sync,
             note="%d clients, 1,000-score batches, one sketch stream, fsync per commit"
             % a.connections)
        log("streams: %.0f acknowledged updates/s (%.1f M scores/s), p99 %.2f ms, "
            "%s fsyncs/s" % (rps, rps / 1e3, lat.get("99", -1),
                            "%.0f" % (n / sync_secs) if n else "?"))
        if a.perf:  # profiled in a run of its own, as bench_small
            prof = start_perf(a, "streams-update", srv.proc.pid, max(1, a.duration - 2))
            run_wrk(port, body_file, path, a)
            prof.wait()
    finally:
        srv.stop()
        os.unlink(body_file)
        shutil.rmtree(data_dir, ignore_errors=True)
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lossd", help="path of the lossd binary")
    ap.add_argument("--ceiling", help="path of mhd_ceiling")
    ap.add_argument("--fastapi", action="store_true", help="run the FastAPI peer")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--large-runs", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--body-only", action="store_true",
                    help="only the large base64 and JSON bodies read as they arrive "
                    "(bench_body_stream, bench_body_json)")
    ap.add_argument("--body-runs", type=int, default=5)
    ap.add_argument("--streams", action="store_true", help="durable stream updates/s")
    ap.add_argument("--streams-dir", default="/var/tmp",
                    help="where the stream data dir goes; /dev/shm (tmpfs, fsync free) shows "
                    "what the rate would be if fsync cost nothing")
    ap.add_argument("--perf", metavar="DIR", help="profile lossd (perf) into DIR/profile-*.txt")
    a = ap.parse_args()
    if a.smoke:
        a.duration, a.connections, a.large_runs = 2, 4, 1
    if a.body_only:
        sys.exit(1 if not a.lossd or bench_body_stream(a) + bench_body_json(a) else 0)
    body, ref = small_body()
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json", delete=False) as f:
        f.write(body)
        body_file = f.name
    log("small body: %d bytes" % len(body))
    fails = bench_small(a, body, ref, body_file)
    os.unlink(body_file)
    if a.lossd and not a.skip_large:
        fails += bench_large(a)
    if a.lossd and a.streams:
        fails += bench_streams(a)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
