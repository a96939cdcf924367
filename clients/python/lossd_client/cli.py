"""lossd-cli: lossd's streams from a shell (the console script of lossd_client).

Shape: one argparse sub-command per verb, each a small function taking the
parsed arguments and a Client and returning what to print: a dict or list
(printed as JSON with --json, else as a table) or text. main() maps errors
to the exit codes below and never shows a traceback for a server's or a
file's fault. Files: .npy through numpy (which must then be installed),
anything else read as CSV with the standard library.

Exit codes (also in --help):
  0  done
  1  the server refused the request (its problem+json on stderr)
  2  bad command line or unreadable input file
  3  the server could not be reached
  4  the server does not have this feature (e.g. history before docs/API.md section 7)
"""

import argparse
import csv
import hashlib
import json
import os
import sys

from . import __version__
from .client import Client, LossdConnectionError, LossdError, Stream

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_UNSUPPORTED = 0, 1, 2, 3, 4

EPILOG = """\
examples:
  export LOSSD_URL=http://127.0.0.1:8080 LOSSD_TOKEN=...   # or --url / --token
  lossd-cli create --name val --loss binary_crossentropy --tag team:vision
  lossd-cli update STREAM --y-true labels.npy --y-pred probs.npy
  lossd-cli update STREAM --y-true y.csv --y-score scores.csv --step 1200
  lossd-cli read STREAM                    # AUC, loss, per-class table
  lossd-cli --json read STREAM | jq .auc
  lossd-cli history STREAM --format csv > steps.csv
  lossd-cli export STREAM -o val.state.json
  lossd-cli merge OTHER val.state.json
  lossd-cli list --tag team:vision

exit codes:
  0 done; 1 the server refused (problem+json on stderr); 2 bad command line
  or input file; 3 server unreachable; 4 the server lacks the feature
"""


class UsageError(Exception):
    """A bad argument or input file (exit 2)."""


class Unsupported(Exception):
    """The server does not implement what was asked (exit 4)."""


# --- input files --------------------------------------------------------------

def _number(text, where):
    try:
        v = float(text)
    except ValueError:
        raise UsageError("%s: %r is not a number" % (where, text)) from None
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def read_csv(path):
    """A CSV file as a list (one column) or a list of rows; a first row
    that is not numeric is a header and skipped; blank lines are skipped."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror)) from None
    if rows:
        try:
            [float(c) for c in rows[0]]
        except ValueError:
            rows = rows[1:]  # a header
    if not rows:
        raise UsageError("%s: no data rows" % path)
    width = len(rows[0])
    out = []
    for i, r in enumerate(rows):
        if len(r) != width:
            raise UsageError("%s: row %d has %d columns, the first has %d"
                             % (path, i + 1, len(r), width))
        vals = [_number(c.strip(), "%s row %d" % (path, i + 1)) for c in r]
        out.append(vals[0] if width == 1 else vals)
    return out


def read_tensor(path):
    """A .npy array (numpy needed) or a CSV table, as something the client
    encodes."""
    if path.endswith(".npy"):
        try:
            import numpy as np
        except ImportError:
            raise UsageError("%s: .npy files need numpy (pip install numpy, or Debian's "
                             "python3-numpy); CSV needs nothing" % path) from None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError("cannot read %s: %s" % (path, e)) from None
    return read_csv(path)


def _rows(t):
    return t.shape[0] if hasattr(t, "shape") else len(t)


def _file_digest(paths):
    h = hashlib.sha256()
    for p in paths:
        if p:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:24]


# --- output ---------------------------------------------------------------------

def _cell(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.6g" % v
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def table(rows, columns, out):
    """rows (dicts) as aligned columns."""
    cells = [[c for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def flatten(row):
    """A history point or checkpoint as one flat dict (per_class values as
    <field>_class_<c>, as the server's own CSV)."""
    flat = {}
    for k, v in row.items():
        if k == "per_class" and isinstance(v, list):
            for i, pc in enumerate(v):
                c = pc.get("class", i) if isinstance(pc, dict) else i
                for kk, vv in (pc.items() if isinstance(pc, dict) else ()):
                    if kk != "class":
                        flat["%s_class_%s" % (kk, c)] = vv
        elif isinstance(v, dict):
            for kk, vv in v.items():
                flat["%s_%s" % (k, kk)] = vv
        else:
            flat[k] = v
    return flat


def _columns(rows):
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


# --- commands ------------------------------------------------------------------

def _tags(pairs):
    tags = {}
    for p in pairs or ():
        k, sep, v = p.partition(":")
        if not sep or not k:
            raise UsageError("a tag is KEY:VALUE, not %r" % p)
        tags[k] = v
    return tags


def cmd_create(a, c):
    config = {}
    if a.config:
        try:
            config = json.loads(a.config)
        except ValueError as e:
            raise UsageError("--config is not JSON: %s" % e) from None
        if not isinstance(config, dict):
            raise UsageError("--config must be a JSON object")
    for key in ("name", "method", "curve", "num_classes", "num_thresholds"):
        v = getattr(a, key)
        if v is not None:
            config[key] = v
    if a.from_logits:
        config["from_logits"] = True
    if a.loss:
        config["loss"] = {"loss": a.loss}
    if a.tag:
        config["tags"] = _tags(a.tag)
    s = c.stream(**config)
    return s.info, lambda out: out.write(s.id + "\n")


def cmd_update(a, c):
    if not (a.y_pred or a.y_score):
        raise UsageError("update needs --y-pred or --y-score")
    y_true = read_tensor(a.y_true)
    fields = {}
    for key in ("y_pred", "y_score", "sample_weight"):
        path = getattr(a, key)
        if path:
            fields[key] = read_tensor(path)
    n = _rows(y_true)
    for key, t in fields.items():
        if _rows(t) != n:
            raise UsageError("--%s has %d rows but --y-true has %d"
                             % (key.replace("_", "-"), _rows(t), n))
    # The batch ids come from the files' content: running the same command
    # again (after a timeout, say) adds nothing twice.
    base = a.batch_id or "cli-" + _file_digest([a.y_true, a.y_pred, a.y_score,
                                                a.sample_weight])
    s = Stream(c, a.stream)
    reply = None
    chunk = max(1, a.chunk)
    for i, start in enumerate(range(0, n, chunk)):
        end = min(n, start + chunk)
        part = {k: t[start:end] for k, t in fields.items()}
        bid = base if n <= chunk else "%s-c%d" % (base, i)
        reply = s.update(y_true[start:end], batch_id=bid, step=a.step, **part)
    return reply, lambda out: out.write("updates %s, count %s\n"
                                        % (reply.get("updates"), reply.get("count")))


def cmd_read(a, c):
    r = Stream(c, a.stream).result(curve=a.curve)

    def show(out):
        keys = [k for k in ("id", "name", "principal", "method", "auc", "error_bound", "loss",
                            "count", "positives", "negatives") if k in r]
        detail = r.get("loss_detail") if isinstance(r.get("loss_detail"), dict) else {}
        width = max(len(k) for k in keys + list(detail) or ["x"])
        for k in keys:
            out.write("%s  %s\n" % (k.ljust(width), _cell(r[k])))
        for k in ("accuracy", "perplexity"):
            if k in detail:
                out.write("%s  %s\n" % (k.ljust(width), _cell(detail[k])))
        rows = r.get("per_class") or []
        if rows and isinstance(rows[0], dict):
            out.write("\n")
            cols = _columns(rows)
            table(rows, cols, out)
    return r, show


def cmd_history(a, c):
    params = {"series": a.series}
    for key in ("from", "to", "limit"):
        v = getattr(a, key.replace("from", "from_"))
        if v is not None:
            params[key] = v
    path = c._stream_path(a.stream, "/history")
    rows, after = [], None
    while True:
        q = dict(params)
        if after:
            q["after"] = after
        try:
            reply = c._request("GET", c._target(path, q), None, policy="safe",
                               raw_target=True)
        except LossdError as e:
            # Before docs/API.md section 7 the route does not exist: a 404 that is
            # not about the stream, or 405 for the method on the stream path.
            if e.status == 405 or (e.status == 404 and e.code != "unknown_stream"):
                raise Unsupported("this lossd has no stream history (GET /v1/streams/{id}/"
                                  "history answered %s %s); it needs a server with docs/API.md "
                                  "section 7" % (e.status, e.code)) from None
            raise
        if not isinstance(reply, dict) or a.series not in reply:
            raise Unsupported("this lossd's history reply has no %r list" % a.series)
        rows.extend(reply[a.series])
        after = reply.get("next")
        if not after or (a.limit is not None and len(rows) >= a.limit):
            break
    flat = [flatten(r) for r in rows]

    def show(out):
        cols = _columns(flat)
        if a.format == "csv":
            w = csv.writer(out, lineterminator="\n")
            w.writerow(cols)
            for r in flat:
                w.writerow(["" if r.get(k) is None else r.get(k) for k in cols])
        elif flat:
            table(flat, cols, out)
    return {a.series: rows}, show


def cmd_export(a, c):
    state = Stream(c, a.stream).state()
    text = json.dumps(state, separators=(",", ":")) + "\n"
    if a.output and a.output != "-":
        with open(a.output, "w") as f:
            f.write(text)
        return ({"stream": a.stream, "file": a.output},
                lambda out: out.write("state of %s written to %s\n" % (a.stream, a.output)))
    return state, lambda out: out.write(text)


def cmd_merge(a, c):
    try:
        if a.state == "-":
            state = json.load(sys.stdin)
        else:
            with open(a.state) as f:
                state = json.load(f)
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (a.state, e.strerror)) from None
    except ValueError as e:
        raise UsageError("%s is not JSON: %s" % (a.state, e)) from None
    r = Stream(c, a.stream).merge(state)
    return r, lambda out: out.write("merged into %s%s\n" % (
        a.stream, " (already applied)" if r.get("applied") is False else ""))


def cmd_list(a, c):
    query = {}
    if a.name_prefix:
        query["name_prefix"] = a.name_prefix
    if a.principal:
        query["principal"] = a.principal
    if a.tag:
        _tags(a.tag)  # checks the form
        query["tag"] = list(a.tag)
    items = [s.info for s in c.streams(query=query)]
    if a.tag and any("tags" not in i for i in items):
        raise Unsupported("this lossd does not keep stream tags (docs/API.md section 8): its "
                          "list has no \"tags\", so it cannot filter by them")
    cols = [k for k in ("id", "name", "principal", "method", "count", "auc", "loss", "tags")
            if any(k in i for i in items)] or ["id"]
    return {"streams": items}, lambda out: table(items, cols, out)


def cmd_reset(a, c):
    r = Stream(c, a.stream).reset()
    return r, lambda out: out.write("reset %s\n" % a.stream)


def cmd_delete(a, c):
    Stream(c, a.stream).delete()
    return {"deleted": a.stream}, lambda out: out.write("deleted %s\n" % a.stream)


# --- the parser ------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(
        prog="lossd-cli", description="Create, feed and read lossd streams.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("LOSSD_URL", "http://127.0.0.1:8080"),
                   help="lossd's base URL (env LOSSD_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("LOSSD_TOKEN"),
                   help="bearer token (env LOSSD_TOKEN)")
    p.add_argument("--timeout", type=float, default=30, help="seconds per request")
    p.add_argument("--json", action="store_true", help="print the server's JSON reply")
    p.add_argument("--version", action="version", version="lossd-cli " + __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, fn, help, example):
        sp = sub.add_parser(name, help=help, description=help, epilog="example:\n  " + example,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("create", cmd_create, "create a stream; prints its id",
             "lossd-cli create --name val --loss binary_crossentropy --method exact")
    sp.add_argument("--name")
    sp.add_argument("--method", choices=["sketch", "binned", "exact"])
    sp.add_argument("--curve", choices=["roc", "pr"])
    sp.add_argument("--num-classes", type=int)
    sp.add_argument("--num-thresholds", type=int)
    sp.add_argument("--from-logits", action="store_true")
    sp.add_argument("--loss", help="a loss name: the stream also keeps that loss")
    sp.add_argument("--tag", action="append", metavar="KEY:VALUE")
    sp.add_argument("--config", help="more create fields as a JSON object")

    sp = add("update", cmd_update, "post a batch read from .npy or CSV files",
             "lossd-cli update STREAM --y-true y.npy --y-pred p.npy --chunk 100000")
    sp.add_argument("stream")
    sp.add_argument("--y-true", required=True, metavar="FILE")
    sp.add_argument("--y-pred", metavar="FILE")
    sp.add_argument("--y-score", metavar="FILE")
    sp.add_argument("--sample-weight", metavar="FILE")
    sp.add_argument("--step", type=int, help="training step (servers with docs/API.md section 7)")
    sp.add_argument("--batch-id", help="default: from the files' content, so a rerun "
                    "counts once")
    sp.add_argument("--chunk", type=int, default=65536, help="rows per request")

    sp = add("read", cmd_read, "a stream's AUC, loss and per-class rows",
             "lossd-cli read STREAM")
    sp.add_argument("stream")
    sp.add_argument("--curve", action="store_true", help="include the curve points")

    sp = add("history", cmd_history, "a stream's step series or checkpoints",
             "lossd-cli history STREAM --series checkpoints --format csv")
    sp.add_argument("stream")
    sp.add_argument("--series", choices=["steps", "checkpoints"], default="steps")
    sp.add_argument("--from", dest="from_", type=int, metavar="STEP")
    sp.add_argument("--to", type=int, metavar="STEP")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--format", choices=["table", "csv"], default="table")

    sp = add("export", cmd_export, "a stream's mergeable state as JSON",
             "lossd-cli export STREAM -o state.json")
    sp.add_argument("stream")
    sp.add_argument("-o", "--output", metavar="FILE", help="default: stdout")

    sp = add("merge", cmd_merge, "add an exported state into a stream",
             "lossd-cli merge STREAM state.json")
    sp.add_argument("stream")
    sp.add_argument("state", metavar="FILE", help="an exported state ('-' for stdin)")

    sp = add("list", cmd_list, "list streams (by tag, name prefix, principal)",
             "lossd-cli list --tag team:vision --tag split:val")
    sp.add_argument("--tag", action="append", metavar="KEY:VALUE",
                    help="repeatable; every tag must match")
    sp.add_argument("--name-prefix")
    sp.add_argument("--principal", help="admin tokens: one principal's streams")

    sp = add("reset", cmd_reset, "empty a stream, keeping its config", "lossd-cli reset STREAM")
    sp.add_argument("stream")
    sp = add("delete", cmd_delete, "delete a stream", "lossd-cli delete STREAM")
    sp.add_argument("stream")
    return p


def main(argv=None, stdout=None, stderr=None):
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    p = parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        c = Client(a.url, token=a.token, timeout=a.timeout, retries=2)
    except ValueError as e:
        err.write("lossd-cli: %s\n" % e)
        return EXIT_USAGE
    try:
        reply, show = a.fn(a, c)
        if a.json:
            out.write(json.dumps(reply, indent=2, sort_keys=False) + "\n")
        else:
            show(out)
        return EXIT_OK
    except UsageError as e:
        err.write("lossd-cli: %s\n" % e)
        return EXIT_USAGE
    except ValueError as e:  # a stream id of the wrong form, an unencodable value
        err.write("lossd-cli: %s\n" % e)
        return EXIT_USAGE
    except Unsupported as e:
        err.write("lossd-cli: %s\n" % e)
        return EXIT_UNSUPPORTED
    except LossdConnectionError as e:
        err.write("lossd-cli: cannot reach %s: %s\n" % (a.url, e.detail))
        return EXIT_UNREACHABLE
    except LossdError as e:
        err.write("lossd-cli: %s\n" % e)
        if e.body is not None:
            err.write(json.dumps(e.body) + "\n")
        return EXIT_REFUSED
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
