"""openapi.yaml describes exactly what lossd does (the contract test).

Every reply any e2e test gets through lossd_harness is checked against
openapi.yaml when $LOSSD_OPENAPI_JSON is set (see contract.py). This file
makes the coverage independent of the other tests:
- a sweep calls every operation in the document at least once with a
  request that succeeds and once with one that fails typically, checks
  each reply against the document and its status against what the sweep
  expects, and then asserts that no operation was left out;
- the routes in server/src/router.c's table are exactly the document's
  operations (test hooks aside), and each one is answered (not 404/405);
- a path the document lacks is 404 problem+json, a method it lacks is 405
  with Allow listing exactly the document's methods;
- the checker itself rejects replies that break the document (so a green
  run means something).
Without $LOSSD_OPENAPI_JSON it converts openapi.yaml itself with
scripts/openapi-json.sh (needs node and npm).
"""

import json
import os
import re
import subprocess
import tempfile
import unittest

from contract import Contract
from lossd_harness import Server

SOURCE_DIR = os.environ.get(
    "LOSSD_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

RW = "contract-rw-token-0123456789abcdef"
RO = "contract-ro-token-0123456789abcdef"
BAD = "not-a-configured-token-0000000000"


def load_contract():
    c = Contract.from_env()
    if c is not None:
        return c
    out = os.path.join(tempfile.mkdtemp(prefix="lossd-contract-"), "openapi.json")
    script = os.path.join(SOURCE_DIR, "scripts", "openapi-json.sh")
    r = subprocess.run([script, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("LOSSD_OPENAPI_JSON is unset and %s failed: %s"
                             % (script, r.stderr))
    with open(out, encoding="utf-8") as f:
        return Contract(json.load(f))


def router_table():
    """(method, pattern) of every route in server/src/router.c."""
    with open(os.path.join(SOURCE_DIR, "server", "src", "router.c"), encoding="utf-8") as f:
        src = f.read()
    table = src[src.index("table[] = {"):]
    table = table[:table.index("};")]
    routes = re.findall(r'\{\s*SRV_ROUTE_\w+\s*,\s*"([A-Z]+)"\s*,\s*"([^"]+)"', table)
    assert routes, "no routes parsed from router.c"
    return set(routes)


SCCE = {"loss": "sparse_categorical_crossentropy", "from_logits": True, "y_true": [1, 0, 2],
        "y_pred": [[0.1, 2.0, -1.0], [1.5, 0.2, 0.3], [0.0, 0.1, 2.2]],
        "confusion_matrix": True}
HEADS = {"heads": [{"loss": "binary_crossentropy", "y_true": [0, 1], "y_pred": [0.3, 0.8]},
                   {"loss": "mean_squared_error", "y_true": [1.0], "y_pred": [0.5],
                    "reduction": "none"}],
         "head_weights": [1.0, 0.5]}
AUC = {"y_true": [0, 2, 1, 2], "y_score": [[0.8, 0.1, 0.1], [0.2, 0.2, 0.6],
                                            [0.3, 0.5, 0.2], [0.1, 0.3, 0.6]],
       "average": "none", "return_curve": True}
UPDATE = {"y_true": [0, 1, 1, 0], "y_pred": [0.2, 0.9, 0.4, 0.5]}


class Contracted(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.contract = load_contract()
        cls.srv = Server(tokens={RW: "alice", RO: "alice ro"}, contract=cls.contract,
                         args=["--max-body", "128KiB", "--max-streams", "6",
                               "--stream-memory", "64KiB", "--sketch-memory", "16KiB"])
        cls.seen = set()  # (METHOD, template, status class "2xx"/"4xx")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()  # fails on any reply that broke the contract

    def call(self, method, path, body=None, want=None, token=RW, ctype="application/json",
             headers=None):
        """One request, checked against the contract and against want."""
        h = {}
        if token:
            h["Authorization"] = "Bearer " + token
        if body is not None:
            h["Content-Type"] = ctype
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
        h.update(headers or {})
        r = self.srv.request(method, path, body=body, headers=h, contract=False)
        errs = self.contract.check(method, path, r.status, r.headers, r.body)
        self.assertEqual(errs, [], "reply breaks openapi.yaml")
        if want is not None:
            self.assertEqual(r.status, want, r)
        template, _ = self.contract.match_path(path)
        if template:
            self.seen.add((method, template, "%dxx" % (r.status // 100)))
        return r

    def new_stream(self, cfg):
        r = self.call("POST", "/v1/streams", cfg, want=201)
        return r.json()["id"]

    def test_sweep_every_operation(self):
        c = self.call
        # computeLoss
        self.assertGreater(c("POST", "/v1/loss", SCCE, want=200).json()["loss"], 0)
        self.assertEqual(len(c("POST", "/v1/loss", HEADS, want=200).json()["heads"]), 2)
        c("POST", "/v1/loss", {"loss": "huber", "y_true": [[0, 1]], "y_pred": [[0.5, 0.5]],
                               "reduction": "none"}, want=200)
        self.assertEqual(c("POST", "/v1/loss", dict(SCCE, from_logit=True),
                           want=422).json()["code"], "unknown_field")
        c("POST", "/v1/loss", b"{not json", want=400)
        c("POST", "/v1/loss", SCCE, ctype="text/plain", want=415)
        c("POST", "/v1/loss", {"loss": "huber", "y_true": [0.0] * 20000,
                               "y_pred": [0.0] * 20000}, want=413)
        c("POST", "/v1/loss", SCCE, token=None, want=401)
        c("POST", "/v1/loss", SCCE, token=BAD, want=401)
        # computeAuc
        self.assertIsNone(c("POST", "/v1/auc", AUC, want=200).json()["auc"])
        c("POST", "/v1/auc", {"y_true": [0, 1, 1], "y_score": [0.1, 0.8, 0.3],
                              "method": "sketch"}, want=200)
        c("POST", "/v1/auc", {"y_true": [1, 1], "y_score": [0.1, 0.8]}, want=200)
        self.assertEqual(c("POST", "/v1/auc", {"y_true": [0, 1], "y_score": [0.5]},
                           want=422).json()["code"], "shape_mismatch")
        # createStream, listStreams
        a = self.new_stream({"name": "a", "method": "exact", "num_classes": 3,
                             "loss": "sparse_categorical_crossentropy", "from_logits": True})
        b = self.new_stream({"method": "binned", "loss": {"loss": "binary_crossentropy",
                                                         "pos_weight": 2}})
        s1 = self.new_stream({"method": "sketch", "curve": "pr"})
        s2 = self.new_stream({"method": "sketch", "curve": "pr"})
        c("POST", "/v1/streams", {"method": "median"}, want=422)
        c("POST", "/v1/streams", {}, token=RO, want=403)
        page = c("GET", "/v1/streams?limit=2", want=200).json()
        self.assertEqual(len(page["streams"]), 2)
        c("GET", "/v1/streams?after=" + page["next"], want=200)
        c("GET", "/v1/streams?limit=0", want=422)
        c("GET", "/v1/streams/", want=400)  # an empty id
        # updateStream
        c("POST", "/v1/streams/%s/update" % a,
          {"y_true": [0, 1, 2], "y_pred": [[2.0, 0.1, 0.1], [0.1, 2.0, 0.1], [0.1, 0.1, 2.0]],
           "batch_id": "b1"}, want=200)
        c("POST", "/v1/streams/%s/update" % b, UPDATE, want=200,
          headers={"Idempotency-Key": "k1"})
        c("POST", "/v1/streams/%s/update" % s1, {"y_true": [0, 1], "y_score": [0.3, 0.6]},
          want=200)
        c("POST", "/v1/streams/%s/update" % b, {"y_true": [0, 1]}, want=422)
        c("POST", "/v1/streams/nope/update", UPDATE, want=404)
        c("POST", "/v1/streams/%s/update" % a,
          {"y_true": [0] * 40000, "y_pred": [0.5] * 40000},
          want=413)
        # readStream
        r = c("GET", "/v1/streams/%s?curve=true&class=1&max_points=3" % a, want=200).json()
        self.assertEqual(r["count"], 3)
        c("GET", "/v1/streams/%s?curve=true" % b, want=200)
        c("GET", "/v1/streams/%s" % s2, want=200)
        c("GET", "/v1/streams/nope", want=404)
        c("GET", "/v1/streams/a%2Fb", want=400)
        c("GET", "/v1/streams/%s" % a, token=None, want=401)
        c("HEAD", "/v1/streams/%s" % a, want=200)
        # exportStreamState, mergeStreamState
        state = c("GET", "/v1/streams/%s/state" % s1, want=200).json()
        c("GET", "/v1/streams/nope/state", want=404)
        self.assertEqual(c("POST", "/v1/streams/%s/merge" % s2, state, want=200)
                         .json()["count"], 2)
        c("POST", "/v1/streams/%s/merge" % b, state, want=409)
        c("POST", "/v1/streams/%s/merge" % s2, dict(state, state="AAAA"), want=422)
        # checkpointStream, streamHistory (docs/API.md section 7)
        c("POST", "/v1/streams/%s/update" % s1,
          {"y_true": [0, 1], "y_score": [0.2, 0.9], "step": 7}, want=200)
        ck = c("POST", "/v1/streams/%s/checkpoint" % s1, {"step": 7, "label": "e0"},
               want=201).json()
        self.assertEqual(ck["count"], 4)
        c("POST", "/v1/streams/nope/checkpoint", {"step": 1}, want=404)
        c("POST", "/v1/streams/%s/checkpoint" % s1, {"step": -1}, want=422)
        h = c("GET", "/v1/streams/%s/history" % s1, want=200).json()
        self.assertEqual([p["step"] for p in h["steps"]], [7])
        c("GET", "/v1/streams/%s/history?series=checkpoints" % s1, want=200)
        c("GET", "/v1/streams/%s/history?format=csv" % s1, want=200)
        c("GET", "/v1/streams/%s/history?from=3&to=1" % s1, want=422)
        c("GET", "/v1/streams/nope/history", want=404)
        # patchStream (docs/API.md section 8)
        pa = c("PATCH", "/v1/streams/%s" % s1, {"tags": {"run": "r1"}, "ttl_s": 3600},
               want=200, ctype="application/merge-patch+json").json()
        self.assertEqual((pa["tags"], pa["ttl_s"]), ({"run": "r1"}, 3600))
        c("PATCH", "/v1/streams/%s" % s1, {"tags": {"a b": "x"}}, want=422)
        c("PATCH", "/v1/streams/nope", {"ttl_s": 1}, want=404)
        c("PATCH", "/v1/streams/%s" % s1, {"ttl_s": 1}, want=415, ctype="text/plain")
        lst = c("GET", "/v1/streams?tag=run:r1&sort=updated&order=desc", want=200).json()
        self.assertEqual([e["id"] for e in lst["streams"]], [s1])
        c("GET", "/v1/streams?colour=red", want=422)
        # resetStream
        self.assertEqual(c("POST", "/v1/streams/%s/reset" % a, want=200).json()["count"], 0)
        c("POST", "/v1/streams/nope/reset", want=404)
        # deleteStream
        c("DELETE", "/v1/streams/%s" % s2, want=204)
        c("DELETE", "/v1/streams/%s" % s2, want=404)
        c("DELETE", "/v1/streams/%s" % s1, token=RO, want=403)
        # 507: more streams than --max-streams, more scores than --stream-memory
        e = self.new_stream({"method": "exact"})
        c("POST", "/v1/streams/%s/update" % e,
          {"y_true": {"shape": [12000], "data": [0, 1] * 6000},
           "y_score": {"shape": [12000], "data": [0.25, 0.75] * 6000}}, want=507)
        codes = [c("POST", "/v1/streams", {}).status for _ in range(7)]  # --max-streams 6
        self.assertEqual(codes[-1], 507, codes)
        # operations
        self.assertTrue(c("GET", "/v1/version", want=200).json()["version"])
        c("GET", "/v1/version", token=BAD, want=401)
        for p in ("/healthz", "/livez", "/readyz"):
            self.assertEqual(c("GET", p, token=None, want=200).json()["status"], "ok")
        self.assertIn("lossd", c("GET", "/metrics", token=None, want=200).text())
        self.assertIn("openapi:", c("GET", "/openapi.yaml", token=None, want=200).text())
        for template in self.contract.doc["paths"]:  # the pages and files, whatever they are
            if "{" not in template and self.contract.operations(template) == ["GET"]:
                token = RW if template.startswith("/v1/") else None
                self.assertTrue(c("GET", template, token=token, want=200).body, template)
        for p in ("/", "/docs", "/ui/app.js", "/ui/style.css", "/ui/docs.css",
                  "/ui/favicon.svg", "/ui/uPlot.iife.min.js", "/ui/uPlot.min.css"):
            c("GET", p, token=None, want=200)  # the dashboard needs no token

        missing = []
        for template, item in self.contract.doc["paths"].items():
            for method in self.contract.operations(template):
                op = item[method.lower()]
                errors = [s for s in op["responses"] if s[0] == "4"]
                if (method, template, "2xx") not in self.seen:
                    missing.append("%s %s: no success" % (method, template))
                if errors and (method, template, "4xx") not in self.seen:
                    missing.append("%s %s: no error" % (method, template))
        self.assertEqual(missing, [], "operations the sweep did not call")

    def test_router_table_is_the_document(self):
        routes = {(m, p) for m, p in router_table() if not p.startswith("/v1/_")}
        documented = {(m, t) for t in self.contract.doc["paths"]
                      for m in self.contract.operations(t)}
        self.assertEqual(sorted(routes - documented), [], "routes openapi.yaml lacks")
        self.assertEqual(sorted(documented - routes), [], "operations the router lacks")
        sid = self.new_stream({})
        for method, pattern in sorted(routes):
            path = pattern.replace("{id}", sid)
            if method == "DELETE":
                path = pattern.replace("{id}", self.new_stream({}))
            body = {} if method == "POST" else None
            r = self.call(method, path, body)
            self.assertNotIn(r.status, (404, 405), (method, path, r))

    def test_unknown_paths_and_methods(self):
        for path in ("/nope", "/v1", "/v1/", "/v1/streams/x/y", "/v1/loss/",
                     "/v1/_sleep", "/healthz/x"):
            r = self.call("GET", path, want=404)
            self.assertEqual(r.json()["code"], "not_found", path)
        for method, path in (("PUT", "/v1/loss"), ("DELETE", "/v1/streams"),
                             ("POST", "/healthz"), ("PATCH", "/v1/streams/abc/state"),
                             ("GET", "/v1/streams/abc/update")):
            r = self.call(method, path, want=405)
            self.assertEqual(r.json()["code"], "method_not_allowed", (method, path))

    def test_checker_rejects_what_breaks_the_document(self):
        c = self.contract

        class H(dict):
            def get(self, k, d=None):
                return dict.get(self, k.lower(), d)

        js = H({"content-type": "application/json"})
        pj = H({"content-type": "application/problem+json"})
        ok = json.dumps({"auc": 0.5, "positives": 2, "negatives": 3}).encode()
        bad = [
            ("POST", "/v1/auc", 200, js, b'{"auc": "0.5"}'),           # wrong type
            ("POST", "/v1/auc", 200, js, b'{"positives": 1, "negatives": 1}'),  # no auc
            ("POST", "/v1/auc", 200, js, ok[:-1] + b', "extra": 1}'),   # undocumented field
            ("POST", "/v1/auc", 200, js, b'{"auc": null, "positives": 1.5, "negatives": 1}'),
            ("POST", "/v1/auc", 200, js, b'{"auc": NaN}'),              # not JSON
            ("POST", "/v1/auc", 200, H({"content-type": "text/html"}), ok),
            ("POST", "/v1/auc", 418, js, ok),                           # undocumented
            ("POST", "/v1/auc", 422, pj, b'{"type": "about:blank", "title": "x", '
                                         b'"status": 400, "code": "c", "detail": "d"}'),
            ("GET", "/v1/streams", 200, js, b'{"streams": [{"id": "x"}], "next": null}'),
            ("GET", "/nowhere", 200, js, ok),
            ("PUT", "/v1/auc", 405, H({"content-type": "application/problem+json",
                                        "allow": "GET"}), b'{}'),
            ("DELETE", "/v1/streams/abc", 204, js, b'{"x": 1}'),
        ]
        counts = Contract.checked, Contract.failed
        self.assertEqual(c.check("POST", "/v1/auc", 200, js, ok), [])
        for case in bad:
            self.assertNotEqual(c.check(*case), [], case)
        Contract.checked, Contract.failed = counts  # deliberate failures don't count
        # every example in the document fits its own schema
        for template, item in c.doc["paths"].items():
            for method in c.operations(template):
                rb = item[method.lower()].get("requestBody")
                for media in (rb or {}).get("content", {}).values():
                    examples = [e["value"] for e in media.get("examples", {}).values()]
                    if "example" in media:
                        examples.append(media["example"])
                    for ex in examples:
                        self.assertEqual(c.validate(ex, media["schema"]), [],
                                         (method, template, ex))


if __name__ == "__main__":
    unittest.main()
