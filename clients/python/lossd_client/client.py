"""HTTP client for lossd (the contract is docs/API.md; this module is its mirror).

Shape: one Client holds the base URL, the token and the retry policy; every
call goes through Client._request, which is the only place that talks HTTP
(http.client, keep-alive, one connection per thread). Stream is a thin handle
(client + id) over the /v1/streams/{id} calls.

Retries. 429 and 503 mean "not processed, come back later": every request is
retried on them, after Retry-After when the server sends one (bounded by
max_delay) or else after an exponential backoff with jitter. A connection
error is retried only where repeating the request cannot change the result:
- reads, /v1/loss, /v1/auc (pure computations), reset and delete;
- stream updates, because each carries a batch_id (a fresh uuid4 when the
  caller gives none) that is reused, with the same Idempotency-Key header, on
  every retry of that update: the server applies a batch_id once, so a
  retried update is never counted twice;
- create and merge (which would duplicate) only when the connection was
  refused, i.e. nothing was sent. They also never reuse a kept-alive
  connection, so a server closing an idle connection cannot make them
  ambiguous.

Errors. Any non-2xx reply that is not retried (or still failing when the
retries run out) raises LossdError built from the problem+json body;
connection failures raise LossdConnectionError. The client never validates
shapes or labels itself: the server's pointer-precise 422 is the answer.

Standard library only; numpy is used for encoding when present (see _tensor).
"""

import email.utils
import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.parse
import uuid

from ._tensor import encode_value

__all__ = ["Client", "Stream", "LossdError", "LossdConnectionError"]

_STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

# retry policies for _request
_SAFE = "safe"      # repeatable: retry on 429/502/503/504 and connection errors
_UNSENT = "unsent"  # not repeatable: retry on 429/503 and refused connections


class LossdError(Exception):
    """A problem+json error reply (docs/API.md section 5).

    status: HTTP status (int); code: the machine-readable "code" ("shape_mismatch");
    detail: the human message; pointer: JSON Pointer into the request or None.
    """

    def __init__(self, status, code, detail, pointer=None, *, title=None,
                 body=None, retry_after=None):
        super().__init__(status, code, detail, pointer)
        self.status = status
        self.code = code
        self.detail = detail
        self.pointer = pointer
        self.title = title
        self.body = body
        self.retry_after = retry_after

    def __reduce__(self):  # picklable across DataLoader / multiprocessing workers
        return (_rebuild_error, (type(self), self.__dict__.copy()))

    def __str__(self):
        s = "%s %s: %s" % (self.status, self.code, self.detail)
        if self.pointer:
            s += " (at %s)" % self.pointer
        return s


class LossdConnectionError(LossdError):
    """The server could not be reached (after the retries the policy allows)."""

    def __init__(self, detail, cause=None):
        super().__init__(None, "connection_error", detail)
        self.cause = cause

    def __str__(self):
        return "connection_error: %s" % self.detail


def _rebuild_error(cls, state):
    e = cls.__new__(cls)
    Exception.__init__(e, state.get("status"), state.get("code"), state.get("detail"),
                       state.get("pointer"))
    e.__dict__.update(state)
    return e


def _parse_retry_after(value, now=None):
    """Retry-After as seconds (delta-seconds or an HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class Client:
    """A lossd client.

    url: base URL, e.g. "http://127.0.0.1:8080" (a path prefix is kept).
    token: bearer token, sent as "Authorization: Bearer <token>".
    timeout: seconds per attempt (connect and each read).
    retries: retries after the first attempt (so retries=5 is up to 6 tries).
    backoff: first backoff delay in seconds; doubles per retry, with jitter.
    max_delay: upper bound of any single wait, Retry-After included.
    float64: send floating numpy arrays as float64 instead of float32.
    """

    def __init__(self, url, token=None, timeout=30, retries=5, backoff=0.1, *,
                 max_delay=30.0, float64=False, user_agent=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be http(s)://host[:port][/prefix], not %r" % (url,))
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_delay = float(max_delay)
        self.float_dtype = "float64" if float64 else "float32"
        self.user_agent = user_agent or "lossd-client-python/0.2"
        self._local = threading.local()
        self._sleep = time.sleep  # replaced by tests to observe the waits
        self._random = random.random

    def __repr__(self):
        return "Client(%r)" % self.url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close this thread's kept-alive connection (others close on exit)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    # --- one-shot evaluation -------------------------------------------------

    def loss(self, loss=None, y_true=None, y_pred=None, **options):
        """POST /v1/loss. Options are the API's fields (from_logits=True,
        reduction="sum", sample_weight=..., heads=[{...}, ...], ...);
        class_weight may also be a Keras-style {class: weight} dict.
        Returns the reply dict ("loss", "count", "per_class", ...)."""
        body = dict(options)
        if loss is not None:
            body["loss"] = loss
        if y_true is not None:
            body["y_true"] = y_true
        if y_pred is not None:
            body["y_pred"] = y_pred
        return self._request("POST", "/v1/loss", _keras_class_weight(body), policy=_SAFE)

    def auc(self, y_true, y_score, **options):
        """POST /v1/auc. Options: curve="pr", method="binned", average=...,
        return_curve=True, ... Returns the reply dict ("auc", ...)."""
        body = dict(options)
        body["y_true"] = y_true
        body["y_score"] = y_score
        return self._request("POST", "/v1/auc", body, policy=_SAFE)

    # --- streams -------------------------------------------------------------

    def stream(self, name=None, **config):
        """POST /v1/streams: create a stream and return its Stream.

        config: num_classes, curve, method ("sketch" | "binned" | "exact"),
        num_thresholds, from_logits, loss={"loss": "binary_crossentropy", ...}.
        """
        body = dict(config)
        if name is not None:
            body["name"] = name
        reply = self._request("POST", "/v1/streams", _keras_class_weight(body),
                              policy=_UNSENT)
        if not isinstance(reply, dict) or "id" not in reply:
            raise LossdError(None, "bad_reply", "stream created without an id: %r"
                             % (reply,))
        return Stream(self, reply["id"], reply)

    def get_stream(self, id):
        """A Stream for an existing id (GET /v1/streams/{id}; LossdError 404
        when it does not exist or belongs to another token)."""
        s = Stream(self, id)
        s.info = s.result()
        return s

    def streams(self, page_size=None, query=None):
        """Iterate over every stream (GET /v1/streams), page by page.

        query: more list parameters, e.g. {"tag": ["team:a", "split:val"],
        "name_prefix": "val", "principal": "team-a"} (a list repeats the key).

        Each page is {"streams": [...], "next": <last id> | null}; "next" is
        passed back as ?after= (a "next" that is a URL or an absolute path,
        or a Link: <...>; rel="next" header, is followed as given).
        Yields Stream objects whose .info is the listed entry.
        """
        query = dict(query or {})
        if page_size is not None:
            query["limit"] = int(page_size)
        target = self._target("/v1/streams", query)
        seen = set()
        while target is not None:
            if target in seen:
                raise LossdError(None, "pagination_loop",
                                 "the server sent the same page link twice: %s" % target)
            seen.add(target)
            reply, headers = self._request("GET", target, None, policy=_SAFE,
                                           raw_target=True, want_headers=True)
            if isinstance(reply, list):
                items, nxt = reply, None
            else:
                items = reply.get("streams")
                if items is None:
                    items = reply.get("items", [])
                nxt = reply.get("next")
            for item in items:
                if isinstance(item, str):
                    yield Stream(self, item)
                else:
                    yield Stream(self, item["id"], item)
            target = None
            if nxt:
                if nxt.startswith("/") or "://" in nxt:
                    target = self._link_target(nxt)
                else:
                    q = dict(query)
                    q["after"] = nxt
                    target = self._target("/v1/streams", q)
            else:
                link = _next_link(headers.get("Link"))
                if link:
                    target = self._link_target(link)

    # --- operations ----------------------------------------------------------

    def health(self):
        """GET /healthz -> dict."""
        return self._request("GET", "/healthz", None, policy=_SAFE)

    def ready(self):
        """True when GET /readyz answers 2xx (no retries: 503 means draining)."""
        try:
            self._request("GET", "/readyz", None, policy=_SAFE, retries=0)
        except LossdError:
            return False
        return True

    def version(self):
        """GET /v1/version -> dict."""
        return self._request("GET", "/v1/version", None, policy=_SAFE)

    def metrics(self):
        """GET /metrics -> Prometheus text."""
        return self._request("GET", "/metrics", None, policy=_SAFE)

    # --- transport -----------------------------------------------------------

    def _target(self, path, query=None):
        t = self._prefix + path
        if query:
            t += "?" + urllib.parse.urlencode(query, doseq=True)
        return t

    def _link_target(self, link):
        """A next-page link (absolute URL or absolute path) as a request target
        on this client's server; other hosts are refused."""
        parts = urllib.parse.urlsplit(link)
        if parts.netloc and (parts.hostname != self._host
                             or (parts.port or self._port) != self._port):
            raise LossdError(None, "bad_link", "next-page link points elsewhere: %s" % link)
        t = parts.path
        if not t.startswith(self._prefix + "/"):
            t = self._prefix + t
        if parts.query:
            t += "?" + parts.query
        return t

    def _stream_path(self, id, suffix=""):
        if not isinstance(id, str) or not _STREAM_ID.match(id):
            raise ValueError("stream ids match [A-Za-z0-9_-]{1,128}, not %r" % (id,))
        return "/v1/streams/" + id + suffix

    def _connect(self):
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _send(self, method, target, data, headers, keep_alive):
        """One attempt. Returns (status, headers, payload, reused)."""
        conn = None
        if keep_alive:
            conn = getattr(self._local, "conn", None)
            self._local.conn = None  # taken: a failure below must not leave it
        reused = conn is not None
        if conn is None:
            conn = self._connect()
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except BaseException as e:
            conn.close()
            e._lossd_reused = reused
            raise
        if keep_alive and not resp.will_close:
            self._local.conn = conn
        else:
            conn.close()
        return resp.status, resp.headers, payload, reused

    def _delay(self, attempt, retry_after=None):
        if retry_after is not None:
            # The server's figure, plus a little jitter so that the clients it
            # told to come back at the same time do not all arrive together.
            d = retry_after + self.backoff * self._random()
        else:
            base = self.backoff * (2 ** attempt)
            d = base * (0.5 + 0.5 * self._random())
        return min(max(d, 0.0), self.max_delay)

    def _request(self, method, path, body, *, policy, headers=None,
                 raw_target=False, want_headers=False, retries=None,
                 ok_404_after_retry=False, encode=True):
        target = path if raw_target else self._target(path)
        data = None
        h = {"Accept": "application/json, application/problem+json",
             "User-Agent": self.user_agent}
        if body is not None:
            try:
                doc = encode_value(body, self.float_dtype) if encode else body
                data = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode("utf-8")
            except ValueError as e:
                raise ValueError("request cannot be encoded as JSON (%s); NaN and "
                                 "Infinity must travel inside numpy arrays or "
                                 "lists, which are sent as base64" % e) from None
            h["Content-Type"] = "application/json"
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if headers:
            h.update(headers)
        retries = self.retries if retries is None else retries
        keep_alive = policy == _SAFE
        attempt = 0
        stale_retry_used = False
        while True:
            try:
                status, rh, payload, _ = self._send(method, target, data, h, keep_alive)
            except (OSError, http.client.HTTPException) as e:
                reused = getattr(e, "_lossd_reused", False)
                if (reused and not stale_retry_used and isinstance(
                        e, (http.client.RemoteDisconnected, ConnectionResetError,
                            BrokenPipeError))):
                    # The server closed an idle kept-alive connection: resend
                    # at once on a fresh one (only _SAFE requests reuse).
                    stale_retry_used = True
                    continue
                unsent = isinstance(e, (ConnectionRefusedError, socket.gaierror))
                if attempt < retries and (policy == _SAFE or unsent):
                    self._sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise LossdConnectionError("%s %s: %s" % (method, target, e), e) from e
            if 200 <= status < 300:
                reply = _decode_body(rh, payload)
                return (reply, rh) if want_headers else reply
            retryable = status in (429, 503) or (policy == _SAFE and status in (502, 504))
            if retryable and attempt < retries:
                self._sleep(self._delay(attempt, _parse_retry_after(rh.get("Retry-After"))))
                attempt += 1
                continue
            if status == 404 and ok_404_after_retry and attempt > 0:
                return None  # an earlier attempt of this delete did succeed
            raise _error_from_reply(status, rh, payload)


def _keras_class_weight(body):
    """Keras' class_weight={class: weight} -> the API's list (classes the
    dict leaves out weigh 1, as in Keras). Applied to a body, its heads and
    a stream's loss config."""
    if not isinstance(body, dict):
        return body
    cw = body.get("class_weight")
    if isinstance(cw, dict):
        try:
            table = {int(k): v for k, v in cw.items()}
        except (TypeError, ValueError):
            raise ValueError("class_weight keys must be class ids") from None
        if any(k < 0 for k in table):
            raise ValueError("class_weight keys must be class ids >= 0")
        n = max(table) + 1 if table else 0
        body = dict(body, class_weight=[table.get(i, 1.0) for i in range(n)])
    if isinstance(body.get("heads"), list):
        body = dict(body, heads=[_keras_class_weight(h) for h in body["heads"]])
    if isinstance(body.get("loss"), dict):
        body = dict(body, loss=_keras_class_weight(body["loss"]))
    return body


def _decode_body(headers, payload):
    if not payload:
        return {}
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    text = payload.decode("utf-8", errors="replace")
    if ctype.endswith("json"):
        return json.loads(text)
    return text


def _error_from_reply(status, headers, payload):
    text = payload.decode("utf-8", errors="replace") if payload else ""
    doc = None
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    retry_after = _parse_retry_after(headers.get("Retry-After"))
    if isinstance(doc, dict) and ("code" in doc or "title" in doc):
        return LossdError(doc.get("status", status), doc.get("code") or "http_%d" % status,
                          doc.get("detail") or doc.get("title") or "",
                          doc.get("pointer"), title=doc.get("title"), body=doc,
                          retry_after=retry_after)
    return LossdError(status, "http_%d" % status, text[:500], None, body=doc,
                      retry_after=retry_after)


def _next_link(value):
    """The rel="next" target of an RFC 8288 Link header, or None."""
    if not value:
        return None
    for part in value.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
        if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
            return m.group(1)
    return None


class Stream:
    """A handle on one stream: Stream(client, id). Cheap; holds no state
    beyond .info, the last description the server gave."""

    def __init__(self, client, id, info=None):
        client._stream_path(id)  # validates the id
        self.client = client
        self.id = id
        self.info = info or {}

    def __repr__(self):
        return "Stream(%r)" % self.id

    def __eq__(self, other):
        return isinstance(other, Stream) and other.id == self.id and other.client is self.client

    def __hash__(self):
        return hash(self.id)

    @property
    def name(self):
        return self.info.get("name")

    def update(self, y_true, y_score=None, y_pred=None, sample_weight=None,
               batch_id=None, step=None):
        """POST /v1/streams/{id}/update with one batch.

        y_score feeds the AUC, y_pred the stream's loss (and AUC); give one or
        both. batch_id defaults to a fresh uuid4, reused on every retry of
        this call, so the batch is applied at most once. step: the training
        step (an int >= 0, docs/API.md section 7), sent only when given. Returns
        the reply ({"updates": n, "count": total}).
        """
        if y_score is None and y_pred is None:
            raise ValueError("update needs y_score or y_pred")
        if batch_id is None:
            batch_id = str(uuid.uuid4())
        body = {"y_true": y_true, "batch_id": str(batch_id)}
        if y_score is not None:
            body["y_score"] = y_score
        if y_pred is not None:
            body["y_pred"] = y_pred
        if sample_weight is not None:
            body["sample_weight"] = sample_weight
        if step is not None:
            body["step"] = int(step)
        return self.client._request(
            "POST", self.client._stream_path(self.id, "/update"), body,
            policy=_SAFE, headers={"Idempotency-Key": str(batch_id)})

    def result(self, curve=False):
        """GET /v1/streams/{id}: {"auc", "per_class", "loss"?, "count", ...};
        curve=True asks for the curve points too."""
        path = self.client._stream_path(self.id)
        target = self.client._target(path, {"curve": "true"} if curve else None)
        return self.client._request("GET", target, None, policy=_SAFE, raw_target=True)

    def checkpoint(self, step, label=None, reset=False, batch_id=None):
        """POST /v1/streams/{id}/checkpoint: record the stream's whole reading
        at training step `step` (docs/API.md section 7), with an optional
        label ("epoch-3"); reset=True empties the stream in the same
        transaction (the epoch-end validation pattern). batch_id defaults to
        a fresh uuid4 reused on every retry, so a retried checkpoint is
        recorded once. Returns the checkpoint record (201)."""
        if batch_id is None:
            batch_id = str(uuid.uuid4())
        body = {"step": int(step), "batch_id": str(batch_id)}
        if label is not None:
            body["label"] = str(label)
        if reset:
            body["reset"] = True
        return self.client._request(
            "POST", self.client._stream_path(self.id, "/checkpoint"), body,
            policy=_SAFE, headers={"Idempotency-Key": str(batch_id)})

    def history(self, series="steps", format="json", start=None, end=None,
                page_size=None):
        """GET /v1/streams/{id}/history, every page (docs/API.md section 7).

        series: "steps" (the per-step aggregates) or "checkpoints".
        start, end: inclusive step bounds (the API's from and to).
        format="json" returns the list of points (or checkpoints) in step
        order; format="csv" returns the CSV text, one header row."""
        if series not in ("steps", "checkpoints"):
            raise ValueError('series must be "steps" or "checkpoints"')
        if format not in ("json", "csv"):
            raise ValueError('format must be "json" or "csv"')
        query = {"series": series, "format": format}
        if start is not None:
            query["from"] = str(int(start))
        if end is not None:
            query["to"] = str(int(end))
        if page_size is not None:
            query["limit"] = str(int(page_size))
        path = self.client._stream_path(self.id, "/history")
        target = self.client._target(path, query)
        points, csv_parts = [], []
        while target:
            reply, headers = self.client._request("GET", target, None, policy=_SAFE,
                                                  raw_target=True, want_headers=True)
            target = None
            if format == "csv":
                text = reply if isinstance(reply, str) else ""
                if csv_parts:  # later pages repeat the header row
                    text = text.split("\n", 1)[1] if "\n" in text else ""
                csv_parts.append(text)
                link = _next_link(headers.get("Link"))
                if link:
                    target = self.client._link_target(link)
            else:
                points.extend(reply.get(series, []))
                nxt = reply.get("next")
                if nxt:
                    q = dict(query)
                    q["after"] = nxt
                    target = self.client._target(path, q)
        return "".join(csv_parts) if format == "csv" else points

    def reset(self):
        """POST /v1/streams/{id}/reset: back to empty, config kept."""
        return self.client._request("POST", self.client._stream_path(self.id, "/reset"),
                                    None, policy=_SAFE)

    def delete(self):
        """DELETE /v1/streams/{id}."""
        return self.client._request("DELETE", self.client._stream_path(self.id), None,
                                    policy=_SAFE, ok_404_after_retry=True)

    def state(self):
        """GET /v1/streams/{id}/state: the mergeable state (a dict)."""
        return self.client._request("GET", self.client._stream_path(self.id, "/state"),
                                    None, policy=_SAFE)

    def merge(self, state):
        """POST /v1/streams/{id}/merge: add a state exported by another stream
        (a dict from .state(), or a Stream whose state is fetched first).
        LossdError 409 state_mismatch when the configs differ."""
        if isinstance(state, Stream):
            state = state.state()
        return self.client._request("POST", self.client._stream_path(self.id, "/merge"),
                                    state, policy=_UNSENT, encode=False)
