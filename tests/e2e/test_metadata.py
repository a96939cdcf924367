"""End-to-end tests of stream metadata, listing and expiry (docs/API.md section 8).

- tags and ttl_s at create; created_at / updated_at (RFC 3339 UTC, ms) in
  the create reply, every reading and every list entry; updated_at moves
  with updates and checkpoints;
- PATCH is a JSON merge patch (application/json or
  application/merge-patch+json);
- the list filters by name_prefix and tags (all must match), sorts by
  updated / created / name in either order and pages with a cursor;
- everything survives kill -9;
- a stream past its ttl_s is deleted by the server and counted in /metrics;
- bad input (too many tags, a key with a space, a long value, an unknown
  query parameter, a bad cursor) is a clear error and changes nothing.
"""

import json
import re
import shutil
import signal
import tempfile
import time
import unittest

from lossd_harness import Server

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class MetadataTest(unittest.TestCase):
    def create(self, srv, cfg):
        r = srv.post_json("/v1/streams", cfg)
        self.assertEqual(r.status, 201, r.body)
        return r.json()

    def patch(self, srv, sid, body, ctype="application/merge-patch+json"):
        return srv.request("PATCH", "/v1/streams/" + sid, json.dumps(body),
                           headers={"Content-Type": ctype})

    def names(self, srv, query):
        r = srv.get("/v1/streams?" + query)
        self.assertEqual(r.status, 200, r.body)
        return [e["name"] for e in r.json()["streams"]]

    def test_tags_times_patch_and_listing(self):
        with Server() as srv:
            a = self.create(srv, {"name": "run1-train", "tags": {"run": "r1", "split": "train"}})
            self.assertEqual(a["tags"], {"run": "r1", "split": "train"})
            self.assertEqual(a["ttl_s"], 0)
            self.assertRegex(a["created_at"], TIME)
            self.assertEqual(a["created_at"], a["updated_at"])
            time.sleep(0.01)
            b = self.create(srv, {"name": "run1-val", "tags": {"run": "r1", "split": "val"}})
            time.sleep(0.01)
            c = self.create(srv, {"name": "run2-val", "tags": {"run": "r2", "split": "val"}})
            time.sleep(0.01)
            # an update moves updated_at, not created_at
            r = srv.post_json("/v1/streams/%s/update" % a["id"],
                              {"y_true": [0, 1], "y_score": [0.2, 0.8]})
            self.assertEqual(r.status, 200)
            got = srv.get("/v1/streams/" + a["id"]).json()
            self.assertEqual(got["created_at"], a["created_at"])
            self.assertGreater(got["updated_at"], a["updated_at"])
            self.assertEqual(got["tags"], a["tags"])

            self.assertEqual(self.names(srv, "tag=run:r1&sort=name"), ["run1-train", "run1-val"])
            self.assertEqual(self.names(srv, "tag=run:r1&tag=split:val"), ["run1-val"])
            self.assertEqual(self.names(srv, "tag=split:val&sort=name&order=desc"),
                             ["run2-val", "run1-val"])
            self.assertEqual(self.names(srv, "name_prefix=run1&sort=created"),
                             ["run1-train", "run1-val"])
            self.assertEqual(self.names(srv, "sort=updated&order=desc"),
                             ["run1-train", "run2-val", "run1-val"])
            self.assertEqual(self.names(srv, "sort=created&order=desc"),
                             ["run2-val", "run1-val", "run1-train"])
            self.assertEqual(self.names(srv, "tag=run:r3"), [])
            # percent-encoded values
            self.assertEqual(self.names(srv, "tag=split%3Aval&name_prefix=run%32"), ["run2-val"])
            # paging with a cursor, every sort
            for sort in ("updated", "created", "name"):
                for order in ("asc", "desc"):
                    q = "sort=%s&order=%s" % (sort, order)
                    whole = self.names(srv, q)
                    seen, after = [], None
                    while True:
                        r = srv.get("/v1/streams?%s&limit=1%s"
                                    % (q, "&after=" + after if after else "")).json()
                        seen += [e["name"] for e in r["streams"]]
                        after = r["next"]
                        if not after:
                            break
                    self.assertEqual(seen, whole, q)
            for e in srv.get("/v1/streams").json()["streams"]:
                for k in ("tags", "ttl_s", "created_at", "updated_at"):
                    self.assertIn(k, e)

            # PATCH: a merge patch; both media types
            r = self.patch(srv, b["id"], {"tags": {"split": None, "lr": "0.1"}, "ttl_s": 3600})
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["tags"], {"run": "r1", "lr": "0.1"})
            self.assertEqual(r.json()["ttl_s"], 3600)
            r = self.patch(srv, b["id"], {"ttl_s": None}, ctype="application/json")
            self.assertEqual(r.json()["ttl_s"], 0)
            r = self.patch(srv, b["id"], {"tags": None})
            self.assertEqual(r.json()["tags"], {})
            self.assertEqual(srv.get("/v1/streams/" + b["id"]).json()["tags"], {})
            self.assertEqual(self.patch(srv, "nope", {"ttl_s": 1}).status, 404)
            self.assertEqual(self.patch(srv, c["id"], {"ttl_s": 1}, ctype="text/plain").status,
                             415)

    def test_bad_input_changes_nothing(self):
        with Server() as srv:
            s = self.create(srv, {"name": "x", "tags": {"k": "v"}})
            before = srv.get("/v1/streams").json()
            cases = [
                ({"tags": {"a b": "x"}}, "bad_option", "/tags/a b"),
                ({"tags": {"": "x"}}, "bad_option", None),
                ({"tags": {"k" * 65: "x"}}, "bad_option", None),
                ({"tags": {"k": "v" * 257}}, "bad_option", "/tags/k"),
                ({"tags": {"k": 3}}, "bad_type", "/tags/k"),
                ({"tags": ["k"]}, "bad_type", "/tags"),
                ({"tags": {"t%d" % i: "x" for i in range(17)}}, "bad_option", "/tags"),
                ({"ttl_s": -1}, "bad_option", "/ttl_s"),
                ({"ttl_s": 1.5}, "bad_option", "/ttl_s"),
            ]
            for body, code, ptr in cases:
                r = srv.post_json("/v1/streams", body)
                self.assertEqual(r.status, 422, (body, r.body))
                p = r.problem()
                self.assertEqual(p["code"], code, body)
                if ptr:
                    self.assertEqual(p["pointer"], ptr, body)
                r = self.patch(srv, s["id"], body)
                self.assertEqual(r.status, 422, (body, r.body))
                self.assertEqual(r.problem()["code"], code, body)
            # 16 tags are fine, a 17th by patch is not
            r = self.patch(srv, s["id"], {"tags": {"t%d" % i: "x" for i in range(15)}})
            self.assertEqual(r.status, 200, r.body)
            r = self.patch(srv, s["id"], {"tags": {"one_more": "x"}})
            self.assertEqual(r.problem()["code"], "bad_option")
            self.assertEqual(len(srv.get("/v1/streams/" + s["id"]).json()["tags"]), 16)
            r = self.patch(srv, s["id"], {"name": "y"})
            self.assertEqual(r.problem()["code"], "unknown_field")
            for q, code in (("colour=red", "unknown_parameter"), ("tag=k", "bad_option"),
                            ("tag=a%20b:x", "bad_option"), ("sort=size", "bad_option"),
                            ("order=up", "bad_option"), ("sort=updated&after=zz", "bad_cursor"),
                            ("sort=name&after=zz.abc", "bad_cursor"), ("limit=0", "bad_option")):
                r = srv.get("/v1/streams?" + q)
                self.assertEqual(r.status, 422, (q, r.body))
                self.assertEqual(r.problem()["code"], code, q)
            after = srv.get("/v1/streams").json()
            self.assertEqual(len(after["streams"]), len(before["streams"]))
            self.assertEqual(after["streams"][0]["name"], "x")

    def test_metadata_survives_kill9(self):
        d = tempfile.mkdtemp(prefix="lossd-meta-")
        try:
            srv = Server(data_dir=d, check_exit=False)
            try:
                s = self.create(srv, {"name": "m", "tags": {"run": "r9"}, "ttl_s": 86400})
                time.sleep(0.01)
                srv.post_json("/v1/streams/%s/update" % s["id"],
                              {"y_true": [0, 1], "y_score": [0.2, 0.8], "step": 1})
                self.patch(srv, s["id"], {"tags": {"split": "val"}})
                before = srv.get("/v1/streams/" + s["id"]).json()
                srv.send_signal(signal.SIGKILL)
                srv.wait()
            finally:
                if srv.proc.poll() is None:
                    srv.send_signal(signal.SIGKILL)
                    srv.wait()
            with Server(data_dir=d) as srv:
                got = srv.get("/v1/streams/" + s["id"]).json()
                for k in ("tags", "ttl_s", "created_at", "updated_at", "count"):
                    self.assertEqual(got[k], before[k], k)
                self.assertEqual(got["tags"], {"run": "r9", "split": "val"})
                self.assertEqual(self.names(srv, "tag=run:r9"), ["m"])
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_ttl_expiry(self):
        with Server() as srv:
            keep = self.create(srv, {"name": "keep"})
            gone = self.create(srv, {"name": "gone", "ttl_s": 1})
            busy = self.create(srv, {"name": "busy", "ttl_s": 2})
            deadline = time.time() + 4.5
            while time.time() < deadline:  # updates keep `busy` alive
                r = srv.post_json("/v1/streams/%s/update" % busy["id"],
                                  {"y_true": [1], "y_score": [0.5]})
                self.assertEqual(r.status, 200)
                time.sleep(0.3)
            self.assertEqual(srv.get("/v1/streams/" + gone["id"]).status, 404)
            self.assertEqual(srv.get("/v1/streams/" + busy["id"]).status, 200)
            self.assertEqual(srv.get("/v1/streams/" + keep["id"]).status, 200)
            self.assertEqual(srv.metric("lossd_streams_expired_total"), 1.0)
            self.assertEqual(sorted(self.names(srv, "")), ["busy", "keep"])


if __name__ == "__main__":
    unittest.main()
