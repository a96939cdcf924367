#!/usr/bin/python3
"""Generates tests/data/auc_extra.jsonl: extra /v1/auc request/expected-reply
cases computed by a reference implementation of docs/API.md's formulas
(a Python module with reply_auc, numpy + scikit-learn, kept outside this
repository).

OFFLINE ONLY: the product's tests read the committed .jsonl and never run
this script (it needs python3-numpy and python3-sklearn). Re-run with
    /usr/bin/python3 tests/data/gen_auc_extra.py path/to/ref.py
Cases cover combinations the public vectors do not: weights with
multi-label and binned, PR micro, from_logits one-vs-rest, positive_class
with PR, small max_fpr, heavy ties, num_thresholds 2/3/1000, every tensor
encoding, and sketch (exact while the distinct scores fit: error_bound 0).
"""
import base64
import importlib.util
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) < 2:
    sys.exit("usage: %s path/to/ref.py" % sys.argv[0])
REF = sys.argv[1]
spec = importlib.util.spec_from_file_location("ref", REF)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

rng = np.random.default_rng(20261128)
cases = []


def add(name, req, expect=None):
    if expect is None:
        expect = ref.reply_auc(req)
    cases.append({"name": name, "endpoint": "/v1/auc", "request": req, "expect": expect})


def binary(n, shift=1.0, ties=None):
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + shift * y
    s = 1 / (1 + np.exp(-s))
    if ties:
        s = np.round(s * ties) / ties
    return y, s


def weights(n):
    return np.round(rng.uniform(0, 3, n), 3)


def ovr(n, c):
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), y] += 1.0
    return y, z


def multilabel(n, c):
    y = rng.integers(0, 2, (n, c))
    s = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.2 * y)))
    return y, s


L = lambda a: a.tolist()

# weights + multi-label + binned, every summation and curve
y, s = multilabel(240, 3)
w = weights(240)
for summ in ("interpolation", "minoring", "majoring"):
    for curve in ("roc", "pr"):
        add(f"ml_w_binned_{curve}_{summ}", {"y_true": L(y), "y_score": L(s), "sample_weight": L(w),
                                             "method": "binned", "curve": curve,
                                             "summation_method": summ})
add("ml_w_binned_weighted", {"y_true": L(y), "y_score": L(s), "sample_weight": L(w),
                             "method": "binned", "average": "weighted"})
add("ml_w_exact_weighted_pr", {"y_true": L(y), "y_score": L(s), "sample_weight": L(w),
                               "average": "weighted", "curve": "pr"})
add("ml_binned_micro_w", {"y_true": L(y), "y_score": L(s), "sample_weight": L(w),
                          "method": "binned", "average": "micro"})

# PR micro
add("ml_pr_micro_w", {"y_true": L(y), "y_score": L(s), "sample_weight": L(w), "curve": "pr",
                      "average": "micro"})
yo, zo = ovr(300, 4)
po = np.exp(ref.log_softmax(zo, -1))
add("ovr_pr_micro", {"y_true": L(yo), "y_score": L(po), "curve": "pr", "average": "micro"})
add("ovr_pr_micro_binned", {"y_true": L(yo), "y_score": L(po), "curve": "pr", "average": "micro",
                            "method": "binned", "num_thresholds": 50})

# from_logits one-vs-rest: softmax across classes changes exact AUC
for avg in ("macro", "weighted", "micro", "none"):
    add(f"ovr_logits_exact_{avg}", {"y_true": L(yo), "y_score": L(zo), "from_logits": True,
                                    "average": avg})
add("ovr_logits_binned_w", {"y_true": L(yo), "y_score": L(zo), "from_logits": True,
                            "method": "binned", "sample_weight": L(weights(300))})
add("ml_logits_exact", {"y_true": L(y), "y_score": L(np.log(s / (1 - s))), "from_logits": True})
add("ml_logits_binned_pr", {"y_true": L(y), "y_score": L(np.log(s / (1 - s))),
                            "from_logits": True, "method": "binned", "curve": "pr"})

# positive_class + PR
y2 = rng.integers(0, 2, 200)
z2 = rng.normal(size=(200, 2))
z2[:, 1] += 0.8 * y2
p2 = np.exp(ref.log_softmax(z2, -1))
add("pc_pr_exact", {"y_true": L(y2), "y_score": L(p2), "positive_class": 1, "curve": "pr"})
add("pc0_pr_binned", {"y_true": L(y2), "y_score": L(p2), "positive_class": 0, "curve": "pr",
                      "method": "binned"})
add("pc_logits_roc", {"y_true": L(y2), "y_score": L(z2), "positive_class": 1,
                      "from_logits": True})

# max_fpr small, weighted, ties
yb, sb = binary(1500)
wb = weights(1500)
for f in (0.001, 0.01, 0.02, 0.3):
    add(f"max_fpr_{f}", {"y_true": L(yb), "y_score": L(sb), "max_fpr": f})
add("max_fpr_w_ties", {"y_true": L(yb), "y_score": L(np.round(sb, 1)), "max_fpr": 0.05,
                       "sample_weight": L(wb)})

# heavy ties
yt, st = binary(800, ties=5)
wt = weights(800)
add("ties_exact_roc", {"y_true": L(yt), "y_score": L(st)})
add("ties_exact_pr_w", {"y_true": L(yt), "y_score": L(st), "curve": "pr", "sample_weight": L(wt)})
add("ties_binned_t3", {"y_true": L(yt), "y_score": L(st), "method": "binned", "num_thresholds": 3})
add("ties_binned_t5_pr", {"y_true": L(yt), "y_score": L(st), "method": "binned",
                          "num_thresholds": 5, "curve": "pr"})
add("all_tied", {"y_true": L(yt), "y_score": [0.5] * 800})

# num_thresholds 2 / 3 / 1000
for t in (2, 3, 1000):
    for curve in ("roc", "pr"):
        add(f"binned_t{t}_{curve}", {"y_true": L(yb), "y_score": L(sb), "method": "binned",
                                      "num_thresholds": t, "curve": curve,
                                      "sample_weight": L(wb)})
# scores exactly on thresholds (k / (n-1))
ye = rng.integers(0, 2, 400)
se = rng.integers(0, 11, 400) / 10.0
add("binned_on_thresholds_t11", {"y_true": L(ye), "y_score": L(se), "method": "binned",
                                 "num_thresholds": 11})
add("binned_on_thresholds_t21_pr", {"y_true": L(ye), "y_score": L(se), "method": "binned",
                                    "num_thresholds": 21, "curve": "pr"})

# encodings: {shape, data} and float32 b64
s32 = sb.astype(np.float32)
add("b64_float32_exact", {"y_true": {"shape": [1500], "data": L(yb)},
                          "y_score": {"shape": [1500], "dtype": "float32",
                                      "b64": base64.b64encode(s32.tobytes()).decode()}},
    ref.reply_auc({"y_true": L(yb), "y_score": L(s32.astype(np.float64))}))
add("shape_data_ml", {"y_true": {"shape": list(y.shape), "data": L(y.ravel())},
                      "y_score": {"shape": list(s.shape), "data": L(s.ravel())}})

# a multi-label column with one class: per_class null, averaged over the rest
y1 = y.copy()
y1[:, 1] = 1
add("ml_one_class_column", {"y_true": L(y1), "y_score": L(s)})
add("ml_one_class_column_w", {"y_true": L(y1), "y_score": L(s), "average": "weighted",
                              "sample_weight": L(w)})

# sketch: exact while the distinct scores fit -> equals exact ROC, bound 0
e = ref.reply_auc({"y_true": L(yb), "y_score": L(sb), "sample_weight": L(wb)})
e["error_bound"] = 0.0
add("sketch_exact_w", {"y_true": L(yb), "y_score": L(sb), "sample_weight": L(wb),
                       "method": "sketch"}, e)
e = ref.reply_auc({"y_true": L(yt), "y_score": L(st)})
e["error_bound"] = 0.0
add("sketch_ties", {"y_true": L(yt), "y_score": L(st), "method": "sketch"}, e)
e = ref.reply_auc({"y_true": L(yt), "y_score": L(st), "curve": "pr"})
e["error_bound"] = 0.0
add("sketch_ties_pr", {"y_true": L(yt), "y_score": L(st), "method": "sketch", "curve": "pr"}, e)
e = ref.reply_auc({"y_true": L(yo), "y_score": L(po), "average": "macro"})
add("sketch_ovr_macro", {"y_true": L(yo), "y_score": L(po), "method": "sketch"}, e)

with open(os.path.join(HERE, "auc_extra.jsonl"), "w") as f:
    for c in cases:
        f.write(json.dumps(c) + "\n")
print(f"wrote {len(cases)} cases")
