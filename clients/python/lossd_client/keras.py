"""Keras callback that reads (and optionally feeds) a lossd stream each epoch.

    from lossd_client import Client
    from lossd_client.keras import LossdCallback
    cb = LossdCallback(Client(url), stream_config={"loss": {"loss": "binary_crossentropy"}},
                       validation_data=(x_val, y_val))
    model.fit(x, y, epochs=5, callbacks=[cb])   # logs["lossd_auc"], logs["lossd_loss"]

At the end of each epoch it (1) when validation_data is given, resets the
stream, predicts the validation set and posts it in chunks, then (2) reads the
stream and writes lossd_auc, lossd_loss, lossd_count (and
lossd_auc_error_bound for sketch streams) into `logs`, where History,
ModelCheckpoint(monitor="lossd_auc") and EarlyStopping see them. Without
validation_data it only reads, so other processes (workers of a cluster) can
be the ones posting.

Keras (or tensorflow.keras) is imported when this module is imported, never
by lossd_client itself. Without either, LossdCallback still imports and works
as a plain object with Keras' callback methods (which is how it is tested);
Keras itself needs the real base class, so install keras to use it in fit().
"""

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

from ._callbacks import StreamBinding, metrics_from_result

__all__ = ["LossdCallback", "KERAS_AVAILABLE"]

KERAS_AVAILABLE = _keras is not None


class LossdCallback(_Base):
    """Write a lossd stream's AUC and loss into Keras' epoch logs.

    client_or_stream: a Client (a stream is created with stream_config on
      first use) or an existing Stream.
    validation_data: optional (x, y) or (x, y, sample_weight); predicted with
      model.predict and posted to the stream at each epoch end.
    predict: optional callable(model, x) -> predictions (default
      model.predict(x, batch_size=batch_size, verbose=0)).
    chunk: rows per update request.
    field: "y_pred" or "y_score" (default: y_pred when the stream has a loss).
    reset_each_epoch: reset the stream before posting each epoch's predictions.
    prefix: prefix of the log keys.
    every_n_epochs: only act on every n-th epoch.
    on_error: "warn" (default: training carries on) or "raise".
    """

    def __init__(self, client_or_stream, stream_config=None, validation_data=None,
                 *, predict=None, batch_size=256, chunk=4096, field=None,
                 reset_each_epoch=True, prefix="lossd_", every_n_epochs=1,
                 on_error="warn"):
        super().__init__()
        self.binding = StreamBinding(client_or_stream, stream_config, field, on_error)
        if validation_data is not None and len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x, y) or (x, y, sample_weight)")
        self.validation_data = validation_data
        self.predict = predict
        self.batch_size = int(batch_size)
        self.chunk = int(chunk)
        self.reset_each_epoch = reset_each_epoch
        self.prefix = prefix
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.history = []

    @property
    def stream(self):
        return self.binding.stream

    def _predict(self, x):
        if self.predict is not None:
            return self.predict(self.model, x)
        return self.model.predict(x, batch_size=self.batch_size, verbose=0)

    def _post(self, epoch):
        x, y = self.validation_data[0], self.validation_data[1]
        sw = self.validation_data[2] if len(self.validation_data) == 3 else None
        y_pred = self._predict(x)
        if self.reset_each_epoch:
            self.binding.stream.reset()
        n = len(y)
        for i, start in enumerate(range(0, n, self.chunk)):
            end = min(n, start + self.chunk)
            self.binding.update(
                y[start:end], y_pred[start:end],
                None if sw is None else sw[start:end],
                batch_id="%s-e%d-c%d" % (self.binding.run_id, epoch, i))

    def _epoch(self, epoch):
        if self.validation_data is not None:
            self._post(epoch)
        return self.binding.stream.result()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        result = self.binding.guard("epoch %d" % epoch, self._epoch, epoch)
        if result is None:
            return
        metrics = metrics_from_result(result, self.prefix)
        self.history.append(dict(metrics, epoch=epoch))
        if logs is not None:
            logs.update(metrics)
