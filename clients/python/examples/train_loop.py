#!/usr/bin/env python3
"""Train a tiny logistic regression and watch it in lossd, step by step.

Pure Python (no numpy needed): synthetic 2-feature data, minibatch SGD.
Two streams of one run, tagged {"run": RUN, "split": "train" | "val"}:

- every training step posts its minibatch's predictions with step=N to the
  train stream, so the server keeps the loss and accuracy of each step;
- at each epoch's end the validation batches go to the val stream (also
  with the step), then a checkpoint with reset records the epoch's AUC and
  loss and empties the stream for the next epoch; the train stream is
  checkpointed the same way (its AUC over the epoch's training batches).

Open the dashboard at the printed address: loss and accuracy per step,
AUC per checkpoint, and "Overlay the streams with tag run=RUN" draws
train and val together. The pattern is the one a real training loop (or
many workers of one, posting the same steps) would use.

    python3 examples/train_loop.py --url http://127.0.0.1:8080
"""

import argparse
import math
import os
import random
import sys
import uuid

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


def sgd_step(w, b, chunk, preds, lr):
    """One step of minibatch gradient descent on the mean cross-entropy."""
    n = len(chunk)
    g0 = sum((p - y) * x[0] for (x, y), p in zip(chunk, preds)) / n
    g1 = sum((p - y) * x[1] for (x, y), p in zip(chunk, preds)) / n
    gb = sum(p - y for (_, y), p in zip(chunk, preds)) / n
    return [w[0] - lr * g0, w[1] - lr * g1], b - lr * gb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("LOSSD_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("LOSSD_TOKEN"))
    ap.add_argument("--run", default="example-" + uuid.uuid4().hex[:6],
                    help="the run's name: streams RUN/train and RUN/val, tag run=RUN")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=50, help="training minibatch (one step)")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--delete", action="store_true", help="delete the streams at the end")
    args = ap.parse_args(argv)

    rng = random.Random(7)
    train, val = make_data(1000, rng), make_data(400, rng)
    w, b = [0.0, 0.0], -1.0  # a poor start, so the first steps show the loss falling

    client = Client(args.url, token=args.token)
    loss = {"loss": "binary_crossentropy"}
    streams = {split: client.stream(name="%s/%s" % (args.run, split), method="exact", loss=loss,
                                    tags={"run": args.run, "split": split})
               for split in ("train", "val")}

    step = 0
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(train)
        for i in range(0, len(train), args.batch):
            chunk = train[i:i + args.batch]
            preds = [predict(w, b, x) for x, _ in chunk]  # the forward pass
            streams["train"].update([y for _, y in chunk], y_pred=preds, step=step)
            w, b = sgd_step(w, b, chunk, preds, args.lr)
            step += 1
        for i in range(0, len(val), 100):
            chunk = val[i:i + 100]
            streams["val"].update([y for _, y in chunk],
                                  y_pred=[predict(w, b, x) for x, _ in chunk], step=step)
        label = "epoch-%d" % epoch
        v = streams["val"].checkpoint(step, label=label, reset=True)
        t = streams["train"].checkpoint(step, label=label, reset=True)
        print("epoch %d step %d train_auc=%.4f train_loss=%.4f val_auc=%.4f val_loss=%.4f "
              "val_count=%d" % (epoch, step, t["auc"], t["loss"], v["auc"], v["loss"], v["count"]))

    for split, s in streams.items():
        print("%s stream %s: %s/#stream=%s" % (split, s.id, args.url.rstrip("/"), s.id))
    if args.delete:
        for s in streams.values():
            s.delete()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
