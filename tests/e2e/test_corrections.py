"""Regression tests for the conformance corrections of API.md sections 2-3,
over HTTP against the real binary: each case is one a differential check
against PyTorch, scikit-learn and Keras' formulas once found answered wrong.

- distribution targets: a position weighs its sample weight (times the cost
  factor), never sum_c w_c y_c; an all-zero target row is counted;
- binary losses: predicted positive iff p > 0.5 (logit > 0), in /v1/loss
  and in a stream's loss_detail;
- f1 = 2 correct / (predicted + support), null only when both are 0;
- a "sum" over no counted position is 0, a "mean" over none is null.

Expected numbers are written out from the formulas (math only, no numpy).
"""

import math
import unittest

from lossd_harness import Server

REL = 1e-9


def close(a, b, rel=REL):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


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


if __name__ == "__main__":
    unittest.main()
