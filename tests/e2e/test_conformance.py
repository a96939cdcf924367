"""The conformance vectors, replayed over HTTP against the real binary.

tests/data/conformance.jsonl holds the public vectors (request + expected
reply, computed by PyTorch, Keras' formulas and scikit-learn);
loss_extra.jsonl and auc_extra.jsonl more cases made the same way. The api
layer replays them in-process (tests/api/test_*_conformance.c); this replays
them through the whole service: HTTP framing, the worker pool, the
parallel-for, rendering. Every expected field is compared (numbers with
relative tolerance 2e-5, null only with null); fields the reply adds are
allowed.
"""

import json
import os
import unittest

from lossd_harness import TEST_DATA, Server

FILES = ["conformance.jsonl", "loss_extra.jsonl", "auc_extra.jsonl"]
REL = 2e-5


def diff(exp, got, path=""):
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            return ["%s: expected an object, got %r" % (path, got)]
        out = []
        for k, v in exp.items():
            if k not in got:
                out.append("%s/%s: missing" % (path, k))
            else:
                out += diff(v, got[k], "%s/%s" % (path, k))
        return out
    if isinstance(exp, list):
        if not isinstance(got, list) or len(got) != len(exp):
            return ["%s: expected a list of %d, got %r" % (path, len(exp), got)]
        out = []
        for i, (a, b) in enumerate(zip(exp, got)):
            out += diff(a, b, "%s/%d" % (path, i))
        return out
    if exp is None or isinstance(exp, (bool, str)):
        return [] if got == exp and type(got) is type(exp) else [
            "%s: expected %r, got %r" % (path, exp, got)]
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return ["%s: expected %r, got %r" % (path, exp, got)]
    if abs(exp - got) <= REL * max(abs(exp), abs(got)) or abs(exp - got) <= 1e-12:
        return []
    return ["%s: expected %r, got %r" % (path, exp, got)]


def cases():
    for name in FILES:
        path = os.path.join(TEST_DATA, name)
        with open(path) as f:
            for line in f:
                if line.strip():
                    yield name, json.loads(line)


class Conformance(unittest.TestCase):
    def test_every_vector_over_http(self):
        n = 0
        failures = []
        with Server() as srv:
            conn = srv.connection()  # one keep-alive connection for all
            for fname, case in cases():
                body = json.dumps(case["request"])
                conn.request("POST", case["endpoint"], body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                n += 1
                if r.status != 200:
                    failures.append("%s %s: status %d %s" % (fname, case["name"], r.status,
                                                             data[:200]))
                    continue
                errs = diff(case["expect"], json.loads(data))
                if errs:
                    failures.append("%s %s: %s" % (fname, case["name"], "; ".join(errs[:3])))
            conn.close()
        self.assertGreaterEqual(n, 73 + 100, "the vector files are all there")
        self.assertEqual(failures, [], "\n".join(failures))
        print("conformance over HTTP: %d cases, %d failed" % (n, len(failures)))


if __name__ == "__main__":
    unittest.main()
