"""End-to-end tests of a stream's history (docs/API.md section 7) against the real binary.

- 8 worker threads post per-step batches for 1,000 steps: the step series
  equals, point by point, the aggregates computed here (loss within 1e-12
  relative), in JSON pages and in CSV;
- an epoch loop of validation batches and checkpoint-with-reset gives, per
  epoch, scikit-learn's AUC;
- retention merges adjacent points into ranges and keeps every total exact;
  checkpoints past --history-checkpoints drop the oldest;
- the series and the checkpoints survive kill -9;
- state export / merge carry the series (equal steps add up), reset keeps
  it, DELETE removes it;
- a stream with top_k and calibration keeps them per step point (JSON
  and CSV), per retention range, through export / merge and in
  checkpoints, each equal to one /v1/loss call over the same rows;
- bad input (negative or non-integer step, checkpoint on a missing stream,
  from > to, malformed cursor, unknown parameter) is a clear error and
  changes nothing.
"""

import csv
import io
import math
import random
import shutil
import signal
import tempfile
import threading
import unittest

from lossd_harness import Server

EPS = 1e-7


def bce(y, p):
    p = min(max(p, EPS), 1 - EPS)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def rel_close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def all_points(srv, sid, query="", limit=None):
    """Every point of the series, following `next` page by page."""
    pts, after, pages = [], None, 0
    while True:
        q = "series=steps" + query + ("&limit=%d" % limit if limit else "")
        if after:
            q += "&after=" + after
        r = srv.get("/v1/streams/%s/history?%s" % (sid, q))
        assert r.status == 200, r.body
        body = r.json()
        pts += body["steps"]
        pages += 1
        after = body["next"]
        if after is None:
            return pts, pages


class HistoryTest(unittest.TestCase):
    def create(self, srv, cfg):
        r = srv.post_json("/v1/streams", cfg)
        self.assertEqual(r.status, 201, r.body)
        return r.json()["id"]

    def test_eight_workers_thousand_steps(self):
        steps, workers = 1000, 8
        rnd = random.Random(7)
        batches = {}  # (worker, step) -> (y, p)
        for s in range(steps):
            for w in range(workers):
                n = rnd.randrange(1, 6)
                y = [rnd.randrange(2) for _ in range(n)]
                p = [round(rnd.uniform(0.02, 0.98), 6) for _ in range(n)]
                p = [x if x != 0.5 else 0.51 for x in p]
                batches[(w, s)] = (y, p)
        with Server(args=["--threads", "8"]) as srv:
            sid = self.create(srv, {"loss": "binary_crossentropy"})
            errors = []

            def run(w):
                conn = srv.connection()
                try:
                    for s in range(steps):
                        y, p = batches[(w, s)]
                        body = '{"y_true": %s, "y_score": %s, "step": %d}' % (y, p, s)
                        conn.request("POST", "/v1/streams/%s/update" % sid, body,
                                     {"Content-Type": "application/json"})
                        r = conn.getresponse()
                        data = r.read()
                        if r.status != 200:
                            errors.append((r.status, data))
                finally:
                    conn.close()

            th = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            self.assertEqual(errors, [])

            pts, pages = all_points(srv, sid, limit=300)
            self.assertEqual(pages, 4)
            self.assertEqual([q["step"] for q in pts], list(range(steps)))
            for q in pts:
                s = q["step"]
                ys = [v for w in range(workers) for v in batches[(w, s)][0]]
                ps = [v for w in range(workers) for v in batches[(w, s)][1]]
                loss_sum = math.fsum(bce(y, p) for y, p in zip(ys, ps))
                correct = sum(1 for y, p in zip(ys, ps) if (p > 0.5) == (y == 1))
                self.assertEqual(q["step_end"], s)
                self.assertEqual(q["updates"], workers)
                self.assertEqual(q["count"], len(ys))
                self.assertEqual(q["positives"], sum(ys))
                self.assertEqual(q["negatives"], len(ys) - sum(ys))
                self.assertEqual(q["positions"], len(ys))
                self.assertEqual(q["correct"], correct)
                self.assertEqual(q["weight_sum"], len(ys))
                self.assertTrue(rel_close(q["loss_sum"], loss_sum), (s, q, loss_sum))
                self.assertTrue(rel_close(q["loss"], loss_sum / len(ys)), (s, q))
                self.assertTrue(rel_close(q["accuracy"], correct / len(ys)), (s, q))

            # The same series as CSV, with a header and a Link to page 2.
            r = srv.get("/v1/streams/%s/history?format=csv&limit=600" % sid)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers.get("Content-Type").startswith("text/csv"))
            link = r.headers.get("Link")
            self.assertIsNotNone(link)
            self.assertIn('rel="next"', link)
            rows = list(csv.DictReader(io.StringIO(r.text())))
            self.assertEqual(len(rows), 600)
            url = link[link.index("<") + 1:link.index(">")]
            r2 = srv.get(url)
            self.assertEqual(r2.status, 200)
            self.assertIsNone(r2.headers.get("Link"))
            rows += list(csv.DictReader(io.StringIO(r2.text())))
            self.assertEqual(len(rows), steps)
            for row, q in zip(rows, pts):
                self.assertEqual(int(row["step"]), q["step"])
                self.assertEqual(int(row["count"]), q["count"])
                self.assertEqual(float(row["loss_sum"]), q["loss_sum"])
                self.assertEqual(float(row["loss"]), q["loss"])

            # from / to are inclusive
            r = srv.get("/v1/streams/%s/history?from=10&to=19" % sid).json()
            self.assertEqual([q["step"] for q in r["steps"]], list(range(10, 20)))
            self.assertIsNone(r["next"])

            # the running reading is the sum of the whole series
            got = srv.get("/v1/streams/" + sid).json()
            self.assertEqual(got["count"], sum(q["count"] for q in pts))

    def test_epoch_loop_checkpoint_reset_matches_sklearn(self):
        try:
            from sklearn.metrics import roc_auc_score
        except ImportError:
            self.skipTest("scikit-learn is not installed (python3-sklearn)")
        rnd = random.Random(11)
        with Server() as srv:
            sid = self.create(srv, {"method": "exact", "loss": "binary_crossentropy"})
            want = []
            for epoch in range(4):
                ys, ps = [], []
                for b in range(6):
                    y = [rnd.randrange(2) for _ in range(20)]
                    p = [min(0.99, max(0.01, rnd.random() * 0.6 + 0.2 * (epoch + 1) * v / 2))
                         for v in y]
                    ys += y
                    ps += p
                    r = srv.post_json("/v1/streams/%s/update" % sid,
                                      {"y_true": y, "y_score": p, "step": epoch * 100 + b})
                    self.assertEqual(r.status, 200, r.body)
                want.append((roc_auc_score(ys, ps),
                             math.fsum(bce(y, p) for y, p in zip(ys, ps)) / len(ys), len(ys)))
                r = srv.post_json("/v1/streams/%s/checkpoint" % sid,
                                  {"step": epoch * 100 + 99, "label": "epoch-%d" % epoch,
                                   "reset": True})
                self.assertEqual(r.status, 201, r.body)
                self.assertEqual(r.json()["dropped"], 0)
                # emptied in the same transaction
                self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 0)
            r = srv.get("/v1/streams/%s/history?series=checkpoints" % sid)
            self.assertEqual(r.status, 200)
            cks = r.json()["checkpoints"]
            self.assertEqual([c["label"] for c in cks], ["epoch-%d" % e for e in range(4)])
            for c, (auc, loss, n) in zip(cks, want):
                self.assertTrue(rel_close(c["auc"], auc, 1e-12), (c["auc"], auc))
                self.assertTrue(rel_close(c["loss"], loss, 1e-12), (c["loss"], loss))
                self.assertEqual(c["count"], n)
                self.assertRegex(c["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            # the step series survived every reset
            pts, _ = all_points(srv, sid)
            self.assertEqual(len(pts), 24)
            # CSV of the checkpoints
            r = srv.get("/v1/streams/%s/history?series=checkpoints&format=csv" % sid)
            rows = list(csv.DictReader(io.StringIO(r.text())))
            self.assertEqual([float(x["auc"]) for x in rows], [c["auc"] for c in cks])

    def test_steps_near_the_cap_render_whole(self):
        # A step line with 19-digit steps is longer than 159 bytes: it once
        # came out cut ('"weight_s2000.0'), so the page was not JSON.
        big = 4611686018427387000  # just under 2^62
        with Server() as srv:
            sid = self.create(srv, {"loss": "binary_crossentropy"})
            for i in range(3):
                r = srv.post_json("/v1/streams/%s/update" % sid,
                                  {"y_true": [1, 0] * 1000, "y_score": [0.9, 0.2] * 1000,
                                   "step": big + i})
                self.assertEqual(r.status, 200, r.body)
            r = srv.get("/v1/streams/%s/history" % sid)
            self.assertEqual(r.status, 200, r.body)
            pts = r.json()["steps"]
            self.assertEqual([q["step"] for q in pts], [big, big + 1, big + 2])
            self.assertEqual([q["weight_sum"] for q in pts], [2000.0] * 3)
            r = srv.get("/v1/streams/%s/history?format=csv" % sid)
            self.assertEqual(r.status, 200, r.body)
            rows = list(csv.DictReader(io.StringIO(r.body.decode())))
            self.assertEqual([int(x["step"]) for x in rows], [big, big + 1, big + 2])

    def test_retention_merges_exactly(self):
        # Losses on a 1/8 grid: squared errors are exact binary fractions,
        # so every sum is exact and totals can be compared with ==.
        rnd = random.Random(3)
        with Server(args=["--history-points", "10"]) as srv:
            sid = self.create(srv, {"loss": "mean_squared_error"})
            total_count, total_loss, steps = 0, 0.0, []
            for s in rnd.sample(range(1000), 137):
                y = [rnd.randrange(2) for _ in range(3)]
                p = [rnd.randrange(9) / 8 for _ in range(3)]
                total_count += 3
                total_loss += sum((a - b) ** 2 for a, b in zip(y, p))
                steps.append(s)
                r = srv.post_json("/v1/streams/%s/update" % sid,
                                  {"y_true": y, "y_score": p, "step": s})
                self.assertEqual(r.status, 200, r.body)
            pts, _ = all_points(srv, sid)
            self.assertLessEqual(len(pts), 10)
            self.assertGreater(len(pts), 1)
            for a, b in zip(pts, pts[1:]):
                self.assertLess(a["step_end"], b["step"])
            self.assertLessEqual(pts[0]["step"], min(steps))
            self.assertGreaterEqual(pts[-1]["step_end"], max(steps))
            self.assertEqual(sum(q["count"] for q in pts), total_count)
            self.assertEqual(sum(q["updates"] for q in pts), 137)
            self.assertEqual(sum(q["loss_sum"] for q in pts), total_loss)
            for q in pts:
                self.assertEqual(q["loss"], q["loss_sum"] / q["weight_sum"])
                self.assertIsNone(q["accuracy"])
                self.assertIn("accuracy", q["null_reasons"])

    def test_checkpoint_retention_and_idempotency(self):
        with Server(args=["--history-checkpoints", "3"]) as srv:
            sid = self.create(srv, {})
            srv.post_json("/v1/streams/%s/update" % sid, {"y_true": [0, 1], "y_score": [0.1, 0.8]})
            dropped = []
            for k in range(5):
                r = srv.post_json("/v1/streams/%s/checkpoint" % sid, {"step": k * 10})
                self.assertEqual(r.status, 201, r.body)
                dropped.append(r.json()["dropped"])
            self.assertEqual(dropped, [0, 0, 0, 1, 1])
            cks = srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json()
            self.assertEqual([c["step"] for c in cks["checkpoints"]], [20, 30, 40])
            # a retried checkpoint is recorded once and answered the same
            a = srv.post_json("/v1/streams/%s/checkpoint" % sid, {"step": 50, "batch_id": "e5"})
            b = srv.post_json("/v1/streams/%s/checkpoint" % sid, {"step": 50, "batch_id": "e5"})
            self.assertEqual((a.status, b.status), (201, 201))
            self.assertEqual(a.json(), b.json())
            c = srv.post("/v1/streams/%s/checkpoint" % sid, '{"step": 60}',
                         headers={"Content-Type": "application/json", "Idempotency-Key": "k6"})
            d = srv.post("/v1/streams/%s/checkpoint" % sid, '{"step": 60}',
                         headers={"Content-Type": "application/json", "Idempotency-Key": "k6"})
            self.assertEqual(c.json(), d.json())
            cks = srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json()
            self.assertEqual([x["step"] for x in cks["checkpoints"]], [40, 50, 60])
            # paging checkpoints
            page = srv.get("/v1/streams/%s/history?series=checkpoints&limit=2" % sid).json()
            self.assertEqual(len(page["checkpoints"]), 2)
            rest = srv.get("/v1/streams/%s/history?series=checkpoints&after=%s"
                           % (sid, page["next"])).json()
            self.assertEqual([x["step"] for x in rest["checkpoints"]], [60])
            self.assertIsNone(rest["next"])

    def test_history_survives_kill9(self):
        d = tempfile.mkdtemp(prefix="lossd-hist-")
        try:
            srv = Server(data_dir=d, check_exit=False, args=["--history-points", "50"])
            try:
                sid = self.create(srv, {"num_classes": 3, "loss": "sparse_categorical_crossentropy"})
                rnd = random.Random(5)
                for s in range(120):
                    y = [rnd.randrange(3) for _ in range(4)]
                    p = [[rnd.random() + 0.01 for _ in range(3)] for _ in range(4)]
                    r = srv.post_json("/v1/streams/%s/update" % sid,
                                      {"y_true": y, "y_pred": p, "step": s})
                    self.assertEqual(r.status, 200, r.body)
                    if s % 40 == 39:
                        r = srv.post_json("/v1/streams/%s/checkpoint" % sid,
                                          {"step": s, "label": "e%d" % (s // 40),
                                           "reset": s == 79})
                        self.assertEqual(r.status, 201, r.body)
                before = all_points(srv, sid)[0]
                cks = srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json()
                reading = srv.get("/v1/streams/" + sid).json()
                self.assertLessEqual(len(before), 50)
                self.assertEqual(len(before[0]["per_class"]), 3)
                srv.send_signal(signal.SIGKILL)
                srv.wait()
            finally:
                if srv.proc.poll() is None:
                    srv.send_signal(signal.SIGKILL)
                    srv.wait()
            with Server(data_dir=d, args=["--history-points", "50"]) as srv:
                self.assertEqual(all_points(srv, sid)[0], before)
                self.assertEqual(
                    srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json(), cks)
                self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], reading["count"])
                # numbering continues after the restart
                r = srv.post_json("/v1/streams/%s/checkpoint" % sid, {"step": 200})
                self.assertEqual(r.json()["n"], 3)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_state_merge_reset_delete(self):
        with Server() as srv:
            a = self.create(srv, {"loss": "binary_crossentropy"})
            b = self.create(srv, {"loss": "binary_crossentropy"})
            for sid, steps in ((a, [1, 2, 3]), (b, [2, 3, 4])):
                for s in steps:
                    srv.post_json("/v1/streams/%s/update" % sid,
                                  {"y_true": [0, 1], "y_score": [0.25, 0.75], "step": s})
            srv.post_json("/v1/streams/%s/checkpoint" % a, {"step": 3})
            state = srv.get("/v1/streams/%s/state" % a).json()
            r = srv.post_json("/v1/streams/%s/merge" % b, state)
            self.assertEqual(r.status, 200, r.body)
            pts = all_points(srv, b)[0]
            self.assertEqual([(q["step"], q["updates"]) for q in pts],
                             [(1, 1), (2, 2), (3, 2), (4, 1)])
            # checkpoints are not merged
            cks = srv.get("/v1/streams/%s/history?series=checkpoints" % b).json()
            self.assertEqual(cks["checkpoints"], [])
            # reset keeps the history
            self.assertEqual(srv.post_json("/v1/streams/%s/reset" % b, {}).status, 200)
            self.assertEqual(all_points(srv, b)[0], pts)
            # a stream that never saw a step has an empty series
            c = self.create(srv, {})
            srv.post_json("/v1/streams/%s/update" % c, {"y_true": [0, 1], "y_score": [0.2, 0.7]})
            self.assertEqual(all_points(srv, c)[0], [])
            # DELETE removes it
            self.assertEqual(srv.delete("/v1/streams/" + b).status, 204)
            r = srv.get("/v1/streams/%s/history" % b)
            self.assertEqual(r.status, 404)
            self.assertEqual(r.problem()["code"], "unknown_stream")

    # ---- top-k and calibration per point (docs/API.md sections 7 and 9) ------------------
    XLOSS = {"loss": "sparse_categorical_crossentropy", "from_logits": True,
             "top_k": [1, 2], "calibration": {"bins": 5}}

    def xrows(self, seed, n, C=4):
        rnd = random.Random(seed)
        x = [[rnd.gauss(0, 1.5) for _ in range(C)] for _ in range(n)]
        y = [rnd.randrange(C) for _ in range(n)]
        w = [rnd.choice([0.5, 1.0, 2.0]) for _ in range(n)]
        return x, y, w

    def one_shot(self, srv, rows):
        """/v1/loss with XLOSS over rows [(x, y, w), ...]."""
        r = srv.post_json("/v1/loss", dict(self.XLOSS, y_pred=[q[0] for q in rows],
                                           y_true=[q[1] for q in rows],
                                           sample_weight=[q[2] for q in rows]))
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def same_metrics(self, got, one, what):
        self.assertEqual(got["top_k_accuracy"], one["top_k_accuracy"], what)
        for k in ("ece", "mce", "rmsce", "brier"):
            self.assertTrue(rel_close(got["calibration"][k], one["calibration"][k]),
                            (what, k, got["calibration"][k], one["calibration"][k]))
        self.assertTrue(rel_close(got["perplexity"], one["perplexity"]), what)
        self.assertTrue(rel_close(got["loss"], one["loss"]), what)

    def post_steps(self, srv, sid, steps, seed):
        """Two workers' batches per step; returns {step: rows}."""
        rows = {}
        for s in steps:
            for w in range(2):
                x, y, wt = self.xrows(seed * 1000 + s * 2 + w, 7 + w)
                r = srv.post_json("/v1/streams/%s/update" % sid,
                                  {"y_true": y, "y_score": x, "sample_weight": wt, "step": s})
                self.assertEqual(r.status, 200, r.body)
                rows.setdefault(s, []).extend(zip(x, y, wt))
        return rows

    def check_points(self, srv, sid, rows):
        pts, _ = all_points(srv, sid)
        self.assertTrue(pts)
        for q in pts:
            got = [r for s, rs in sorted(rows.items()) if q["step"] <= s <= q["step_end"]
                   for r in rs]
            self.assertEqual(q["count"], len(got))
            self.same_metrics(q, self.one_shot(srv, got), q["step"])
            self.assertNotIn("null_reasons", q)
        return pts

    def test_points_keep_top_k_and_calibration(self):
        cfg = {"method": "exact", "num_classes": 4, "from_logits": True, "loss": self.XLOSS}
        with Server() as srv:
            sid = self.create(srv, cfg)
            rows = self.post_steps(srv, sid, [3, 0, 2, 1, 5], 1)
            pts = self.check_points(srv, sid, rows)
            self.assertEqual([q["step"] for q in pts], [0, 1, 2, 3, 5])
            # CSV: the same values under flat column names
            r = srv.get("/v1/streams/%s/history?series=steps&format=csv" % sid)
            self.assertEqual(r.status, 200)
            recs = list(csv.DictReader(io.StringIO(r.text())))
            self.assertEqual(len(recs), len(pts))
            for rec, q in zip(recs, pts):
                self.assertEqual(float(rec["top_k_1"]), q["top_k_accuracy"]["1"])
                self.assertEqual(float(rec["top_k_2"]), q["top_k_accuracy"]["2"])
                for k in ("ece", "mce", "rmsce", "brier", "perplexity"):
                    got = q["calibration"][k] if k != "perplexity" else q[k]
                    self.assertEqual(float(rec[k]), got, k)
            # export / merge: equal steps add up, every point's metrics are
            # those of all its rows, from both streams
            state = srv.get("/v1/streams/%s/state" % sid).json()
            other = self.create(srv, cfg)
            both = self.post_steps(srv, other, [1, 5, 7], 3)
            self.assertEqual(srv.post_json("/v1/streams/%s/merge" % other, state).status, 200)
            for s, rs in rows.items():
                both.setdefault(s, []).extend(rs)
            merged = self.check_points(srv, other, both)
            self.assertEqual([q["step"] for q in merged], [0, 1, 2, 3, 5, 7])
            # a checkpoint with reset holds the epoch's metrics and bins
            r = srv.post_json("/v1/streams/%s/checkpoint" % sid, {"step": 5, "reset": True})
            self.assertEqual(r.status, 201, r.body)
            ck = r.json()
            every = [q for s in sorted(rows) for q in rows[s]]
            one = self.one_shot(srv, every)
            self.same_metrics(ck, one, "checkpoint")
            self.assertEqual([b["count"] for b in ck["calibration"]["bins"]],
                             [b["count"] for b in one["calibration"]["bins"]])
            listed = srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json()
            self.assertEqual(listed["checkpoints"][0]["top_k_accuracy"], ck["top_k_accuracy"])
            r = srv.get("/v1/streams/%s/history?series=checkpoints&format=csv" % sid)
            rec = list(csv.DictReader(io.StringIO(r.text())))[0]
            self.assertEqual(float(rec["top_k_2"]), ck["top_k_accuracy"]["2"])
            self.assertEqual(float(rec["ece"]), ck["calibration"]["ece"])
            # reset kept the points
            self.assertEqual(all_points(srv, sid)[0], pts)

    def test_retention_ranges_keep_top_k_and_calibration(self):
        cfg = {"method": "sketch", "num_classes": 4, "from_logits": True, "loss": self.XLOSS}
        with Server(args=["--history-points", "4"]) as srv:
            sid = self.create(srv, cfg)
            rows = self.post_steps(srv, sid, list(range(11)), 2)
            pts = self.check_points(srv, sid, rows)
            self.assertLessEqual(len(pts), 4)
            self.assertTrue(any(q["step_end"] > q["step"] for q in pts))

    def test_bad_input_changes_nothing(self):
        with Server() as srv:
            sid = self.create(srv, {"loss": "binary_crossentropy"})
            srv.post_json("/v1/streams/%s/update" % sid,
                          {"y_true": [0, 1], "y_score": [0.2, 0.7], "step": 4})
            before = (srv.get("/v1/streams/%s/history" % sid).json(),
                      srv.get("/v1/streams/" + sid).json()["count"])
            for step, code in ((-1, "bad_option"), (1.5, "bad_option"), ("3", "bad_type"),
                               (True, "bad_type"), ("", "bad_type")):
                r = srv.post_json("/v1/streams/%s/update" % sid,
                                  {"y_true": [1], "y_score": [0.9], "step": step})
                self.assertEqual(r.status, 422, (step, r.body))
                p = r.problem()
                if code:
                    self.assertEqual(p["code"], code, step)
                self.assertIn("step", p["detail"] + p.get("pointer", ""))
            r = srv.post_json("/v1/streams/nope/checkpoint", {"step": 1})
            self.assertEqual(r.status, 404)
            self.assertEqual(r.problem()["code"], "unknown_stream")
            r = srv.get("/v1/streams/nope/history")
            self.assertEqual(r.problem()["code"], "unknown_stream")
            for body, code in (({"step": -2}, "bad_option"), ({}, "missing_field"),
                               ({"step": 1, "lable": "x"}, "unknown_field"),
                               ({"step": 1, "label": "x" * 257}, "bad_option"),
                               ({"step": 1, "reset": "yes"}, "bad_type")):
                r = srv.post_json("/v1/streams/%s/checkpoint" % sid, body)
                self.assertEqual(r.status, 422, (body, r.body))
                self.assertEqual(r.problem()["code"], code, body)
            for q, code in (("from=5&to=2", "bad_option"), ("after=zz", "bad_cursor"),
                            ("after=s", "bad_cursor"), ("after=s-1", "bad_cursor"),
                            ("series=checkpoints&after=s3", "bad_cursor"),
                            ("from=-1", "bad_option"), ("limit=0", "bad_option"),
                            ("format=xml", "bad_option"), ("series=epochs", "bad_option"),
                            ("colour=red", "unknown_parameter")):
                r = srv.get("/v1/streams/%s/history?%s" % (sid, q))
                self.assertEqual(r.status, 422, (q, r.body))
                self.assertEqual(r.problem()["code"], code, q)
            after = (srv.get("/v1/streams/%s/history" % sid).json(),
                     srv.get("/v1/streams/" + sid).json()["count"])
            self.assertEqual(before, after)
            cks = srv.get("/v1/streams/%s/history?series=checkpoints" % sid).json()
            self.assertEqual(cks["checkpoints"], [])


if __name__ == "__main__":
    unittest.main()
