#!/usr/bin/python3
"""Stream updates on PostgreSQL replicas against one lossd on SQLite, in one run.

1. pgbench on a private PostgreSQL 15 (tests/e2e/pg_harness.py: initdb in a
   temporary folder, fsync on): its commit rate (TPS of the built-in
   simple-update script, --clients connections), what bounds any store
   that commits on this machine's PostgreSQL.
2. acknowledged 1,000-score updates/s from --clients client threads, each on
   its own keep-alive connection with its own batch_ids, into ONE sketch
   stream:
     a) through HAProxy (round robin) to --replicas lossd replicas on that
        PostgreSQL;
     b) straight to one lossd on SQLite (WAL, synchronous=FULL).
   Every reply must be 200 (anything else fails the run), and the stream's
   count must equal what was acknowledged.
3. read latency of a stream another replica just updated: update through
   replica 0, then GET through replica 1 (which must include it), --reads
   times; p50 and p99.
4. with --perf FILE, after 2a a second spray on the same replicas with the
   whole machine profiled (bench/profile.sh -a): each process's and
   thread's share, then the top functions, into FILE (bench/run.sh writes
   bench/results/profiles/profile-pg-sN.txt).

Prints JSON lines ({"id", "impl", "metric", "value", ...}) like the other
benchmarks, and a summary on stderr. Usage:
  bench/bench_pg.py [--bin build/server/lossd] [--duration 10] [--clients 32]
                    [--replicas 2] [--reads 300] [--streams 1]
                    [--store-connections 4] [--perf FILE]
Needs postgresql, pgbench (postgresql-contrib is part of postgresql on
Debian) and haproxy; only loopback is contacted.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import pg_harness  # noqa: E402


def emit(id_, impl, metric, value, **extra):
    d = {"id": id_, "impl": impl, "metric": metric, "value": round(float(value), 3)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def log(msg):
    print("bench_pg: " + msg, file=sys.stderr, flush=True)


class Lossd:
    def __init__(self, binary, args, env=None):
        self.dir = tempfile.mkdtemp(prefix="lossd-bench-pg-")
        e = dict(os.environ)
        e.update(env or {})
        self.port = pg_harness._free_port()
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--data-dir", self.dir,
               "--log-level", "warn", "--max-inflight", "4096"] + args
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lossd did not start: %s" % self.proc.stderr.read())
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def request(port, method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        hdr = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=hdr)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        if conn is None:
            c.close()


def spray(port, duration, clients, batch=1000, streams=1):
    """(acknowledged updates/s, acknowledged, failures, reading of the
    streams: count summed) - client i posts to stream i % streams."""
    sids = []
    for _ in range(streams):
        st, body = request(port, "POST", "/v1/streams", json.dumps({"method": "sketch"}))
        assert st == 201, body
        sids.append(json.loads(body)["id"])
    rnd = random.Random(7)
    y = json.dumps([rnd.randint(0, 1) for _ in range(batch)])
    s = json.dumps([round(rnd.random(), 6) for _ in range(batch)])
    template = '{"y_true": %s, "y_score": %s, "batch_id": "%%s"}' % (y, s)
    acked, bad = [0] * clients, [0] * clients
    why = []  # the first failures: status and body, or the exception
    go = threading.Event()
    stop_at = [0.0]

    def client(i):
        path = "/v1/streams/%s/update" % sids[i % streams]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        go.wait()
        k = 0
        while time.monotonic() < stop_at[0]:
            k += 1
            try:
                st, body = request(port, "POST", path, template % ("c%d-%d" % (i, k)), conn)
            except OSError as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                st, body = None, repr(e)
            if st == 200:
                acked[i] += 1
            else:
                bad[i] += 1
                if len(why) < 5:
                    why.append("client %d update %d: %s %s" % (i, k, st, body[:300]))
        conn.close()

    ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    t0 = time.monotonic()
    stop_at[0] = t0 + duration
    go.set()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    for w in why:
        log("failed: " + w)
    count = sum(json.loads(request(port, "GET", "/v1/streams/" + sid)[1])["count"]
                for sid in sids)
    return sum(acked) / elapsed, sum(acked), sum(bad), {"count": count}


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids, children=()):
    """User + system CPU seconds used so far by pids (plus, for those in
    children, their reaped children: PostgreSQL's ended backends)."""
    t = 0.0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                v = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        t += int(v[11]) + int(v[12]) + (int(v[13]) + int(v[14]) if pid in children else 0)
    return t / TICK


def pg_pids(pg):
    """The postmaster and its children (backends, WAL writer, checkpointer)."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        pm = int(f.readline())
    pids = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                        pids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return pids, (pm,)


class CpuMeter:
    """CPU seconds of named process groups over a run: .start(), .stop() -> {name: s}."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning (pids, children)

    def _now(self):
        out = {}
        for name, get in self.groups.items():
            pids, ch = get()
            out[name] = cpu_s(pids, ch)
        t = os.times()
        out["bench client"] = t.user + t.system
        return out

    def start(self):
        self.t0 = self._now()

    def stop(self):
        t1 = self._now()
        return {k: t1[k] - self.t0.get(k, 0.0) for k in t1}


def cpu_report(tag, used, acked):
    """Emits and logs CPU ms per acknowledged update, by process group."""
    per = {k: 1e3 * v / acked for k, v in used.items()} if acked else {}
    server = sum(v for k, v in per.items() if k != "bench client")
    log("%s: CPU ms per acknowledged update: %s; server side %.2f ms, so %d cores bound it "
        "at %.0f updates/s" % (tag, ", ".join("%s %.2f" % kv for kv in sorted(per.items())),
                                server, os.cpu_count(), 1e3 * os.cpu_count() / server
                                if server else 0))
    return server, per


def commit_counts(ports):
    """Store transactions and the writes they carried, summed over the
    lossd processes on these ports (their /metrics counters)."""
    groups = ops = 0
    for port in ports:
        st, body = request(port, "GET", "/metrics")
        for line in body.decode().splitlines() if st == 200 else ():
            if line.startswith("lossd_store_commit_groups_total "):
                groups += int(float(line.split()[1]))
            elif line.startswith("lossd_store_commit_ops_total "):
                ops += int(float(line.split()[1]))
    return groups, ops


def pgbench(pg, clients, duration):
    pg.psql("SELECT 1")
    db = "bench"
    pg.create_db(db)
    pg._run(["pgbench", "-h", pg.sock, "-p", str(pg.port), "-U", pg_harness.USER, "-i",
             "-q", "-s", "4", db])
    r = pg._run(["pgbench", "-h", pg.sock, "-p", str(pg.port), "-U", pg_harness.USER, "-N",
                 "-c", str(clients), "-j", "2", "-T", str(duration), db])
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
    if not m:
        raise RuntimeError("pgbench printed no tps:\n" + r.stdout + r.stderr)
    return float(m.group(1))


def profile_run(a, port):
    """The replicas' spray again, the whole machine sampled meanwhile
    (bench/profile.sh -a) into a.perf. Its figures are not emitted (perf
    costs some). Returns the failures."""
    try:
        prof = subprocess.Popen([os.path.join(HERE, "profile.sh"), "-o", a.perf, "-a",
                                 str(max(1, a.duration - 2))])
    except OSError as e:
        log("profile.sh: %s; no profile" % e)
        return 0
    rps, n, bad, _ = spray(port, a.duration, a.clients, streams=a.streams)
    prof.wait()
    log("profiled run: %.0f updates/s (perf attached); profile in %s%s"
        % (rps, a.perf, "" if prof.returncode == 0 else " (profile.sh failed)"))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "server", "lossd"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--store-connections", type=int, default=4,
                    help="each replica's --store-connections (half of them commit); "
                    "default lossd's own default")
    ap.add_argument("--streams", type=int, default=1,
                    help="spread the clients over this many streams (default one)")
    ap.add_argument("--perf", metavar="FILE",
                    help="after the measured run, a second one on the same replicas with the "
                    "whole machine profiled (perf, cpu-clock) into FILE: the share of each "
                    "process and thread (lossd names its threads), then the top functions")
    a = ap.parse_args()
    pg = pg_harness.PgServer()
    reps, lb, sq = [], None, None
    fails = 0
    try:
        sfx = "/s%d" % a.streams
        tps = pgbench(pg, a.clients, a.duration)
        emit("pg/commits" + sfx, "pgbench", "commits/s", tps,
             note="pgbench -N -c %d -j 2 -T %d, scale 4, fsync on" % (a.clients, a.duration))
        log("pgbench: %.0f commits/s (simple-update, %d clients)" % (tps, a.clients))

        url = pg.create_db("lossd")
        env = {"PGPASSWORD": pg_harness.PASSWORD}
        for _ in range(a.replicas):
            reps.append(Lossd(a.bin, ["--store", url, "--threads", str(a.threads),
                                      "--store-connections", str(a.store_connections)], env))
        lb = pg_harness.HAProxy(["127.0.0.1:%d" % r.port for r in reps])
        port = int(lb.url.rsplit(":", 1)[1])
        meter = CpuMeter({"lossd replicas": lambda: ([r.proc.pid for r in reps], ()),
                          "postgresql": lambda: pg_pids(pg),
                          "haproxy": lambda: ([lb.proc.pid], ())})
        meter.start()
        g0 = commit_counts([r.port for r in reps])
        rps, n, bad, reading = spray(port, a.duration, a.clients, streams=a.streams)
        pg_server, pg_per = cpu_report("postgresql", meter.stop(), n)
        g1 = commit_counts([r.port for r in reps])
        pg_groups = (g1[0] - g0[0], g1[1] - g0[1])
        ok = bad == 0 and reading["count"] == n * 1000
        fails += not ok
        emit("pg/update_1000" + sfx, "lossd_pg", "updates/s", rps, streams=a.streams,
             acknowledged=n, failed=bad, count_ok=ok, clients=a.clients,
             note="through HAProxy to %d replicas on one PostgreSQL" % a.replicas)
        emit("pg/commits" + sfx, "lossd_pg", "updates/s", rps,
             note="acknowledged updates/s beside pgbench's commits/s")
        log("postgresql, %d replicas behind HAProxy: %.0f acknowledged updates/s "
            "(%d acknowledged, %d failed, count %s)" % (a.replicas, rps, n, bad,
                                                      "ok" if ok else "WRONG"))
        if a.perf:
            fails += profile_run(a, port)

        # a read on replica 1 of what replica 0 just acknowledged
        st, body = request(reps[0].port, "POST", "/v1/streams", json.dumps({"method": "sketch"}))
        sid = json.loads(body)["id"]
        upd = json.dumps({"y_true": [0, 1, 1, 0], "y_score": [0.1, 0.8, 0.6, 0.3]})
        c0 = http.client.HTTPConnection("127.0.0.1", reps[0].port, timeout=30)
        c1 = http.client.HTTPConnection("127.0.0.1", reps[1 % len(reps)].port, timeout=30)
        lat = []
        for i in range(a.reads):
            assert request(reps[0].port, "POST", "/v1/streams/%s/update" % sid, upd, c0)[0] == 200
            t = time.perf_counter()
            st, body = request(reps[1 % len(reps)].port, "GET", "/v1/streams/" + sid, None, c1)
            lat.append((time.perf_counter() - t) * 1e3)
            if st != 200 or json.loads(body)["updates"] != i + 1:
                fails += 1
                log("read after another replica's write missed it: %s" % body[:200])
                break
        lat.sort()
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        emit("pg/read_after_other_replica_write" + sfx, "lossd", "ms p50", p50, p99_ms=p99,
             reads=len(lat))
        log("read on replica 1 after an update on replica 0: p50 %.2f ms, p99 %.2f ms"
            % (p50, p99))
        c0.close()
        c1.close()
        lb.close()
        lb = None
        for r in reps:
            r.stop()
        reps = []

        sq = Lossd(a.bin, ["--threads", str(a.threads)])
        meter = CpuMeter({"lossd": lambda: ([sq.proc.pid], ())})
        meter.start()
        g0 = commit_counts([sq.port])
        srps, sn, sbad, sreading = spray(sq.port, a.duration, a.clients, streams=a.streams)
        sq_server, sq_per = cpu_report("sqlite", meter.stop(), sn)
        g1 = commit_counts([sq.port])
        for impl, (groups, ops) in (("lossd_pg", pg_groups),
                                    ("lossd_sqlite", (g1[0] - g0[0], g1[1] - g0[1]))):
            emit("pg/updates_per_commit" + sfx, impl, "updates/commit",
                 ops / groups if groups else 0, transactions=groups, writes=ops)
            log("%s: %.2f writes per store transaction (%d transactions)"
                % (impl, ops / groups if groups else 0, groups))
        emit("pg/cpu_per_update" + sfx, "lossd_pg", "CPU ms/update", pg_server,
             **{k.replace(" ", "_"): round(v, 3) for k, v in pg_per.items()})
        emit("pg/cpu_per_update" + sfx, "lossd_sqlite", "CPU ms/update", sq_server,
             **{k.replace(" ", "_"): round(v, 3) for k, v in sq_per.items()})
        ok = sbad == 0 and sreading["count"] == sn * 1000
        fails += not ok
        emit("pg/update_1000" + sfx, "lossd_sqlite", "updates/s", srps,
             streams=a.streams, acknowledged=sn,
             failed=sbad, count_ok=ok, clients=a.clients, note="one lossd on SQLite")
        log("sqlite, one lossd: %.0f acknowledged updates/s (%d acknowledged, %d failed)"
            % (srps, sn, sbad))
        log("postgresql / sqlite: %.2fx; lossd updates per pgbench commit: %.2f"
            % (rps / srps if srps else 0, rps / tps if tps else 0))
    finally:
        if lb:
            lb.close()
        for r in reps:
            r.stop()
        if sq:
            sq.stop()
        pg.close()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
