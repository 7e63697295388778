"""Where a run's time goes, summed over all its attempts (restarts after a kill).

Kinds: ``wall`` (everything), ``training`` (inside train steps), and the overheads
``startup`` (building, restoring, input set-up), ``tracing`` (the first chunk of each
attempt beyond its steps' share: graph tracing and compilation), ``evaluation`` and
``checkpointing``. Totals of earlier attempts come back from the checkpoint.
"""

from __future__ import annotations

import time

from reproduce.core import timing

OVERHEADS = ("startup", "tracing", "evaluation", "checkpointing")
KINDS = ("wall", "training") + OVERHEADS


class RunClock:
  """Seconds by kind: this attempt's, plus those restored from the last checkpoint."""

  def __init__(self):
    self._start = time.time()
    self._before = dict.fromkeys(KINDS, 0.0)
    self._spent = dict.fromkeys(("startup", "evaluation", "checkpointing"), 0.0)
    self._chunks = []  # (steps, seconds) of this attempt's train chunks

  def restore(self, totals: dict) -> None:
    """Totals of the earlier attempts (as saved by ``totals()``)."""
    self._before.update({k: float(v) for k, v in totals.items()})

  def startup_done(self) -> None:
    self._spent["startup"] = time.time() - self._start

  def measure(self, kind: str):
    """Adds the time spent inside the block to ``kind`` ('evaluation', 'checkpointing')."""
    return timing.add_seconds(self._spent, kind)

  def add_chunk(self, steps: int, seconds: float) -> None:
    self._chunks.append((steps, seconds))

  @property
  def chunks_this_attempt(self) -> int:
    return len(self._chunks)

  def _training_and_tracing(self) -> tuple[float, float]:
    """The first chunk counts as training at the later chunks' rate; the rest is tracing."""
    if not self._chunks:
      return 0.0, 0.0
    (first_steps, first_seconds), rest = self._chunks[0], self._chunks[1:]
    rest_steps = sum(s for s, _ in rest)
    rest_seconds = sum(t for _, t in rest)
    if not rest_steps:
      return first_seconds, 0.0
    first_share = min(first_seconds, first_steps * rest_seconds / rest_steps)
    return rest_seconds + first_share, first_seconds - first_share

  def totals(self) -> dict:
    """Seconds by kind over all attempts so far."""
    training, tracing = self._training_and_tracing()
    now = dict(self._spent, wall=time.time() - self._start, training=training, tracing=tracing)
    return {k: self._before[k] + now.get(k, 0.0) for k in KINDS}

  def wall_seconds(self) -> float:
    return self._before["wall"] + time.time() - self._start
