"""The PyTorch hooks in a real two-rank data-parallel training run.

Starts lossd, then two processes of ddp_worker.py that train with
torch.distributed (gloo, on this machine) and log only through
lossd_client.torch's LossdTrainHook (every training batch, with its step)
and LossdHook (every validation batch). Each rank posts its own shard;
rank 0 alone reads and resets. The streams' readings must equal what torch
and scikit-learn compute on the whole data: validation loss
(F.binary_cross_entropy_with_logits), accuracy, AUC (roc_auc_score) each
epoch, and the training loss over every batch of the epoch as the model
was when the batch was posted. Rank 1's readings are None, and no hook
counted a failure. Rank 0 ends each epoch with a checkpoint-with-reset,
so the stream's history holds each epoch's reading at its step, and the
training stream's step series has one point per step holding both ranks'
rows.

Skips (saying so) when torch, numpy or scikit-learn is missing
(Debian: python3-torch python3-sklearn).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from lossd_harness import Server

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import torch  # noqa: F401
    import torch.distributed
    from sklearn.metrics import roc_auc_score
    MISSING = None if torch.distributed.is_available() else "torch.distributed is not built"
except ImportError as e:
    MISSING = "needs torch and scikit-learn (apt-get install python3-torch python3-sklearn): %s" % e


@unittest.skipIf(MISSING, MISSING)
class TestDDPHooks(unittest.TestCase):

    @staticmethod
    def load(path):
        with open(path) as f:
            return json.load(f)

    def test_two_ranks_gloo_match_torch_and_sklearn(self):
        with Server() as srv, tempfile.TemporaryDirectory() as tmp:
            init = os.path.join(tmp, "init")
            outs = [os.path.join(tmp, "rank%d.json" % r) for r in range(2)]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "ddp_worker.py"),
                                       str(r), "2", init, srv.url, outs[r]],
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
                     for r in range(2)]
            logs = []
            for r, p in enumerate(procs):
                try:
                    logs.append(p.communicate(timeout=300)[0])
                except subprocess.TimeoutExpired:
                    for q in procs:
                        q.kill()
                    rest = [q.communicate()[0] for q in procs[r:]]
                    self.fail("rank %d did not finish in 300 s; logs so far:\n%s"
                              % (r, "\n".join(logs + rest)))
            for r, p in enumerate(procs):
                self.assertEqual(p.returncode, 0, "rank %d:\n%s" % (r, logs[r]))
            r0, r1 = [self.load(o) for o in outs]

            self.assertEqual(r0["failures"], 0)
            self.assertEqual(r1["failures"], 0)
            self.assertEqual(r0["val_stream"], r1["val_stream"])  # one stream, shared
            self.assertEqual(r0["train_stream"], r1["train_stream"])
            self.assertEqual(len(r0["epochs"]), 2)
            for e, ep in enumerate(r0["epochs"]):
                val, train = ep["lossd_val"], ep["lossd_train"]
                auc = roc_auc_score(ep["val_y"], ep["val_logits"])
                self.assertEqual(val["lossd_count"], len(ep["val_y"]))
                self.assertEqual(val["lossd_count"], 384)
                self.assertAlmostEqual(val["lossd_auc"], auc, delta=1e-9)
                self.assertAlmostEqual(val["lossd_loss"], ep["torch_val_loss"], delta=1e-5)
                self.assertAlmostEqual(val["lossd_accuracy"], ep["torch_val_accuracy"],
                                       delta=1e-12)
                self.assertEqual(train["lossd_train_count"], ep["torch_train_rows"])
                self.assertEqual(train["lossd_train_count"], 512)
                self.assertAlmostEqual(train["lossd_train_loss"], ep["torch_train_loss"],
                                       delta=1e-5)
                self.assertIsNone(r1["epochs"][e]["lossd_val"])
                self.assertIsNone(r1["epochs"][e]["lossd_train"])
            # the two epochs differ (training moved the model), so the reset
            # between them really emptied the stream rather than adding up
            self.assertNotAlmostEqual(r0["epochs"][0]["lossd_val"]["lossd_loss"],
                                      r0["epochs"][1]["lossd_val"]["lossd_loss"], places=4)
            self.assertEqual(len(r0["val_history"]), 2)
            self.assertEqual(r1["val_history"], [])
            # rank 0 ended each epoch with a checkpoint (reset in the same
            # step): the stream's history holds both epochs' readings
            self.assertIs(r0["checkpoint_supported"], True)
            self.assertIsNone(r1["checkpoint_supported"])  # rank 1 never reads
            r = srv.get("/v1/streams/%s/history?series=checkpoints" % r0["val_stream"])
            self.assertEqual(r.status, 200, r)
            ckpts = r.json()["checkpoints"]
            self.assertEqual([c["label"] for c in ckpts], ["epoch-0", "epoch-1"])
            self.assertEqual([c["step"] for c in ckpts], [8, 16])  # 256 rows / 32 per rank
            for c, ep in zip(ckpts, r0["epochs"]):
                self.assertEqual(c["count"], ep["lossd_val"]["lossd_count"])
                self.assertAlmostEqual(c["auc"], ep["lossd_val"]["lossd_auc"], delta=1e-12)
                self.assertAlmostEqual(c["loss"], ep["lossd_val"]["lossd_loss"], delta=1e-12)
            # the training steps went in with their step: one point per step
            r = srv.get("/v1/streams/%s/history?series=steps" % r0["train_stream"])
            self.assertEqual(r.status, 200, r)
            points = r.json()["steps"]
            self.assertIs(r0["step_supported"], True)
            self.assertEqual([p["step"] for p in points], list(range(16)))
            self.assertTrue(all(p["count"] == 64 for p in points), points[:2])  # 2 ranks x 32
            print("ddp: epochs", [(round(ep["lossd_val"]["lossd_auc"], 6),
                                  round(ep["lossd_val"]["lossd_loss"], 6),
                                  round(ep["lossd_train"]["lossd_train_loss"], 6))
                                 for ep in r0["epochs"]], "step in updates:",
                  r0["step_supported"], file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
