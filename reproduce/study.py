r"""The miniature study: ``python -m reproduce.study`` (the kit's main job, 16-18 min on 2 cores).

  python -m reproduce.study                        # the default grid on Fashion-MNIST
  python -m reproduce.study --preset=long          # 5 sizes a family, edge rounds (~44 min)
  python -m reproduce.study --dataset=digits       # the quick option: the embedded digits
  python -m reproduce.study --hybrids              # a third arm: hybrid ConvNet-ViTs (~25 min)

What it does, end to end, with the kit's real code paths (reproduce.miniature; docs/study.md):
  1. loads Fashion-MNIST (60k train images, 2,048 held out from the official test split)
     through reproduce.data, preparing it on first use;
  2. runs one job per model in worker processes: it builds the model's train step once,
     trains a factor-sqrt(2) LR sweep at every budget but the largest (budgets planned in
     FLOPs, as reference-CPU core-seconds: the same steps on every machine), each sweep
     re-centred where the model's earlier sweeps point, trains the largest budget at the LR
     its own sweeps predict with two seeds, and fine-tunes the best run of each budget on
     the embedded digits (a fresh head, 64 steps), the paper's Figure 1;
  3. fits the scaling laws per family, predicts the largest budget from the smaller ones and
     decides the paper's claims, PASS, FAIL or UNDECIDED (reproduce.analysis); figures go to
     TensorBoard and report.md;
  4. prints where the time went: training versus every named overhead (each run's line
     shows its measured core-seconds over its planned reference ones, "xN.NN of plan").

Re-running the same command resumes: finished runs and fine-tunes are reused and an
interrupted one continues from its last checkpoint.
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
_PRESET = flags.DEFINE_enum("preset", "default", sorted(grid.PRESETS),
                            "The grid: 'default' (4 sizes a family, 32x of compute, 16-18 min on 2 "
                            "cores) or 'long' (5 sizes and edge rounds, ~44 min). Flags below "
                            "override it.")
_NFNETS = flags.DEFINE_list("nfnet_models", None,
                            "ConvNets of the study, smallest first (default: the preset's).")
_VITS = flags.DEFINE_list("vit_models", None,
                          "ViTs of the study, smallest first (default: the preset's).")
_HYBRIDS = flags.DEFINE_bool(
    "hybrids", False, "Add the third arm: the preset's hybrid ConvNet-ViT ladder (NF stem under "
    "a ViT; docs/hybrids.md), trained and fitted as the other two families.")
_HYBRID_MODELS = flags.DEFINE_list("hybrid_models", None,
                                   "Hybrids of the third arm, smallest first (implies --hybrids).")
_BUDGETS = flags.DEFINE_list(
    "budgets_core_seconds", None,
    "Compute budgets per run in reference-CPU core-seconds (1e10 training FLOPs each; the "
    "same for every family); the largest is the one the scaling laws predict (default: the "
    "preset's).")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies every budget.")
_DATASET = flags.DEFINE_string("dataset", grid.DATASET,
                               "Pre-training data: fashion_mnist, or digits (the quick option).")
_TRANSFER = flags.DEFINE_string("transfer_dataset", grid.TRANSFER_DATASET,
                                "Where the best runs are fine-tuned (Figure 1).")
_NFNET_LR = flags.DEFINE_float("nfnet_lr", grid.DEFAULT_LR_CENTRES["nfnet"],
                               "Centre of the NFNets' first LR sweep (SGD + AGC).")
_VIT_LR = flags.DEFINE_float("vit_lr", grid.DEFAULT_LR_CENTRES["vit"],
                             "Centre of the ViTs' first LR sweep (AdamW).")
_HYBRID_LR = flags.DEFINE_float("hybrid_lr", grid.DEFAULT_LR_CENTRES["hybrid"],
                                "Centre of the hybrids' first LR sweep (AdamW, the ViTs' recipe).")
_LR_POINTS = flags.DEFINE_integer("lr_points", grid.DEFAULT_LR_POINTS,
                                  "Learning rates per sweep, on a factor-sqrt(2) grid.")
_BAND = flags.DEFINE_integer("band", None, "Sizes trained at each budget, a band sliding from "
                             "the smallest sizes to the largest (default: the preset's).")
_EDGE_ROUNDS = flags.DEFINE_integer(
    "edge_rounds", None, "Rounds that train the next size of the ladder at each budget whose "
    "best size was the smallest or largest it trained, until the optimum is interior "
    "(default: the preset's; 0: none).")
_TOP_SEEDS = flags.DEFINE_integer("top_seeds", grid.TOP_SEEDS,
                                  "Seeds of every run at the largest budget.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", grid.BATCH_SIZE, "Global batch size of every run.")
_FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps", grid.DEFAULT_FINETUNE_STEPS,
    "Fine-tuning steps of the best run of each (model, budget) on --transfer_dataset (a fresh "
    "head at a quarter of the run's LR); the same for every run. 0 skips fine-tuning.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples for the fit CIs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of data order, init and bootstrap.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir for the prepared datasets.")
_STRICT = flags.DEFINE_bool("strict", False, "Exit 1 when a counted comparison row FAILs.")
_WORKERS = flags.DEFINE_integer(
    "workers", 2, "Models trained at a time, each in its own process on cores/workers cores "
    "(one core each keeps small models efficient); 0 trains in this process.")


def _validated_flags() -> list[float]:
  """Checks the flags that need no TensorFlow; returns the scaled budgets."""
  for flag, minimum in ((_WORKERS, 0), (_BATCH_SIZE, 1), (_FINETUNE_STEPS, 0),
                        (_LR_POINTS, 1), (_TOP_SEEDS, 1), (_BOOTSTRAP, 0)):
    if flag.value < minimum:
      cli.fail(f"--{flag.name} must be an integer >= {minimum}, got {flag.value}")
  if _EDGE_ROUNDS.value is not None and _EDGE_ROUNDS.value < 0:
    cli.fail(f"--edge_rounds must be an integer >= 0, got {_EDGE_ROUNDS.value}")
  if _BAND.value is not None and _BAND.value < grid.MIN_BAND:
    cli.fail(f"--band must be an integer >= {grid.MIN_BAND} (an interior optimum needs a "
             f"size on each side), got {_BAND.value}")
  for flag in (_SCALE, _NFNET_LR, _VIT_LR, _HYBRID_LR):
    if flag.value <= 0:
      cli.fail(f"--{flag.name} must be > 0, got {flag.value:g}")
  if _HYBRID_MODELS.value and flags.FLAGS["hybrids"].present and not _HYBRIDS.value:
    cli.fail("--hybrid_models adds the third arm: drop --nohybrids")
  if flags.FLAGS["hybrid_lr"].present and not (_HYBRIDS.value or _HYBRID_MODELS.value):
    cli.fail("--hybrid_lr needs the third arm: add --hybrids or --hybrid_models")
  preset = grid.PRESETS[_PRESET.value]
  values = _BUDGETS.value or [f"{b:g}" for b in preset["budgets"]]
  with cli.errors_as_one_line():
    return [b * _SCALE.value for b in grid.parse_budgets(values)]


def main(argv):
  cli.refuse_stray_arguments(argv)
  budgets = _validated_flags()
  cli.start_tensorflow()
  from reproduce.miniature import stages  # after flags: see core/cli.py
  preset = grid.PRESETS[_PRESET.value]
  hybrids = _HYBRID_MODELS.value or (preset["hybrids"] if _HYBRIDS.value else ())
  spec = stages.StudySpec(
      workdir=_WORKDIR.value, nfnets=tuple(_NFNETS.value or preset["nfnets"]),
      vits=tuple(_VITS.value or preset["vits"]), hybrids=tuple(hybrids), budgets=tuple(budgets),
      lr_centres={"nfnet": _NFNET_LR.value, "vit": _VIT_LR.value, "hybrid": _HYBRID_LR.value},
      lr_points=_LR_POINTS.value, batch_size=_BATCH_SIZE.value,
      finetune_steps=_FINETUNE_STEPS.value, bootstrap=_BOOTSTRAP.value, seed=_SEED.value,
      data_dir=_DATA_DIR.value, workers=_WORKERS.value, dataset=_DATASET.value,
      transfer_dataset=_TRANSFER.value, top_seeds=_TOP_SEEDS.value,
      band=_BAND.value or preset["band"],
      edge_rounds=preset["edge_rounds"] if _EDGE_ROUNDS.value is None else _EDGE_ROUNDS.value)
  with cli.errors_as_one_line():
    result = stages.run_study(spec, started=_STARTED)
  if _STRICT.value and not result["passed"]:
    raise SystemExit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
