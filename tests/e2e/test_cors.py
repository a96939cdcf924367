"""Browsers and defaults: CORS (--cors-origin), the loopback default bind,
--check over https, and a 204 without Content-Type.

- a preflight (OPTIONS with Origin and Access-Control-Request-*) on any
  known path is a 204 answered before any token check, naming the path's
  methods and the headers lossd reads, with the exact origin echoed
  (never "*", no Access-Control-Allow-Credentials); an origin that is not
  listed gets no CORS header at all; every reply (a 401 too) to a listed
  origin carries Access-Control-Allow-Origin and Vary: Origin;
- without --cors-origin, OPTIONS is still a 204 with Allow (no 405) and no
  CORS header appears anywhere;
- started without --bind, lossd listens on 127.0.0.1 (the "listening" line
  and a connection to it);
- `lossd --check https://...` probes a TLS lossd (0 on 2xx, 1 on a 404,
  1 against a plain-HTTP port), and with LOSSD_TLS_CERT set a loopback
  http:// probe (the image's HEALTHCHECK) goes over https;
- DELETE's 204 has no Content-Type.
The same in a real browser: tests/browser/cors.test.mjs.
"""

import json
import os
import signal
import subprocess
import tempfile
import unittest

from lossd_harness import LOSSD_BIN, Server

DASH = "http://dash.example:3000"
TOKEN = "team-a-dashboard-token-0123456789"


def h(**kw):
    return {k.replace("_", "-"): v for k, v in kw.items()}


class Cors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(tokens={TOKEN: "team-a"},
                         args=["--cors-origin", DASH, "--cors-origin", "https://b.example"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def preflight(self, path, origin, method="POST"):
        return self.srv.request("OPTIONS", path, headers=h(
            Origin=origin, Access_Control_Request_Method=method,
            Access_Control_Request_Headers="authorization,content-type"))

    def test_preflight_for_a_listed_origin(self):
        for path, methods in (("/v1/streams", {"GET", "POST"}), ("/v1/loss", {"POST"}),
                              ("/v1/streams/abc", {"GET", "DELETE"})):
            r = self.preflight(path, DASH)
            self.assertEqual(r.status, 204, (path, r))
            self.assertEqual(r.body, b"")
            self.assertIsNone(r.headers.get("Content-Type"))
            self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), DASH)
            allowed = {m.strip() for m in
                       r.headers.get("Access-Control-Allow-Methods", "").split(",")}
            self.assertTrue(methods <= allowed, (path, allowed))
            hdrs = r.headers.get("Access-Control-Allow-Headers", "").lower()
            for want in ("authorization", "content-type", "idempotency-key"):
                self.assertIn(want, hdrs)
            self.assertIn("Origin", r.headers.get("Vary", ""))
            self.assertIsNone(r.headers.get("Access-Control-Allow-Credentials"))

    def test_unlisted_origin_gets_no_cors_headers(self):
        for origin in ("http://evil.example", DASH + "/", "http://dash.example:3001",
                       "https://dash.example:3000", "null"):
            r = self.preflight("/v1/streams", origin)
            self.assertEqual(r.status, 204)
            self.assertIsNone(r.headers.get("Access-Control-Allow-Origin"), origin)
            r = self.srv.get("/v1/streams", headers=h(Origin=origin,
                                                      Authorization="Bearer " + TOKEN))
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.headers.get("Access-Control-Allow-Origin"), origin)

    def test_replies_to_a_listed_origin(self):
        r = self.srv.get("/v1/streams", headers=h(Origin="https://b.example",
                                                  Authorization="Bearer " + TOKEN))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), "https://b.example")
        self.assertIn("Retry-After", r.headers.get("Access-Control-Expose-Headers", ""))
        r = self.srv.get("/v1/streams", headers=h(Origin=DASH))
        self.assertEqual(r.status, 401)  # the page can read why
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), DASH)
        r = self.srv.get("/healthz", headers=h(Origin=DASH))
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), DASH)
        self.assertIn("Origin", self.srv.get("/healthz").headers.get("Vary", ""))
        r = self.srv.request("OPTIONS", "/no/such/path", headers=h(Origin=DASH))
        self.assertEqual(r.status, 404)

    def test_delete_204_has_no_content_type(self):
        auth = h(Authorization="Bearer " + TOKEN)
        sid = self.srv.post_json("/v1/streams", {"method": "exact"}, headers=auth).json()["id"]
        r = self.srv.delete("/v1/streams/" + sid, headers=auth)
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")
        self.assertIsNone(r.headers.get("Content-Type"))


class Defaults(unittest.TestCase):
    def test_options_without_cors(self):
        with Server() as srv:
            r = srv.request("OPTIONS", "/v1/streams", headers=h(Origin=DASH))
            self.assertEqual(r.status, 204)
            self.assertIn("POST", r.headers.get("Allow", ""))
            r2 = srv.get("/v1/streams", headers=h(Origin=DASH))
            for resp in (r, r2):
                self.assertIsNone(resp.headers.get("Access-Control-Allow-Origin"))
                self.assertIsNone(resp.headers.get("Vary"))

    def test_default_bind_is_loopback(self):
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSD_")}
            proc = subprocess.Popen([LOSSD_BIN, "--port", "0", "--data-dir", tmp],
                                    env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                line = None
                for raw in proc.stdout:
                    try:
                        j = json.loads(raw)
                    except ValueError:
                        continue
                    if j.get("msg") == "listening":
                        line = j
                        break
                self.assertIsNotNone(line, "no listening line")
                self.assertEqual(line["bind"], "127.0.0.1")
                rc = subprocess.run([LOSSD_BIN, "--check",
                                     "http://127.0.0.1:%d/livez" % line["port"]],
                                    capture_output=True, timeout=30).returncode
                self.assertEqual(rc, 0)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=30)
            self.assertEqual(proc.returncode, 0)

    def test_check_https(self):
        with Server(tls=True) as srv:
            def check(url):
                p = subprocess.run([LOSSD_BIN, "--check", url], capture_output=True,
                                   text=True, timeout=30)
                return p.returncode, p.stderr

            self.assertEqual(check("https://127.0.0.1:%d/livez" % srv.port), (0, ""))
            rc, err = check("https://127.0.0.1:%d/nope" % srv.port)
            self.assertEqual(rc, 1)
            self.assertIn("404", err)
            rc, err = check("http://127.0.0.1:%d/livez" % srv.port)  # plain HTTP to TLS
            self.assertEqual(rc, 1)
            # the image's HEALTHCHECK says http://127.0.0.1; with this
            # configuration's TLS (LOSSD_TLS_CERT) the probe speaks https
            env = dict(os.environ, LOSSD_TLS_CERT=os.path.join(srv._secrets, "cert.pem"),
                       LOSSD_TLS_KEY=os.path.join(srv._secrets, "key.pem"))
            p = subprocess.run([LOSSD_BIN, "--check", "http://127.0.0.1:%d/livez" % srv.port],
                               env=env, capture_output=True, text=True, timeout=30)
            self.assertEqual((p.returncode, p.stderr), (0, ""))
        with Server() as plain:
            rc, err = check("https://127.0.0.1:%d/livez" % plain.port)
            self.assertEqual(rc, 1)
            self.assertIn("TLS", err)


if __name__ == "__main__":
    unittest.main()
