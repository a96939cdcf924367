"""Several lossd replicas on one PostgreSQL (docs/API.md section 10).

- ten replicas starting together migrate the schema once;
- a batch_id sent to two replicas at the same moment is applied once and
  both get the first reply; a read on one replica includes what another
  acknowledged (read-your-writes across replicas);
- PostgreSQL stopped: /readyz 503, /livez 200, writes and reads 503
  store_unavailable with Retry-After, allow_stale=true reads the cache;
  service resumes by itself after a restart;
- lossd --copy-store moves every stream (state, deltas, keys) from a
  SQLite data dir to PostgreSQL and back, idempotently, with the counts
  verified;
- the fault run: three replicas behind a real HAProxy (round robin,
  health-checking /readyz), 16 clients spraying batches with batch ids and
  retrying with the same id after any error, one replica killed -9 and
  PostgreSQL stopped in immediate mode and restarted mid-run; at the end
  every acknowledged batch is present exactly once, none is invented and
  every replica gives the same reading.

Needs Debian's postgresql (and haproxy for the fault run); skips with a
message otherwise.
"""
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
import unittest

from lossd_harness import Server, run_lossd
import pg_harness

ROWS = 8


def batch(client, k):
    rnd = random.Random(client * 100003 + k)
    y = [(client + k + j) % 2 for j in range(ROWS)]
    s = [round(rnd.random(), 6) for _ in range(ROWS)]
    return {"y_true": y, "y_score": s, "batch_id": "c%d-b%d" % (client, k)}


def call(base, method, path, body=None, timeout=10):
    host, port = base.replace("http://", "").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdr = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=data, headers=hdr)
        r = c.getresponse()
        return r.status, r.getheader("Retry-After"), r.read()
    finally:
        c.close()


class PgReplicas(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = pg_harness.PgServer()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def replica(self, url, **kw):
        env = {"PGPASSWORD": pg_harness.PASSWORD}
        return Server(args=["--store", url, "--threads", "8", "--store-connections", "4",
                            "--store-timeout", "5", "--log-level", "warn"], env=env, **kw)

    def test_ten_replicas_migrate_once(self):
        url = self.pg.create_db("migrate10")
        servers, errors = [None] * 10, []

        def start(i):
            try:
                servers[i] = self.replica(url)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        ts = [threading.Thread(target=start, args=(i,)) for i in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        try:
            self.assertEqual(errors, [])
            rows = self.pg.psql("SELECT version FROM lossd_schema_version", "migrate10").split()
            self.assertEqual(rows, [str(v) for v in range(1, len(rows) + 1)],
                             "each version once, in order")
            migrated = sum(any("schema migrated" in str(l.get("msg")) for l in s.logs)
                           for s in servers)
            self.assertEqual(migrated, 1, "exactly one replica migrates")
        finally:
            for s in servers:
                if s:
                    s.stop()

    def test_same_batch_id_on_two_replicas_at_once(self):
        url = self.pg.create_db("race")
        with self.replica(url) as a, self.replica(url) as b:
            st, _, body = call(a.url, "POST", "/v1/streams", {"method": "binned"})
            self.assertEqual(st, 201)
            sid = json.loads(body)["id"]
            for k in range(25):
                go = threading.Barrier(2)
                got = [None, None]

                def send(i, srv):
                    go.wait()
                    got[i] = call(srv.url, "POST", "/v1/streams/%s/update" % sid, batch(0, k))

                ts = [threading.Thread(target=send, args=(i, s)) for i, s in enumerate((a, b))]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                self.assertEqual(got[0][0], 200, got[0])
                self.assertEqual(got[1][0], 200, got[1])
                self.assertEqual(got[0][2], got[1][2], "both replies are the first one's")
                # read-your-writes: the other replica's reading includes it
                for srv in (a, b):
                    r = json.loads(call(srv.url, "GET", "/v1/streams/" + sid)[2])
                    self.assertEqual(r["updates"], k + 1)
                    self.assertEqual(r["count"], (k + 1) * ROWS)
            keys = self.pg.psql("SELECT count(*) FROM lossd_keys WHERE stream = '%s'" % sid,
                                "race").strip()
            self.assertEqual(keys, "25")
            # a batch_id reused with another body, on the other replica: 409
            other = dict(batch(0, 0), y_score=[0.5] * ROWS)
            st, _, body = call(b.url, "POST", "/v1/streams/%s/update" % sid, other)
            self.assertEqual((st, json.loads(body)["code"]), (409, "idempotency_conflict"))
            # a state merged through one replica is not applied again through another
            st, _, body = call(a.url, "POST", "/v1/streams", {"method": "binned"})
            dst = json.loads(body)["id"]
            state = json.loads(call(a.url, "GET", "/v1/streams/%s/state" % sid)[2])
            first = json.loads(call(a.url, "POST", "/v1/streams/%s/merge" % dst, state)[2])
            again = json.loads(call(b.url, "POST", "/v1/streams/%s/merge" % dst, state)[2])
            self.assertEqual((first["applied"], first["updates"]), (True, 25))
            self.assertEqual((again["applied"], again["updates"]), (False, 25))
            # a checkpoint record written through one replica, read on the other
            st, _, body = call(a.url, "POST", "/v1/streams/%s/checkpoint" % sid,
                               {"step": 7, "label": "e1"})
            self.assertEqual(st, 201, body)
            h = json.loads(call(b.url, "GET",
                                "/v1/streams/%s/history?series=checkpoints" % sid)[2])
            self.assertEqual([(c["step"], c["count"]) for c in h["checkpoints"]],
                             [(7, 25 * ROWS)])
            # reset on one replica, read on the other; delete likewise
            self.assertEqual(call(a.url, "POST", "/v1/streams/%s/reset" % sid)[0], 200)
            self.assertEqual(json.loads(call(b.url, "GET", "/v1/streams/" + sid)[2])["count"], 0)
            st, _, body = call(b.url, "POST", "/v1/streams/%s/update" % sid, batch(0, 0))
            self.assertEqual((st, json.loads(body)["updates"]), (200, 1), "keys forgotten")
            self.assertEqual(call(b.url, "DELETE", "/v1/streams/" + sid)[0], 204)
            self.assertEqual(call(a.url, "GET", "/v1/streams/" + sid)[0], 404)
            self.assertEqual(call(a.url, "POST", "/v1/streams/%s/update" % sid,
                                  batch(0, 1))[0], 404)

    def test_update_rows_written_once_and_in_place(self):
        """Schema version 7: an update's key row is written with its reply
        (the counts after it) and a 500-score sketch delta (4-5 KB) stays in
        its heap page, not in TOAST chunks; replies, replays and readings on
        either replica are as before, and a replica that folds its own
        updates from memory reads what one lossd on SQLite reads."""
        url = self.pg.create_db("lean")
        a, b, ref = self.replica(url), self.replica(url), Server()

        def reading(srv, sid):
            st, _, body = call(srv.url, "GET", "/v1/streams/%s?curve=true" % sid)
            self.assertEqual(st, 200, body)
            d = json.loads(body)
            return {k: v for k, v in d.items() if k not in ("id", "created_at", "updated_at")}

        try:
            st, _, body = call(a.url, "POST", "/v1/streams", {"method": "sketch"})
            self.assertEqual(st, 201, body)
            sid = json.loads(body)["id"]
            st, _, body = call(ref.url, "POST", "/v1/streams", {"method": "sketch"})
            rsid = json.loads(body)["id"]
            rnd = random.Random(5)
            bodies = []
            # Updates alternate between the replicas, two on a, one on b,
            # and after each the other replica reads: its fold takes its
            # own updates from memory and the other's from the store, in
            # seq order, and gives what one lossd on SQLite gives.
            for k in range(10):
                bodies.append({"y_true": [rnd.randint(0, 1) for _ in range(500)],
                               "y_score": [round(rnd.random(), 6) for _ in range(500)],
                               "batch_id": "lean-%d" % k})
                w, o = (a, b) if k % 3 < 2 else (b, a)
                st, _, body = call(w.url, "POST", "/v1/streams/%s/update" % sid, bodies[k])
                self.assertEqual(st, 200, body)
                self.assertEqual(json.loads(body)["updates"], k + 1)
                st, _, body = call(ref.url, "POST", "/v1/streams/%s/update" % rsid, bodies[k])
                self.assertEqual(st, 200, body)
                self.assertEqual(reading(o, sid), reading(ref, rsid), "after update %d" % k)
            self.assertEqual(reading(a, sid), reading(ref, rsid))
            # a replay on the other replica: the first reply, nothing added
            st, _, body = call(b.url, "POST", "/v1/streams/%s/update" % sid, bodies[2])
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["updates"], 3)
            for r in (a, b):
                st, _, body = call(r.url, "GET", "/v1/streams/" + sid)
                self.assertEqual((st, json.loads(body)["count"]), (200, 5000), body)
            q = lambda sql: self.pg.psql(sql, "lean").strip()
            self.assertEqual(q("SELECT version FROM lossd_schema_version ORDER BY version DESC"
                               " LIMIT 1"), "7")
            replies = q("SELECT key || ' ' || replace(reply, E'\\n', ' ') FROM lossd_keys"
                        " WHERE stream = '%s'" % sid).splitlines()
            self.assertEqual(len(replies), 10)
            for line in replies:
                k = int(line.split()[0].split("-")[1])
                self.assertIn('"updates":%d,' % (k + 1), line)
            # every delta is longer than the 2 KB that sends a row to TOAST
            # by default, and none went there
            lens = q("SELECT min(octet_length(data)) || ' ' || count(*) FROM lossd_deltas"
                     " WHERE stream = '%s'" % sid).split()
            self.assertEqual(int(lens[1]), 10)
            self.assertGreater(int(lens[0]), 2100)
            toast = q("SELECT reltoastrelid::regclass FROM pg_class"
                      " WHERE relname = 'lossd_deltas'")
            self.assertEqual(q("SELECT count(*) FROM %s" % toast), "0")
        finally:
            a.stop()
            b.stop()
            ref.stop()

    def test_first_requests_on_a_replica_wait_for_its_load(self):
        """A replica reads a stream another one created when it is first
        asked for, and puts it in its table before its deltas are folded:
        requests arriving meanwhile wait for the load instead of syncing
        the half-read cache (which failed them with 503 store_unavailable,
        or quarantined the stream as if deltas were missing)."""
        url = self.pg.create_db("lazyload")
        a, b = self.replica(url), self.replica(url)
        try:
            st, _, body = call(a.url, "POST", "/v1/streams", {"method": "sketch"})
            self.assertEqual(st, 201, body)
            sid = json.loads(body)["id"]
            for k in range(400):
                st, _, body = call(a.url, "POST", "/v1/streams/%s/update" % sid, batch(99, k))
                self.assertEqual(st, 200, body)
            go = threading.Event()
            got = []

            def client(i):
                go.wait()
                st, _, body = call(b.url, "POST", "/v1/streams/%s/update" % sid,
                                   batch(i, 1000))
                got.append((st, body))
                st, _, body = call(b.url, "GET", "/v1/streams/" + sid)
                got.append((st, body))

            ts = [threading.Thread(target=client, args=(i,)) for i in range(16)]
            for t in ts:
                t.start()
            go.set()
            for t in ts:
                t.join()
            self.assertEqual([g for g in got if g[0] != 200], [])
            readings = []
            for r in (a, b):
                st, _, body = call(r.url, "GET", "/v1/streams/%s?curve=true" % sid)
                self.assertEqual(st, 200, body)
                d = json.loads(body)
                readings.append({k: v for k, v in d.items() if k != "updated_at"})
            self.assertEqual(readings[0]["updates"], 416)
            self.assertEqual(readings[0]["count"], 416 * ROWS)
            self.assertEqual(readings[1], readings[0])
        finally:
            a.stop()
            b.stop()

    def test_store_down_then_back(self):
        url = self.pg.create_db("down")
        with self.replica(url) as a:
            st, _, body = call(a.url, "POST", "/v1/streams", {})
            sid = json.loads(body)["id"]
            self.assertEqual(call(a.url, "POST", "/v1/streams/%s/update" % sid,
                                  batch(1, 0))[0], 200)
            self.assertEqual(call(a.url, "GET", "/v1/streams/" + sid)[0], 200)  # cached
            self.pg.stop("immediate")
            try:
                deadline = time.monotonic() + 10
                while call(a.url, "GET", "/readyz")[0] != 503:
                    self.assertLess(time.monotonic(), deadline, "/readyz never went 503")
                    time.sleep(0.1)
                self.assertEqual(call(a.url, "GET", "/livez")[0], 200)
                st, ra, body = call(a.url, "POST", "/v1/streams/%s/update" % sid, batch(1, 1))
                self.assertEqual(st, 503)
                self.assertIsNotNone(ra, "Retry-After")
                self.assertEqual(json.loads(body)["code"], "store_unavailable")
                st, ra, body = call(a.url, "GET", "/v1/streams/" + sid)
                self.assertEqual((st, json.loads(body)["code"]), (503, "store_unavailable"))
                st, _, body = call(a.url, "GET", "/v1/streams/%s?allow_stale=true" % sid)
                self.assertEqual(st, 200)
                r = json.loads(body)
                self.assertIs(r["stale"], True)
                self.assertEqual(r["count"], ROWS)
            finally:
                self.pg.start()
            deadline = time.monotonic() + 20
            while call(a.url, "GET", "/readyz")[0] != 200:
                self.assertLess(time.monotonic(), deadline, "/readyz never came back")
                time.sleep(0.1)
            st, _, body = call(a.url, "POST", "/v1/streams/%s/update" % sid, batch(1, 1))
            self.assertEqual(st, 200, body)
            r = json.loads(call(a.url, "GET", "/v1/streams/" + sid)[2])
            self.assertNotIn("stale", r)
            self.assertEqual(r["count"], 2 * ROWS)

    def test_checkpoints_on_two_replicas_at_once(self):
        """Checkpoint records are numbered by the store: 3 clients on each of
        two replicas post checkpoints at once; every acknowledged one is
        there once, with the number its reply gave, and the numbers run
        0, 1, 2, ... without a gap or a repeat."""
        url = self.pg.create_db("ckpts")
        with self.replica(url) as a, self.replica(url) as b:
            st, _, body = call(a.url, "POST", "/v1/streams", {"method": "sketch"})
            self.assertEqual(st, 201)
            sid = json.loads(body)["id"]
            self.assertEqual(call(b.url, "POST", "/v1/streams/%s/update" % sid,
                                  batch(0, 0))[0], 200)
            per, clients = 8, [(a, 0), (a, 1), (a, 2), (b, 3), (b, 4), (b, 5)]
            acked, errors, lock = {}, [], threading.Lock()
            go = threading.Barrier(len(clients))

            def client(srv, i):
                go.wait()
                for k in range(per):
                    label = "c%d-%d" % (i, k)
                    body = {"step": k, "label": label, "batch_id": "ck-" + label}
                    for _ in range(50):
                        st, _, resp = call(srv.url, "POST", "/v1/streams/%s/checkpoint" % sid,
                                           body, timeout=30)
                        if st != 503:
                            break
                        time.sleep(0.05)
                    with lock:
                        if st == 201:
                            acked[label] = json.loads(resp)["n"]
                        else:
                            errors.append((label, st, resp[:200]))

            ts = [threading.Thread(target=client, args=c) for c in clients]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [])
            total = per * len(clients)
            self.assertEqual(len(acked), total)
            self.assertEqual(sorted(acked.values()), list(range(total)),
                             "each reply has its own number, gap-free")
            # a retry on the other replica is the first reply, not a new record
            st, _, resp = call(b.url, "POST", "/v1/streams/%s/checkpoint" % sid,
                               {"step": 0, "label": "c0-0", "batch_id": "ck-c0-0"})
            self.assertEqual((st, json.loads(resp)["n"]), (201, acked["c0-0"]))
            for srv in (a, b):
                recs = srv.get("/v1/streams/%s/history?series=checkpoints&limit=1000"
                               % sid).json()["checkpoints"]
                got = sorted((r["n"], r["label"]) for r in recs)
                self.assertEqual(got, sorted((n, lab) for lab, n in acked.items()))
            print("\ncheckpoints: %d acknowledged from 2 replicas, numbered 0..%d, each once"
                  % (total, total - 1))

    def test_expiry_and_listing_across_replicas(self):
        """ttl_s on a shared store: three replicas sweep at once, and each
        expired stream is deleted once (the expired counts add up to the
        streams that expired); the list's filters and sorts see every
        replica's streams and metadata."""
        url = self.pg.create_db("expiry")
        with self.replica(url) as a, self.replica(url) as b, self.replica(url) as c:
            def make(srv, name, **kw):
                st, _, body = call(srv.url, "POST", "/v1/streams", dict(name=name, **kw))
                self.assertEqual(st, 201, body)
                return json.loads(body)["id"]

            keep = []
            for i in range(6):  # distinct creation times: the sorts below are by time
                keep.append(make((a, b, c)[i % 3], "keep-%02d" % i,
                                 tags={"run": "r1", "i": str(i % 2)}))
                time.sleep(0.005)
            short = [make((a, b, c)[i % 3], "short-%02d" % i, ttl_s=1, tags={"run": "r1"})
                     for i in range(12)]
            self.assertEqual(call(b.url, "POST", "/v1/streams/%s/update" % keep[0],
                                  batch(0, 0))[0], 200)

            def names(srv, q):
                st, _, body = call(srv.url, "GET", "/v1/streams?" + q)
                self.assertEqual(st, 200, body)
                return [e["name"] for e in json.loads(body)["streams"]]

            # every replica lists every replica's streams, filtered and sorted
            for srv in (a, b, c):
                self.assertEqual(names(srv, "tag=run:r1&tag=i:1&sort=name&order=desc"),
                                 ["keep-05", "keep-03", "keep-01"])
                self.assertEqual(names(srv, "name_prefix=keep&sort=updated&order=desc"),
                                 ["keep-00", "keep-05", "keep-04", "keep-03", "keep-02",
                                  "keep-01"])
            deadline = time.time() + 30
            while time.time() < deadline and names(a, "name_prefix=short"):
                time.sleep(0.2)
            self.assertEqual(names(c, "name_prefix=short"), [])
            for sid in short:
                self.assertEqual(call(b.url, "GET", "/v1/streams/" + sid)[0], 404)
            for sid in keep:
                self.assertEqual(call(c.url, "GET", "/v1/streams/" + sid)[0], 200)
            counts = [srv.metric("lossd_streams_expired_total") for srv in (a, b, c)]
            self.assertEqual(sum(counts), len(short), counts)
            print("\nexpiry: %d streams expired once across 3 replicas (per replica: %s)"
                  % (len(short), counts))

    @staticmethod
    def history(srv, sid):
        return (srv.get("/v1/streams/%s/history?series=steps" % sid).json(),
                srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json())

    def test_copy_store_round_trip(self):
        src = tempfile.mkdtemp(prefix="lossd-copy-src-")
        back = tempfile.mkdtemp(prefix="lossd-copy-back-")
        try:
            readings, history, ids = {}, {}, []
            with Server(data_dir=src, args=["--store", "sqlite:" + src]) as s:
                for method in ("sketch", "binned", "exact"):
                    sid = s.post_json("/v1/streams", {"method": method}).json()["id"]
                    ids.append(sid)
                    for k in range(6):
                        b = dict(batch(3, k), step=k // 2)
                        self.assertEqual(s.post_json("/v1/streams/%s/update" % sid, b).status,
                                         200)
                    self.assertEqual(s.post_json("/v1/streams/%s/checkpoint" % sid,
                                                 {"step": 2, "label": "e"}).status, 201)
                for sid in ids:
                    readings[sid] = s.get("/v1/streams/" + sid).json()
                    history[sid] = self.history(s, sid)
            # (the binned stream's state replaces its deltas once they weigh
            # a page: the others' 3-score deltas are rows, 6 each)
            con = sqlite3.connect(os.path.join(src, "lossd.db"))
            deltas = con.execute("SELECT count(*) FROM deltas").fetchone()[0]
            con.close()
            self.assertGreaterEqual(deltas, 12)
            url = self.pg.create_db("copy")
            env = {"PGPASSWORD": pg_harness.PASSWORD}
            for attempt in range(2):  # idempotent: the second run changes nothing
                r = run_lossd(["--copy-store", "sqlite:" + src, url], env=env, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                out = json.loads(r.stdout.strip().splitlines()[-1])
                self.assertEqual((out["streams"], out["deltas"], out["keys"], out["checkpoints"],
                                  out["verified"]), (3, deltas, 18, 3, True), out)
            self.assertEqual(self.pg.psql("SELECT count(*) FROM lossd_streams", "copy").strip(),
                             "3")
            with self.replica(url) as p:
                for sid in ids:
                    self.assertEqual(p.get("/v1/streams/" + sid).json(), readings[sid])
                    self.assertEqual(self.history(p, sid), history[sid])
                # keys came along: a retried batch is answered, not applied
                r = p.post_json("/v1/streams/%s/update" % ids[0],
                                dict(batch(3, 2), step=1)).json()
                self.assertEqual(r["updates"], 3)
                r = p.post_json("/v1/streams/%s/update" % ids[0], batch(3, 6)).json()
                self.assertEqual((r["updates"], r["count"]), (7, 7 * ROWS))
                readings[ids[0]] = p.get("/v1/streams/" + ids[0]).json()
            r = run_lossd(["--copy-store", url, "sqlite:" + back], env=env, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout.strip().splitlines()[-1])["streams"], 3)
            with Server(data_dir=back, args=["--store", "sqlite:" + back]) as s:
                for sid in ids:
                    self.assertEqual(s.get("/v1/streams/" + sid).json(), readings[sid])
                    self.assertEqual(self.history(s, sid), history[sid])
                self.assertEqual(s.post_json("/v1/streams/%s/update" % ids[0],
                                             batch(3, 6)).json()["updates"], 7)
        finally:
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(back, ignore_errors=True)

    def test_fault_run_behind_haproxy(self):
        url = self.pg.create_db("faults")
        reps = [self.replica(url, check_exit=False) for _ in range(3)]
        lb = None
        try:
            lb = pg_harness.HAProxy(["127.0.0.1:%d" % r.port for r in reps])
            st, _, body = call(lb.url, "POST", "/v1/streams", {"method": "sketch"})
            self.assertEqual(st, 201, body)
            sid = json.loads(body)["id"]
            clients, per_client = 16, 40
            acked = [dict() for _ in range(clients)]
            attempts = [0] * clients
            stop_at = time.monotonic() + 240

            def client(i):
                for k in range(per_client):
                    b = batch(i, k)
                    while time.monotonic() < stop_at:
                        attempts[i] += 1
                        try:
                            st, _, body = call(lb.url, "POST",
                                               "/v1/streams/%s/update" % sid, b, timeout=15)
                        except OSError:
                            st = None
                        if st == 200:
                            acked[i][b["batch_id"]] = json.loads(body)
                            break
                        time.sleep(0.05)

            ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for t in ts:
                t.start()

            def progress():
                return sum(len(a) for a in acked)

            total = clients * per_client
            while progress() < total // 4:
                time.sleep(0.05)
            reps[1].proc.send_signal(signal.SIGKILL)  # a replica dies mid-request
            reps[1].proc.wait()
            while progress() < total // 2:
                time.sleep(0.05)
            self.pg.stop("immediate")  # PostgreSQL crashes
            time.sleep(1.5)
            self.pg.start()  # and recovers
            for t in ts:
                t.join()
            reps[1].stop()  # reaps the killed one (check_exit=False)
            reps[1] = self.replica(url, check_exit=False)  # and it comes back
            n_acked = progress()
            self.assertEqual(n_acked, total, "every batch acknowledged in the end")

            readings = []
            for r in reps:
                st, _, body = call(r.url, "GET", "/v1/streams/" + sid)
                self.assertEqual(st, 200, body)
                readings.append(json.loads(body))
            self.assertEqual(readings[0]["updates"], total, "none lost, none twice")
            self.assertEqual(readings[0]["count"], total * ROWS)
            for r in readings[1:]:
                self.assertEqual(r, readings[0], "every replica gives the same reading")
            keys = set(self.pg.psql("SELECT key FROM lossd_keys WHERE stream = '%s'" % sid,
                                    "faults").split())
            sent = {b for a in acked for b in a}
            self.assertEqual(keys, sent, "exactly the acknowledged batches, none invented")
            # the replies a client kept are consistent with the stream
            counts = sorted(v["updates"] for a in acked for v in a.values())
            self.assertEqual(counts, list(range(1, total + 1)),
                             "each acknowledged batch took its own place in the sequence")
            print("\npg fault run: %d clients, %d batches acknowledged (%d attempts), "
                  "%d keys stored, count %d = %d x %d rows, %d replicas agree"
                  % (clients, n_acked, sum(attempts), len(keys), readings[0]["count"],
                     total, ROWS, len(readings)))
        finally:
            if lb:
                lb.close()
            for r in reps:
                r.stop(sig=signal.SIGTERM)


if __name__ == "__main__":
    unittest.main()
