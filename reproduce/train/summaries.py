"""What a run reports while it trains: TensorBoard scalars and hparams, and progress lines.

Tags (``model_dir/tensorboard``): ``train/loss``, ``train/learning_rate``,
``train/grad_norm``, ``train/agc_clip_fraction``, ``train/images_per_second``,
``train/core_hours``; ``heldout/loss``, ``heldout/top1``; ``heldout_vs_core_hours/loss``
(x = micro core hours); ``budget/warning`` (text, when training/planned core hours leave
[0.8, 1.25]); the hparams plugin gets the flat config plus plan values.
"""

from __future__ import annotations

import contextlib
import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from reproduce.core import formatting
from reproduce.train import rundir

TRAIN_TAGS = ("loss", "learning_rate", "grad_norm", "agc_clip_fraction", "images_per_second",
              "core_hours")


def hparams(config: dict, plan) -> dict:
  """The scalar config values plus the plan's steps/epochs/base_lr/core_hours/warmup."""
  values = {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))}
  for key in ("steps", "epochs", "base_lr", "core_hours", "warmup_steps"):
    value = getattr(plan, key, None)
    if isinstance(value, (int, float)):
      values[f"plan_{key}"] = value
  return values


class Summaries:
  """The TensorBoard writer of one run directory."""

  def __init__(self, logdir: str):
    self.logdir = logdir
    self.writer = tf.summary.create_file_writer(logdir)

  @contextlib.contextmanager
  def _writing(self):
    """The writer as default (flushed when the block ends); a write that fails (disk full,
    read-only) raises a one-line ``rundir.EngineError`` naming the directory."""
    try:
      with self.writer.as_default():
        yield
    except tf.errors.OpError as e:
      raise rundir.unusable(os.path.dirname(self.logdir.rstrip("/")), e, self.logdir) from None

  def write_hparams(self, config: dict, plan, trial_id: str) -> None:
    """The hparams plugin's session for this run (once, when the run starts fresh)."""
    values = hparams(config, plan)
    with self._writing():
      hp.hparams_config(hparams=[hp.HParam(k) for k in values],
                        metrics=[hp.Metric("heldout/loss"), hp.Metric("heldout/top1")])
      hp.hparams(values, trial_id=trial_id)

  def write_train(self, step: int, logs: dict) -> None:
    with self._writing():
      for tag in TRAIN_TAGS:
        tf.summary.scalar(f"train/{tag}", logs[tag], step=step)

  def write_core_hours(self, step: int, core_hours: float) -> None:
    with self._writing():
      tf.summary.scalar("train/core_hours", core_hours, step=step)

  def write_eval(self, step: int, metrics: dict, core_hours: float) -> None:
    with self._writing():
      tf.summary.scalar("heldout/loss", metrics["loss"], step=step)
      tf.summary.scalar("heldout/top1", metrics["top1"], step=step)
      # The same curve against compute (micro core hours as the integer x-axis).
      tf.summary.scalar("heldout_vs_core_hours/loss", metrics["loss"],
                        step=int(round(core_hours * 1e6)))

  def write_budget_warning(self, step: int, text: str) -> None:
    """The budget check's warning as TensorBoard text (tag ``budget/warning``)."""
    with self._writing():
      tf.summary.text("budget/warning", text, step=step)

  def flush(self) -> None:
    with self._writing():
      pass

  def close(self) -> None:
    """Flushes and releases the writer (a process trains many runs: the study's workers)."""
    self.writer.close()


def trial_id(model_dir: str) -> str:
  return os.path.basename(model_dir.rstrip("/"))


def progress_line(step: int, total_steps: int, logs: dict, batch_size: int) -> str:
  """``step 20/90 loss 2.1 lr 0.004 grad_norm 1.2 clip 0.05 310.2 img/s core_h 0.001 ETA``."""
  eta = (total_steps - step) * batch_size / max(logs["images_per_second"], 1e-9)
  return (f"step {step}/{total_steps} loss {logs['loss']:.4f} lr {logs['learning_rate']:.4g} "
          f"grad_norm {logs['grad_norm']:.3g} clip {logs['agc_clip_fraction']:.3f} "
          f"{logs['images_per_second']:.1f} img/s core_h {logs['core_hours']:.4g} "
          f"ETA {formatting.duration(eta)}")


def eval_line(step: int, total_steps: int, metrics: dict) -> str:
  return (f"step {step}/{total_steps} heldout loss {metrics['loss']:.4f} "
          f"top1 {metrics['top1']:.4f}")
