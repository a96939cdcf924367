"""PyTorch / Lightning hooks that post batches to lossd streams.

    from lossd_client import Client
    from lossd_client.torch import LossdHook, LossdTrainHook
    c = Client(url)
    val = LossdHook(c, {"name": "val", "from_logits": True,
                        "loss": {"loss": "binary_crossentropy", "from_logits": True}})
    train = LossdTrainHook(c, {"name": "train", "loss": {"loss": "cross_entropy"}})

    # Lightning: trainer = Trainer(callbacks=[val, train]), and in the module
    def validation_step(self, batch, i):
        x, y = batch
        val.update(self(x), y)                       # as a TorchMetrics metric
    def training_step(self, batch, i):
        x, y = batch
        logits = self(x)
        train.update(logits, y, step=self.global_step)
        return F.cross_entropy(logits, y)

    # a plain loop (DDP or not): the same calls, and at the end of a pass
    for x, y in val_loader:
        val.update(model(x), y)
    metrics = val.compute(reset=True)    # rank 0: {"lossd_auc": ..., ...}; others None

Predictions and targets are given explicitly, as to a TorchMetrics metric;
what validation_step returns is not looked at (pass extract=callable(outputs,
batch) -> (target, preds) to post from the outputs instead). Nothing here
raises into the training loop: failures are logged on the "lossd_client"
logger and counted in hook.failures; strict=True raises them.

Distributed (DDP, torch.distributed with any backend): every rank posts its
shard to the one stream (created on rank 0, its id broadcast); at the end
of a validation (or training) epoch every rank meets at a barrier, rank 0
records a checkpoint with reset (the reading, kept in the stream's history
at the trainer's global_step, and the emptying in one step; read + reset
on a server without checkpoints), logs it, and the value is broadcast so that
pl_module.log gets the same number on every rank (Lightning's monitors,
EarlyStopping and ModelCheckpoint, need it everywhere). log_fn and .history
are rank 0's only. Rank from the trainer (global_rank), torch.distributed,
or RANK / LOCAL_RANK (see _callbacks.distributed_rank).

The classes subclass lightning's (or pytorch_lightning's) Callback when one
is importable and are plain classes otherwise; torch itself is never
imported here (tensors are converted through .detach()/.cpu()/.numpy()).
"""

try:
    from lightning.pytorch.callbacks import Callback as _Base
except ImportError:
    try:
        from pytorch_lightning.callbacks import Callback as _Base
    except ImportError:
        _Base = object

from ._callbacks import StreamMetric, _torch_dist

__all__ = ["LossdHook", "LossdTrainHook", "LIGHTNING_AVAILABLE", "default_extract"]

LIGHTNING_AVAILABLE = _Base is not object

_PRED_KEYS = ("y_pred", "preds", "pred", "logits", "probs", "y_score", "scores", "output")
_TRUE_KEYS = ("y_true", "target", "targets", "labels", "label", "y")


def _pick(d, keys):
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def default_extract(outputs, batch):
    """(y_true, y_out) from a step's outputs and batch, for extract=.

    outputs: a dict with a prediction key (y_pred, preds, logits, probs, ...)
    and optionally a target key (y_true, target, labels, ...), or a
    (y_pred, y_true) pair. A missing target is taken from the batch:
    batch[1] of an (x, y, ...) sequence or a target key of a dict batch.
    Anything else (None, a scalar loss) is a ValueError, which the hook
    counts as a failure.
    """
    y_out = y_true = None
    if isinstance(outputs, dict):
        y_out, y_true = _pick(outputs, _PRED_KEYS), _pick(outputs, _TRUE_KEYS)
    elif isinstance(outputs, (tuple, list)) and len(outputs) == 2:
        y_out, y_true = outputs
    if y_true is None:
        if isinstance(batch, dict):
            y_true = _pick(batch, _TRUE_KEYS)
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            y_true = batch[1]
    if y_out is None or y_true is None:
        raise ValueError("cannot find predictions and targets in the step's outputs/batch "
                         "(got %s); call hook.update(preds, target) instead"
                         % type(outputs).__name__)
    return y_true, y_out


class _Hook(StreamMetric, _Base):
    """StreamMetric plus the Lightning plumbing both hooks share."""

    def __init__(self, client_or_stream, stream_config=None, *, extract=None,
                 reset_each_epoch=True, **kw):
        _Base.__init__(self)
        StreamMetric.__init__(self, client_or_stream, stream_config, **kw)
        self.extract = extract
        self.reset_each_epoch = reset_each_epoch
        self.epochs = 0

    def _bind(self, trainer):
        """Takes the rank from a Lightning trainer when there is one, and
        creates or shares the stream (a collective step with DDP)."""
        if trainer is not None and self._rank is None and hasattr(trainer, "global_rank"):
            if _torch_dist() is None:
                self._rank = int(getattr(trainer, "global_rank", 0) or 0)
                self._world = int(getattr(trainer, "world_size", 1) or 1)
        self.setup()

    def _from_outputs(self, trainer, outputs, batch, step):
        if self.extract is None or getattr(trainer, "sanity_checking", False):
            return
        pair = self.guard("extract", self.extract, outputs, batch)
        if pair is not None:
            self.update(pair[1], pair[0], step=step)

    def _end(self, trainer, pl_module, epoch):
        if getattr(trainer, "sanity_checking", False):
            return None
        step = getattr(trainer, "global_step", None)
        metrics = self.compute(reset=self.reset_each_epoch, step=step,
                               label="epoch-%d" % epoch)
        dist = _torch_dist()
        if dist is not None and self.world_size > 1 and self._barrier is None:
            box = [metrics]
            self.guard("broadcast", dist.broadcast_object_list, box, 0)
            metrics = box[0]
        if metrics is None:
            return None
        if self.is_rank_zero and self.history:
            self.history[-1]["epoch"] = epoch
        log = getattr(pl_module, "log", None)
        if callable(log):
            for k, v in metrics.items():
                self.guard("pl_module.log", log, k, v)
        return metrics

    def _epoch(self, trainer):
        e = getattr(trainer, "current_epoch", None)
        return self.epochs if e is None else int(e)


class LossdHook(_Hook):
    """Validation metric: every rank posts its batches with update(preds,
    target); each validation epoch's reading lands in pl_module.log,
    log_fn and .history (rank 0).

    client_or_stream, stream_config, field, transform, strict, rank,
    world_size, barrier, prefix, log_fn: see StreamMetric.
    extract: optional callable(outputs, batch) -> (target, preds), to post
      from what validation_step returns (default_extract understands the
      usual dicts and pairs); without it the batch-end hook posts nothing.
    reset_each_epoch: empty the stream after reading it at each epoch end
      (and at the first epoch's start), so each reading is one epoch's.
    """

    def on_validation_epoch_start(self, trainer, pl_module):
        self._bind(trainer)
        if self.epochs == 0 and self.reset_each_epoch and not getattr(
                trainer, "sanity_checking", False):
            self.reset()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        self._from_outputs(trainer, outputs, batch, None)

    def on_validation_epoch_end(self, trainer, pl_module):
        if getattr(trainer, "sanity_checking", False):
            return
        self._end(trainer, pl_module, self._epoch(trainer))
        self.epochs += 1


class LossdTrainHook(_Hook):
    """Training-step metric: update(preds, target, step=global_step) from
    training_step posts each batch (with "step" for the stream's step
    series where the server has it, docs/API.md section 7); at each training
    epoch's end the running reading (the epoch's loss, accuracy, AUC) is
    logged with the prefix "lossd_train_" by default.

    extract: optional callable(outputs, batch) -> (target, preds) used by
      on_train_batch_end (then step is the trainer's global_step).
    """

    def __init__(self, client_or_stream, stream_config=None, *, prefix="lossd_train_", **kw):
        super().__init__(client_or_stream, stream_config, prefix=prefix, **kw)

    def on_train_epoch_start(self, trainer, pl_module):
        self._bind(trainer)
        if self.epochs == 0 and self.reset_each_epoch:
            self.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._from_outputs(trainer, outputs, batch, getattr(trainer, "global_step", None))

    def on_train_epoch_end(self, trainer, pl_module):
        self._end(trainer, pl_module, self._epoch(trainer))
        self.epochs += 1

