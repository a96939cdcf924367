"""The standard process_* metrics in /metrics (server/src/procstats.c):
present once each with HELP and TYPE, plausible against what the test sees
of the process from outside (/proc/PID), and the CPU counter grows with work.
"""

import os
import time
import unittest

from lossd_harness import Server


def families(text):
    return {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}


class ProcessMetrics(unittest.TestCase):
    def test_process_metrics(self):
        with Server() as srv:
            text = srv.metrics()
            for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                         "process_open_fds", "process_start_time_seconds",
                         "process_max_fds", "process_virtual_memory_bytes"):
                self.assertIn(name, families(text), name)
                self.assertEqual(sum(1 for l in text.splitlines() if l.split(" ")[0] == name),
                                 1, name)
            rss = srv.metric("process_resident_memory_bytes")
            with open("/proc/%d/status" % srv.proc.pid) as f:
                vm = {l.split(":")[0]: l.split()[1] for l in f if ":" in l and len(l.split()) > 1}
            self.assertGreater(rss, 1 << 20)
            self.assertLess(abs(rss / 1024 - int(vm["VmRSS"])), 64 * 1024)  # within 64 MiB
            fds = srv.metric("process_open_fds")
            self.assertLessEqual(abs(fds - len(os.listdir("/proc/%d/fd" % srv.proc.pid))), 4)
            start = srv.metric("process_start_time_seconds")
            self.assertLess(abs(start - time.time()), 120)
            cpu0 = srv.metric("process_cpu_seconds_total")
            big = {"loss": "binary_crossentropy", "y_true": [0, 1] * 100000,
                   "y_pred": [0.25, 0.75] * 100000}
            for _ in range(20):
                self.assertEqual(srv.post_json("/v1/loss", big).status, 200)
            self.assertGreater(srv.metric("process_cpu_seconds_total"), cpu0)


if __name__ == "__main__":
    unittest.main()
