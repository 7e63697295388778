r"""Budgeted pre-training: ``python -m reproduce.pretrain``.

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py \
      --model_dir=/tmp/runs/mini_f0 [--config.model=nfnet_mini_f1] \
      [--config.budget_core_hours=0.01 | --config.epochs=2] \
      [--strategy=auto|tpu|mirrored|one_device] [--tpu=NAME|local] [--data_dir=DIR] \
      [--manual_dir=DIR] [--allow_config_change]

Builds the plan (reproduce.planning) from the config's core-hour budget or epoch
count, creates the strategy, and runs reproduce.train.loop.train. On hardware with no
calibrated MFU (cpu, GPUs) the plan rests on the engine's own train step, measured first
and cached (reproduce.train.budgeting; docs/budget.md). Re-running the
same command resumes from the latest checkpoint in --model_dir. User errors
print one line and exit 2; a diverged run prints one line and exits 1.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from reproduce.core import cli
from reproduce.core import errors

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. reproduce/configs/pretrain_mini.py.",
    lock_config=True)
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Run directory (local or gs://); resumes.")
_RUN_FLAGS = cli.define_training_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags with the main's own


def check_usage(config, model_dir: str | None) -> None:
  """The checks that need no TensorFlow; raises ``errors.UsageError``."""
  if not model_dir:
    raise errors.UsageError("--model_dir is required")
  if not (config.get("budget_core_hours") or config.get("epochs")):
    raise errors.UsageError("set --config.budget_core_hours or --config.epochs")


def run(config, model_dir: str, strategy_kind: str = "auto", tpu: str | None = None,
        data_dir: str | None = None, manual_dir: str | None = None,
        allow_config_change: bool = False) -> dict:
  """Everything ``main`` does, callable from Python; raises the library errors."""
  check_usage(config, model_dir)
  cli.import_tensorflow()
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  import model_defs
  from reproduce import data
  from reproduce.train import budgeting
  from reproduce.train import inputs
  from reproduce.train import lock
  from reproduce.train import loop
  from reproduce.train import strategy as strategy_lib
  model_defs.get_spec(config.model)  # unknown model: fail before any heavy work
  with lock.RunLock(model_dir):  # a model_dir in use: refused before the data and the plan
    strategy = strategy_lib.make_strategy(strategy_kind, tpu=tpu)
    source = inputs.open_source(data, config, data_dir, manual_dir)
    plan = budgeting.plan_with_measured_throughput(config, source, strategy)
    print(budgeting.plan_line(plan), flush=True)
    return loop.train(config, plan, model_dir, strategy,
                      allow_config_change=allow_config_change, data_dir=data_dir,
                      manual_dir=manual_dir, source=source)


def _checked_config():
  """The parsed --config, after the checks that need no TensorFlow (else one line, exit 2)."""
  config = _CONFIG.value
  if config is None:
    cli.fail("--config is required (e.g. reproduce/configs/pretrain_mini.py)")
  try:
    with cli.errors_as_one_line():
      check_usage(config, _MODEL_DIR.value)
  except OSError:  # ml_collections reports a config file that failed to load on first use
    cli.fail(f"cannot load --config={config_flags.get_config_filename(flags.FLAGS['config'])}")
  return config


def main(argv):
  cli.refuse_stray_arguments(argv)
  config = _checked_config()
  cli.start_tensorflow()
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  from reproduce.train import losses
  from reproduce.train import preemption
  # A diverged run exits 1; a preempted one is checkpointed and the next launch resumes.
  with cli.errors_as_one_line(exit_codes={losses.TrainingDiverged: 1,
                                          preemption.Preempted: preemption.EXIT_CODE}):
    run(config, model_dir=_MODEL_DIR.value, **cli.flag_values(_RUN_FLAGS))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
