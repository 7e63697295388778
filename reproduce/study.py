r"""The miniature study: ``python -m reproduce.study`` (the kit's main job, ~18 min on 2 cores).

  python -m reproduce.study                       # the default grid
  python -m reproduce.study --scale=4 --workers=8 # 4x longer runs on an 8-core machine

What it does, end to end, with the kit's real code paths (reproduce.miniature; docs/study.md):
  1. loads the embedded real dataset ('digits': scikit-learn's handwritten digits, prepared
     as a tfds dataset) through reproduce.data;
  2. runs one job per model in worker processes: it builds the model's train step once,
     measures its throughput with it, trains an LR sweep (3 LRs, factor 2) at every budget
     but the largest (budgets in measured CPU core-seconds, 100x apart end to end), trains
     the largest budget at the LR its own sweeps predict, and fine-tunes the best run of
     each budget (a fresh head, 64 steps), the paper's Figure 1;
  3. fits the scaling laws per family, predicts the largest budget from the smaller ones and
     checks the paper's claims (reproduce.analysis); figures go to TensorBoard and report.md;
  4. prints where the time went: training versus every named overhead.

Re-running the same command resumes: finished runs and fine-tunes are reused, an interrupted
one continues from its last checkpoint, and throughput measurements are cached.
"""

from __future__ import annotations

import time

_STARTED = time.time()  # the time breakdown counts from the command's start

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from reproduce.core import cli
from reproduce.miniature import grid

_WORKDIR = flags.DEFINE_string("workdir", "study_runs", "Where runs, fits and logs go.")
_NFNETS = flags.DEFINE_list("nfnet_models", list(grid.DEFAULT_NFNETS),
                            "ConvNets of the study, smallest first.")
_VITS = flags.DEFINE_list("vit_models", list(grid.DEFAULT_VITS), "ViTs of the study, smallest first.")
_BUDGETS = flags.DEFINE_list(
    "budgets_core_seconds", [f"{b:g}" for b in grid.DEFAULT_BUDGETS_CORE_SECONDS],
    "Compute budgets per run, in measured CPU core-seconds (the same for both families); "
    "the largest is the one the scaling laws predict.")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies every budget (a longer study: e.g. 4 "
                            "with --workers=8 on 8 cores takes about as long as the default).")
_NFNET_LR = flags.DEFINE_float("nfnet_lr", grid.DEFAULT_LR_CENTRES["nfnet"],
                               "Centre of the NFNets' LR sweep (SGD + AGC).")
_VIT_LR = flags.DEFINE_float("vit_lr", grid.DEFAULT_LR_CENTRES["vit"],
                             "Centre of the ViTs' LR sweep (AdamW).")
_LR_POINTS = flags.DEFINE_integer("lr_points", grid.DEFAULT_LR_POINTS,
                                  "Learning rates per sweep, on a factor-2 grid.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", grid.BATCH_SIZE, "Global batch size of every run.")
_MEASURE_STEPS = flags.DEFINE_integer("measure_steps", 2,
                                      "Timed chunks (of 16 steps) per throughput measurement.")
_FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps", grid.DEFAULT_FINETUNE_STEPS,
    "Fine-tuning steps of the best run of each (model, budget) (a fresh head at a quarter of "
    "the run's LR); the same for every run. 0 skips fine-tuning.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples for the fit CIs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of data order, init and bootstrap.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir for the prepared digits.")
_STRICT = flags.DEFINE_bool("strict", False, "Exit 1 when a comparison row fails.")
_WORKERS = flags.DEFINE_integer(
    "workers", 2, "Models trained at a time, each in its own process on cores/workers cores "
    "(one core each keeps small models efficient); 0 trains in this process.")


def _validated_flags() -> list[float]:
  """Checks the flags that need no TensorFlow; returns the scaled budgets."""
  for flag, minimum in ((_WORKERS, 0), (_BATCH_SIZE, 1), (_MEASURE_STEPS, 1),
                        (_FINETUNE_STEPS, 0), (_LR_POINTS, 1), (_BOOTSTRAP, 0)):
    if flag.value < minimum:
      cli.fail(f"--{flag.name} must be an integer >= {minimum}, got {flag.value}")
  for flag in (_SCALE, _NFNET_LR, _VIT_LR):
    if flag.value <= 0:
      cli.fail(f"--{flag.name} must be > 0, got {flag.value:g}")
  try:
    return [b * _SCALE.value for b in grid.parse_budgets(_BUDGETS.value)]
  except grid.StudyError as e:
    cli.fail(cli.first_line(e))


def _user_errors() -> tuple:
  import model_defs
  from reproduce import data, planning
  from reproduce.analysis import runs
  from reproduce.finetuning import init
  from reproduce.train import rundir
  return (grid.StudyError, model_defs.UnknownModelError, data.DataError, planning.PlanError,
          rundir.EngineError, runs.ScalingError, init.FinetuneError)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  budgets = _validated_flags()
  cli.start_tensorflow()
  from reproduce.miniature import study
  spec = study.StudySpec(
      workdir=_WORKDIR.value, nfnets=tuple(_NFNETS.value), vits=tuple(_VITS.value),
      budgets=tuple(budgets), lr_centres={"nfnet": _NFNET_LR.value, "vit": _VIT_LR.value},
      lr_points=_LR_POINTS.value, batch_size=_BATCH_SIZE.value,
      measure_steps=_MEASURE_STEPS.value, finetune_steps=_FINETUNE_STEPS.value,
      bootstrap=_BOOTSTRAP.value, seed=_SEED.value, data_dir=_DATA_DIR.value,
      workers=_WORKERS.value)
  try:
    result = study.run_study(spec, started=_STARTED)
  except _user_errors() as e:
    cli.fail(cli.first_line(e))
  if _STRICT.value and not result["passed"]:
    raise SystemExit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
