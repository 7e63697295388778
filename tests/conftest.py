"""Shared pytest set-up: tests/ importable by test subprocesses, and the engine's tiny model.

Helper modules (``tiny_models``, ``engine_helpers``) live next to the tests. pytest puts
tests/ on ``sys.path`` for the test files; the PYTHONPATH set here once does the same for
the Python subprocesses that tests start (they inherit the environment).
"""

import os

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)

os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO_ROOT, TESTS_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                              if p and p not in (REPO_ROOT, TESTS_DIR)])


@pytest.fixture(scope="module")
def tiny():
  """Registers the engine tests' tiny model for one test module; yields its name."""
  import engine_helpers
  from model_defs import registry
  engine_helpers.register_engine_tiny_model()
  yield engine_helpers.TINY
  registry.unregister(engine_helpers.TINY)
