#!/usr/bin/python3
"""scikit-learn's roc_auc_score at n = 1e6 and 1e7: the peer for lossd's
exact AUC (bench_auc.c measures the same ids with the same data recipe).

Data: labels positive with probability 0.3; scores float32, normal with the
positives shifted by +1 (AUC about 0.76), so there are ties, as in real
float32 model outputs; then the same values as float64 (ids ending _f64),
which is what JSON numbers decode to. Prints JSON lines (see bench/bench_util.h) with
M scores/s = n / median seconds, and the AUC found.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score


def bench_one(y, s, n, name, runs):
    roc_auc_score(y, s)  # warm-up
    secs = []
    auc = None
    for _ in range(runs if n < 5000000 else max(1, runs - 2)):
        t0 = time.perf_counter()
        auc = roc_auc_score(y, s)
        secs.append(time.perf_counter() - t0)
    med = statistics.median(secs)
    print(json.dumps({"id": "auc/exact/%s" % name, "impl": "sklearn", "metric": "M/s",
                      "value": round(n / med / 1e6, 4), "auc": auc,
                      "ms": round(med * 1e3, 2)}), flush=True)
    print("sklearn_auc: n=%s %.2f M scores/s" % (name, n / med / 1e6), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    sizes = [(100000, "1e5")] if a.smoke else [(1000000, "1e6"), (10000000, "1e7")]
    runs = 1 if a.smoke else a.runs
    rng = np.random.default_rng(5)
    for n, name in sizes:
        y = (rng.random(n) < 0.3).astype(np.int32)
        s32 = (rng.standard_normal(n) + y).astype(np.float32)
        for s, suffix in ((s32, ""), (s32.astype(np.float64), "_f64")):
            bench_one(y, s, n, name + suffix, runs)


if __name__ == "__main__":
    main()
