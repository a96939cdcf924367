"""Teams and roles (docs/API.md section 4): a principal is a team, admin tokens
read across teams, SIGHUP swaps the tokens file.

- another principal's stream answers, byte for byte, what a stream that
  does not exist answers (the same id after its deletion), on every
  /v1/streams/{id} route, for rw and ro tokens alike;
- an ro token sees every stream of its principal, whichever token of the
  principal created it, and reads each exactly as the rw token does;
- an admin token lists every principal's streams, each with its
  "principal", narrows the list with principal= (percent-encoded '@'
  too), reads any stream (its reading then names the principal), and is
  refused every write (403);
- SIGHUP reloads the tokens file: on a kept-alive connection that stays
  open across the reload, a token removed from the file gets 401 from the
  next request on and a token added works; a file that does not parse is
  logged and leaves the tokens in use.
"""

import http.client
import json
import os
import signal
import unittest

from lossd_harness import Server

ALICE = "alice-token-0123456789abcdef"
ALICE_CI = "alice-ci-token-0123456789abcdef"
ALICE_DASH = "alice-dashboard-token-5555555"
BOB = "bob-token-fedcba9876543210xyz"
BOB_DASH = "bob-dashboard-token-77777777"
ORG = "org-admin-token-4242424242424242"
TOKENS = {ALICE: "team-a", ALICE_CI: "team-a rw", ALICE_DASH: "team-a ro",
          BOB: "bob@team-b", BOB_DASH: "bob@team-b ro", ORG: "org admin"}
UPDATE = {"y_true": [0, 1, 1], "y_score": [0.2, 0.7, 0.9]}


def h(token, body=False):
    d = {"Authorization": "Bearer " + token}
    if body:
        d["Content-Type"] = "application/json"
    return d


# headers that differ between any two replies
VARYING = {"date", "x-request-id"}


class Tokens(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(tokens=TOKENS)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def create(self, token, name):
        r = self.srv.post_json("/v1/streams", {"name": name, "method": "exact"},
                               headers=h(token))
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        r = self.srv.post_json("/v1/streams/%s/update" % sid, UPDATE, headers=h(token))
        self.assertEqual(r.status, 200, r)
        return sid

    def listed(self, token, query=""):
        r = self.srv.get("/v1/streams" + query, headers=h(token))
        self.assertEqual(r.status, 200, r)
        return r.json()["streams"]

    def snapshot(self, r):
        heads = sorted((k.lower(), v) for k, v in r.headers.items()
                       if k.lower() not in VARYING)
        return r.status, heads, r.body

    def test_404_byte_identical_across_principals(self):
        sid = self.create(ALICE, "a-val")
        state = self.srv.get("/v1/streams/%s/state" % sid, headers=h(ALICE)).body
        routes = [("GET", "", None), ("GET", "/state", None),
                  ("POST", "/update", json.dumps(UPDATE).encode()),
                  ("POST", "/reset", b"{}"), ("POST", "/merge", state),
                  ("DELETE", "", None)]

        def replies(token, writes=True):
            out = {}
            for method, suffix, body in routes:
                if not writes and method != "GET":
                    continue
                r = self.srv.request(method, "/v1/streams/" + sid + suffix, body=body,
                                     headers=h(token, body is not None))
                self.assertEqual(r.status, 404, (method, suffix, r))
                out[(method, suffix)] = self.snapshot(r)
            return out

        other = replies(BOB)
        other_ro = replies(BOB_DASH, writes=False)
        r = self.srv.delete("/v1/streams/" + sid, headers=h(ALICE))
        self.assertEqual(r.status, 204, r)
        gone_for_owner = replies(ALICE)
        gone_for_other = replies(BOB)
        self.assertEqual(other, gone_for_owner)
        self.assertEqual(other, gone_for_other)
        for k, v in other_ro.items():
            self.assertEqual(v, other[k], k)

    def test_ro_token_sees_all_of_its_principals_streams(self):
        mine = {self.create(ALICE, "a1"), self.create(ALICE_CI, "a2"),
                self.create(ALICE, "a3")}
        theirs = self.create(BOB, "b1")
        seen = {s["id"] for s in self.listed(ALICE_DASH)}
        self.assertTrue(mine <= seen, (mine, seen))
        self.assertNotIn(theirs, seen)
        self.assertEqual(seen, {s["id"] for s in self.listed(ALICE)})
        for sid in mine:
            ro = self.srv.get("/v1/streams/" + sid, headers=h(ALICE_DASH))
            rw = self.srv.get("/v1/streams/" + sid, headers=h(ALICE_CI))
            self.assertEqual((ro.status, ro.body), (rw.status, rw.body))
            self.assertNotIn("principal", ro.json())
        r = self.srv.post_json("/v1/streams/%s/update" % next(iter(mine)), UPDATE,
                               headers=h(ALICE_DASH))
        self.assertEqual((r.status, r.problem()["code"]), (403, "forbidden"))

    def test_admin_reads_every_principal(self):
        a = self.create(ALICE, "adm-a")
        b = self.create(BOB, "adm-b")
        listed = {s["id"]: s for s in self.listed(ORG)}
        self.assertEqual(listed[a]["principal"], "team-a")
        self.assertEqual(listed[b]["principal"], "bob@team-b")
        owners = {s["principal"] for s in listed.values()}
        self.assertLessEqual({"team-a", "bob@team-b"}, owners)
        only_b = self.listed(ORG, "?principal=bob%40team-b")
        self.assertIn(b, [s["id"] for s in only_b])
        self.assertEqual({s["principal"] for s in only_b}, {"bob@team-b"})
        self.assertEqual({s["principal"] for s in self.listed(ORG, "?principal=team-a")},
                         {"team-a"})
        self.assertEqual(self.listed(ORG, "?principal=nobody"), [])
        # a team's own token with another team's name: nothing
        self.assertEqual(self.listed(ALICE, "?principal=bob%40team-b"), [])
        self.assertIn(a, [s["id"] for s in self.listed(ALICE, "?principal=team-a")])
        r = self.srv.get("/v1/streams/" + b, headers=h(ORG))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["principal"], "bob@team-b")
        self.assertEqual(r.json()["count"], 3)
        self.assertEqual(self.srv.get("/v1/streams/%s/state" % a, headers=h(ORG)).status, 200)
        for method, path, body in (
                ("POST", "/v1/streams", b'{"method": "exact"}'),
                ("POST", "/v1/streams/%s/update" % a, json.dumps(UPDATE).encode()),
                ("POST", "/v1/streams/%s/reset" % b, b"{}"),
                ("DELETE", "/v1/streams/" + b, None)):
            r = self.srv.request(method, path, body=body, headers=h(ORG, body is not None))
            self.assertEqual((r.status, r.problem()["code"]), (403, "forbidden"), path)
        self.assertEqual(self.srv.get("/v1/streams/" + b, headers=h(BOB)).json()["count"], 3)


class Reload(unittest.TestCase):
    def test_sighup_swaps_tokens_without_dropping_connections(self):
        new = "team-a-rotated-token-9999999999"
        with Server(tokens={ALICE: "team-a", BOB: "bob@team-b"}) as srv:
            path = os.path.join(srv._secrets, "tokens")
            r = srv.post_json("/v1/streams", {"method": "exact"}, headers=h(ALICE))
            sid = r.json()["id"]
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            self.addCleanup(conn.close)

            def get(token):
                conn.request("GET", "/v1/streams/" + sid, headers=h(token))
                resp = conn.getresponse()
                return resp.status, resp.read()

            self.assertEqual(get(ALICE)[0], 200)
            sock = conn.sock
            with open(path, "w") as f:
                f.write("%s team-a\n%s bob@team-b\n" % (new, BOB))
            srv.send_signal(signal.SIGHUP)
            line = srv.wait_log(lambda ln: ln.get("msg") == "tokens reloaded")
            self.assertEqual(line.get("tokens"), 2)
            status, body = get(ALICE)
            self.assertEqual(status, 401, body)
            self.assertEqual(json.loads(body)["code"], "unauthorized")
            self.assertEqual(get(new)[0], 200)  # the team's new token sees its stream
            self.assertIs(conn.sock, sock)  # the same connection all along
            self.assertEqual(get(BOB)[0], 404)

            with open(path, "w") as f:
                f.write("short team-a\n")
            srv.send_signal(signal.SIGHUP)
            line = srv.wait_log(lambda ln: "the tokens in use are kept" in ln.get("msg", ""))
            self.assertIn("line 1", line["msg"])
            self.assertNotIn("short", json.dumps(line))
            self.assertEqual(get(new)[0], 200)
            self.assertIs(conn.sock, sock)


if __name__ == "__main__":
    unittest.main()
