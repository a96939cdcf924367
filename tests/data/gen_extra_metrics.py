#!/usr/bin/python3
"""Generates tests/engine/extra_cases.h: expected perplexity, top-k accuracy
and calibration figures for tests/engine/test_extra.c.

OFFLINE ONLY. The tests compile the committed header and never run this
script (it needs numpy and scikit-learn, which the build does not).

    /usr/bin/python3 tests/data/gen_extra_metrics.py > tests/engine/extra_cases.h
    clang-format -i tests/engine/extra_cases.h

Each expected value comes from its anchor's definition:
  top-k        sklearn.metrics.top_k_accuracy_score (tie-free scores)
  calibration  TorchMetrics' _binning_bucketize + norms l1 / max / l2
               (BinaryCalibrationError, MulticlassCalibrationError),
               re-written here in numpy with sample weights as docs/API.md 9
               defines them; sklearn.calibration.calibration_curve for the
               per-bin means; sklearn.metrics.brier_score_loss (binary)
  perplexity   TorchMetrics Perplexity: exp(mean nll), here weighted
Scores are drawn away from bin edges so the edge conventions (TorchMetrics
puts an inner edge in the lower bin, lossd and sklearn in the upper) do not
matter. Seeded: reruns give the same file.
"""
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, top_k_accuracy_score

rng = np.random.default_rng(20261206)
out = []


def arr(name, v, ctype="double"):
    v = np.asarray(v).ravel()
    body = ", ".join(repr(float(x)) if ctype == "double" else str(int(x)) for x in v)
    out.append("static const %s %s[%d] = {%s};" % (ctype, name, max(len(v), 1), body or "0"))


def away_from_edges(p, bins):
    # nudge values within 1e-6 of an edge b/B
    e = np.round(p * bins) / bins
    close = np.abs(p - e) < 1e-6
    return np.where(close, p + 3e-6, p)


def calib(conf, acc, w, bins):
    """TorchMetrics' binning with weights: per-bin weighted means."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges[1:-1], conf, side="right"), 0, bins - 1)
    W = w.sum()
    ece = mce = ms = 0.0
    bconf = np.full(bins, np.nan)
    bacc = np.full(bins, np.nan)
    cnt = np.zeros(bins, dtype=int)
    for b in range(bins):
        m = idx == b
        cnt[b] = m.sum()
        wb = w[m].sum()
        if wb <= 0:
            continue
        bconf[b] = (w[m] * conf[m]).sum() / wb
        bacc[b] = (w[m] * acc[m]).sum() / wb
        gap = abs(bacc[b] - bconf[b])
        ece += wb / W * gap
        ms += wb / W * gap * gap
        mce = max(mce, gap)
    return ece, mce, np.sqrt(ms), cnt, bconf, bacc


# ---- binary calibration ----------------------------------------------------------
out.append("/* binary: probabilities p, labels y, weights w; B bins */")
bin_cases = []
for ci, (n, bins, weighted) in enumerate([(60, 10, False), (80, 15, True), (50, 4, True)]):
    p = away_from_edges(rng.uniform(0.001, 0.999, n), bins)
    y = (rng.uniform(size=n) < p ** 1.3).astype(float)
    w = rng.uniform(0.2, 3.0, n) if weighted else np.ones(n)
    ece, mce, rms, cnt, bconf, bacc = calib(p, y, w, bins)
    if not weighted:
        # sklearn's calibration_curve returns the means of the non-empty bins
        pt, pp = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        assert np.allclose(pt, bacc[cnt > 0]) and np.allclose(pp, bconf[cnt > 0])
        brier = brier_score_loss(y, p)
    else:
        brier = brier_score_loss(y, p, sample_weight=w)
    arr("bc%d_p" % ci, p)
    arr("bc%d_logit" % ci, np.log(p) - np.log1p(-p))
    arr("bc%d_y" % ci, y)
    arr("bc%d_w" % ci, w)
    arr("bc%d_cnt" % ci, cnt, "int64_t")
    arr("bc%d_conf" % ci, np.nan_to_num(bconf, nan=-1))
    arr("bc%d_acc" % ci, np.nan_to_num(bacc, nan=-1))
    bin_cases.append("{%d, %d, %s, bc%d_p, bc%d_logit, bc%d_y, bc%d_w, bc%d_cnt, bc%d_conf, "
                     "bc%d_acc, %r, %r, %r, %r}" % (n, bins, "true" if weighted else "false",
                                                  *([ci] * 7), ece, mce, rms, brier))
out.append("typedef struct bin_calib_case {\n\tint n, bins;\n\tbool weighted;\n"
           "\tconst double *p, *logit, *y, *w;\n\tconst int64_t *cnt;\n"
           "\tconst double *conf, *acc; /* -1 for an empty bin */\n"
           "\tdouble ece, mce, rmsce, brier;\n} bin_calib_case;")
out.append("static const bin_calib_case bin_calib_cases[] = {\n\t" + ",\n\t".join(bin_cases) + "\n};")


# ---- categorical calibration, top-k, perplexity ----------------------------------------
def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


out.append("/* categorical: logits x (n, C), labels y, weights w */")
cat_cases = []
for ci, (n, C, bins, weighted) in enumerate([(40, 5, 10, False), (64, 7, 15, True),
                                             (30, 3, 6, True)]):
    x = rng.normal(0, 1.8, (n, C))
    for _ in range(50):  # keep the top-label confidences off the bin edges
        p = softmax(x)
        conf = p.max(axis=1)
        e = np.round(conf * bins) / bins
        bad = np.abs(conf - e) < 1e-6
        if not bad.any():
            break
        x[bad, 0] += 1e-3
    p = softmax(x)
    y = rng.integers(0, C, n)
    w = rng.uniform(0.2, 3.0, n) if weighted else np.ones(n)
    conf = p.max(axis=1)
    acc = (p.argmax(axis=1) == y).astype(float)
    ece, mce, rms, cnt, bconf, bacc = calib(conf, acc, w, bins)
    onehot = np.eye(C)[y]
    brier = (w * ((p - onehot) ** 2).sum(axis=1)).sum() / w.sum()
    nll = -np.log(p[np.arange(n), y])
    ppl = np.exp((w * nll).sum() / w.sum())
    ks = [k for k in (1, 2, 3, 5) if k <= C]
    # tie-free scores: sklearn's top_k_accuracy_score is the definition
    topk = [top_k_accuracy_score(y, x, k=k, labels=np.arange(C)) for k in ks]
    # probabilities with clipping, for perplexity from probabilities
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    ppl_prob = np.exp((w * -np.log(pc[np.arange(n), y])).sum() / w.sum())
    arr("cc%d_x" % ci, x)
    arr("cc%d_p" % ci, p)
    arr("cc%d_y" % ci, y)
    arr("cc%d_w" % ci, w)
    arr("cc%d_cnt" % ci, cnt, "int64_t")
    arr("cc%d_conf" % ci, np.nan_to_num(bconf, nan=-1))
    arr("cc%d_acc" % ci, np.nan_to_num(bacc, nan=-1))
    arr("cc%d_ks" % ci, ks, "int64_t")
    arr("cc%d_topk" % ci, topk)
    cat_cases.append("{%d, %d, %d, %s, cc%d_x, cc%d_p, cc%d_y, cc%d_w, cc%d_cnt, cc%d_conf, "
                     "cc%d_acc, %r, %r, %r, %r, %r, %r, %d, cc%d_ks, cc%d_topk}"
                     % (n, C, bins, "true" if weighted else "false", *([ci] * 7), ece, mce,
                        rms, brier, ppl, ppl_prob, len(ks), ci, ci))
out.append("typedef struct cat_case {\n\tint n, C, bins;\n\tbool weighted;\n"
           "\tconst double *x, *p, *y, *w;\n\tconst int64_t *cnt;\n"
           "\tconst double *conf, *acc;\n\tdouble ece, mce, rmsce, brier;\n"
           "\tdouble ppl, ppl_prob; /* from logits; from the probabilities (clipped) */\n"
           "\tint nk;\n\tconst int64_t *ks;\n\tconst double *topk;\n} cat_case;")
out.append("static const cat_case cat_cases[] = {\n\t" + ",\n\t".join(cat_cases) + "\n};")

# ---- categorical cross-entropy with distribution targets: perplexity -------------
n, C = 12, 4
x = rng.normal(0, 1.5, (n, C))
t = rng.dirichlet(np.ones(C), n)
lp = x - x.max(axis=1, keepdims=True)
lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
nll = -(t * lp).sum(axis=1)
w = rng.uniform(0.5, 2, n)
arr("dist_x", x)
arr("dist_t", t)
arr("dist_w", w)
out.append("#define DIST_N %d\n#define DIST_C %d\nstatic const double dist_ppl = %r;"
           % (n, C, float(np.exp((w * nll).sum() / w.sum()))))

print("/*\n * extra_cases.h - GENERATED by tests/data/gen_extra_metrics.py (numpy %s,"
      "\n * scikit-learn 1.2); do not edit. Expected figures for test_extra.c.\n */"
      % np.__version__)
print("#include <stdbool.h>\n#include <stdint.h>\n")
print("\n".join(out))
