"""SIGTERM as a pre-emption notice: checkpoint at the current step, then stop cleanly.

A Cloud TPU VM gets SIGTERM before maintenance or a spot reclaim. The handler only records
that it came (no TensorFlow work inside a signal handler); the loop checks after every chunk,
writes a checkpoint at that step and raises ``Preempted``, and the next launch of the same
command resumes from it exactly.
"""

from __future__ import annotations

import signal
import threading

# Exit status of a main that stopped on SIGTERM (128 + 15, what a shell reports for it).
EXIT_CODE = 128 + signal.SIGTERM


class Preempted(RuntimeError):
  """Training stopped on SIGTERM after checkpointing ``step``; rerun to resume."""

  def __init__(self, step: int, checkpoint: str | None):
    self.step, self.checkpoint = step, checkpoint
    super().__init__(f"pre-empted (SIGTERM) at step {step}: checkpoint {checkpoint} written; "
                     "rerun the same command to resume")


class Watch:
  """Context manager: while inside, SIGTERM sets ``requested`` instead of killing.

  Outside the main thread (signal handlers can only be set there) it watches nothing.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self.requested = True

  def __enter__(self) -> "Watch":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc) -> bool:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False
