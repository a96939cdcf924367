"""Reliability of the stream store (docs/API.md section 4): no request strands
stored data, and damage on disk is detected, never served.

- an update or merge whose sums would stop being finite is 422 non_finite
  and changes nothing, for every method, across a checkpoint and a restart;
- a forged state (valid checksum, hostile numbers) is 422 bad_state;
- a stream whose stored state cannot be read is quarantined (503
  stream_damaged, a log line, lossd_streams_damaged) while the others are
  served;
- a batch_id reused with another body is 409 idempotency_conflict, also
  after a restart; a state_id is merged once;
- a damaged database (0 bytes, truncated, bit flips, lost WAL) is refused
  or quarantined, never served silently; a second lossd cannot open the
  same database even with lossd.lock deleted.
"""

import base64
import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import sys
import threading
import time
import tempfile
import unittest

from lossd_harness import Server, run_lossd

OVERFLOW = {"y_true": [1, 1, 0], "y_score": [0.2, 0.7, 0.5],
            "sample_weight": [1e308, 1e308, 1]}
METHODS = ("sketch", "binned", "exact")
MASK = (1 << 64) - 1


def state_checksum(p):
    """engine/src/stream_codec.c's checksum of a state's payload (format comment)."""
    h = 1469598103934665603
    i = 0
    n = len(p)
    while i + 8 <= n:
        h ^= int.from_bytes(p[i:i + 8], "little")
        h = (h * 1099511628211) & MASK
        h ^= h >> 29
        i += 8
    while i < n:
        h ^= p[i]
        h = (h * 1099511628211) & MASK
        i += 1
    return h


def with_checksum(b):
    b = bytearray(b)
    b[16:24] = struct.pack("<Q", state_checksum(bytes(b[24:])))
    return bytes(b)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lossd-rel-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def create(self, srv, cfg, **kw):
        r = srv.post_json("/v1/streams", cfg, **kw)
        self.assertEqual(r.status, 201, r.body)
        return r.json()["id"]

    def update(self, srv, sid, body, **kw):
        return srv.post_json("/v1/streams/%s/update" % sid, body, **kw)


class NonFiniteTest(Base):
    def test_overflowing_update_is_422_and_restart_works(self):
        with Server(data_dir=self.dir) as srv:
            ids = {}
            for m in METHODS:
                sid = ids[m] = self.create(srv, {"method": m})
                r = self.update(srv, sid, OVERFLOW)
                self.assertEqual(r.status, 422, r.body)
                p = r.problem()
                self.assertEqual(p["code"], "non_finite")
                self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 0)
                # Two updates, each fine alone, whose sum overflows.
                one = {"y_true": [1, 0], "y_score": [0.2, 0.5], "sample_weight": [1.7e308, 1]}
                self.assertEqual(self.update(srv, sid, one).status, 200)
                r = self.update(srv, sid, one)
                self.assertEqual(r.status, 422, r.body)
                self.assertEqual(r.problem()["code"], "non_finite")
                self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 2)
        with Server(data_dir=self.dir) as srv:
            for m, sid in ids.items():
                got = srv.get("/v1/streams/" + sid)
                self.assertEqual(got.status, 200, got.body)
                self.assertEqual(got.json()["count"], 2)

    def test_overflow_after_a_checkpoint(self):
        """Separately valid updates once a checkpoint is written (a stream
        checkpoints once its deltas outweigh twice its state)."""
        scores = [round(i / 2000.0, 6) for i in range(2000)]
        small = {"y_true": [i % 2 for i in range(2000)], "y_score": scores}
        big = {"y_true": [1], "y_score": [0.9], "sample_weight": [1.7e308]}
        with Server(data_dir=self.dir) as srv:
            sid = self.create(srv, {"method": "sketch"})
            self.assertEqual(self.update(srv, sid, big).status, 200)
            # 40 deltas of ~18 KiB (2,000 float64 scores in sketch format 2;
            # 64 KiB in format 1) over a 64 KiB state: past 256 KiB and twice it
            for i in range(40):
                self.assertEqual(self.update(srv, sid, small).status, 200)
            r = self.update(srv, sid, big)
            self.assertEqual(r.status, 422, r.body)
            self.assertEqual(r.problem()["code"], "non_finite")
            before = srv.get("/v1/streams/" + sid).json()
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        seq = con.execute("SELECT seq FROM streams WHERE id = ?", (sid,)).fetchone()[0]
        con.close()
        self.assertGreater(seq, 0, "no checkpoint was written")
        with Server(data_dir=self.dir) as srv:
            self.assertEqual(srv.get("/v1/streams/" + sid).json(), before)

    def test_overflowing_merge_is_422(self):
        with Server(data_dir=self.dir) as srv:
            for m in METHODS:
                a = self.create(srv, {"method": m})
                b = self.create(srv, {"method": m})
                one = {"y_true": [1, 0], "y_score": [0.2, 0.5], "sample_weight": [1.7e308, 1]}
                self.assertEqual(self.update(srv, a, one).status, 200)
                self.assertEqual(self.update(srv, b, one).status, 200)
                st = srv.get("/v1/streams/%s/state" % b).json()
                r = srv.post_json("/v1/streams/%s/merge" % a, st)
                self.assertEqual(r.status, 422, r.body)
                self.assertEqual(r.problem()["code"], "non_finite")
                self.assertEqual(srv.get("/v1/streams/" + a).json()["count"], 2)
        with Server(data_dir=self.dir) as srv:
            self.assertEqual(srv.get("/v1/streams/" + a).json()["count"], 2)


class BadStateTest(Base):
    def forged(self, srv, method, patch):
        """An exported state of a loss stream with patch(bytes) applied and
        the checksum made right again."""
        sid = self.create(srv, {"method": method, "loss": "binary_crossentropy"})
        body = {"y_true": [1, 0, 1, 0], "y_score": [0.9, 0.2, 0.6, 0.4],
                "sample_weight": [1, 2, 3, 4]}
        self.assertEqual(self.update(srv, sid, body).status, 200)
        st = srv.get("/v1/streams/%s/state" % sid).json()
        b = bytearray(base64.b64decode(st["state"]))
        patch(b)
        st["state"] = base64.b64encode(with_checksum(b)).decode()
        return sid, st

    def test_hostile_numbers_are_bad_state(self):
        # The loss section ends: f64 wloss_sum, f64 weight_sum, u64 count,
        # ignored, correct, nclasses, then nclasses rows of 40 bytes.
        def at(off_from_end, value):
            def patch(b):
                o = len(b) - off_from_end
                b[o:o + 8] = struct.pack("<d", value)
            return patch

        cases = []
        for m in METHODS:
            with Server(data_dir=self.dir) as srv:
                # The unpatched state merges: the control.
                target = self.create(srv, {"method": m, "loss": "binary_crossentropy"})
                _, st = self.forged(srv, m, lambda b: None)
                r = srv.post_json("/v1/streams/%s/merge" % target, st)
                self.assertEqual(r.status, 200, r.body)
                raw = base64.b64decode(st["state"])
                # nclasses is the u64 just before its class rows (40 bytes each).
                ncls = [k for k in (0, 1)
                        if struct.unpack("<Q", raw[-8 - 40 * k:len(raw) - 40 * k])[0] == k]
                self.assertEqual(len(ncls), 1)
                ncls = ncls[0]
                wl = 48 + 40 * ncls
                ws = 40 + 40 * ncls
                for name, off, v in (("wloss_sum NaN", wl, float("nan")),
                                     ("wloss_sum -1e300", wl, -1e300),
                                     ("weight_sum inf", ws, float("inf")),
                                     ("weight_sum -1", ws, -1.0)):
                    target = self.create(srv, {"method": m, "loss": "binary_crossentropy"})
                    _, st2 = self.forged(srv, m, at(off, v))
                    r = srv.post_json("/v1/streams/%s/merge" % target, st2)
                    cases.append((m, name, r.status, r.json().get("code")))
                    self.assertEqual(srv.get("/v1/streams/" + target).json()["count"], 0)
                # A per-column weight of +inf (first column's pw: offset 96
                # of the payload, 120 of the state).
                target = self.create(srv, {"method": m, "loss": "binary_crossentropy"})

                def pw_inf(b):
                    b[120:128] = struct.pack("<d", float("inf"))
                _, st3 = self.forged(srv, m, pw_inf)
                r = srv.post_json("/v1/streams/%s/merge" % target, st3)
                cases.append((m, "pw inf", r.status, r.json().get("code")))
            shutil.rmtree(self.dir, ignore_errors=True)
        bad = [c for c in cases if (c[2], c[3]) != (422, "bad_state")]
        self.assertEqual(bad, [], "forged states not refused as bad_state")


class QuarantineTest(Base):
    """A stream whose stored rows cannot be read is quarantined, the rest
    is served (1b)."""

    def fill(self):
        ids = []
        with Server(data_dir=self.dir) as srv:
            for m in METHODS:
                # binned at 20 thresholds: its deltas weigh under a page, so
                # they stay rows (at 200, its state would replace them:
                # SmallStateTest)
                sid = self.create(srv, {"method": m, **({"num_thresholds": 20}
                                                        if m == "binned" else {})})
                for i in range(3):
                    body = {"y_true": [1, 0, 1], "y_score": [0.9, 0.1, 0.4 + i / 10]}
                    self.assertEqual(self.update(srv, sid, body).status, 200)
                ids.append(sid)
            readings = {sid: srv.get("/v1/streams/" + sid).json() for sid in ids}
        return ids, readings

    def sql(self, *stmts):
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        for st in stmts:
            con.execute(*st) if isinstance(st, tuple) else con.execute(st)
        con.commit()
        con.close()

    def check_served(self, srv, readings, damaged):
        for sid, before in readings.items():
            r = srv.get("/v1/streams/" + sid)
            if sid in damaged:
                self.assertEqual(r.status, 503, r.body)
                self.assertEqual(r.problem()["code"], "stream_damaged")
                r = self.update(srv, sid, {"y_true": [1], "y_score": [0.5]})
                self.assertEqual(r.status, 503)
                self.assertEqual(r.problem()["code"], "stream_damaged")
            else:
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.json(), before)
        self.assertEqual(srv.metric("lossd_streams_damaged"), len(damaged))
        for sid in damaged:
            line = srv.wait_log(lambda l: l.get("stream") == sid and "damaged" in l.get("msg", ""))
            self.assertEqual(line["level"], "error")
            self.assertIn("reason", line)

    def test_bad_delta_blob(self):
        ids, readings = self.fill()
        # A flipped byte in one delta: the state's checksum fails.
        self.sql(("UPDATE deltas SET data = substr(data, 1, 40) || x'ff' || substr(data, 42)"
                  " WHERE stream = ? AND seq = 2", (ids[0],)))
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {ids[0]})
            # The listing leaves it out; its owner may delete it.
            listed = [e["id"] for e in srv.get("/v1/streams").json()["streams"]]
            self.assertNotIn(ids[0], listed)
            self.assertEqual(len(listed), 2)
            self.assertEqual(srv.delete("/v1/streams/" + ids[0]).status, 204)
            self.assertEqual(srv.get("/v1/streams/" + ids[0]).status, 404)
        with Server(data_dir=self.dir) as srv:
            self.assertEqual(srv.metric("lossd_streams_damaged"), 0)

    def test_an_unreadable_state_does_not_stop_the_start(self):
        """The issue's case: a stored state whose sums are not finite (as the
        overflowing update used to write) is quarantined, not fatal."""
        ids, readings = self.fill()

        def inf_weight(b):
            b = bytearray(b)
            b[120:128] = struct.pack("<d", float("inf"))  # first column's pw
            return with_checksum(bytes(b))

        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        blob = con.execute("SELECT data FROM deltas WHERE stream = ? AND seq = 1",
                           (ids[1],)).fetchone()[0]
        con.execute("UPDATE deltas SET data = ? WHERE stream = ? AND seq = 1",
                    (inf_weight(blob), ids[1]))
        blob = con.execute("SELECT state FROM streams WHERE id = ?", (ids[2],)).fetchone()[0]
        con.execute("UPDATE streams SET state = ? WHERE id = ?", (inf_weight(blob), ids[2]))
        con.commit()
        con.close()
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {ids[1], ids[2]})

    def test_gap_in_deltas(self):
        ids, readings = self.fill()
        self.sql(("DELETE FROM deltas WHERE stream = ? AND seq = 2", (ids[1],)))
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {ids[1]})

    def test_lost_last_delta(self):
        """A lost tail leaves no gap: the stream's recorded last seq shows it."""
        ids, readings = self.fill()
        self.sql(("DELETE FROM deltas WHERE stream = ? AND seq = 3", (ids[0],)))
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {ids[0]})

    def test_index_entry_pointing_at_another_row(self):
        """The deltas' (stream, seq) index only finds rows: an entry damaged
        into pointing at another row of the stream (here seq 3's entry at
        seq 2's row, a change quick_check does not see) reads as seq 2
        twice, a misplaced delta, never as seq 2's data served as seq 3."""
        ids, readings = self.fill()
        sid = ids[1]
        path = os.path.join(self.dir, "lossd.db")
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        r2, r3 = (con.execute("SELECT rowid FROM deltas WHERE stream = ? AND seq = ?",
                              (sid, q)).fetchone()[0] for q in (2, 3))
        root = con.execute("SELECT rootpage FROM sqlite_master"
                           " WHERE name = 'sqlite_autoindex_deltas_1'").fetchone()[0]
        page = con.execute("PRAGMA page_size").fetchone()[0]
        con.close()
        # one leaf page here; a record (stream, seq, rowid) with 1-byte ints
        self.assertTrue(1 < r2 < 128 and 1 < r3 < 128, (r2, r3))
        with open(path, "r+b") as f:
            f.seek((root - 1) * page)
            b = bytearray(f.read(page))
            self.assertEqual(b[0], 0x0A, "the index is not one leaf page")
            key = sid.encode() + bytes([3, r3])
            self.assertEqual(b.count(key), 1)
            at = b.index(key) + len(key) - 1
            b[at] = r2
            f.seek((root - 1) * page)
            f.write(b)
        con = sqlite3.connect(path)
        self.assertEqual(con.execute("PRAGMA quick_check").fetchone()[0], "ok")
        con.close()
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {sid})

    def test_checkpoint_seq_past_its_deltas(self):
        ids, readings = self.fill()
        self.sql(("UPDATE streams SET seq = 2 WHERE id = ?", (ids[2],)))
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {ids[2]})

    def test_history_checkpoints_between_deltas_are_no_gap(self):
        """A checkpoint record (docs/API.md 7) writes no delta: the stream is not
        taken for damaged at the next start."""
        with Server(data_dir=self.dir) as srv:
            sid = self.create(srv, {"method": "sketch"})
            body = {"y_true": [1, 0], "y_score": [0.7, 0.2]}
            self.assertEqual(self.update(srv, sid, body).status, 200)
            r = srv.post_json("/v1/streams/%s/checkpoint" % sid, {"step": 1})
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(self.update(srv, sid, body).status, 200)
            before = srv.get("/v1/streams/" + sid).json()
        with Server(data_dir=self.dir) as srv:
            r = srv.get("/v1/streams/" + sid)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json(), before)
            self.assertEqual(srv.metric("lossd_streams_damaged"), 0)

    def test_deltas_without_their_stream(self):
        ids, readings = self.fill()
        self.sql(("DELETE FROM streams WHERE id = ?", (ids[0],)))
        with Server(data_dir=self.dir) as srv:
            self.check_served(srv, readings, {ids[0]})
            # Whose it was is lost: nobody deletes it through the API.
            r = srv.delete("/v1/streams/" + ids[0])
            self.assertEqual(r.status, 503)
            self.assertEqual(r.problem()["code"], "stream_damaged")


class SmallStateTest(Base):
    """A small state (a sketch of the same 1,000 scores, a binned stream) is
    written in place of an update's delta once the deltas since its last
    checkpoint weigh a page and half the state (server/src/streams.c,
    CKPT_SMALL_BYTES): such a stream's deltas never pile up, and what was
    acknowledged is what a restart serves. Tiny updates stay deltas."""

    def rows(self, sid):
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        n = con.execute("SELECT count(*) FROM deltas WHERE stream = ?", (sid,)).fetchone()[0]
        seq = con.execute("SELECT seq FROM streams WHERE id = ?", (sid,)).fetchone()[0]
        con.close()
        return n, seq

    def test_small_states_replace_deltas(self):
        rng = random.Random(5)
        scores = [round(rng.random(), 6) for _ in range(1000)]
        big = {"y_true": [int(rng.random() < x) for x in scores], "y_score": scores}
        tiny = {"y_true": [1, 0, 1], "y_score": [0.9, 0.1, 0.4]}
        with Server(data_dir=self.dir) as srv:
            ids = {m: self.create(srv, {"method": m}) for m in ("sketch", "binned")}
            few = self.create(srv, {"method": "sketch"})
            for _ in range(20):
                for sid in ids.values():
                    self.assertEqual(self.update(srv, sid, big).status, 200)
            for _ in range(5):
                self.assertEqual(self.update(srv, few, tiny).status, 200)
            readings = {sid: srv.get("/v1/streams/" + sid).json()
                        for sid in list(ids.values()) + [few]}
            self.assertEqual(readings[ids["sketch"]]["updates"], 20)
        for m, sid in ids.items():
            n, seq = self.rows(sid)
            self.assertLessEqual(n, 1, m)  # at most the last update's delta
            self.assertGreaterEqual(seq, 19, m)  # the state: at the last op or the one before
        self.assertEqual(self.rows(few)[0], 5)  # 5 tiny deltas, as before
        with Server(data_dir=self.dir) as srv:
            for sid, before in readings.items():
                self.assertEqual(srv.get("/v1/streams/" + sid).json(), before)


class IdempotencyTest(Base):
    """A key reused with another body is a conflict, not a silent drop; a
    state_id is merged once (10)."""

    def test_batch_id_reused_with_another_body(self):
        a = {"y_true": [1, 0], "y_score": [0.8, 0.3], "batch_id": "b-1"}
        b = {"y_true": [1, 0], "y_score": [0.2, 0.9], "batch_id": "b-1"}
        with Server(data_dir=self.dir) as srv:
            sid = self.create(srv, {"method": "exact"})
            first = self.update(srv, sid, a)
            self.assertEqual(first.status, 200, first.body)
            again = self.update(srv, sid, a)
            self.assertEqual((again.status, again.json()), (200, first.json()))
            r = self.update(srv, sid, b)
            self.assertEqual(r.status, 409, r.body)
            self.assertEqual(r.problem()["code"], "idempotency_conflict")
            # The same with the header.
            h = {"Idempotency-Key": "k-9"}
            body = {"y_true": [1], "y_score": [0.5]}
            self.assertEqual(self.update(srv, sid, body, headers=h).status, 200)
            r = self.update(srv, sid, {"y_true": [0], "y_score": [0.5]}, headers=h)
            self.assertEqual(r.status, 409, r.body)
            self.assertEqual(r.problem()["code"], "idempotency_conflict")
            self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 3)
        with Server(data_dir=self.dir) as srv:
            r = self.update(srv, sid, b)
            self.assertEqual(r.status, 409, r.body)
            self.assertEqual(r.problem()["code"], "idempotency_conflict")
            again = self.update(srv, sid, a)
            self.assertEqual((again.status, again.json()), (200, first.json()))
            self.assertEqual(srv.get("/v1/streams/" + sid).json()["count"], 3)

    def test_state_id_merged_once(self):
        body = {"y_true": [1, 0, 1], "y_score": [0.8, 0.3, 0.6]}
        with Server(data_dir=self.dir) as srv:
            for m in METHODS:
                src = self.create(srv, {"method": m, "loss": "binary_crossentropy"})
                dst = self.create(srv, {"method": m, "loss": "binary_crossentropy"})
                self.assertEqual(self.update(srv, src, body).status, 200)
                st = srv.get("/v1/streams/%s/state" % src).json()
                self.assertRegex(st["state_id"], "^[0-9a-f]{64}$")
                # The same content exported twice has the same id.
                self.assertEqual(srv.get("/v1/streams/%s/state" % src).json()["state_id"],
                                 st["state_id"])
                r = srv.post_json("/v1/streams/%s/merge" % dst, st)
                self.assertEqual(r.status, 200, r.body)
                self.assertIs(r.json()["applied"], True)
                r = srv.post_json("/v1/streams/%s/merge" % dst, st)
                self.assertEqual(r.status, 200, r.body)
                self.assertIs(r.json()["applied"], False)
                self.assertEqual(r.json()["count"], 3)
                # Every field of an export is required, state_id too.
                bare = dict(st)
                del bare["state_id"]
                r = srv.post_json("/v1/streams/%s/merge" % dst, bare)
                self.assertEqual(r.status, 422, r.body)
                self.assertEqual(r.problem()["code"], "missing_field")
                # A state_id that is not the state's digest is refused.
                forged = dict(st, state_id="0" * 64)
                r = srv.post_json("/v1/streams/%s/merge" % dst, forged)
                self.assertEqual(r.status, 422, r.body)
                self.assertEqual(r.problem()["code"], "bad_state")
                self.assertEqual(srv.get("/v1/streams/" + dst).json()["count"], 3)
                # New data in the source: a new state_id, merged again.
                self.assertEqual(self.update(srv, src, body).status, 200)
                st2 = srv.get("/v1/streams/%s/state" % src).json()
                self.assertNotEqual(st2["state_id"], st["state_id"])
                r = srv.post_json("/v1/streams/%s/merge" % dst, st2)
                self.assertIs(r.json()["applied"], True)
                self.assertEqual(r.json()["count"], 9)
            last = (dst, st, st2)
        with Server(data_dir=self.dir) as srv:
            dst, st, st2 = last
            for x in (st, st2):
                r = srv.post_json("/v1/streams/%s/merge" % dst, x)
                self.assertEqual(r.status, 200, r.body)
                self.assertIs(r.json()["applied"], False)
            self.assertEqual(srv.get("/v1/streams/" + dst).json()["count"], 9)
            # A reset starts a new accumulation: the state applies again.
            self.assertEqual(srv.post("/v1/streams/%s/reset" % dst, b"").status, 200)
            r = srv.post_json("/v1/streams/%s/merge" % dst, st)
            self.assertIs(r.json()["applied"], True)


class KillLoopTest(Base):
    """kill -9 under concurrent writers, over and over: every acknowledged
    update survives (its retry after the restart gets the very reply it got
    before: applied once, never lost), a reused batch_id stays a conflict,
    checkpoints happen in between, each exported state is applied once to
    its merge target, and no start finds a damaged stream."""

    def test_kill9_loop(self):
        rnd_scores = [round(i / 2000.0, 6) for i in range(2000)]
        lock = threading.Lock()
        sent = {}     # batch key -> (sid, body)
        acked = {}    # batch key -> first reply
        acked_live = [0]  # acknowledged by the original request (before a kill)
        checked = [0]     # acknowledged replies compared after a restart
        states = {}   # state_id -> (state, its count)
        ids = None
        cycles = 5
        for cycle in range(cycles):
            srv, msg = start_outcome(self.dir)
            self.assertIsNotNone(srv, "restart %d refused: %s" % (cycle, msg))
            try:
                self.assertEqual(srv.metric("lossd_streams_damaged"), 0)
                if ids is None:
                    ids = {m: self.create(srv, {"method": m}) for m in METHODS}
                    ids["target"] = self.create(srv, {"method": "sketch"})
                    ids["source"] = self.create(srv, {"method": "sketch"})
                # Every acknowledged batch is there: its retry is answered
                # with its first reply, not applied again.
                lost = []
                for k, first in list(acked.items()):
                    sid, body = sent[k]
                    r = self.update(srv, sid, body)
                    self.assertEqual(r.status, 200, r.body)
                    checked[0] += 1
                    if r.json() != first:
                        lost.append(k)
                self.assertEqual(lost, [], "acknowledged updates lost")
                # The others are applied at most once: retry them all.
                for k in [k for k in sent if k not in acked]:
                    sid, body = sent[k]
                    r = self.update(srv, sid, body)
                    self.assertEqual(r.status, 200, r.body)
                    acked[k] = r.json()
                for m in METHODS:
                    rows = sum(len(b["y_true"]) for s_, b in sent.values() if s_ == ids[m])
                    self.assertEqual(srv.get("/v1/streams/" + ids[m]).json()["count"], rows)
                # A reused batch_id with other data stays a conflict.
                if acked:
                    k = sorted(acked)[0]
                    sid, body = sent[k]
                    other = dict(body, y_true=[1 - y for y in body["y_true"]])
                    r = self.update(srv, sid, other)
                    self.assertEqual(r.status, 409, r.body)
                # Every state ever exported is in the target exactly once.
                for sid_, (st, n) in states.items():
                    r = srv.post_json("/v1/streams/%s/merge" % ids["target"], st)
                    self.assertEqual(r.status, 200, r.body)
                self.assertEqual(srv.get("/v1/streams/" + ids["target"]).json()["count"],
                                 sum(n for _, n in states.values()))

                body = {"y_true": [1, 0, 1], "y_score": [0.6, 0.4, 0.5 + cycle / 100],
                        "batch_id": "src-%d" % cycle}
                self.assertEqual(self.update(srv, ids["source"], body).status, 200)
                st = srv.get("/v1/streams/%s/state" % ids["source"]).json()
                states[st["state_id"]] = (st, st["count"])

                stop = threading.Event()

                def writer(t):
                    conn_i = 0
                    while not stop.is_set():
                        m = METHODS[(t + conn_i) % 3]
                        k = "c%d-t%d-%d" % (cycle, t, conn_i)
                        conn_i += 1
                        if m == "sketch" and conn_i % 4 == 0:
                            body = {"y_true": [i % 2 for i in range(2000)],
                                    "y_score": rnd_scores}
                        else:
                            body = {"y_true": [1, 0, 1, 0, 1],
                                    "y_score": [0.9, 0.2, 0.4, 0.3, 0.05 * (conn_i % 20)]}
                        body["batch_id"] = k
                        with lock:
                            sent[k] = (ids[m], body)
                        try:
                            r = self.update(srv, ids[m], body, timeout=5, contract=False)
                        except Exception:
                            return
                        if r.status == 200:
                            with lock:
                                acked[k] = r.json()
                                acked_live[0] += 1

                def merger():
                    while not stop.is_set():
                        try:
                            srv.post_json("/v1/streams/%s/merge" % ids["target"], st,
                                          timeout=5, contract=False)
                        except Exception:
                            return

                th = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
                th.append(threading.Thread(target=merger))
                for t in th:
                    t.start()
                time.sleep(0.8 + 0.3 * cycle)
                srv.send_signal(signal.SIGKILL)
                srv.wait()
                stop.set()
                for t in th:
                    t.join(10)
            finally:
                srv.stop()
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        ckpt = con.execute("SELECT seq FROM streams WHERE id = ?", (ids["sketch"],)).fetchone()[0]
        con.close()
        self.assertGreater(ckpt, 0, "the loop wrote no checkpoint")
        print("kill -9 loop: %d cycles, %d batches sent, %d acknowledged under load, "
              "%d acknowledged replies re-checked after restarts, 0 lost, 0 applied twice; "
              "%d exported states each applied once; 0 damaged streams at %d starts"
              % (cycles, len(sent), acked_live[0], checked[0], len(states), cycles),
              file=sys.stderr)
        self.assertGreater(len(sent), 50, "the loop sent too little to mean much")


class BrokenStoreOwnershipTest(Base):
    def test_delete_of_another_principals_stream_is_404_while_broken(self):
        """Item 9: ownership before the store's state. While the store cannot
        commit, another principal's DELETE gets the 404 of a missing id, the
        owner's gets 503; the failure is a JSON log line with the principal."""
        tokens = {"tok-alice-0123456789": "alice", "tok-bob-0123456789ab": "bob"}
        with Server(data_dir=self.dir, tokens=tokens, test_hooks=True) as srv:
            a = srv.auth("tok-alice-0123456789")
            b = srv.auth("tok-bob-0123456789ab")
            sid = self.create(srv, {"method": "exact"}, headers=a)
            self.assertEqual(srv.post_json("/v1/_store_fail?n=-1", {}, headers=a).status, 200)
            r = self.update(srv, sid, {"y_true": [1], "y_score": [0.5]}, headers=a)
            self.assertEqual(r.status, 503, r.body)
            line = srv.wait_log(lambda l: l.get("stream") == sid and l.get("level") == "error")
            self.assertEqual(line.get("principal"), "alice")
            self.assertNotIn("tok-alice-0123456789", json.dumps(srv.logs))
            missing = srv.delete("/v1/streams/" + "f" * 32, headers=b)
            other = srv.delete("/v1/streams/" + sid, headers=b)
            self.assertEqual(missing.status, 404)
            self.assertEqual((other.status, other.body), (404, missing.body.replace(b"f" * 32, sid.encode())))
            self.assertEqual(srv.delete("/v1/streams/" + sid, headers=a).status, 503)
            self.assertEqual(srv.post_json("/v1/_store_fail?n=0", {}, headers=a).status, 200)


def start_outcome(d, **kw):
    """Starts lossd on data dir d: (server, None) when it is serving, or
    (None, message) when it refused to start."""
    try:
        return Server(data_dir=d, check_exit=False, contract=False, **kw), None
    except AssertionError as e:
        return None, str(e)


class TextRowChecksumTest(Base):
    """The text rows of the SQLite store (a stream's config and owner, its
    idempotency records, its checkpoint records, its metadata) carry a
    checksum: a digit or letter changed in one quarantines its stream (503
    stream_damaged, an error log line), every other stream is served
    exactly; rows written without one (older builds) are accepted."""

    TOKENS = {"tok-a-0123456789abcdef": "alice"}
    N = 11

    def server(self):
        return Server(data_dir=self.dir, tokens=self.TOKENS)

    def fill(self):
        ids, seen = [], {}
        with self.server() as srv:
            h = srv.auth("tok-a-0123456789abcdef")
            for i in range(self.N):
                cfg = {"method": METHODS[i % 3], "name": "run-%d7" % i,
                       "tags": {"team": "t%d5" % i}, "ttl_s": 3600}
                sid = self.create(srv, cfg, headers=h)
                for j in range(2):
                    body = {"y_true": [1, 0, 1], "y_score": [0.9, 0.1, 0.4 + j / 10],
                            "batch_id": "b%d" % j}
                    self.assertEqual(self.update(srv, sid, body, headers=h).status, 200)
                r = srv.post_json("/v1/streams/%s/checkpoint" % sid,
                                  {"step": 10, "label": "e%d3" % i}, headers=h)
                self.assertEqual(r.status, 201, r.body)
                ids.append(sid)
            for sid in ids:
                seen[sid] = self.observe(srv, sid)
        return ids, seen

    def observe(self, srv, sid):
        """The reading, the checkpoint history and a retried batch's reply."""
        h = srv.auth("tok-a-0123456789abcdef")
        r = srv.get("/v1/streams/" + sid, headers=h)
        hist = srv.get("/v1/streams/%s/history?series=checkpoints" % sid, headers=h)
        retry = self.update(srv, sid, {"y_true": [1, 0, 1], "y_score": [0.9, 0.1, 0.4],
                                       "batch_id": "b0"}, headers=h)
        return [(x.status, x.json()) for x in (r, hist, retry)]

    def change(self, sql, args):
        """One UPDATE that must change exactly one row; the meta trigger
        (which clears the sum an older build's update leaves) is dropped
        first, so the row keeps its checksum as damage would."""
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        con.execute("DROP TRIGGER IF EXISTS meta_sum_stale")
        self.assertEqual(con.execute(sql, args).rowcount, 1, sql)
        con.commit()
        con.close()

    def check(self, srv, seen, damaged):
        for sid, before in seen.items():
            if sid not in damaged:
                self.assertEqual(self.observe(srv, sid), before, sid)
                continue
            for status, body in self.observe(srv, sid):
                self.assertEqual((status, body.get("code")), (503, "stream_damaged"), sid)
        self.assertEqual(srv.metric("lossd_streams_damaged"), len(damaged))
        for sid in damaged:
            line = srv.wait_log(lambda l: l.get("stream") == sid and "damaged" in l.get("msg", ""))
            self.assertEqual(line["level"], "error")
            self.assertIn("checksum", line["reason"])

    def test_a_changed_text_row_quarantines_its_stream(self):
        ids, seen = self.fill()
        swap = "UPDATE %s SET %s = replace(%s, ?, ?) WHERE %s = ? AND instr(%s, ?) > 0"
        cases = [
            ("meta", "meta", "stream", '"t05"', '"t06"'),          # a tag
            ("meta", "meta", "stream", '"ttl_s":3600', '"ttl_s":3601'),
            ("streams", "config", "id", "run-27", "run-28"),       # the name
            ("streams", "owner", "id", "alice", "alicf"),
            ("checkpoints", "body", "stream", '"e43"', '"e44"'),   # a label
            ("keys", "reply", "stream", '"updates":1', '"updates":7'),
            ("keys", "key", "stream", "b1", "c1"),
        ]
        for sid, (table, col, key, old, new) in zip(ids, cases):
            self.change(swap % (table, col, col, key, col), (old, new, sid, old))
        # updated_at, an integer column; created_at is in the meta text
        self.change("UPDATE meta SET updated_ms = updated_ms + 1 WHERE stream = ?", (ids[7],))
        self.change("UPDATE meta SET meta = replace(meta, '\"created_ms\":1', '\"created_ms\":2')"
                    " WHERE stream = ?", (ids[8],))
        damaged = set(ids[:9])
        with self.server() as srv:
            self.check(srv, seen, damaged)
        # nothing on disk was changed: the same again, and the trigger is back
        with self.server() as srv:
            self.check(srv, seen, damaged)
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        self.assertEqual(con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                                     " AND name = 'meta_sum_stale'").fetchone()[0], 1)
        con.close()

    def test_a_row_moved_to_no_stream(self):
        """A damaged stream id in a checkpoint, meta or key row names no
        stream: the row is traced to the stream whose id fits its checksum,
        and that stream is quarantined (its record is not silently lost)."""
        ids, seen = self.fill()
        for table, sid in (("checkpoints", ids[0]), ("meta", ids[1]), ("keys", ids[2])):
            gone = ("0" if sid[5] != "0" else "1").join((sid[:5], sid[6:]))
            self.change("UPDATE %s SET stream = ? WHERE stream = ?%s"
                        % (table, " AND key = 'b1'" if table == "keys" else ""), (gone, sid))
        with self.server() as srv:
            self.check(srv, seen, set(ids[:3]))

    def test_a_record_damaged_while_serving(self):
        """An idempotency record read by a retry fails its checksum: the
        retry is 503 stream_damaged (not the changed reply), the healer
        reloads the stream and quarantines it, the others are served."""
        ids, seen = self.fill()
        with self.server() as srv:
            self.change("UPDATE keys SET reply = replace(reply, '\"updates\":1', '\"updates\":7')"
                        " WHERE stream = ? AND key = 'b0'", (ids[4],))
            h = srv.auth("tok-a-0123456789abcdef")
            r = self.update(srv, ids[4], {"y_true": [1, 0, 1], "y_score": [0.9, 0.1, 0.4],
                                          "batch_id": "b0"}, headers=h)
            self.assertEqual((r.status, r.problem()["code"]), (503, "stream_damaged"))
            line = srv.wait_log(lambda l: l.get("stream") == ids[4]
                                and "damaged" in l.get("msg", ""))
            self.assertIn("checksum", line["reason"])
            self.check(srv, seen, {ids[4]})

    def test_copy_store_stops_at_a_changed_row(self):
        """--copy-store reads the rows through the same checks: a changed
        checkpoint record stops the copy with a line naming its stream."""
        ids, _ = self.fill()
        self.change("UPDATE checkpoints SET body = replace(body, '\"e13\"', '\"e14\"')"
                    " WHERE stream = ?", (ids[1],))
        r = run_lossd(["--copy-store", "sqlite:" + self.dir,
                       "sqlite:" + os.path.join(self.dir, "copy")], timeout=60)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("stream %s: a row" % ids[1], r.stdout + r.stderr)
        self.assertIn("fails its checksum", r.stdout + r.stderr)

    def test_rows_of_older_builds_are_accepted(self):
        """A store of a build before checksums (no `sum` columns, no
        trigger): lossd adds the columns, serves every row as before (NULL
        sum: not checked), and rows it writes from then on carry one; an
        older build's update of a meta row (which leaves the sum as it
        was) clears the sum instead of making the row read as damaged."""
        ids, seen = self.fill()
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        con.execute("DROP TRIGGER meta_sum_stale")
        for t in ("streams", "keys", "checkpoints", "meta"):
            con.execute("ALTER TABLE %s DROP COLUMN sum" % t)
        con.commit()
        con.close()
        with self.server() as srv:
            self.check(srv, seen, set())
            h = srv.auth("tok-a-0123456789abcdef")
            self.assertEqual(self.update(srv, ids[0], {"y_true": [1], "y_score": [0.5],
                                                       "batch_id": "b9"}, headers=h).status, 200)
            seen[ids[0]] = self.observe(srv, ids[0])
        con = sqlite3.connect(os.path.join(self.dir, "lossd.db"))
        old = con.execute("SELECT count(*) FROM meta WHERE sum IS NULL").fetchone()[0]
        self.assertEqual(old, len(ids) - 1)  # ids[0]'s was rewritten with a sum
        self.assertEqual(con.execute("SELECT count(*) FROM keys WHERE sum IS NOT NULL"
                                     " AND key = 'b9'").fetchone()[0], 1)
        # an older build's update of a meta row: the trigger clears its sum
        self.assertEqual(con.execute("UPDATE meta SET updated_ms = updated_ms + 5"
                                     " WHERE stream = ?", (ids[0],)).rowcount, 1)
        con.commit()
        self.assertIsNone(con.execute("SELECT sum FROM meta WHERE stream = ?",
                                      (ids[0],)).fetchone()[0])
        con.close()
        with self.server() as srv:
            self.check(srv, {k: v for k, v in seen.items() if k != ids[0]}, set())
            r = srv.get("/v1/streams/" + ids[0], headers=srv.auth("tok-a-0123456789abcdef"))
            self.assertEqual(r.status, 200)


class DamagedDatabaseTest(Base):
    """On-disk damage is detected, not served (5)."""

    def fill(self, srv=None, n=3):
        own = srv is None
        if own:
            srv = Server(data_dir=self.dir)
        try:
            ids = []
            for m in METHODS:
                sid = self.create(srv, {"method": m, "loss": "binary_crossentropy"})
                for i in range(n):
                    body = {"y_true": [1, 0, 1, 0], "y_score": [0.9, 0.1, 0.3 + (i % 10) / 20, 0.6],
                            "batch_id": "b%d" % i}
                    self.assertEqual(self.update(srv, sid, body).status, 200)
                ids.append(sid)
            readings = {sid: srv.get("/v1/streams/" + sid).json() for sid in ids}
        finally:
            if own:
                srv.stop()
        return ids, readings

    def db(self, suffix=""):
        return os.path.join(self.dir, "lossd.db" + suffix)

    def assert_refused(self, must_say):
        srv, msg = start_outcome(self.dir)
        if srv:
            srv.stop()
            self.fail("lossd served a damaged database")
        self.assertIn(must_say, msg)

    def test_empty_database_is_refused(self):
        self.fill()
        for sfx in ("-wal", "-shm"):
            if os.path.exists(self.db(sfx)):
                os.unlink(self.db(sfx))
        open(self.db(), "wb").close()  # 0 bytes
        self.assert_refused("is empty but")
        # Deleting lossd.lock accepts the database as it is (here: empty).
        os.unlink(os.path.join(self.dir, "lossd.lock"))
        with Server(data_dir=self.dir) as srv:
            self.assertEqual(srv.get("/v1/streams").json()["streams"], [])

    def test_truncated_database_is_refused(self):
        self.fill(n=40)
        size = os.path.getsize(self.db())
        self.assertGreater(size, 8192)
        with open(self.db(), "r+b") as f:
            f.truncate(size // 2 // 4096 * 4096)
        self.assert_refused("refusing to start")

    def test_lost_wal_is_refused(self):
        srv = Server(data_dir=self.dir, check_exit=False)
        try:
            self.fill(srv)
            srv.send_signal(signal.SIGKILL)
            srv.wait()
        finally:
            srv.stop()
        self.assertTrue(os.path.exists(self.db("-wal")))
        os.unlink(self.db("-wal"))
        if os.path.exists(self.db("-shm")):
            os.unlink(self.db("-shm"))
        self.assert_refused("were acknowledged")

    def test_database_locked_without_the_lock_file(self):
        with Server(data_dir=self.dir) as srv:
            sid = self.create(srv, {"method": "exact"})
            os.unlink(os.path.join(self.dir, "lossd.lock"))
            other, msg = start_outcome(self.dir)
            if other:
                other.stop()
                self.fail("a second lossd opened the same database")
            self.assertIn("another lossd is using this database", msg)
            self.assertEqual(srv.get("/v1/streams/" + sid).status, 200)


    def test_bit_flips_are_refused_or_quarantined(self):
        """Single-bit flips anywhere in the database file and in its b-tree
        index pages (the deltas' (stream, seq) index, which finds each
        delta's row, and the WITHOUT ROWID tables): lossd refuses to start
        with a message, or serves every stream exactly as before or as 503
        stream_damaged. Never a wrong reading (created_at and updated_at
        included: the text rows carry checksums too), a missing stream or a
        stream that was not there."""
        ids, readings = self.fill(n=25)
        with open(self.db(), "rb") as f:
            pristine = f.read()
        with open(os.path.join(self.dir, "lossd.lock"), "rb") as f:
            lock = f.read()
        page = struct.unpack(">H", pristine[16:18])[0]
        page = 65536 if page == 1 else page
        index_pages = [p for p in range(len(pristine) // page)
                       if pristine[p * page + (100 if p == 0 else 0)] in (0x02, 0x0a)]
        self.assertTrue(index_pages, "no index b-tree page found")
        import random
        rnd = random.Random(1234)
        trials = [rnd.randrange(len(pristine) * 8) for _ in range(200)]
        for _ in range(100):
            p = rnd.choice(index_pages)
            trials.append((p * page + rnd.randrange(page)) * 8 + rnd.randrange(8))
        outcome = {"refused": 0, "served intact": 0, "quarantined": 0}
        silent = []
        trial_dir = os.path.join(self.dir, "trial")
        for bit in trials:
            shutil.rmtree(trial_dir, ignore_errors=True)
            os.mkdir(trial_dir)
            b = bytearray(pristine)
            b[bit // 8] ^= 1 << (bit % 8)
            with open(os.path.join(trial_dir, "lossd.db"), "wb") as f:
                f.write(b)
            with open(os.path.join(trial_dir, "lossd.lock"), "wb") as f:
                f.write(lock)
            srv, msg = start_outcome(trial_dir)
            if srv is None:
                self.assertTrue("damaged" in msg or "refusing to start" in msg,
                                "bit %d: refused without saying why: %s" % (bit, msg[:300]))
                outcome["refused"] += 1
                continue
            try:
                damaged = 0
                for sid, before in readings.items():
                    r = srv.get("/v1/streams/" + sid)
                    if r.status == 503 and r.json().get("code") == "stream_damaged":
                        damaged += 1
                    elif r.status != 200 or r.json() != before:
                        got = r.json() if r.status == 200 else {}
                        diff = sorted(k for k in set(got) | set(before)
                                      if got.get(k) != before.get(k))
                        silent.append((bit, sid, r.status, diff))
                listed = {e["id"] for e in srv.get("/v1/streams").json()["streams"]}
                if not listed <= set(ids):
                    silent.append((bit, "listed", sorted(listed - set(ids))))
                outcome["quarantined" if damaged else "served intact"] += 1
            finally:
                srv.stop()
        print("bit flips: %d trials (%d in index pages): %r; served silently: %d"
              % (len(trials), 100, outcome, len(silent)), file=sys.stderr)
        self.assertEqual(silent, [], "damage served silently")


if __name__ == "__main__":
    unittest.main()
