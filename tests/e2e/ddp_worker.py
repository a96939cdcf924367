"""One rank of test_ddp_hooks.py's training run (not a test by itself).

    python3 ddp_worker.py RANK WORLD INIT_FILE LOSSD_URL OUT_JSON

Trains a logistic regression with DistributedDataParallel (gloo, CPU) on
a fixed synthetic data set, each rank on its half. Through the hooks of
lossd_client.torch only: LossdTrainHook gets every training batch's logits
with the step, LossdHook every validation batch's, and each epoch ends
with the hooks' own compute (barrier, rank 0 reads, resets). Next to that
the rank keeps what torch says of the same numbers, and rank 0 gathers the
whole data's logits and targets and writes both sides to OUT_JSON for the
test to compare. Nothing here asserts: the test does.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

from lossd_client import Client  # noqa: E402
from lossd_client.torch import LossdHook, LossdTrainHook  # noqa: E402

N_TRAIN, N_VAL, BATCH, EPOCHS = 512, 384, 32, 2


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([1.5, -2.0, 0.5, 1.0])
    p = torch.sigmoid(x @ w + 0.2)
    y = (torch.rand(n, generator=g) < p).float()
    return x, y


def main():
    rank, world, init_file, url, out = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                        sys.argv[4], sys.argv[5])
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    xt, yt = data(N_TRAIN, 1)
    xv, yv = data(N_VAL, 2)
    # this rank's shard: every world-th row (DistributedSampler's split)
    xt, yt, xv, yv = xt[rank::world], yt[rank::world], xv[rank::world], yv[rank::world]

    client = Client(url, retries=3, backoff=0.05)
    bce = {"loss": "binary_crossentropy", "from_logits": True}
    val = LossdHook(client, {"name": "ddp-val", "method": "exact", "from_logits": True,
                             "loss": bce}, strict=True)
    train = LossdTrainHook(client, {"name": "ddp-train", "method": "exact",
                                    "from_logits": True, "loss": bce}, strict=True)
    mine = {"epochs": []}
    step = 0
    for epoch in range(EPOCHS):
        trainer = None  # a plain loop: the hooks take the rank from torch.distributed
        train.on_train_epoch_start(trainer, None)
        loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of losses, rows
        for i in range(0, len(yt), BATCH):
            x, y = xt[i:i + BATCH], yt[i:i + BATCH]
            logits = model(x).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            train.update(logits, y, step=step)
            loss_sum += torch.tensor([float(F.binary_cross_entropy_with_logits(
                logits.double(), y.double(), reduction="sum")), len(y)], dtype=torch.float64)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        train_metrics = train.compute(reset=True, step=step, label="train-%d" % epoch)
        dist.all_reduce(loss_sum)

        val.on_validation_epoch_start(None, None)
        with torch.no_grad():
            logits = torch.cat([model(xv[i:i + BATCH]).squeeze(1)
                                for i in range(0, len(yv), BATCH)])
            for i in range(0, len(yv), BATCH):
                val.update(logits[i:i + BATCH], yv[i:i + BATCH])
        val_metrics = val.compute(reset=True, step=step, label="epoch-%d" % epoch)
        parts_l = [torch.zeros_like(logits) for _ in range(world)]
        parts_y = [torch.zeros_like(yv) for _ in range(world)]
        dist.all_gather(parts_l, logits)
        dist.all_gather(parts_y, yv)
        if rank == 0:
            all_l, all_y = torch.cat(parts_l).double(), torch.cat(parts_y).double()
            mine["epochs"].append({
                "lossd_train": train_metrics, "lossd_val": val_metrics,
                "torch_train_loss": float(loss_sum[0] / loss_sum[1]),
                "torch_train_rows": int(loss_sum[1]),
                "val_logits": all_l.tolist(), "val_y": all_y.tolist(),
                "torch_val_loss": float(F.binary_cross_entropy_with_logits(all_l, all_y)),
                "torch_val_accuracy": float(((all_l > 0).double() == all_y).double().mean()),
            })
        else:
            mine["epochs"].append({"lossd_train": train_metrics, "lossd_val": val_metrics})
    mine.update(rank=rank, failures=val.failures + train.failures,
                step_supported=train.step_supported, val_history=val.history,
                checkpoint_supported=val.checkpoint_supported, steps=step,
                val_stream=val.stream.id, train_stream=train.stream.id)
    with open(out, "w") as f:
        json.dump(mine, f)
    dist.barrier()
    # torch 1.13's gloo process group can deadlock in its destructor at
    # interpreter exit (seen under gdb: ~ProcessGroupGloo, reached from the
    # DDP Reducer's destructor, joins a gloo thread that waits for the GIL the
    # exiting main thread holds). The results are written and every rank has
    # passed the barrier, so leave without the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
