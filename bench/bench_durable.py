#!/usr/bin/python3
"""Durable stream updates: acknowledged updates/s, updates per commit and
p99 at 32 clients, beside this disk's fsync rate measured in the same run.

For each body (1,000 binary scores as JSON arrays, and the same as base64
tensors: y_true uint8, y_score float32; "jsonstep": the JSON body with
"step": 1, every update adding into one step point; "b64fresh": base64
bodies whose 1,000 scores the client draws anew for every request, as a
training worker's are, so the sketch is full and each update merges into
a full one, where one body repeated keeps the stream at its ~1,000
buckets) and each spread (ONE sketch stream
shared by every client, and 32 streams, client i on stream i mod 32):
  1. a fresh lossd (the build's, durability on: WAL + synchronous=FULL, a
     2xx only after the commit's fsync) on 127.0.0.1 with a --data-dir in
     --dir (default /var/tmp; /dev/shm shows the rate if fsync were free);
  2. bench/durable_client (C, one epoll thread: the client must cost far
     less than the server) first measures write+fdatasync of 4 KiB in the
     data dir for 2 s, then keeps --clients connections posting for
     --duration seconds, each waiting for its reply before the next (a
     closed loop, as a training worker waits for its 2xx);
  3. /metrics before and after give the commits (lossd_store_commit_groups_total)
     and the updates committed (lossd_stream_updates_committed_total) of the
     run, and the mean commit (commit_ms: lossd_store_commit_seconds' sum over
     its count, the transaction and its fsync); every reply must be 200, and every stream's update count and score
     count must equal what was acknowledged, else the run fails (no figure).

Prints JSON lines (bench/bench_util.h):
  {"id": "durable/json/s1/c32", "impl": "lossd", "metric": "updates/s", ...}
  {"id": "durable/json/s1/c32/per_commit", ..., "metric": "updates/commit"}
  {"id": "durable/json/s1/c32/p99", ..., "metric": "ms"}
  {"id": "durable/fsync", ..., "metric": "fsyncs/s"}
with commits/s, fsyncs/s, p50, the bytes lossd wrote to disk per update
(/proc/PID/io write_bytes: WAL and database), lossd's CPU time per update
(/proc/PID/stat; cpu_bound_per_s: the rate if lossd had every core to
itself), its threads' context switches per update (switches_per_update:
the thread hand-offs, load-independent), its minor page faults per update
(faults_per_update) and the load average as extra fields.
Then (--step-pairs N, default 3) json/s1 and jsonstep/s1 run N times in
turn: "step"'s cost in updates/s and in CPU per update as ratios of the
runs' sums (durable/step_pairs/updates, .../cpu), as one run's spread is
larger than that cost.
With --perf DIR each case gets a second run of its own whose lossd is
profiled (bench/profile.sh: perf, cpu-clock, the top functions) into
DIR/profile-durable-KIND-sN.txt, so the figures come from unprofiled runs.
Usage: bench/bench_durable.py [--bin build/server/lossd]
  [--client build/bench/durable_client] [--duration 10] [--clients 32]
  [--only json/s1,b64/s32,...] [--step-pairs 3] [--perf DIR] [--smoke]
"""
import argparse
import base64
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))


def emit(id_, metric, value, **extra):
    d = {"id": id_, "impl": "lossd", "metric": metric, "value": round(float(value), 3)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def log(msg):
    print("bench_durable: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=body,
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metrics(port):
    st, text = request(port, "GET", "/metrics")
    if st != 200:
        raise SystemExit("/metrics answered %d" % st)
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            out[name] = float(v)
    return out


def written(pid):
    """Bytes the process has sent to the block layer (/proc/PID/io), or None."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    """User + system CPU seconds the process has used (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid):
    """Minor page faults of the process so far (/proc/PID/stat): memory given
    back to the kernel and touched again."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rpartition(")")[2].split()[7])


def switches(pid):
    """Context switches (voluntary + involuntary) of the process's live threads
    (/proc/PID/task/*/status): about two per thread wake-up, so a count of the
    hand-offs that does not depend on the machine's load."""
    n = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for t in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:",
                                        "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def start(binary, data_dir, a):
    port = free_port()
    cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--data-dir", data_dir,
           "--log-level", "warn"] + a.server_args
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


def bodies(n):
    rng = random.Random(7)
    y = [rng.randrange(2) for _ in range(n)]
    s = [min(max(rng.gauss(0.35 + 0.3 * v, 0.2), 0.0), 1.0) for v in y]
    js = ('{"y_true": [%s], "y_score": [%s]}' % (", ".join(str(v) for v in y),
                                                 ", ".join("%.6f" % v for v in s))).encode()
    yb = base64.b64encode(bytes(y)).decode()
    sb = base64.b64encode(struct.pack("<%df" % n, *s)).decode()
    b64 = json.dumps({"y_true": {"shape": [n], "dtype": "uint8", "b64": yb},
                      "y_score": {"shape": [n], "dtype": "float32", "b64": sb}}).encode()
    # the JSON body with "step": every client adds into the same step point,
    # as data-parallel workers do (issue 15: at most 10% more than without)
    jstep = js[:-1] + b', "step": 1}'
    return {"json": js, "b64": b64, "jsonstep": jstep, "b64fresh": b64}


def run_case(a, kind, nstreams, body, batch, perf=None, out=None):
    """One measured run of the case; with perf (a file), instead a run of its
    own whose lossd is profiled (bench/profile.sh -p) for all but its first
    and last seconds, with no figures. With out (a list), the run's updates/s
    and CPU us per update are appended to it instead of printed."""
    data_dir = tempfile.mkdtemp(prefix="bench-durable-", dir=a.dir)
    body_file = os.path.join(data_dir, "body.json")
    with open(body_file, "wb") as f:
        f.write(body)
    p, port = start(a.bin, os.path.join(data_dir, "db"), a)
    case = "durable/%s/s%d/c%d" % (kind, nstreams, a.clients)
    try:
        ids = []
        for _ in range(nstreams):
            st, reply = request(port, "POST", "/v1/streams", b'{"method": "sketch"}')
            if st != 201:
                raise SystemExit("create answered %d %r" % (st, reply[:200]))
            ids.append(json.loads(reply)["id"])
        paths = ["/v1/streams/%s/update" % i for i in ids]
        m0 = metrics(port)
        w0 = written(p.pid)
        c0 = cpu_seconds(p.pid)
        x0 = switches(p.pid)
        f0 = minor_faults(p.pid)
        load0 = os.getloadavg()[0]
        client = [a.client, "--port", str(port), "--seconds", str(a.duration),
                  "--clients", str(a.clients), "--body", body_file] + \
                 (["--fsync", data_dir, str(a.fsync_seconds)] if not perf else []) + \
                 (["--fresh", str(batch)] if kind.endswith("fresh") else []) + paths
        if perf:
            cl = subprocess.Popen(client, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1)
            pr = subprocess.run([os.path.join(HERE, "profile.sh"), "-o", perf, "-p",
                                 str(p.pid), str(max(1, int(a.duration) - 2))],
                                capture_output=True, text=True)
            cl.wait(timeout=a.duration + 180)
            log("%s: profile in %s%s" % (case, perf, "" if pr.returncode == 0 else
                                          " (profile.sh failed: %s)" % pr.stderr.strip()))
            return 1 if pr.returncode or cl.returncode else 0
        cp = subprocess.run(client, capture_output=True, text=True, timeout=a.duration + 180)
        load1 = os.getloadavg()[0]
        if cp.returncode != 0:
            log("%s: client failed: %s" % (case, cp.stderr))
            return 1
        r = json.loads(cp.stdout)
        m1 = metrics(port)
        w1 = written(p.pid)
        cpu = cpu_seconds(p.pid) - c0
        x1 = switches(p.pid)
        fpu = (minor_faults(p.pid) - f0) / r["ok"] if r["ok"] else None
        spu = (x1 - x0) / r["ok"] if x0 is not None and x1 is not None and r["ok"] else None
        commits = m1["lossd_store_commit_groups_total"] - m0["lossd_store_commit_groups_total"]
        updates = (m1["lossd_stream_updates_committed_total"] -
                   m0["lossd_stream_updates_committed_total"])
        counted = 0
        scores = 0
        for i in ids:
            st, reply = request(port, "GET", "/v1/streams/" + i)
            if st != 200:
                log("%s: GET answered %d" % (case, st))
                return 1
            d = json.loads(reply)
            counted += d["updates"]
            scores += d["count"]
        if r["bad"] or r["errors"] or counted != r["ok"] or scores != r["ok"] * batch \
                or updates != r["ok"]:
            log("%s: INVALID run: %d non-200 (first: %r), %d broken connections, %d "
                "acknowledged, %d updates and %d scores counted, %d committed" %
                (case, r["bad"], r["first_bad"], r["errors"], r["ok"], counted, scores,
                 updates))
            return 1
        rate = r["ok"] / r["seconds"]
        # the mean commit (transaction + fsync) from the histogram's sum and count
        ncommit = (m1.get("lossd_store_commit_seconds_count", 0) -
                   m0.get("lossd_store_commit_seconds_count", 0))
        commit_ms = ((m1.get("lossd_store_commit_seconds_sum", 0) -
                      m0.get("lossd_store_commit_seconds_sum", 0)) * 1e3 / ncommit
                     if ncommit else None)
        per_commit = updates / commits if commits else 0
        commits_s = commits / r["seconds"]
        wpu = (w1 - w0) / r["ok"] if w0 is not None and w1 is not None and r["ok"] else None
        extra = dict(p50_ms=r["p50_ms"], p99_ms=r["p99_ms"], updates_per_commit=per_commit,
                     disk_bytes_per_update=wpu, cpu_us_per_update=cpu * 1e6 / r["ok"],
                     switches_per_update=spu, faults_per_update=fpu,
                     cpu_bound_per_s=os.cpu_count() * r["ok"] / cpu if cpu else None,
                     commits_per_s=commits_s, fsyncs_per_s=r["fsyncs_per_s"],
                     commit_ms=commit_ms, machine_idle=r.get("machine_idle"),
                     client_us_per_update=(r["client_cpu_s"] * 1e6 / r["ok"]
                                           if "client_cpu_s" in r and r["ok"] else None),
                     acknowledged=r["ok"], clients=a.clients, streams=nstreams,
                     load=[round(load0, 2), round(load1, 2)],
                     note="%d clients, %s 1,000-score bodies, %d stream(s); fsync %.0f/s" %
                     (a.clients, kind, nstreams, r["fsyncs_per_s"]))
        if out is not None:
            out.append((rate, cpu * 1e6 / r["ok"]))
            log("%s: %.0f updates/s, %.0f us of lossd CPU per update (a pair's run)" %
                (case, rate, cpu * 1e6 / r["ok"]))
            return 0
        emit(case, "updates/s", rate, **extra)
        emit(case + "/per_commit", "updates/commit", per_commit,
             note="%.0f commits/s; disk: %.0f fsyncs/s" % (commits_s, r["fsyncs_per_s"]))
        emit(case + "/p99", "ms", r["p99_ms"])
        emit("durable/fsync/%s/s%d" % (kind, nstreams), "fsyncs/s", r["fsyncs_per_s"],
             note="write+fdatasync of 4 KiB in the data dir, just before the run")
        log("%s: %.0f updates/s, %.1f updates/commit, %.0f commits/s (%s ms each), fsync "
            "%.0f/s, p50 %.2f ms, p99 %.2f ms, %s KB written, %.0f us of lossd CPU and %s "
            "context switches per update (all %d cores: %.0f/s), the client %s us, machine "
            "idle %s, load %.2f -> %.2f" %
            (case, rate, per_commit, commits_s,
             "%.2f" % commit_ms if commit_ms is not None else "?", r["fsyncs_per_s"],
             r["p50_ms"], r["p99_ms"],
             "%.1f" % (wpu / 1e3) if wpu is not None else "?", cpu * 1e6 / r["ok"],
             "%.1f" % spu if spu is not None else "?",
             os.cpu_count(), os.cpu_count() * r["ok"] / cpu if cpu else 0,
             "%.0f" % extra["client_us_per_update"]
             if extra["client_us_per_update"] is not None else "?",
             "%.0f%%" % (100 * r["machine_idle"]) if "machine_idle" in r else "?",
             load0, load1))
        return 0
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(HERE)
    ap.add_argument("--bin", default=os.path.join(root, "build", "server", "lossd"))
    ap.add_argument("--client", default=os.path.join(root, "build", "bench", "durable_client"))
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--fsync-seconds", type=float, default=2)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--only", default="json/s1,json/s32,b64/s1,b64/s32,jsonstep/s1,"
                    "b64fresh/s1,b64fresh/s32")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--server-args", default="", help="more lossd flags (space separated)")
    ap.add_argument("--step-pairs", type=int, default=3, metavar="N",
                    help="json/s1 and jsonstep/s1 run N times in turn after the cases "
                    "(0: not): the step's cost as a ratio of sums")
    ap.add_argument("--perf", metavar="DIR",
                    help="after each case, a run of its own profiled into "
                    "DIR/profile-durable-KIND-sN.txt (bench/profile.sh)")
    a = ap.parse_args()
    a.server_args = a.server_args.split()
    if a.smoke:
        a.duration, a.fsync_seconds, a.clients = 1, 0.2, 4
    bs = bodies(1000)
    fails = 0
    for c in a.only.split(","):
        kind, s = c.split("/")
        n = int(s[1:]) if not a.smoke else min(int(s[1:]), 4)
        fails += run_case(a, kind, n, bs[kind], 1000)
        if a.perf and not a.smoke:
            os.makedirs(a.perf, exist_ok=True)
            fails += run_case(a, kind, n, bs[kind], 1000, perf=os.path.join(
                a.perf, "profile-durable-%s-s%d.txt" % (kind, n)))
    if a.step_pairs > 0 and not a.smoke:
        # "step" costs less than one run's spread: json/s1 and jsonstep/s1 in
        # turn, each ratio taken over the sums of the runs
        runs = {"json": [], "jsonstep": []}
        for _ in range(a.step_pairs):
            for kind in ("json", "jsonstep"):
                fails += run_case(a, kind, 1, bs[kind], 1000, out=runs[kind])
        if len(runs["json"]) == len(runs["jsonstep"]) == a.step_pairs:
            rate = [sum(r for r, _ in runs[k]) for k in ("json", "jsonstep")]
            cpu = [sum(c for _, c in runs[k]) for k in ("json", "jsonstep")]
            pairs = ["%.0f/%.0f" % (s_[0], n_[0]) for s_, n_ in zip(runs["jsonstep"],
                                                                     runs["json"])]
            emit("durable/step_pairs/updates", "x", rate[1] / rate[0], pairs=pairs,
                 note="updates/s with \"step\" over without, %d pairs in turn: %s" %
                 (a.step_pairs, ", ".join(pairs)))
            emit("durable/step_pairs/cpu", "x", cpu[1] / cpu[0],
                 note="lossd CPU per update with \"step\" over without, same runs")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
