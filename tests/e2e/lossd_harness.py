"""lossd_harness - start the real lossd binary and talk HTTP to it (stdlib only).

Used by every tests/e2e/test_*.py. The binary is $LOSSD_BIN (ctest sets it),
else ../../build/server/lossd relative to this file.

    from lossd_harness import Server

    with Server(test_hooks=True, args=["--threads", "2"]) as srv:
        r = srv.post_json("/v1/loss", {...})
        assert r.status == 200 and r.json()["loss"] > 0
    # leaving the block sends SIGTERM and asserts exit status 0

Server(args=(), env=None, test_hooks=False, data_dir=None, check_exit=True,
       tls=False, tokens=None, contract=True)
    Starts lossd on 127.0.0.1 with --port 0 (the port is read from the
    daemon's JSON "listening" log line) and a fresh temporary --data-dir
    (or data_dir, kept across restarts when given), then waits for
    GET /readyz to answer 200. args are extra flags; env extra environment
    variables; test_hooks=True sets LOSSD_TEST_HOOKS=1 (routes
    POST /v1/_sleep?ms=N, which holds a worker thread N ms).
    tls=True makes a throw-away self-signed certificate for 127.0.0.1 with
    the openssl command, starts lossd with --tls-cert/--tls-key and talks
    HTTPS to it, verifying against that certificate (srv.ssl_context).
    tokens: {token: "principal" or "principal ro"} written to a tokens file
    passed as --tokens-file; srv.request() then sends no Authorization
    unless headers= carries one (see auth()).
    contract: when $LOSSD_OPENAPI_JSON names openapi.yaml as JSON
    (scripts/openapi-json.sh), every reply srv.request() gets is checked
    against it (contract.py); the failures collect in
    srv.contract_failures and stop() fails with them. contract may also
    be a contract.Contract to check against. contract=False (or
    request(..., contract=False)) opts out; the test hook /v1/_sleep is
    never checked (it is not part of the API).
    LOSSD_TEST_STORE=postgresql in the environment runs the server on the
    PostgreSQL store instead (pg_harness.py: a private PostgreSQL started
    once per test process, one database per data dir, so a restart on the
    same data_dir finds the same streams), unless args name a --store.
    Attributes: port, base_url (also .url), data_dir, proc (subprocess.Popen),
    logs (list of parsed JSON log lines, appended as they arrive).

  srv.request(method, path, body=None, headers=None, timeout=30,
              contract=True) -> Response
    One request on a new connection (http.client). body: bytes or str.
    path is sent exactly as given (raw; "%2F" stays "%2F").
  srv.get(path, **kw), srv.post(path, body, **kw), srv.delete(path, **kw)
  srv.auth(token) -> {"Authorization": "Bearer " + token}
  srv.post_json(path, obj, headers=None, **kw)
    JSON-encodes obj, sets Content-Type: application/json.
  srv.connection(timeout=30) -> http.client.HTTPConnection (keep-alive use)
  srv.raw(data: bytes, timeout=5, read_until_close=True) -> bytes
    Writes raw bytes on a new socket and returns what came back (for
    malformed framing: duplicate Content-Length, bad Transfer-Encoding...).
  srv.metrics() -> str; srv.metric(name_with_labels) -> float or None
  srv.wait_log(pred, timeout=10) -> the first log line dict with pred(line)
  srv.send_signal(sig), srv.wait(timeout=30) -> exit code
  srv.stop(sig=signal.SIGTERM, timeout=30) -> exit code (asserts 0 when
    check_exit, then that no reply broke the contract); called by
    __exit__; idempotent.

Response: status (int), reason, headers (http.client.HTTPMessage; case-
insensitive .get()), body (bytes), json() (parsed body), text().
  response.problem() -> json() after asserting the Content-Type is
  application/problem+json and that type/title/status/code are present.

Lossd(**kw): the same server, started later: Lossd(...).start() returns
    itself with .url set; .stop() stops it (idempotent). For callers that
    construct first and start in a setUp.

run_lossd(args, env=None, timeout=10) -> subprocess.CompletedProcess
    Runs the binary to completion (for --help, --version, usage errors,
    --check), capturing stdout and stderr as text.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import sys
import threading
import time

from contract import Contract

_HERE = os.path.dirname(os.path.abspath(__file__))
LOSSD_BIN = os.environ.get(
    "LOSSD_BIN", os.path.join(_HERE, "..", "..", "build", "server", "lossd"))
TEST_DATA = os.environ.get("LOSSD_TEST_DATA", os.path.join(_HERE, "..", "data"))
CONTRACT = Contract.from_env()
_UNCHECKED_PATHS = ("/v1/_",)  # test hooks (/v1/_sleep, ...), not part of the API

if CONTRACT is not None:
    import atexit
    atexit.register(lambda: sys.stderr.write(
        "contract: %d replies checked against openapi.yaml, %d broke it\n"
        % (Contract.checked, Contract.failed)))


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def problem(self):
        ctype = self.headers.get("Content-Type", "")
        assert ctype.startswith("application/problem+json"), (
            "expected problem+json, got %r: %r" % (ctype, self.body[:300]))
        p = self.json()
        for k in ("type", "title", "status", "code"):
            assert k in p, "problem lacks %r: %r" % (k, p)
        assert p["status"] == self.status, (p, self.status)
        return p

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def run_lossd(args, env=None, timeout=10):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([LOSSD_BIN] + list(args), env=e, capture_output=True,
                          text=True, timeout=timeout)


class Server:
    def __init__(self, args=(), env=None, test_hooks=False, data_dir=None,
                 check_exit=True, start_timeout=20, tls=False, tokens=None,
                 contract=True):
        self.check_exit = check_exit
        if isinstance(contract, Contract):
            self.contract = contract
        else:
            self.contract = CONTRACT if contract else None
        self.contract_failures = []
        self.ssl_context = None
        self._secrets = None
        extra = []
        if tls or tokens:
            self._secrets = tempfile.mkdtemp(prefix="lossd-e2e-secrets-")
        if tls:
            cert = os.path.join(self._secrets, "cert.pem")
            key = os.path.join(self._secrets, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", cert, "-days", "2", "-subj",
                            "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            self.ssl_context = ssl.create_default_context(cafile=cert)
            extra += ["--tls-cert", cert, "--tls-key", key]
        if tokens:
            path = os.path.join(self._secrets, "tokens")
            with open(path, "w") as f:
                for tok, who in tokens.items():
                    f.write("%s %s\n" % (tok, who))
            extra += ["--tokens-file", path]
        self.logs = []
        self._cv = threading.Condition()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="lossd-e2e-")
        e = dict(os.environ)
        e.pop("LOSSD_PORT", None)
        if test_hooks:
            e["LOSSD_TEST_HOOKS"] = "1"
        e.update(env or {})
        if (os.environ.get("LOSSD_TEST_STORE", "sqlite") == "postgresql"
                and not any(str(a).startswith("--store") for a in args)):
            import pg_harness
            extra += ["--store", pg_harness.db_url_for(self.data_dir),
                      "--store-password-file", pg_harness.shared().password_file]
        cmd = [LOSSD_BIN, "--bind", "127.0.0.1", "--port", "0",
               "--data-dir", self.data_dir] + extra + list(args)
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._stderr = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.exit_code = None
        try:
            line = self.wait_log(lambda l: l.get("msg") == "listening",
                                 timeout=start_timeout)
            self.port = int(line["port"])
            self.base_url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
            self.url = self.base_url
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    if self.get("/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("lossd never became ready")
                time.sleep(0.02)
        except BaseException:
            self._kill()
            raise

    # -- output -----------------------------------------------------------
    def _read_stdout(self):
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = {"msg": "unparsed", "raw": raw.decode("utf-8", "replace")}
            with self._cv:
                self.logs.append(obj)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace"))

    def stderr(self):
        return "".join(self._stderr)

    def wait_log(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for line in self.logs[seen:]:
                    if pred(line):
                        return line
                seen = len(self.logs)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no matching log line in %.1fs; exit=%r logs=%r stderr=%r"
                        % (timeout, self.proc.poll(), self.logs[-5:], self.stderr()))
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise AssertionError("lossd exited with %r before the log line; "
                                         "logs=%r stderr=%r"
                                         % (self.proc.returncode, self.logs[-5:],
                                            self.stderr()))
                self._cv.wait(min(left, 0.1))

    # -- requests -----------------------------------------------------------
    def connection(self, timeout=30):
        if self.ssl_context:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    @staticmethod
    def auth(token):
        return {"Authorization": "Bearer " + token}

    def request(self, method, path, body=None, headers=None, timeout=30, contract=True):
        conn = self.connection(timeout)
        try:
            if isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            resp = Response(r.status, r.reason, r.headers, r.read())
        finally:
            conn.close()
        if contract and self.contract is not None and \
                not path.startswith(_UNCHECKED_PATHS):
            # list.extend is atomic: tests send requests from many threads
            self.contract_failures.extend(
                self.contract.check(method, path, resp.status, resp.headers, resp.body))
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body=body, **kw)

    def post_json(self, path, obj, headers=None, **kw):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.request("POST", path, body=json.dumps(obj).encode(), headers=h, **kw)

    def raw(self, data, timeout=5, read_until_close=True):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.ssl_context:
            s = self.ssl_context.wrap_socket(s, server_hostname="127.0.0.1")
        out = b""
        try:
            s.sendall(data)
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except (ConnectionResetError, ssl.SSLError):
                    break
                if not chunk:
                    break
                out += chunk
                if not read_until_close and b"\r\n\r\n" in out:
                    break
        finally:
            s.close()
        return out

    def metrics(self):
        r = self.get("/metrics")
        assert r.status == 200, r
        return r.text()

    def metric(self, name):
        for line in self.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    # -- lifetime -------------------------------------------------------------
    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        self.exit_code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return self.exit_code

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
        self._cleanup()

    def _cleanup(self):
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self._secrets:
            shutil.rmtree(self._secrets, ignore_errors=True)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.exit_code is not None or self.proc.poll() is not None:
            code = self.proc.wait()
        else:
            self.send_signal(sig)
            try:
                code = self.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise AssertionError("lossd did not stop within %ss" % timeout)
        self.exit_code = code
        self._cleanup()
        if self.check_exit:
            assert code == 0, "lossd exited with %r; stderr=%r" % (code, self.stderr())
        if self.contract_failures:
            failures, self.contract_failures = self.contract_failures, []
            raise AssertionError("%d replies broke openapi.yaml:\n  %s"
                                 % (len(failures), "\n  ".join(failures[:50])))
        return code

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._kill()
            return False
        self.stop()
        return False


class Lossd:
    """A Server constructed now and started by start(); see the module doc."""

    def __init__(self, **kw):
        self._kw = kw
        self.server = None
        self.url = None

    def start(self):
        if self.server is None:
            self.server = Server(**self._kw)
            self.url = self.server.base_url
        return self

    def stop(self):
        if self.server is not None and self.server.exit_code is None:
            return self.server.stop()
        return self.server.exit_code if self.server else None

    def __getattr__(self, name):
        if self.server is None:
            raise AttributeError(name)
        return getattr(self.server, name)
