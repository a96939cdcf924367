"""Regression tests for the conformance corrections of docs/API.md sections 2-3,
over HTTP against the real binary: each case is one a differential check
against PyTorch, scikit-learn and Keras' formulas once found answered wrong.

- distribution targets: a position weighs its sample weight (times the cost
  factor), never sum_c w_c y_c; an all-zero target row is counted;
- binary losses: predicted positive iff p > 0.5 (logit > 0), in /v1/loss
  and in a stream's loss_detail;
- f1 = 2 correct / (predicted + support), null only when both are 0;
- a "sum" over no counted position is 0, a "mean" over none is null;
- exact AUC from logits ranks by the logits (log-softmax for one-vs-rest),
  one-shot and in exact streams, and a sketch stream fed logits keys on
  them too, so its error_bound is honest; curve thresholds stay
  probabilities;
- binned AUC compares float32(score) > float32(threshold), as Keras.

Expected numbers are written out from the formulas (math only, no numpy).
"""

import math
import random
import struct
import unittest

from lossd_harness import Server

REL = 1e-9


def close(a, b, rel=REL):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def mann_whitney(y, s):
    """ROC AUC by counting pairs (ties one half): scikit-learn's value."""
    pos = [v for t, v in zip(y, s) if t == 1]
    neg = [v for t, v in zip(y, s) if t == 0]
    won = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return won / (len(pos) * len(neg))


def average_precision(y, s):
    """scikit-learn's average_precision_score: sum over distinct thresholds
    of (R_n - R_{n-1}) P_n."""
    order = sorted(set(s), reverse=True)
    P = sum(y)
    tp = fp = 0
    ap, r0 = 0.0, 0.0
    for t in order:
        tp += sum(1 for a, b in zip(y, s) if b == t and a == 1)
        fp += sum(1 for a, b in zip(y, s) if b == t and a == 0)
        ap += (tp / P - r0) * tp / (tp + fp)
        r0 = tp / P
    return ap


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


class LossCorrections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.srv.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def loss(self, body):
        r = self.srv.post_json("/v1/loss", body)
        self.assertEqual(r.status, 200, r.text())
        return r.json()

    def test_soft_targets_divide_by_positions(self):
        # The case: rows summing to 0.5 and 1 -> sum / 2, as
        # PyTorch's cross_entropy with probability targets and Keras.
        yt = [[0.5, 0.0], [0.2, 0.8]]
        yp = [[0.6, 0.4], [0.3, 0.7]]
        l0 = -0.5 * math.log(0.6)
        l1 = -(0.2 * math.log(0.3) + 0.8 * math.log(0.7))
        for logits in (False, True):
            body = {"loss": "categorical_crossentropy", "y_true": yt, "y_pred": yp}
            if logits:
                body["from_logits"] = True
                body["y_pred"] = [[math.log(0.6), math.log(0.4)],
                                  [math.log(0.3), math.log(0.7)]]
            got = self.loss(body)
            self.assertTrue(close(got["loss"], (l0 + l1) / 2), got)
            self.assertEqual(got["weight_sum"], 2.0)
        # class weights act inside the sum only: the denominator stays 2
        got = self.loss({"loss": "categorical_crossentropy", "y_true": yt, "y_pred": yp,
                         "class_weight": [2.0, 4.0]})
        c0 = -2 * 0.5 * math.log(0.6)
        c1 = -(2 * 0.2 * math.log(0.3) + 4 * 0.8 * math.log(0.7))
        self.assertTrue(close(got["loss"], (c0 + c1) / 2), got)
        self.assertEqual(got["weight_sum"], 2.0)
        # sample weights are the denominator
        got = self.loss({"loss": "categorical_crossentropy", "y_true": yt, "y_pred": yp,
                         "sample_weight": [3.0, 0.5]})
        self.assertTrue(close(got["loss"], (3 * l0 + 0.5 * l1) / 3.5), got)
        self.assertEqual(got["weight_sum"], 3.5)

    def test_focal_and_kl_weigh_positions_alike(self):
        yt = [[0.3, 0.3, 0.0], [0.0, 1.0, 0.0]]
        yp = [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]]
        cw = [2.0, 3.0, 5.0]
        kl = [sum(cw[c] * max(p, 1e-7) * (math.log(max(p, 1e-7)) - math.log(q))
                  for c, (p, q) in enumerate(zip(pr, qr))) for pr, qr in zip(yt, yp)]
        fo = [sum(cw[c] * 0.25 * (1 - q) ** 2 * -(p * math.log(q))
                  for c, (p, q) in enumerate(zip(pr, qr))) for pr, qr in zip(yt, yp)]
        for loss, per in (("kl_divergence", kl), ("categorical_focal_crossentropy", fo)):
            got = self.loss({"loss": loss, "y_true": yt, "y_pred": yp, "class_weight": cw})
            self.assertTrue(close(got["loss"], sum(per) / 2), (loss, got, per))
            self.assertEqual(got["weight_sum"], 2.0, loss)

    def test_all_zero_target_row_is_counted(self):
        got = self.loss({"loss": "categorical_crossentropy",
                         "y_true": [[0, 0, 0], [0, 1, 0]],
                         "y_pred": [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]],
                         "reduction": "none"})
        self.assertEqual(got["count"], 2)
        self.assertEqual(got["ignored"], 0)
        self.assertEqual(got["per_position"][0], 0.0)
        self.assertEqual(got["per_class"][0]["support"], 1)  # argmax: class 0
        got = self.loss({"loss": "categorical_crossentropy",
                         "y_true": [[0, 0, 0], [0, 1, 0]],
                         "y_pred": [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]]})
        self.assertTrue(close(got["loss"], -math.log(0.6) / 2), got)

    def test_binary_half_is_negative(self):
        for body in ({"y_pred": [0.5, 0.5, 0.7, 0.2]},
                     {"y_pred": [0.0, -0.0, 0.8, -1.0], "from_logits": True},
                     {"y_pred": {"shape": [4], "dtype": "float32",
                                 "b64": "AAAAAAAAAIDNzEw/AACAvw=="}, "from_logits": True}):
            body.update({"loss": "binary_crossentropy", "y_true": [1, 0, 1, 0],
                         "confusion_matrix": True})
            got = self.loss(body)
            pc = got["per_class"][0]
            self.assertEqual(pc["predicted"], 1, body)
            self.assertEqual(pc["correct"], 1, body)
            self.assertEqual(got["accuracy"], 0.75, body)
            self.assertEqual(got["confusion_matrix"], [[2, 0], [1, 1]], body)
        # a soft target of exactly 0.5 is not a positive
        got = self.loss({"loss": "binary_crossentropy", "y_true": [0.5, 0.6],
                         "y_pred": [0.9, 0.9]})
        self.assertEqual(got["per_class"][0]["support"], 1)

    def test_f1_of_a_class_never_predicted_is_zero(self):
        got = self.loss({"loss": "sparse_categorical_crossentropy", "y_true": [0, 1, 0],
                         "y_pred": [[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.1, 0.8]]})
        pc = got["per_class"]
        self.assertEqual(pc[0]["f1"], 0.5)
        self.assertIsNone(pc[1]["precision"])
        self.assertEqual(pc[1]["f1"], 0.0)
        self.assertIsNone(pc[2]["recall"])
        self.assertEqual(pc[2]["f1"], 0.0)
        got = self.loss({"loss": "sparse_categorical_crossentropy", "y_true": [0, 0],
                         "y_pred": [[0.9, 0.1], [0.8, 0.2]]})
        self.assertIsNone(got["per_class"][1]["f1"])  # neither present nor predicted

    def test_sum_over_nothing_is_zero(self):
        body = {"loss": "sparse_categorical_crossentropy", "y_true": [-100, -100],
                "y_pred": [[0.5, 0.5], [0.2, 0.8]], "ignore_class": -100}
        self.assertIsNone(self.loss(body)["loss"])
        body["reduction"] = "sum"
        self.assertEqual(self.loss(body)["loss"], 0.0)

    def test_stream_loss_detail_binary_half_and_f1(self):
        r = self.srv.post_json("/v1/streams", {
            "method": "exact", "from_logits": True,
            "loss": {"loss": "binary_crossentropy"}})
        self.assertEqual(r.status, 201, r.text())
        sid = r.json()["id"]
        r = self.srv.post_json("/v1/streams/%s/update" % sid,
                               {"y_true": [1, 0, 1, 0], "y_score": [0.0, -0.0, 0.8, -1.0]})
        self.assertEqual(r.status, 200, r.text())
        got = self.srv.get("/v1/streams/%s" % sid).json()
        d = got["loss_detail"]
        self.assertEqual(d["accuracy"], 0.75, d)
        pc = d["per_class"][0]
        self.assertEqual((pc["support"], pc["predicted"], pc["correct"]), (2, 1, 1), pc)
        self.assertTrue(close(pc["f1"], 2 / 3), pc)
        # a class present but never predicted: f1 0, not null
        r = self.srv.post_json("/v1/streams", {
            "method": "exact", "num_classes": 3,
            "loss": {"loss": "sparse_categorical_crossentropy"}})
        sid = r.json()["id"]
        r = self.srv.post_json("/v1/streams/%s/update" % sid, {
            "y_true": [0, 1, 0], "y_score": [[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.1, 0.8]]})
        self.assertEqual(r.status, 200, r.text())
        pc = self.srv.get("/v1/streams/%s" % sid).json()["loss_detail"]["per_class"]
        self.assertEqual(pc[1]["f1"], 0.0, pc)
        self.assertEqual(pc[2]["f1"], 0.0, pc)


def keras_roc(y, s, n, f32cmp=True):
    """tf.keras.metrics.AUC(num_thresholds=n) ROC with interpolation, in
    Keras' float32 comparison (or in double, to show the difference)."""
    th = [-1e-7] + [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)] + [1 + 1e-7]
    tp, fp, fn, tn = [], [], [], []
    for t in th:
        a = [(f32(v) > f32(t)) if f32cmp else (v > t) for v in s]
        tp.append(sum(1 for q, y_ in zip(a, y) if q and y_))
        fp.append(sum(1 for q, y_ in zip(a, y) if q and not y_))
        fn.append(sum(1 for q, y_ in zip(a, y) if not q and y_))
        tn.append(sum(1 for q, y_ in zip(a, y) if not q and not y_))

    def d(a, b):
        return a / b if b else 0.0

    area = 0.0
    for i in range(n - 1):
        x0, x1 = d(fp[i], fp[i] + tn[i]), d(fp[i + 1], fp[i + 1] + tn[i + 1])
        y0, y1 = d(tp[i], tp[i] + fn[i]), d(tp[i + 1], tp[i + 1] + fn[i + 1])
        area += (x0 - x1) * (y0 + y1) / 2
    return area


def ovr_rows(rnd, n):
    y, z = [], []
    for _ in range(n):
        k, t = rnd.randrange(3), rnd.randrange(3)
        row = [rnd.random() for _ in range(3)]
        row[k] += 38 + 4 * rnd.random() + 4 * (k == t)
        y.append(t)
        z.append(row)
    return y, z


class AucCorrections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.srv.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def auc(self, body):
        r = self.srv.post_json("/v1/auc", body)
        self.assertEqual(r.status, 200, r.text())
        return r.json()

    def stream(self, cfg, batches):
        r = self.srv.post_json("/v1/streams", cfg)
        self.assertEqual(r.status, 201, r.text())
        sid = r.json()["id"]
        for b in batches:
            r = self.srv.post_json("/v1/streams/%s/update" % sid, b)
            self.assertEqual(r.status, 200, r.text())
        r = self.srv.get("/v1/streams/%s?curve=true" % sid)
        self.assertEqual(r.status, 200, r.text())
        return r.json()

    def test_large_logits_stay_distinct(self):
        # the case: a double sigmoid rounds both to 1.0
        self.assertEqual(self.auc({"from_logits": True, "y_true": [0, 1],
                                   "y_score": [40.0, 41.0]})["auc"], 1.0)
        self.assertEqual(self.auc({"from_logits": True, "y_true": [1, 0],
                                   "y_score": [-800.0, -790.0]})["auc"], 0.0)
        got = self.auc({"from_logits": True, "y_true": [0, 1, 1], "curve": "pr",
                        "y_score": [40.0, 41.0, 42.0]})
        self.assertEqual(got["auc"], 1.0)
        # float32 logits (b64) too
        b64 = {"shape": [2], "dtype": "float32", "b64": "AAAgQgAAJEI="}  # 40, 41
        self.assertEqual(self.auc({"from_logits": True, "y_true": [0, 1],
                                   "y_score": b64})["auc"], 1.0)

    def test_random_large_logits_match_ranking(self):
        rnd = random.Random(12)
        y = [rnd.randrange(2) for _ in range(300)]
        s = [37 + 10 * rnd.random() + 2 * t for t in y]
        want = mann_whitney(y, s)
        self.assertLess(want, 1.0)
        for method in ("exact", "sketch"):
            got = self.auc({"from_logits": True, "y_true": y, "y_score": s, "method": method})
            self.assertTrue(close(got["auc"], want), (method, got["auc"], want))
        got = self.auc({"from_logits": True, "y_true": y, "y_score": s, "curve": "pr"})
        self.assertTrue(close(got["auc"], average_precision(y, s)), got)

    def test_multilabel_and_one_vs_rest(self):
        rnd = random.Random(5)
        n = 60
        yt = [[rnd.randrange(2), rnd.randrange(2)] for _ in range(n)]
        ys = [[40 + rnd.random() * 5 + 3 * a, -760 + rnd.random() * 10 + 5 * b]
              for a, b in yt]
        cols = [[r[c] for r in ys] for c in range(2)]
        labs = [[r[c] for r in yt] for c in range(2)]
        got = self.auc({"from_logits": True, "y_true": yt, "y_score": ys, "average": "none"})
        for c in range(2):
            self.assertTrue(close(got["per_class"][c]["auc"], mann_whitney(labs[c], cols[c])),
                            (c, got))
        # one-vs-rest: one class of each row leads by 38-46, so every
        # softmax probability is 1.0 or ~1e-18 in double; the lead is
        # larger when that class is the true one
        y, z = ovr_rows(rnd, n)

        def log_softmax(row):
            m = max(row)
            return [x - m - math.log(sum(math.exp(v - m) for v in row)) for x in row]

        ls = [log_softmax(r) for r in z]
        # the top class' value, -log1p(rest), keeps digits log(sum) loses
        for r, row in zip(ls, z):
            top = row.index(max(row))
            rest = sum(math.exp(v - max(row)) for j, v in enumerate(row) if j != top)
            r[top] = -math.log1p(rest)
        got = self.auc({"from_logits": True, "y_true": y, "y_score": z, "average": "none"})
        for c in range(3):
            want = mann_whitney([int(t == c) for t in y], [r[c] for r in ls])
            self.assertTrue(close(got["per_class"][c]["auc"], want), (c, got, want))
            self.assertLess(got["per_class"][c]["auc"], 1.0)

    def test_curve_thresholds_are_probabilities(self):
        got = self.auc({"from_logits": True, "y_true": [0, 1, 0, 1],
                        "y_score": [-2.0, 3.0, 0.5, 1.0], "return_curve": True})
        th = [t for t in got["curve"]["thresholds"] if t is not None]
        want = sorted((sigmoid(x) for x in (-2.0, 3.0, 0.5, 1.0)), reverse=True)
        self.assertEqual(len(th), 4)
        for a, b in zip(th, want):
            self.assertTrue(close(a, b), (th, want))
        got = self.auc({"from_logits": True, "y_true": [0, 1, 2],
                        "y_score": [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]],
                        "average": "micro", "return_curve": True})
        th = [t for t in got["curve"]["thresholds"] if t is not None]
        self.assertTrue(all(0.0 <= t <= 1.0 for t in th), th)
        top = math.exp(3.0) / (math.exp(3.0) + 2)
        self.assertTrue(close(th[0], top), th)

    def test_streams_rank_logits(self):
        rnd = random.Random(7)
        y = [rnd.randrange(2) for _ in range(400)]
        s = [37 + 12 * rnd.random() + 1.5 * t for t in y]
        want = mann_whitney(y, s)
        batches = [{"y_true": y[i:i + 100], "y_score": s[i:i + 100]} for i in range(0, 400, 100)]
        got = self.stream({"method": "exact", "from_logits": True}, batches)
        self.assertTrue(close(got["auc"], want), (got["auc"], want))
        th = [t for t in got["curve"]["thresholds"] if t is not None]
        self.assertTrue(all(0.5 < t <= 1.0 for t in th), th[:5])
        got = self.stream({"method": "sketch", "from_logits": True}, batches)
        # honest bound: the exact AUC lies within auc +- error_bound (here
        # every logit is a distinct key, so the sketch is exact)
        self.assertLessEqual(abs(got["auc"] - want), got["error_bound"] + 1e-12,
                             (got["auc"], got["error_bound"], want))
        self.assertTrue(close(got["auc"], want), (got["auc"], want))
        # one-vs-rest exact stream: the log-softmax
        y3, z = ovr_rows(rnd, 90)
        one = self.auc({"from_logits": True, "y_true": y3, "y_score": z})
        got = self.stream({"method": "exact", "from_logits": True, "num_classes": 3},
                          [{"y_true": y3[:45], "y_score": z[:45]},
                           {"y_true": y3[45:], "y_score": z[45:]}])
        self.assertTrue(close(got["auc"], one["auc"]), (got["auc"], one["auc"]))
        self.assertLess(one["auc"], 1.0)

    def test_binned_compares_in_float32(self):
        # scores on the float32 roundings of Keras' thresholds (and just
        # above the double ones): Keras counts each as below its threshold
        rnd = random.Random(3)
        n = 200
        y, s = [], []
        for i in range(400):
            k = 1 + rnd.randrange(n - 2)
            t = k * 1.0 / (n - 1)
            s.append(f32(t) if i % 2 else math.nextafter(t, 2.0))
            y.append(rnd.randrange(2))
        want = keras_roc(y, s, n)
        self.assertGreater(abs(want - keras_roc(y, s, n, False)), 1e-6)
        got = self.auc({"y_true": y, "y_score": s, "method": "binned"})
        self.assertTrue(close(got["auc"], want), (got["auc"], want))
        got = self.stream({"method": "binned"},
                          [{"y_true": y[:200], "y_score": s[:200]},
                           {"y_true": y[200:], "y_score": s[200:]}])
        self.assertTrue(close(got["auc"], want), (got["auc"], want))


if __name__ == "__main__":
    unittest.main()
