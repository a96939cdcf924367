"""PyTorch's loss names on /v1/loss (docs/API.md section 2, aliases), each against
the PyTorch function of that name on the same numbers (float64 both sides).

cross_entropy (class ids with the class axis 1, the default ignore_index
-100, weight=, label_smoothing; probability targets), nll_loss,
bce, bce_with_logits (pos_weight), mse, mae, smooth_l1 (beta), kl_div
(log_target): the reply's loss for reduction mean / sum / none equals
torch.nn.functional's (kl_div's mean is PyTorch's "batchmean" for 2-D
inputs), and every reply names the canonical loss in loss_name. A
from_logits that contradicts the alias, beta elsewhere than smooth_l1 and
log_target elsewhere than kl_div are 422 bad_option.

Skips, saying so, when torch is missing (Debian: python3-torch).
"""

import math
import unittest

from lossd_harness import Server

try:
    import torch
    import torch.nn.functional as F
    MISSING = None
except ImportError as e:
    MISSING = "needs PyTorch (apt-get install python3-torch): %s" % e


def flat(t):
    t = t.detach().double()
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


@unittest.skipIf(MISSING, MISSING)
class Aliases(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.g = torch.Generator().manual_seed(7)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def loss(self, body, status=200):
        r = self.srv.post_json("/v1/loss", body)
        self.assertEqual(r.status, status, r.text())
        return r.json()

    def close(self, got, want, what):
        if isinstance(want, torch.Tensor) and want.dim() > 0:
            got_t = torch.tensor(got, dtype=torch.float64)
            self.assertEqual(tuple(got_t.shape), tuple(want.shape), what)
            self.assertTrue(torch.allclose(got_t, want.double(), rtol=1e-9, atol=1e-12),
                            "%s: %s != %s" % (what, got_t, want))
            return
        want = float(want)
        self.assertTrue(math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12),
                        "%s: %r != %r" % (what, got, want))

    def check(self, alias, canonical, y_true, y_pred, torch_fn, extra=None, reductions=None):
        for red, tred in (reductions or {"mean": "mean", "sum": "sum", "none": "none"}).items():
            body = dict(extra or {}, loss=alias, y_true=flat(y_true), y_pred=flat(y_pred),
                        reduction=red)
            r = self.loss(body)
            self.assertEqual(r["loss_name"], canonical, alias)
            want = torch_fn(tred)
            if red == "none":
                self.close(r["per_position"], want, "%s none" % alias)
            else:
                self.close(r["loss"], want, "%s %s" % (alias, red))

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.g, dtype=torch.float64)

    def test_cross_entropy_class_ids(self):
        x = self.randn(12, 5) * 2
        y = torch.randint(0, 5, (12,), generator=self.g)
        y[3] = -100  # PyTorch's default ignore_index
        y[7] = -100
        self.check("cross_entropy", "sparse_categorical_crossentropy", y, x,
                   lambda red: F.cross_entropy(x, y, reduction=red))
        # (N, C, T): the class axis is 1, as in PyTorch
        x3 = self.randn(4, 3, 6)
        y3 = torch.randint(0, 3, (4, 6), generator=self.g)
        self.check("cross_entropy", "sparse_categorical_crossentropy", y3, x3,
                   lambda red: F.cross_entropy(x3, y3, reduction=red))
        w = torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0], dtype=torch.float64)
        self.check("cross_entropy", "sparse_categorical_crossentropy", y, x,
                   lambda red: F.cross_entropy(x, y, weight=w, reduction=red),
                   extra={"class_weight": w.tolist()}, reductions={"mean": "mean", "sum": "sum"})
        self.check("cross_entropy", "sparse_categorical_crossentropy", y, x,
                   lambda red: F.cross_entropy(x, y, label_smoothing=0.1, reduction=red),
                   extra={"label_smoothing": 0.1}, reductions={"mean": "mean", "sum": "sum"})
        r = self.loss({"loss": "cross_entropy", "y_true": flat(y), "y_pred": flat(x)})
        self.assertEqual(r["ignored"], 2)

    def test_cross_entropy_probabilities(self):
        x = self.randn(10, 4)
        p = torch.softmax(self.randn(10, 4), dim=1)
        self.check("cross_entropy", "categorical_crossentropy", p, x,
                   lambda red: F.cross_entropy(x, p, reduction=red))

    def test_nll_loss(self):
        logp = torch.log_softmax(self.randn(9, 6), dim=1)
        y = torch.randint(0, 6, (9,), generator=self.g)
        y[0] = -100
        self.check("nll_loss", "sparse_categorical_crossentropy", y, logp,
                   lambda red: F.nll_loss(logp, y, reduction=red))

    def test_bce_and_bce_with_logits(self):
        p = torch.rand(7, 3, generator=self.g, dtype=torch.float64) * 0.9 + 0.05
        t = (torch.rand(7, 3, generator=self.g) < 0.5).double()
        self.check("bce", "binary_crossentropy", t, p,
                   lambda red: F.binary_cross_entropy(p, t, reduction=red))
        z = self.randn(7, 3) * 3
        self.check("bce_with_logits", "binary_crossentropy", t, z,
                   lambda red: F.binary_cross_entropy_with_logits(z, t, reduction=red))
        pw = torch.tensor([1.0, 2.5, 0.5], dtype=torch.float64)
        self.check("bce_with_logits", "binary_crossentropy", t, z,
                   lambda red: F.binary_cross_entropy_with_logits(z, t, pos_weight=pw,
                                                                  reduction=red),
                   extra={"pos_weight": pw.tolist()}, reductions={"sum": "sum"})

    def test_regression(self):
        a, b = self.randn(5, 4), self.randn(5, 4)
        self.check("mse", "mean_squared_error", a, b,
                   lambda red: F.mse_loss(b, a, reduction=red))
        self.check("mae", "mean_absolute_error", a, b,
                   lambda red: F.l1_loss(b, a, reduction=red))
        for beta in (None, 0.5, 2.0):
            extra = {} if beta is None else {"beta": beta}
            self.check("smooth_l1", "huber", a, b,
                       lambda red: F.smooth_l1_loss(b, a, reduction=red, beta=beta or 1.0),
                       extra=extra)

    def test_kl_div(self):
        logq = torch.log_softmax(self.randn(6, 5), dim=1)
        p = torch.softmax(self.randn(6, 5) * 2, dim=1)
        p[1, 2] = 0.0  # 0 * log 0 = 0, no clipping
        p[1] /= p[1].sum()
        red = {"mean": "batchmean", "sum": "sum"}
        self.check("kl_div", "kl_divergence", p, logq,
                   lambda r: F.kl_div(logq, p, reduction=r), reductions=red)
        none = self.loss({"loss": "kl_div", "y_true": flat(p), "y_pred": flat(logq),
                          "reduction": "none"})
        self.close(none["per_position"], F.kl_div(logq, p, reduction="none").sum(dim=1),
                   "kl_div none (per position)")
        logp = torch.log_softmax(self.randn(6, 5), dim=1)
        self.check("kl_div", "kl_divergence", logp, logq,
                   lambda r: F.kl_div(logq, logp, reduction=r, log_target=True),
                   extra={"log_target": True}, reductions=red)

    def test_canonical_names_and_refusals(self):
        r = self.loss({"loss": "binary_crossentropy", "y_true": [0, 1], "y_pred": [0.3, 0.6]})
        self.assertEqual(r["loss_name"], "binary_crossentropy")
        for body, pointer in (
                ({"loss": "cross_entropy", "from_logits": False}, "/from_logits"),
                ({"loss": "bce", "from_logits": True}, "/from_logits"),
                ({"loss": "kl_div", "from_logits": True}, "/from_logits"),
                ({"loss": "mse", "beta": 0.5}, "/beta"),
                ({"loss": "smooth_l1", "beta": 0}, "/beta"),
                ({"loss": "smooth_l1", "delta": 2.0}, "/delta"),
                ({"loss": "binary_crossentropy", "log_target": True}, "/log_target")):
            body = dict(body, y_true=[0, 1], y_pred=[[0.3, 0.7], [0.6, 0.4]]
                        if "cross" in body["loss"] or "kl" in body["loss"] else [0.3, 0.6])
            p = self.srv.post_json("/v1/loss", body).problem()
            self.assertEqual((p["status"], p["code"], p.get("pointer")),
                             (422, "bad_option", pointer), body)
        heads = self.loss({"heads": [
            {"loss": "mse", "y_true": [1.0, 2.0], "y_pred": [1.5, 2.5]},
            {"loss": "bce", "y_true": [0, 1], "y_pred": [0.2, 0.9]}]})
        self.assertEqual([h["loss_name"] for h in heads["heads"]],
                         ["mean_squared_error", "binary_crossentropy"])


if __name__ == "__main__":
    unittest.main()
