"""What the Keras callback and the PyTorch hooks share, with no framework
imported here.

- StreamMetric: a TorchMetrics-shaped handle on one stream, update(preds,
  target) / compute() / reset(), that never raises into a training loop.
  A failure (service down, a 422 for a bad batch, a tensor that cannot be
  converted) is logged on the "lossd_client" logger and counted in
  .failures (.last_error keeps the last one); strict=True raises instead.
- Ranks. In data-parallel training every rank posts its own shard to the
  same stream, and only rank 0 resets it, reads it into logs and history.
  The rank and world size come from, in this order: what the caller says
  (rank=, world_size=), torch.distributed when it is initialized, then the
  RANK / WORLD_SIZE environment variables (LOCAL_RANK when RANK is unset,
  i.e. one node). With torch.distributed initialized the stream is created
  on rank 0 and its id broadcast, and a barrier fences every read and
  reset, so rank 0 reads only after every rank has posted its shard.
  Without torch.distributed, pass barrier= (a callable every rank calls)
  or give every rank the same Stream.
- The training step: update(..., step=N) sends "step" (docs/API.md section 7)
  when the server takes it. A server that does not know the field answers
  422 unknown_field at /step; the batch is then sent again without it, once
  noted in the log, and later batches leave it out.
- Epoch ends. compute(reset=True) on rank 0 records a checkpoint with
  reset (docs/API.md section 7: the reading and the emptying in one
  transaction, kept in the stream's history at the step given, or the
  round number), so no batch of the next round can slip in between the
  reading and the reset and dashboards see every epoch's value. A server
  without checkpoints (404 not_found for the route, 405, 501 on a shared
  store) is noted once in the log and read + reset instead.
- metrics_from_result: a stream reading as flat metrics; counts are ints.
"""

import logging
import os
import sys
import uuid

from .client import Client, LossdError, Stream

__all__ = ["StreamMetric", "metrics_from_result", "distributed_rank"]

log = logging.getLogger("lossd_client")


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
    """{"<prefix>auc", "<prefix>loss", "<prefix>accuracy", "<prefix>count",
    "<prefix>auc_error_bound"} from a stream result, leaving out what the
    result does not define. count is an int, the rest floats."""
    out = {}
    detail = result.get("loss_detail")
    detail = detail if isinstance(detail, dict) else {}
    for key, name in (("auc", "auc"), ("loss", "loss"), ("accuracy", "accuracy"),
                      ("error_bound", "auc_error_bound")):
        v = _number(result.get(key, detail.get(key)))
        if v is not None:
            out[prefix + name] = v
    count = result.get("count")
    if isinstance(count, (int, float)) and not isinstance(count, bool):
        out[prefix + "count"] = int(count)
    return out


def _torch_dist():
    """torch.distributed when torch is already imported and a process group
    is up, else None (torch is never imported from here)."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist
    except Exception:  # a half-initialised torch must not break the caller
        return None
    return None


def distributed_rank(environ=None):
    """(rank, world_size) of this process: torch.distributed when it is
    initialized, else RANK (or LOCAL_RANK) and WORLD_SIZE, else (0, 1)."""
    dist = _torch_dist()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    env = os.environ if environ is None else environ
    rank = env.get("RANK", env.get("LOCAL_RANK"))
    world = env.get("WORLD_SIZE")
    try:
        r = int(rank) if rank not in (None, "") else 0
        w = int(world) if world not in (None, "") else max(1, r + 1)
    except ValueError:
        return 0, 1
    return r, max(w, r + 1)


def _host(t):
    """A tensor on the host in a dtype numpy can hold (bfloat16/half ->
    float32); anything else unchanged."""
    if hasattr(t, "detach"):
        t = t.detach()
        if hasattr(t, "is_floating_point") and t.is_floating_point() and hasattr(t, "float"):
            t = t.float()
        if hasattr(t, "cpu"):
            t = t.cpu()
    return t


class StreamMetric:
    """One stream seen as a metric that every rank updates.

    client_or_stream: a Client (the stream is created with stream_config
      on first use: on rank 0 only, its id broadcast, when torch.distributed
      is initialized) or an existing Stream.
    stream_config: POST /v1/streams fields (name, loss, method, tags, ...).
    field: "y_pred" or "y_score" (default: y_pred when the stream has a
      loss, since the loss needs predictions; else y_score).
    transform: callable applied to preds before posting (torch.sigmoid).
    strict: raise failures instead of logging and counting them.
    rank, world_size: override what distributed_rank() finds.
    barrier: callable run on every rank around reads and resets when
      world_size > 1 (default: torch.distributed.barrier when initialized).
    prefix: prefix of the metric names (lossd_auc, lossd_loss, ...).
    log_fn: callable(metrics_dict) called on rank 0 after each compute().
    """

    def __init__(self, client_or_stream, stream_config=None, *, field=None,
                 transform=None, strict=False, rank=None, world_size=None,
                 barrier=None, prefix="lossd_", log_fn=None, on_error=None):
        if on_error is not None:  # the 0.1 spelling
            if on_error not in ("warn", "raise"):
                raise ValueError("on_error must be 'warn' or 'raise'")
            strict = strict or on_error == "raise"
        if isinstance(client_or_stream, Stream):
            self.client, self._stream = client_or_stream.client, client_or_stream
        elif isinstance(client_or_stream, Client):
            self.client, self._stream = client_or_stream, None
        else:
            raise TypeError("expected a lossd_client.Client or Stream, got %s"
                            % type(client_or_stream).__name__)
        if field not in (None, "y_pred", "y_score"):
            raise ValueError("field must be 'y_pred' or 'y_score'")
        self.stream_config = dict(stream_config or {})
        self._field = field
        self.transform = transform
        self.strict = bool(strict)
        self._rank, self._world = rank, world_size
        self._barrier = barrier
        self.prefix = prefix
        self.log_fn = log_fn
        self.run_id = uuid.uuid4().hex[:12]
        self.failures = 0
        self.last_error = None
        self.history = []
        self.last_result = None
        self.step_supported = None  # unknown until a step is sent
        self.checkpoint_supported = None  # unknown until an epoch ends
        self._round = 0     # reads so far: batch ids of a new round differ
        self._batches = 0   # batches posted by this rank in this round

    # --- ranks ---------------------------------------------------------------

    @property
    def rank(self):
        return self._rank if self._rank is not None else distributed_rank()[0]

    @property
    def world_size(self):
        return self._world if self._world is not None else distributed_rank()[1]

    @property
    def is_rank_zero(self):
        return self.rank == 0

    def barrier(self):
        """Every rank waits for the others (a no-op with one rank)."""
        if self.world_size <= 1:
            return
        if self._barrier is not None:
            self._barrier()
            return
        dist = _torch_dist()
        if dist is not None:
            dist.barrier()

    # --- failures ------------------------------------------------------------

    def _failed(self, what, e):
        self.failures += 1
        self.last_error = e
        if self.strict:
            raise e
        # Every failure is counted; the log says the first few and then one
        # in a hundred, so a service outage does not flood the training log.
        if self.failures <= 5 or self.failures % 100 == 0:
            log.warning("lossd: %s failed (%d failure%s so far): %s", what, self.failures,
                        "" if self.failures == 1 else "s", e)

    def guard(self, what, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None after a counted failure."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - never into the training loop
            self._failed(what, e)
            return None

    # --- the stream ----------------------------------------------------------

    def _create_or_share(self):
        dist = _torch_dist() if self._world is None or self._world > 1 else None
        if dist is None or dist.get_world_size() <= 1:
            return self.client.stream(**self.stream_config)
        box = [None]
        if dist.get_rank() == 0:
            try:
                box[0] = self.client.stream(**self.stream_config).id
            except Exception as e:  # noqa: BLE001 - the other ranks must not hang
                box[0] = e
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], BaseException):
            raise box[0]
        return Stream(self.client, box[0])

    def setup(self):
        """Creates (or shares) the stream now. With torch.distributed every
        rank must call it at the same point; the hooks do so when an epoch
        starts. Returns the Stream, or None after a counted failure."""
        if self._stream is None:
            self._stream = self.guard("create stream", self._create_or_share)
        return self._stream

    @property
    def stream(self):
        if self._stream is None:
            self._stream = self._create_or_share()
        return self._stream

    @property
    def field(self):
        if self._field:
            return self._field
        if "loss" in self.stream_config:
            return "y_pred"
        info = self._stream.info if self._stream is not None else {}
        if info.get("loss") is not None or "loss_detail" in info:
            return "y_pred"
        return "y_score"

    # --- the metric ----------------------------------------------------------

    def _post(self, preds, target, sample_weight, step, batch_id):
        if self.transform is not None:
            preds = self.transform(preds)
        kw = {self.field: _host(preds)}
        if sample_weight is not None:
            kw["sample_weight"] = _host(sample_weight)
        stream = self.stream
        if step is not None and self.step_supported is not False:
            try:
                r = stream.update(_host(target), batch_id=batch_id, step=int(step), **kw)
                self.step_supported = True
                return r
            except LossdError as e:
                if not (e.status == 422 and e.pointer == "/step"):
                    raise
                self.step_supported = False
                log.warning("lossd: this server does not take \"step\" in updates (%s); "
                            "posting without it", e)
        return stream.update(_host(target), batch_id=batch_id, **kw)

    def update(self, preds, target, sample_weight=None, *, step=None, batch_id=None):
        """Posts one batch (this rank's shard) as one update.

        preds: predictions (probabilities, or logits with a from_logits
        stream), target: labels; any tensor type the client encodes (numpy,
        torch on any device, lists). step: the training step (docs/API.md
        section 7). batch_id: default derived from this metric's run id,
        round, rank and batch number, so a retried post counts once and
        ranks never collide. Returns the reply, or None after a counted
        failure."""
        if batch_id is None:
            batch_id = "%s-r%d-k%d-b%d" % (self.run_id, self._round, self.rank, self._batches)
        self._batches += 1
        return self.guard("update", self._post, preds, target, sample_weight, step, batch_id)

    def _checkpoint(self, step, label):
        """POST .../checkpoint with reset: the reading, or None when the
        server has no checkpoints (then read + reset)."""
        stream = self.stream
        body = {"step": int(step), "reset": True,
                "batch_id": "%s-ckpt-%d" % (self.run_id, self._round)}
        if label is not None:
            body["label"] = str(label)
        try:
            reply = self.client._request(
                "POST", self.client._stream_path(stream.id, "/checkpoint"), body,
                policy="safe", headers={"Idempotency-Key": body["batch_id"]})
        except LossdError as e:
            if not (e.status in (405, 501) or (e.status == 404 and e.code == "not_found")):
                raise
            self.checkpoint_supported = False
            log.warning("lossd: no checkpoints on this server (%s); reading and resetting "
                        "instead", e)
            return None
        self.checkpoint_supported = True
        return reply.get("checkpoint", reply) if isinstance(reply, dict) else reply

    def _read_and_reset(self, reset, step, label):
        if reset and self.checkpoint_supported is not False:
            reading = self._checkpoint(self._round if step is None else step, label)
            if reading is not None:
                return reading
        reading = self.stream.result()
        if reset:
            self.guard("reset", lambda: self.stream.reset())
        return reading

    def compute(self, *, sync=True, reset=False, step=None, label=None):
        """The stream's reading as metrics ({"lossd_auc", "lossd_loss",
        "lossd_count", ...}) on rank 0, appended to .history and passed to
        log_fn; None on the other ranks and after a counted failure.
        sync: barrier first, so every rank's posts are in. reset: rank 0
        records a checkpoint with reset at step (default: the round
        number) and label (or reads and resets where the server has no
        checkpoints), before a second barrier, so the next round starts
        empty."""
        if sync:
            self.guard("barrier", self.barrier)
        metrics = None
        if self.is_rank_zero:
            result = self.guard("read", self._read_and_reset, reset, step, label)
            if result is not None:
                self.last_result = result
                metrics = metrics_from_result(result, self.prefix)
                self.history.append(dict(metrics))
                if self.log_fn is not None:
                    self.guard("log_fn", self.log_fn, dict(metrics))
        if reset and sync:
            self.guard("barrier", self.barrier)
        self._round += 1
        self._batches = 0
        return metrics

    def reset(self, *, sync=True):
        """Empties the stream (rank 0; the others wait at the barrier)."""
        if self.is_rank_zero:
            self.guard("reset", lambda: self.stream.reset())
        if sync:
            self.guard("barrier", self.barrier)
        self._round += 1
        self._batches = 0
