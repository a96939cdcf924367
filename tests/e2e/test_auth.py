"""Bearer tokens end to end (--tokens-file; docs/API.md sections 4 and 5).

- every /v1 route needs `Authorization: Bearer <token>` once tokens are
  configured: 401 `unauthorized` with `WWW-Authenticate: Bearer realm="lossd"`
  (plus `error="invalid_token"` for a wrong token), decided on the headers,
  before any body is read or parsed; probes and scrapers (/healthz, /livez,
  /readyz, /metrics, /openapi.yaml) stay open;
- a read-only token computes (/v1/loss, /v1/auc) and reads streams but
  gets 403 `forbidden` for every write (create, update, reset, merge, delete);
- streams belong to the principal that created them: another principal gets
  exactly the 404 of a stream that does not exist, on every route, and does
  not see them in the list; another token of the same principal does;
- tokens never appear in the logs, not even a wrong token presented;
- a bad tokens file stops startup (exit 1) naming the line, never the token;
- started as root, lossd logs a warning (as another user, it does not).
"""

import json
import os
import shutil
import tempfile
import unittest

from lossd_harness import LOSSD_BIN, Server, run_lossd

ALICE = "alice-token-0123456789abcdef"
ALICE2 = "alice-second-token-ABCDEF0123"
ALICE_RO = "alice-readonly-token-5555555"
BOB = "bob-token-fedcba9876543210xyz"
BOB_RO = "bob-readonly-token-777777777"
TOKENS = {ALICE: "alice", ALICE2: "alice rw", ALICE_RO: "alice ro", BOB: "bob",
          BOB_RO: "bob ro"}

SCCE = {"loss": "sparse_categorical_crossentropy", "y_true": [1, 0],
        "y_pred": [[0.2, 0.8], [0.6, 0.4]]}
AUC = {"y_true": [0, 1, 1, 0], "y_score": [0.1, 0.9, 0.6, 0.4]}
UPDATE = {"y_true": [0, 1, 1], "y_score": [0.2, 0.7, 0.9]}


def h(token=None, json_body=True):
    d = {"Content-Type": "application/json"} if json_body else {}
    if token:
        d["Authorization"] = "Bearer " + token
    return d


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(tokens=TOKENS)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def create(self, token, cfg=None):
        r = self.srv.post_json("/v1/streams", cfg or {"method": "binned"}, headers=h(token))
        self.assertEqual(r.status, 201, r)
        return r.json()["id"]

    def routes(self, sid, state_body):
        """(method, path, body) for every /v1 route."""
        return [
            ("GET", "/v1/version", None),
            ("POST", "/v1/loss", json.dumps(SCCE)),
            ("POST", "/v1/auc", json.dumps(AUC)),
            ("POST", "/v1/streams", json.dumps({"method": "sketch"})),
            ("GET", "/v1/streams", None),
            ("GET", "/v1/streams/" + sid, None),
            ("GET", "/v1/streams/" + sid + "/state", None),
            ("POST", "/v1/streams/" + sid + "/update", json.dumps(UPDATE)),
            ("POST", "/v1/streams/" + sid + "/reset", "{}"),
            ("POST", "/v1/streams/" + sid + "/merge", state_body),
            ("DELETE", "/v1/streams/" + sid, None),
        ]

    def assert_401(self, r, invalid):
        p = r.problem()
        self.assertEqual((r.status, p["code"]), (401, "unauthorized"), r)
        www = r.headers.get("WWW-Authenticate", "")
        self.assertTrue(www.startswith('Bearer realm="lossd"'), www)
        self.assertEqual('error="invalid_token"' in www, invalid, www)

    def test_every_v1_route_needs_a_token(self):
        sid = self.create(ALICE)
        state = self.srv.get("/v1/streams/%s/state" % sid, headers=h(ALICE)).body.decode()
        for method, path, body in self.routes(sid, state):
            with self.subTest(route="%s %s" % (method, path)):
                r = self.srv.request(method, path, body=body, headers=h(None, body is not None))
                self.assert_401(r, invalid=False)
                for bad in ("not-a-real-token-at-all", ALICE[:-1], ALICE + "x", ALICE.upper(),
                            "x" * 5000):
                    r = self.srv.request(method, path, body=body,
                                         headers=h(bad, body is not None))
                    self.assert_401(r, invalid=True)
        # nothing above touched the stream
        r = self.srv.get("/v1/streams/" + sid, headers=h(ALICE))
        self.assertEqual((r.status, r.json()["count"]), (200, 0))

    def test_malformed_authorization_headers(self):
        for value in ("", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token " + ALICE,
                      "Bearer" + ALICE, ALICE, "Digest username=alice"):
            with self.subTest(authorization=value):
                r = self.srv.post_json("/v1/loss", SCCE, headers={"Authorization": value})
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.problem()["code"], "unauthorized")
        # The scheme is case-insensitive (RFC 9110 section 11.1).
        r = self.srv.post_json("/v1/loss", SCCE, headers={"Authorization": "bearer " + ALICE})
        self.assertEqual(r.status, 200, r)

    def test_auth_is_decided_before_the_body(self):
        # No token: 401 even for a body that is not JSON, too large, or of
        # the wrong type; the body is never parsed.
        for body, ctype in ((b"{not json", "application/json"), (b"x" * 100, "text/plain")):
            r = self.srv.post("/v1/loss", body, headers={"Content-Type": ctype})
            self.assertEqual(r.status, 401, r)
        out = self.srv.raw(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 50000000000\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 401"), out[:100])
        self.assertIn(b"WWW-Authenticate: Bearer", out)

    def test_open_routes(self):
        for path in ("/healthz", "/livez", "/readyz", "/metrics", "/openapi.yaml"):
            with self.subTest(path=path):
                self.assertEqual(self.srv.get(path).status, 200)
        # unknown paths are 404 with or without a token (routing first)
        self.assertEqual(self.srv.get("/v1/nope").status, 404)
        self.assertEqual(self.srv.get("/v1/nope", headers=h(ALICE)).status, 404)

    def test_read_only_tokens(self):
        sid = self.create(ALICE)
        r = self.srv.post_json("/v1/streams/%s/update" % sid, UPDATE, headers=h(ALICE))
        self.assertEqual(r.status, 200, r)
        state = self.srv.get("/v1/streams/%s/state" % sid, headers=h(ALICE)).body.decode()
        before = self.srv.get("/v1/streams/" + sid, headers=h(ALICE)).body
        writes = {"POST /v1/streams", "POST /v1/streams/%s/update" % sid,
                  "POST /v1/streams/%s/reset" % sid, "POST /v1/streams/%s/merge" % sid,
                  "DELETE /v1/streams/" + sid}
        n_streams = len(self.srv.get("/v1/streams", headers=h(ALICE)).json()["streams"])
        for method, path, body in self.routes(sid, state):
            key = "%s %s" % (method, path)
            with self.subTest(route=key):
                r = self.srv.request(method, path, body=body,
                                     headers=h(ALICE_RO, body is not None))
                if key in writes:
                    self.assertEqual(r.status, 403, r)
                    self.assertEqual(r.problem()["code"], "forbidden")
                else:
                    # computations and reads are allowed, and a read-only
                    # token of alice reads alice's streams
                    self.assertEqual(r.status, 200, r)
        # the stream is untouched and alice still has the same streams
        self.assertEqual(self.srv.get("/v1/streams/" + sid, headers=h(ALICE)).body, before)
        self.assertEqual(len(self.srv.get("/v1/streams", headers=h(ALICE)).json()["streams"]),
                         n_streams)

    def test_streams_belong_to_their_principal(self):
        sid = self.create(ALICE)
        r = self.srv.post_json("/v1/streams/%s/update" % sid, UPDATE, headers=h(ALICE))
        self.assertEqual(r.status, 200, r)
        state = self.srv.get("/v1/streams/%s/state" % sid, headers=h(ALICE)).body.decode()
        before = self.srv.get("/v1/streams/" + sid, headers=h(ALICE)).body
        missing = "no-such-stream-0000"
        for method, path, body in self.routes(sid, state)[5:]:  # the /v1/streams/{id} routes
            with self.subTest(route="%s %s" % (method, path)):
                for token in (BOB, BOB_RO):
                    if token == BOB_RO and method != "GET":
                        continue  # read-only: 403 comes first (it says nothing of the stream)
                    r = self.srv.request(method, path, body=body,
                                         headers=h(token, body is not None))
                    r0 = self.srv.request(method, path.replace(sid, missing), body=body,
                                          headers=h(token, body is not None))
                    # exactly the reply of a stream that does not exist
                    self.assertEqual(r.status, 404, r)
                    self.assertEqual(r.problem()["code"], "unknown_stream")
                    self.assertEqual((r.status, r.problem()["code"], r.problem()["title"]),
                                     (r0.status, r0.problem()["code"], r0.problem()["title"]))
                    self.assertEqual(r.problem()["detail"].replace(sid, missing),
                                     r0.problem()["detail"])
        listed = [s["id"] for s in self.srv.get("/v1/streams", headers=h(BOB)).json()["streams"]]
        self.assertNotIn(sid, listed)
        # alice's other token sees and uses it
        listed = [s["id"] for s in self.srv.get("/v1/streams", headers=h(ALICE2)).json()["streams"]]
        self.assertIn(sid, listed)
        self.assertEqual(self.srv.get("/v1/streams/" + sid, headers=h(ALICE2)).body, before)
        r = self.srv.post_json("/v1/streams/%s/update" % sid, UPDATE, headers=h(ALICE2))
        self.assertEqual(r.status, 200, r)
        # bob's stream of the same config can't take alice's state either
        # way round: merging needs the target, not the source, to be yours
        bsid = self.create(BOB)
        r = self.srv.post("/v1/streams/%s/merge" % bsid, state, headers=h(BOB))
        self.assertEqual(r.status, 200, r)  # a state is data: whoever holds it may merge it
        self.assertEqual(self.srv.get("/v1/streams/" + bsid, headers=h(BOB)).json()["count"], 3)

    def test_tokens_never_logged(self):
        wrong = "wrong-token-that-must-not-be-logged-42"
        self.srv.post_json("/v1/loss", SCCE, headers=h(wrong))
        self.srv.post_json("/v1/loss", SCCE, headers=h(ALICE))
        self.srv.post_json("/v1/loss", {"bad": 1}, headers=h(ALICE_RO))
        self.srv.post_json("/v1/streams", {}, headers=h(BOB_RO))
        text = json.dumps(self.srv.logs) + self.srv.stderr()
        for tok in list(TOKENS) + [wrong]:
            self.assertNotIn(tok, text)
        # the principal may be logged; the token's text not even in part
        for tok in TOKENS:
            self.assertNotIn(tok[:16], text)


class TokensFile(unittest.TestCase):
    def run_with(self, content):
        d = tempfile.mkdtemp(prefix="lossd-auth-")
        try:
            path = os.path.join(d, "tokens")
            if content is not None:
                with open(path, "w") as f:
                    f.write(content)
            return run_lossd(["--port", "0", "--bind", "127.0.0.1", "--tokens-file", path,
                              "--data-dir", os.path.join(d, "data")], timeout=20)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_bad_files_stop_startup(self):
        secret = "secret-token-abcdefghijkl"
        cases = [
            ("missing file", None, "cannot read tokens file"),
            ("empty", "", "no tokens"),
            ("only comments", "# nothing\n\n", "no tokens"),
            ("short token", "short alice\n", "line 1"),
            ("bad character", "# c\n%s! alice\n" % secret, "line 2"),
            ("no principal", secret + "\n", "line 1"),
            ("bad mode", "%s alice rx\n" % secret, "line 1"),
            ("duplicate", "%s alice\n%s bob\n" % (secret, secret), "line 2"),
            ("extra field", "%s alice ro extra\n" % secret, "line 1"),
        ]
        for name, content, want in cases:
            with self.subTest(case=name):
                p = self.run_with(content)
                self.assertEqual(p.returncode, 1, (p.stdout, p.stderr))
                self.assertIn(want, p.stdout + p.stderr)
                self.assertNotIn(secret, p.stdout + p.stderr)

    def test_comments_blanks_and_modes(self):
        d = tempfile.mkdtemp(prefix="lossd-auth-")
        try:
            path = os.path.join(d, "tokens")
            with open(path, "w") as f:
                f.write("# lossd tokens\n\n   \n%s carol\n\t%s  dave   RO  \r\n" % (ALICE, BOB))
            with Server(args=["--tokens-file", path]) as srv:
                self.assertEqual(srv.post_json("/v1/loss", SCCE, headers=h(ALICE)).status, 200)
                self.assertEqual(srv.post_json("/v1/streams", {}, headers=h(ALICE)).status, 201)
                self.assertEqual(srv.post_json("/v1/streams", {}, headers=h(BOB)).status, 403)
                started = [l for l in srv.logs if l.get("msg") == "listening"][0]
                self.assertEqual(started.get("tokens"), 2, started)
        finally:
            shutil.rmtree(d, ignore_errors=True)


class RootWarning(unittest.TestCase):
    def test_root_warning(self):
        with Server() as srv:
            srv.get("/healthz")
            warned = [l for l in srv.logs
                      if l.get("level") in ("warn", "warning") and "root" in json.dumps(l).lower()]
            if os.geteuid() == 0:
                self.assertTrue(warned, "started as root without a warning: %r" % srv.logs[:5])
            else:
                self.assertFalse(warned, warned)


if __name__ == "__main__":
    unittest.main()
