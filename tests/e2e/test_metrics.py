"""Perplexity, top-k accuracy, calibration and AUC confidence intervals over
HTTP (docs/API.md section 9), against the real binary.

Expected figures are computed here from each metric's definition in plain
Python (no numpy), over inputs sent in the encodings a client uses (nested
arrays, base64 float32, a class axis that is not last); the AUC intervals
are checked against pROC's published values for its aSAH data set (pROC
tests/testthat/test-ci.auc.R: ci.auc(roc(aSAH$outcome, aSAH$ndka)) is
0.501244999271703, 0.611957994579946, 0.722670989888189). Every bad option
is a 422 with a JSON pointer.
"""

import base64
import math
import random
import shutil
import struct
import tempfile
import unittest

from lossd_harness import Server

ASAH_POOR = [0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0,
0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1,
0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0]
ASAH_NDKA = [3.01, 8.54, 8.09, 10.42, 17.4, 12.75, 6.0, 13.2, 15.54, 6.01, 15.96, 17.86, 5.18,
8.9, 13.41, 20.75, 11.6, 16.11, 32.37, 54.82, 32.41, 49.94, 40.34, 9.47, 6.29, 12.53, 6.54,
6.3, 80.3, 12.8, 9.8, 9.81, 9.85, 18.21, 5.03, 14.04, 21.93, 8.02, 7.42, 8.38, 6.59, 9.63,
13.12, 7.96, 14.34, 41.43, 7.63, 7.06, 12.59, 13.56, 3.87, 9.44, 7.66, 12.98, 419.19, 27.19,
22.27, 9.95, 21.22, 11.73, 10.4, 58.83, 6.39, 11.09, 12.22, 13.67, 17.21, 22.63, 12.9, 9.7,
21.57, 8.23, 72.57, 15.54, 10.51, 10.6, 14.57, 5.19, 9.63, 4.61, 21.48, 17.3, 12.71, 9.44,
11.07, 19.46, 10.83, 5.37, 11.97, 7.75, 9.83, 10.55, 28.49, 8.53, 12.57, 12.9, 46.83, 11.68,
12.67, 9.01, 9.57, 34.06, 11.72, 14.26, 47.61, 11.67, 24.58, 10.33, 13.87, 15.89, 22.43, 6.79,
13.45]
ASAH_S100B = [0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71,
0.04, 0.08, 0.49, 0.04, 0.07, 0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11, 0.13, 0.19,
0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48, 0.09, 0.96, 0.25, 0.5, 0.46, 0.16, 0.07, 0.43, 0.45,
0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1, 0.14, 0.15, 0.07, 0.06, 0.77, 0.05,
0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7, 0.09, 0.27, 0.71, 0.08, 0.26, 0.08, 0.16, 0.09, 0.13,
0.1, 0.08, 0.11, 0.33, 0.11, 0.28, 0.07, 0.1, 0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15,
0.08, 0.14, 0.1, 0.07, 0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44,
0.15, 0.5, 0.48]


def f32(rows):
    """Nested lists -> base64 float32 tensor with its shape, and the float32
    values back (what the server sees)."""
    shape, flat, v = [], [], rows
    while isinstance(v, list):
        shape.append(len(v))
        v = v[0]

    def walk(x):
        if isinstance(x, list):
            for e in x:
                walk(e)
        else:
            flat.append(x)
    walk(rows)
    raw = struct.pack("<%df" % len(flat), *flat)
    back = list(struct.unpack("<%df" % len(flat), raw))
    return {"shape": shape, "dtype": "float32", "b64": base64.b64encode(raw).decode()}, back


def softmax(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    s = sum(e)
    return [x / s for x in e]


def calib_expected(conf, acc, brier, w, bins):
    idx = []
    for p in conf:
        b = min(int(p * bins), bins - 1)
        if b > 0 and p < b / bins:
            b -= 1
        elif b + 1 < bins and p >= (b + 1) / bins:
            b += 1
        idx.append(b)
    W = sum(w)
    ece = mce = ms = 0.0
    rows = []
    for b in range(bins):
        m = [i for i in range(len(conf)) if idx[i] == b]
        wb = sum(w[i] for i in m)
        if wb == 0:
            rows.append((len(m), None, None))
            continue
        cb = sum(w[i] * conf[i] for i in m) / wb
        ab = sum(w[i] * acc[i] for i in m) / wb
        rows.append((len(m), cb, ab))
        gap = abs(ab - cb)
        ece += wb / W * gap
        ms += wb / W * gap * gap
        mce = max(mce, gap)
    br = sum(w[i] * brier[i] for i in range(len(w))) / W
    return ece, mce, math.sqrt(ms), br, rows


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(args=["--threads", "2"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def post(self, path, body):
        return self.srv.post_json(path, body)

    def ok(self, path, body):
        r = self.post(path, body)
        self.assertEqual(r.status, 200, r.text())
        return r.json()

    def bad(self, path, body, pointer, code="bad_option"):
        r = self.post(path, body)
        self.assertEqual(r.status, 422, r.text())
        p = r.problem()
        self.assertEqual(p["code"], code, p)
        self.assertEqual(p.get("pointer"), pointer, p)
        return p

    def close(self, a, b, tol=1e-9):
        self.assertIsNotNone(a)
        self.assertLessEqual(abs(a - b), tol * max(1.0, abs(b)), (a, b))

    # ---- perplexity ------------------------------------------------------------------
    def test_perplexity_sparse_weighted_ignored(self):
        rng = random.Random(7)
        B, T, V = 3, 5, 11
        x = [[[rng.gauss(0, 2) for _ in range(V)] for _ in range(T)] for _ in range(B)]
        y = [[rng.randrange(V) if rng.random() > 0.2 else -100 for _ in range(T)] for _ in range(B)]
        sw = [0.5, 2.0, 1.25]
        xb, xv = f32(x)
        num = den = 0.0
        for b in range(B):
            for t in range(T):
                if y[b][t] == -100:
                    continue
                row = xv[(b * T + t) * V:(b * T + t + 1) * V]
                m = max(row)
                nll = m + math.log(sum(math.exp(v - m) for v in row)) - row[y[b][t]]
                num += sw[b] * nll
                den += sw[b]
        want = math.exp(num / den)
        base = {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                "y_true": y, "y_pred": xb, "ignore_class": -100, "sample_weight": sw}
        r = self.ok("/v1/loss", base)
        self.close(r["perplexity"], want, 1e-6)
        # class weights and label smoothing change the loss, not the perplexity
        r2 = self.ok("/v1/loss", dict(base, class_weight=[1 + c for c in range(V)],
                                      label_smoothing=0.1))
        self.close(r2["perplexity"], want, 1e-6)
        self.assertGreater(abs(r2["loss"] - r["loss"]), 1e-3)
        # every position ignored: null, and so is the loss
        r3 = self.ok("/v1/loss", dict(base, y_true=[[-100] * T] * B))
        self.assertIsNone(r3["perplexity"])
        # heads carry it too
        r4 = self.ok("/v1/loss", {"heads": [base, dict(base, sample_weight=None)]})
        self.close(r4["heads"][0]["perplexity"], want, 1e-6)
        self.assertIn("perplexity", r4["heads"][1])

    def test_perplexity_categorical_and_absent_elsewhere(self):
        t = [[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]]
        p = [[0.3, 0.6, 0.1], [0.5, 0.25, 0.25]]
        nll = [-(0.2 * math.log(0.3) + 0.8 * math.log(0.6)), -math.log(0.5)]
        r = self.ok("/v1/loss", {"loss": "categorical_crossentropy", "y_true": t, "y_pred": p})
        self.close(r["perplexity"], math.exp(sum(nll) / 2), 1e-12)
        r = self.ok("/v1/loss", {"loss": "kl_divergence", "y_true": t, "y_pred": p})
        self.assertNotIn("perplexity", r)
        r = self.ok("/v1/loss", {"loss": "binary_crossentropy", "y_true": [0, 1], "y_pred": [0.3, 0.6]})
        self.assertNotIn("perplexity", r)

    # ---- top-k ------------------------------------------------------------------------
    def test_top_k_rank3_and_class_axis_1(self):
        rng = random.Random(11)
        B, T, V = 2, 7, 9
        x = [[[rng.choice([rng.gauss(0, 1), 0.5]) for _ in range(V)] for _ in range(T)]
             for _ in range(B)]  # many ties at 0.5
        y = [[rng.randrange(V) for _ in range(T)] for _ in range(B)]
        ks = [1, 2, 5, 9]
        want = {str(k): 0 for k in ks}
        for b in range(B):
            for t in range(T):
                above = sum(1 for v in x[b][t] if v > x[b][t][y[b][t]])
                for k in ks:
                    want[str(k)] += above < k
        want = {k: v / (B * T) for k, v in want.items()}
        r = self.ok("/v1/loss", {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                                 "y_true": y, "y_pred": x, "top_k": ks})
        self.assertEqual(set(r["top_k_accuracy"]), set(want))
        for k in want:
            self.close(r["top_k_accuracy"][k], want[k], 1e-15)
        self.assertEqual(r["top_k_accuracy"]["9"], 1.0)
        # (B, V, T) with axis 1, float32: the same answer
        xt = [[[x[b][t][v] for t in range(T)] for v in range(V)] for b in range(B)]
        xb, _ = f32(xt)
        r2 = self.ok("/v1/loss", {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                                  "axis": 1, "y_true": y, "y_pred": xb, "top_k": ks})
        self.assertEqual(r2["top_k_accuracy"], r["top_k_accuracy"])
        # probabilities (divided by the row sum) rank the same way
        pr = [[softmax(row) for row in seq] for seq in x]
        r3 = self.ok("/v1/loss", {"loss": "categorical_crossentropy",
                                  "y_true": [[[1.0 if c == y[b][t] else 0.0 for c in range(V)]
                                              for t in range(T)] for b in range(B)],
                                  "y_pred": pr, "top_k": [1, 2]})
        self.close(r3["top_k_accuracy"]["2"], want["2"], 1e-15)

    def test_top_k_many_ks(self):
        # 16 or more entries arrive lifted out of the JSON (api/src/packed.c)
        rng = random.Random(1)
        x = [[rng.gauss(0, 1) for _ in range(40)] for _ in range(8)]
        y = [rng.randrange(40) for _ in range(8)]
        ks = list(range(1, 21))
        r = self.ok("/v1/loss", {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                                 "y_true": y, "y_pred": x, "top_k": ks})
        for k in ks:
            want = sum(1 for i in range(8) if sum(v > x[i][y[i]] for v in x[i]) < k) / 8
            self.assertEqual(r["top_k_accuracy"][str(k)], want, k)
        base = {"loss": "sparse_categorical_crossentropy", "y_true": y, "y_pred": x}
        self.bad("/v1/loss", dict(base, top_k=list(range(1, 34))), "/top_k")
        self.bad("/v1/loss", dict(base, top_k=list(range(1, 19)) + [17, 30]), "/top_k/18")
        self.bad("/v1/loss", dict(base, top_k=[[1, 2]] * 10), "/top_k", "bad_type")

    def test_top_k_bad_input(self):
        base = {"loss": "sparse_categorical_crossentropy", "y_true": [0, 1],
                "y_pred": [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]}
        self.bad("/v1/loss", dict(base, top_k=[0]), "/top_k/0")
        self.bad("/v1/loss", dict(base, top_k=[1, 4]), "/top_k/1")
        self.bad("/v1/loss", dict(base, top_k=[2, 2]), "/top_k/1")
        self.bad("/v1/loss", dict(base, top_k=[3, 1]), "/top_k/1")
        self.bad("/v1/loss", dict(base, top_k=[]), "/top_k")
        self.bad("/v1/loss", dict(base, top_k=[1.5]), "/top_k/0")
        self.bad("/v1/loss", dict(base, top_k=["1"]), "/top_k/0", "bad_type")
        self.bad("/v1/loss", {"heads": [dict(base, top_k=[0])]}, "/heads/0/top_k/0")
        self.bad("/v1/loss", {"loss": "binary_crossentropy", "y_true": [0, 1],
                              "y_pred": [0.2, 0.7], "top_k": [1]}, "/top_k")

    # ---- calibration --------------------------------------------------------------------
    def test_calibration_binary_logits_weighted(self):
        rng = random.Random(5)
        n, bins = 200, 10
        logits = [rng.gauss(0, 2) for _ in range(n)]
        y = [1.0 if rng.random() < 1 / (1 + math.exp(-0.7 * z)) else 0.0 for z in logits]
        w = [rng.uniform(0.1, 3) for _ in range(n)]
        xb, xv = f32(logits)
        p = [1 / (1 + math.exp(-z)) for z in xv]
        ece, mce, rms, br, rows = calib_expected(p, y, [(p[i] - y[i]) ** 2 for i in range(n)], w, bins)
        r = self.ok("/v1/loss", {"loss": "binary_crossentropy", "from_logits": True, "y_true": y,
                                 "y_pred": xb, "sample_weight": w, "calibration": {"bins": bins}})
        c = r["calibration"]
        self.close(c["ece"], ece)
        self.close(c["mce"], mce)
        self.close(c["rmsce"], rms)
        self.close(c["brier"], br)
        self.assertEqual(len(c["bins"]), bins)
        for b, (row, (cnt, cb, ab)) in enumerate(zip(c["bins"], rows)):
            self.assertEqual(row["count"], cnt)
            self.close(row["lo"], b / bins, 1e-15)
            self.close(row["hi"], (b + 1) / bins, 1e-15)
            if cb is None:
                self.assertIsNone(row["confidence"])
                self.assertIsNone(row["accuracy"])
            else:
                self.close(row["confidence"], cb)
                self.close(row["accuracy"], ab)

    def test_calibration_categorical_and_empty_bins(self):
        x = [[2.0, 1.0, 0.5], [0.1, 3.0, 0.2], [1.0, 1.0, 1.0], [3.0, 2.0, 1.0]]
        y = [0, 1, 2, 1]
        bins = 20
        p = [softmax(r) for r in x]
        conf = [max(r) for r in p]
        pred = [r.index(max(r)) for r in p]
        acc = [1.0 if pred[i] == y[i] else 0.0 for i in range(4)]
        brier = [sum((p[i][c] - (1.0 if c == y[i] else 0.0)) ** 2 for c in range(3)) for i in range(4)]
        ece, mce, rms, br, rows = calib_expected(conf, acc, brier, [1.0] * 4, bins)
        r = self.ok("/v1/loss", {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                                 "y_true": y, "y_pred": x, "calibration": {"bins": bins}})
        c = r["calibration"]
        self.close(c["ece"], ece)
        self.close(c["mce"], mce)
        self.close(c["rmsce"], rms)
        self.close(c["brier"], br)
        self.assertEqual(sum(b["count"] for b in c["bins"]), 4)
        self.assertEqual(sum(1 for b in c["bins"] if b["confidence"] is None), bins - 4)
        # default bins: 15
        r = self.ok("/v1/loss", {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                                 "y_true": y, "y_pred": x, "calibration": {}})
        self.assertEqual(len(r["calibration"]["bins"]), 15)

    def test_calibration_bad_input(self):
        base = {"loss": "binary_crossentropy", "y_true": [0, 1], "y_pred": [0.2, 0.7]}
        self.bad("/v1/loss", dict(base, calibration={"bins": 0}), "/calibration/bins")
        self.bad("/v1/loss", dict(base, calibration={"bins": 1001}), "/calibration/bins")
        self.bad("/v1/loss", dict(base, calibration={"bins": 2.5}), "/calibration/bins")
        self.bad("/v1/loss", dict(base, calibration={"bin": 10}), "/calibration/bin", "unknown_field")
        self.bad("/v1/loss", dict(base, calibration=10), "/calibration", "bad_type")
        self.bad("/v1/loss", {"loss": "mean_squared_error", "y_true": [0, 1], "y_pred": [0.2, 0.7],
                              "calibration": {"bins": 10}}, "/calibration")
        self.bad("/v1/loss", {"loss": "huber", "y_true": [0, 1], "y_pred": [0.2, 0.7],
                              "calibration": {"bins": 10}}, "/calibration")

    # ---- AUC confidence intervals --------------------------------------------------------
    def test_ci_delong_matches_proc(self):
        r = self.ok("/v1/auc", {"y_true": ASAH_POOR, "y_score": ASAH_NDKA, "ci": 0.95})
        ci = r["ci"]
        self.assertEqual(ci["method"], "delong")
        self.assertEqual(ci["level"], 0.95)
        self.close(r["auc"], 0.611957994579946, 1e-13)
        self.close(ci["lower"], 0.501244999271703, 1e-13)
        self.close(ci["upper"], 0.722670989888189, 1e-13)
        r = self.ok("/v1/auc", {"y_true": ASAH_POOR, "y_score": ASAH_S100B, "ci": 0.95})
        self.assertEqual(round(r["auc"], 4), 0.7314)
        self.assertEqual(round(r["ci"]["lower"], 4), 0.6301)
        self.assertEqual(round(r["ci"]["upper"], 4), 0.8326)
        # a narrower level, a narrower interval around the same AUC
        r90 = self.ok("/v1/auc", {"y_true": ASAH_POOR, "y_score": ASAH_S100B, "ci": 0.9})
        self.assertGreater(r90["ci"]["lower"], r["ci"]["lower"])
        self.close(r90["ci"]["se"], r["ci"]["se"], 1e-15)

    def test_ci_hanley_mcneil_binned_sketch_per_class(self):
        s = [v / 500.0 for v in ASAH_NDKA]  # into [0, 1] for the binned thresholds
        A = self.ok("/v1/auc", {"y_true": ASAH_POOR, "y_score": s, "method": "binned",
                                "num_thresholds": 1000, "ci": 0.95})
        a, P, N = A["auc"], 41.0, 72.0
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        se = math.sqrt((a * (1 - a) + (P - 1) * (q1 - a * a) + (N - 1) * (q2 - a * a)) / (P * N))
        self.assertEqual(A["ci"]["method"], "hanley_mcneil")
        self.close(A["ci"]["se"], se, 1e-12)
        self.close(A["ci"]["lower"], a - 1.959963984540054 * se, 1e-12)
        S = self.ok("/v1/auc", {"y_true": ASAH_POOR, "y_score": s, "method": "sketch", "ci": 0.95})
        self.assertEqual(S["ci"]["method"], "hanley_mcneil")
        half = S["ci"]["upper"] - S["auc"]
        self.assertGreaterEqual(half + 1e-15, 1.959963984540054 * S["ci"]["se"] + S["error_bound"])
        # one-vs-rest: a ci per class, none on the average
        y = [0, 1, 2, 1, 0, 2, 2, 1, 0, 1]
        sc = [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3], [0.4, 0.4, 0.2],
              [0.3, 0.3, 0.4], [0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7]]
        r = self.ok("/v1/auc", {"y_true": y, "y_score": sc, "ci": 0.9})
        self.assertNotIn("ci", r)
        for row in r["per_class"]:
            c = self.ok("/v1/auc", {"y_true": [1 if v == row["class"] else 0 for v in y],
                                    "y_score": [s_[row["class"]] for s_ in sc], "ci": 0.9})
            self.assertEqual(row["ci"], c["ci"])

    def test_ci_bad_input(self):
        base = {"y_true": [0, 1, 0, 1], "y_score": [0.1, 0.7, 0.4, 0.3]}
        for level in (0, 1, -0.5, 1.5):
            self.bad("/v1/auc", dict(base, ci=level), "/ci")
        self.bad("/v1/auc", dict(base, ci=0.95, sample_weight=[1, 2, 1, 1]), "/ci")
        self.bad("/v1/auc", dict(base, ci=0.95, curve="pr"), "/ci")
        self.bad("/v1/auc", dict(base, ci=0.95, max_fpr=0.5), "/ci")
        self.bad("/v1/auc", dict(base, ci="0.95"), "/ci", "bad_type")

    # ---- streams: GET /v1/streams/{id}?ci= --------------------------------------------------
    def stream(self, config, *updates):
        r = self.srv.post_json("/v1/streams", config)
        self.assertEqual(r.status, 201, r.text())
        sid = r.json()["id"]
        for u in updates:
            r = self.srv.post_json("/v1/streams/%s/update" % sid, u)
            self.assertEqual(r.status, 200, r.text())
        return sid

    def test_stream_ci(self):
        half = 60
        sid = self.stream({"method": "exact"},
                          {"y_true": ASAH_POOR[:half], "y_score": ASAH_NDKA[:half]},
                          {"y_true": ASAH_POOR[half:], "y_score": ASAH_NDKA[half:]})
        r = self.srv.get("/v1/streams/%s?ci=0.95" % sid)
        self.assertEqual(r.status, 200, r.text())
        ci = r.json()["ci"]
        self.assertEqual(ci["method"], "delong")
        self.close(ci["lower"], 0.501244999271703, 1e-13)
        self.close(ci["upper"], 0.722670989888189, 1e-13)
        self.assertNotIn("ci", self.srv.get("/v1/streams/%s" % sid).json())
        # sketch and binned: Hanley-McNeil, as the one-shot call gives it
        s = [v / 500.0 for v in ASAH_NDKA]
        for method in ("sketch", "binned"):
            sid = self.stream({"method": method}, {"y_true": ASAH_POOR, "y_score": s})
            got = self.srv.get("/v1/streams/%s?ci=0.9" % sid).json()
            one = self.ok("/v1/auc", {"y_true": ASAH_POOR, "y_score": s, "method": method,
                                      "ci": 0.9})
            self.assertEqual(got["ci"]["method"], "hanley_mcneil")
            self.close(got["ci"]["se"], one["ci"]["se"], 1e-12)
        # one-vs-rest: per class, equal to the one-shot per-class intervals
        y = [0, 1, 2, 1, 0, 2, 2, 1, 0, 1]
        sc = [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3], [0.4, 0.4, 0.2],
              [0.3, 0.3, 0.4], [0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7]]
        sid = self.stream({"method": "exact", "num_classes": 3}, {"y_true": y, "y_score": sc})
        got = self.srv.get("/v1/streams/%s?ci=0.9" % sid).json()
        one = self.ok("/v1/auc", {"y_true": y, "y_score": sc, "ci": 0.9})
        self.assertNotIn("ci", got)
        for a, b in zip(got["per_class"], one["per_class"]):
            self.assertEqual(a["ci"], b["ci"])

    def test_stream_perplexity(self):
        rng = random.Random(3)
        n, C = 40, 6
        x = [[rng.gauss(0, 2) for _ in range(C)] for _ in range(n)]
        y = [rng.randrange(C) for _ in range(n)]
        sid = self.stream({"method": "sketch", "num_classes": C, "from_logits": True,
                           "loss": {"loss": "sparse_categorical_crossentropy", "from_logits": True}},
                          {"y_true": y[:15], "y_score": x[:15]}, {"y_true": y[15:], "y_score": x[15:]})
        got = self.srv.get("/v1/streams/" + sid).json()
        one = self.ok("/v1/loss", {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                                   "y_true": y, "y_pred": x})
        self.close(got["perplexity"], one["perplexity"], 1e-12)
        sid = self.stream({"method": "sketch", "num_classes": C,
                           "loss": {"loss": "sparse_categorical_crossentropy",
                                    "class_weight": [1, 2, 3, 4, 5, 6]}})
        self.assertNotIn("perplexity", self.srv.get("/v1/streams/" + sid).json())
        sid = self.stream({"method": "sketch", "num_classes": C,
                           "loss": {"loss": "sparse_categorical_crossentropy"}})
        self.assertIsNone(self.srv.get("/v1/streams/" + sid).json()["perplexity"])

    # ---- top-k and calibration in streams (docs/API.md section 9, "Streams") ---------------
    def same_extra(self, got, one, tol=1e-12):
        """A stream reading's top_k_accuracy, calibration and perplexity
        against a one-shot /v1/loss reply over the same rows."""
        self.assertEqual(got["top_k_accuracy"], one["top_k_accuracy"])
        self.close(got["perplexity"], one["perplexity"], tol)
        gc, oc = got["calibration"], one["calibration"]
        for k in ("ece", "mce", "rmsce", "brier"):
            self.close(gc[k], oc[k], tol)
        self.assertEqual(len(gc["bins"]), len(oc["bins"]))
        for a, b in zip(gc["bins"], oc["bins"]):
            self.assertEqual((a["lo"], a["hi"], a["count"]), (b["lo"], b["hi"], b["count"]))
            for k in ("weight", "confidence", "accuracy"):
                if b[k] is None:
                    self.assertIsNone(a[k])
                else:
                    self.close(a[k], b[k], tol)

    def extra_batches(self, seed, n, C):
        rng = random.Random(seed)
        x = [[rng.gauss(0, 2) for _ in range(C)] for _ in range(n)]
        y = [rng.randrange(C) for _ in range(n)]
        w = [rng.choice([0.5, 1.0, 2.0, 3.0]) for _ in range(n)]
        return x, y, w

    def test_stream_top_k_calibration(self):
        C = 6
        x, y, w = self.extra_batches(11, 90, C)
        loss = {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                "top_k": [1, 3], "calibration": {"bins": 7}}
        cfg = {"method": "sketch", "num_classes": C, "from_logits": True, "loss": loss}
        cuts = [(0, 25), (25, 60), (60, 90)]
        ups = [{"y_true": y[a:b], "y_score": x[a:b], "sample_weight": w[a:b]} for a, b in cuts]
        sid = self.stream(cfg)
        empty = self.srv.get("/v1/streams/" + sid).json()
        self.assertEqual(empty["top_k_accuracy"], {"1": None, "3": None})
        self.assertIsNone(empty["calibration"]["ece"])
        self.assertEqual([b["count"] for b in empty["calibration"]["bins"]], [0] * 7)
        for u in ups:
            r = self.srv.post_json("/v1/streams/%s/update" % sid, u)
            self.assertEqual(r.status, 200, r.text())
        got = self.srv.get("/v1/streams/" + sid).json()
        one = self.ok("/v1/loss", dict(loss, y_true=y, y_pred=x, sample_weight=w))
        self.same_extra(got, one)
        # the weighted perplexity is the sample-weighted one of /v1/loss
        self.close(got["perplexity"], one["perplexity"], 1e-12)

        # merge: another stream's exported state adds exactly
        x2, y2, w2 = self.extra_batches(12, 40, C)
        sid2 = self.stream(cfg, {"y_true": y2, "y_score": x2, "sample_weight": w2})
        st = self.srv.get("/v1/streams/%s/state" % sid).json()
        r = self.srv.post_json("/v1/streams/%s/merge" % sid2, st)
        self.assertEqual(r.status, 200, r.text())
        got = self.srv.get("/v1/streams/" + sid2).json()
        one = self.ok("/v1/loss", dict(loss, y_true=y2 + y, y_pred=x2 + x, sample_weight=w2 + w))
        self.same_extra(got, one)
        self.assertEqual(got["count"], 130)

        # a state of other top_k: another config, 409
        other = dict(cfg, loss=dict(loss, top_k=[1, 2]))
        sid3 = self.stream(other, {"y_true": y2, "y_score": x2})
        st3 = self.srv.get("/v1/streams/%s/state" % sid3).json()
        p = self.srv.post_json("/v1/streams/%s/merge" % sid2, st3).problem()
        self.assertEqual((p["status"], p["code"]), (409, "state_mismatch"))
        # a state whose config claims metrics its bytes were not made with: 422
        plain = self.stream({"method": "sketch", "num_classes": C, "from_logits": True,
                             "loss": {"loss": "sparse_categorical_crossentropy",
                                      "from_logits": True}}, {"y_true": y2, "y_score": x2})
        forged = self.srv.get("/v1/streams/%s/state" % plain).json()
        forged["config"] = st["config"]
        p = self.srv.post_json("/v1/streams/%s/merge" % sid2, forged).problem()
        self.assertEqual((p["status"], p["code"]), (422, "bad_state"))

    def test_stream_calibration_binary(self):
        rng = random.Random(5)
        n = 70
        p = [rng.random() for _ in range(n)]
        y = [1 if rng.random() < q else 0 for q in p]
        loss = {"loss": "binary_crossentropy", "calibration": {"bins": 10}}
        sid = self.stream({"method": "binned", "loss": loss},
                          {"y_true": y[:33], "y_score": p[:33]},
                          {"y_true": y[33:], "y_score": p[33:]})
        got = self.srv.get("/v1/streams/" + sid).json()
        one = self.ok("/v1/loss", dict(loss, y_true=y, y_pred=p))
        self.assertNotIn("top_k_accuracy", got)
        self.assertNotIn("perplexity", got)
        gc, oc = got["calibration"], one["calibration"]
        for k in ("ece", "mce", "rmsce", "brier"):
            self.close(gc[k], oc[k], 1e-12)
        self.assertEqual([b["count"] for b in gc["bins"]], [b["count"] for b in oc["bins"]])

    def test_stream_extra_bad_config(self):
        def bad(loss, pointer, ncls=5):
            r = self.srv.post_json("/v1/streams", {"num_classes": ncls, "loss": loss})
            self.assertEqual(r.status, 422, r.text())
            self.assertEqual(r.problem()["code"], "bad_option", r.problem())
            self.assertEqual(r.problem()["pointer"], pointer, r.problem())
        sce = "sparse_categorical_crossentropy"
        bad({"loss": sce, "top_k": [3, 2]}, "/loss/top_k/1")
        bad({"loss": sce, "top_k": [0]}, "/loss/top_k/0")
        bad({"loss": sce, "top_k": [1, 6]}, "/loss/top_k/1")
        bad({"loss": sce, "calibration": {"bins": 0}}, "/loss/calibration/bins")
        bad({"loss": sce, "calibration": {"bins": 1001}}, "/loss/calibration/bins")
        bad({"loss": "mean_squared_error", "calibration": {"bins": 10}}, "/loss/calibration", ncls=1)
        bad({"loss": "binary_crossentropy", "top_k": [1]}, "/loss/top_k", ncls=1)

    def test_stream_extra_survives_restart(self):
        d = tempfile.mkdtemp(prefix="lossd-extra-")
        try:
            C = 4
            x, y, w = self.extra_batches(21, 50, C)
            cfg = {"method": "exact", "num_classes": C,
                   "loss": {"loss": "sparse_categorical_crossentropy", "from_logits": True,
                            "top_k": [2], "calibration": {"bins": 5}}}
            with Server(data_dir=d) as srv:
                sid = srv.post_json("/v1/streams", cfg).json()["id"]
                for a, b in ((0, 20), (20, 50)):
                    r = srv.post_json("/v1/streams/%s/update" % sid,
                                      {"y_true": y[a:b], "y_score": x[a:b],
                                       "sample_weight": w[a:b]})
                    self.assertEqual(r.status, 200, r.text())
                r = srv.post_json("/v1/streams/%s/update" % sid,
                                  {"y_true": y[:5], "y_score": x[:5]})
                self.assertEqual(r.status, 200, r.text())
                before = srv.get("/v1/streams/" + sid).json()
            with Server(data_dir=d) as srv:
                got = srv.get("/v1/streams/" + sid).json()
                for k in ("top_k_accuracy", "calibration", "perplexity", "count"):
                    self.assertEqual(got[k], before[k], k)
                one = srv.post_json("/v1/loss", dict(cfg["loss"], y_true=y + y[:5],
                                                     y_pred=x + x[:5],
                                                     sample_weight=w + [1] * 5)).json()
                self.same_extra(got, one)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_stream_ci_bad_input(self):
        sid = self.stream({"method": "exact"}, {"y_true": [0, 1, 1], "y_score": [0.1, 0.7, 0.4],
                                                "sample_weight": [1, 2, 1]})
        for q in ("ci=0", "ci=1", "ci=abc", "ci=-0.5"):
            r = self.srv.get("/v1/streams/%s?%s" % (sid, q))
            self.assertEqual(r.status, 422, (q, r.text()))
            self.assertEqual(r.problem()["code"], "bad_option")
        r = self.srv.get("/v1/streams/%s?ci=0.95" % sid)
        self.assertEqual(r.status, 422, r.text())
        self.assertEqual(r.problem()["pointer"], "/ci")
        sid = self.stream({"method": "exact", "curve": "pr"}, {"y_true": [0, 1], "y_score": [0.1, 0.7]})
        r = self.srv.get("/v1/streams/%s?ci=0.95" % sid)
        self.assertEqual(r.status, 422, r.text())
        self.assertEqual(r.problem()["pointer"], "/ci")


if __name__ == "__main__":
    unittest.main()
