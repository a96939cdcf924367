#!/usr/bin/env python3
"""Checks of docker/ that need no Docker engine (called by build-steps.sh and lint.sh).

    dockertool.py build [--install-deps] [--keep] [--skip-smoke]
        Replay docker/Dockerfile without Docker: copy the working tree's files
        (git ls-files, minus Dockerfile.dockerignore) into a temporary folder,
        run the builder stage's RUN steps there with /bin/sh -c exactly as
        written (the apt-get step is checked instead: its packages must be
        installed, or are installed with --install-deps), then check the
        runtime stage: its apt packages exist, every COPY --from=builder
        source was produced, every shared library the binary loads comes from
        those packages (or libc), and the binary starts as an unprivileged
        user with the image's ENV, passes the HEALTHCHECK command and stops
        cleanly on the STOPSIGNAL.
    dockertool.py lint-dockerfile
        Required instructions and hadolint-style rules, for when hadolint is
        not installed (it is not packaged in Debian).
    dockertool.py lint-manifests
        Semantic checks of compose.yaml and k8s/*.yaml (needs PyYAML).
    dockertool.py run-steps-shellcheck
        Write each RUN command to a file and shellcheck it as POSIX sh.

The Dockerfile is parsed, not duplicated: a change to a RUN line is what
build-steps.sh runs next time. It deliberately supports only the subset of
Dockerfile syntax that docker/Dockerfile uses (no heredocs, no ONBUILD).
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCKERFILE = os.path.join(HERE, "Dockerfile")
DOCKERIGNORE = os.path.join(HERE, "Dockerfile.dockerignore")

# What debian:bookworm-slim already holds that a binary may link against.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "zlib1g", "libzstd1", "liblzma5",
                       "libbz2-1.0", "libcrypt1", "libselinux1", "libpcre2-8-0"}


# --- parsing ----------------------------------------------------------------------

class Instruction:
    def __init__(self, op, args, line):
        self.op, self.args, self.line = op, args, line

    def __repr__(self):
        return "%s@%d" % (self.op, self.line)


class Stage:
    def __init__(self, base, name, line):
        self.base, self.name, self.line = base, name, line
        self.instructions = []

    def all(self, op):
        return [i for i in self.instructions if i.op == op]


def parse(path=DOCKERFILE):
    """(global ARGs dict, [Stage]) of a Dockerfile."""
    with open(path) as f:
        raw = f.read().split("\n")
    logical, buf, start = [], "", None
    for n, text in enumerate(raw, 1):
        s = text.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue  # comment lines inside a continuation are dropped
        if start is None:
            start = n
        if s.endswith("\\"):
            buf += s[:-1].rstrip() + " "
            continue
        buf += s
        logical.append((start, buf))
        buf, start = "", None
    if buf:
        raise ValueError("Dockerfile ends inside a line continuation")
    args, stages = {}, []
    for line, text in logical:
        op, _, rest = text.partition(" ")
        op = op.upper()
        rest = rest.strip()
        if op == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = _subst(words[0], args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name, line))
        elif not stages:
            if op != "ARG":
                raise ValueError("line %d: %s before the first FROM" % (line, op))
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(op, rest, line))
    return args, stages


def _subst(s, args):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), s)


def stage(stages, name):
    for st in stages:
        if st.name == name:
            return st
    raise ValueError("no stage named %r" % name)


def env_pairs(ins):
    """The key=value pairs of one ENV instruction."""
    out = {}
    for tok in shlex.split(ins.args):
        k, eq, v = tok.partition("=")
        if not eq:
            raise ValueError("line %d: use ENV key=value" % ins.line)
        out[k] = v
    return out


def env_of(st):
    """ENV key=value pairs of a stage, in order."""
    out = {}
    for ins in st.all("ENV"):
        out.update(env_pairs(ins))
    return out


def apt_packages(cmd):
    """Package names of every `apt-get install` in a RUN command."""
    pkgs = []
    for part in re.split(r"&&|;|\|\|", cmd):
        words = part.split()
        if "apt-get" in words and "install" in words:
            for w in words[words.index("install") + 1:]:
                if not w.startswith("-"):
                    pkgs.append(w.split("=")[0])
    return pkgs


def json_form(args):
    """The list of an exec-form instruction, or None when shell form."""
    try:
        v = json.loads(args)
    except ValueError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


# --- build ------------------------------------------------------------------------

def _ignore_patterns():
    pats = []
    with open(DOCKERIGNORE) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                pats.append(line.rstrip("/"))
    return pats


def _pattern_regex(pat):
    """A .dockerignore pattern as a regex over context-relative paths
    (`*` and `?` stay within one path element, `**/` spans any number)."""
    out, i = "", 0
    pat = pat.lstrip("/")
    while i < len(pat):
        if pat.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pat.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pat[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pat[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pat[i]), i + 1
    return re.compile(out + r"\Z")


def _ignored(path, regexes):
    """True when the path or one of its parent directories matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    return any(rx.match(p) for rx in regexes for p in prefixes)


def context_files():
    """The working tree's files that `docker build .` would send."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "-co", "--exclude-standard"],
                             check=True, capture_output=True).stdout.decode()
        files = [p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(ROOT):
            for n in names:
                files.append(os.path.relpath(os.path.join(d, n), ROOT))
    pats = [_pattern_regex(p) for p in _ignore_patterns()]
    return sorted(p for p in set(files)
                  if os.path.lexists(os.path.join(ROOT, p)) and not _ignored(p, pats))


def copy_context(dest):
    files = context_files()
    for p in files:
        src, dst = os.path.join(ROOT, p), os.path.join(dest, p)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return len(files)


def _installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip().endswith("installed")


def _known(pkg):
    """The package exists in the apt lists (or, without lists, is installed)."""
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", pkg],
                       capture_output=True, text=True)
    if r.returncode == 0 and "Package:" in r.stdout:
        return True
    return _installed(pkg)


def _say(msg):
    print(msg, flush=True)


class Timer:
    def __init__(self):
        self.rows = []

    def run(self, label, fn):
        t = time.monotonic()
        try:
            fn()
        except BaseException:
            self.rows.append((label, time.monotonic() - t, "FAILED"))
            raise
        self.rows.append((label, time.monotonic() - t, "ok"))

    def report(self):
        _say("\n%-58s %8s" % ("step", "seconds"))
        for label, dt, status in self.rows:
            _say("%-58s %8.1f  %s" % (label[:58], dt, status))
        _say("%-58s %8.1f" % ("total", sum(r[1] for r in self.rows)))


def _installed_set(pkgs):
    """The subset of pkgs that dpkg reports installed (one query)."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n"] + list(pkgs),
                       capture_output=True, text=True)
    return {ln.split()[0] for ln in r.stdout.splitlines()
            if ln.strip().endswith(" installed")}


def _check_apt_step(pkgs, install):
    have = _installed_set(pkgs)
    unknown = [p for p in pkgs if p not in have and not _known(p)]
    if unknown:
        raise SystemExit("unknown Debian packages: %s" % " ".join(unknown))
    missing = [p for p in pkgs if p not in have]
    if missing and install:
        _say("  installing %s" % " ".join(missing))
        cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
        if subprocess.run(cmd).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(cmd, check=True)
        have = _installed_set(pkgs)
        missing = [p for p in pkgs if p not in have]
    if missing:
        raise SystemExit("not installed (rerun with --install-deps): %s" % " ".join(missing))
    _say("  %d packages present: %s" % (len(pkgs), " ".join(pkgs)))


def _run_shell(cmd, cwd, env, log):
    with open(log, "wb") as f:
        r = subprocess.run(["/bin/sh", "-c", cmd], cwd=cwd, env=env,
                           stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        with open(log, "rb") as f:
            tail = f.read().decode("utf-8", "replace").splitlines()[-60:]
        _say("\n".join("  | " + ln for ln in tail))
        raise SystemExit("RUN step failed with exit %d: %s (log %s)" % (r.returncode, cmd, log))


def _deps_closure(pkgs):
    """Installed packages reachable from pkgs through Depends/Pre-Depends."""
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", p],
                           capture_output=True, text=True)
        if r.returncode != 0:
            continue
        for dep in r.stdout.split(","):
            for alt in dep.split("|"):
                name = alt.strip().split(" ")[0].split(":")[0]
                if name and name not in seen:
                    todo.append(name)
    return seen


def _owners(libs):
    """{lib: owning package or None}; one dpkg -S call for every spelling of
    every path (merged /usr: dpkg may know /lib/... or /usr/lib/...)."""
    spellings = {}
    for lib in libs:
        cands = {lib, os.path.realpath(lib)}
        for c in list(cands):
            cands.add(c[4:] if c.startswith("/usr/") else "/usr" + c)
        spellings[lib] = cands
    allpaths = sorted(set().union(*spellings.values())) if spellings else []
    r = subprocess.run(["dpkg", "-S"] + allpaths, capture_output=True, text=True)
    owner_of = {}
    for ln in r.stdout.splitlines():
        pkgs, _, path = ln.partition(": ")
        owner_of[path.strip()] = pkgs.split(",")[0].strip()
    return {lib: next((owner_of[c] for c in sorted(cands) if c in owner_of), None)
            for lib, cands in spellings.items()}


def _check_libraries(binary, runtime_pkgs):
    r = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    libs = re.findall(r"=>\s+(/\S+)", r.stdout)
    missing = re.findall(r"^\s*(\S+) => not found", r.stdout, re.M)
    if missing:
        raise SystemExit("ldd: not found: %s" % " ".join(missing))
    allowed = _deps_closure(list(runtime_pkgs) + sorted(BASE_IMAGE_PACKAGES))
    bad = []
    owners = _owners(libs)
    for lib in libs:
        owner = owners[lib]
        if owner is None or owner.split(":")[0] not in allowed:
            bad.append("%s (%s)" % (lib, owner))
    if bad:
        raise SystemExit("the runtime stage would lack: %s" % ", ".join(bad))
    _say("  %d shared libraries, all from the runtime packages or the base image" % len(libs))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _create_stream(base):
    """POST /v1/streams; True when created, False on 501 (not implemented)."""
    req = urllib.request.Request(base + "/v1/streams", data=b'{"name": "smoke"}',
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return 200 <= r.status < 300
    except urllib.error.HTTPError as e:
        if e.code == 501:
            return False
        raise SystemExit("POST /v1/streams answered %d: %s" % (e.code, e.read()[:300]))


def _smoke(binary, rt, tmp):
    """Start the binary as the image would (unprivileged, ENV, WORKDIR /data),
    probe it with the HEALTHCHECK command, stop it with the STOPSIGNAL."""
    env = {"PATH": os.path.dirname(binary) + ":/usr/bin:/bin"}
    env.update(env_of(rt))
    port = _free_port()
    # Loopback only here: no traffic leaves this machine.
    env["LOSSD_BIND"], env["LOSSD_PORT"] = "127.0.0.1", str(port)
    data = os.path.join(tmp, "data")
    os.makedirs(data, mode=0o750)
    env["LOSSD_DATA_DIR"] = data
    cmd = [binary]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        os.chown(data, 65534, 65534)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + cmd
    hc = rt.all("HEALTHCHECK")[-1].args
    probe = json_form(hc[hc.index("CMD") + 3:].strip())
    probe = [p.replace(":8080", ":%d" % port) for p in probe]
    probe[0] = binary if probe[0] == "lossd" else probe[0]
    stopsig = getattr(signal, rt.all("STOPSIGNAL")[-1].args.strip())
    log = open(os.path.join(tmp, "smoke.log"), "wb")
    proc = subprocess.Popen(cmd, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise SystemExit("lossd exited with %d at start (see %s)"
                                 % (proc.returncode, log.name))
            if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit("HEALTHCHECK never passed: %s" % " ".join(probe))
            time.sleep(0.1)
        base = "http://127.0.0.1:%d" % port
        with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
            if r.status != 200:
                raise SystemExit("/readyz answered %d" % r.status)
        # A stream is stored under LOSSD_DATA_DIR: proves the unprivileged
        # user can write its volume (the reason for the chown in the image).
        stored = _create_stream(base)
        proc.send_signal(stopsig)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            raise SystemExit("lossd did not stop within 20 s of %s" % stopsig.name)
        if rc != 0:
            raise SystemExit("lossd exited %d after %s" % (rc, stopsig.name))
        if stored and not os.listdir(data):
            raise SystemExit("a stream was created but nothing is in %s" % data)
        _say("  healthy as uid %s, %s, stopped cleanly on %s"
             % ("65534" if cmd[0] == "setpriv" else os.geteuid(),
                "stream stored in the data dir" if stored
                else "streams not implemented (501): data dir write not verified",
                stopsig.name))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def build(argv):
    install = "--install-deps" in argv
    keep = "--keep" in argv
    skip_smoke = "--skip-smoke" in argv
    _, stages = parse()
    bld, rt = stage(stages, "builder"), stage(stages, "runtime")
    tmp = tempfile.mkdtemp(prefix="lossd-docker-build-")
    os.chmod(tmp, 0o755)  # the smoke test's unprivileged user must reach the binary
    t = Timer()
    ok = False
    try:
        def fs(path):  # a path in the image -> the path in tmp
            return os.path.join(tmp, path.lstrip("/"))
        cwd = tmp
        env = dict(os.environ)
        _say("replaying %s (builder stage, line %d) in %s" % (DOCKERFILE, bld.line, tmp))
        for i, ins in enumerate(bld.instructions, 1):
            label = "%2d %s %s" % (i, ins.op, ins.args)
            if ins.op == "WORKDIR":
                cwd = fs(ins.args)
                os.makedirs(cwd, exist_ok=True)
            elif ins.op == "ENV":
                env.update(env_pairs(ins))
            elif ins.op == "COPY":
                words = ins.args.split()
                if words != [".", "."]:
                    raise SystemExit("line %d: build-steps.sh only knows COPY . ." % ins.line)
                _say(label)
                t.run(label, lambda: _say("  %d files" % copy_context(cwd)))
            elif ins.op == "RUN" and apt_packages(ins.args):
                _say(label[:100])
                t.run("%2d RUN apt-get install (checked)" % i,
                      lambda: _check_apt_step(apt_packages(ins.args), install))
            elif ins.op == "RUN":
                _say(label[:100])
                log = os.path.join(tmp, "step-%02d.log" % i)
                t.run(label, lambda: _run_shell(ins.args, cwd, env, log))
            elif ins.op in ("ARG", "LABEL"):
                pass
            else:
                raise SystemExit("line %d: build-steps.sh does not replay %s" % (ins.line, ins.op))

        _say("checking the runtime stage (line %d)" % rt.line)
        rt_pkgs = [p for ins in rt.all("RUN") for p in apt_packages(ins.args)]
        t.run("runtime apt packages exist", lambda: _check_apt_step(rt_pkgs, install))
        binaries = []
        for ins in rt.all("COPY"):
            words = ins.args.split()
            if not words[0].startswith("--from=builder"):
                raise SystemExit("line %d: runtime COPY must come from the builder" % ins.line)
            src = fs(words[1])
            if not os.path.isfile(src):
                raise SystemExit("COPY --from=builder %s: not produced by the build" % words[1])
            binaries.append(src)
        for b in binaries:
            t.run("shared libraries of %s" % os.path.basename(b),
                  lambda: _check_libraries(b, rt_pkgs))
        if not skip_smoke:
            t.run("smoke: start, HEALTHCHECK, STOPSIGNAL", lambda: _smoke(binaries[0], rt, tmp))
        ok = True
    finally:
        t.report()
        if keep or not ok:
            _say("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    _say("build-steps: OK" if ok else "build-steps: FAILED")
    return 0


# --- lint -------------------------------------------------------------------------

def lint_dockerfile():
    """hadolint-style rules plus what this project requires of the image."""
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    try:
        args, stages = parse()
    except ValueError as e:
        print("Dockerfile: %s" % e)
        return 1
    names = [s.name for s in stages]
    need(names[:1] == ["builder"] and names[-1:] == ["runtime"],
         "stages must be builder ... runtime, got %s" % names)
    for st in stages:
        need(st.base.startswith("debian:bookworm-slim"),
             "line %d: FROM %s is not debian:bookworm-slim" % (st.line, st.base))
        need(":latest" not in st.base, "line %d: DL3007 never :latest" % st.line)
        for ins in st.instructions:
            if ins.op == "ADD":
                problems.append("line %d: DL3020 use COPY, not ADD" % ins.line)
            if ins.op == "WORKDIR":
                need(ins.args.startswith("/"), "line %d: DL3000 WORKDIR must be absolute" % ins.line)
            if ins.op in ("CMD", "ENTRYPOINT"):
                need(json_form(ins.args) is not None,
                     "line %d: DL3025 %s must use the JSON form" % (ins.line, ins.op))
            if ins.op == "RUN":
                a = ins.args
                if "apt-get install" in a:
                    need("-y" in a.split(), "line %d: DL3014 apt-get install -y" % ins.line)
                    need("--no-install-recommends" in a,
                         "line %d: DL3015 --no-install-recommends" % ins.line)
                    need("apt-get update" in a,
                         "line %d: apt-get update in the same RUN as install" % ins.line)
                    need("rm -rf /var/lib/apt/lists/*" in a,
                         "line %d: DL3009 remove the apt lists in the same RUN" % ins.line)
                need(not re.search(r"(^|[;&|]\s*)cd\s", a),
                     "line %d: DL3003 use WORKDIR, not cd" % ins.line)
                need("sudo " not in a, "line %d: DL3004 no sudo" % ins.line)
                need("apt " not in a.replace("apt-get ", ""),
                     "line %d: DL3027 apt-get, not apt" % ins.line)
    try:
        bld, rt = stage(stages, "builder"), stage(stages, "runtime")
    except ValueError as e:
        problems.append(str(e))
        bld = rt = None
    if bld is not None:
        runs = " ".join(i.args for i in bld.all("RUN"))
        need("-DLOSSD_WERROR=ON" in runs, "builder: build with -DLOSSD_WERROR=ON")
        need("-DCMAKE_BUILD_TYPE=Release" in runs, "builder: build Release")
        need(re.search(r"ctest\b.*-L unit", runs) is not None, "builder: run ctest -L unit")
    if rt is not None:
        runs = " ".join(i.args for i in rt.all("RUN"))
        pkgs = [p for i in rt.all("RUN") for p in apt_packages(i.args)]
        need(sorted(pkgs) == sorted(["libmicrohttpd12", "libjansson4", "libuv1",
                                     "libsqlite3-0", "libpq5"]),
             "runtime: apt packages must be exactly the five runtime libraries, got %s" % pkgs)
        need(not any(p.endswith("-dev") for p in pkgs), "runtime: no -dev packages")
        users = rt.all("USER")
        need(users and users[-1].args.split(":")[0] not in ("root", "0"),
             "runtime: DL3002 last USER must not be root")
        need(users and re.match(r"^\d+(:\d+)?$", users[-1].args),
             "runtime: USER numeric (Kubernetes runAsNonRoot verifies UIDs)")
        need("useradd" in runs and " lossd" in runs, "runtime: create the user lossd")
        need("chown lossd:lossd /data" in runs, "runtime: /data owned by lossd")
        env = env_of(rt)
        for k, v in (("LOSSD_BIND", "0.0.0.0"), ("LOSSD_PORT", "8080"),
                     ("LOSSD_DATA_DIR", "/data")):
            need(env.get(k) == v, "runtime: ENV %s=%s" % (k, v))
        need(any("8080" in i.args.split() for i in rt.all("EXPOSE")), "runtime: EXPOSE 8080")
        need(any("/data" in i.args for i in rt.all("VOLUME")), "runtime: VOLUME /data")
        need([i.args for i in rt.all("STOPSIGNAL")] == ["SIGTERM"], "runtime: STOPSIGNAL SIGTERM")
        hcs = rt.all("HEALTHCHECK")
        if len(hcs) != 1 or "CMD" not in hcs[0].args:
            problems.append("runtime: one HEALTHCHECK ... CMD")
        else:
            cmd = json_form(hcs[0].args[hcs[0].args.index("CMD") + 3:].strip())
            need(cmd == ["lossd", "--check", "http://127.0.0.1:8080/healthz"],
                 "runtime: HEALTHCHECK CMD [\"lossd\",\"--check\",\"http://127.0.0.1:8080/healthz\"]")
        copies = [i.args.split() for i in rt.all("COPY")]
        need(copies and all(c[0] == "--from=builder" for c in copies),
             "runtime: COPY only --from=builder")
    for p in problems:
        print("Dockerfile: " + p)
    print("Dockerfile: %s" % ("FAILED" if problems else "ok"))
    return 1 if problems else 0


def _load_yaml(path):
    import yaml
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def lint_manifests():
    try:
        import yaml
    except ImportError:
        print("manifests: PyYAML missing (apt-get install python3-yaml)")
        return 1
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    try:
        return _lint_manifests(need, problems)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as e:
        print("manifests: cannot check: %s: %s" % (type(e).__name__, e))
        return 1


def _lint_manifests(need, problems):
    # compose
    (c,) = _load_yaml(os.path.join(HERE, "compose.yaml"))
    svc = c.get("services", {}).get("lossd", {})
    need(svc.get("read_only") is True, "compose: read_only: true")
    need(any(str(t).startswith("/tmp") for t in svc.get("tmpfs", [])), "compose: tmpfs /tmp")
    vols = [v for v in svc.get("volumes", []) if isinstance(v, str) and v.endswith(":/data")]
    need(vols and vols[0].split(":")[0] in (c.get("volumes") or {}),
         "compose: a named volume (declared under volumes:) at /data")
    hc = svc.get("healthcheck", {}).get("test", [])
    need(hc[:3] == ["CMD", "lossd", "--check"], "compose: healthcheck runs lossd --check")
    need(svc.get("build", {}).get("dockerfile") == "docker/Dockerfile",
         "compose: builds docker/Dockerfile")

    # kubernetes
    docs = []
    for name in sorted(os.listdir(os.path.join(HERE, "k8s"))):
        if name.endswith(".yaml"):
            docs += _load_yaml(os.path.join(HERE, "k8s", name))
    kinds = {}
    for d in docs:
        if d.get("kind") == "Kustomization":
            names = set(os.listdir(os.path.join(HERE, "k8s")))
            need(set(d.get("resources", [])) <= names, "k8s: kustomization lists existing files")
            continue
        need("apiVersion" in d and "kind" in d and "name" in d.get("metadata", {}),
             "k8s: every object has apiVersion, kind, metadata.name")
        kinds.setdefault(d.get("kind"), []).append(d)
    sts = kinds.get("StatefulSet", [])
    need(len(sts) == 1, "k8s: one StatefulSet")
    services = kinds.get("Service", [])
    if sts:
        s = sts[0]["spec"]
        pod = s["template"]["spec"]
        labels = s["template"]["metadata"]["labels"]
        need(s["selector"]["matchLabels"].items() <= labels.items(),
             "k8s: selector matches the pod labels")
        (ctr,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in ctr.get("env", [])}
        drain = int(env.get("LOSSD_DRAIN_TIMEOUT", 30))
        need(pod.get("terminationGracePeriodSeconds", 30) > drain,
             "k8s: terminationGracePeriodSeconds > LOSSD_DRAIN_TIMEOUT (%d)" % drain)
        need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "k8s: runAsNonRoot")
        need(ctr.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
             "k8s: readOnlyRootFilesystem")
        need(ctr.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
             "k8s: allowPrivilegeEscalation: false")
        need(ctr.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/livez",
             "k8s: livenessProbe /livez")
        need(ctr.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
             "k8s: readinessProbe /readyz")
        res = ctr.get("resources", {})
        need("requests" in res and "limits" in res and "memory" in res.get("limits", {}),
             "k8s: resources with requests and a memory limit")
        claims = [v["metadata"]["name"] for v in s.get("volumeClaimTemplates", [])]
        mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
        need(mounts.get("/data") in claims, "k8s: /data mounted from a volumeClaimTemplate")
        need(env.get("LOSSD_DATA_DIR") == "/data", "k8s: LOSSD_DATA_DIR=/data")
        need("/tmp" in mounts, "k8s: a writable /tmp (read-only root)")
        ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
        need(str(ports.get("http")) == env.get("LOSSD_PORT", "8080"),
             "k8s: the http port is LOSSD_PORT")
        need(any(sv["metadata"]["name"] == s.get("serviceName") and
                 sv["spec"].get("clusterIP") == "None" for sv in services),
             "k8s: serviceName names a headless Service")
        for sv in services:
            need(sv["spec"]["selector"].items() <= labels.items(),
                 "k8s: Service %s selects the pods" % sv["metadata"]["name"])
            for p in sv["spec"]["ports"]:
                need(p.get("targetPort") in ports or p.get("targetPort") in ports.values(),
                     "k8s: Service %s targets a container port" % sv["metadata"]["name"])
    n = len(docs) + 1
    n += _lint_postgresql(need, c)
    for p in problems:
        print("manifests: " + p)
    print("manifests: %s (%d objects)" % ("FAILED" if problems else "ok", n))
    return 1 if problems else 0


def _lint_postgresql(need, compose):
    """The PostgreSQL mode: compose's profile and docker/k8s/postgresql."""
    svcs = compose.get("services", {})
    prof = {k: v for k, v in svcs.items() if "postgresql" in (v.get("profiles") or [])}
    need("postgres" in prof and str(prof["postgres"].get("image", "")).startswith("postgres:15"),
         "compose: profile postgresql runs PostgreSQL 15")
    reps = [v for v in prof.values() if "LOSSD_STORE" in (v.get("environment") or {})]
    need(len(reps) >= 2, "compose: profile postgresql has two lossd replicas")
    for v in reps:
        need(str(v["environment"]["LOSSD_STORE"]).startswith("postgresql://"),
             "compose: replicas use a postgresql:// store")
        need(v.get("read_only") is True, "compose: replicas read_only")
    need("haproxy" in prof, "compose: profile postgresql has HAProxy")
    d = os.path.join(HERE, "k8s", "postgresql")
    docs = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".yaml"):
            docs += _load_yaml(os.path.join(d, name))
    kinds = {}
    for doc in docs:
        if doc.get("kind") == "Kustomization":
            need(set(doc.get("resources", [])) <= set(os.listdir(d)),
                 "k8s/postgresql: kustomization lists existing files")
            continue
        kinds.setdefault(doc.get("kind"), []).append(doc)
    deps = kinds.get("Deployment", [])
    need(len(deps) == 1, "k8s/postgresql: one Deployment")
    if deps:
        dep = deps[0]
        s = dep["spec"]
        pod = s["template"]["spec"]
        labels = s["template"]["metadata"]["labels"]
        need(s.get("replicas") == 3, "k8s/postgresql: 3 replicas")
        need(s["selector"]["matchLabels"].items() <= labels.items(),
             "k8s/postgresql: selector matches the pod labels")
        (ctr,) = pod["containers"]
        env = {e["name"]: e for e in ctr.get("env", [])}
        ref = env.get("LOSSD_STORE", {}).get("valueFrom", {}).get("secretKeyRef", {})
        need(bool(ref.get("name")), "k8s/postgresql: LOSSD_STORE from a Secret")
        need("LOSSD_DATA_DIR" not in env, "k8s/postgresql: no data dir (stateless)")
        need(pod.get("securityContext", {}).get("runAsNonRoot") is True,
             "k8s/postgresql: runAsNonRoot")
        need(ctr.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
             "k8s/postgresql: readOnlyRootFilesystem")
        need(ctr.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
             "k8s/postgresql: readinessProbe /readyz")
        need(ctr.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/livez",
             "k8s/postgresql: livenessProbe /livez")
        need("cpu" in ctr.get("resources", {}).get("requests", {}),
             "k8s/postgresql: a CPU request (the HPA scales on it)")
        drain = int(env.get("LOSSD_DRAIN_TIMEOUT", {}).get("value", 30))
        need(pod.get("terminationGracePeriodSeconds", 30) > drain,
             "k8s/postgresql: terminationGracePeriodSeconds > LOSSD_DRAIN_TIMEOUT")
        ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
        for sv in kinds.get("Service", []):
            need(sv["spec"]["selector"].items() <= labels.items(),
                 "k8s/postgresql: Service %s selects the pods" % sv["metadata"]["name"])
            for p in sv["spec"]["ports"]:
                need(p.get("targetPort") in ports, "k8s/postgresql: Service targets a port")
        hpas = kinds.get("HorizontalPodAutoscaler", [])
        need(len(hpas) == 1 and hpas[0]["spec"]["scaleTargetRef"]["name"] ==
             dep["metadata"]["name"] and any(
                 m.get("resource", {}).get("name") == "cpu" for m in hpas[0]["spec"]["metrics"]),
             "k8s/postgresql: an HPA on CPU for the Deployment")
        pdbs = kinds.get("PodDisruptionBudget", [])
        need(len(pdbs) == 1 and pdbs[0]["spec"]["selector"]["matchLabels"].items() <=
             labels.items(), "k8s/postgresql: a PodDisruptionBudget for the pods")
    return len(docs)


def run_steps_shellcheck():
    if not shutil.which("shellcheck"):
        print("shellcheck: not installed, RUN steps not checked")
        return 0
    _, stages = parse()
    rc = 0
    with tempfile.TemporaryDirectory() as d:
        for st in stages:
            for ins in st.all("RUN"):
                p = os.path.join(d, "line%d.sh" % ins.line)
                with open(p, "w") as f:
                    f.write("#!/bin/sh\n" + ins.args + "\n")
                r = subprocess.run(["shellcheck", "-s", "sh", "-f", "gcc", p],
                                   capture_output=True, text=True)
                if r.returncode:
                    rc = 1
                    print("Dockerfile line %d:\n%s" % (ins.line, r.stdout))
    print("shellcheck RUN steps: %s" % ("FAILED" if rc else "ok"))
    return rc


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "build":
        return build(rest)
    if cmd == "lint-dockerfile":
        return lint_dockerfile()
    if cmd == "lint-manifests":
        return lint_manifests()
    if cmd == "run-steps-shellcheck":
        return run_steps_shellcheck()
    print("unknown command %r" % cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
