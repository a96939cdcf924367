#!/usr/bin/python3
"""Random differential check of lossd against PyTorch and scikit-learn.

    tests/differential/differential.py [--requests N] [--seed S]
        [--url http://host:port | --bin path/to/lossd] [--stop-after K] [-v]

Draws N random requests (default 3000) over the losses of docs/API.md section 2
and the AUCs of section 3 and the streams of section 4, sends each to
lossd, and compares every number that has an independent reference:

  losses      PyTorch 1.13 in float64: F.cross_entropy (class ids and
              probability targets, class weights, ignore_index, label
              smoothing), F.nll_loss on Keras-clipped probabilities,
              F.binary_cross_entropy(_with_logits) with pos_weight,
              F.kl_div(log_softmax(x), p), mse/l1/huber, and the Keras focal
              formulas written in torch ops; sample weights applied to
              PyTorch's reduction="none" output and reduced as docs/API.md says
  per class   scikit-learn precision_recall_fscore_support (zero_division=0)
              and confusion_matrix, binary predictions p > 0.5
  exact AUC   roc_auc_score (max_fpr too) and average_precision_score on the
              logits themselves (from_logits), or on the log-softmax
              (one-vs-rest), and roc_auc_score(multi_class="ovr") on
              torch.softmax where nothing saturates; macro/weighted/micro
  binned AUC  Keras' AUC formula in numpy, compared in float32
  sketch AUC  |auc - exact| <= error_bound
  streams     exact / binned / sketch streams fed 2-4 batches, against the
              same references over all rows; a loss stream against torch

Random data mixes easy and hard cases: ties, exact 0.5 probabilities and 0
logits, logits around +-40 and +-800 (saturated in double), all-zero and
soft targets, scores on Keras' thresholds (and on their float32 roundings),
float32 base64 tensors, zero weights.

It starts lossd itself (tests/e2e/lossd_harness.py; --bin or $LOSSD_BIN,
default build/server/lossd) unless --url names a running one. Exit status:
0 when every comparison agreed, 1 when some did not (each printed with its
request), 77 when numpy, torch or scikit-learn cannot be imported (after
trying /usr/bin/python3, where Debian's python3-torch, python3-numpy and
python3-sklearn live): ctest reports that as skipped.
"""
import argparse
import base64
import http.client
import json
import math
import os
import sys
import time
import urllib.parse

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEBIAN_PY = "/usr/bin/python3"

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn import metrics as skm
except ImportError as e:  # try Debian's interpreter once, else skip
    if (os.environ.get("LOSSD_DIFF_REEXEC") != "1" and os.path.exists(_DEBIAN_PY)
            and os.path.realpath(sys.executable) != os.path.realpath(_DEBIAN_PY)):
        os.environ["LOSSD_DIFF_REEXEC"] = "1"
        os.execv(_DEBIAN_PY, [_DEBIAN_PY] + sys.argv)
    print("SKIP: the differential check needs numpy, torch and scikit-learn "
          "(Debian: apt-get install python3-numpy python3-torch python3-sklearn): %s" % e)
    sys.exit(77)

torch.set_default_dtype(torch.float64)
EPS = 1e-7
REL_LOSS = 1e-5   # float32 kernels agree with float64 to ~1e-6 per position
REL_AUC = 1e-9


# ---- helpers --------------------------------------------------------------------

def close(a, b, rel):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(b):
        return a is None
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12


def b64_f32(a):
    a = np.asarray(a, np.float32)
    return {"shape": list(a.shape), "dtype": "float32",
            "b64": base64.b64encode(a.tobytes()).decode()}


def as_f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


def enc(rng, a, allow_f32=True):
    """The request encoding of a float64 array: nested lists, or (sometimes)
    float32 base64, in which case the reference must use as_f32(a)."""
    if allow_f32 and rng.random() < 0.2:
        return b64_f32(a), as_f32(a)
    return np.asarray(a).tolist(), np.asarray(a, np.float64)


class Client:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def post(self, path, body):
        data = json.dumps(body).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request("POST", path, body=data,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, json.loads(r.read() or b"null")
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"null")


class Checker:
    def __init__(self, verbose):
        self.verbose = verbose
        self.counts = {}
        self.failures = []
        self.compared = 0

    def case(self, family):
        self.counts[family] = self.counts.get(family, 0) + 1

    def fail(self, family, what, req):
        text = json.dumps(req)
        if len(text) > 1500:
            text = text[:1500] + "..."
        self.failures.append("%s: %s\n    request: %s" % (family, what, text))
        if self.verbose:
            print("FAIL " + self.failures[-1], flush=True)

    def num(self, family, req, name, got, want, rel):
        self.compared += 1
        if not close(got, want, rel):
            self.fail(family, "%s: lossd %r, reference %r" % (name, got, want), req)
            return False
        return True


# ---- losses ----------------------------------------------------------------------

def reduce_(lw, w, red):
    """docs/API.md, lw the weighted losses w l of the counted positions: mean =
    sum(w l) / sum(w), sum, sum_over_batch_size = sum(w l) / count."""
    s = float(lw.sum())
    if red == "sum":
        return s
    if red == "sum_over_batch_size":
        return s / lw.size if lw.size else None
    den = float(w.sum())
    return s / den if den != 0 else None


def check_per_class(ck, fam, req, got, true_cls, pred_cls, C):
    """support/predicted/correct, precision/recall/f1 against scikit-learn."""
    labels = list(range(C))
    p, r, f, sup = skm.precision_recall_fscore_support(
        true_cls, pred_cls, labels=labels, zero_division=0)
    cm = skm.confusion_matrix(true_cls, pred_cls, labels=labels)
    pcs = got.get("per_class")
    if pcs is None or len(pcs) != C:
        ck.fail(fam, "per_class missing or of the wrong length", req)
        return
    for c in labels:
        row = pcs[c]
        predicted = int(cm[:, c].sum())
        if (row["support"], row["predicted"], row["correct"]) != (int(sup[c]), predicted,
                                                                 int(cm[c, c])):
            ck.fail(fam, "class %d counts %r vs sklearn (%d, %d, %d)" % (
                c, (row["support"], row["predicted"], row["correct"]), sup[c], predicted,
                cm[c, c]), req)
            continue
        ck.num(fam, req, "precision[%d]" % c, row["precision"],
               float(p[c]) if predicted else None, 1e-12)
        ck.num(fam, req, "recall[%d]" % c, row["recall"],
               float(r[c]) if sup[c] else None, 1e-12)
        ck.num(fam, req, "f1[%d]" % c, row["f1"],
               float(f[c]) if predicted + sup[c] else None, 1e-12)
    acc = float(np.mean(np.asarray(true_cls) == np.asarray(pred_cls))) if len(true_cls) else None
    if "accuracy" in got:
        ck.num(fam, req, "accuracy", got["accuracy"], acc, 1e-12)


def logits(rng, shape, hard):
    x = rng.normal(size=shape) * rng.choice([0.5, 2.0, 6.0])
    if hard:
        m = rng.random(size=shape)
        x = np.where(m < 0.05, 0.0, x)  # exact ties at 0
        x = np.where((m > 0.05) & (m < 0.1), x + 40.0 * np.sign(x + 1e-9), x)
    return x


def probs_rows(rng, n, C):
    p = rng.random(size=(n, C)) ** rng.choice([1, 3])
    p = np.where(rng.random(size=(n, C)) < 0.1, 0.0, p)
    p[:, 0] += 1e-3  # no all-zero row
    return p


def gen_sparse(rng, ck, cl):
    fam = "sparse_categorical_crossentropy"
    n, C = int(rng.integers(1, 40)), int(rng.integers(2, 9))
    from_logits = rng.random() < 0.6
    layout3 = rng.random() < 0.25
    T = int(rng.integers(1, 5)) if layout3 else 1
    yt = rng.integers(0, C, size=(n, T) if layout3 else (n,))
    req = {"loss": fam, "from_logits": bool(from_logits), "confusion_matrix": True}
    ignore = None
    if rng.random() < 0.3:
        ignore = int(rng.choice([-1, -100, int(rng.integers(0, C))]))
        yt = np.where(rng.random(size=yt.shape) < 0.2, ignore, yt)
        req["ignore_class"] = ignore
    if from_logits:
        x = logits(rng, (n, T, C) if layout3 else (n, C), rng.random() < 0.3)
    else:
        x = probs_rows(rng, n * T, C).reshape((n, T, C) if layout3 else (n, C))
    if layout3 and rng.random() < 0.5:  # PyTorch's (N, C, T) with axis 1
        x = np.moveaxis(x, -1, 1)
        req["axis"] = 1
    req["y_pred"], xr = enc(rng, x)
    req["y_true"] = yt.tolist()
    cw = sw = None
    if rng.random() < 0.4:
        cw = np.round(rng.uniform(0.2, 3, C), 3)
        req["class_weight"] = cw.tolist()
    if rng.random() < 0.3:
        sw = np.round(rng.uniform(0, 2, n), 3)
        req["sample_weight"] = sw.tolist()
    ls = float(rng.choice([0.0, 0.0, 0.1, 0.3]))
    if ls:
        req["label_smoothing"] = ls
    red = str(rng.choice(["mean", "sum", "sum_over_batch_size"]))
    req["reduction"] = red
    st, got = cl.post("/v1/loss", req)
    ck.case(fam)
    if st != 200:
        return ck.fail(fam, "status %d: %r" % (st, got), req)
    # reference: class axis last, positions flattened
    xl = np.moveaxis(xr, 1, -1) if req.get("axis") == 1 else xr
    xl = xl.reshape(-1, C)
    y = yt.reshape(-1)
    ign = ignore if ignore is not None else -10**9
    counted = y != ign
    if from_logits:
        inp = torch.tensor(xl)
    else:
        p = xl / xl.sum(-1, keepdims=True)
        inp = torch.log(torch.tensor(np.clip(p, EPS, 1 - EPS)))
    tgt = torch.tensor(np.where(counted, y, 0))
    wt = torch.tensor(cw) if cw is not None else None
    l = F.cross_entropy(inp, tgt, weight=wt, reduction="none", label_smoothing=ls).numpy()
    wy = cw[np.where(counted, y, 0)] if cw is not None else np.ones(len(y))
    s = np.repeat(sw, T) if sw is not None else np.ones(len(y))
    # PyTorch's reduction="none" output already carries the class weight
    lw, w = (l * s)[counted], (wy * s)[counted]
    want = reduce_(lw, w, red)
    ck.num(fam, req, "loss", got.get("loss"), want, REL_LOSS)
    ck.num(fam, req, "weight_sum", got["weight_sum"], float(w.sum()), 1e-9)
    pred = xl.argmax(-1)
    check_per_class(ck, fam, req, got, y[counted], pred[counted], C)


def gen_categorical(rng, ck, cl):
    fam = str(rng.choice(["categorical_crossentropy", "kl_divergence",
                          "categorical_focal_crossentropy"]))
    n, C = int(rng.integers(1, 40)), int(rng.integers(2, 8))
    from_logits = rng.random() < 0.6
    t = rng.random(size=(n, C)) ** 3
    kind = rng.random()
    if kind < 0.3:  # one-hot
        t = np.eye(C)[rng.integers(0, C, n)]
    elif kind < 0.6:  # soft, not summing to 1
        t = np.round(t, 3)
    else:
        t = t / t.sum(-1, keepdims=True)
    zero = rng.random(size=n) < 0.1
    t[zero] = 0.0  # all-zero rows are counted positions
    x = logits(rng, (n, C), rng.random() < 0.2) if from_logits else probs_rows(rng, n, C)
    req = {"loss": fam, "from_logits": bool(from_logits), "y_true": t.tolist()}
    req["y_pred"], xr = enc(rng, x)
    cw = sw = None
    if rng.random() < 0.4:
        cw = np.round(rng.uniform(0.2, 3, C), 3)
        req["class_weight"] = cw.tolist()
    if rng.random() < 0.3:
        sw = np.round(rng.uniform(0, 2, n), 3)
        req["sample_weight"] = sw.tolist()
    ls = 0.0
    if fam != "kl_divergence" and rng.random() < 0.3:
        ls = 0.2
        req["label_smoothing"] = ls
    red = str(rng.choice(["mean", "sum", "sum_over_batch_size"]))
    req["reduction"] = red
    st, got = cl.post("/v1/loss", req)
    ck.case(fam)
    if st != 200:
        return ck.fail(fam, "status %d: %r" % (st, got), req)
    X, Tt = torch.tensor(xr), torch.tensor(t)
    cwt = torch.tensor(cw) if cw is not None else torch.ones(C)
    if fam == "categorical_crossentropy":
        if from_logits:
            # PyTorch with probability targets: class weights inside the sum
            l = F.cross_entropy(X, Tt, weight=cwt, reduction="none", label_smoothing=ls)
        else:
            p = X / X.sum(-1, keepdim=True)
            lp = torch.log(torch.clamp(p, EPS, 1 - EPS))
            y = Tt * (1 - ls) + ls / C
            l = -(y * lp * cwt).sum(-1)
    elif fam == "kl_divergence":
        p = torch.clamp(Tt, EPS, 1)
        lq = F.log_softmax(X, -1) if from_logits else torch.log(torch.clamp(X, EPS, 1))
        l = (F.kl_div(lq, p, reduction="none") * cwt).sum(-1)
    else:  # Keras' categorical focal: softmax, divide by the sum, clip
        q = F.softmax(X, -1) if from_logits else X
        p = torch.clamp(q / q.sum(-1, keepdim=True), EPS, 1 - EPS)
        y = Tt * (1 - ls) + ls / C
        l = (0.25 * (1 - p) ** 2 * -(y * torch.log(p)) * cwt).sum(-1)
    l = l.numpy()
    w = sw if sw is not None else np.ones(n)
    want = reduce_(l * w, w, red)
    ck.num(fam, req, "loss", got.get("loss"), want, REL_LOSS)
    ck.num(fam, req, "weight_sum", got["weight_sum"], float(w.sum()), 1e-9)
    check_per_class(ck, fam, req, got, t.argmax(-1), xr.argmax(-1), C)


def gen_binary(rng, ck, cl):
    fam = str(rng.choice(["binary_crossentropy", "binary_crossentropy",
                          "binary_focal_crossentropy"]))
    n, K = int(rng.integers(1, 30)), int(rng.integers(1, 5))
    shape = (n, K) if rng.random() < 0.6 else (n,)
    from_logits = rng.random() < 0.6
    if from_logits:
        x = logits(rng, shape, rng.random() < 0.4)
    else:
        x = rng.random(size=shape)
        x = np.where(rng.random(size=shape) < 0.15, 0.5, x)  # exact 0.5
        x = np.where(rng.random(size=shape) < 0.05, 1.0, x)
    y = rng.integers(0, 2, size=shape).astype(float)
    if rng.random() < 0.3:
        y = np.where(rng.random(size=shape) < 0.3, np.round(rng.random(size=shape), 2), y)
    req = {"loss": fam, "from_logits": bool(from_logits), "y_true": y.tolist(),
           "confusion_matrix": True}
    req["y_pred"], xr = enc(rng, x)
    sw = pw = None
    if rng.random() < 0.3:
        sw = np.round(rng.uniform(0, 2, n), 3)
        req["sample_weight"] = sw.tolist()
    if fam == "binary_crossentropy" and rng.random() < 0.3:
        pw = np.round(rng.uniform(0.5, 3, shape[-1] if len(shape) == 2 else 1), 3)
        req["pos_weight"] = pw.tolist() if len(shape) == 2 else float(pw[0])
    red = str(rng.choice(["mean", "sum", "sum_over_batch_size"]))
    req["reduction"] = red
    st, got = cl.post("/v1/loss", req)
    ck.case(fam)
    if st != 200:
        return ck.fail(fam, "status %d: %r" % (st, got), req)
    X, Y = torch.tensor(xr), torch.tensor(y)
    pwt = torch.tensor(pw) if pw is not None else None
    if fam == "binary_crossentropy":
        if from_logits:
            l = F.binary_cross_entropy_with_logits(X, Y, pos_weight=pwt, reduction="none")
        else:
            p = torch.clamp(X, EPS, 1 - EPS)
            lp, l1 = torch.log(p), torch.log(1 - p)
            l = -((pwt if pwt is not None else 1.0) * Y * lp + (1 - Y) * l1)
    else:  # Keras 3: sigmoid first, then the clipped form
        p = torch.clamp(torch.sigmoid(X) if from_logits else X, EPS, 1 - EPS)
        l = -(Y * torch.log(p) + (1 - Y) * torch.log(1 - p))
        pt = Y * p + (1 - Y) * (1 - p)
        l = l * (1 - pt) ** 2
    l = l.numpy()
    w = np.ones(shape) if sw is None else np.broadcast_to(
        sw.reshape((n,) + (1,) * (len(shape) - 1)), shape)
    want = reduce_(l * w, w, red)
    ck.num(fam, req, "loss", got.get("loss"), want, REL_LOSS)
    # per column: positive iff y > 0.5, predicted iff p > 0.5 (logit > 0)
    pos = y > 0.5
    pred = xr > 0 if from_logits else xr > 0.5
    cols = shape[1] if len(shape) == 2 else 1
    P, Q = pos.reshape(-1, cols), pred.reshape(-1, cols)
    acc = float((P == Q).mean())
    ck.num(fam, req, "accuracy", got.get("accuracy"), acc, 1e-12)
    cm = got.get("confusion_matrix")
    want_cm = skm.confusion_matrix(P.reshape(-1), Q.reshape(-1), labels=[False, True]).tolist()
    if cm != want_cm:
        ck.fail(fam, "confusion %r, sklearn %r" % (cm, want_cm), req)
    for c in range(cols):
        row = got["per_class"][c]
        sup, prd = int(P[:, c].sum()), int(Q[:, c].sum())
        cor = int((P[:, c] & Q[:, c]).sum())
        if (row["support"], row["predicted"], row["correct"]) != (sup, prd, cor):
            ck.fail(fam, "column %d counts %r vs (%d, %d, %d)" % (
                c, (row["support"], row["predicted"], row["correct"]), sup, prd, cor), req)
        f1 = skm.f1_score(P[:, c], Q[:, c], zero_division=0)
        ck.num(fam, req, "f1[%d]" % c, row["f1"], float(f1) if sup + prd else None, 1e-12)


def gen_regression(rng, ck, cl):
    fam = str(rng.choice(["mean_squared_error", "mean_absolute_error", "huber"]))
    n = int(rng.integers(1, 50))
    a, b = rng.normal(size=n) * 3, rng.normal(size=n) * 3
    req = {"loss": fam, "y_true": a.tolist()}
    req["y_pred"], br = enc(rng, b)
    delta = float(rng.choice([0.5, 1.0, 2.5]))
    if fam == "huber":
        req["delta"] = delta
    red = str(rng.choice(["mean", "sum"]))
    req["reduction"] = red
    st, got = cl.post("/v1/loss", req)
    ck.case(fam)
    if st != 200:
        return ck.fail(fam, "status %d: %r" % (st, got), req)
    A, B = torch.tensor(a), torch.tensor(br)
    f = {"mean_squared_error": F.mse_loss, "mean_absolute_error": F.l1_loss}.get(fam)
    if f:
        want = float(f(B, A, reduction=red))
    else:
        want = float(F.huber_loss(B, A, delta=delta, reduction=red))
    ck.num(fam, req, "loss", got.get("loss"), want, REL_LOSS)


# ---- AUC -------------------------------------------------------------------------

def sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def log_softmax_keys(x):
    """docs/API.md section 3's one-vs-rest keys: the top class (first max) is
    -log1p(sum of the others' exp(x_j - x_top)), the others (x_j - max) -
    that log1p. With the C library's exp and log1p (Python's math), summed
    in class order: rows whose keys are equal in exact arithmetic are then
    equal here as in lossd (numpy's own vector exp may differ by an ulp,
    which would break such ties differently)."""
    k = np.empty_like(x)
    for r, row in enumerate(x.tolist()):
        m = max(row)
        top = row.index(m)
        rest = 0.0
        for j, v in enumerate(row):
            if j != top:
                rest += math.exp(v - m)
        lse = math.log1p(rest)
        k[r] = [-lse if j == top else (v - m) - lse for j, v in enumerate(row)]
    return k


def keras_auc(y, s, w, n, curve, summation):
    """tf.keras.metrics.AUC on flat y, s: thresholds in double, compared in
    float32 (Keras' AUC formula)."""
    th = np.array([0.0 - EPS] + [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)] + [1.0 + EPS])
    th = th.astype(np.float32)
    above = np.asarray(s, np.float32)[None, :] > th[:, None]
    tp = (above * (y * w)[None, :]).sum(1)
    fp = (above * ((1 - y) * w)[None, :]).sum(1)
    fn = ((~above) * (y * w)[None, :]).sum(1)
    tn = ((~above) * ((1 - y) * w)[None, :]).sum(1)

    def div(a, b):
        return np.where(b != 0, a / np.where(b != 0, b, 1), 0.0)

    if curve == "pr" and summation == "interpolation":
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = div(dtp, np.maximum(dp, 0))
        icpt = tp[1:] - slope * p[1:]
        ratio = np.where((p[:-1] > 0) & (p[1:] > 0), div(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return float(div(slope * (dtp + icpt * np.log(ratio)),
                         np.maximum(tp[1:] + fn[1:], 0)).sum())
    rec = div(tp, tp + fn)
    x, yv = (div(fp, fp + tn), rec) if curve == "roc" else (rec, div(tp, tp + fp))
    h = {"interpolation": (yv[:-1] + yv[1:]) / 2, "minoring": np.minimum(yv[:-1], yv[1:]),
         "majoring": np.maximum(yv[:-1], yv[1:])}[summation]
    return float(((x[:-1] - x[1:]) * h).sum())


def exact(y, s, w, curve, max_fpr=None):
    if len(np.unique(y)) < 2 or (w is not None and (w[y == 1].sum() == 0 or w[y == 0].sum() == 0)):
        return None
    if curve == "roc":
        return float(skm.roc_auc_score(y, s, sample_weight=w, max_fpr=max_fpr))
    return float(skm.average_precision_score(y, s, sample_weight=w))


def auc_scores(rng, y, from_logits, shape):
    """Scores that separate the labels a little, with ties and saturation."""
    z = rng.normal(size=shape) + rng.choice([0.3, 1.0, 3.0]) * y
    if rng.random() < 0.3:
        z = np.round(z * 2) / 2  # ties
    if from_logits:
        r = rng.random()
        if r < 0.3:
            z = z + 40.0  # every probability 1.0 in double
        elif r < 0.4:
            z = z * 3 - 790.0  # every probability 0 in double
        return z
    return sigmoid(z)


def ref_columns(y, s, kind, from_logits, method):
    """Per column (labels, reference scores) as docs/API.md section 3 says."""
    if kind == "binary":
        cols = [(y, s)]
    elif kind == "ovr":
        C = s.shape[1]
        if from_logits:
            s = log_softmax_keys(s) if method != "binned" else np.exp(log_softmax_keys(s))
        cols = [((y == c).astype(float), s[:, c]) for c in range(C)]
    else:
        cols = [(y[:, c], s[:, c]) for c in range(s.shape[1])]
    if from_logits and method == "binned" and kind != "ovr":
        cols = [(a, sigmoid(b)) for a, b in cols]
    return cols


def gen_auc(rng, ck, cl):
    kind = str(rng.choice(["binary", "binary", "ovr", "multi"]))
    method = str(rng.choice(["exact", "exact", "exact", "binned", "sketch"]))
    curve = str(rng.choice(["roc", "pr"]))
    fam = "auc_%s_%s" % (kind, method)
    n = int(rng.integers(4, 80))
    from_logits = rng.random() < 0.5
    C = int(rng.integers(2, 6))
    if kind == "binary":
        y = rng.integers(0, 2, n).astype(float)
        s = auc_scores(rng, y, from_logits, (n,))
    elif kind == "multi":
        y = rng.integers(0, 2, (n, C)).astype(float)
        s = auc_scores(rng, y, from_logits, (n, C))
    else:
        y = rng.integers(0, C, n)
        onehot = np.eye(C)[y]
        s = auc_scores(rng, onehot, True, (n, C))
        if not from_logits:
            s = np.exp(log_softmax_keys(s))
    nt = int(rng.choice([3, 50, 200, 1000]))
    if method == "binned" and kind != "ovr" and not from_logits and rng.random() < 0.4:
        # on Keras' thresholds: their float32 roundings, the doubles and
        # the next double up, where float32 and double comparisons part
        k = rng.integers(0, nt, size=s.shape)
        t = k * 1.0 / (nt - 1)
        v = rng.integers(0, 3, size=s.shape)
        s = np.where(v == 0, as_f32(t), np.where(v == 1, t, np.nextafter(t, 2.0)))
    req = {"y_true": y.tolist(), "curve": curve, "method": method,
           "from_logits": bool(from_logits)}
    req["y_score"], sr = enc(rng, s, allow_f32=not (kind == "ovr" and not from_logits))
    w = None
    if rng.random() < 0.3:
        w = np.round(rng.uniform(0, 2, n), 3)
        req["sample_weight"] = w.tolist()
    average = str(rng.choice(["macro", "weighted", "micro", "none"]))
    if kind != "binary":
        req["average"] = average
    summ = str(rng.choice(["interpolation", "minoring", "majoring"]))
    if method == "binned":
        req["num_thresholds"], req["summation_method"] = nt, summ
    max_fpr = None
    if kind == "binary" and method == "exact" and curve == "roc" and rng.random() < 0.2:
        max_fpr = float(rng.choice([0.1, 0.5, 1.0]))
        req["max_fpr"] = max_fpr
    st, got = cl.post("/v1/auc", req)
    ck.case(fam)
    if st != 200:
        return ck.fail(fam, "status %d: %r" % (st, got), req)
    cols = ref_columns(y, sr, kind, from_logits, method)

    def one(a, b, ww):
        if method == "binned":
            if len(np.unique(a)) < 2:
                return None
            return keras_auc(a, b, ww if ww is not None else np.ones_like(a), nt, curve, summ)
        return exact(a, b, ww, curve, max_fpr)

    per = [one(a, b, w) for a, b in cols]
    if kind == "binary":
        return check_auc(ck, fam, req, got, per[0], method, None)
    if average == "micro":
        a = np.concatenate([c[0] for c in cols])
        b = np.concatenate([c[1] for c in cols])
        want = one(a, b, None if w is None else np.tile(w, len(cols)))
    elif average == "none":
        want = None
    else:
        ok = [(v, c) for v, c in zip(per, cols) if v is not None]
        if not ok:
            want = None
        elif average == "macro":
            want = float(np.mean([v for v, _ in ok]))
        else:
            sup = [float((c[0] * (w if w is not None else 1)).sum()) for _, c in ok]
            want = float(np.average([v for v, _ in ok], weights=sup)) if sum(sup) else None
    check_auc(ck, fam, req, got, want, method, None)
    for k, v in enumerate(per):
        check_auc(ck, fam, req, got["per_class"][k], v, method, "per_class[%d]" % k)
    # a strict cross-check where nothing saturates and nothing ties (a tie in
    # exact arithmetic is decided by the last bit, which a softmax and a
    # log-softmax round differently): sklearn's own one-vs-rest on torch's
    # softmax probabilities
    if (kind == "ovr" and C > 2 and method == "exact" and curve == "roc"
            and average in ("macro", "weighted")
            and w is None and all(v is not None for v in per) and np.abs(sr).max() < 30):
        p = torch.softmax(torch.tensor(sr), -1).numpy() if from_logits else sr
        keys = np.stack([c[1] for c in cols], -1)
        if all(len(np.unique(a[:, c])) == n for a in (p, keys) for c in range(C)):
            want = float(skm.roc_auc_score(y, p, multi_class="ovr", average=average,
                                           labels=list(range(C))))
            ck.num(fam, req, "auc (sklearn ovr)", got["auc"], want, 1e-9)


def check_auc(ck, fam, req, got, want, method, where):
    name = (where + ".auc") if where else "auc"
    a = got.get("auc")
    if method == "sketch":
        b = got.get("error_bound")
        ck.compared += 1
        if (a is None) != (want is None):
            return ck.fail(fam, "%s: lossd %r, sklearn %r" % (name, a, want), req)
        if a is not None and not (abs(a - want) <= b + 1e-9):
            ck.fail(fam, "%s: lossd %r +- %r, sklearn %r" % (name, a, b, want), req)
        return
    ck.num(fam, req, name, a, want, REL_AUC if method == "exact" else 1e-9)


# ---- streams ---------------------------------------------------------------------

def gen_stream(rng, ck, cl):
    method = str(rng.choice(["exact", "binned", "sketch"]))
    kind = str(rng.choice(["binary", "ovr", "multi"]))
    curve = str(rng.choice(["roc", "pr"]))
    from_logits = rng.random() < 0.6
    C = int(rng.integers(2, 5))
    fam = "stream_%s_%s" % (kind, method)
    cfg = {"method": method, "curve": curve, "from_logits": bool(from_logits)}
    if kind != "binary":
        cfg["num_classes"] = C
        cfg["multi_label"] = kind == "multi"
    loss = None
    if kind == "ovr" and from_logits and rng.random() < 0.5:
        loss = "sparse_categorical_crossentropy"
        cfg["loss"] = {"loss": loss}
    elif kind == "binary" and rng.random() < 0.5:
        loss = "binary_crossentropy"
        cfg["loss"] = {"loss": loss}
    st, body = cl.post("/v1/streams", cfg)
    ck.case(fam)
    if st != 201:
        return ck.fail(fam, "create: status %d: %r" % (st, body), cfg)
    sid = body["id"]
    ys, ss, ws = [], [], []
    weighted = rng.random() < 0.3
    for _ in range(int(rng.integers(2, 5))):
        n = int(rng.integers(3, 40))
        if kind == "binary":
            y = rng.integers(0, 2, n).astype(float)
            s = auc_scores(rng, y, from_logits, (n,))
        elif kind == "multi":
            y = rng.integers(0, 2, (n, C)).astype(float)
            s = auc_scores(rng, y, from_logits, (n, C))
        else:
            y = rng.integers(0, C, n)
            s = auc_scores(rng, np.eye(C)[y], True, (n, C))
            if not from_logits:
                s = np.exp(log_softmax_keys(s))
        b = {"y_true": y.tolist(), "y_score": s.tolist()}
        w = np.round(rng.uniform(0, 2, n), 3) if weighted else np.ones(n)
        if weighted:
            b["sample_weight"] = w.tolist()
        st, r = cl.post("/v1/streams/%s/update" % sid, b)
        if st != 200:
            return ck.fail(fam, "update: status %d: %r" % (st, r), {"config": cfg, "batch": b})
        ys.append(y)
        ss.append(s)
        ws.append(w)
    st, got = cl.get("/v1/streams/%s" % sid)
    req = {"config": cfg, "batches": [{"y_true": a.tolist(), "y_score": b.tolist()}
                                      for a, b in zip(ys, ss)]}
    if st != 200:
        return ck.fail(fam, "read: status %d: %r" % (st, got), req)
    y, s = np.concatenate(ys), np.concatenate(ss)
    w = np.concatenate(ws) if weighted else None
    cols = ref_columns(y, s, kind, from_logits, method)
    per = []
    for a, b in cols:
        if method == "binned":
            per.append(keras_auc(a, b, w if w is not None else np.ones_like(a), 200, curve,
                                 "interpolation") if len(np.unique(a)) > 1 else None)
        else:
            per.append(exact(a, b, w, curve))
    if kind == "binary":
        check_auc(ck, fam, req, got, per[0], method, None)
    else:
        ok = [v for v in per if v is not None]
        check_auc(ck, fam, req, got, float(np.mean(ok)) if ok else None, method, None)
    if loss:
        X = torch.tensor(s)
        if loss == "binary_crossentropy":
            Y = torch.tensor(y)
            lv = (F.binary_cross_entropy_with_logits(X, Y, reduction="none") if from_logits
                  else -(Y * torch.log(torch.clamp(X, EPS, 1 - EPS)) +
                         (1 - Y) * torch.log(torch.clamp(1 - X, EPS, 1 - EPS)))).numpy()
            pred, pos = (s > 0 if from_logits else s > 0.5), y > 0.5
            acc = float((pred == pos).mean())
        else:
            lv = F.cross_entropy(X, torch.tensor(y), reduction="none").numpy()
            acc = float((s.argmax(-1) == y).mean())
        ww = w if w is not None else np.ones(len(y))
        ck.num(fam, req, "loss", got.get("loss"), reduce_(lv * ww, ww, "mean"), REL_LOSS)
        ck.num(fam, req, "loss_detail.accuracy", got["loss_detail"].get("accuracy"), acc, 1e-12)
    cl.post("/v1/streams/%s/reset" % sid, {})


# ---- driver ----------------------------------------------------------------------

GENS = [(gen_sparse, 5), (gen_categorical, 4), (gen_binary, 4), (gen_regression, 1),
        (gen_auc, 8), (gen_stream, 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="random cases (default 3000)")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--url", help="a running lossd (else one is started)")
    ap.add_argument("--bin", help="the lossd binary to start (default $LOSSD_BIN or build/)")
    ap.add_argument("--stop-after", type=int, default=20, help="stop after this many failures")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    srv = None
    if a.url:
        url = a.url
    else:
        if a.bin:
            os.environ["LOSSD_BIN"] = os.path.abspath(a.bin)
        os.environ.pop("LOSSD_OPENAPI_JSON", None)  # numbers, not the contract, here
        sys.path.insert(0, os.path.join(_HERE, "..", "e2e"))
        from lossd_harness import Server
        srv = Server()
        srv.__enter__()
        url = "http://127.0.0.1:%d" % srv.port
    cl = Client(url)
    rng = np.random.default_rng(a.seed)
    gens = [g for g, k in GENS for _ in range(k)]
    ck = Checker(a.verbose)
    t0 = time.time()
    requests_before = 0
    try:
        for i in range(a.requests):
            gens[int(rng.integers(0, len(gens)))](rng, ck, cl)
            if len(ck.failures) >= a.stop_after:
                print("stopping after %d failures" % len(ck.failures))
                break
            requests_before = i + 1
    finally:
        if srv is not None:
            srv.__exit__(None, None, None)
    dt = time.time() - t0
    fams = ", ".join("%s %d" % kv for kv in sorted(ck.counts.items()))
    print("differential: %d cases (%s) in %.1f s, %d numbers compared, seed %d; "
          "torch %s, scikit-learn %s, numpy %s" % (
              requests_before, fams, dt, ck.compared, a.seed, torch.__version__,
              __import__("sklearn").__version__, np.__version__))
    for f in ck.failures:
        print("FAIL " + f)
    print("differential: %s (%d disagreements)" % ("FAILED" if ck.failures else "ok",
                                                    len(ck.failures)))
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
