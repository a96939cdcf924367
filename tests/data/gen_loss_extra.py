#!/usr/bin/python3
"""Generates tests/data/loss_extra.jsonl: held-out-style /v1/loss cases.

OFFLINE ONLY. The product's tests read the committed .jsonl and never run
this script. It needs numpy and a reference implementation of docs/API.md's
formulas (a Python module with reply_loss / reply_auc, numpy + scikit-learn,
kept outside this repository), neither of which the build depends on.

    /usr/bin/python3 tests/data/gen_loss_extra.py path/to/ref.py > tests/data/loss_extra.jsonl

Every case is {"name", "endpoint": "/v1/loss", "request", "expect"} like
conformance.jsonl; "expect" is ref.reply_loss(request) with NaN/Inf turned
into null (the API never sends NaN). Seeded, so reruns give the same file.
"""
import base64
import importlib.util
import json
import math
import sys

import numpy as np

if len(sys.argv) < 2:
    sys.exit("usage: %s path/to/ref.py" % sys.argv[0])
REF = sys.argv[1]
spec = importlib.util.spec_from_file_location("ref", REF)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

rng = np.random.default_rng(20261128)
cases = []


def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return None if (math.isnan(v) or math.isinf(v)) else v
    if isinstance(v, np.integer):
        return int(v)
    return v


def nested(a):
    return np.asarray(a).tolist()


def flat(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "data": a.reshape(-1).tolist()}


def b64(a, dtype):
    a = np.asarray(a).astype({"float32": "<f4", "float64": "<f8", "int32": "<i4",
                              "int64": "<i8", "uint8": "u1"}[dtype])
    return {"shape": list(a.shape), "dtype": dtype,
            "b64": base64.b64encode(a.tobytes()).decode()}


def f32(a):
    """Round to float32 so every encoding carries the same value."""
    return np.asarray(a, np.float32).astype(np.float64)


def add(name, req):
    exp = clean(ref.reply_loss(json.loads(json.dumps(req))))
    cases.append({"name": name, "endpoint": "/v1/loss", "request": req, "expect": exp})


def logits(*shape, scale=3.0):
    return f32(rng.normal(0, scale, shape))


def probs(*shape, axis=-1, zeros=False):
    p = rng.random(shape) ** 2
    if zeros:
        p[rng.random(shape) < 0.2] = 0.0
        p = np.moveaxis(p, axis, -1)
        p[..., 0] += 0.05  # no row sums to 0
        p = np.moveaxis(p, -1, axis)
    return f32(p)


def labels(C, *shape):
    return rng.integers(0, C, shape)


def dist(C, *shape):
    d = rng.random(shape + (C,)) ** 3
    return f32(d / d.sum(-1, keepdims=True))


def onehot(C, *shape):
    return np.eye(C)[labels(C, *shape)]


def weights(*shape):
    return f32(rng.random(shape) * 2)


# ---- sparse categorical cross-entropy ------------------------------------------------
for red in ("mean", "sum", "sum_over_batch_size", "none"):
    B, V, T = 3, 7, 4
    y = labels(V, B, T)
    y[rng.random((B, T)) < 0.25] = -100
    add(f"sparse_BVT_axis1_ignore_{red}",
        {"loss": "sparse_categorical_crossentropy", "y_true": nested(y),
         "y_pred": flat(logits(B, V, T)), "from_logits": True, "axis": 1,
         "ignore_class": -100, "reduction": red})

B, T, V = 2, 5, 6
y = labels(V, B, T)
y[0, :2] = -100
add("sparse_BTV_ignore_index_sw", {
    "loss": "sparse_categorical_crossentropy", "y_true": b64(y, "int64"),
    "y_pred": b64(logits(B, T, V), "float32"), "from_logits": True,
    "ignore_index": -100, "sample_weight": nested(weights(B)), "reduction": "mean"})

add("sparse_BTV_sw_rank2_none", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(V, B, T)),
    "y_pred": nested(logits(B, T, V)), "from_logits": True,
    "sample_weight": nested(weights(B, T)), "reduction": "none", "confusion_matrix": True})

N, C = 12, 5
add("sparse_ls_cw_ignore", {
    "loss": "sparse_categorical_crossentropy",
    "y_true": nested(np.where(rng.random(N) < 0.2, 4, labels(4, N))),
    "y_pred": nested(logits(N, C)), "from_logits": True, "label_smoothing": 0.15,
    "class_weight": nested(weights(C) + 0.1), "ignore_class": 4, "reduction": "sum"})

add("sparse_probs_ls_sobs", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(C, N)),
    "y_pred": nested(probs(N, C, zeros=True)), "label_smoothing": 0.1,
    "reduction": "sum_over_batch_size"})

add("sparse_cost_matrix_sw", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(C, N)),
    "y_pred": nested(probs(N, C)), "cost_matrix": nested(weights(C, C)),
    "sample_weight": nested(weights(N)), "reduction": "mean", "confusion_matrix": True})

add("sparse_cost_cw_logits_axis0", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(C, N)),
    "y_pred": nested(logits(C, N)), "from_logits": True, "axis": 0,
    "cost_matrix": nested(weights(C, C)), "class_weight": nested(weights(C)),
    "reduction": "sum"})

add("sparse_trailing_one", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(C, N)[:, None]),
    "y_pred": nested(logits(N, C)), "from_logits": True,
    "sample_weight": nested(weights(N))})

add("sparse_uint8_labels_f64", {
    "loss": "sparse_categorical_crossentropy", "y_true": b64(labels(C, 4, 3), "uint8"),
    "y_pred": b64(probs(4, 3, C), "float64"), "per_class": False})

add("sparse_f32_b64_large", {
    "loss": "sparse_categorical_crossentropy", "y_true": b64(labels(50, 64), "int32"),
    "y_pred": b64(logits(64, 50, scale=5), "float32"), "from_logits": True})

ext = logits(6, 4)
ext[0] = [1e4, -1e4, 0, 5]
ext[1] = [-1e4, 1e4, 1e4, -1e4]
ext[2] = [-1e4, -1e4, -1e4, 1e4]
add("sparse_extreme_logits", {
    "loss": "sparse_categorical_crossentropy", "y_true": [0, 0, 3, 1, 2, 3],
    "y_pred": nested(ext), "from_logits": True, "reduction": "sum"})

add("sparse_probs_exact_0_1", {
    "loss": "sparse_categorical_crossentropy", "y_true": [0, 1, 2, 2],
    "y_pred": [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]})

for red in ("mean", "sum_over_batch_size"):
    add(f"sparse_all_ignored_{red}", {
        "loss": "sparse_categorical_crossentropy", "y_true": [-1, -1, -1],
        "y_pred": nested(logits(3, 4)), "from_logits": True, "ignore_class": -1,
        "reduction": red})

add("sparse_zero_weights_mean_null", {
    "loss": "sparse_categorical_crossentropy", "y_true": [0, 1],
    "y_pred": nested(logits(2, 3)), "from_logits": True, "sample_weight": [0.0, 0.0]})

nanp = logits(5, 4)
nanp[2, 1] = np.nan
add("sparse_nan_propagate", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(4, 5)),
    "y_pred": b64(nanp, "float64"), "from_logits": True, "nan_policy": "propagate"})

add("sparse_scalar_sample_weight", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(3, 7)),
    "y_pred": nested(logits(7, 3)), "from_logits": True, "sample_weight": 2.5,
    "reduction": "sum"})

# ---- categorical cross-entropy -------------------------------------------------------
add("categorical_ls_cw_logits", {
    "loss": "categorical_crossentropy", "y_true": nested(onehot(C, N)),
    "y_pred": nested(logits(N, C)), "from_logits": True, "label_smoothing": 0.2,
    "class_weight": nested(weights(C) + 0.2)})

add("categorical_soft_probs_sw_sum", {
    "loss": "categorical_crossentropy", "y_true": nested(dist(C, N)),
    "y_pred": nested(probs(N, C, zeros=True)), "sample_weight": nested(weights(N)),
    "reduction": "sum", "confusion_matrix": True})

add("categorical_rank3_axis1", {
    "loss": "categorical_crossentropy",
    "y_true": flat(np.moveaxis(onehot(4, 2, 3), -1, 1)),
    "y_pred": flat(logits(2, 4, 3)), "from_logits": True, "axis": 1,
    "reduction": "none"})

add("categorical_cost_ignore", {
    "loss": "categorical_crossentropy", "y_true": nested(onehot(C, N)),
    "y_pred": nested(logits(N, C)), "from_logits": True, "ignore_class": 0,
    "cost_matrix": nested(weights(C, C)), "reduction": "sum_over_batch_size"})

# ---- categorical focal ---------------------------------------------------------------
add("cat_focal_probs_cw_ls", {
    "loss": "categorical_focal_crossentropy", "y_true": nested(onehot(C, N)),
    "y_pred": nested(probs(N, C)), "class_weight": nested(weights(C)),
    "label_smoothing": 0.1, "alpha": 0.5, "gamma": 1.5})

add("cat_focal_logits_gamma0_sum", {
    "loss": "categorical_focal_crossentropy", "y_true": nested(dist(4, 9)),
    "y_pred": nested(logits(9, 4)), "from_logits": True, "gamma": 0.0,
    "reduction": "sum", "sample_weight": nested(weights(9))})

# ---- KL ------------------------------------------------------------------------------
add("kl_logits_cw", {
    "loss": "kl_divergence", "y_true": nested(dist(C, N)), "y_pred": nested(logits(N, C)),
    "from_logits": True, "class_weight": nested(weights(C))})

add("kl_probs_with_zeros_sobs", {
    "loss": "kl_divergence", "y_true": nested(onehot(3, 8)),
    "y_pred": nested(probs(8, 3, zeros=True)), "reduction": "sum_over_batch_size"})

add("kl_rank3_axis1_none", {
    "loss": "kl_divergence", "y_true": nested(np.moveaxis(dist(3, 2, 4), -1, 1)),
    "y_pred": nested(np.moveaxis(logits(2, 4, 3), -1, 1)), "from_logits": True,
    "axis": 1, "reduction": "none"})

# ---- binary ----------------------------------------------------------------------------
N, K = 10, 3
add("binary_pos_weight_cols_sw_probs", {
    "loss": "binary_crossentropy", "y_true": nested(rng.integers(0, 2, (N, K))),
    "y_pred": nested(probs(N, K)), "pos_weight": nested(weights(K) + 0.5),
    "sample_weight": nested(weights(N))})

add("binary_pos_weight_logits_sum", {
    "loss": "binary_crossentropy", "y_true": flat(rng.integers(0, 2, (N, K))),
    "y_pred": flat(logits(N, K)), "from_logits": True, "pos_weight": nested(weights(K)),
    "reduction": "sum"})

add("binary_soft_targets_extreme_logits", {
    "loss": "binary_crossentropy", "y_true": [[0.0, 1.0, 0.3, 0.7]],
    "y_pred": [[1e4, -1e4, 30.0, -40.0]], "from_logits": True, "reduction": "none"})

add("binary_probs_exact_edges_sobs", {
    "loss": "binary_crossentropy", "y_true": [1, 0, 1, 0, 1],
    "y_pred": [1.0, 0.0, 0.0, 1.0, 0.5], "reduction": "sum_over_batch_size"})

add("binary_rank1_sw_b64", {
    "loss": "binary_crossentropy", "y_true": b64(rng.integers(0, 2, 16), "uint8"),
    "y_pred": b64(logits(16), "float32"), "from_logits": True,
    "sample_weight": b64(weights(16), "float32")})

add("binary_focal_probs_balanced", {
    "loss": "binary_focal_crossentropy", "y_true": nested(rng.integers(0, 2, (N, K))),
    "y_pred": nested(probs(N, K)), "apply_class_balancing": True, "alpha": 0.4,
    "gamma": 3.0})

add("binary_focal_probs_default", {
    "loss": "binary_focal_crossentropy", "y_true": nested(rng.integers(0, 2, (N, K))),
    "y_pred": nested(probs(N, K)), "reduction": "sum"})

add("binary_focal_logits_sw_none", {
    "loss": "binary_focal_crossentropy", "y_true": nested(rng.integers(0, 2, (4, 2))),
    "y_pred": nested(logits(4, 2)), "from_logits": True, "sample_weight": nested(weights(4)),
    "reduction": "none"})

# ---- regression --------------------------------------------------------------------------
for name in ("mean_squared_error", "mean_absolute_error", "huber"):
    y, p = f32(rng.normal(0, 2, (5, 3))), f32(rng.normal(0, 2, (5, 3)))
    add(f"{name}_sum_sw_trailing1", {
        "loss": name, "y_true": nested(y), "y_pred": nested(p), "reduction": "sum",
        "sample_weight": nested(weights(5)[:, None])})
    add(f"{name}_none", {"loss": name, "y_true": flat(y), "y_pred": flat(p),
                         "reduction": "none"})
for delta in (0.5, 2.0):
    add(f"huber_delta_{delta}", {
        "loss": "huber", "y_true": nested(f32(rng.normal(0, 2, 20))),
        "y_pred": nested(f32(rng.normal(0, 2, 20))), "delta": delta,
        "reduction": "sum_over_batch_size"})

# ---- gaussian mixture ------------------------------------------------------------------------
Ng, Z, Kg = 4, 9, 2


def gmm_pred(n, k):
    a = rng.normal(1, 0.5, (n, k))
    b = rng.random((n, k))
    c = rng.random((n, k)) * 0.2 + 0.01
    return f32(np.stack([a, b, c], -1).reshape(n, 3 * k))


add("gmm_mse_x_sw_sum", {
    "loss": "gaussian_mixture", "y_true": nested(f32(rng.random((Ng, Z)))),
    "y_pred": nested(gmm_pred(Ng, Kg)), "x": nested(f32(np.linspace(-0.5, 1.5, Z))),
    "error": "mse", "sample_weight": nested(weights(Ng)), "reduction": "sum"})

add("gmm_mae_default_grid_sobs", {
    "loss": "gaussian_mixture", "y_true": flat(f32(rng.random((Ng, 6)))),
    "y_pred": flat(gmm_pred(Ng, 3)), "reduction": "sum_over_batch_size"})

# ---- heads -------------------------------------------------------------------------------------
add("heads_weighted_mixed", {"heads": [
    {"loss": "sparse_categorical_crossentropy", "y_true": nested(labels(6, 8)),
     "y_pred": nested(logits(8, 6)), "from_logits": True},
    {"loss": "binary_crossentropy", "y_true": nested(rng.integers(0, 2, (8, 2))),
     "y_pred": nested(probs(8, 2))},
    {"loss": "huber", "y_true": nested(f32(rng.normal(0, 1, 8))),
     "y_pred": nested(f32(rng.normal(0, 1, 8))), "delta": 0.7, "reduction": "sum"}],
    "head_weights": [0.5, 2.0, 1.25]})

add("heads_bvt_three_times", {"heads": [
    {"loss": "sparse_categorical_crossentropy", "y_true": nested(labels(6, 4)),
     "y_pred": nested(logits(4, 6)), "from_logits": True} for _ in range(3)]})

# ---- float32 uploads through the vectorized kernels ----------------------------------
B, V, T = 2, 20, 40  # a tile of 32 positions and a tail of 8 per batch row
y = labels(V, B, T)
y[rng.random((B, T)) < 0.2] = -100
add("sparse_f32_b64_BVT_axis1_tiles", {
    "loss": "sparse_categorical_crossentropy", "y_true": b64(y, "int32"),
    "y_pred": b64(logits(B, V, T, scale=4), "float32"), "from_logits": True, "axis": 1,
    "ignore_class": -100, "sample_weight": b64(weights(B), "float32"),
    "reduction": "sum_over_batch_size", "confusion_matrix": True})

add("binary_f32_b64_logits_pos_weight", {
    "loss": "binary_crossentropy", "y_true": b64(rng.integers(0, 2, (60, 5)), "uint8"),
    "y_pred": b64(logits(60, 5, scale=6), "float32"), "from_logits": True,
    "pos_weight": nested(weights(5) + 0.5), "reduction": "sum"})

# ---- more combinations: weights broadcast over rank-3 positions ---------------------------
add("cat_focal_cost_cw_sw", {
    "loss": "categorical_focal_crossentropy", "y_true": nested(onehot(4, 10)),
    "y_pred": nested(logits(10, 4)), "from_logits": True, "class_weight": nested(weights(4)),
    "cost_matrix": nested(weights(4, 4)), "sample_weight": nested(weights(10)),
    "reduction": "sum"})

add("kl_ignore_class_na", {
    "loss": "kl_divergence", "y_true": nested(np.concatenate([dist(3, 6), onehot(3, 3)])),
    "y_pred": nested(probs(9, 3)), "ignore_class": 0, "confusion_matrix": True})

add("categorical_BTC_sw_BT", {
    "loss": "categorical_crossentropy", "y_true": nested(onehot(5, 3, 4)),
    "y_pred": flat(logits(3, 4, 5)), "from_logits": True,
    "sample_weight": nested(weights(3, 4)), "reduction": "sum_over_batch_size"})

add("binary_rank3_sw_B", {
    "loss": "binary_crossentropy", "y_true": nested(rng.integers(0, 2, (3, 4, 2))),
    "y_pred": nested(probs(3, 4, 2)), "sample_weight": nested(weights(3)),
    "reduction": "none"})

add("mse_rank3_sw_BT", {
    "loss": "mean_squared_error", "y_true": nested(f32(rng.normal(0, 1, (2, 3, 4)))),
    "y_pred": nested(f32(rng.normal(0, 1, (2, 3, 4)))), "sample_weight": nested(weights(2, 3))})

add("sparse_sw_broadcast_size1", {
    "loss": "sparse_categorical_crossentropy", "y_true": nested(labels(4, 3, 5)),
    "y_pred": nested(logits(3, 5, 4)), "from_logits": True,
    "sample_weight": nested(weights(1, 5)), "reduction": "sum"})

add("binary_focal_logits_pos_weight_gamma0", {
    "loss": "binary_focal_crossentropy", "y_true": nested(rng.integers(0, 2, (6, 3))),
    "y_pred": nested(logits(6, 3)), "from_logits": True, "gamma": 0.0,
    "pos_weight": nested(weights(3) + 0.5)})

add("heads_with_none_head", {"heads": [
    {"loss": "mean_absolute_error", "y_true": [1.0, 2.0], "y_pred": [1.5, 1.0]},
    {"loss": "binary_crossentropy", "y_true": [1, 0], "y_pred": [0.7, 0.2], "reduction": "sum"}],
    "head_weights": [0.25, 4.0]})

for c in cases:
    print(json.dumps(c, allow_nan=False))
print(f"{len(cases)} cases", file=sys.stderr)
