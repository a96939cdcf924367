"""Bodies read as they arrive: /v1/loss and /v1/auc bodies over 1 MiB with a
Content-Length have their base64 decoded chunk by chunk (api/src/body.c,
server/src/http.c); chunked bodies are gathered whole. The same body sent
both ways must get the same reply, byte for byte, valid or not (bad base64
at a given offset, wrong length, bad dtype, malformed JSON after the
string, a string cut off), and the server keeps answering with its memory
given back (VmRSS after a barrage within a bound). Bodies of JSON number
arrays are lifted as they arrive too: sent a few bytes at a time (every
chunk boundary inside numbers, rows and keys), they get the chunked
path's reply, valid or not (a bad number, a ragged row, a string in a
row, a number that overflows, a body cut off, too many numbers).
"""

import array
import base64
import json
import random
import socket
import unittest

from lossd_harness import Server

ROWS, CLASSES = 400, 1000  # 1.6 MB of float32: 2.1 MB of base64


def vm(srv, key):
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def body(pred=None, tail="", dtype="float32", loss="sparse_categorical_crossentropy"):
    rnd = random.Random(5)
    x = array.array("f", (rnd.uniform(-4, 4) for _ in range(ROWS * CLASSES)))
    y = array.array("i", (rnd.randrange(CLASSES) for _ in range(ROWS)))
    xb = pred if pred is not None else base64.b64encode(x.tobytes()).decode()
    return ('{"loss": "%s", "from_logits": true,\n "y_true": {"shape": [%d], '
            '"dtype": "int32", "b64": "%s"},\n "y_pred": {"shape": [%d, %d], "dtype": "%s", '
            '"b64": "%s"}%s}' % (loss, ROWS, base64.b64encode(y.tobytes()).decode(), ROWS,
                                 CLASSES, dtype, xb, tail)).encode()


def logits_b64():
    return json.loads(body().decode().replace("\n", " "))["y_pred"]["b64"]



def cut_then_used_again(test, data, send, used, u0):
    """Two clients send part of /v1/loss body `data` and go away. Their early
    helpers end with them (once the server has seen them go): a later request,
    sent by send(data), finds a free helper (at most 2 run at once), so the
    early work is used again (used() counts it; u0 + 1 before); were they
    leaked, it never would be."""
    for cut in (700000, len(data) - 10):
        s = socket.create_connection(("127.0.0.1", test.srv.port), timeout=30)
        s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data) + data[:cut])
        s.close()
    for _ in range(20):
        r = send(data)
        test.assertEqual(r.status, 200, r.body[:300])
        if used() > u0 + 1:
            break
    test.assertEqual(used(), u0 + 2)

class BodyStream(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(args=["--body-cache", "16MiB"])
        cls.srv.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def both(self, data, path="/v1/loss"):
        """The reply to data sent with a Content-Length and sent chunked."""
        r1 = self.srv.request("POST", path, data, headers={"Content-Type": "application/json"},
                              timeout=120)
        c = self.srv.connection(timeout=120)
        try:
            pieces = [data[i:i + 65537] for i in range(0, len(data), 65537)]
            c.request("POST", path, body=iter(pieces), encode_chunked=True,
                      headers={"Content-Type": "application/json",
                               "Transfer-Encoding": "chunked"})
            r = c.getresponse()
            st2, b2 = r.status, r.read()
        finally:
            c.close()
        self.assertEqual((r1.status, r1.body), (st2, b2))
        return r1

    def test_valid(self):
        r = self.both(body())
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertGreater(r.json()["loss"], 0)
        r = self.both(body(loss="cross_entropy"))
        self.assertEqual(r.status, 200, r.body[:300])

    def test_errors_are_the_buffered_ones(self):
        x = logits_b64()
        cases = [
            ("bad character", body(x[:1000000] + "!" + x[1000001:]), 422, "bad_base64"),
            ("bad padding", body(x[:1000000] + "=" + x[1000001:]), 422, "bad_base64"),
            ("length", body(x[:-5] + x[-4:]), 422, "bad_base64"),
            ("shape", body(x + "AAAA"), 422, "shape_mismatch"),
            ("dtype", body(dtype="float16"), 422, "bad_type"),
            ("escape", body(x[:1500000] + "\\u0041" + x[1500001:]), None, None),
            ("utf-8", body(x[:1500000] + "\u00e9" + x[1500001:]), 422, "bad_base64"),
            ("malformed after", body(tail=",\n \"z\": [1,]"), 400, "malformed_json"),
            ("cut off", body()[:1800000], 400, "malformed_json"),
            ("non-finite", body(base64.b64encode(array.array(
                "f", [float("nan")] * (ROWS * CLASSES)).tobytes()).decode()), 422, "non_finite"),
        ]
        for name, data, status, code in cases:
            with self.subTest(name):
                r = self.both(data)
                if status:
                    self.assertEqual(r.status, status, r.body[:300])
                    self.assertEqual(r.json()["code"], code)
                    if code == "bad_base64" and name == "bad character":
                        self.assertIn("offset 1000000", r.json()["detail"])
                        self.assertEqual(r.json()["pointer"], "/y_pred/b64")
        self.assertEqual(self.srv.get("/healthz").status, 200)

    def test_loss_started_early(self):
        """y_pred last: a helper runs the loss on the rows decoded while the
        rest arrives (lossd_loss_early_total "used" counts the request), and the
        reply is still the chunked path's (both() compares them). A key after
        y_pred: the guess does not hold ("unused"), same reply. A client
        that goes away mid-body leaves the server answering."""
        def m(name):
            return self.srv.metric(name) or 0
        used, unused = 'lossd_loss_early_total{outcome="used"}', \
            'lossd_loss_early_total{outcome="unused"}'
        u0, n0 = m(used), m(unused)
        r = self.both(body())
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(m(used), u0 + 1)  # the chunked one is gathered whole
        r = self.both(body(tail=', "per_class": false'))
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertNotIn("per_class", r.json())
        self.assertEqual(m(used), u0 + 1)
        self.assertEqual(m(unused), n0 + 1)
        cut_then_used_again(self, body(), self.both, lambda: m(used), u0)

    def test_auc(self):
        rnd = random.Random(3)
        s = array.array("f", (rnd.random() for _ in range(400000)))
        y = bytes(rnd.randrange(2) for _ in range(400000))
        data = ('{"y_true": {"shape": [400000], "dtype": "uint8", "b64": "%s"}, '
                '"y_score": {"shape": [400000], "dtype": "float32", "b64": "%s"}}' % (
                    base64.b64encode(y).decode(), base64.b64encode(s.tobytes()).decode())).encode()
        r = self.both(data, "/v1/auc")
        self.assertEqual(r.status, 200, r.body[:300])

    def test_memory_given_back(self):
        """A barrage of large bodies, half of them bad: the resident memory
        afterwards is bounded by --body-cache plus a margin, not by what was
        sent (about 60 MB here)."""
        x = logits_b64()
        bad = body(x[:700000] + "!" + x[700001:])
        good = body()
        before = vm(self.srv, "VmRSS")
        for i in range(12):
            r = self.srv.request("POST", "/v1/loss", good if i % 2 else bad,
                                 headers={"Content-Type": "application/json"}, timeout=120)
            self.assertEqual(r.status, 200 if i % 2 else 422)
        after = vm(self.srv, "VmRSS")
        self.assertLess(after - before, 16 * 2**20 + 12 * 2**20,
                        "RSS grew from %d to %d" % (before, after))


def json_body(rows=300, classes=1000, edit=None, tail=""):
    """A sparse CE request with JSON logits of (rows, classes), pretty-printed
    one row a line; edit(text) may change the logits' text."""
    rnd = random.Random(9)
    y = ", ".join(str(rnd.randrange(classes)) for _ in range(rows))
    x = ",\n  ".join("[" + ", ".join("%.6g" % rnd.uniform(-4, 4) for _ in range(classes)) + "]"
                      for _ in range(rows))
    x = "[" + x + "]"
    if edit:
        x = edit(x)
    return ('{"loss": "sparse_categorical_crossentropy", "from_logits": true,\n'
            ' "y_true": [%s],\n "y_pred": %s%s}' % (y, x, tail)).encode()


class BodyStreamJson(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(args=["--body-cache", "16MiB", "--max-elements", "400000"])
        cls.srv.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def trickled(self, data, path="/v1/loss"):
        """data sent with a Content-Length, its first 40,000 bytes in writes
        of 1 to 13 bytes (so libmicrohttpd hands the body over in pieces
        that end anywhere), the rest in 4093-byte writes: status, body."""
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=120)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\nConnection: close\r\n\r\n" % (
                           path, len(data))).encode())
            at, k = 0, 0
            while at < len(data):
                n = (k % 13) + 1 if at < 40000 else 4093
                s.sendall(data[at:at + n])
                at += n
                k += 1
            got = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        finally:
            s.close()
        head, _, rest = got.partition(b"\r\n\r\n")
        return int(head.split()[1]), rest

    def same(self, data, status=None, code=None):
        st, got = self.trickled(data)
        c = self.srv.connection(timeout=120)
        try:
            pieces = [data[i:i + 65537] for i in range(0, len(data), 65537)]
            c.request("POST", "/v1/loss", body=iter(pieces), encode_chunked=True,
                      headers={"Content-Type": "application/json",
                               "Transfer-Encoding": "chunked"})
            r = c.getresponse()
            want = (r.status, r.read())
        finally:
            c.close()
        self.assertEqual((st, got), want)
        if status:
            self.assertEqual(st, status, got[:300])
        if code:
            self.assertEqual(json.loads(got)["code"], code, got[:300])

    def test_valid(self):
        data = json_body()
        self.assertGreater(len(data), 2**20)  # read as it arrives
        self.same(data, 200)

    def test_errors_are_the_buffered_ones(self):
        def at(k, rep):
            return lambda x: x[:k] + rep + x[k + 1:]
        cases = [
            ("bad number", json_body(edit=lambda x: x.replace(", ", ", 1.2.", 1)),
             400, "malformed_json"),
            ("bad number late", json_body(
                edit=lambda x: x[:2000000] + x[2000000:].replace(", ", ", 01", 1)),
             400, "malformed_json"),
            ("overflow", json_body(edit=lambda x: x.replace("]", ", 1e400]", 250)),
             400, "malformed_json"),
            ("ragged", json_body(edit=lambda x: x.replace("]", ", 1]", 250)[::-1].replace(
                "]1 ,", "]", 249)[::-1]), 422, "shape_mismatch"),
            ("string in a row", json_body(edit=lambda x: x.replace(", ", ", \"a\", ", 1)), 422,
             None),
            ("cut off", json_body()[:1500000], 400, "malformed_json"),
            ("too many numbers", json_body(rows=500), 413, "too_many_elements"),
            ("trailing comma", json_body(edit=lambda x: x[:-1] + ",]"), 400, "malformed_json"),
        ]
        for name, data, status, code in cases:
            with self.subTest(name):
                if code:
                    self.same(data, status, code)
                else:
                    self.same(data)
        self.assertEqual(self.srv.get("/healthz").status, 200)

    def test_loss_started_early(self):
        """JSON y_pred last: the helper runs the loss on the rows lifted while
        the rest arrives (lossd_loss_early_total "used"), same reply as the
        chunked path. A key after y_pred, a ragged row: never used, the
        buffered replies. A client gone mid-body leaves the server answering
        and its helper freed."""
        def m(name):
            return self.srv.metric(name) or 0
        used = 'lossd_loss_early_total{outcome="used"}'
        u0 = m(used)
        data = json_body()
        self.same(data, 200)
        self.assertEqual(m(used), u0 + 1)  # the chunked one is gathered whole
        self.same(json_body(tail=', "per_class": false'), 200)
        ragged = json_body(edit=lambda x: x[:-2] + ", 1" + x[-2:])  # the last row
        self.same(ragged, 422, "shape_mismatch")
        self.assertEqual(m(used), u0 + 1)
        cut_then_used_again(
            self, data, lambda d: self.srv.request("POST", "/v1/loss", d, headers={
                "Content-Type": "application/json"}, timeout=120), lambda: m(used), u0)


if __name__ == "__main__":
    unittest.main()
