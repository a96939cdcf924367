"""End-to-end tests of the streams (docs/API.md section 4) against the real binary.

- batches from concurrent clients give the AUC and loss of one /v1/auc and
  /v1/loss request over all the data (exact, binned, sketch within its bound);
- a state exported by one server merges into a stream of another;
- retried batch_ids / Idempotency-Keys are answered, not applied;
- streams survive a restart, and a bounded kill -9 loop loses no
  acknowledged update and applies none twice.
"""

import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

from lossd_harness import Server

REL = 1e-9


def make_data(n, seed, classes=None, multi=False):
    rnd = random.Random(seed)
    y, s = [], []
    for _ in range(n):
        if classes is None:
            lab = rnd.randrange(2)
            y.append(lab)
            s.append(round(min(1.0, max(0.0, rnd.random() * 0.7 + 0.3 * lab)), 3))
        elif multi:
            row_y = [rnd.randrange(2) for _ in range(classes)]
            y.append(row_y)
            s.append([round(rnd.random() * 0.6 + 0.4 * v, 3) for v in row_y])
        else:
            lab = rnd.randrange(classes)
            y.append(lab)
            row = [rnd.random() for _ in range(classes)]
            row[lab] += 0.5
            t = sum(row)
            s.append([v / t for v in row])
    w = [round(0.5 + rnd.random(), 3) for _ in range(n)]
    return y, s, w


def close(a, b, rel=REL):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


class StreamsTest(unittest.TestCase):
    def create(self, srv, cfg):
        r = srv.post_json("/v1/streams", cfg)
        self.assertEqual(r.status, 201, r)
        body = r.json()
        for k, v in cfg.items():
            if k != "loss":
                self.assertEqual(body[k], v)
        return body["id"]

    def update(self, srv, sid, body, headers=None, conn=None):
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if conn is None:
            return srv.post("/v1/streams/%s/update" % sid, data, headers=h)
        conn.request("POST", "/v1/streams/%s/update" % sid, body=data, headers=h)
        r = conn.getresponse()
        return r.status, r.read()

    def send_concurrently(self, srv, sid, batches, clients=8):
        """clients keep-alive connections send the batches between them;
        every reply must be 200 (an update not answered within the
        connection's 30 s is an error too)."""
        errors = []

        def run(k):
            conn = srv.connection()
            try:
                for i in range(k, len(batches), clients):
                    st, body = self.update(srv, sid, batches[i], conn=conn)
                    if st != 200:
                        errors.append((st, body))
            except Exception as e:  # a timeout: an update never answered
                errors.append((k, repr(e)))
            finally:
                conn.close()

        th = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        self.assertEqual(errors, [])

    @staticmethod
    def batches(y, s, w, size, key="y_score", prefix="b"):
        out = []
        for i in range(0, len(y), size):
            b = {"y_true": y[i:i + size], key: s[i:i + size], "batch_id": "%s%d" % (prefix, i)}
            if w is not None:
                b["sample_weight"] = w[i:i + size]
            out.append(b)
        return out

    # ------------------------------------------------------------------
    def test_32_writers_with_batch_ids_on_one_stream(self):
        """32 keep-alive writers, every update with its own batch_id (a key
        lookup per update, so each may block its store thread): every one
        is answered 200 and counted once. (Once, store threads all sat idle
        with updates queued: the count of signalled threads had leaked and
        quick jobs stopped waking any.)"""
        with Server(args=["--max-inflight", "4096"]) as srv:
            sid = self.create(srv, {"method": "sketch"})
            clients, each, n = 32, 80, 1000
            rnd = random.Random(7)
            y = [rnd.randrange(2) for _ in range(n)]
            s = [round(rnd.random(), 6) for _ in range(n)]
            batches = [{"y_true": y, "y_score": s, "batch_id": "b%d" % i}
                       for i in range(clients * each)]
            self.send_concurrently(srv, sid, batches, clients=clients)
            got = srv.get("/v1/streams/" + sid).json()
            self.assertEqual(got["updates"], clients * each)
            self.assertEqual(got["count"], n * clients * each)

    def test_concurrent_clients_equal_one_request(self):
        with Server(args=["--threads", "4"]) as srv:
            # binary, exact, with a loss, weighted
            y, s, w = make_data(3000, 1)
            sid = self.create(srv, {"method": "exact", "loss": "binary_crossentropy"})
            self.send_concurrently(srv, sid, self.batches(y, s, w, 75, key="y_pred"))
            got = srv.get("/v1/streams/" + sid).json()
            want = srv.post_json("/v1/auc", {"y_true": y, "y_score": s,
                                             "sample_weight": w}).json()
            loss = srv.post_json("/v1/loss", {"loss": "binary_crossentropy", "y_true": y,
                                              "y_pred": s, "sample_weight": w}).json()
            self.assertEqual(got["count"], 3000)
            self.assertEqual(got["updates"], 40)
            self.assertTrue(close(got["auc"], want["auc"]), (got["auc"], want["auc"]))
            self.assertEqual(got["positives"], want["positives"])
            self.assertTrue(close(got["loss"], loss["loss"]), (got["loss"], loss["loss"]))
            self.assertTrue(close(got["loss_detail"]["accuracy"], loss["accuracy"]))
            self.assertTrue(close(got["loss_detail"]["weight_sum"], loss["weight_sum"]))

            # one-vs-rest, binned (Keras), PR curve, sparse CE
            y, s, w = make_data(1200, 2, classes=4)
            sid = self.create(srv, {"method": "binned", "num_classes": 4, "curve": "pr",
                                    "num_thresholds": 100,
                                    "loss": {"loss": "sparse_categorical_crossentropy"}})
            self.send_concurrently(srv, sid, self.batches(y, s, None, 50))
            got = srv.get("/v1/streams/" + sid).json()
            want = srv.post_json("/v1/auc", {"y_true": y, "y_score": s, "method": "binned",
                                             "curve": "pr", "num_thresholds": 100}).json()
            loss = srv.post_json("/v1/loss", {"loss": "sparse_categorical_crossentropy",
                                              "y_true": y, "y_pred": s}).json()
            self.assertTrue(close(got["auc"], want["auc"]), (got["auc"], want["auc"]))
            for a, b in zip(got["per_class"], want["per_class"]):
                self.assertTrue(close(a["auc"], b["auc"]), (a, b))
            self.assertTrue(close(got["loss"], loss["loss"]))
            for a, b in zip(got["loss_detail"]["per_class"], loss["per_class"]):
                self.assertEqual(a["support"], b["support"])
                self.assertTrue(close(a["loss_sum"], b["loss_sum"]), (a, b))

            # multi-label sketch with micro average: within its error bound
            y, s, w = make_data(1500, 3, classes=3, multi=True)
            sid = self.create(srv, {"method": "sketch", "num_classes": 3,
                                    "multi_label": True, "average": "micro"})
            self.send_concurrently(srv, sid, self.batches(y, s, w, 100))
            got = srv.get("/v1/streams/%s?curve=true&max_points=50" % sid).json()
            want = srv.post_json("/v1/auc", {"y_true": y, "y_score": s, "sample_weight": w,
                                             "average": "micro"}).json()
            self.assertIn("error_bound", got)
            self.assertLessEqual(abs(got["auc"] - want["auc"]), got["error_bound"] + 1e-9)
            self.assertLessEqual(len(got["curve"]["x"]), 50)
            self.assertEqual(len(got["curve"]["x"]), len(got["curve"]["y"]))

            # the store's figures in /metrics: 3 streams, every write committed,
            # and commits grouped (never more groups than writes)
            self.assertEqual(srv.metric("lossd_streams"), 3)
            groups = srv.metric("lossd_store_commit_groups_total")
            ops = srv.metric("lossd_store_commit_ops_total")
            self.assertGreaterEqual(ops, 3 + 40 + 24 + 15)
            self.assertLessEqual(groups, ops)
            # every update was applied once and committed: counted once
            self.assertEqual(srv.metric("lossd_stream_updates_committed_total"), 40 + 24 + 15)
            self.assertEqual(srv.metric("lossd_store_broken"), 0)
            # the commit path's figures: leaders that waited for a fuller group
            # (never more than the groups), WAL checkpoints without failures
            delays = srv.metric("lossd_store_commit_delays_total")
            self.assertIsNotNone(delays)
            self.assertLessEqual(delays, groups)
            # time waited exactly when some leader waited
            waited = srv.metric("lossd_store_commit_delay_seconds_total")
            self.assertEqual(waited > 0, delays > 0, (waited, delays))
            # exported (how many checkpoints ran depends on timing)
            for by in ("checkpointer", "commit"):
                self.assertIsNotNone(
                    srv.metric('lossd_store_wal_checkpoints_total{by="%s"}' % by))
            self.assertEqual(srv.metric("lossd_store_wal_checkpoint_failures_total"), 0)
            self.assertIsNotNone(srv.metric("lossd_store_wal_pages"))

    def test_merge_across_servers(self):
        y, s, w = make_data(2000, 4)
        cfg = {"method": "binned", "num_thresholds": 50, "loss": "binary_crossentropy"}
        with Server() as a, Server() as b:
            ida = self.create(a, cfg)
            idb = self.create(b, cfg)
            for i, batch in enumerate(self.batches(y, s, w, 100)):
                r = self.update(a if i % 2 else b, ida if i % 2 else idb, batch)
                self.assertEqual(r.status, 200, r)
            state = b.get("/v1/streams/%s/state" % idb)
            self.assertEqual(state.status, 200)
            st = state.json()
            self.assertEqual(st["version"], 1)
            self.assertEqual(st["count"], 1000)
            r = a.post_json("/v1/streams/%s/merge" % ida, st)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["count"], 2000)
            got = a.get("/v1/streams/" + ida).json()
            want = a.post_json("/v1/auc", {"y_true": y, "y_score": s, "sample_weight": w,
                                           "method": "binned", "num_thresholds": 50}).json()
            loss = a.post_json("/v1/loss", {"loss": "binary_crossentropy", "y_true": y,
                                            "y_pred": s, "sample_weight": w}).json()
            self.assertTrue(close(got["auc"], want["auc"], 1e-12))
            self.assertTrue(close(got["loss"], loss["loss"], 1e-12))

            # A state of another config: 409; a corrupt one: 422.
            other = self.create(b, {"method": "binned", "num_thresholds": 51,
                                    "loss": "binary_crossentropy"})
            st2 = b.get("/v1/streams/%s/state" % other).json()
            p = a.post_json("/v1/streams/%s/merge" % ida, st2).problem()
            self.assertEqual((p["status"], p["code"]), (409, "state_mismatch"))
            bad = dict(st)
            raw = bytearray(__import__("base64").b64decode(st["state"]))
            raw[len(raw) // 2] ^= 1
            bad["state"] = __import__("base64").b64encode(bytes(raw)).decode()
            p = a.post_json("/v1/streams/%s/merge" % ida, bad).problem()
            self.assertEqual((p["status"], p["code"]), (422, "bad_state"))
            self.assertEqual(a.get("/v1/streams/" + ida).json()["count"], 2000)

    def test_sketch_v1_exports_still_merge(self):
        """States exported before sketch format 2 (their sketches in bytes
        version 1, tests/data/sketch_v1_exports.json) merge into a stream
        of this build exactly as the same update applied here: the same
        AUC, bound and loss, and the same state bytes once re-exported."""
        path = os.path.join(os.environ.get("LOSSD_TEST_DATA") or
                            os.path.join(os.path.dirname(__file__), "..", "data"),
                            "sketch_v1_exports.json")
        with open(path) as f:
            cases = json.load(f)["cases"]
        b64 = __import__("base64")
        with Server() as srv:
            for c in cases:
                raw = b64.b64decode(c["export"]["state"])
                self.assertIn(b"LDSK\x01\x00\x00\x00", raw, c["name"])
                old = self.create(srv, c["config"])
                r = srv.post_json("/v1/streams/%s/merge" % old, c["export"])
                self.assertEqual(r.status, 200, (c["name"], r))
                here = self.create(srv, c["config"])
                self.assertEqual(self.update(srv, here, c["body"]).status, 200)
                a = srv.get("/v1/streams/" + old).json()
                b = srv.get("/v1/streams/" + here).json()
                for k in ("count", "auc", "error_bound", "loss"):
                    self.assertEqual(a.get(k), b.get(k), (c["name"], k))
                sa = b64.b64decode(srv.get("/v1/streams/%s/state" % old).json()["state"])
                sb = b64.b64decode(srv.get("/v1/streams/%s/state" % here).json()["state"])
                self.assertIn(b"LDSK\x02\x00\x00\x00", sb, c["name"])
                self.assertEqual(sa, sb, c["name"])
                self.assertLess(len(sb), len(raw), c["name"])

    def test_idempotent_retries_and_errors(self):
        with Server() as srv:
            sid = self.create(srv, {"method": "exact"})
            b = {"y_true": [0, 1, 1], "y_score": [0.2, 0.9, 0.4], "batch_id": "x1"}
            r1 = self.update(srv, sid, b)
            r2 = self.update(srv, sid, b)
            self.assertEqual((r1.status, r2.status), (200, 200))
            self.assertEqual(r1.json(), r2.json())
            del b["batch_id"]
            h = {"Idempotency-Key": "hdr-1"}
            r3 = self.update(srv, sid, b, headers=h)
            r4 = self.update(srv, sid, b, headers=h)
            self.assertEqual(r3.json(), r4.json())
            self.assertEqual(r4.json()["count"], 6)
            self.assertEqual(srv.get("/v1/streams/" + sid).json()["updates"], 2)

            # errors, with problem+json
            p = self.update(srv, sid, {"y_true": [0, 2], "y_score": [0.1, 0.2]}).problem()
            self.assertEqual((p["status"], p["code"], p["pointer"]),
                             (422, "label_out_of_range", "/y_true/1"))
            p = self.update(srv, sid, {"y_true": [0], "y_score": [0.1],
                                       "batch": 1}).problem()
            self.assertEqual(p["code"], "unknown_field")
            p = srv.get("/v1/streams/nope").problem()
            self.assertEqual((p["status"], p["code"]), (404, "unknown_stream"))
            p = srv.post_json("/v1/streams", {"method": "exactly"}).problem()
            self.assertEqual((p["status"], p["code"]), (422, "bad_option"))
            p = srv.post_json("/v1/streams", {"num_classes": 3,
                                              "loss": "binary_crossentropy"}).problem()
            self.assertEqual((p["status"], p["pointer"]), (422, "/loss/loss"))
            self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 6)

            # the query is read by the one query parser: percent-decoded,
            # a malformed escape or an over-long value is a 422
            r = srv.get("/v1/streams/%s?curv%%65=tru%%65" % sid)
            self.assertEqual(r.status, 200, r)
            self.assertIn("curve", r.json())
            for q in ("curve=%zz", "max_points=" + "1" * 40, "c%69=2"):
                p = srv.get("/v1/streams/%s?%s" % (sid, q)).problem()
                self.assertEqual((p["status"], p["code"]), (422, "bad_option"), q)

            # reset keeps the config, forgets the keys; delete makes it 404
            r = srv.post("/v1/streams/%s/reset" % sid, b"")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["count"], 0)
            self.assertEqual(self.update(srv, sid, b, headers=h).json()["count"], 3)
            r = srv.delete("/v1/streams/" + sid)
            self.assertEqual((r.status, r.body), (204, b""))
            self.assertEqual(srv.get("/v1/streams/" + sid).status, 404)

    def test_limits_are_507(self):
        with Server(args=["--max-streams", "2", "--stream-memory", "64KiB"]) as srv:
            sid = self.create(srv, {"method": "exact"})
            self.create(srv, {"method": "binned"})
            p = srv.post_json("/v1/streams", {}).problem()
            self.assertEqual((p["status"], p["code"]), (507, "too_many_streams"))
            # 64 KiB hold about 5000 unweighted binary rows of an exact stream.
            y, s, _ = make_data(4000, 9)
            r = self.update(srv, sid, {"y_true": y, "y_score": s})
            self.assertEqual(r.status, 200, r)
            p = self.update(srv, sid, {"y_true": y, "y_score": s}).problem()
            self.assertEqual((p["status"], p["code"]), (507, "stream_memory_exceeded"))
            self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 4000)
            # A sketch or binned table that cannot fit is refused at create.
            srv.delete("/v1/streams/" + sid)
            p = srv.post_json("/v1/streams", {"method": "binned",
                                              "num_thresholds": 10000}).problem()
            self.assertEqual((p["status"], p["code"]), (507, "stream_memory_exceeded"))

    def test_list_paginates(self):
        with Server() as srv:
            ids = sorted(self.create(srv, {"name": "s%d" % i}) for i in range(7))
            seen, after = [], ""
            for _ in range(10):
                r = srv.get("/v1/streams?limit=3" + ("&after=" + after if after else ""))
                self.assertEqual(r.status, 200)
                page = r.json()
                seen += [e["id"] for e in page["streams"]]
                if not page["next"]:
                    break
                after = page["next"]
            self.assertEqual(seen, ids)

    def test_restart_keeps_streams_and_keys(self):
        d = tempfile.mkdtemp(prefix="lossd-streams-")
        try:
            y, s, w = make_data(500, 5)
            with Server(data_dir=d) as srv:
                sid = self.create(srv, {"method": "sketch", "loss": "binary_crossentropy"})
                for b in self.batches(y, s, w, 50):
                    self.assertEqual(self.update(srv, sid, b).status, 200)
                before = srv.get("/v1/streams/" + sid).json()
            with Server(data_dir=d) as srv:
                after = srv.get("/v1/streams/" + sid).json()
                self.assertEqual(after, before)
                r = self.update(srv, sid, self.batches(y, s, w, 50)[3])
                self.assertEqual(r.status, 200)
                self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 500)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_pending_deltas_load_as_their_merge(self):
        """An exact stream of 300 pending deltas (never checkpointed: its
        deltas never outweigh its state) is, after kill -9 and a restart,
        byte for byte the state it had, and so is a stream holding the same
        data as one merged state: the start-up decodes both alike."""
        d = tempfile.mkdtemp(prefix="lossd-pending-")
        try:
            y, s, w = make_data(2400, 9)
            cfg = {"method": "exact", "loss": "binary_crossentropy"}
            srv = Server(data_dir=d, check_exit=False)
            try:
                a = self.create(srv, cfg)
                for b in self.batches(y, s, w, 8, key="y_pred"):
                    self.assertEqual(self.update(srv, a, b).status, 200)
                reading = srv.get("/v1/streams/" + a).json()
                state = srv.get("/v1/streams/%s/state" % a).json()
                self.assertEqual(reading["count"], 2400)
                m = self.create(srv, cfg)
                self.assertEqual(srv.post_json("/v1/streams/%s/merge" % m, state).status, 200)
                srv.send_signal(signal.SIGKILL)
                srv.wait()
            finally:
                srv.stop()
            with Server(data_dir=d) as srv:
                self.assertEqual(srv.get("/v1/streams/" + a).json(), reading)
                self.assertEqual(srv.get("/v1/streams/%s/state" % a).json(), state)
                merged = srv.get("/v1/streams/%s/state" % m).json()
                self.assertEqual(merged["state"], state["state"])
                got = srv.get("/v1/streams/" + m).json()
                for k in ("count", "auc", "loss", "positives", "negatives"):
                    self.assertEqual(got.get(k), reading.get(k), k)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_uneven_pending_deltas_load_as_sent(self):
        """The start-up grows an exact stream's rows once, for as many
        pending deltas as its first one (a worker's batches are of one
        size), and gives back what it did not use: deltas smaller and larger
        than the first, weighted and not, load byte for byte as they were
        sent, and the streams go on taking updates as a stream that never
        restarted does."""
        d = tempfile.mkdtemp(prefix="lossd-uneven-")
        try:
            y, s, w = make_data(700, 13)
            plans = {"small_first": [1, 40, 3, 200, 2, 150],
                     "big_first": [300, 1, 1, 2, 90]}
            def parts(sizes, weighted, at=0):
                out = []
                for n in sizes:
                    b = {"y_true": y[at:at + n], "y_score": s[at:at + n]}
                    if weighted:
                        b["sample_weight"] = w[at:at + n]
                    out.append(b)
                    at += n
                return out, at
            srv = Server(data_dir=d, check_exit=False)
            ids, states, refs, more = {}, {}, {}, {}
            try:
                for name, sizes in plans.items():
                    for weighted in (False, True):
                        key = (name, weighted)
                        ups, used = parts(sizes, weighted)
                        ids[key] = self.create(srv, {"method": "exact"})
                        refs[key] = self.create(srv, {"method": "exact"})
                        for b in ups:
                            self.assertEqual(self.update(srv, ids[key], b).status, 200)
                            self.assertEqual(self.update(srv, refs[key], b).status, 200)
                        states[key] = srv.get("/v1/streams/%s/state" % ids[key]).json()
                        more[key] = parts([700 - used], weighted, used)[0][0]
                srv.send_signal(signal.SIGKILL)
                srv.wait()
            finally:
                srv.stop()
            with Server(data_dir=d) as srv:
                for key, sid in ids.items():
                    got = srv.get("/v1/streams/%s/state" % sid).json()
                    self.assertEqual(got, states[key], key)
                    for t in (sid, refs[key]):
                        self.assertEqual(self.update(srv, t, more[key]).status, 200)
                    a = srv.get("/v1/streams/%s/state" % sid).json()["state"]
                    b = srv.get("/v1/streams/%s/state" % refs[key]).json()["state"]
                    self.assertEqual(a, b, key)
                    self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 700)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_kill9_loop(self):
        """Start, update from client threads, SIGKILL, restart, compare."""
        d = tempfile.mkdtemp(prefix="lossd-kill9-")
        rows = 20
        sent, acked, acked_first = [], set(), set()
        lock = threading.Lock()
        sid = None
        try:
            for cycle in range(5):
                srv = Server(data_dir=d, check_exit=False)
                try:
                    if sid is None:
                        sid = self.create(srv, {"method": "exact"})
                    # Everything acknowledged so far is there, exactly once
                    # (each unacknowledged one at most once).
                    cnt = srv.get("/v1/streams/" + sid).json()["count"]
                    self.assertGreaterEqual(cnt, len(acked) * rows, "lost acked updates")
                    self.assertLessEqual(cnt, len(sent) * rows, "an update applied twice")
                    # Retry the batches whose reply was lost: the count becomes exact.
                    for k in [k for k in sent if k not in acked]:
                        r = self.update(srv, sid, self.kill_batch(k, rows))
                        self.assertEqual(r.status, 200, r)
                        acked.add(k)
                    cnt = srv.get("/v1/streams/" + sid).json()["count"]
                    self.assertEqual(cnt, len(sent) * rows)

                    stop = threading.Event()

                    def client(t):
                        conn = srv.connection(timeout=5)
                        i = 0
                        while not stop.is_set():
                            k = "c%d-t%d-%d" % (cycle, t, i)
                            i += 1
                            with lock:
                                sent.append(k)
                            try:
                                st, _ = self.update(srv, sid, self.kill_batch(k, rows), conn=conn)
                            except OSError:
                                return
                            except Exception:  # connection dropped by the kill
                                return
                            if st == 200:
                                with lock:
                                    acked.add(k)
                                    acked_first.add(k)

                    th = [threading.Thread(target=client, args=(t,)) for t in range(3)]
                    for t in th:
                        t.start()
                    time.sleep(0.6 + 0.3 * cycle)
                    srv.send_signal(signal.SIGKILL)
                    srv.wait()
                    stop.set()
                    for t in th:
                        t.join(10)
                finally:
                    if srv.proc.poll() is None:
                        srv.send_signal(signal.SIGKILL)
                        srv.wait()
            # Last restart: acknowledged all there, retries make it exact.
            with Server(data_dir=d) as srv:
                cnt = srv.get("/v1/streams/" + sid).json()["count"]
                self.assertGreaterEqual(cnt, len(acked) * rows)
                self.assertLessEqual(cnt, len(sent) * rows)
                # Retrying every batch ever sent changes nothing more.
                conn = srv.connection()
                for k in sent:
                    st, _ = self.update(srv, sid, self.kill_batch(k, rows), conn=conn)
                    self.assertEqual(st, 200)
                conn.close()
                got = srv.get("/v1/streams/" + sid).json()
                self.assertEqual(got["count"], len(sent) * rows)
                self.assertEqual(got["updates"], len(sent))
                self.assertGreater(len(sent), 50, "the loop sent too little to mean much")
                print("kill9 loop: %d batches sent, %d acknowledged before their kill"
                      % (len(sent), len(acked_first)), file=sys.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_streams_belong_to_their_token(self):
        d = tempfile.mkdtemp(prefix="lossd-tokens-")
        try:
            path = os.path.join(d, "tokens")
            with open(path, "w") as f:
                f.write("alice-token-0123456789 alice\n"
                        "alice-token-second-key alice\n"
                        "bob-token-0123456789ab bob\n")
            with Server(args=["--tokens-file", path]) as srv:
                A = {"Authorization": "Bearer alice-token-0123456789"}
                A2 = {"Authorization": "Bearer alice-token-second-key"}
                B = {"Authorization": "Bearer bob-token-0123456789ab"}
                r = srv.post_json("/v1/streams", {"method": "binned"}, headers=A)
                self.assertEqual(r.status, 201, r)
                sid = r.json()["id"]
                b = {"y_true": [0, 1], "y_score": [0.3, 0.6]}
                self.assertEqual(self.update(srv, sid, b, headers=A2).status, 200)
                # Another principal: the same 404 as a stream that does not exist.
                for method, path_ in (("GET", ""), ("GET", "/state"), ("DELETE", ""),
                                      ("POST", "/update"), ("POST", "/reset")):
                    h = dict(B, **{"Content-Type": "application/json"})
                    r = srv.request(method, "/v1/streams/" + sid + path_,
                                    body=json.dumps(b) if method == "POST" else None, headers=h)
                    p = r.problem()
                    self.assertEqual((p["status"], p["code"]), (404, "unknown_stream"), path_)
                self.assertEqual(srv.get("/v1/streams", headers=B).json()["streams"], [])
                mine = srv.get("/v1/streams", headers=A2).json()["streams"]
                self.assertEqual([e["id"] for e in mine], [sid])
                self.assertEqual(mine[0]["count"], 2)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def kill_batch(k, rows):
        rnd = random.Random(k)
        return {"y_true": [rnd.randrange(2) for _ in range(rows)],
                "y_score": [round(rnd.random(), 4) for _ in range(rows)],
                "batch_id": k}


if __name__ == "__main__":
    unittest.main()
