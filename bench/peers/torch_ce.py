#!/usr/bin/python3
"""PyTorch's losses on the shapes bench_loss measures: the peer for lossd.

Prints one JSON line per case and thread count, the same format as the C
benchmarks (see bench/bench_util.h): GB/s of inputs read (logits for cross
entropy; logits + targets for binary CE), median of --runs runs after a
warm-up, with the relative error of the float32 result against PyTorch's own
float64 evaluation. Cases and ids match bench_loss.c:

  ce/32768x1000, ce/8192x32000     F.cross_entropy(logits, target)
  ce/32x512x1000                   (B, T, V) logits with the class axis moved
                                   to 1 (logits.permute(0, 2, 1)), as PyTorch
                                   requires; "torch_flat" is the same loss on
                                   logits.view(-1, V), which users also write
  ce/32x1000x512_axis1             contiguous (B, V, T) logits
  ce/262144x10                     a small vocabulary
  bce/1000000x8                    F.binary_cross_entropy_with_logits with
                                   pos_weight per column
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def emit(id_, impl, metric, value, **extra):
    d = {"id": id_, "impl": impl, "metric": metric, "value": round(value, 6)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def timed(fn, runs):
    fn()  # warm-up
    secs = []
    out = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        out = out.item()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs), min(secs), out


def logits(shape, gen):
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * 3.0).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    runs = min(a.runs, 3) if a.smoke else a.runs
    threads = [int(t) for t in a.threads.split(",")]
    gen = torch.Generator().manual_seed(1234)

    if a.smoke:
        ce = [("ce/512x1000", (512, 1000)), ("ce/16x32000", (16, 32000))]
        btv, bvt = (4, 64, 100), (4, 100, 64)
        small, bce = ("ce/4096x10", (4096, 10)), ("bce/10000x8", (10000, 8))
    else:
        ce = [("ce/32768x1000", (32768, 1000)), ("ce/8192x32000", (8192, 32000))]
        btv, bvt = (32, 512, 1000), (32, 1000, 512)
        small, bce = ("ce/262144x10", (262144, 10)), ("bce/1000000x8", (1000000, 8))

    cases = []  # (id, impl, fn, reference fn, bytes)
    for id_, shape in ce + [small]:
        x = logits(shape, gen)
        y = torch.randint(0, shape[1], (shape[0],), generator=gen)
        cases.append((id_, "torch", lambda x=x, y=y: F.cross_entropy(x, y),
                      lambda x=x, y=y: F.cross_entropy(x.double(), y), x.numel() * 4))
    x = logits(btv, gen)
    y = torch.randint(0, btv[2], btv[:2], generator=gen)
    id_ = "ce/%dx%dx%d" % btv
    cases.append((id_, "torch", lambda x=x, y=y: F.cross_entropy(x.permute(0, 2, 1), y),
                  lambda x=x, y=y: F.cross_entropy(x.double().permute(0, 2, 1), y), x.numel() * 4))
    cases.append((id_, "torch_flat",
                  lambda x=x, y=y: F.cross_entropy(x.view(-1, btv[2]), y.view(-1)),
                  lambda x=x, y=y: F.cross_entropy(x.double().view(-1, btv[2]), y.view(-1)),
                  x.numel() * 4))
    x = logits(bvt, gen)
    y = torch.randint(0, bvt[1], (bvt[0], bvt[2]), generator=gen)
    cases.append(("ce/%dx%dx%d_axis1" % bvt, "torch", lambda x=x, y=y: F.cross_entropy(x, y),
                  lambda x=x, y=y: F.cross_entropy(x.double(), y), x.numel() * 4))
    x = logits(bce[1], gen)
    t = (torch.rand(bce[1], generator=gen) < 0.3).float()
    pw = 0.5 + 0.5 * torch.arange(bce[1][1], dtype=torch.float32)
    cases.append((bce[0], "torch",
                  lambda x=x, t=t, pw=pw: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw),
                  lambda x=x, t=t, pw=pw: F.binary_cross_entropy_with_logits(
                      x.double(), t.double(), pos_weight=pw.double()),
                  (x.numel() + t.numel()) * 4))

    for id_, impl, fn, ref, nbytes in cases:
        if a.only and a.only not in id_:
            continue
        refv = None
        for nt in threads:
            torch.set_num_threads(nt)
            with torch.no_grad():
                med, best, val = timed(fn, runs)
                if refv is None:
                    refv = ref().item()
            rel = abs(val - refv) / abs(refv)
            emit("%s/t%d" % (id_, nt), impl, "GB/s", nbytes / med / 1e9,
                 rel_err=float("%.3g" % rel), loss=val, ms=round(med * 1e3, 3),
                 best=round(nbytes / best / 1e9, 4))
            print("torch_ce: %s/t%d %s %.3f GB/s" % (id_, nt, impl, nbytes / med / 1e9),
                  file=sys.stderr)


if __name__ == "__main__":
    main()
