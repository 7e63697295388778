"""Seconds spent in named blocks of code (a run's clock, the study's phases)."""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def add_seconds(totals: dict, kind: str):
  """Adds the wall seconds spent inside the block to ``totals[kind]`` (created at 0)."""
  start = time.time()
  try:
    yield
  finally:
    totals[kind] = totals.get(kind, 0.0) + time.time() - start
