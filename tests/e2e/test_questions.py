"""The six questions of the seed file, each asked of lossd in one request.

Every answer is checked against an independent computation in plain Python
(the formula the question's accepted answer writes down), so these tests pin
the semantics users asked about, not lossd's own output. README.md shows the
same requests.
"""

import math
import unittest

from lossd_harness import Server

EPS = 1e-7


def close(a, b, rel=2e-6):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def log_softmax(row):
    m = max(row)
    s = sum(math.exp(v - m) for v in row)
    return [v - m - math.log(s) for v in row]


def clip(p, lo=EPS, hi=1 - EPS):
    return min(max(p, lo), hi)


class SeedQuestions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def loss(self, req):
        r = self.srv.post_json("/v1/loss", req)
        self.assertEqual(r.status, 200, r.text())
        return r.json()

    def test_1_sparse_over_batch_seq_vocab(self):
        """(batch, seq, vocab) probabilities with (batch, seq) labels: the
        mean of -log p[true] over all batch*seq tokens."""
        y_pred = [[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
                  [[0.25, 0.5, 0.25], [0.9, 0.05, 0.05], [0.2, 0.2, 0.6]]]
        y_true = [[0, 2, 1], [1, 0, 2]]
        got = self.loss({"loss": "sparse_categorical_crossentropy",
                         "y_true": y_true, "y_pred": y_pred})
        toks = [-math.log(clip(y_pred[b][t][y_true[b][t]] / sum(y_pred[b][t])))
                for b in range(2) for t in range(3)]
        self.assertEqual(got["count"], 6)
        self.assertTrue(close(got["loss"], sum(toks) / 6), got)

    def test_2_three_periods_six_classes(self):
        """Labels [1, 4, 5]: three CrossEntropyLoss heads added up, which is
        also one (1, 3, 6) request with reduction sum."""
        logits = [[0.3, 1.2, -0.5, 0.0, 2.0, 0.1],
                  [1.5, -1.0, 0.2, 0.4, 0.9, -0.3],
                  [0.0, 0.5, 0.5, -2.0, 1.0, 3.0]]
        labels = [1, 4, 5]
        heads = [{"loss": "sparse_categorical_crossentropy", "from_logits": True,
                  "y_true": [labels[i]], "y_pred": [logits[i]]} for i in range(3)]
        got = self.loss({"heads": heads})
        want = sum(-log_softmax(logits[i])[labels[i]] for i in range(3))
        self.assertTrue(close(got["loss"], want), got)
        self.assertEqual(len(got["heads"]), 3)
        one = self.loss({"loss": "sparse_categorical_crossentropy", "from_logits": True,
                         "reduction": "sum", "y_true": [labels], "y_pred": [logits]})
        self.assertTrue(close(one["loss"], want), one)

    def test_3_gaussian_mixture(self):
        """Four Gaussians a*exp(-(x-b)^2/(2c)) against a curve of zs points
        on linspace(0, 1, zs), mean absolute error."""
        zs = 9
        coef = [1.0, 0.2, 0.01, 0.5, 0.5, 0.02, 0.8, 0.7, 0.005, 0.3, 0.9, 0.05]
        target = [0.9, 1.1, 0.6, 0.7, 0.5, 0.4, 0.8, 0.5, 0.3]
        got = self.loss({"loss": "gaussian_mixture", "y_true": [target], "y_pred": [coef]})
        xs = [i / (zs - 1) for i in range(zs)]
        f = [sum(coef[k] * math.exp(-(x - coef[k + 1]) ** 2 / (2 * coef[k + 2]))
                 for k in range(0, 12, 3)) for x in xs]
        want = sum(abs(t - v) for t, v in zip(target, f)) / zs
        self.assertTrue(close(got["loss"], want), got)

    def test_4_auc_of_two_column_predictions(self):
        """tf.metrics.auc(labels, predictions[:, 1]) with (N) labels and
        (N, 2) softmax outputs: positive_class 1."""
        labels = [0, 1, 1, 0, 1, 0, 1, 1]
        pos = [0.2, 0.9, 0.6, 0.6, 0.4, 0.1, 0.8, 0.55]
        preds = [[1 - p, p] for p in pos]
        r = self.srv.post_json("/v1/auc", {"y_true": labels, "y_score": preds,
                                            "positive_class": 1})
        self.assertEqual(r.status, 200, r.text())
        P = [s for s, y in zip(pos, labels) if y == 1]
        N = [s for s, y in zip(pos, labels) if y == 0]
        mw = sum((p > n) + 0.5 * (p == n) for p in P for n in N) / (len(P) * len(N))
        self.assertTrue(close(r.json()["auc"], mw), r.json())
        # Keras/TF-style binned AUC of the same column is also one request.
        rb = self.srv.post_json("/v1/auc", {"y_true": labels, "y_score": preds,
                                             "positive_class": 1, "method": "binned"})
        self.assertEqual(rb.status, 200, rb.text())
        self.assertLessEqual(abs(rb.json()["auc"] - mw), 0.05)

    def test_5_weighted_cross_entropy(self):
        """tf.nn.weighted_cross_entropy_with_logits(pos_weight=[.12,.26,.43,.17])
        then reduce_mean; and the softmax version with class weights gathered
        by true label, reduce_mean of the weighted losses."""
        logits = [[0.5, -1.0, 2.0, 0.1], [-0.3, 0.8, -1.5, 1.2], [1.1, 0.0, 0.4, -2.2]]
        targets = [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 1]]
        pw = [0.12, 0.26, 0.43, 0.17]
        got = self.loss({"loss": "binary_crossentropy", "from_logits": True,
                         "y_true": targets, "y_pred": logits, "pos_weight": pw})

        def wce(x, z, q):  # TensorFlow's documented stable form
            l = 1 + (q - 1) * z
            return (1 - z) * x + l * (math.log1p(math.exp(-abs(x))) + max(-x, 0.0))

        terms = [wce(logits[i][j], targets[i][j], pw[j]) for i in range(3) for j in range(4)]
        self.assertTrue(close(got["loss"], sum(terms) / len(terms)), got)

        cw = [1.0, 2.0, 3.0, 0.5]
        y = [2, 0, 3]
        got = self.loss({"loss": "sparse_categorical_crossentropy", "from_logits": True,
                         "y_true": y, "y_pred": logits, "class_weight": cw,
                         "reduction": "sum_over_batch_size"})
        want = sum(-log_softmax(logits[i])[y[i]] * cw[y[i]] for i in range(3)) / 3
        self.assertTrue(close(got["loss"], want), got)
        # A (true, predicted) cost matrix is the question's general case.
        cm = [[0, 1, 1, 1], [2, 0, 1, 1], [5, 5, 0, 1], [1, 1, 1, 0]]
        got = self.loss({"loss": "sparse_categorical_crossentropy", "from_logits": True,
                         "y_true": y, "y_pred": logits, "cost_matrix": cm, "reduction": "sum"})
        argmax = [max(range(4), key=lambda c: logits[i][c]) for i in range(3)]
        want = sum(-log_softmax(logits[i])[y[i]] * cm[y[i]][argmax[i]] for i in range(3))
        self.assertTrue(close(got["loss"], want), got)

    def test_6_kl_with_na_rows_masked(self):
        """KL divergence summed over samples, rows whose label is the n/a
        class [1, 0, 0] weighted 0: sample_weight = 1 - y[:, 0]."""
        p = [[0.0, 0.3, 0.7], [1.0, 0.0, 0.0], [0.0, 0.9, 0.1]]
        q = [[0.2, 0.2, 0.6], [0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]
        sw = [1 - row[0] for row in p]
        got = self.loss({"loss": "kl_divergence", "reduction": "sum",
                         "y_true": p, "y_pred": q, "sample_weight": sw})

        def kl(a, b):
            return sum(clip(x, EPS, 1) * math.log(clip(x, EPS, 1) / clip(y, EPS, 1))
                       for x, y in zip(a, b))

        want = sum(kl(a, b) * w for a, b, w in zip(p, q, sw))
        self.assertTrue(close(got["loss"], want), got)


if __name__ == "__main__":
    unittest.main()
