"""Shared pytest set-up: a private HOME, tests/ importable by test subprocesses, the tiny model.

Helper modules (``tiny_models``, ``engine_helpers``) live next to the tests. pytest puts
tests/ on ``sys.path`` for the test files; the PYTHONPATH set here once does the same for
the Python subprocesses that tests start (they inherit the environment).

HOME points at a temporary directory for the whole session (and its subprocesses), so
datasets prepared under the default ``~/.cache`` never touch the user's home: parallel runs
and read-only homes work.
"""

import atexit
import os
import shutil
import tempfile

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)

_HOME = tempfile.mkdtemp(prefix="nfnet-vit-tests-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["HOME"] = _HOME

os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO_ROOT, TESTS_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                              if p and p not in (REPO_ROOT, TESTS_DIR)])


@pytest.fixture(scope="module")
def tiny():
  """Registers the engine tests' tiny model for one test module; yields its name."""
  import engine_helpers
  import tiny_models
  engine_helpers.register_engine_tiny_model()
  yield engine_helpers.TINY
  tiny_models.unregister(engine_helpers.TINY)
