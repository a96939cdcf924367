"""PyTorch / Lightning hook that posts validation batches to a lossd stream.

    from lossd_client import Client
    from lossd_client.torch import LossdHook
    hook = LossdHook(Client(url), stream_config={"loss": {"loss": "cross_entropy..."}})
    trainer = lightning.Trainer(callbacks=[hook])        # Lightning
    # or, in a plain loop:
    hook.on_validation_epoch_start(None, model)
    for i, (x, y) in enumerate(val_loader):
        hook.on_validation_batch_end(None, model, model(x), (x, y), i)
    hook.on_validation_epoch_end(None, model)   # hook.history[-1]["lossd_auc"]

The methods have Lightning's Callback signatures. The class subclasses
lightning's (or pytorch_lightning's) Callback when one is importable and is a
plain class otherwise; torch itself is never imported (tensors are converted
through their own .detach()/.cpu()/.numpy() methods).

Each batch becomes one update whose batch_id is derived from this hook's run
id, the validation run, the dataloader, the batch index and the process rank,
so a retried post is applied once and the ranks of a DDP job add up in one
stream. At the end of a validation epoch the stream's AUC and loss are logged
with pl_module.log (when it has one), passed to log_fn, and appended to
.history.

Resetting at each validation epoch start happens on rank 0 only; in a
multi-process job, prefer a fresh stream per run or reset_each_epoch=False if
ranks may start their validation far apart.
"""

try:
    from lightning.pytorch.callbacks import Callback as _Base
except ImportError:
    try:
        from pytorch_lightning.callbacks import Callback as _Base
    except ImportError:
        _Base = object

from ._callbacks import StreamBinding, metrics_from_result

__all__ = ["LossdHook", "LIGHTNING_AVAILABLE", "default_extract"]

LIGHTNING_AVAILABLE = _Base is not object

_PRED_KEYS = ("y_pred", "preds", "pred", "logits", "probs", "y_score", "scores", "output")
_TRUE_KEYS = ("y_true", "target", "targets", "labels", "label", "y")


def _pick(d, keys):
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def default_extract(outputs, batch):
    """(y_true, y_out) from what validation_step returned and the batch.

    outputs: a dict with a prediction key (y_pred, preds, logits, probs, ...)
    and optionally a target key (y_true, target, labels, ...); a (y_pred,
    y_true) pair; or the prediction tensor alone. A missing target is taken
    from the batch: batch[1] of an (x, y, ...) sequence or a target key of a
    dict batch.
    """
    y_out = y_true = None
    if isinstance(outputs, dict):
        y_out, y_true = _pick(outputs, _PRED_KEYS), _pick(outputs, _TRUE_KEYS)
    elif isinstance(outputs, (tuple, list)) and len(outputs) == 2:
        y_out, y_true = outputs
    else:
        y_out = outputs
    if y_true is None:
        if isinstance(batch, dict):
            y_true = _pick(batch, _TRUE_KEYS)
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            y_true = batch[1]
    if y_out is None or y_true is None:
        raise ValueError("LossdHook cannot find predictions and targets in the "
                         "validation outputs/batch; pass extract=callable(outputs, batch)")
    return y_true, y_out


def _host(t):
    """A tensor on the host, in a dtype numpy can hold (bfloat16/half -> float32)."""
    if hasattr(t, "detach"):
        t = t.detach()
        if hasattr(t, "is_floating_point") and t.is_floating_point() and hasattr(t, "float"):
            t = t.float()
        if hasattr(t, "cpu"):
            t = t.cpu()
    return t


class LossdHook(_Base):
    """Post each validation batch to a lossd stream; log AUC and loss per epoch.

    client_or_stream: a Client (a stream is created with stream_config on
      first use) or an existing Stream.
    extract: callable(outputs, batch) -> (y_true, y_out); default_extract by default.
    transform: optional callable applied to y_out before posting (e.g. torch.sigmoid).
    field: "y_pred" or "y_score" (default: y_pred when the stream has a loss).
    log_fn: optional callable(metrics_dict) called at each epoch end.
    reset_each_epoch: reset the stream when a validation epoch starts.
    on_error: "warn" (default: training carries on) or "raise".
    """

    def __init__(self, client_or_stream, stream_config=None, *, extract=None,
                 transform=None, field=None, log_fn=None, reset_each_epoch=True,
                 prefix="lossd_", on_error="warn"):
        super().__init__()
        self.binding = StreamBinding(client_or_stream, stream_config, field, on_error)
        self.extract = extract or default_extract
        self.transform = transform
        self.log_fn = log_fn
        self.reset_each_epoch = reset_each_epoch
        self.prefix = prefix
        self.history = []
        self.validation_runs = 0
        self.last_result = None

    @property
    def stream(self):
        return self.binding.stream

    @staticmethod
    def _rank(trainer):
        return int(getattr(trainer, "global_rank", 0) or 0)

    def on_validation_epoch_start(self, trainer, pl_module):
        self.validation_runs += 1
        if self.reset_each_epoch and self._rank(trainer) == 0:
            self.binding.guard("reset", lambda: self.binding.stream.reset())

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        if getattr(trainer, "sanity_checking", False):
            return
        y_true, y_out = self.extract(outputs, batch)
        if self.transform is not None:
            y_out = self.transform(y_out)
        batch_id = "%s-v%d-d%d-b%d-r%d" % (self.binding.run_id, self.validation_runs,
                                          dataloader_idx, batch_idx, self._rank(trainer))
        self.binding.guard("update", self.binding.update, _host(y_true), _host(y_out),
                           batch_id=batch_id)

    def on_validation_epoch_end(self, trainer, pl_module):
        if getattr(trainer, "sanity_checking", False):
            return
        result = self.binding.guard("result", lambda: self.binding.stream.result())
        if result is None:
            return
        self.last_result = result
        metrics = metrics_from_result(result, self.prefix)
        epoch = getattr(trainer, "current_epoch", self.validation_runs - 1)
        self.history.append(dict(metrics, epoch=epoch))
        log = getattr(pl_module, "log", None)
        if callable(log):
            for k, v in metrics.items():
                log(k, v)
        if self.log_fn is not None:
            self.log_fn(dict(metrics))
