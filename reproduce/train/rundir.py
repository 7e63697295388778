"""The run directory: its layout, the resolved config and the plan a run follows.

Layout of ``model_dir`` (local path or gs://, all I/O through ``reproduce.core.fileio``):

  config.json      resolved config; a restart with a different one is refused
  plan.json        the planning.Plan; a restart continues this plan
  checkpoints/     tf.train.CheckpointManager (state file written last = atomic)
  tensorboard/     tf.summary events (scalars + hparams)
  results.json     written once the run has finished (reproduce.core.results)
  lock             the process training the run (``lock.RunLock``), while it trains
"""

from __future__ import annotations

import re
import types

import tensorflow as tf

from reproduce.configs import base
from reproduce.core import fileio
from reproduce.core.errors import UserError

CONFIG_FILE = "config.json"
PLAN_FILE = "plan.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


class EngineError(UserError, RuntimeError):
  """A user-facing problem with the run (bad model_dir, config mismatch); one line."""


class ConfigMismatchError(EngineError):
  """model_dir holds a run with a different config."""


def write_failure(error: BaseException) -> str:
  """Why a write failed, in a few words ("Permission denied", "File too large", ...)."""
  if getattr(error, "strerror", None):
    return error.strerror
  message = getattr(error, "message", None) or str(error)
  message = re.sub(r"\s*\[Op:\w+\]\s*$", "", message.strip().splitlines()[0])
  return message.rsplit("; ", 1)[-1]  # TensorFlow's file errors read "PATH; REASON"


def unusable(model_dir: str, error: BaseException, what: str = "") -> EngineError:
  """The one-line error of a model_dir that cannot be used (``what``: the file not written)."""
  if what:
    return EngineError(f"cannot use model_dir {model_dir}: cannot write {what}: "
                       f"{write_failure(error)}")
  return EngineError(f"cannot use model_dir {model_dir}: {str(error).splitlines()[0]}")


class StoredPlan(types.SimpleNamespace):
  """A plan read back from plan.json (attribute access plus ``to_dict``)."""

  def to_dict(self) -> dict:
    return dict(vars(self))


def config_to_dict(config) -> dict:
  """Plain JSON dict of a ConfigDict / dict / namespace; keys it lacks come from configs/base."""
  if hasattr(config, "to_dict"):
    raw = config.to_dict()
  elif isinstance(config, dict):
    raw = dict(config)
  else:
    raw = dict(vars(config))
  merged = base.get_config().to_dict()
  merged.update(raw)
  return fileio.to_jsonable(merged)


def plan_to_dict(plan) -> dict:
  return fileio.to_jsonable(plan.to_dict())


def _changed_keys(old: dict, new: dict) -> list[str]:
  """Keys whose values differ; a key the stored config lacks (added to configs/base.py since
  the run started) counts as its default."""
  defaults = config_to_dict({})
  keys = sorted(set(old) | set(new))
  return [k for k in keys
          if old.get(k, defaults.get(k, "<unset>")) != new.get(k, "<unset>")]


def _mismatch(model_dir: str, old: dict, new: dict, changed: list[str]) -> ConfigMismatchError:
  shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
  more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
  return ConfigMismatchError(
      f"model_dir {model_dir} holds a run with a different config ({shown}{more}); "
      "use a new --model_dir or pass --allow_config_change")


def prepare(model_dir: str, config: dict, plan, allow_config_change: bool = False):
  """Checks/writes config.json and plan.json; returns the plan the run must follow.

  A fresh model_dir gets both files. A model_dir with the same config resumes on
  its stored plan (so a CPU throughput re-measurement cannot change the step
  count mid-run). A different config is refused unless ``allow_config_change``,
  which then replaces both files with the new ones.
  """
  config_path = fileio.join(model_dir, CONFIG_FILE)
  plan_path = fileio.join(model_dir, PLAN_FILE)
  try:
    fileio.makedirs(model_dir)
    if fileio.exists(config_path):
      old = fileio.read_json(config_path)
      changed = _changed_keys(old, config)
      if changed and not allow_config_change:
        raise _mismatch(model_dir, old, config, changed)
      if not changed and fileio.exists(plan_path):
        return StoredPlan(**fileio.read_json(plan_path))
    fileio.write_json(config_path, config)
    fileio.write_json(plan_path, plan_to_dict(plan))
    return plan
  except (tf.errors.OpError, OSError) as e:
    raise unusable(model_dir, e) from None
