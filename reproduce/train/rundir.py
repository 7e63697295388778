"""The run directory: one object owns a run's files (``RunDirectory``).

Layout of ``model_dir`` (local path or gs://, all I/O through ``reproduce.core.fileio``):

  config.json      resolved config; a restart with a different one is refused
  plan.json        the planning.Plan; a restart continues this plan
  checkpoints/     tf.train.CheckpointManager (state file written last = atomic)
  tensorboard/     tf.summary events (scalars + hparams)
  results.json     written once the run has finished: its parts in ``reproduce.core.results``
  lock             the process training the run (``lock.RunLock``), while it trains

``RunDirectory`` is the only code that reads config.json and plan.json and the only code
that writes results.json (one method per part: ``write_record``, ``add_finetune``,
``add_eval``), so a newcomer changes what a run records in one place.
"""

from __future__ import annotations

import re
import types

import tensorflow as tf

from reproduce.configs import base
from reproduce.core import fileio
from reproduce.core import results as schema
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


class RunDirectory:
  """A run's directory: reads its config, plan, results and checkpoints, writes its files."""

  def __init__(self, path: str):
    self.path = path

  def _file(self, name: str) -> str:
    return fileio.join(self.path, name)

  @property
  def checkpoint_dir(self) -> str:
    return self._file(CHECKPOINT_DIR)

  @property
  def tensorboard_dir(self) -> str:
    return self._file(TENSORBOARD_DIR)

  # -- readers -----------------------------------------------------------------------------

  def is_run(self) -> bool:
    """Whether it holds a run (its config.json), finished or not."""
    return fileio.exists(self._file(CONFIG_FILE))

  def config(self) -> dict:
    return fileio.read_json(self._file(CONFIG_FILE))

  def plan(self) -> StoredPlan:
    return StoredPlan(**fileio.read_json(self._file(PLAN_FILE)))

  def results(self) -> dict | None:
    """The results.json record; None while the run is unfinished."""
    path = self._file(schema.FILE)
    return fileio.read_json(path) if fileio.exists(path) else None

  def latest_checkpoint(self) -> str | None:
    return tf.train.latest_checkpoint(self.checkpoint_dir)

  # -- writers -----------------------------------------------------------------------------

  def prepare(self, config: dict, plan, allow_config_change: bool = False):
    """Checks/writes config.json and plan.json; returns the plan the run must follow.

    A fresh directory gets both files. One with the same config resumes on its stored plan
    (so a CPU throughput re-measurement cannot change the step count mid-run). A different
    config is refused unless ``allow_config_change``, which then replaces both files.
    """
    config_path, plan_path = self._file(CONFIG_FILE), self._file(PLAN_FILE)
    try:
      fileio.makedirs(self.path)
      if fileio.exists(config_path):
        old = fileio.read_json(config_path)
        changed = _changed_keys(old, config)
        if changed and not allow_config_change:
          raise _mismatch(self.path, old, config, changed)
        if not changed and fileio.exists(plan_path):
          return self.plan()
      fileio.write_json(config_path, config)
      fileio.write_json(plan_path, plan_to_dict(plan))
      return plan
    except (tf.errors.OpError, OSError) as e:
      raise unusable(self.path, e) from None

  def write_record(self, record: dict) -> str:
    """Writes the pre-training record (``schema.RECORD_FIELDS``) as results.json; returns
    its path."""
    if tuple(record) != schema.RECORD_FIELDS:
      raise ValueError(f"a results record has the fields {schema.RECORD_FIELDS}, not "
                       f"{tuple(record)}")
    return self._write_results(record)

  def add_finetune(self, fields: dict) -> dict:
    """Adds a fine-tune's fields (``schema.FINETUNE_FIELDS``) to results.json (rewritten
    only when they change); returns the record."""
    unknown = sorted(set(fields) - set(schema.FINETUNE_FIELDS))
    if unknown:
      raise ValueError(f"{unknown} are not fine-tune fields {schema.FINETUNE_FIELDS}")
    record = self.results()
    if record is None:
      raise EngineError(f"run {self.path} has no {schema.FILE} yet: nothing to add a "
                        "fine-tune to")
    if any(record.get(key) != value for key, value in fields.items()):
      record.update(fields)
      self._write_results(record)
    return record

  def add_eval(self, entries: dict[str, dict[int, dict]], base: dict | None = None) -> dict:
    """Adds ``entries`` ({dataset: {resolution: entry}}) to results.json's eval section
    (the file made from ``base`` when absent: converted weights); returns the record."""
    record = self.results() or dict(base or {})
    section = record.setdefault(schema.EVAL_SECTION, {})
    for dataset, by_resolution in entries.items():
      for resolution, entry in by_resolution.items():
        section.setdefault(dataset, {})[str(resolution)] = entry
    self._write_results(record)
    return record

  def _write_results(self, record: dict) -> str:
    """Writes results.json atomically (``EngineError`` when it cannot: the previous file, if
    any, stays whole)."""
    path = self._file(schema.FILE)
    try:
      fileio.write_json(path, record)
    except Exception as e:  # pylint: disable=broad-except  # tf.errors.OpError or OSError
      raise unusable(self.path, e, path) from None
    return path
