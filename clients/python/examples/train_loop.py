#!/usr/bin/env python3
"""Train a tiny logistic regression and evaluate each epoch with lossd.

Pure Python (no numpy needed): synthetic 2-feature data, plain SGD. After
each epoch the validation batches are posted to a lossd stream, which
answers with the AUC and the binary cross-entropy of everything it was sent
- the pattern a real training loop (or many workers of one) would use.

    python3 examples/train_loop.py --url http://127.0.0.1:8080
"""

import argparse
import math
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lossd_client import Client  # noqa: E402


def make_data(n, rng):
    """Points around two centres; the label is drawn from a logistic model."""
    rows = []
    for _ in range(n):
        x = (rng.gauss(0, 1), rng.gauss(0, 1))
        p = 1 / (1 + math.exp(-(2.0 * x[0] - 1.5 * x[1] + 0.3)))
        rows.append((x, 1 if rng.random() < p else 0))
    return rows


def predict(w, b, x):
    z = w[0] * x[0] + w[1] * x[1] + b
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def train_epoch(w, b, rows, lr, rng):
    rng.shuffle(rows)
    for x, y in rows:
        g = predict(w, b, x) - y
        w[0] -= lr * g * x[0]
        w[1] -= lr * g * x[1]
        b -= lr * g
    return w, b


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("LOSSD_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("LOSSD_TOKEN"))
    ap.add_argument("--stream", default="example-val", help="the stream's name")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--delete", action="store_true", help="delete the stream at the end")
    args = ap.parse_args(argv)

    rng = random.Random(7)
    train, val = make_data(1000, rng), make_data(400, rng)
    w, b = [0.0, 0.0], 0.0

    client = Client(args.url, token=args.token)
    val_stream = client.stream(name=args.stream, method="sketch",
                               loss={"loss": "binary_crossentropy"})

    for epoch in range(args.epochs):
        w, b = train_epoch(w, b, train, lr=0.05 / (1 + epoch), rng=rng)
        val_stream.reset()
        for i in range(0, len(val), args.batch):
            chunk = val[i:i + args.batch]
            val_stream.update([y for _, y in chunk],
                              y_pred=[predict(w, b, x) for x, _ in chunk])
        r = val_stream.result()
        print("epoch %d auc=%.4f loss=%.4f count=%d"
              % (epoch, r["auc"], r["loss"], r["count"]))

    if args.delete:
        val_stream.delete()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
