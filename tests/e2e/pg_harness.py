"""pg_harness - a private PostgreSQL 15 (and HAProxy) for the e2e tests (stdlib only).

    from pg_harness import PgServer, HAProxy, require_postgres

    with PgServer() as pg:              # initdb into a temporary folder, start
        url = pg.create_db("t1")        # postgresql://lossd@127.0.0.1:PORT/t1
        pg.stop("immediate"); pg.start()  # a crash and a restart
    # leaving the block stops it (fast) and removes the folder

PgServer(bin_dir=None)
    Runs Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin, or $LOSSD_PG_BIN)
    as an unprivileged user: when the tests run as root (CI) the folder is
    given to the `postgres` user (created with useradd when missing) and
    every PostgreSQL command runs through runuser. Private TCP port on
    127.0.0.1 and a private unix socket directory; fsync stays on (the
    tests kill it). Role `lossd` with password PASSWORD (scram-sha-256 over
    TCP): pg.password_file is a file holding it (for --store-password-file),
    or pass PGPASSWORD. pg.url(db), pg.create_db(name) (idempotent),
    pg.psql(sql, db) -> stdout, pg.stop(mode="fast"|"immediate"), pg.start(),
    pg.close().
    When PostgreSQL is not installed, the constructor raises
    unittest.SkipTest with a message saying so (CI installs it).

shared() -> the PgServer of this process, started on first use and stopped
    at exit; db_url_for(data_dir) -> the URL of a database named after
    data_dir (created when missing): what lossd_harness.Server uses instead
    of --data-dir when LOSSD_TEST_STORE=postgresql, so a test that restarts
    a server on the same data dir finds its streams in the same database.

HAProxy(backends, check_path="/readyz") - Debian's haproxy on a private
    loopback port, round robin over backends ["127.0.0.1:PORT", ...),
    health-checking GET check_path every 200 ms (a backend is out after 3
    failed checks, back after 1 good one; a failed connect is retried on
    another backend, nothing else is); .url, .port, .close().
    Raises unittest.SkipTest when haproxy is not installed.
"""
import atexit
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

PASSWORD = "lossd-test-password"
USER = "lossd"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pg_bin_dir():
    d = os.environ.get("LOSSD_PG_BIN", "/usr/lib/postgresql/15/bin")
    return d if os.path.exists(os.path.join(d, "initdb")) else None


def require_postgres():
    if not pg_bin_dir():
        raise unittest.SkipTest("PostgreSQL 15 is not installed (Debian package postgresql; "
                                "or set LOSSD_PG_BIN): skipping the PostgreSQL store tests")


def _os_user():
    """The unprivileged user PostgreSQL runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


class PgServer:
    def __init__(self, bin_dir=None):
        require_postgres()
        self.bin = bin_dir or pg_bin_dir()
        self.user = _os_user()
        self.dir = tempfile.mkdtemp(prefix="lossd-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "log")
        self.port = _free_port()
        os.mkdir(self.sock)
        pwfile = os.path.join(self.dir, "initpw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        self.password_file = os.path.join(self.dir, "lossd.pw")
        with open(self.password_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        if self.user:
            pw = pwd.getpwnam(self.user)
            for p in (self.dir, self.sock, pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(["initdb", "-D", self.data, "-U", USER, "--pwfile", pwfile,
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                   "--no-instructions"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nmax_connections = 300\n"
                    "shared_buffers = 64MB\nfsync = on\nsynchronous_commit = on\n"
                    % (self.port, self.sock))
        self.running = False
        self.start()

    def _run(self, args, check=True, **kw):
        cmd = [os.path.join(self.bin, args[0])] + args[1:]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)

    def start(self):
        self._run(["pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"])
        self.running = True

    def stop(self, mode="fast"):
        if self.running:
            self._run(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"],
                      check=False)
            self.running = False

    def url(self, db):
        return "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, db)

    def psql(self, sql, db="postgres"):
        r = self._run(["psql", "-h", self.sock, "-p", str(self.port), "-U", USER, "-d", db,
                       "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        return r.stdout

    def create_db(self, name):
        if not self.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % name).strip():
            self.psql('CREATE DATABASE "%s"' % name)
        return self.url(name)

    def close(self):
        self.stop("fast")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


_SHARED = None


def shared():
    global _SHARED
    if _SHARED is None:
        _SHARED = PgServer()
        atexit.register(_SHARED.close)
    return _SHARED


def db_url_for(data_dir):
    name = "d_" + hashlib.sha1(os.path.abspath(data_dir).encode()).hexdigest()[:20]
    return shared().create_db(name)


class HAProxy:
    def __init__(self, backends, check_path="/readyz"):
        exe = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                          if os.path.exists("/usr/sbin/haproxy") else None)
        if not exe:
            raise unittest.SkipTest("haproxy is not installed (Debian package haproxy): "
                                    "skipping the load-balancer tests")
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(prefix="lossd-haproxy-")
        cfg = os.path.join(self.dir, "haproxy.cfg")
        # A replica leaves the rotation after 3 failed checks in a row and
        # comes back after one good one; a check has 1 s to answer once
        # connected (timeout check). With fall 1 and no timeout check, one
        # /readyz answered later than inter (200 ms) took a replica out, and
        # when a stall of the loaded machine did that to every replica at
        # once, HAProxy had no server and answered 503 itself. A killed
        # replica (connection refused) is still out within ~0.6 s, and a
        # request HAProxy could not connect with meanwhile goes to another
        # replica (retries, redispatch). Only a failed connect is retried
        # (retry-on conn-failure, the default): a request that reached a
        # replica may have been applied there, so it is never sent twice.
        lines = ["global", "  maxconn 4096", "defaults", "  mode http",
                 "  timeout connect 2s", "  timeout client 60s", "  timeout server 60s",
                 "frontend fe", "  bind 127.0.0.1:%d" % self.port, "  default_backend be",
                 "backend be", "  balance roundrobin",
                 "  retries 2", "  option redispatch 1", "  retry-on conn-failure",
                 "  option httpchk GET %s" % check_path, "  http-check expect status 200",
                 "  timeout check 1s",
                 "  default-server inter 200ms fall 3 rise 1"]
        for i, b in enumerate(backends):
            lines.append("  server r%d %s check" % (i, b))
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([exe, "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not start: %s"
                                       % self.proc.stderr.read().decode(errors="replace"))
                time.sleep(0.05)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
