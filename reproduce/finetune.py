r"""Fine-tuning: ``python -m reproduce.finetune``.

  python -m reproduce.finetune --config=reproduce/configs/finetune_imagenet.py \
      --model_dir=DIR --init=PRETRAIN_DIR_OR_CONVERTED_DIR \
      [--strategy=auto|tpu|mirrored|one_device] [--tpu=NAME|local] [--data_dir=DIR] \
      [--manual_dir=DIR] [--allow_config_change]

--init (or config.init) is a pre-training run directory (its latest checkpoint, EMA weights
when kept) or a converted-weights directory (reproduce.convert). The model keeps every
weight but its classifier, which is new for the target classes and initialised by
config.head_init ('model', the default: the builder's init, N(0, 0.01) for NFNets, zeros
for ViTs; 'zeros': a zero classifier), at the config's resolution. Pixels are normalised
to the --init's input range (its model.json or run config). SAM, repeated augmentation and
the results fields: docs/finetune.md. Re-running the same command resumes from --model_dir's
own checkpoint. User errors print one line and exit 2; a diverged run prints one line and
exits 1.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from reproduce.core import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config, e.g. reproduce/configs/finetune_mini.py.",
    lock_config=True)
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Fine-tune run directory; resumes.")
_INIT = flags.DEFINE_string("init", None, "Pre-training run dir or converted-weights dir "
                            "(default: config.init).")
_RUN_FLAGS = cli.define_training_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags with the main's own


def check_usage(config, model_dir: str | None, init: str | None) -> str:
  """The checks that need no TensorFlow; returns the init path or raises ``ValueError``."""
  if not model_dir:
    raise ValueError("--model_dir is required")
  init = init or config.get("init")
  if not init:
    raise ValueError("--init is required (a pre-training run dir or converted-weights dir)")
  if not (config.get("budget_core_hours") or config.get("epochs")):
    raise ValueError("set --config.epochs or --config.budget_core_hours")
  return init


def user_errors() -> tuple:
  """The exception types of bad input (one-line messages, exit 2)."""
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce import data  # pylint: disable=g-import-not-at-top
  from reproduce import planning  # pylint: disable=g-import-not-at-top
  from reproduce.evaluation import specs  # pylint: disable=g-import-not-at-top
  from reproduce.finetuning import init  # pylint: disable=g-import-not-at-top
  from reproduce.train import rundir  # pylint: disable=g-import-not-at-top
  from reproduce.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  return (init.FinetuneError, specs.EvaluationError, model_defs.UnknownModelError,
          data.DataError, planning.PlanError, strategy_lib.StrategyError, rundir.EngineError)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if config is None:
    cli.fail("--config is required (e.g. reproduce/configs/finetune_mini.py)")
  try:
    init = check_usage(config, _MODEL_DIR.value, _INIT.value)
  except OSError:  # ml_collections reports a config file that failed to load on first use
    cli.fail(f"cannot load --config={config_flags.get_config_filename(flags.FLAGS['config'])}")
  except ValueError as e:
    cli.fail(cli.first_line(e))
  cli.start_tensorflow()
  from reproduce.finetuning import run as run_lib  # pylint: disable=g-import-not-at-top
  from reproduce.train import losses  # pylint: disable=g-import-not-at-top
  from reproduce.train import preemption  # pylint: disable=g-import-not-at-top
  try:
    run_lib.run(config, _MODEL_DIR.value, init, *(_RUN_FLAGS[k].value for k in _RUN_FLAGS))
  except losses.TrainingDiverged as e:  # a diverged run: exit 1, its last good checkpoint kept
    cli.fail(cli.first_line(e), exit_code=1)
  except preemption.Preempted as e:  # checkpointed; the next launch resumes
    cli.fail(cli.first_line(e), exit_code=preemption.EXIT_CODE)
  except user_errors() as e:
    cli.fail(cli.first_line(e))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
