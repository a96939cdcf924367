"""TLS end to end (--tls-cert / --tls-key, libmicrohttpd's GnuTLS).

A throw-away self-signed certificate for 127.0.0.1 is made with the openssl
command at test time (lossd_harness, tls=True). Checks:
- HTTPS answers, verified against that certificate, for health and /v1;
- TLS 1.2 and TLS 1.3 are accepted, TLS 1.0 and 1.1 refused (openssl
  s_client, which can still offer them);
- plain HTTP, garbage and half-finished handshakes get no HTTP answer and do
  not disturb the server; a client that connects and sends nothing is cut
  off by the idle timeout;
- bearer tokens work over TLS;
- a missing, unreadable or mismatched certificate or key stops startup, and
  giving only one of the two is a usage error; the key never reaches a log.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from lossd_harness import Server, run_lossd

SCCE = {"loss": "sparse_categorical_crossentropy", "y_true": [1, 2],
        "y_pred": [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]}
TOKEN = "tls-test-token-0123456789ab"


def s_client(port, version_flag):
    """The protocol openssl s_client negotiated with -<version_flag>, or
    None when the handshake failed."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-" + version_flag, "-cipher", "DEFAULT@SECLEVEL=0", "-brief"],
                       input=b"", capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    for line in out.splitlines():
        if line.startswith("Protocol version:"):
            return line.split(":", 1)[1].strip()
    return None


def make_cert(d, name, cn="127.0.0.1"):
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(tls=True, tokens={TOKEN: "tester"}, args=["--timeout", "3"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def auth(self):
        return {"Authorization": "Bearer " + TOKEN}

    def test_https_answers(self):
        self.assertTrue(self.srv.base_url.startswith("https://"))
        self.assertEqual(self.srv.get("/healthz").status, 200)
        r = self.srv.post_json("/v1/loss", SCCE, headers=self.auth())
        self.assertEqual(r.status, 200, r)
        self.assertAlmostEqual(r.json()["loss"], 1.1769392, delta=1e-5)
        # tokens over TLS: none is a 401
        r = self.srv.post_json("/v1/loss", SCCE)
        self.assertEqual(r.status, 401, r)
        # limits hold over TLS: a huge Content-Length is a 413 before the body
        out = self.srv.raw(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                           b"Content-Length: 1000000000\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:100])
        # keep-alive over one TLS connection
        conn = self.srv.connection()
        try:
            for _ in range(5):
                conn.request("POST", "/v1/loss", body=json.dumps(SCCE),
                             headers=dict(self.auth(), **{"Content-Type": "application/json"}))
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
        finally:
            conn.close()

    def test_protocol_versions(self):
        for flag, want in (("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")):
            with self.subTest(version=flag):
                self.assertEqual(s_client(self.srv.port, flag), want)
                ctx = ssl.create_default_context(cafile=None)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                v = ssl.TLSVersion.TLSv1_2 if flag == "tls1_2" else ssl.TLSVersion.TLSv1_3
                ctx.minimum_version = ctx.maximum_version = v
                with socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) as s:
                    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                        self.assertEqual(t.version(), want)
        for flag in ("tls1", "tls1_1"):
            with self.subTest(version=flag):
                got = s_client(self.srv.port, flag)
                self.assertIsNone(got, "the server accepted %s" % got)
        self.assertEqual(self.srv.get("/healthz").status, 200)

    def test_garbage_and_plain_http(self):
        for data in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"\x16\x03\x01\x00\x05hello",
                     b"\x16\x03\x03\xff\xff" + b"\x00" * 2000,
                     os.urandom(4096)):
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
            try:
                s.sendall(data)
                try:
                    got = s.recv(100)
                except OSError:
                    got = b""
                self.assertFalse(got.startswith(b"HTTP/1.1 2"), got)
            finally:
                s.close()
        self.assertEqual(self.srv.get("/healthz").status, 200)

    def test_silent_client_is_cut_off(self):
        # Connects and never starts the handshake: closed by --timeout 3.
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=15)
        try:
            try:
                got = s.recv(100)
            except OSError:
                got = b""
        finally:
            s.close()
        elapsed = time.monotonic() - t0
        # a plain close, or a TLS alert record (content type 21) and close
        self.assertTrue(got == b"" or got[:1] == b"\x15", got)
        self.assertLess(elapsed, 10, elapsed)
        self.assertEqual(self.srv.get("/healthz").status, 200)

    def test_key_never_logged(self):
        self.srv.get("/healthz")
        text = json.dumps(self.srv.logs) + self.srv.stderr()
        self.assertNotIn("PRIVATE KEY", text)
        self.assertNotIn(TOKEN, text)


class TlsStartup(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="lossd-tls-")

    def tearDown(self):
        shutil.rmtree(self.d, ignore_errors=True)

    def start(self, *args):
        return run_lossd(["--port", "0", "--bind", "127.0.0.1",
                          "--data-dir", os.path.join(self.d, "data")] + list(args), timeout=20)

    def test_bad_files_stop_startup(self):
        cert, key = make_cert(self.d, "a")
        cert2, key2 = make_cert(self.d, "b")
        garbage = os.path.join(self.d, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        missing = os.path.join(self.d, "missing.pem")
        for name, args in (("missing cert", ["--tls-cert", missing, "--tls-key", key]),
                           ("missing key", ["--tls-cert", cert, "--tls-key", missing]),
                           ("garbage cert", ["--tls-cert", garbage, "--tls-key", key]),
                           ("garbage key", ["--tls-cert", cert, "--tls-key", garbage]),
                           ("key of another cert", ["--tls-cert", cert, "--tls-key", key2]),
                           ("cert as key", ["--tls-cert", cert, "--tls-key", cert2])):
            with self.subTest(case=name):
                p = self.start(*args)
                self.assertEqual(p.returncode, 1, (name, p.stdout[-500:], p.stderr[-500:]))
                self.assertNotIn("PRIVATE KEY", p.stdout + p.stderr)
        for args in (["--tls-cert", cert], ["--tls-key", key]):
            p = self.start(*args)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("--tls-cert and --tls-key", p.stderr)


if __name__ == "__main__":
    unittest.main()
