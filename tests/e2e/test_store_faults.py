"""The stream store under disk faults (issue 13, items 3 and 4), real binary.

- disk full (root: a 2 MiB tmpfs as the data dir, filled by a file): writes
  get 503 store_unavailable with Retry-After, /readyz 503, /livez 200; no
  read shows a refused batch; once the file is removed the store commits
  again with no restart, the refused batch can be retried, and after a
  restart every acknowledged batch is there and nothing else;
- device write errors (root: ext4 on a loop device whose backing file is
  on a small tmpfs; filling the tmpfs makes the device fail writes while
  the file system still has room): the same checks;
- I/O error (the test hook POST /v1/_store_fail: this machine has no
  device-mapper, so no dm "error" target to put under the data dir): the
  same checks, on any user, plus a refused create and delete;
- frozen disk (root: an ext4 file system on a loop device, fsfreeze -f):
  /v1/auc, /v1/loss and stream reads keep answering while writes wait on
  the frozen commit (a read of a stream whose writes wait shows only what
  is committed, or 503 within a second); past --store-stall-s /readyz is 503, new writes are
  refused at once, /metrics shows the stall; after fsfreeze -u the waiting
  writes finish (200) and /readyz is 200 again.

Each test prints the probe latencies it measured (/livez, /v1/auc, ...)
during the fault to stderr. Root-only tests skip with a message when not
root. Mounts and freezes are undone in finally blocks: a file system left
frozen would hang everything else that touches it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from lossd_harness import Server

ROOT = os.geteuid() == 0
AUC = {"y_true": [0, 1, 1, 0, 1, 0, 1, 1], "y_score": [0.1, 0.8, 0.7, 0.3, 0.9, 0.2, 0.4, 0.6]}
LOSS = {"loss": "binary_crossentropy", "y_true": [0, 1, 1], "y_pred": [0.2, 0.7, 0.9]}


def batch(n, k):
    """A batch of n rows, different for each k."""
    y = [(i * 7 + k) % 2 for i in range(n)]
    s = [round(((i * 37 + k * 11) % 1000) / 1000.0, 3) for i in range(n)]
    return y, s


def sh(*cmd):
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True)


class Probe:
    """Times requests; keeps the worst and all samples per name."""

    def __init__(self):
        self.samples = {}

    def run(self, name, fn):
        t0 = time.monotonic()
        r = fn()
        self.samples.setdefault(name, []).append(time.monotonic() - t0)
        return r

    def report(self, title):
        parts = []
        for name, v in sorted(self.samples.items()):
            v = sorted(v)
            parts.append("%s n=%d median=%.1f ms max=%.1f ms"
                         % (name, len(v), 1000 * v[len(v) // 2], 1000 * v[-1]))
        sys.stderr.write("\n[probe latency] %s: %s\n" % (title, "; ".join(parts)))


class StoreFaultBase(unittest.TestCase):
    def create(self, srv):
        r = srv.post_json("/v1/streams", {"method": "exact", "loss": "binary_crossentropy"})
        self.assertEqual(r.status, 201, r)
        return r.json()["id"]

    def update(self, srv, sid, k, n, timeout=30, keyed=True):
        y, s = batch(n, k)
        body = {"y_true": y, "y_pred": s}
        if keyed:
            body["batch_id"] = "b%d" % k
        return srv.post_json("/v1/streams/%s/update" % sid, body, timeout=timeout)

    def count(self, srv, sid):
        r = srv.get("/v1/streams/%s" % sid)
        if r.status == 503:
            self.assertEqual(r.problem()["code"], "store_unavailable")
            return None
        self.assertEqual(r.status, 200, r)
        return r.json()["count"]

    def check_compute(self, srv, probe):
        r = probe.run("/livez", lambda: srv.get("/livez", timeout=5))
        self.assertEqual(r.status, 200)
        r = probe.run("/v1/auc", lambda: srv.post_json("/v1/auc", AUC, timeout=5))
        self.assertEqual(r.status, 200, r)
        r = probe.run("/v1/loss", lambda: srv.post_json("/v1/loss", LOSS, timeout=5))
        self.assertEqual(r.status, 200, r)

    def assert_unready(self, srv):
        r = srv.get("/readyz")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.problem()["code"], "store_unavailable")
        self.assertTrue(r.headers.get("Retry-After"), r.headers)

    def wait_ready(self, srv, timeout=15):
        """Polls /readyz until 200; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() < t0 + timeout:
            if srv.get("/readyz").status == 200:
                return time.monotonic() - t0
            time.sleep(0.05)
        self.fail("/readyz never came back to 200")

    def wait_count(self, srv, sid, want, timeout=15):
        """Polls the stream: every answer is 503 or exactly `want`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.count(srv, sid)
            if c is not None:
                self.assertEqual(c, want, "a read showed rows the disk does not hold")
                return
            time.sleep(0.05)
        self.fail("the stream stayed 503 for %s s" % timeout)

    def break_and_heal(self, srv, sid, fault_on, fault_off, probe):
        """Acked batches, then a fault until a write is refused; checks
        while broken; heals; returns (acked rows, refused batch k)."""
        acked = 0
        for k in range(3):
            r = self.update(srv, sid, k, 50)
            self.assertEqual(r.status, 200, r)
            acked += 50
        fault_on()
        refused = None
        for k in range(3, 200):
            r = self.update(srv, sid, k, 200)
            if r.status == 200:
                acked += 200
                continue
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.problem()["code"], "store_unavailable")
            self.assertTrue(r.headers.get("Retry-After"))
            refused = k
            break
        self.assertIsNotNone(refused, "the fault never refused a write")
        # Broken: not ready, alive, compute answers, writes refused, and
        # no read shows the refused batch.
        self.assert_unready(srv)
        self.assertEqual(srv.metric("lossd_store_broken"), 1)
        for _ in range(8):  # over a second: the healer's probes keep failing
            self.assert_unready(srv)
            self.check_compute(srv, probe)
            c = self.count(srv, sid)
            self.assertIn(c, (None, acked), "a read showed the refused batch")
            r = self.update(srv, sid, 1000, 5)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.problem()["code"], "store_unavailable")
            time.sleep(0.1)
        r = srv.get("/v1/streams")
        self.assertIn(r.status, (200, 503), r)
        fault_off()
        sys.stderr.write("\n[recovery] /readyz 200 again %.2f s after the fault ended\n"
                         % self.wait_ready(srv))
        self.assertEqual(srv.metric("lossd_store_broken"), 0)
        self.assertGreaterEqual(srv.metric("lossd_store_recoveries_total"), 1)
        self.wait_count(srv, sid, acked)
        # The refused batch, retried with its batch_id, is applied once.
        r = self.update(srv, sid, refused, 200)
        self.assertEqual(r.status, 200, r)
        acked += 200
        self.assertEqual(r.json()["count"], acked)
        r = self.update(srv, sid, refused, 200)
        self.assertEqual(r.json()["count"], acked)
        self.assertEqual(self.count(srv, sid), acked)
        return acked


class DiskFullTest(StoreFaultBase):
    def test_disk_full_heals_without_restart(self):
        if not ROOT:
            self.skipTest("needs root to mount a tmpfs (CI runs as root)")
        mnt = tempfile.mkdtemp(prefix="lossd-full-")
        sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt)
        filler = os.path.join(mnt, "filler")
        probe = Probe()
        try:
            data = os.path.join(mnt, "data")

            def fill():
                # dd stops at ENOSPC (exit status 1)
                subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=4k"],
                               capture_output=True)

            def unfill():
                os.unlink(filler)

            with Server(data_dir=data, args=["--threads", "2"]) as srv:
                sid = self.create(srv)
                acked = self.break_and_heal(srv, sid, fill, unfill, probe)
                for k in range(300, 305):
                    r = self.update(srv, sid, k, 20)
                    self.assertEqual(r.status, 200, r)
                    acked += 20
            with Server(data_dir=data) as srv:
                self.assertEqual(self.count(srv, sid), acked,
                                 "after a restart: acknowledged rows lost or extra")
        finally:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
            shutil.rmtree(mnt, ignore_errors=True)
        probe.report("disk full (tmpfs 2 MiB)")


class DeviceWriteErrorTest(StoreFaultBase):
    def test_device_write_errors_heal_without_restart(self):
        """A device that refuses writes under a file system that still has
        room: ext4 (no journal) on a loop device whose backing file lives
        on a 6 MiB tmpfs. Filling the tmpfs makes the loop device fail its
        writes (the kernel logs "I/O error ... writing to inode"), which
        SQLite sees as a failed write or fsync of the WAL, not as a full
        file system. Freeing the tmpfs makes the device work again."""
        if not ROOT:
            self.skipTest("needs root for tmpfs, a loop device and mount (CI runs as root)")
        if not shutil.which("mkfs.ext4"):
            self.skipTest("needs mkfs.ext4 (e2fsprogs)")
        work = tempfile.mkdtemp(prefix="lossd-dev-")
        back, mnt = os.path.join(work, "back"), os.path.join(work, "mnt")
        os.mkdir(back)
        os.mkdir(mnt)
        mounted = []
        probe = Probe()
        try:
            sh("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", back)
            mounted.append(back)
            img = os.path.join(back, "img")
            with open(img, "wb") as f:
                f.truncate(64 << 20)
            sh("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E",
               "lazy_itable_init=1,nodiscard", img)
            sh("mount", "-o", "loop", img, mnt)
            mounted.append(mnt)
            filler = os.path.join(back, "filler")
            data = os.path.join(mnt, "data")

            def fill():
                subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=4k"],
                               capture_output=True)

            def unfill():
                os.unlink(filler)

            with Server(data_dir=data, args=["--threads", "2"]) as srv:
                sid = self.create(srv)
                acked = self.break_and_heal(srv, sid, fill, unfill, probe)
                failed = [l["msg"] for l in srv.logs
                          if "transaction failed" in (l.get("msg") or "")]
                self.assertTrue(failed, "no failed commit was logged")
                sys.stderr.write("\n[device write errors] %s\n" % failed[0])
            with Server(data_dir=data) as srv:
                self.assertEqual(self.count(srv, sid), acked,
                                 "after a restart: acknowledged rows lost or extra")
        finally:
            for m in reversed(mounted):
                subprocess.run(["umount", m], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
        probe.report("device write errors (loop device on a full tmpfs)")


class IOErrorTest(StoreFaultBase):
    def test_io_error_heals_without_restart(self):
        data = tempfile.mkdtemp(prefix="lossd-eio-")
        probe = Probe()
        try:
            with Server(data_dir=data, test_hooks=True, args=["--threads", "2"]) as srv:
                sid = self.create(srv)
                on = lambda: self.assertEqual(
                    srv.post_json("/v1/_store_fail?n=-1", {}).status, 200)
                off = lambda: self.assertEqual(
                    srv.post_json("/v1/_store_fail?n=0", {}).status, 200)
                acked = self.break_and_heal(srv, sid, on, off, probe)
                # A create the disk refused leaves no stream behind, and a
                # delete it refused leaves the stream in place.
                other = self.create(srv)
                on()
                r = srv.post_json("/v1/streams", {"method": "exact"})
                self.assertEqual(r.status, 503, r)
                r = srv.delete("/v1/streams/%s" % other)
                self.assertEqual(r.status, 503, r)
                off()
                self.wait_ready(srv)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if srv.get("/v1/streams/%s" % other).status == 200:
                        break
                    time.sleep(0.05)
                self.assertEqual(srv.get("/v1/streams/%s" % other).status, 200)
                ids = [s["id"] for s in srv.get("/v1/streams").json()["streams"]]
                self.assertEqual(sorted(ids), sorted([sid, other]))
                # one injected failure: broken, then healed by the next probe
                self.assertEqual(srv.post_json("/v1/_store_fail?n=1", {}).status, 200)
                r = self.update(srv, sid, 400, 10)
                self.assertEqual(r.status, 503, r)
                self.wait_ready(srv)
                self.wait_count(srv, sid, acked)
            with Server(data_dir=data) as srv:
                self.assertEqual(self.count(srv, sid), acked)
                self.assertEqual(self.count(srv, other), 0)
        finally:
            shutil.rmtree(data, ignore_errors=True)
        probe.report("I/O error (test hook)")


class FrozenDiskTest(StoreFaultBase):
    def test_frozen_disk_keeps_compute_routes(self):
        if not ROOT:
            self.skipTest("needs root for a loop device and fsfreeze (CI runs as root)")
        if not shutil.which("fsfreeze") or not shutil.which("mkfs.ext4"):
            self.skipTest("needs fsfreeze and mkfs.ext4 (util-linux, e2fsprogs)")
        work = tempfile.mkdtemp(prefix="lossd-freeze-")
        img = os.path.join(work, "img")
        mnt = os.path.join(work, "mnt")
        os.mkdir(mnt)
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        sh("mkfs.ext4", "-q", "-F", img)
        sh("mount", "-o", "loop", img, mnt)
        frozen = False
        probe = Probe()
        try:
            data = os.path.join(mnt, "data")
            with Server(data_dir=data, args=["--threads", "2", "--store-stall-s", "1"]) as srv:
                sid = self.create(srv)
                quiet = self.create(srv)
                self.assertEqual(self.update(srv, quiet, 1, 20).status, 200)
                acked = 0
                for k in range(3):
                    self.assertEqual(self.update(srv, sid, k, 50).status, 200)
                    acked += 50
                results = []

                def writer(k):
                    # keyed writers wait in the key lookup, the others in
                    # the commit: both are disk waits
                    results.append(self.update(srv, sid, k, 10, timeout=120,
                                               keyed=k % 2 == 0).status)

                try:
                    sh("fsfreeze", "-f", mnt)
                    frozen = True
                    # More waiting writers than workers (2).
                    threads = [threading.Thread(target=writer, args=(10 + i,))
                               for i in range(6)]
                    for t in threads:
                        t.start()
                    time.sleep(0.3)
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 2.5:
                        self.check_compute(srv, probe)
                        # a stream with no write in flight reads as usual
                        r = probe.run("GET stream", lambda: srv.get(
                            "/v1/streams/%s" % quiet, timeout=5))
                        self.assertEqual(r.status, 200, r)
                        self.assertEqual(r.json()["count"], 20)
                        # one whose writes wait on the frozen commit shows
                        # only what is committed, or (it cannot tell yet)
                        # 503 within a second: never the waiting writes
                        r = probe.run("GET written stream", lambda: srv.get(
                            "/v1/streams/%s" % sid, timeout=5))
                        if r.status == 200:
                            self.assertEqual(r.json()["count"], acked)
                        else:
                            self.assertEqual((r.status, r.problem()["code"]),
                                             (503, "store_unavailable"), r)
                            self.assertTrue(r.headers.get("Retry-After"), r.headers)
                        time.sleep(0.1)
                    self.assertEqual(results, [], "a write finished on a frozen disk")
                    self.assert_unready(srv)
                    self.assertEqual(srv.metric("lossd_store_stalled"), 1)
                    self.assertGreater(srv.metric("lossd_store_running_seconds"), 1)
                    self.assertEqual(srv.get("/livez").status, 200)
                    r = probe.run("refused write", lambda: self.update(srv, sid, 99, 5,
                                                                        timeout=5))
                    self.assertEqual(r.status, 503, r)
                    self.assertEqual(r.problem()["code"], "store_unavailable")
                finally:
                    if frozen:
                        subprocess.run(["fsfreeze", "-u", mnt], capture_output=True)
                        frozen = False
                for t in threads:
                    t.join(60)
                self.assertEqual(sorted(results), [200] * 6, results)
                acked += 60
                sys.stderr.write("\n[recovery] /readyz 200 again %.2f s after the writers "
                                 "finished\n" % self.wait_ready(srv))
                self.assertEqual(self.count(srv, sid), acked)
                self.assertEqual(self.update(srv, sid, 50, 5).status, 200)
                acked += 5
                self.assertEqual(srv.metric("lossd_store_stalled"), 0)
                self.assertGreaterEqual(
                    srv.metric('lossd_store_commit_seconds_bucket{le="+Inf"}')
                    - srv.metric('lossd_store_commit_seconds_bucket{le="1"}'), 1)
            with Server(data_dir=data) as srv:
                self.assertEqual(self.count(srv, sid), acked)
        finally:
            if frozen:
                subprocess.run(["fsfreeze", "-u", mnt], capture_output=True)
            subprocess.run(["umount", mnt], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
        probe.report("frozen disk (fsfreeze, --store-stall-s 1)")


class FrozenDiskSlotsTest(StoreFaultBase):
    def test_writes_waiting_on_a_frozen_disk_leave_slots_for_compute(self):
        """Before --store-stall-s has passed, writes to a frozen disk are
        admitted and wait; they may hold at most half of --max-inflight,
        so /v1/auc and /v1/loss still find a slot (with 4 slots and 6
        waiting writers, without the cap, every slot would be a write's)."""
        if not ROOT:
            self.skipTest("needs root for a loop device and fsfreeze (CI runs as root)")
        if not shutil.which("fsfreeze") or not shutil.which("mkfs.ext4"):
            self.skipTest("needs fsfreeze and mkfs.ext4 (util-linux, e2fsprogs)")
        work = tempfile.mkdtemp(prefix="lossd-slots-")
        img, mnt = os.path.join(work, "img"), os.path.join(work, "mnt")
        os.mkdir(mnt)
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        sh("mkfs.ext4", "-q", "-F", img)
        sh("mount", "-o", "loop", img, mnt)
        frozen = False
        probe = Probe()
        try:
            data = os.path.join(mnt, "data")
            with Server(data_dir=data, args=["--threads", "2", "--max-inflight", "4",
                                             "--store-stall-s", "60"]) as srv:
                sid = self.create(srv)
                results = []
                threads = []
                try:
                    sh("fsfreeze", "-f", mnt)
                    frozen = True
                    threads = [threading.Thread(target=lambda k=k: results.append(
                        self.update(srv, sid, 10 + k, 10, timeout=120,
                                    keyed=False).status)) for k in range(6)]
                    for t in threads:
                        t.start()
                    deadline = time.monotonic() + 10
                    while len(results) < 4 and time.monotonic() < deadline:
                        time.sleep(0.05)
                    # two writes wait on the disk, four were refused
                    self.assertEqual(sorted(results), [503] * 4, results)
                    for _ in range(10):
                        self.check_compute(srv, probe)
                        time.sleep(0.05)
                finally:
                    if frozen:
                        subprocess.run(["fsfreeze", "-u", mnt], capture_output=True)
                        frozen = False
                for t in threads:
                    t.join(60)
                self.assertEqual(sorted(results), [200] * 2 + [503] * 4, results)
                self.assertEqual(self.count(srv, sid), 20)
        finally:
            if frozen:
                subprocess.run(["fsfreeze", "-u", mnt], capture_output=True)
            subprocess.run(["umount", mnt], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
        probe.report("frozen disk, writes holding slots (--max-inflight 4)")


if __name__ == "__main__":
    unittest.main()
