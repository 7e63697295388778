r"""Budgeted pre-training: ``python -m reproduce.pretrain``.

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py \
      --model_dir=/tmp/runs/mini_f0 [--config.model=nfnet_mini_f1] \
      [--config.budget_core_hours=0.01 | --config.epochs=2] \
      [--strategy=auto|tpu|mirrored|one_device] [--tpu=NAME|local] [--data_dir=DIR] \
      [--manual_dir=DIR] [--allow_config_change]

Builds the plan (reproduce.budget) from the config's core-hour budget or epoch
count, creates the strategy, and runs reproduce.engine.train. Re-running the
same command resumes from the latest checkpoint in --model_dir. User errors
print one line and exit 2; a diverged run prints one line and exits 1.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter out of errors

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. reproduce/configs/pretrain_mini.py.",
    lock_config=True)
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Run directory (local or gs://); resumes.")
_STRATEGY = flags.DEFINE_enum("strategy", "auto", ["auto", "tpu", "mirrored", "one_device"],
                              "Distribution strategy.")
_TPU = flags.DEFINE_string("tpu", None, "TPU name, or 'local' on a TPU VM (also TPU_NAME).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir / dataset root.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "tfds manual_dir (ImageNet tars).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume --model_dir even if its config.json differs.")


class UsageError(ValueError):
  """A bad flag or config value; one line."""


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  if isinstance(error, KeyError) and text.startswith(("'", '"')):
    text = text[1:-1]
  lines = text.splitlines()
  return lines[0] if lines else type(error).__name__


def run(config, model_dir: str, strategy_kind: str = "auto", tpu: str | None = None,
        data_dir: str | None = None, manual_dir: str | None = None,
        allow_config_change: bool = False) -> dict:
  """Everything ``main`` does, callable from Python; raises the library errors."""
  import model_defs
  from reproduce import data, planning
  from reproduce.train import engine
  from reproduce.train import strategy as strategy_lib
  if not model_dir:
    raise UsageError("--model_dir is required")
  model_defs.get_spec(config.model)  # unknown model: fail before any heavy work
  strategy = strategy_lib.make_strategy(strategy_kind, tpu=tpu)
  source = data.load_source(config.dataset, data_dir=data_dir, manual_dir=manual_dir,
                            heldout_size=config.get("heldout_size"), seed=int(config.seed))
  if not (config.get("budget_core_hours") or config.get("epochs")):
    raise UsageError("set --config.budget_core_hours or --config.epochs")
  plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                   num_classes=source.num_classes,
                                   num_replicas=strategy.num_replicas_in_sync)
  return engine.train(config, plan, model_dir, strategy, allow_config_change=allow_config_change,
                      data_dir=data_dir, manual_dir=manual_dir, source=source)


def _user_errors() -> tuple:
  import model_defs
  from reproduce import data, planning
  from reproduce.train import engine
  from reproduce.train import strategy as strategy_lib
  return (UsageError, model_defs.UnknownModelError, data.DataError, planning.PlanError,
          strategy_lib.StrategyError, engine.EngineError)


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  config = _CONFIG.value
  if config is None:
    print("error: --config is required (e.g. reproduce/configs/pretrain_mini.py)",
          file=sys.stderr)
    sys.exit(2)
  user_errors = _user_errors()
  from reproduce.train import engine
  try:
    run(config, _MODEL_DIR.value, _STRATEGY.value, _TPU.value, _DATA_DIR.value,
        _MANUAL_DIR.value, _ALLOW_CONFIG_CHANGE.value)
  except user_errors as e:
    print(f"error: {_first_line(e)}", file=sys.stderr)
    sys.exit(2)
  except engine.TrainingDiverged as e:
    print(f"error: {_first_line(e)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
