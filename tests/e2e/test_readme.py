"""Every curl example of README.md and docs/QUESTIONS.md, run against a
started lossd, prints what the document says it prints.

The format it reads (keep it when editing README.md):
- a fenced ```sh block; in it, a command starting with `curl` that calls
  `localhost:8080` (it may span lines: a trailing backslash, or a quoted
  JSON body over several lines). Commands for other hosts, and every other
  line, are not run; `NAME=value` lines set shell variables for the
  commands that follow (README's stream id there is replaced by the id the
  server gave the last created stream);
- its printed output as comment lines right after it, `# {json}` (more
  `#` lines continue it), or on the command's own last line after `#`.
  The comment may start with an HTTP status (`# 201 {…}`); prose after the
  JSON value is ignored, and a comment that holds no JSON value checks
  nothing but that curl succeeded;
- in the JSON, `…` (or `...`) stands for what is left out: a whole value,
  further object members or array elements, or the rest of a string
  (`"1e0d…"` matches any string starting with 1e0d). An object may leave
  out members without `…` (README abbreviates); every member it shows must
  equal the server's (numbers within 1e-9 relative; a stream "id" only
  has to be one, as the server draws a new one each run), and arrays
  without `…` must have exactly the elements shown. LOSSD_README_STRICT=1 also fails
  on members the server adds that an object without `…` does not show;
- a command whose first line ends with `# readme-test: skip` is not run.

Commands run with bash in a scratch directory (state.json and the like
land there), localhost:8080 pointing at the test's lossd. Needs curl.
"""

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from lossd_harness import Server

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("LOSSD_SOURCE_DIR", os.path.join(HERE, "..", ".."))
README = os.path.join(SOURCE, "README.md")
# docs/QUESTIONS.md holds the users' questions, each with a request and its output.
QUESTIONS = os.path.join(SOURCE, "docs", "QUESTIONS.md")
STRICT = os.environ.get("LOSSD_README_STRICT") == "1"
SKIP_MARK = "# readme-test: skip"


# --- README parsing --------------------------------------------------------------------

def sh_blocks(text):
    """(first line number, [lines]) of every ```sh block."""
    out, cur, start = [], None, 0
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if cur is None and s.startswith("```sh"):
            cur, start = [], n + 1
        elif cur is not None and s.startswith("```"):
            out.append((start, cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def split_comment(line, quote):
    """(code, comment or None, quote state after) for one shell line."""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                i += 1
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i], line[i + 1:], None
        i += 1
    return line, None, quote


def steps(lines):
    """Commands and assignments of a block, in order: dicts with kind
    "curl" (cmd, expect, line) or "set" (name, value)."""
    out, i = [], 0
    while i < len(lines):
        raw = lines[i].strip()
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=\S", raw) and not raw.startswith("curl"):
            name, value = raw.split("=", 1)
            out.append({"kind": "set", "name": name, "value": value.split(" #")[0].strip()})
            i += 1
            continue
        if not raw.startswith("curl "):
            i += 1
            continue
        first, cmd, quote, comments = i, [], None, []
        skip = raw.endswith(SKIP_MARK)
        while i < len(lines):
            code, comment, quote = split_comment(lines[i].strip(), quote)
            cmd.append(code.rstrip())
            i += 1
            if comment is not None:
                comments.append(comment)
            if quote is None and not code.rstrip().endswith("\\"):
                break
        while i < len(lines) and lines[i].strip().startswith("#"):
            comments.append(lines[i].strip()[1:])
            i += 1
        out.append({"kind": "curl", "cmd": "\n".join(cmd), "expect": " ".join(comments),
                    "line": first, "skip": skip})
    return out


# --- expected JSON with ellipses -------------------------------------------------------

class Ellipsis_:
    def __repr__(self):
        return "…"


ELL = Ellipsis_()


class Prefix(str):
    """A string shown up to an ellipsis."""


class Obj(dict):
    open = False  # True when the object shows "…"


class Arr(list):
    open = False


class Partial:
    """A JSON reader that takes … / ... as 'left out'."""

    def __init__(self, text):
        self.s, self.i = text, 0

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def ell(self):
        for tok in ("…", "..."):
            if self.s.startswith(tok, self.i):
                self.i += len(tok)
                return True
        return False

    def value(self):
        self.ws()
        if self.ell():
            return ELL
        c = self.s[self.i]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c == '"':
            return self.string()
        m = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null").match(self.s, self.i)
        if not m:
            raise ValueError("not JSON at %r" % self.s[self.i:self.i + 20])
        self.i = m.end()
        return json.loads(m.group(0))

    def string(self):
        j = self.i + 1
        while self.s[j] != '"':
            j += 2 if self.s[j] == "\\" else 1
        text = self.s[self.i:j + 1]
        self.i = j + 1
        for tok in ("…", "..."):
            if tok in text:
                return Prefix(json.loads(text.split(tok)[0] + '"'))
        return json.loads(text)

    def obj(self):
        o = Obj()
        self.i += 1
        while True:
            self.ws()
            if self.s[self.i] == "}":
                self.i += 1
                return o
            if self.ell():
                o.open = True
            else:
                k = self.string()
                self.ws()
                assert self.s[self.i] == ":", self.s[self.i:self.i + 20]
                self.i += 1
                o[k] = self.value()
            self.ws()
            if self.s[self.i] == ",":
                self.i += 1

    def arr(self):
        a = Arr()
        self.i += 1
        while True:
            self.ws()
            if self.s[self.i] == "]":
                self.i += 1
                return a
            v = self.value()
            if v is ELL:
                a.open = True
            a.append(v)
            self.ws()
            if self.s[self.i] == ",":
                self.i += 1


def parse_expect(text):
    """(status or None, expected value or None) from a comment."""
    text = text.strip()
    status = None
    m = re.match(r"^(\d{3})\s+", text)
    if m:
        status, text = int(m.group(1)), text[m.end():]
    if not text.startswith(("{", "[")):
        return status, None
    return status, Partial(text).value()


def mismatch(want, got, path="$"):
    """None when got matches want, else a message."""
    if want is ELL:
        return None
    if path.endswith(".id") and isinstance(want, str) and re.match(r"^[0-9a-f]*$", want):
        # a stream id: the server draws a new one each run
        ok = isinstance(got, str) and re.match(r"^[0-9a-f]{32}$", got)
        return None if ok else "%s: %r is not a stream id" % (path, got)
    if isinstance(want, Prefix):
        ok = isinstance(got, str) and got.startswith(want)
        return None if ok else "%s: %r does not start with %r" % (path, got, str(want))
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return "%s: expected an object, got %r" % (path, got)
        for k, v in want.items():
            if k not in got:
                return "%s: no member %r in %s" % (path, k, sorted(got))
            err = mismatch(v, got[k], "%s.%s" % (path, k))
            if err:
                return err
        if STRICT and not getattr(want, "open", False):
            extra = sorted(set(got) - set(want))
            if extra:
                return "%s: members the README does not show: %s" % (path, extra)
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return "%s: expected an array, got %r" % (path, got)
        shown = [v for v in want if v is not ELL]
        if getattr(want, "open", False):
            if len(got) < len(shown):
                return "%s: %d elements, the README shows %d" % (path, len(got), len(shown))
        elif len(got) != len(want):
            return "%s: %d elements, the README shows %d" % (path, len(got), len(want))
        for n, v in enumerate(shown):
            err = mismatch(v, got[n], "%s[%d]" % (path, n))
            if err:
                return err
        return None
    if isinstance(want, bool) or want is None:
        return None if got is want else "%s: %r != %r" % (path, got, want)
    if isinstance(want, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return "%s: expected a number %r, got %r" % (path, want, got)
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            return None
        return "%s: %r != %r" % (path, got, want)
    return None if got == want else "%s: %r != %r" % (path, got, want)


# --- the test --------------------------------------------------------------------------

class ReadmeParsing(unittest.TestCase):
    """The reader itself, on made-up text."""

    def test_partial_json(self):
        st, v = parse_expect('201 {..., "name": "val…", "n": [1, …], "id": "1e0d…"} prose')
        self.assertEqual(st, 201)
        sid = "24df6115491489ee45591f8160ba09c6"
        self.assertIsNone(mismatch(v, {"name": "val-1", "n": [1, 2, 3], "x": 0, "id": sid}))
        self.assertIsNotNone(mismatch(v, {"name": "va", "n": [1], "id": sid}))
        self.assertIsNotNone(mismatch(v, {"name": "val", "n": [2, 2], "id": sid}))
        self.assertIsNotNone(mismatch(v, {"name": "val", "n": [1], "id": "x"}))
        _, v = parse_expect('{"loss":0.5,"per_class":[{"class":0},{"class":1}]}  alive')
        self.assertIsNone(mismatch(v, {"loss": 0.5 + 1e-12, "per_class": [{"class": 0},
                                                                         {"class": 1}]}))
        self.assertIsNotNone(mismatch(v, {"loss": 0.5001, "per_class": [{"class": 0},
                                                                        {"class": 1}]}))
        self.assertIsNotNone(mismatch(v, {"loss": 0.5, "per_class": [{"class": 0}]}))
        self.assertEqual(parse_expect("Prometheus text format"), (None, None))

    def test_steps(self):
        lines = ["curl -s localhost:8080/v1/loss -d '{", '  "a": 1}\'',
                 '# {"loss": 1,', '#  "count": 2}', "S=localhost:8080/v1/streams/abc",
                 "curl -s $S   # {\"x\": 1}", "curl -s other:8080/x",
                 "curl -s localhost:8080/y " + SKIP_MARK]
        got = steps(lines)
        self.assertEqual([g["kind"] for g in got], ["curl", "set", "curl", "curl", "curl"])
        self.assertEqual(got[0]["cmd"], "curl -s localhost:8080/v1/loss -d '{\n\"a\": 1}'")
        self.assertEqual(parse_expect(got[0]["expect"])[1], {"loss": 1, "count": 2})
        self.assertEqual(parse_expect(got[2]["expect"])[1], {"x": 1})
        self.assertTrue(got[4]["skip"])


@unittest.skipUnless(shutil.which("curl"), "needs curl (apt-get install curl)")
class Readme(unittest.TestCase):

    def test_every_curl_example(self):
        self.check_examples(README, at_least=5)

    def test_every_curl_example_of_the_questions(self):
        self.check_examples(QUESTIONS, at_least=8)

    def check_examples(self, path, at_least):
        name = os.path.relpath(path, SOURCE)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        blocks = sh_blocks(text)
        self.assertTrue(blocks, "%s has no ```sh block" % name)
        ran, failures = 0, []
        with Server() as srv, tempfile.TemporaryDirectory() as tmp:
            host = "127.0.0.1:%d" % srv.port
            for start, lines in blocks:
                env = dict(os.environ)
                names = set()
                last_id = None
                for st in steps(lines):
                    if st["kind"] == "set":
                        value = st["value"]
                        if last_id:
                            value = re.sub(r"\b[0-9a-f]{32}\b", last_id, value)
                        env[st["name"]] = value.replace("localhost:8080", host)
                        names.add(st["name"])
                        continue
                    uses_var = any("$" + k in st["cmd"] or "${" + k in st["cmd"] for k in names)
                    if st["skip"] or not ("localhost:8080" in st["cmd"] or uses_var):
                        continue  # marked, or another host
                    where = "%s line %d" % (name, start + st["line"])
                    status, want = parse_expect(st["expect"])
                    cmd = st["cmd"].replace("localhost:8080", host)
                    if want is not None or status is not None:
                        cmd += " -w '\\n%{http_code}'"
                    p = subprocess.run(["bash", "-c", cmd], cwd=tmp, env=env,
                                       capture_output=True, text=True, timeout=60)
                    ran += 1
                    if p.returncode != 0:
                        failures.append("%s: curl exited %d: %s" % (where, p.returncode,
                                                                      p.stderr.strip()))
                        continue
                    if want is None and status is None:
                        continue
                    body, _, code = p.stdout.rpartition("\n")
                    if status is not None and int(code) != status:
                        failures.append("%s: status %s, README says %d" % (where, code, status))
                    try:
                        got = json.loads(body) if body.strip() else None
                    except ValueError:
                        failures.append("%s: not JSON: %r" % (where, body[:200]))
                        continue
                    if isinstance(got, dict) and isinstance(got.get("id"), str):
                        last_id = got["id"]
                    if want is not None:
                        err = mismatch(want, got)
                        if err:
                            failures.append("%s: %s\n    got: %s" % (where, err,
                                                                    json.dumps(got)[:400]))
        self.assertGreaterEqual(ran, at_least, "too few examples of %s ran" % name)
        self.assertEqual(failures, [], "\n" + "\n".join(failures))


if __name__ == "__main__":
    unittest.main()
