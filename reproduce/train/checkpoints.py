"""Checkpoints of a run: everything needed to continue bit-exactly after a kill.

A checkpoint holds the model, the optimizer (momentum, EMA, step = ``optimizer.iterations``),
the Keras SeedGenerator states (dropout, stochastic depth: the model does not track them,
so they are added explicitly) and the run clock's seconds. The data position is the step.
``tf.train.CheckpointManager`` writes its state file after the data files, so a kill during
a save leaves the previous checkpoint as the latest (a torn ``ckpt-N`` is never restored, and
the next save at step N replaces it). A save that fails (disk full, read-only model_dir) raises
a one-line ``rundir.EngineError`` naming the checkpoint; the previous one stays the latest.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf

from reproduce.core import fileio
from reproduce.train import clock as clock_lib
from reproduce.train import rundir


def seed_states(model: keras.Model) -> list:
  """Keras SeedGenerator states of ``model`` (not tracked by tf.train.Checkpoint)."""
  return [v for v in model.non_trainable_variables if "seed_generator" in v.path]


class RunCheckpoints:
  """Saves and restores a run's state in ``directory``.

  Saves are due every ``every_steps`` steps (the manager's ``checkpoint_interval`` on the
  optimizer's step counter) or ``every_secs`` seconds after the previous save; 0 disables
  either. ``keep`` checkpoints are kept.
  """

  def __init__(self, directory: str, model: keras.Model, optimizer, *, keep: int,
               every_steps: int = 0, every_secs: float = 0.0):
    self.directory = directory
    self._seconds = {k: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=k)
                     for k in clock_lib.KINDS}
    # The last chunk's training loss: a run killed after its final checkpoint still reports
    # its final_train_loss when resumed.
    self.train_loss = tf.Variable(float("nan"), dtype=tf.float64, trainable=False)
    rng = {f"state_{i}": v for i, v in enumerate(seed_states(model))}
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                          elapsed=tf.train.Checkpoint(**self._seconds),
                                          rng=tf.train.Checkpoint(**rng),
                                          train_loss=self.train_loss)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=int(keep), step_counter=optimizer.iterations,
        checkpoint_interval=int(every_steps) or None)
    self._every_steps = int(every_steps or 0)
    self._every_secs = float(every_secs or 0.0)
    self._last_save_time = time.time()
    self.saved_step = -1

  @property
  def latest(self) -> str | None:
    return self.manager.latest_checkpoint

  def restore(self, clock: clock_lib.RunClock | None = None) -> str | None:
    """Restores the latest checkpoint, if any (and the clock's totals); returns its path."""
    path = self.manager.latest_checkpoint
    if path:
      self.checkpoint.restore(path).assert_existing_objects_matched()
      self.saved_step = int(self.checkpoint.optimizer.iterations.numpy())
      if clock is not None:
        clock.restore({k: v.numpy() for k, v in self._seconds.items()})
    return path

  def save_if_due(self, step: int, clock: clock_lib.RunClock) -> str | None:
    """Saves once ``every_secs`` have passed, or at a multiple of ``every_steps`` unless the
    manager's interval says a save is that recent (e.g. a timed one); returns the path."""
    if self._every_secs and time.time() - self._last_save_time >= self._every_secs:
      return self.save(step, clock)
    if self._every_steps and step % self._every_steps == 0:
      return self.save(step, clock, check_interval=True)
    return None

  def save(self, step: int, clock: clock_lib.RunClock, check_interval: bool = False):
    """Saves at ``step`` unless this step is saved already; returns the path (or None)."""
    if step == self.saved_step:
      return None
    for kind, seconds in clock.totals().items():
      self._seconds[kind].assign(seconds)
    try:
      path = self.manager.save(checkpoint_number=step, check_interval=check_interval)
    except (tf.errors.OpError, OSError) as e:
      raise self._save_failed(step, e) from None
    if path:
      self.saved_step, self._last_save_time = step, time.time()
    return path

  def _save_failed(self, step: int, error: BaseException) -> rundir.EngineError:
    """The one-line error of a failed save, after removing its partial files."""
    prefix = fileio.join(self.directory, f"ckpt-{step}")  # the manager's default name
    for partial in fileio.glob(f"{prefix}_temp*"):
      try:
        fileio.remove_tree(partial)
      except (tf.errors.OpError, OSError):
        pass  # a read-only directory has none
    return rundir.EngineError(
        f"cannot write checkpoint {prefix}: {rundir.write_failure(error)}; the latest "
        f"checkpoint is still {self.latest or 'none'}")
