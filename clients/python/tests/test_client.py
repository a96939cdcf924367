"""Tests of lossd_client (standard library only: python3 -m unittest).

Unit tests run the client against fakes: FakeServer is an http.server in a
thread that answers from a script and records every request, MiniLossd is a
tiny in-memory stand-in for the streams API (exact AUC by pair counting,
binary cross-entropy) used to exercise the Keras and PyTorch callbacks.

LiveServerTests runs against a real lossd binary and is skipped unless
LOSSD_BIN names one; tests/e2e/test_client.py runs it under ctest.
"""

import array
import base64
import email.utils
import http.server
import importlib
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
import urllib.parse
import uuid
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

from lossd_client import Client, LossdConnectionError, LossdError, Stream  # noqa: E402
from lossd_client import decode_tensor, encode_tensor  # noqa: E402
from lossd_client._tensor import encode_value  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None


# --- reference figures in plain Python ---------------------------------------

def exact_auc(y, s):
    """ROC AUC by pair counting, ties count one half (sklearn's figure)."""
    pos = [v for v, t in zip(s, y) if t == 1]
    neg = [v for v, t in zip(s, y) if t == 0]
    if not pos or not neg:
        return None
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def bce(y, p):
    eps = 1e-7
    total = 0.0
    for t, q in zip(y, p):
        q = min(max(q, eps), 1 - eps)
        total += -(t * math.log(q) + (1 - t) * math.log(1 - q))
    return total / len(y)


# --- fake servers ---------------------------------------------------------------

class FakeServer:
    """A scripted HTTP/1.1 server. Each request pops the next script entry:
    (status, headers, body) | "drop" (close without replying) | a callable
    (request dict) -> (status, headers, body). When the script is empty,
    self.default answers. Every request is recorded in self.requests."""

    def __init__(self, default=None):
        self.requests = []
        self.script = []
        self.default = default or (lambda req: (200, {}, {"ok": True}))
        self.lock = threading.Lock()
        self.close_after_reply = False
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                url = urllib.parse.urlsplit(self.path)
                req = {"method": self.command, "path": url.path,
                       "query": dict(urllib.parse.parse_qsl(url.query)),
                       "target": self.path, "headers": dict(self.headers.items()),
                       "raw": raw, "client": self.client_address,
                       "json": json.loads(raw) if raw else None}
                with fake.lock:
                    fake.requests.append(req)
                    step = fake.script.pop(0) if fake.script else fake.default
                if step == "drop":
                    self.close_connection = True
                    return
                if callable(step):
                    step = step(req)
                status, headers, body = step
                if isinstance(body, (dict, list)):
                    data = json.dumps(body).encode()
                    ctype = ("application/problem+json" if status >= 400
                             else "application/json")
                elif body is None:
                    data, ctype = b"", None
                else:
                    data, ctype = body.encode(), "text/plain"
                self.send_response(status)
                if ctype and "Content-Type" not in headers:
                    self.send_header("Content-Type", ctype)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if fake.close_after_reply:
                    self.close_connection = True  # silently: no Connection: close

            do_GET = do_POST = do_DELETE = do_PUT = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def problem(status, code, detail, pointer=None):
    d = {"type": "about:blank", "title": "t", "status": status, "code": code,
         "detail": detail}
    if pointer:
        d["pointer"] = pointer
    return d


class MiniLossd:
    """An in-memory imitation of the streams API, enough for the callbacks:
    create / update (batch_id applied once) / result / reset / delete / list."""

    def __init__(self):
        self.streams = {}
        self.takes_step = False
        self.takes_checkpoint = False
        self.server = FakeServer(self.handle)

    def handle(self, req):
        parts = [p for p in req["path"].split("/") if p]
        body = req["json"] or {}
        if parts == ["v1", "streams"] and req["method"] == "POST":
            sid = uuid.uuid4().hex  # as lossd: the name is a label, not the id
            self.streams[sid] = {"config": body, "y": [], "s": [], "batches": {}, "ckpts": []}
            return 201, {}, dict(body, id=sid)
        if len(parts) < 3 or parts[:2] != ["v1", "streams"]:
            return 404, {}, problem(404, "not_found", req["path"])
        st = self.streams.get(parts[2])
        if st is None:
            return 404, {}, problem(404, "unknown_stream", parts[2])
        op = parts[3] if len(parts) > 3 else None
        if op == "update":
            if "step" in body and not self.takes_step:  # as lossd before section 7
                return 422, {}, problem(422, "unknown_field", "unknown field step", "/step")
            bid = body.get("batch_id")
            if bid in st["batches"]:
                return 200, {}, st["batches"][bid]
            scores = body.get("y_pred", body.get("y_score"))
            y, s = decode_tensor(body["y_true"]), decode_tensor(scores)
            st["y"] += [int(v) for v in y]
            st["s"] += [float(v) for v in s]
            reply = {"updates": len(st["batches"]) + 1, "count": len(st["y"])}
            st["batches"][bid] = reply
            return 200, {}, reply
        if op == "reset":
            st["y"], st["s"] = [], []
            return 200, {}, dict(st["config"], id=parts[2])
        if op == "checkpoint" and self.takes_checkpoint:
            res = self.reading(st)
            res.update(step=body["step"], label=body.get("label"), n=len(st["ckpts"]),
                       dropped=0)
            res.pop("loss_detail", None)
            st["ckpts"].append(res)
            if body.get("reset"):
                st["y"], st["s"] = [], []
            return 201, {}, res
        if op is None and req["method"] == "DELETE":
            del self.streams[parts[2]]
            return 204, {}, None
        if op is None:
            return 200, {}, self.reading(st)
        return 404, {}, problem(404, "not_found", req["path"])

    @staticmethod
    def reading(st):
        res = {"auc": exact_auc(st["y"], st["s"]), "count": len(st["y"]),
               "positives": sum(st["y"]), "negatives": len(st["y"]) - sum(st["y"])}
        if "loss" in st["config"]:  # as lossd: a number, details aside
            res["loss"] = bce(st["y"], st["s"]) if st["y"] else None
            res["loss_detail"] = {"count": len(st["y"])}
        return res

    def stop(self):
        self.server.stop()


def quick_client(url, case=None, **kw):
    """A client whose waits are recorded instead of slept; closed with case."""
    kw.setdefault("timeout", 5)
    c = Client(url, **kw)
    c.sleeps = []
    c._sleep = c.sleeps.append
    if case is not None:
        case.addCleanup(c.close)
    return c


# --- encoding ---------------------------------------------------------------------

class TestEncoding(unittest.TestCase):

    def test_float32_b64_round_trip(self):
        vals = [0.1, 0.9, 0.8, 0.2, -3.5, 1e-8]
        enc = encode_tensor(array.array("f", vals))
        self.assertEqual(enc["dtype"], "float32")
        self.assertEqual(enc["shape"], [6])
        self.assertEqual(len(base64.b64decode(enc["b64"])), 4 * len(vals))
        dec = decode_tensor(enc)
        for a, b in zip(vals, dec):
            self.assertTrue(math.isclose(a, b, rel_tol=1e-7), (a, b))

    def test_b64_is_little_endian(self):
        enc = encode_tensor(array.array("i", [1, 256]))
        self.assertEqual(base64.b64decode(enc["b64"]), struct.pack("<ii", 1, 256))

    def test_float64_array_goes_as_float32_unless_asked(self):
        a = array.array("d", [0.1, 0.25])
        self.assertEqual(encode_tensor(a)["dtype"], "float32")
        enc = encode_tensor(a, "float64")
        self.assertEqual(enc["dtype"], "float64")
        self.assertEqual(decode_tensor(enc), [0.1, 0.25])

    def test_float32_overflow_refused(self):
        with self.assertRaises(ValueError):
            encode_tensor(array.array("d", [1e300]))

    def test_int_labels_keep_an_int_dtype(self):
        cases = [("b", "int32"), ("h", "int32"), ("i", "int32"), ("q", "int64"),
                 ("B", "uint8"), ("H", "int32"), ("I", "int64")]
        for code, want in cases:
            vals = [0, 1, 2, 1, 0, 100]
            enc = encode_tensor(array.array(code, vals))
            self.assertEqual(enc["dtype"], want, code)
            self.assertEqual(decode_tensor(enc), vals, code)

    def test_negative_int_labels(self):
        enc = encode_tensor(array.array("q", [-100, 3, -1]))
        self.assertEqual(decode_tensor(enc), [-100, 3, -1])

    def test_lists_travel_as_json(self):
        self.assertEqual(encode_tensor([[0.1, 0.9], [0.8, 0.2]]), [[0.1, 0.9], [0.8, 0.2]])
        self.assertEqual(encode_tensor(((1, 2), (3, 4))), [[1, 2], [3, 4]])
        self.assertEqual(encode_tensor([True, False]), [1, 0])
        self.assertEqual(encode_tensor(7), 7)

    def test_nonfinite_list_falls_back_to_float64_b64(self):
        enc = encode_tensor([[1.0, float("nan")], [float("-inf"), 2.0]])
        self.assertEqual(enc["dtype"], "float64")
        self.assertEqual(enc["shape"], [2, 2])
        dec = decode_tensor(enc)
        self.assertEqual(dec[0][0], 1.0)
        self.assertTrue(math.isnan(dec[0][1]))
        self.assertEqual(dec[1][0], float("-inf"))
        self.assertEqual(dec[1][1], 2.0)

    def test_ragged_nonfinite_list_refused(self):
        with self.assertRaises(ValueError):
            encode_tensor([[1.0, float("nan")], [2.0]])

    def test_nonfinite_scalar_refused(self):
        with self.assertRaises(ValueError):
            encode_tensor(float("inf"))

    def test_encoded_dicts_pass_through(self):
        d = {"shape": [2], "data": [1, 2]}
        self.assertEqual(encode_tensor(d), d)
        e = {"shape": [1], "dtype": "float32", "b64": "AACAPw=="}
        self.assertEqual(encode_tensor(e), e)
        self.assertEqual(decode_tensor(e), [1.0])

    def test_decode_rejects_bad_lengths(self):
        with self.assertRaises(ValueError):
            decode_tensor({"shape": [3], "dtype": "float32", "b64": "AACAPw=="})
        with self.assertRaises(ValueError):
            decode_tensor({"shape": [1], "dtype": "float32", "b64": "AACA"})

    def test_encode_value_options(self):
        body = encode_value({"from_logits": True, "reduction": "sum", "alpha": 0.5,
                             "sample_weight": array.array("f", [1, 2]),
                             "heads": [{"loss": "huber", "y_true": (1, 2),
                                        "y_pred": array.array("d", [1, 2])}],
                             "loss": {"loss": "binary_crossentropy", "from_logits": False}})
        self.assertIs(body["from_logits"], True)
        self.assertEqual(body["reduction"], "sum")
        self.assertEqual(body["sample_weight"]["dtype"], "float32")
        self.assertEqual(body["heads"][0]["y_true"], [1, 2])
        self.assertEqual(body["heads"][0]["y_pred"]["dtype"], "float32")
        self.assertIs(body["loss"]["from_logits"], False)

    def test_torch_like_objects(self):
        class FakeTensor:
            def __init__(self, v):
                self.v = v
                self.detached = False

            def detach(self):
                self.detached = True
                return self

            def cpu(self):
                return self

            def tolist(self):
                return self.v

        t = FakeTensor([[1.0, 2.0]])
        enc = encode_tensor(t)
        self.assertTrue(t.detached)
        self.assertEqual(decode_tensor(enc), [[1.0, 2.0]])


@unittest.skipIf(np is None, "numpy is not installed: its encodings are covered by "
                 "the array.array tests")
class TestNumpyEncoding(unittest.TestCase):

    def test_float64_goes_as_float32(self):
        a = np.array([[0.1, 0.9], [0.8, 0.2]])
        enc = encode_tensor(a)
        self.assertEqual((enc["dtype"], enc["shape"]), ("float32", [2, 2]))
        back = np.frombuffer(base64.b64decode(enc["b64"]), "<f4").reshape(2, 2)
        self.assertTrue(np.allclose(back, a, rtol=1e-7))

    def test_float64_kept_when_asked(self):
        a = np.array([0.1, 1e-300])
        enc = encode_tensor(a, "float64")
        self.assertEqual(enc["dtype"], "float64")
        self.assertTrue(np.array_equal(np.frombuffer(base64.b64decode(enc["b64"]), "<f8"), a))

    def test_int_dtypes(self):
        for dt, want in [(np.int64, "int64"), (np.int32, "int32"), (np.uint8, "uint8"),
                         (np.int16, "int32"), (np.uint32, "int64"), (np.bool_, "uint8")]:
            a = np.array([0, 1, 1, 0], dtype=dt)
            enc = encode_tensor(a)
            self.assertEqual(enc["dtype"], want, dt)
            self.assertEqual(decode_tensor(enc), [0, 1, 1, 0])

    def test_non_contiguous_is_row_major(self):
        a = np.arange(6, dtype=np.float32).reshape(2, 3).T  # (3, 2), Fortran order
        enc = encode_tensor(a)
        self.assertEqual(enc["shape"], [3, 2])
        self.assertEqual(decode_tensor(enc), a.tolist())

    def test_big_endian_input(self):
        a = np.array([1.5, -2.0], dtype=">f4")
        self.assertEqual(decode_tensor(encode_tensor(a)), [1.5, -2.0])

    def test_zero_dim_and_scalars(self):
        self.assertEqual(encode_tensor(np.array(3.5)), 3.5)
        self.assertEqual(encode_tensor([np.int64(1), np.float32(0.5)]), [1, 0.5])
        self.assertEqual(encode_value({"gamma": np.float64(2.0)}), {"gamma": 2.0})

    def test_overflow_refused(self):
        with self.assertRaises(ValueError):
            encode_tensor(np.array([1e300]))

    def test_nan_travels_in_b64(self):
        enc = encode_tensor(np.array([1.0, np.nan], dtype=np.float32))
        self.assertTrue(math.isnan(decode_tensor(enc)[1]))


# --- transport --------------------------------------------------------------------

class TransportCase(unittest.TestCase):
    def setUp(self):
        self.fake = FakeServer()
        self.addCleanup(self.fake.stop)
        self.client = quick_client(self.fake.url, self, backoff=0.1, retries=5, max_delay=2.0)
        self.addCleanup(self.client.close)


class TestRequests(TransportCase):

    def test_loss_posts_strict_json(self):
        self.fake.script = [(200, {}, {"loss": 0.5})]
        c = quick_client(self.fake.url, self, token="s3cret")
        reply = c.loss("binary_crossentropy", [0, 1], array.array("f", [0.25, 0.75]),
                       from_logits=False, sample_weight=[1.0, 2.0])
        self.assertEqual(reply, {"loss": 0.5})
        req = self.fake.requests[0]
        self.assertEqual((req["method"], req["path"]), ("POST", "/v1/loss"))
        self.assertEqual(req["headers"]["Content-Type"], "application/json")
        self.assertEqual(req["headers"]["Authorization"], "Bearer s3cret")
        body = json.loads(req["raw"], parse_constant=lambda c: self.fail("non-JSON " + c))
        self.assertEqual(body["loss"], "binary_crossentropy")
        self.assertEqual(body["y_true"], [0, 1])
        self.assertEqual(body["y_pred"]["dtype"], "float32")
        self.assertIs(body["from_logits"], False)
        self.assertEqual(body["sample_weight"], [1.0, 2.0])

    def test_keras_class_weight_dict(self):
        self.client.loss("sparse_categorical_crossentropy", [0, 2], [[0.5, 0.2, 0.3]] * 2,
                         class_weight={2: 3.0, "0": 0.5},
                         heads=[{"loss": "x", "class_weight": {1: 2.0}}])
        body = self.fake.requests[0]["json"]
        self.assertEqual(body["class_weight"], [0.5, 1.0, 3.0])
        self.assertEqual(body["heads"][0]["class_weight"], [1.0, 2.0])
        self.fake.script = [(201, {}, {"id": "s"})]
        self.client.stream(loss={"loss": "x", "class_weight": {1: 4}})
        self.assertEqual(self.fake.requests[1]["json"]["loss"]["class_weight"], [1.0, 4])
        with self.assertRaises(ValueError):
            self.client.loss("x", [0], [0.1], class_weight={-1: 2.0})

    def test_auc_and_path_prefix(self):
        c = quick_client(self.fake.url + "/lossd/", self)
        c.auc([0, 1], [0.1, 0.9], curve="pr")
        req = self.fake.requests[0]
        self.assertEqual(req["path"], "/lossd/v1/auc")
        self.assertEqual(req["json"], {"y_true": [0, 1], "y_score": [0.1, 0.9], "curve": "pr"})

    def test_nan_option_refused_before_sending(self):
        with self.assertRaises(ValueError):
            self.client.loss("binary_focal_crossentropy", [1], [0.5], gamma=float("nan"))
        self.assertEqual(self.fake.requests, [])

    def test_problem_json_raises_lossd_error(self):
        self.fake.script = [(422, {}, problem(422, "shape_mismatch",
                                              "y_pred has shape [4, 3] but y_true has shape [5]",
                                              "/y_true"))]
        with self.assertRaises(LossdError) as cm:
            self.client.loss("sparse_categorical_crossentropy", [0] * 5, [[0.5] * 3] * 4)
        e = cm.exception
        self.assertEqual((e.status, e.code, e.pointer), (422, "shape_mismatch", "/y_true"))
        self.assertIn("shape [5]", e.detail)
        self.assertIn("shape_mismatch", str(e))
        self.assertEqual(len(self.fake.requests), 1)  # 422 is never retried
        self.assertEqual(self.client.sleeps, [])

    def test_gateway_error_retried_on_safe_requests(self):
        self.fake.script = [(502, {}, "<html>bad gateway</html>")]
        self.assertEqual(self.client.auc([0, 1], [0.1, 0.2]), {"ok": True})
        self.assertEqual(len(self.fake.requests), 2)

    def test_errors_pickle(self):
        import pickle
        e = pickle.loads(pickle.dumps(LossdError(422, "bad_option", "no", "/alpha",
                                                 title="Unprocessable Entity")))
        self.assertEqual((e.status, e.code, e.detail, e.pointer, e.title),
                         (422, "bad_option", "no", "/alpha", "Unprocessable Entity"))
        c = pickle.loads(pickle.dumps(LossdConnectionError("refused")))
        self.assertIsInstance(c, LossdConnectionError)
        self.assertEqual((c.status, c.code, str(c)), (None, "connection_error",
                                                      "connection_error: refused"))

    def test_non_json_error_no_retries(self):
        self.fake.script = [(502, {}, "<html>bad gateway</html>")]
        c = quick_client(self.fake.url, self, retries=0)
        with self.assertRaises(LossdError) as cm:
            c.auc([0, 1], [0.1, 0.2])
        self.assertEqual((cm.exception.status, cm.exception.code), (502, "http_502"))
        self.assertIn("bad gateway", cm.exception.detail)

    def test_keep_alive_reuses_one_connection(self):
        for _ in range(3):
            self.client.loss("huber", [1.0], [2.0])
        ports = {r["client"][1] for r in self.fake.requests}
        self.assertEqual(len(ports), 1)

    def test_stale_keep_alive_connection_is_replaced(self):
        self.fake.close_after_reply = True
        for _ in range(3):
            self.assertEqual(self.client.loss("huber", [1.0], [2.0]), {"ok": True})
        self.assertEqual(len(self.fake.requests), 3)
        self.assertEqual(self.client.sleeps, [])  # no backoff for a stale socket

    def test_stream_id_validated(self):
        for bad in ("a/b", "", "x" * 129, "..%2F", "a b"):
            with self.assertRaises(ValueError):
                Stream(self.client, bad)
        Stream(self.client, "ok_id-1")

    def test_result_reset_state_delete(self):
        s = Stream(self.client, "s1")
        s.result(curve=True)
        s.reset()
        s.state()
        self.fake.script = [(204, {}, None)]
        self.assertEqual(s.delete(), {})
        got = [(r["method"], r["target"], r["raw"]) for r in self.fake.requests]
        self.assertEqual(got, [("GET", "/v1/streams/s1?curve=true", b""),
                               ("POST", "/v1/streams/s1/reset", b""),
                               ("GET", "/v1/streams/s1/state", b""),
                               ("DELETE", "/v1/streams/s1", b"")])

    def test_create_and_get_stream(self):
        self.fake.script = [(201, {}, {"id": "val", "name": "val", "method": "sketch"}),
                            (200, {}, {"auc": None, "count": 0})]
        s = self.client.stream(name="val", method="sketch", loss={"loss": "binary_crossentropy"})
        self.assertEqual((s.id, s.name), ("val", "val"))
        self.assertEqual(self.fake.requests[0]["json"],
                         {"name": "val", "method": "sketch",
                          "loss": {"loss": "binary_crossentropy"}})
        g = self.client.get_stream("val")
        self.assertEqual(g.info["count"], 0)

    def test_get_missing_stream_raises_404(self):
        self.fake.script = [(404, {}, problem(404, "unknown_stream", "no such stream"))]
        with self.assertRaises(LossdError) as cm:
            self.client.get_stream("nope")
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "unknown_stream"))

    def test_merge_accepts_state_or_stream(self):
        state = {"version": 1, "hist": [[0, 1, None]], "method": "sketch"}
        self.fake.script = [(200, {}, {"updates": 1, "count": 3}),
                            (200, {}, state), (200, {}, {"updates": 2, "count": 6})]
        a, b = Stream(self.client, "a"), Stream(self.client, "b")
        a.merge(state)
        a.merge(b)
        r = self.fake.requests
        self.assertEqual(r[0]["json"], state)  # sent exactly as exported
        self.assertEqual((r[1]["method"], r[1]["path"]), ("GET", "/v1/streams/b/state"))
        self.assertEqual(r[2]["json"], state)


class TestRetries(TransportCase):

    def test_update_retries_reuse_batch_id(self):
        self.fake.script = ["drop",
                            (503, {"Retry-After": "1"}, problem(503, "overloaded", "busy")),
                            (429, {}, problem(429, "overloaded", "slow down")),
                            (200, {}, {"updates": 1, "count": 2})]
        reply = Stream(self.client, "s").update([0, 1], y_score=[0.2, 0.8])
        self.assertEqual(reply, {"updates": 1, "count": 2})
        reqs = self.fake.requests
        self.assertEqual(len(reqs), 4)
        ids = {r["json"]["batch_id"] for r in reqs}
        keys = {r["headers"]["Idempotency-Key"] for r in reqs}
        self.assertEqual(len(ids), 1)
        self.assertEqual(ids, keys)
        self.assertEqual(uuid.UUID(ids.pop()).version, 4)
        s = self.client.sleeps
        self.assertEqual(len(s), 3)
        self.assertTrue(0.05 <= s[0] <= 0.1, s)       # backoff * 2**0, jittered
        self.assertTrue(1.0 <= s[1] <= 1.1, s)        # Retry-After 1 (+ small jitter)
        self.assertTrue(0.2 <= s[2] <= 0.4, s)        # backoff * 2**2, jittered

    def test_two_updates_get_different_batch_ids(self):
        st = Stream(self.client, "s")
        st.update([1], y_pred=[0.5])
        st.update([1], y_pred=[0.5])
        a, b = (r["json"]["batch_id"] for r in self.fake.requests)
        self.assertNotEqual(a, b)

    def test_explicit_batch_id_is_used_on_every_try(self):
        self.fake.script = [(503, {}, problem(503, "overloaded", "busy")), "drop"]
        Stream(self.client, "s").update([1, 0], y_pred=[0.9, 0.1],
                                        sample_weight=[1, 2], batch_id="w3-step120")
        reqs = self.fake.requests
        self.assertEqual(len(reqs), 3)
        for r in reqs:
            self.assertEqual(r["json"]["batch_id"], "w3-step120")
            self.assertEqual(r["headers"]["Idempotency-Key"], "w3-step120")
            self.assertEqual(r["json"]["sample_weight"], [1, 2])
            self.assertNotIn("y_score", r["json"])

    def test_update_needs_scores(self):
        with self.assertRaises(ValueError):
            Stream(self.client, "s").update([1, 0])

    def test_retry_after_is_bounded(self):
        self.fake.script = [(503, {"Retry-After": "3600"}, problem(503, "overloaded", "x"))]
        self.client.loss("huber", [1.0], [1.0])
        self.assertEqual(self.client.sleeps, [2.0])  # max_delay

    def test_retry_after_http_date(self):
        when = email.utils.formatdate(time.time() + 10, usegmt=True)
        self.fake.script = [(429, {"Retry-After": when}, problem(429, "overloaded", "x"))]
        c = quick_client(self.fake.url, self, max_delay=30.0)
        c.loss("huber", [1.0], [1.0])
        self.assertEqual(len(c.sleeps), 1)
        self.assertTrue(8.0 <= c.sleeps[0] <= 10.2, c.sleeps)

    def test_backoff_doubles(self):
        busy = (503, {}, problem(503, "overloaded", "x"))
        self.fake.script = [busy, busy, busy, busy]
        self.client._random = lambda: 1.0  # no jitter
        self.client.auc([0, 1], [0.3, 0.6])
        self.assertEqual(self.client.sleeps, [0.1, 0.2, 0.4, 0.8])

    def test_gives_up_after_retries(self):
        self.fake.default = lambda req: (503, {"Retry-After": "0"},
                                         problem(503, "overloaded", "still busy"))
        c = quick_client(self.fake.url, self, retries=3)
        with self.assertRaises(LossdError) as cm:
            c.loss("huber", [1.0], [1.0])
        self.assertEqual((cm.exception.status, cm.exception.code), (503, "overloaded"))
        self.assertEqual(cm.exception.retry_after, 0.0)
        self.assertEqual(len(self.fake.requests), 4)
        self.assertEqual(len(c.sleeps), 3)

    def test_create_not_resent_after_a_dropped_connection(self):
        self.fake.script = ["drop"]
        with self.assertRaises(LossdConnectionError):
            self.client.stream(name="x")
        self.assertEqual(len(self.fake.requests), 1)

    def test_create_retried_on_503(self):
        self.fake.script = [(503, {"Retry-After": "0"}, problem(503, "overloaded", "x")),
                            (201, {}, {"id": "x"})]
        self.assertEqual(self.client.stream(name="x").id, "x")
        self.assertEqual(len(self.fake.requests), 2)

    def test_merge_not_resent_after_a_dropped_connection(self):
        self.fake.script = ["drop"]
        with self.assertRaises(LossdConnectionError):
            Stream(self.client, "s").merge({"v": 1})
        self.assertEqual(len(self.fake.requests), 1)

    def test_delete_404_after_a_lost_reply_is_success(self):
        self.fake.script = ["drop", (404, {}, problem(404, "unknown_stream", "gone"))]
        self.assertIsNone(Stream(self.client, "s").delete())
        self.fake.script = [(404, {}, problem(404, "unknown_stream", "gone"))]
        with self.assertRaises(LossdError):
            Stream(self.client, "s").delete()

    def test_connection_refused_is_retried_then_raised(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        c = quick_client("http://127.0.0.1:%d" % port, self, retries=2)
        with self.assertRaises(LossdConnectionError) as cm:
            c.stream(name="x")  # refused means unsent: even a create is retried
        self.assertEqual(len(c.sleeps), 2)
        self.assertIsNone(cm.exception.status)


class TestPagination(TransportCase):

    def setUp(self):
        super().setUp()
        self.ids = ["s%02d" % i for i in range(7)]

        def page(req):
            limit = int(req["query"].get("limit", 100))
            after = req["query"].get("after")
            rest = [i for i in self.ids if after is None or i > after]
            items = rest[:limit]
            nxt = items[-1] if len(rest) > limit else None
            return 200, {}, {"streams": [{"id": i, "method": "sketch"} for i in items],
                             "next": nxt}
        self.fake.default = page

    def test_iterates_all_pages(self):
        got = [s.id for s in self.client.streams(page_size=3)]
        self.assertEqual(got, self.ids)
        self.assertEqual([r["query"] for r in self.fake.requests],
                         [{"limit": "3"}, {"limit": "3", "after": "s02"},
                          {"limit": "3", "after": "s05"}])

    def test_is_lazy(self):
        it = self.client.streams(page_size=2)
        first = next(it)
        self.assertEqual((first.id, first.info["method"]), ("s00", "sketch"))
        self.assertEqual(len(self.fake.requests), 1)

    def test_link_header(self):
        pages = [(200, {"Link": '</v1/streams?page=2>; rel="next"'}, {"streams": [{"id": "a"}]}),
                 (200, {}, {"streams": [{"id": "b"}]})]
        self.fake.script = pages
        self.assertEqual([s.id for s in self.client.streams()], ["a", "b"])
        self.assertEqual(self.fake.requests[1]["target"], "/v1/streams?page=2")

    def test_loop_detected(self):
        self.fake.default = lambda req: (200, {}, {"streams": [{"id": "a"}], "next": "a"})
        with self.assertRaises(LossdError) as cm:
            list(self.client.streams())
        self.assertEqual(cm.exception.code, "pagination_loop")


# --- callbacks ----------------------------------------------------------------------

def _fresh_import(name, fakes):
    """Import lossd_client.<name> with sys.modules patched by fakes (a dict;
    a value of None hides a real module)."""
    saved = {k: sys.modules.get(k) for k in list(fakes) + ["lossd_client." + name]}
    try:
        for k, v in fakes.items():
            sys.modules[k] = v
        sys.modules.pop("lossd_client." + name, None)
        return importlib.import_module("lossd_client." + name)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class CallbackCase(unittest.TestCase):
    def setUp(self):
        self.mini = MiniLossd()
        self.addCleanup(self.mini.stop)
        self.client = quick_client(self.mini.server.url, self, retries=1)
        self.addCleanup(self.client.close)
        # 12 validation rows from a fixed "model": score = x
        self.x = [0.05, 0.9, 0.4, 0.35, 0.8, 0.1, 0.7, 0.2, 0.65, 0.3, 0.95, 0.5]
        self.y = [0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1]
        for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TF_CONFIG"):
            if k in os.environ:
                self.addCleanup(os.environ.__setitem__, k, os.environ.pop(k))

    def requests(self, suffix):
        return [r for r in self.mini.server.requests if r["path"].endswith(suffix)]


class TestRanks(CallbackCase):

    def test_rank_from_environment(self):
        from lossd_client._callbacks import distributed_rank
        self.assertEqual(distributed_rank({}), (0, 1))
        self.assertEqual(distributed_rank({"RANK": "3", "WORLD_SIZE": "4"}), (3, 4))
        self.assertEqual(distributed_rank({"LOCAL_RANK": "1"}), (1, 2))
        self.assertEqual(distributed_rank({"RANK": "0", "LOCAL_RANK": "1",
                                           "WORLD_SIZE": "2"}), (0, 2))
        self.assertEqual(distributed_rank({"RANK": "x"}), (0, 1))

    def test_keras_rank_from_tf_config_and_strategy(self):
        mod = _fresh_import("keras", {"keras": None, "tensorflow": None})
        cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                     "index": 1}})}
        self.assertEqual(mod.keras_rank(None, env), (2, 3))
        env = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["b", "c"]},
                                        "task": {"type": "worker", "index": 0}})}
        self.assertEqual(mod.keras_rank(None, env), (0, 2))

        class Resolver:
            task_type, task_id = "worker", 1

            def cluster_spec(self):
                return {"worker": ["b", "c", "d"]}

        model = types.SimpleNamespace(
            distribute_strategy=types.SimpleNamespace(cluster_resolver=Resolver()))
        self.assertEqual(mod.keras_rank(model, {"RANK": "0"}), (1, 3))
        self.assertEqual(mod.keras_rank(object(), {"RANK": "2", "WORLD_SIZE": "3"}), (2, 3))


class TestKerasCallback(CallbackCase):

    def keras_module(self):
        fake = types.ModuleType("keras")
        fake.callbacks = types.ModuleType("keras.callbacks")

        class Callback:
            def __init__(self):
                self.model = None

            def set_model(self, model):
                self.model = model

        fake.callbacks.Callback = Callback
        return fake

    def test_subclasses_keras_callback_when_present(self):
        fake = self.keras_module()
        mod = _fresh_import("keras", {"keras": fake})
        self.assertTrue(mod.KERAS_AVAILABLE)
        self.assertTrue(issubclass(mod.LossdCallback, fake.callbacks.Callback))

    def test_imports_without_keras(self):
        mod = _fresh_import("keras", {"keras": None, "tensorflow": None})
        self.assertFalse(mod.KERAS_AVAILABLE)
        cb = mod.LossdCallback(self.client)
        cb.set_model(object())

    def test_epoch_end_posts_validation_and_fills_logs(self):
        mod = _fresh_import("keras", {"keras": self.keras_module()})

        class Model:
            calls = 0

            def predict(self, x, batch_size=None, verbose=None):
                Model.calls += 1
                return [v for v in x]

        cb = mod.LossdCallback(self.client, {"name": "val", "loss": {"loss": "binary_crossentropy"}},
                               validation_data=(self.x, self.y), chunk=5)
        cb.set_model(Model())
        cb.on_train_begin({})
        for epoch in range(2):
            logs = {"loss": 0.3}
            cb.on_epoch_end(epoch, logs)
            self.assertAlmostEqual(logs["lossd_auc"], exact_auc(self.y, self.x), places=12)
            self.assertAlmostEqual(logs["lossd_loss"], bce(self.y, self.x), places=12)
            self.assertEqual(logs["lossd_count"], len(self.y))  # reset each epoch
            self.assertIsInstance(logs["lossd_count"], int)
            self.assertEqual(logs["loss"], 0.3)
        updates = self.requests("/update")
        self.assertEqual(len(updates), 6)  # 12 rows in chunks of 5, two epochs
        self.assertTrue(all("y_pred" in r["json"] for r in updates))
        self.assertEqual(len({r["json"]["batch_id"] for r in updates}), 6)
        self.assertEqual(Model.calls, 2)
        self.assertEqual([h["epoch"] for h in cb.history], [0, 1])
        self.assertEqual(cb.failures, 0)

    def test_epoch_end_checkpoints_where_the_server_can(self):
        mod = _fresh_import("keras", {"keras": self.keras_module()})
        self.mini.takes_checkpoint = True
        cb = mod.LossdCallback(self.client, {"name": "val", "loss": {"loss": "binary_crossentropy"}},
                               validation_data=(self.x, self.y), predict=lambda m, x: list(x))
        cb.on_train_begin({})
        for epoch in range(3):
            logs = {}
            cb.on_epoch_end(epoch, logs)
            self.assertEqual(logs["lossd_count"], 12)  # emptied by each checkpoint
        sent = [r["json"] for r in self.requests("/checkpoint")]
        self.assertEqual([(b["step"], b["label"]) for b in sent],
                         [(0, "epoch-0"), (1, "epoch-1"), (2, "epoch-2")])
        self.assertEqual(len(self.requests("/reset")), 1)  # training begins
        self.assertEqual(cb.failures, 0)

    def test_custom_loop_update_then_epoch_end(self):
        mod = _fresh_import("keras", {"keras": self.keras_module()})
        cb = mod.LossdCallback(self.client, {"name": "loop"})
        for epoch in range(2):
            cb.update(self.x[:6], self.y[:6])
            cb.update(self.x[6:], self.y[6:])
            logs = {}
            cb.on_epoch_end(epoch, logs)
            self.assertEqual(logs["lossd_count"], 12)  # posted here: reset after reading
            self.assertAlmostEqual(logs["lossd_auc"], exact_auc(self.y, self.x), places=12)

    def test_read_only_mode_and_y_score(self):
        mod = _fresh_import("keras", {"keras": self.keras_module()})
        s = self.client.stream(name="auc_only")
        s.update(self.y, y_score=self.x)
        cb = mod.LossdCallback(s)
        for epoch in range(2):  # only reads: the other process's data stays
            logs = {}
            cb.on_train_begin(logs)
            cb.on_epoch_end(epoch, logs)
            self.assertAlmostEqual(logs["lossd_auc"], exact_auc(self.y, self.x), places=12)
            self.assertNotIn("lossd_loss", logs)
        self.assertEqual(self.requests("/reset"), [])

    def test_rank_one_posts_reads_and_never_resets(self):
        mod = _fresh_import("keras", {"keras": self.keras_module()})
        s = self.client.stream(name="ranks")
        barriers = []
        ranks = [mod.LossdCallback(s, validation_data=(self.x[k::2], self.y[k::2]),
                                   predict=lambda m, x: list(x), rank=k, world_size=2,
                                   barrier=lambda: barriers.append(1)) for k in (0, 1)]
        logs = [{}, {}]
        for k in (1, 0):  # rank 1 posts first; the barrier is the caller's
            ranks[k].guard("post", ranks[k]._post_validation, 0)
        for k in (0, 1):
            self.assertIsNotNone(ranks[k].guard("read", ranks[k].stream.result))
        ranks[0].on_epoch_end(0, logs[0])
        # rank 0's epoch end posts its shard again under the same batch ids
        self.assertEqual(logs[0]["lossd_count"], 12)
        self.assertEqual(len(self.requests("/reset")), 1)
        ranks[1].on_epoch_end(0, logs[1])
        self.assertEqual(len(self.requests("/reset")), 1)  # rank 1 does not reset
        self.assertEqual(ranks[1].history, [])
        self.assertEqual(len(ranks[0].history), 1)
        self.assertTrue(barriers)

    def test_service_errors_are_logged_counted_and_training_goes_on(self):
        mod = _fresh_import("keras", {"keras": self.keras_module()})
        cb = mod.LossdCallback(Stream(self.client, "missing"))
        logs = {"loss": 1.0}
        with self.assertLogs("lossd_client", "WARNING") as cm:
            cb.on_epoch_end(0, logs)
            cb.on_epoch_end(1, logs)
        self.assertEqual(logs, {"loss": 1.0})
        self.assertTrue(any("unknown_stream" in m for m in cm.output), cm.output)
        self.assertEqual(cb.failures, 2)
        self.assertEqual(cb.last_error.code, "unknown_stream")
        for strict in (mod.LossdCallback(Stream(self.client, "missing"), strict=True),
                       mod.LossdCallback(Stream(self.client, "missing"), on_error="raise")):
            with self.assertRaises(LossdError):
                strict.on_epoch_end(0, {})


class FakeTensor:
    """What the hook needs of a torch.Tensor."""

    def __init__(self, v, floating=True):
        self.v, self.floating = v, floating

    def detach(self):
        return self

    def is_floating_point(self):
        return self.floating

    def float(self):
        return self

    def cpu(self):
        return self

    def tolist(self):
        return list(self.v)


class TestTorchHook(CallbackCase):

    def torch_module(self):
        return _fresh_import("torch", {"lightning": None, "lightning.pytorch": None,
                                       "lightning.pytorch.callbacks": None,
                                       "pytorch_lightning": None,
                                       "pytorch_lightning.callbacks": None})

    def test_plain_class_without_lightning(self):
        mod = self.torch_module()
        self.assertFalse(mod.LIGHTNING_AVAILABLE)
        from lossd_client._callbacks import StreamMetric
        self.assertEqual(mod.LossdHook.__mro__[1:], (mod._Hook, StreamMetric, object))

    def test_subclasses_lightning_callback_when_present(self):
        pkgs = {n: types.ModuleType(n) for n in
                ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks")}

        class Callback:
            pass
        pkgs["lightning.pytorch.callbacks"].Callback = Callback
        mod = _fresh_import("torch", pkgs)
        self.assertTrue(mod.LIGHTNING_AVAILABLE)
        self.assertTrue(issubclass(mod.LossdHook, Callback))
        self.assertTrue(issubclass(mod.LossdTrainHook, Callback))

    def test_validation_epoch_logs_auc_and_loss(self):
        mod = self.torch_module()
        logged, fn_calls = {}, []

        class Module:
            def log(self, k, v):
                logged[k] = v

        class Trainer:
            sanity_checking = False
            global_rank = 0
            current_epoch = 0

        hook = mod.LossdHook(self.client, {"name": "val", "loss": {"loss": "binary_crossentropy"}},
                             log_fn=fn_calls.append)
        trainer, module = Trainer(), Module()
        for epoch in range(2):
            trainer.current_epoch = epoch
            hook.on_validation_epoch_start(trainer, module)
            for i in range(0, 12, 4):
                hook.update(FakeTensor(self.x[i:i + 4]), FakeTensor(self.y[i:i + 4], False))
                # what validation_step returned (None, a loss) is not looked at
                hook.on_validation_batch_end(trainer, module, None, ("x", "y"), i // 4)
            hook.on_validation_epoch_end(trainer, module)
            self.assertAlmostEqual(logged["lossd_auc"], exact_auc(self.y, self.x), places=12)
            self.assertAlmostEqual(logged["lossd_loss"], bce(self.y, self.x), places=12)
            self.assertEqual(logged["lossd_count"], 12)
            self.assertIsInstance(logged["lossd_count"], int)
        self.assertEqual(len(fn_calls), 2)
        self.assertEqual([h["epoch"] for h in hook.history], [0, 1])
        ids = [r["json"]["batch_id"] for r in self.requests("/update")]
        self.assertEqual(len(ids), 6)
        self.assertEqual(len(set(ids)), 6)  # distinct across epochs
        self.assertEqual(hook.failures, 0)
        # reset at the first epoch's start, then after each reading
        self.assertEqual(len(self.requests("/reset")), 3)

    def test_step_outputs_never_raise(self):
        mod = self.torch_module()
        hook = mod.LossdHook(self.client, {"name": "x"}, extract=mod.default_extract)
        gone = mod.LossdHook(Stream(self.client, "gone"))
        with self.assertLogs("lossd_client", "WARNING"):
            hook.on_validation_batch_end(None, None, None, None, 0)      # returned None
            hook.on_validation_batch_end(None, None, 0.25, ("x",), 1)    # returned a loss
            gone.update(FakeTensor([0.5, 0.2]), FakeTensor([1, 0], False))  # 404
            self.assertEqual(gone.failures, 1)
            self.assertIsNone(gone.compute())
        self.assertEqual(hook.failures, 2)
        self.assertEqual(gone.failures, 2)
        self.assertIsInstance(gone.last_error, LossdError)
        self.assertEqual(len(self.requests("/update")), 1)
        hook.on_validation_batch_end(None, None, {"preds": FakeTensor(self.x)},
                                     ("x", FakeTensor(self.y, False)), 2)
        self.assertEqual(hook.failures, 2)
        self.assertEqual(len(self.requests("/update")), 2)
        strict = mod.LossdHook(self.client, {"name": "x"}, extract=mod.default_extract,
                               strict=True)
        with self.assertRaises(ValueError):
            strict.on_validation_batch_end(None, None, None, None, 0)
        with self.assertRaises(LossdError):
            mod.LossdHook(Stream(self.client, "gone"), strict=True).update([0.5], [1])

    def test_sanity_check_is_not_posted(self):
        mod = self.torch_module()

        class Trainer:
            sanity_checking = True

        hook = mod.LossdHook(self.client, {"name": "v2"}, extract=mod.default_extract)
        hook.on_validation_epoch_start(Trainer(), None)
        hook.on_validation_batch_end(Trainer(), None, FakeTensor([0.5]), (None, [1]), 0)
        hook.on_validation_epoch_end(Trainer(), None)
        self.assertEqual(hook.history, [])
        self.assertEqual(self.requests("/update"), [])
        self.assertEqual(self.requests("/reset"), [])

    def test_plain_loop_with_transform(self):
        mod = self.torch_module()
        hook = mod.LossdHook(self.client, {"name": "plain"},
                             transform=lambda t: FakeTensor([1 - v for v in t.v]))
        hook.update(FakeTensor(self.x), self.y)
        metrics = hook.compute()
        flipped = [1 - v for v in self.x]
        self.assertAlmostEqual(metrics["lossd_auc"], exact_auc(self.y, flipped), places=12)
        self.assertIn("y_score", self.requests("/update")[0]["json"])  # no loss: scores

    def test_rank_one_posts_but_never_resets_or_reads(self):
        mod = self.torch_module()
        s = self.client.stream(name="ddp")
        r0 = mod.LossdHook(s, rank=0, world_size=2, barrier=lambda: None)
        r1 = mod.LossdHook(s, rank=1, world_size=2, barrier=lambda: None)
        for k, h in enumerate((r0, r1)):
            h.on_validation_epoch_start(None, None)
            h.update(FakeTensor(self.x[k::2]), self.y[k::2])
        self.assertIsNone(r1.compute(reset=True))
        self.assertEqual(len(self.requests("/reset")), 1)  # r0's first-epoch reset
        m = r0.compute(reset=True)
        self.assertEqual(m["lossd_count"], 12)
        self.assertAlmostEqual(m["lossd_auc"], exact_auc(self.y, self.x), places=12)
        self.assertEqual(len(self.requests("/reset")), 2)
        self.assertEqual(r1.history, [])
        ids = [r["json"]["batch_id"] for r in self.requests("/update")]
        self.assertTrue(ids[0].endswith("-k0-b0") and ids[1].endswith("-k1-b0"), ids)

    def test_train_hook_step_on_a_server_without_step(self):
        mod = self.torch_module()
        hook = mod.LossdTrainHook(self.client, {"name": "train"})

        class Trainer:
            global_step = 0
            current_epoch = 0

        logged = {}
        module = types.SimpleNamespace(log=lambda k, v: logged.__setitem__(k, v))
        hook.on_train_epoch_start(Trainer(), module)
        with self.assertLogs("lossd_client", "WARNING") as cm:
            for step in range(3):
                r = hook.update(FakeTensor(self.x[4 * step:4 * step + 4]),
                                self.y[4 * step:4 * step + 4], step=step)
                self.assertIsNotNone(r)
        self.assertEqual(len(cm.output), 1, cm.output)  # said once
        self.assertIs(hook.step_supported, False)
        sent = [r["json"] for r in self.requests("/update")]
        # the first batch is sent again without step, the rest never carry it
        self.assertEqual(["step" in b for b in sent], [True, False, False, False])
        hook.on_train_epoch_end(Trainer(), module)
        self.assertEqual(logged["lossd_train_count"], 12)
        self.assertEqual(hook.failures, 0)

    def test_epoch_end_checkpoints_with_reset_where_the_server_can(self):
        mod = self.torch_module()
        self.mini.takes_checkpoint = True

        class Trainer:
            sanity_checking = False
            global_step = 0
            current_epoch = 0

        hook = mod.LossdHook(self.client, {"name": "val", "loss": {"loss": "binary_crossentropy"}})
        trainer = Trainer()
        for epoch in range(2):
            trainer.current_epoch, trainer.global_step = epoch, 100 * (epoch + 1)
            hook.on_validation_epoch_start(trainer, None)
            hook.update(FakeTensor(self.x), self.y)
            hook.on_validation_epoch_end(trainer, None)
            self.assertEqual(hook.history[-1]["lossd_count"], 12)
            self.assertAlmostEqual(hook.history[-1]["lossd_auc"], exact_auc(self.y, self.x),
                                   places=12)
        sent = [r["json"] for r in self.requests("/checkpoint")]
        self.assertEqual([(b["step"], b["label"], b["reset"]) for b in sent],
                         [(100, "epoch-0", True), (200, "epoch-1", True)])
        self.assertEqual(len(self.requests("/reset")), 1)  # the first epoch's start only
        self.assertIs(hook.checkpoint_supported, True)
        ckpts = self.mini.streams[hook.stream.id]["ckpts"]
        self.assertEqual([c["count"] for c in ckpts], [12, 12])

    def test_train_hook_step_on_a_server_with_step(self):
        mod = self.torch_module()
        self.mini.takes_step = True
        hook = mod.LossdTrainHook(self.client, {"name": "train"})
        for step in range(3):
            hook.update(FakeTensor(self.x), self.y, step=10 + step)
        self.assertIs(hook.step_supported, True)
        self.assertEqual([r["json"].get("step") for r in self.requests("/update")],
                         [10, 11, 12])


class TestExample(unittest.TestCase):

    def test_train_loop_against_the_fake(self):
        mini = MiniLossd()
        mini.takes_step = mini.takes_checkpoint = True
        self.addCleanup(mini.stop)
        ex_dir = os.path.join(PKG_ROOT, "examples")
        sys.path.insert(0, ex_dir)
        self.addCleanup(sys.path.remove, ex_dir)
        import train_loop
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = train_loop.main(["--url", mini.server.url, "--epochs", "2", "--delete"])
        self.assertEqual(rc, 0)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("epoch")]
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(all("val_count=400" in ln for ln in lines), lines)
        self.assertGreater(float(lines[-1].split("val_auc=")[1].split()[0]), 0.8)
        steps = [r["json"]["step"] for r in mini.server.requests if r["path"].endswith("/update")]
        self.assertEqual(steps[:21], list(range(20)) + [20])  # 20 training steps, then val
        self.assertEqual(mini.streams, {})  # --delete removed them


# --- against a real lossd -----------------------------------------------------------

REPO_ROOT = os.path.dirname(os.path.dirname(PKG_ROOT))
E2E_DIR = os.path.join(REPO_ROOT, "tests", "e2e")


class _Launched:
    """Fallback launcher when tests/e2e/lossd_harness.py is not there:
    LOSSD_BIN on a free loopback port with a temporary data dir."""

    def __init__(self, binary):
        self.tmp = tempfile.TemporaryDirectory(prefix="lossd-client-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, LOSSD_BIND="127.0.0.1", LOSSD_PORT=str(port),
                   LOSSD_DATA_DIR=self.tmp.name)
        self.log = open(os.path.join(self.tmp.name, "lossd.log"), "wb")
        self.proc = subprocess.Popen([binary], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % port
        deadline = time.time() + 15
        probe = Client(self.url, retries=0, timeout=1)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("lossd exited with %s" % self.proc.returncode)
            try:
                probe.health()
                break
            except LossdError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError("lossd did not answer /healthz in 15 s")
                time.sleep(0.05)
        probe.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.tmp.cleanup()


def start_server():
    """(url, stop) for a lossd started by the e2e harness when it exists."""
    if os.path.exists(os.path.join(E2E_DIR, "lossd_harness.py")):
        if E2E_DIR not in sys.path:
            sys.path.insert(0, E2E_DIR)
        import lossd_harness
        return lossd_harness_start(lossd_harness)
    srv = _Launched(os.environ["LOSSD_BIN"])
    return srv.url, srv.stop


def lossd_harness_start(harness):
    srv = harness.Lossd()
    srv.start()
    return srv.url, srv.stop


@unittest.skipUnless(os.environ.get("LOSSD_BIN"),
                     "LOSSD_BIN is not set: no lossd binary to test against "
                     "(ctest runs this class as e2e_test_client)")
class LiveServerTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.url, cls._stop = start_server()
        cls.client = Client(cls.url, retries=3, backoff=0.05, timeout=30)
        # A server still being written answers 501 for what it lacks: such
        # tests are skipped with that reason, never passed silently.
        cls.no_streams = None
        try:
            cls.client.stream(name="probe-" + uuid.uuid4().hex[:8]).delete()
        except LossdError as e:
            if e.status != 501:
                raise
            cls.no_streams = str(e)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls._stop()

    def setUp(self):
        self.tag = uuid.uuid4().hex[:10]

    def needs_streams(self):
        if self.no_streams:
            self.skipTest("this lossd does not implement streams yet (%s)" % self.no_streams)

    def test_health_and_version(self):
        self.assertIsInstance(self.client.health(), dict)
        self.assertTrue(self.client.ready())
        self.assertIn("version", self.client.version())

    def test_step_checkpoint_and_history(self):
        """update(step=), checkpoint(reset=) and history() over several pages:
        the step points add the batches of each step, the checkpoints hold the
        readings taken before each reset, CSV pages are joined under one
        header."""
        self.needs_streams()
        s = self.client.stream(name="hist-" + self.tag, method="exact",
                               loss={"loss": "binary_crossentropy"})
        try:
            ys = {}
            for step in range(1, 8):
                for worker in range(2):
                    y = [(step + worker + i) % 2 for i in range(4)]
                    p = [0.2 + 0.1 * ((step * 3 + worker + i) % 7) for i in range(4)]
                    s.update(y, y_pred=p, step=step)
                    ys.setdefault(step, []).extend(y)
                if step % 3 == 0:
                    r = s.result()
                    ck = s.checkpoint(step, label="epoch-%d" % (step // 3), reset=True)
                    self.assertEqual(ck["step"], step)
                    self.assertEqual(ck["count"], r["count"])
                    self.assertEqual(ck["auc"], r["auc"])
                    self.assertEqual(s.result()["count"], 0)
            points = s.history(page_size=2)
            self.assertEqual([q["step"] for q in points], list(range(1, 8)))
            for q in points:
                self.assertEqual(q["count"], 8)
                self.assertEqual(q["positives"], sum(ys[q["step"]]))
            self.assertEqual([q["step"] for q in s.history(start=3, end=5)], [3, 4, 5])
            cks = s.history("checkpoints", page_size=1)
            self.assertEqual([(c["step"], c["label"]) for c in cks],
                             [(3, "epoch-1"), (6, "epoch-2")])
            text = s.history(format="csv", page_size=3)
            rows = text.strip().split("\n")
            self.assertEqual(len(rows), 1 + 7, text)
            self.assertTrue(rows[0].startswith("step"), rows[0])
            self.assertEqual([r.split(",")[0] for r in rows[1:]], [str(i) for i in range(1, 8)])
            with self.assertRaises(ValueError):
                s.history(series="epochs")
        finally:
            s.delete()

    def test_binary_crossentropy_lists_and_b64_agree(self):
        y = [0, 1, 1, 0, 1]
        p = [0.1, 0.8, 0.6, 0.3, 0.99]
        want = bce(y, p)
        r1 = self.client.loss("binary_crossentropy", y, p)
        r2 = self.client.loss("binary_crossentropy", array.array("B", y), array.array("d", p),
                              )
        self.assertTrue(math.isclose(r1["loss"], want, rel_tol=2e-5), (r1, want))
        self.assertTrue(math.isclose(r2["loss"], want, rel_tol=2e-5), (r2, want))
        self.assertEqual(r1["count"], 5)

    def test_sparse_crossentropy_from_logits_int64_labels(self):
        logits = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0], [-2.0, 4.0, 0.0]]
        labels = [0, 2, 1, 1]
        want = 0.0
        for row, t in zip(logits, labels):
            m = max(row)
            lse = m + math.log(sum(math.exp(v - m) for v in row))
            want += lse - row[t]
        want /= len(labels)
        flat = array.array("f", [v for row in logits for v in row])
        enc = encode_tensor(flat)
        enc["shape"] = [4, 3]
        r = self.client.loss("sparse_categorical_crossentropy", array.array("q", labels), enc,
                             from_logits=True)
        self.assertTrue(math.isclose(r["loss"], want, rel_tol=2e-5), (r["loss"], want))

    def test_keras_class_weight_dict_matches_list(self):
        probs = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]]
        labels = [0, 2, 1]
        a = self.client.loss("sparse_categorical_crossentropy", labels, probs,
                             class_weight={2: 3.0, 0: 0.5})
        b = self.client.loss("sparse_categorical_crossentropy", labels, probs,
                             class_weight=[0.5, 1.0, 3.0])
        w = [0.5, 1.0, 3.0]
        want = sum(-w[t] * math.log(p[t]) for p, t in zip(probs, labels)) / sum(
            w[t] for t in labels)
        self.assertTrue(math.isclose(a["loss"], want, rel_tol=2e-5), (a["loss"], want))
        self.assertTrue(math.isclose(a["loss"], b["loss"], rel_tol=1e-12))

    def test_auc_exact(self):
        y = [0, 0, 1, 1, 0, 1, 1, 0, 1, 0]
        s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.4, 0.2, 0.55, 0.7]
        r = self.client.auc(y, s)
        self.assertTrue(math.isclose(r["auc"], exact_auc(y, s), rel_tol=2e-5), r)

    def test_problem_json(self):
        with self.assertRaises(LossdError) as cm:
            self.client.loss("binary_crossentropy", [0, 1], [0.1, 0.9], from_logit=True)
        e = cm.exception
        self.assertEqual((e.status, e.code), (422, "unknown_field"))
        self.assertTrue(e.pointer and "from_logit" in e.pointer, e.pointer)
        with self.assertRaises(LossdError) as cm:
            self.client.loss("binary_crossentropy", [0, 1, 1], [0.1, 0.9])
        self.assertEqual(cm.exception.status, 422)

    def test_stream_lifecycle(self):
        self.needs_streams()
        name = "cl-" + self.tag
        s = self.client.stream(name=name, method="exact",
                               loss={"loss": "binary_crossentropy"})
        self.addCleanup(self._delete_quietly, s)
        self.assertEqual(s.name, name)
        y1, p1 = [0, 1, 1, 0], [0.2, 0.7, 0.4, 0.5]
        y2, p2 = [1, 0, 1], [0.9, 0.1, 0.3]
        r = s.update(y1, y_pred=p1, batch_id="b1")
        self.assertEqual(r["count"], 4)
        r = s.update(y1, y_pred=p1, batch_id="b1")  # a retry: not counted twice
        self.assertEqual(r["count"], 4)
        r = s.update(array.array("B", y2), y_pred=array.array("f", p2))
        self.assertEqual(r["count"], 7)
        res = s.result()
        self.assertEqual(res["count"], 7)
        self.assertTrue(math.isclose(res["auc"], exact_auc(y1 + y2, p1 + p2), rel_tol=2e-5))
        loss = res["loss"]["loss"] if isinstance(res["loss"], dict) else res["loss"]
        self.assertTrue(math.isclose(loss, bce(y1 + y2, p1 + p2), rel_tol=2e-5), res)
        self.assertIn("curve", s.result(curve=True))

        other = self.client.stream(name=name + "-b", method="exact",
                                   loss={"loss": "binary_crossentropy"})
        self.addCleanup(self._delete_quietly, other)
        other.merge(s)
        self.assertEqual(other.result()["count"], 7)
        mismatched = self.client.stream(name=name + "-c", method="binned")
        self.addCleanup(self._delete_quietly, mismatched)
        with self.assertRaises(LossdError) as cm:
            mismatched.merge(s.state())
        self.assertEqual(cm.exception.status, 409)

        s.reset()
        self.assertEqual(s.result()["count"], 0)
        s.delete()
        with self.assertRaises(LossdError) as cm:
            self.client.get_stream(s.id)
        self.assertEqual(cm.exception.status, 404)

    def test_sketch_stream_error_bound(self):
        self.needs_streams()
        s = self.client.stream(name="sk-" + self.tag)
        self.addCleanup(self._delete_quietly, s)
        y = [i % 3 == 0 for i in range(300)]
        sc = [((i * 37) % 101) / 101.0 for i in range(300)]
        y = [int(v) for v in y]
        for i in range(0, 300, 100):
            s.update(y[i:i + 100], y_score=sc[i:i + 100])
        res = s.result()
        self.assertEqual(res["count"], 300)
        bound = res.get("error_bound", 0.0)
        self.assertLessEqual(abs(res["auc"] - exact_auc(y, sc)), bound + 2e-5, res)

    def test_streams_pagination(self):
        self.needs_streams()
        created = {}
        for i in range(5):
            s = self.client.stream(name="pg-%s-%d" % (self.tag, i))
            self.addCleanup(self._delete_quietly, s)
            created[s.id] = s.name
        listed = {s.id: s for s in self.client.streams(page_size=2)}
        for sid, name in created.items():
            self.assertIn(sid, listed)
            self.assertEqual(listed[sid].name, name)
        self.assertEqual(len(listed), len(set(listed)))

    def test_example_train_loop(self):
        """examples/train_loop.py as a user runs it: the server then holds the
        loss of every training step and one checkpoint per epoch, the values
        the example printed, for the dashboard to plot."""
        self.needs_streams()
        ex = os.path.join(PKG_ROOT, "examples", "train_loop.py")
        out = subprocess.run([sys.executable, ex, "--url", self.url, "--epochs", "3",
                              "--run", "ex-" + self.tag],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("epoch")]
        self.assertEqual(len(lines), 3, out.stdout)
        printed = [dict(kv.split("=") for kv in ln.split()[4:]) for ln in lines]
        self.assertGreater(float(printed[-1]["val_auc"]), 0.8)
        ids = dict(re.findall(r"^(train|val) stream (\w+):", out.stdout, re.M))
        train, val = (self.client.get_stream(ids[k]) for k in ("train", "val"))
        for s in (train, val):
            self.addCleanup(self._delete_quietly, s)
        # train: one point per minibatch (1,000 rows / 50), loss falling
        steps = train.history()
        self.assertEqual([p["step"] for p in steps], list(range(60)))
        self.assertTrue(all(p["count"] == 50 and p["loss"] is not None for p in steps))
        first, last = (sum(p["loss"] for p in part) / 5 for part in (steps[:5], steps[-5:]))
        self.assertLess(last, first)
        # val: one point per epoch end, then the checkpoint with reset
        self.assertEqual([(p["step"], p["count"]) for p in val.history()],
                         [(20, 400), (40, 400), (60, 400)])
        for s, key, rows in ((val, "val", 400), (train, "train", 1000)):
            ck = s.history(series="checkpoints")
            self.assertEqual([(c["step"], c["label"], c["count"]) for c in ck],
                             [(20 * e, "epoch-%d" % e, rows) for e in (1, 2, 3)])
            self.assertEqual(["%.4f" % c["auc"] for c in ck],
                             [p[key + "_auc"] for p in printed])
            self.assertEqual(["%.4f" % c["loss"] for c in ck],
                             [p[key + "_loss"] for p in printed])
        self.assertEqual(val.result()["count"], 0)  # emptied by the last reset

    def test_torch_hook_against_lossd(self):
        self.needs_streams()
        mod = _fresh_import("torch", {"lightning": None, "lightning.pytorch": None,
                                      "lightning.pytorch.callbacks": None,
                                      "pytorch_lightning": None,
                                      "pytorch_lightning.callbacks": None})
        x = [0.05, 0.9, 0.4, 0.35, 0.8, 0.1, 0.7, 0.2, 0.65, 0.3, 0.95, 0.5]
        y = [0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1]
        hook = mod.LossdHook(self.client, {"name": "hook-" + self.tag, "method": "exact",
                                           "loss": {"loss": "binary_crossentropy"}},
                             on_error="raise")
        self.addCleanup(lambda: self._delete_quietly(hook.stream))
        for _ in range(2):  # the second epoch must not double the counts
            hook.on_validation_epoch_start(None, None)
            for i in range(0, 12, 5):
                hook.update(FakeTensor(x[i:i + 5]), FakeTensor(y[i:i + 5], False))
            hook.on_validation_epoch_end(None, None)
            m = hook.history[-1]
            self.assertEqual(m["lossd_count"], 12)
            self.assertTrue(math.isclose(m["lossd_auc"], exact_auc(y, x), rel_tol=2e-5), m)
            self.assertTrue(math.isclose(m["lossd_loss"], bce(y, x), rel_tol=2e-5), m)

    def test_overload_is_retried_and_counted_once(self):
        """A real 503 overloaded (max-inflight 1, one worker held by the test
        hook) is retried after Retry-After, and the update lands once."""
        self.needs_streams()
        if not os.path.exists(os.path.join(E2E_DIR, "lossd_harness.py")):
            self.skipTest("needs tests/e2e/lossd_harness.py (test_hooks)")
        import lossd_harness
        with lossd_harness.Server(test_hooks=True, args=["--max-inflight", "1"]) as srv:
            c = Client(srv.url, retries=20, backoff=0.05, max_delay=0.25)
            self.addCleanup(c.close)
            s = c.stream(name="busy")
            held = []

            def hold_worker():
                # lossd counts a request out just after its reply, so the
                # create above may still occupy the only slot for a moment.
                for _ in range(20):
                    held.append(srv.post("/v1/_sleep?ms=1000", b"").status)
                    if held[-1] != 503:
                        return
                    time.sleep(0.01)
            hold = threading.Thread(target=hold_worker)
            hold.start()
            time.sleep(0.4)  # no other request meanwhile: /metrics would count too
            r = s.update([0, 1, 1], y_score=[0.1, 0.8, 0.7], batch_id="only-once")
            hold.join()
            self.assertEqual(held[-1], 200)
            # every 503 but the hold's own went to the update, which retried
            self.assertGreater(srv.metric("lossd_http_overloaded_total"), len(held) - 1)
            self.assertEqual(r["count"], 3)
            again = s.update([0, 1, 1], y_score=[0.1, 0.8, 0.7], batch_id="only-once")
            self.assertEqual(again["count"], 3)
            self.assertEqual(s.result()["count"], 3)
            c.close()

    @staticmethod
    def _delete_quietly(stream):
        try:
            stream.delete()
        except LossdError:
            pass


if __name__ == "__main__":
    unittest.main()
