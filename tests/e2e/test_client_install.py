"""The Python client installs offline as its README says, and its console
script works against a started lossd.

On a copy of clients/python (so no build output lands in the tree):
- `pip wheel --no-deps --no-build-isolation` builds the wheel with the
  standard backend (setuptools, Debian's python3-setuptools) and no index;
  the wheel holds lossd_client/cli.py and declares the lossd-cli script;
- `python3 -m venv --system-site-packages` + `pip install --no-index
  --no-build-isolation DIR` installs it (Debian 12's PEP 668 forbids pip
  outside a venv, hence the venv);
- the venv's `lossd-cli --version`, `--help` and `create` / `--json list`
  against lossd work, and the venv's python imports the installed client.

The wheel is kept in $LOSSD_WHEEL_DIR when that is set (CI's artifact).
Skips, saying so, when venv or pip is missing (Debian: python3-venv
python3-pip python3-setuptools).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

from lossd_harness import Server

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.abspath(os.path.join(HERE, "..", "..", "clients", "python"))


def missing():
    for mod in ("venv", "pip", "setuptools", "ensurepip"):
        r = subprocess.run([sys.executable, "-c", "import " + mod], capture_output=True)
        if r.returncode:
            return ("needs %s for %s (Debian: python3-venv python3-pip python3-setuptools)"
                    % (mod, sys.executable))
    return None


MISSING = missing()


@unittest.skipIf(MISSING, MISSING)
class TestClientInstall(unittest.TestCase):

    def run_ok(self, args, **kw):
        env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        p = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, **kw)
        self.assertEqual(p.returncode, 0, "%s:\n%s%s" % (" ".join(args), p.stdout, p.stderr))
        return p.stdout

    def test_wheel_venv_install_and_console_script(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src")
            shutil.copytree(PKG, src, ignore=shutil.ignore_patterns(
                "__pycache__", "build", "dist", "*.egg-info"))
            dist = os.path.join(tmp, "dist")
            self.run_ok([sys.executable, "-m", "pip", "wheel", "--no-deps",
                         "--no-build-isolation", "-w", dist, src])
            wheels = glob.glob(os.path.join(dist, "lossd_client-*-py3-none-any.whl"))
            self.assertEqual(len(wheels), 1, os.listdir(dist))
            with zipfile.ZipFile(wheels[0]) as z:
                names = z.namelist()
                self.assertIn("lossd_client/cli.py", names)
                self.assertIn("lossd_client/torch.py", names)
                ep = [n for n in names if n.endswith("entry_points.txt")]
                self.assertEqual(len(ep), 1, names)
                self.assertIn("lossd-cli = lossd_client.cli:main", z.read(ep[0]).decode())
            keep = os.environ.get("LOSSD_WHEEL_DIR")
            if keep:
                os.makedirs(keep, exist_ok=True)
                shutil.copy(wheels[0], keep)

            venv = os.path.join(tmp, "venv")
            self.run_ok([sys.executable, "-m", "venv", "--system-site-packages", venv])
            pip = os.path.join(venv, "bin", "pip")
            self.run_ok([pip, "install", "--no-index", "--no-build-isolation", src])
            cli = os.path.join(venv, "bin", "lossd-cli")
            self.assertTrue(os.access(cli, os.X_OK))
            self.assertIn("lossd-cli 0.", self.run_ok([cli, "--version"]))
            self.assertIn("exit codes:", self.run_ok([cli, "--help"]))
            where = self.run_ok([os.path.join(venv, "bin", "python"), "-c",
                                 "import lossd_client; print(lossd_client.__file__)"],
                                cwd=tmp)
            self.assertIn(os.path.join(venv, "lib"), where)
            with Server() as srv:
                sid = self.run_ok([cli, "--url", srv.url, "create", "--name", "pip"]).strip()
                listed = json.loads(self.run_ok([cli, "--url", srv.url, "--json", "list"]))
                self.assertEqual([s["id"] for s in listed["streams"]], [sid])


if __name__ == "__main__":
    unittest.main()
