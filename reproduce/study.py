r"""The miniature study: ``python -m reproduce.study`` (the kit's main job).

  python -m reproduce.study                       # the embedded default, ~10-15 min
  python -m reproduce.study --workdir=/tmp/study --budgets_core_seconds=4,8,16,32,64

What it does, end to end, with the kit's real code paths (reproduce.miniature):
  1. loads the embedded real dataset ('digits': scikit-learn's handwritten digits,
     prepared as a tfds dataset) through reproduce.data;
  2. measures each model's training throughput on this machine (the engine's train step);
  3. for every (model, budget) turns the budget, in measured CPU core-seconds, into a plan
     (reproduce.planning) and trains it with the training engine (checkpoints,
     TensorBoard, results.json per run);
  4. fine-tunes every run with configs/finetune_mini.py at 48 px (SAM, repeated augmentation)
     for the same small number of steps (--finetune_steps; 0 skips it) and writes its
     held-out top-1, finetune_top1, into the run's results.json (the paper's Figure 1);
  5. fits the scaling laws, writes the figures to TensorBoard and checks the paper's claims
     (reproduce.analysis).

Re-running the same command resumes: finished runs and fine-tunes are reused, an interrupted
one continues from its last checkpoint, and throughput measurements are cached.
"""

from __future__ import annotations

from absl import app
from absl import flags

from reproduce.core import cli
from reproduce.miniature import grid

_WORKDIR = flags.DEFINE_string("workdir", "study_runs", "Where runs, fits and logs go.")
_NFNETS = flags.DEFINE_list("nfnet_models", list(grid.DEFAULT_NFNETS), "ConvNets of the study.")
_VITS = flags.DEFINE_list("vit_models", list(grid.DEFAULT_VITS), "ViTs of the study.")
_BUDGETS = flags.DEFINE_list(
    "budgets_core_seconds", [f"{b:g}" for b in grid.DEFAULT_BUDGETS_CORE_SECONDS],
    "Compute budgets per run, in measured CPU core-seconds (the same for both families).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Global batch size of every run.")
_BASE_LR = flags.DEFINE_float(
    "base_lr", 0.0, "Peak learning rate of every model; <= 0: the per-family flags below.")
_NFNET_BASE_LR = flags.DEFINE_float(
    "nfnet_base_lr", 0.2, "Peak LR of the NFNets (SGD + AGC); <= 0: the planner's LR rule.")
_VIT_BASE_LR = flags.DEFINE_float(
    "vit_base_lr", 0.0, "Peak LR of the ViTs (AdamW); <= 0: the ViT config's (1e-3).")
_MEASURE_STEPS = flags.DEFINE_integer("measure_steps", 4, "Timed steps per throughput measure.")
_FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps", grid.DEFAULT_FINETUNE_STEPS,
    "Fine-tuning steps of every run (configs/finetune_mini.py at 48 px, SAM: two passes a "
    "step); the same for every run. 0 skips fine-tuning.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples for the fit CIs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of data order, init and bootstrap.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir for the prepared digits.")
_STRICT = flags.DEFINE_bool("strict", False, "Exit 1 when a comparison row fails.")
_WORKERS = flags.DEFINE_integer(
    "workers", 2, "Runs trained at a time, each in its own process (graph building is "
    "single-threaded, so 2 keep 2 cores busy); 0 trains in this process.")


def _validated_flags() -> list[float]:
  """Checks the flags that need no TensorFlow; returns the budgets."""
  if _WORKERS.value < 0:
    cli.fail(f"--workers must be >= 0 (0: in this process), got {_WORKERS.value}")
  if _BATCH_SIZE.value < 1:
    cli.fail(f"--batch_size must be a positive integer, got {_BATCH_SIZE.value}")
  if _MEASURE_STEPS.value < 1:
    cli.fail(f"--measure_steps must be a positive integer, got {_MEASURE_STEPS.value}")
  if _FINETUNE_STEPS.value < 0:
    cli.fail(f"--finetune_steps must be >= 0 (0: no fine-tuning), got {_FINETUNE_STEPS.value}")
  try:
    return grid.parse_budgets(_BUDGETS.value)
  except grid.StudyError as e:
    cli.fail(cli.first_line(e))


def _base_lrs():
  """One LR for every model (--base_lr), else a {family: LR} map (None: the family's own)."""
  if _BASE_LR.value > 0:
    return _BASE_LR.value
  return {family: (flag.value if flag.value > 0 else None)
          for family, flag in (("nfnet", _NFNET_BASE_LR), ("vit", _VIT_BASE_LR))}


def _user_errors() -> tuple:
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce import data, planning  # pylint: disable=g-import-not-at-top
  from reproduce.analysis import runs  # pylint: disable=g-import-not-at-top
  from reproduce.finetuning import init  # pylint: disable=g-import-not-at-top
  from reproduce.train import rundir  # pylint: disable=g-import-not-at-top
  return (grid.StudyError, model_defs.UnknownModelError, data.DataError, planning.PlanError,
          rundir.EngineError, runs.ScalingError, init.FinetuneError)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  budgets = _validated_flags()
  cli.start_tensorflow()
  from reproduce.miniature import study  # pylint: disable=g-import-not-at-top
  try:
    result = study.run_study(
        _WORKDIR.value, _NFNETS.value, _VITS.value, budgets, _BATCH_SIZE.value,
        _base_lrs(), _MEASURE_STEPS.value,
        _BOOTSTRAP.value, _SEED.value, _DATA_DIR.value, _WORKERS.value,
        finetune_steps=_FINETUNE_STEPS.value)
  except _user_errors() as e:
    cli.fail(cli.first_line(e))
  if _STRICT.value and not result["passed"]:
    raise SystemExit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
