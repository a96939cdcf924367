"""Keras callback that feeds and reads a lossd stream each epoch.

    from lossd_client import Client
    from lossd_client.keras import LossdCallback
    cb = LossdCallback(Client(url), stream_config={"loss": {"loss": "binary_crossentropy"}},
                       validation_data=(x_val, y_val))
    model.fit(x, y, epochs=5,
              callbacks=[cb, keras.callbacks.EarlyStopping(monitor="lossd_auc", mode="max")])

At the end of each epoch it (1) when validation_data is given, predicts it
and posts it in chunks (each worker its own shard), (2) reads the stream
and writes lossd_auc, lossd_loss, lossd_accuracy, lossd_count (an int) and,
for sketch streams, lossd_auc_error_bound into `logs`, then (3) rank 0
records the epoch as a checkpoint with reset (step = the epoch, label
"epoch-N"; read + reset where the server has no checkpoints), so the
stream's history keeps every epoch and the next reading is that epoch's
alone. In a
custom loop, call cb.update(preds, target) for each batch instead of giving
validation_data; the epoch end reads and resets the same way.

Order in callbacks=[...]: Keras hands one `logs` dict to the callbacks in
list order and appends its History callback after all of them, so History
always sees the lossd_* values; EarlyStopping, ModelCheckpoint and
ReduceLROnPlateau monitoring a lossd_* value must come AFTER this callback
in the list (before it, they see the epoch without it and warn that the
monitored metric is missing).

Ranks (MultiWorkerMirroredStrategy and the like): the rank is the model's
distribution strategy's task (its cluster_resolver's task_id; a "chief"
task is rank 0 and workers follow), else TF_CONFIG's task, else RANK /
LOCAL_RANK. Every worker posts its shard and reads the stream, so every
worker's EarlyStopping sees the same value; only rank 0 resets the stream
and keeps .history / calls log_fn. Pass barrier= (a callable every worker
calls, e.g. one built on the strategy's collectives) so that reads wait
for every worker's posts; give every worker the same Stream (a Client
alone would make each worker create its own).

Failures never stop fit(): they are logged on the "lossd_client" logger
and counted in cb.failures; strict=True raises them.

Keras (or tensorflow.keras) is imported when this module is imported, never
by lossd_client itself. Without either, LossdCallback still imports and works
as a plain object with Keras' callback methods (which is how it is tested).
"""

import json
import os

try:
    import keras as _keras
    _Base = _keras.callbacks.Callback
except ImportError:
    try:
        from tensorflow import keras as _keras
        _Base = _keras.callbacks.Callback
    except ImportError:
        _keras = None

        class _Base:
            """Stand-in for keras.callbacks.Callback when Keras is absent."""

            def __init__(self):
                self.model = None
                self.params = {}

            def set_model(self, model):
                self.model = model

            def set_params(self, params):
                self.params = params

from ._callbacks import StreamMetric, distributed_rank, metrics_from_result

__all__ = ["LossdCallback", "KERAS_AVAILABLE", "keras_rank"]

KERAS_AVAILABLE = _keras is not None


def _task_rank(task_type, task_id, cluster):
    """Rank of a TF cluster task: chief first, then workers in order."""
    chiefs = len(cluster.get("chief", []))
    workers = len(cluster.get("worker", []))
    world = max(1, chiefs + workers)
    if task_type == "chief":
        return 0, world
    if task_type == "worker":
        return chiefs + int(task_id or 0), world
    return None


def keras_rank(model=None, environ=None):
    """(rank, world_size): the model's distribution strategy, TF_CONFIG,
    then RANK / LOCAL_RANK / WORLD_SIZE."""
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and getattr(resolver, "task_type", None):
        try:
            spec = resolver.cluster_spec()
            cluster = spec.as_dict() if hasattr(spec, "as_dict") else dict(spec)
            got = _task_rank(resolver.task_type, resolver.task_id, cluster)
            if got:
                return got
        except Exception:  # noqa: BLE001 - fall back to the environment
            pass
    env = os.environ if environ is None else environ
    tf_config = env.get("TF_CONFIG")
    if tf_config:
        try:
            conf = json.loads(tf_config)
            task = conf.get("task", {})
            got = _task_rank(task.get("type"), task.get("index"), conf.get("cluster", {}))
            if got:
                return got
        except (ValueError, AttributeError, TypeError):
            pass
    return distributed_rank(env)


class LossdCallback(StreamMetric, _Base):
    """Write a lossd stream's AUC and loss into Keras' epoch logs.

    client_or_stream: a Client (a stream is created with stream_config on
      first use) or an existing Stream (required with several workers).
    validation_data: optional (x, y) or (x, y, sample_weight) (this
      worker's shard); predicted with model.predict and posted at each
      epoch end.
    predict: optional callable(model, x) -> predictions (default
      model.predict(x, batch_size=batch_size, verbose=0)).
    chunk: rows per update request.
    reset_each_epoch: rank 0 empties the stream after each reading (and
      when training begins); default: when this callback posts (it has
      validation_data, or update() was called in the epoch), so a
      callback that only reads what other processes post leaves it alone.
    every_n_epochs: only act on every n-th epoch.
    field, transform, strict, rank, world_size, barrier, prefix, log_fn:
      see StreamMetric (on_error="raise" is strict=True).
    """

    def __init__(self, client_or_stream, stream_config=None, validation_data=None,
                 *, predict=None, batch_size=256, chunk=4096, reset_each_epoch=None,
                 every_n_epochs=1, **kw):
        _Base.__init__(self)
        StreamMetric.__init__(self, client_or_stream, stream_config, **kw)
        if validation_data is not None and len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x, y) or (x, y, sample_weight)")
        self.validation_data = validation_data
        self.predict = predict
        self.batch_size = int(batch_size)
        self.chunk = int(chunk)
        self.reset_each_epoch = reset_each_epoch
        self.every_n_epochs = max(1, int(every_n_epochs))

    @property
    def rank(self):
        if self._rank is not None:
            return self._rank
        return keras_rank(getattr(self, "model", None))[0]

    @property
    def world_size(self):
        if self._world is not None:
            return self._world
        return keras_rank(getattr(self, "model", None))[1]

    def _predict(self, x):
        if self.predict is not None:
            return self.predict(self.model, x)
        return self.model.predict(x, batch_size=self.batch_size, verbose=0)

    def _post_validation(self, epoch):
        x, y = self.validation_data[0], self.validation_data[1]
        sw = self.validation_data[2] if len(self.validation_data) == 3 else None
        y_pred = self._predict(x)
        n = len(y)
        for i, start in enumerate(range(0, n, self.chunk)):
            end = min(n, start + self.chunk)
            r = self.update(y_pred[start:end], y[start:end],
                            None if sw is None else sw[start:end],
                            batch_id="%s-e%d-k%d-c%d" % (self.run_id, epoch, self.rank, i))
            if r is None:  # a counted failure: the rest would fail alike
                return

    def _resets(self):
        if self.reset_each_epoch is None:
            return self.validation_data is not None or self._batches > 0
        return bool(self.reset_each_epoch)

    def on_train_begin(self, logs=None):
        if self._resets():
            self.reset()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        if self.validation_data is not None:
            self.guard("predict", self._post_validation, epoch)
        self.guard("barrier", self.barrier)
        result = self.guard("read", lambda: self.stream.result())
        if result is not None:
            self.last_result = result
            metrics = metrics_from_result(result, self.prefix)
            if logs is not None:
                logs.update(metrics)
            if self.is_rank_zero:
                self.history.append(dict(metrics, epoch=epoch))
                if self.log_fn is not None:
                    self.guard("log_fn", self.log_fn, dict(metrics))
        if self._resets():
            # a barrier first: no worker may still be reading; then rank 0
            # records the epoch as a checkpoint and empties the stream in
            # one step (read + reset on a server without checkpoints)
            self.guard("barrier", self.barrier)
            if self.is_rank_zero:
                self.guard("checkpoint", self._read_and_reset, True, epoch, "epoch-%d" % epoch)
            self.guard("barrier", self.barrier)
        self._round += 1
        self._batches = 0
