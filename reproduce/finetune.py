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
from reproduce.core import errors

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config, e.g. reproduce/configs/finetune_mini.py.",
    lock_config=True)
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Fine-tune run directory; resumes.")
_INIT = flags.DEFINE_string("init", None, "Pre-training run dir or converted-weights dir "
                            "(default: config.init).")
_RUN_FLAGS = cli.define_training_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags with the main's own


def check_usage(config, model_dir: str | None, init: str | None) -> str:
  """The checks that need no TensorFlow; returns the init path or raises
  ``errors.UsageError``."""
  if not model_dir:
    raise errors.UsageError("--model_dir is required")
  init = init or config.get("init")
  if not init:
    raise errors.UsageError("--init is required (a pre-training run dir or converted-weights dir)")
  if not (config.get("budget_core_hours") or config.get("epochs")):
    raise errors.UsageError("set --config.epochs or --config.budget_core_hours")
  return init


def main(argv):
  cli.refuse_stray_arguments(argv)
  config = _CONFIG.value
  if config is None:
    cli.fail("--config is required (e.g. reproduce/configs/finetune_mini.py)")
  try:
    with cli.errors_as_one_line():
      init = check_usage(config, _MODEL_DIR.value, _INIT.value)
  except OSError:  # ml_collections reports a config file that failed to load on first use
    cli.fail(f"cannot load --config={config_flags.get_config_filename(flags.FLAGS['config'])}")
  cli.start_tensorflow()
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  from reproduce.finetuning import run as run_lib
  from reproduce.train import losses
  from reproduce.train import preemption
  # A diverged run exits 1, its last good checkpoint kept; a preempted one is checkpointed
  # and the next launch resumes.
  with cli.errors_as_one_line(exit_codes={losses.TrainingDiverged: 1,
                                          preemption.Preempted: preemption.EXIT_CODE}):
    run_lib.run(config, model_dir=_MODEL_DIR.value, init=init, **cli.flag_values(_RUN_FLAGS))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
