"""End-to-end tests of lossd's HTTP service layer (server/).

Each test class starts the real binary (LOSSD_BIN) on 127.0.0.1 through
lossd_harness and talks HTTP to it: health and operations endpoints, the
problem+json errors (404, 405 with Allow, 413 from Content-Length before
the body, 415, 400, 422), framing refusals, raw-path stream ids, request
ids, metrics, a loss request, 200 concurrent requests, /healthz while the
workers are saturated, overload, and a clean SIGTERM drain.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from lossd_harness import LOSSD_BIN, Server, run_lossd

SCCE = {
    "loss": "sparse_categorical_crossentropy",
    "y_true": [1, 2],
    "y_pred": [[0.05, 0.95, 0], [0.1, 0.8, 0.1]],
}


class CommandLine(unittest.TestCase):
    def test_help(self):
        r = run_lossd(["--help"])
        self.assertEqual(r.returncode, 0)
        for flag in ("--bind", "--port", "--threads", "--http-threads", "--data-dir",
                     "--max-body", "--max-inflight", "--log-level", "LOSSD_PORT"):
            self.assertIn(flag, r.stdout)

    def test_operations_guide_documents_every_flag(self):
        src = os.environ.get("LOSSD_SOURCE_DIR", os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "..", ".."))
        with open(os.path.join(src, "docs", "OPERATIONS.md")) as f:
            guide = f.read()
        flags = re.findall(r"^  (--[a-z-]+)", run_lossd(["--help"]).stdout, re.M)
        self.assertGreater(len(flags), 10)
        for flag in flags:
            self.assertIn("`" + flag, guide,
                          "docs/OPERATIONS.md's configuration table lacks " + flag)
        for var in re.findall(r"\b(LOSSD_[A-Z_]+)", run_lossd(["--help"]).stdout):
            self.assertIn(var, guide, "docs/OPERATIONS.md lacks " + var)

    def test_version(self):
        r = run_lossd(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^lossd \d+\.\d+\.\d+")

    def test_usage_errors_exit_2(self):
        for args in (["--port", "99999"], ["--no-such-flag"], ["--threads"],
                     ["--max-body", "lots"], ["stray"]):
            r = run_lossd(args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("lossd:", r.stderr, args)
        r = run_lossd([], env={"LOSSD_PORT": "http"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("LOSSD_PORT", r.stderr)

    def test_check_probe(self):
        with Server() as srv:
            ok = run_lossd(["--check", srv.base_url + "/healthz"])
            self.assertEqual(ok.returncode, 0, ok.stderr)
            bad = run_lossd(["--check", srv.base_url + "/nope"])
            self.assertEqual(bad.returncode, 1)
        # Nothing listens there any more.
        gone = run_lossd(["--check", srv.base_url + "/healthz"])
        self.assertEqual(gone.returncode, 1)
        self.assertEqual(run_lossd(["--check", "ftp://x/"]).returncode, 1)


class Service(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(args=["--max-body", "1MiB", "--threads", "2"], test_hooks=True)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    # -- operations ------------------------------------------------------------
    def test_health_endpoints(self):
        for path in ("/healthz", "/livez", "/readyz"):
            r = self.srv.get(path)
            self.assertEqual(r.status, 200, path)
            self.assertTrue(r.headers["Content-Type"].startswith("application/json"))
            self.assertEqual(r.json(), {"status": "ok"})

    def test_head_healthz(self):
        r = self.srv.request("HEAD", "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")

    def test_version(self):
        r = self.srv.get("/v1/version")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("application/json"))
        v = r.json()
        self.assertRegex(v["version"], r"^\d+\.\d+\.\d+")
        self.assertIsInstance(v["build"], dict)
        self.assertIn("microhttpd", v["build"])

    def test_openapi(self):
        r = self.srv.get("/openapi.yaml")
        self.assertEqual(r.status, 200)
        self.assertIn("yaml", r.headers["Content-Type"])
        src = os.environ.get("LOSSD_SOURCE_DIR")
        if src:
            with open(os.path.join(src, "openapi.yaml"), "rb") as f:
                self.assertEqual(r.body, f.read())
        else:
            self.assertIn(b"openapi:", r.body)

    def test_metrics(self):
        self.srv.get("/healthz")
        self.srv.get("/definitely-missing")
        text = self.srv.metrics()
        r = self.srv.get("/metrics")
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        self.assertIn('lossd_http_requests_total{route="/healthz",method="GET",status="200"}', text)
        self.assertIn('lossd_http_requests_total{route="none",method="none",status="404"}', text)
        self.assertIn("# TYPE lossd_http_request_duration_seconds histogram", text)
        self.assertIn('lossd_http_request_duration_seconds_bucket{route="/healthz",method="GET",le="+Inf"}',
                      text)
        for g in ("lossd_http_in_flight_requests", "lossd_http_queue_depth",
                  "lossd_http_request_bytes_total", "lossd_http_response_bytes_total"):
            self.assertIsNotNone(self.srv.metric(g), g)
        self.assertIn("lossd_build_info{", text)
        # A request is counted when libmicrohttpd reports it completed, which
        # can be just after its client has the reply: wait (briefly) for the
        # count to move, then check it moved by exactly one.
        name = 'lossd_http_requests_total{route="/healthz",method="GET",status="200"}'
        n1 = self.srv.metric(name)
        time.sleep(0.2)
        n1 = self.srv.metric(name)
        self.srv.get("/healthz")
        deadline = time.monotonic() + 5
        n2 = self.srv.metric(name)
        while n2 == n1 and time.monotonic() < deadline:
            time.sleep(0.05)
            n2 = self.srv.metric(name)
        self.assertEqual(n2, n1 + 1)

    def test_request_id(self):
        r = self.srv.get("/healthz", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(r.headers["X-Request-Id"], "abc-123")
        line = self.srv.wait_log(lambda l: l.get("request_id") == "abc-123")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["path"], "/healthz")
        for k in ("bytes_out", "duration_ms"):
            self.assertIn(k, line)
        a = self.srv.get("/healthz").headers["X-Request-Id"]
        b = self.srv.get("/healthz").headers["X-Request-Id"]
        self.assertTrue(a and b and a != b)
        # An unusable id is replaced, not echoed.
        c = self.srv.get("/healthz", headers={"X-Request-Id": "x" * 500}).headers["X-Request-Id"]
        self.assertNotEqual(c, "x" * 500)

    def test_authorization_never_logged(self):
        self.srv.get("/healthz", headers={"Authorization": "Bearer s3cret-token",
                                          "X-Request-Id": "auth-check"})
        self.srv.wait_log(lambda l: l.get("request_id") == "auth-check")
        self.assertNotIn("s3cret-token", json.dumps(self.srv.logs))

    # -- errors -------------------------------------------------------------------
    def test_404(self):
        r = self.srv.get("/v2/nothing")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.problem()["code"], "not_found")

    def test_405_with_allow(self):
        r = self.srv.get("/v1/loss")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.problem()["code"], "method_not_allowed")
        self.assertEqual(r.headers["Allow"], "POST")
        r = self.srv.request("PUT", "/v1/streams/abc")
        self.assertEqual(r.status, 405)
        self.assertEqual(set(r.headers["Allow"].split(", ")), {"GET", "HEAD", "PATCH", "DELETE"})

    def test_413_from_content_length_before_the_body(self):
        # Headers only: the body never comes, so the 413 must not wait for it.
        t0 = time.monotonic()
        out = self.srv.raw(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\n"
                           b"Content-Length: 1000000000\r\n\r\n", timeout=5)
        self.assertLess(time.monotonic() - t0, 4)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), out[:200])
        self.assertIn(b"application/problem+json", head)
        self.assertEqual(json.loads(body)["code"], "body_too_large")

    def test_413_chunked_counted_as_it_arrives(self):
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * (64 * 1024))
        out = self.srv.raw(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 20 + b"0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:200])
        self.assertIn(b'"body_too_large"', out)

    def test_413_with_expect_100_continue(self):
        # A well-behaved client waits for "100 Continue"; it gets the 413
        # instead and never sends the body.
        out = self.srv.raw(b"POST /v1/auc HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\n"
                           b"Expect: 100-continue\r\n"
                           b"Content-Length: 1048577\r\n\r\n", timeout=5)
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:200])
        self.assertNotIn(b"100 Continue", out)

    def test_415(self):
        r = self.srv.post("/v1/loss", json.dumps(SCCE), headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415)
        self.assertEqual(r.problem()["code"], "unsupported_media_type")
        r = self.srv.post("/v1/loss", json.dumps(SCCE))  # no Content-Type at all
        self.assertEqual(r.status, 415)
        # Parameters and case do not matter.
        r = self.srv.post("/v1/loss", "{", headers={"Content-Type": "Application/JSON; charset=utf-8"})
        self.assertEqual(r.status, 400)

    def test_400_malformed(self):
        r = self.srv.post("/v1/loss", b"{\"loss\": ", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.problem()["code"], "malformed_json")

    def test_422(self):
        r = self.srv.post_json("/v1/loss", {"loss": "sparse_categorical_crossentropy",
                                            "y_true": [1, 2]})
        self.assertEqual(r.status, 422, r)
        p = r.problem()
        self.assertEqual(p["code"], "missing_field")
        r = self.srv.post_json("/v1/loss", dict(SCCE, from_logit=True))
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.problem()["code"], "unknown_field")

    def test_framing_refusals(self):
        base = (b"POST /v1/loss HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n")
        cases = [
            (b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", b"400", b"bad_framing"),
            (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400",
             b"bad_framing"),
            (b"Transfer-Encoding: gzip\r\n\r\n{}", b"501", b"unsupported_transfer_encoding"),
            (b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", b"501",
             b"unsupported_transfer_encoding"),
        ]
        for extra, status, code in cases:
            out = self.srv.raw(base + extra)
            self.assertTrue(out.startswith(b"HTTP/1.1 " + status), (extra, out[:200]))
            self.assertIn(code, out, extra)
            self.assertIn(b"Connection: close", out, extra)

    def test_oversize_idempotency_key_refused(self):
        r = self.srv.post_json("/v1/streams/s1/update", {}, headers={"Idempotency-Key": "k" * 300})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.problem()["code"], "bad_idempotency_key")

    def test_stream_ids_checked_on_the_raw_path(self):
        for path in ("/v1/streams/a%2Fb", "/v1/streams/a%00b", "/v1/streams/%2E%2E",
                     "/v1/streams/..%2F..%2Fetc/update", "/v1/streams/" + "a" * 129,
                     "/v1/streams/a%2Fb/state"):
            method = "POST" if path.endswith("update") else "GET"
            r = self.srv.request(method, path, body=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, path)
            self.assertEqual(r.problem()["code"], "invalid_stream_id", path)
        # A valid id reaches the stream handlers (whatever they answer).
        r = self.srv.get("/v1/streams/" + "a" * 128)
        self.assertNotIn(r.status, (400, 405), r)

    def test_stream_routes_exist(self):
        for method, path in (("POST", "/v1/streams"), ("GET", "/v1/streams"),
                             ("GET", "/v1/streams/s1"), ("DELETE", "/v1/streams/s1"),
                             ("POST", "/v1/streams/s1/update"),
                             ("POST", "/v1/streams/s1/reset"),
                             ("GET", "/v1/streams/s1/state"),
                             ("POST", "/v1/streams/s1/merge")):
            r = self.srv.request(method, path, body=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json"})
            self.assertNotEqual(r.status, 405, (method, path, r))
            if r.status >= 400:
                # A 404 may say the stream is unknown, never that the route is.
                self.assertNotEqual(r.problem()["code"], "not_found", (method, path, r))

    # -- work ------------------------------------------------------------------------
    def test_loss_request(self):
        r = self.srv.post_json("/v1/loss", SCCE)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["Content-Type"].startswith("application/json"))
        # Keras' SparseCategoricalCrossentropy docstring: 1.177.
        self.assertAlmostEqual(r.json()["loss"], 1.1769392, delta=1e-5)

    def test_keep_alive(self):
        conn = self.srv.connection()
        try:
            for _ in range(3):
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.read()
            conn.request("POST", "/v1/_sleep?ms=1", body=b"{}",
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read()), {"slept_ms": 1})
        finally:
            conn.close()

    def test_200_concurrent_requests(self):
        results = [None] * 200
        barrier = threading.Barrier(50)

        def one(i):
            if i < 50:
                barrier.wait(10)
            try:
                if i % 2:
                    r = self.srv.post_json("/v1/_sleep?ms=20", {}, timeout=60)
                else:
                    r = self.srv.post_json("/v1/loss", SCCE, timeout=60)
                results[i] = r.status
            except Exception as e:  # noqa: BLE001 - recorded and asserted below
                results[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(results, [200] * 200)


class Saturation(unittest.TestCase):
    def test_healthz_answers_while_workers_are_busy(self):
        with Server(args=["--threads", "2", "--http-threads", "2"], test_hooks=True) as srv:
            slow = []

            def sleeper():
                slow.append(srv.post_json("/v1/_sleep?ms=2500", {}, timeout=30).status)

            threads = [threading.Thread(target=sleeper) for _ in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 5
            while srv.metric("lossd_http_in_flight_requests") < 4:
                self.assertLess(time.monotonic(), deadline, "sleepers never got in flight")
                time.sleep(0.02)
            # Both workers are asleep and two more requests wait for them.
            self.assertGreaterEqual(srv.metric("lossd_http_queue_depth"), 1)
            for _ in range(10):
                t0 = time.monotonic()
                r = srv.get("/healthz", timeout=2)
                self.assertEqual(r.status, 200)
                self.assertLess(time.monotonic() - t0, 0.5)
            self.assertEqual(srv.get("/readyz").status, 200)
            for t in threads:
                t.join(30)
            self.assertEqual(slow, [200] * 4)

    def test_overloaded_503_with_retry_after(self):
        with Server(args=["--threads", "1", "--max-inflight", "1"], test_hooks=True) as srv:
            t = threading.Thread(target=lambda: srv.post_json("/v1/_sleep?ms=1500", {}))
            t.start()
            deadline = time.monotonic() + 5
            while srv.metric("lossd_http_in_flight_requests") < 1:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
            r = srv.post_json("/v1/loss", SCCE)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.problem()["code"], "overloaded")
            self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
            self.assertGreaterEqual(srv.metric("lossd_http_overloaded_total"), 1)
            t.join(10)


    def test_body_memory_budget(self):
        # One body of 1 MiB is being uploaded, most of it sent, and holds
        # the whole budget (a body takes budget as its bytes arrive, not
        # for its Content-Length): another body is refused at its headers,
        # a bodiless request is not. (--min-body-rate 0: however slowly a
        # sanitized build gets here, the upload is not cut.)
        with Server(args=["--max-body", "1MiB", "--max-buffered", "1MiB",
                          "--min-body-rate", "0"]) as srv:
            import socket
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            try:
                s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\n"
                          b"Content-Length: 1048576\r\n\r\n" + b" " * (1048576 - 1000))
                # Bounded wait for the daemon to take the upload in (under
                # ASan with ctest -j2 on two cores this has taken over
                # 15 s), watched on /metrics: a body request sent meanwhile
                # would take budget the upload then misses.
                deadline = time.monotonic() + 60
                while (srv.metric("lossd_http_buffered_bytes") < 1048576
                       and time.monotonic() < deadline):
                    time.sleep(0.02)
                r = srv.post_json("/v1/auc", {"y_true": [0, 1], "y_score": [0.2, 0.7]})
                self.assertEqual(r.status, 503, r)
                self.assertEqual(r.problem()["code"], "overloaded")
                self.assertIn("Retry-After", r.headers)
                self.assertEqual(srv.get("/healthz").status, 200)
                s.sendall(b" " * 1000)
                reply = b""
                while b"\r\n\r\n" not in reply:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                self.assertTrue(reply.startswith(b"HTTP/1.1 400"), reply[:100])  # blank body
            finally:
                s.close()
            # The budget is released when the request completes, which the
            # daemon may record just after the client has read the reply:
            # wait for it (bounded) rather than race it.
            deadline = time.monotonic() + 5
            while True:
                r = srv.post_json("/v1/auc", {"y_true": [0, 1], "y_score": [0.2, 0.7]})
                if r.status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            self.assertEqual(r.status, 200, r)


class Security(unittest.TestCase):
    # Bearer tokens and TLS: tests/e2e/test_auth.py and test_tls.py.
    def test_slow_clients_are_cut_off(self):
        with Server(args=["--request-timeout", "1"]) as srv:
            # Headers trickled in over more than the limit: a 408 when they
            # complete first, or the connection cut by the sweeper (conns.c)
            # while they trickle; never an answer to the request.
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            try:
                out = b""
                try:
                    for part in (b"POST /v1/loss HTTP/1.1\r\n", b"Host: x\r\n",
                                 b"Content-Type: application/json\r\n",
                                 b"Content-Length: 2\r\n"):
                        s.sendall(part)
                        time.sleep(0.4)
                    s.sendall(b"\r\n{}")
                    out = s.recv(4096)
                except OSError:
                    pass
                if out:
                    self.assertTrue(out.startswith(b"HTTP/1.1 408"), out[:100])
                    self.assertIn(b"request_timeout", out)
            finally:
                s.close()
            # A body trickled in: the connection is closed, no reply.
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            t0 = time.monotonic()
            try:
                s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
                out = b""
                try:
                    for _ in range(20):
                        s.sendall(b" ")
                        time.sleep(0.2)
                    out = s.recv(4096)
                except OSError:
                    pass
                self.assertEqual(out, b"")
                self.assertLess(time.monotonic() - t0, 3.9)
            finally:
                s.close()
            self.assertEqual(srv.get("/healthz").status, 200)


class Drain(unittest.TestCase):
    def test_sigterm_drains_in_flight_requests(self):
        srv = Server(args=["--threads", "2"], test_hooks=True)
        try:
            keep = srv.connection()   # opened before the signal
            keep.request("GET", "/healthz")
            resp = keep.getresponse()
            self.assertEqual(resp.status, 200)
            resp.read()
            result = {}

            def slow():
                r = srv.post_json("/v1/_sleep?ms=1500", {}, timeout=30)
                result["status"] = r.status
                result["body"] = r.json()

            t = threading.Thread(target=slow)
            t.start()
            deadline = time.monotonic() + 5
            while srv.metric("lossd_http_in_flight_requests") < 1:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            srv.wait_log(lambda l: l.get("msg") == "draining", timeout=5)
            # Readiness turns 503 on a connection that was already open.
            keep.request("GET", "/readyz")
            resp = keep.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 503, body)
            self.assertEqual(json.loads(body)["code"], "draining")
            keep.close()
            t.join(30)
            self.assertEqual(result.get("status"), 200, result)
            self.assertEqual(result["body"], {"slept_ms": 1500})
            self.assertEqual(srv.wait(30), 0, srv.stderr())
            self.assertGreater(time.monotonic() - t0, 1.0, "exited before the request ended")
            msgs = [l.get("msg") for l in srv.logs]
            self.assertIn("drained", msgs)
            self.assertEqual(msgs[-1], "stopped")
        finally:
            srv.stop()

    def test_sigint_idle_exits_0(self):
        srv = Server()
        self.assertEqual(srv.stop(sig=signal.SIGINT), 0)


if __name__ == "__main__":
    unittest.main()
