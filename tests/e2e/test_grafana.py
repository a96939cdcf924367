"""docker/grafana/lossd.json, the Grafana dashboard: valid JSON of the shape
Grafana imports (title, uid, panels with unique ids, a grid position and
Prometheus targets), and every metric its queries name is a family the real
binary exports in /metrics (with --metrics-streams and a stream in use), so a
renamed metric fails here rather than as an empty panel.
"""

import json
import os
import re
import unittest

from lossd_harness import Server

ROOT = os.environ.get("LOSSD_SOURCE_DIR",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PATH = os.path.join(ROOT, "docker", "grafana", "lossd.json")
METRIC = re.compile(r"\b((?:lossd|process)_[a-z_]+)")


class GrafanaDashboard(unittest.TestCase):
    def test_dashboard_queries_name_exported_metrics(self):
        with open(PATH) as f:
            d = json.load(f)
        for k in ("title", "uid", "panels", "schemaVersion"):
            self.assertIn(k, d)
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        names = set()
        for p in d["panels"]:
            self.assertTrue(p.get("title"))
            self.assertTrue({"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                found = METRIC.findall(t["expr"])
                self.assertTrue(found, t["expr"])
                names.update(found)
        for v in d.get("templating", {}).get("list", []):
            names.update(METRIC.findall(json.dumps(v.get("query", ""))))
        with Server(args=["--metrics-streams"]) as srv:
            sid = srv.post_json("/v1/streams", {"name": "g", "loss": "binary_crossentropy"}).json()["id"]
            srv.post_json("/v1/streams/%s/update" % sid,
                          {"y_true": [0, 1], "y_score": [0.3, 0.6]})
            srv.post_json("/v1/loss", {"loss": "binary_crossentropy", "y_true": [0, 1],
                                       "y_pred": [0.2, 0.8]})
            text = srv.metrics()
        families = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
        for n in sorted(names):
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            self.assertTrue(n in families or base in families,
                            "%s is not exported by lossd" % n)
        for want in ("lossd_stream_auc", "lossd_stream_loss", "lossd_http_requests_total",
                     "lossd_http_request_duration_seconds_bucket",
                     "lossd_store_commit_seconds_bucket"):
            self.assertIn(want, names)


if __name__ == "__main__":
    unittest.main()
