"""What the Keras callback and the PyTorch hook share: turning "a Client or a
Stream" into a Stream, choosing which field a batch travels in, reading a
stream's result into flat metrics, and the policy for service errors during
training (warn and carry on by default: a monitoring outage must not kill a
long training run). No framework is imported here."""

import uuid
import warnings

from .client import Client, LossdError, Stream

__all__ = ["StreamBinding", "metrics_from_result"]


def _number(v):
    """A reply value as a float, or None (null AUC, absent loss)."""
    if isinstance(v, dict):  # a loss reply nested as {"loss": x, ...}
        v = v.get("loss")
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def metrics_from_result(result, prefix="lossd_"):
    """{"<prefix>auc", "<prefix>loss", "<prefix>count", "<prefix>auc_error_bound"}
    from a stream result, leaving out what the result does not define."""
    out = {}
    for key, name in (("auc", "auc"), ("loss", "loss"), ("count", "count"),
                      ("error_bound", "auc_error_bound")):
        v = _number(result.get(key))
        if v is not None:
            out[prefix + name] = v
    return out


class StreamBinding:
    """The stream a callback writes to, created on first use when the
    callback was given a Client."""

    def __init__(self, client_or_stream, stream_config=None, field=None,
                 on_error="warn"):
        if on_error not in ("warn", "raise"):
            raise ValueError("on_error must be 'warn' or 'raise'")
        if isinstance(client_or_stream, Stream):
            self.client, self._stream = client_or_stream.client, client_or_stream
        elif isinstance(client_or_stream, Client):
            self.client, self._stream = client_or_stream, None
        else:
            raise TypeError("expected a lossd_client.Client or Stream, got %s"
                            % type(client_or_stream).__name__)
        self.stream_config = dict(stream_config or {})
        if field not in (None, "y_pred", "y_score"):
            raise ValueError("field must be 'y_pred' or 'y_score'")
        self._field = field
        self.on_error = on_error
        self.run_id = uuid.uuid4().hex[:12]

    @property
    def stream(self):
        if self._stream is None:
            self._stream = self.client.stream(**self.stream_config)
        return self._stream

    @property
    def field(self):
        """y_pred when the stream computes a loss (it needs predictions), else
        y_score; an explicit field wins."""
        if self._field:
            return self._field
        if "loss" in self.stream_config:
            return "y_pred"
        info = self._stream.info if self._stream is not None else {}
        if info.get("loss") is not None or "loss_detail" in info:
            return "y_pred"
        return "y_score"

    def update(self, y_true, y_out, sample_weight=None, batch_id=None):
        kw = {self.field: y_out}
        return self.stream.update(y_true, sample_weight=sample_weight,
                                  batch_id=batch_id, **kw)

    def guard(self, what, fn, *args, **kwargs):
        """Run fn; on a LossdError either raise or warn and return None."""
        try:
            return fn(*args, **kwargs)
        except LossdError as e:
            if self.on_error == "raise":
                raise
            warnings.warn("lossd: %s failed: %s" % (what, e), RuntimeWarning, stacklevel=3)
            return None
