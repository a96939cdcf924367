"""The Python client's tests under ctest (e2e_test_client).

Runs every test of clients/python/tests/test_client.py: the unit tests
(fake servers, no lossd needed) and LiveServerTests, which starts the lossd
named by LOSSD_BIN (set by ctest) through lossd_harness.py and drives it with
the client: loss and AUC against formulas computed here, problem+json errors,
the stream lifecycle (a repeated batch_id is not counted twice, merge, reset,
delete), pagination and the example training loop.
"""

import importlib.util
import os
import sys
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(_HERE, "..", "..", "clients", "python", "tests", "test_client.py")

_spec = importlib.util.spec_from_file_location("lossd_client_tests", os.path.abspath(_SRC))
_mod = importlib.util.module_from_spec(_spec)
sys.modules["lossd_client_tests"] = _mod
_spec.loader.exec_module(_mod)

# Re-export the test classes so that `python3 -m unittest test_client` finds them.
for _name in dir(_mod):
    _obj = getattr(_mod, _name)
    if isinstance(_obj, type) and issubclass(_obj, unittest.TestCase):
        globals()[_name] = _obj

if __name__ == "__main__":
    unittest.main()
