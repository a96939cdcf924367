"""lossd-cli (clients/python/lossd_client/cli.py) against a started lossd.

Runs the CLI as a user would, `python3 -m lossd_client ARGS` in a child
process, and checks its output and exit codes: create, update from CSV
and .npy files (chunked, and a rerun of the same files counts once),
read as a table and --json against the loss and AUC computed here, export
and merge (two halves merged equal the whole), list, reset, delete, history
(exit 4 with a clear message while the server has no history, or a CSV
with a header when it does), --help's examples and exit codes, and the
exit codes 1 (refused), 2 (usage, bad file) and 3 (unreachable).

The installed form (a wheel built with pip, a venv, the lossd-cli console
script) is tested by test_client_install.py.
"""

import csv
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import unittest

from lossd_harness import Server

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.abspath(os.path.join(HERE, "..", "..", "clients", "python"))

try:
    import numpy as np
except ImportError:
    np = None

Y = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0]
P = [0.1, 0.8, 0.65, 0.3, 0.9, 0.45, 0.2, 0.55, 0.35, 0.6]


def exact_auc(y, s):
    pos = [v for v, t in zip(s, y) if t == 1]
    neg = [v for v, t in zip(s, y) if t == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def bce(y, p):
    return -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for t, q in zip(y, p)) / len(y)


class TestCli(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.srv.__enter__()
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        cls.srv.__exit__(None, None, None)

    def cli(self, *args, url=None, stdin=None):
        env = dict(os.environ, PYTHONPATH=PKG, LOSSD_URL=url or self.srv.url)
        env.pop("LOSSD_TOKEN", None)
        p = subprocess.run([sys.executable, "-m", "lossd_client"] + list(args), env=env,
                           input=stdin, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.cli(*args, **kw)
        self.assertEqual(rc, 0, "lossd-cli %s: %s%s" % (" ".join(args), out, err))
        return out

    def file(self, name, rows, header=None):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            if header:
                w.writerow(header)
            for r in rows:
                w.writerow(r if isinstance(r, list) else [r])
        return path

    def create(self, *extra):
        sid = self.ok("create", "--name", "cli", "--method", "exact", "--loss",
                      "binary_crossentropy", *extra).strip()
        self.assertRegex(sid, r"^[A-Za-z0-9_-]{1,128}$")
        return sid

    def test_help_shows_examples_and_exit_codes(self):
        out = self.ok("--help")
        for word in ("examples:", "lossd-cli update STREAM --y-true", "exit codes:",
                     "history", "export", "merge", "list", "--json"):
            self.assertIn(word, out)
        self.assertIn("example:", self.ok("update", "--help"))

    def test_create_update_csv_read_table_and_json(self):
        sid = self.create()
        y = self.file("y.csv", Y, header=["label"])
        p = self.file("p.csv", P)
        out = self.ok("update", sid, "--y-true", y, "--y-pred", p, "--chunk", "3")
        self.assertIn("count 10", out)
        again = self.ok("update", sid, "--y-true", y, "--y-pred", p, "--chunk", "3")
        self.assertIn("count 10", again)  # same files, same batch ids: counted once
        table = self.ok("read", sid)
        self.assertRegex(table, r"(?m)^count\s+10$")
        self.assertIn("auc", table)
        r = json.loads(self.ok("--json", "read", sid))
        self.assertEqual(r["count"], 10)
        self.assertAlmostEqual(r["auc"], exact_auc(Y, P), places=6)
        self.assertAlmostEqual(r["loss"], bce(Y, P), places=5)

    @unittest.skipIf(np is None, "needs numpy for .npy files (Debian python3-numpy)")
    def test_update_from_npy(self):
        sid = self.create()
        yp = os.path.join(self.tmp.name, "y.npy")
        pp = os.path.join(self.tmp.name, "p.npy")
        np.save(yp, np.array(Y, dtype=np.int64))
        np.save(pp, np.array(P, dtype=np.float64))
        self.ok("update", sid, "--y-true", yp, "--y-pred", pp)
        r = json.loads(self.ok("--json", "read", sid))
        self.assertEqual(r["count"], 10)
        self.assertAlmostEqual(r["auc"], exact_auc(Y, P), places=6)

    def test_export_merge_equals_the_whole(self):
        a, b = self.create(), self.create()
        self.ok("update", a, "--y-true", self.file("ya.csv", Y[:5]),
                "--y-pred", self.file("pa.csv", P[:5]))
        self.ok("update", b, "--y-true", self.file("yb.csv", Y[5:]),
                "--y-pred", self.file("pb.csv", P[5:]))
        state = os.path.join(self.tmp.name, "a.state.json")
        self.ok("export", a, "-o", state)
        with open(state) as f:
            self.assertIsInstance(json.load(f), dict)
        self.assertIn("merged into", self.ok("merge", b, state))
        r = json.loads(self.ok("--json", "read", b))
        self.assertEqual(r["count"], 10)
        self.assertAlmostEqual(r["auc"], exact_auc(Y, P), places=6)
        c = self.create()
        piped = self.ok("export", a)  # to stdout, merged from stdin
        self.ok("merge", c, "-", stdin=piped)
        self.assertEqual(json.loads(self.ok("--json", "read", c))["count"], 5)

    def test_list_reset_delete(self):
        sid = self.create()
        listed = json.loads(self.ok("--json", "list"))
        self.assertIn(sid, [s["id"] for s in listed["streams"]])
        self.assertIn(sid, self.ok("list"))
        self.ok("update", sid, "--y-true", self.file("y2.csv", Y), "--y-score",
                self.file("p2.csv", P))
        self.assertIn("reset", self.ok("reset", sid))
        self.assertEqual(json.loads(self.ok("--json", "read", sid))["count"], 0)
        self.ok("delete", sid)
        rc, out, err = self.cli("read", sid)
        self.assertEqual(rc, 1)
        self.assertIn("unknown_stream", err)

    def test_list_by_tag(self):
        rc, out, err = self.cli("create", "--name", "t", "--tag", "team:vision")
        if rc == 1 and "unknown_field" in err:
            # a server before docs/API.md section 8: the refusal names the field
            self.assertIn("tags", err)
            rc, out, err = self.cli("list", "--tag", "team:vision")
            self.assertIn(rc, (1, 4), err)  # refused, or not filtered: never all streams
            self.assertEqual(out, "")
            return
        self.assertEqual(rc, 0, err)
        sid = out.strip()
        self.create()  # untagged
        listed = json.loads(self.ok("--json", "list", "--tag", "team:vision"))
        self.assertEqual([s["id"] for s in listed["streams"]], [sid])

    def test_history_table_csv_or_a_clear_error(self):
        sid = self.create()
        y, p = self.file("yh.csv", Y), self.file("ph.csv", P)
        rc, out, err = self.cli("update", sid, "--y-true", y, "--y-pred", p, "--step", "7")
        if rc == 1 and "/step" in err:
            rc, out, err = self.cli("history", sid)
            self.assertEqual(rc, 4, (out, err))
            self.assertIn("no stream history", err)
            self.assertEqual(out, "")
            return
        self.assertEqual(rc, 0, err)
        out = self.ok("history", sid, "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(len(rows), 1)
        self.assertEqual(int(rows[0]["step"]), 7)
        self.assertEqual(int(rows[0]["count"]), 10)
        self.assertIn("step", self.ok("history", sid))

    def test_exit_codes(self):
        rc, out, err = self.cli("frobnicate")
        self.assertEqual(rc, 2)
        rc, out, err = self.cli("read", "no/such")
        self.assertEqual(rc, 2)
        self.assertIn("stream ids match", err)
        sid = self.create()
        bad = self.file("bad.csv", ["0", "x1"])
        rc, out, err = self.cli("update", sid, "--y-true", bad, "--y-pred", bad)
        self.assertEqual(rc, 2)
        self.assertIn("not a number", err)
        rc, out, err = self.cli("update", sid, "--y-true", self.file("y3.csv", Y),
                                "--y-pred", self.file("p3.csv", P[:4]))
        self.assertEqual(rc, 2)
        self.assertIn("rows", err)
        rc, out, err = self.cli("update", sid, "--y-true", self.file("y4.csv", [2, 0]),
                                "--y-pred", self.file("p4.csv", [0.5, 0.5]))
        self.assertEqual(rc, 1)  # refused by the server: its problem+json on stderr
        body = json.loads(err.strip().splitlines()[-1])
        self.assertEqual(body["status"], 422)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        rc, out, err = self.cli("list", url="http://127.0.0.1:%d" % port)
        self.assertEqual(rc, 3)
        self.assertIn("cannot reach", err)


if __name__ == "__main__":
    unittest.main()
