"""The study's grid: data, sizes, budgets, learning rates, seeds, and each run's config and plan.

docs/study.md says why the grid is what it is. In short: Fashion-MNIST (every run under two
epochs, as in the paper); four compute-matched sizes per family, each trained at the budgets
where it can be compute-optimal (a band of three sizes per budget, so the optimum can be
interior); six budgets spanning 32x, planned in FLOPs (reference-CPU core-seconds, a pure
function of the analytic counts, never of a measured speed); at every budget but the largest
a factor-sqrt(2) LR sweep re-centred from the model's own previous sweep; at the largest
budget each size trained at the LR its sweeps predict, with two seeds, so that budget tests
the scaling laws' prediction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from reproduce import planning
from reproduce.configs import pretrain_mini
from reproduce.configs import pretrain_mini_vit
from reproduce.core.errors import UserError
from reproduce.planning.lr import MINI_LR

DATASET = "fashion_mnist"
# The transfer task of Figure 1: the pre-trained models fine-tuned on another real dataset.
TRANSFER_DATASET = "digits"
# Compute-matched pairs (forward MACs per image at 32 px, 10 classes): 0.32M / 0.37M,
# 0.58M / 0.66M, 0.94M / 1.03M, 1.96M / 1.99M; the long preset adds 0.17M / 0.15M below. Small,
# as the pilots found the optimum at these budgets at the smallest size of every band of
# larger ladders, and the default's runs at the smallest of its bands (docs/study.md).
DEFAULT_NFNETS = ("nfnet_mini_f0w25", "nfnet_mini_f0w38", "nfnet_mini_f0w50",
                  "nfnet_mini_f0w75")
DEFAULT_VITS = ("vit_mini_pico", "vit_mini_nano", "vit_mini_mu", "vit_mini_xs")
# The third arm (``--hybrids``, docs/hybrids.md): each rung the NF stem of the matching mini
# F0 under the matching mini ViT, 0.37M / 0.61M / 0.91M / 2.08M MACs, matched to both ladders
# within 15%.
DEFAULT_HYBRIDS = ("hybrid_mini_pico", "hybrid_mini_nano", "hybrid_mini_mu", "hybrid_mini_xs")
# The study's families in the order they are listed, trained and reported.
FAMILIES = ("nfnet", "vit", "hybrid")
# Budgets in reference-CPU core-seconds (1e10 training FLOPs each): 32x in steps of 2.
DEFAULT_BUDGETS_CORE_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# ``--preset=long``: five sizes a family, a smaller one below the default's (the default's
# best NFNet was the smallest of its band at four of six budgets), the default's budgets, and
# edge rounds (``edges``): where a budget's best size is the edge of its band, the next size
# is trained there, until every optimum is interior or the ladder ends (docs/study.md, "The
# long preset, measured": the sliding band alone left six of seven NFNet budgets at an edge).
PRESETS = {
    "default": dict(nfnets=DEFAULT_NFNETS, vits=DEFAULT_VITS, hybrids=DEFAULT_HYBRIDS,
                    budgets=DEFAULT_BUDGETS_CORE_SECONDS, band=3, edge_rounds=0),
    "long": dict(nfnets=("nfnet_mini_f0w12",) + DEFAULT_NFNETS,
                 vits=("vit_mini_femto",) + DEFAULT_VITS,
                 hybrids=DEFAULT_HYBRIDS,
                 budgets=DEFAULT_BUDGETS_CORE_SECONDS, band=3, edge_rounds=3),
}
# Sizes a budget trains: the ``band`` sizes around where its optimum is expected (at least 3,
# so that it can be interior).
BAND = PRESETS["default"]["band"]
MIN_BAND = 3
# The centre of each family's first LR sweep (its smallest budget): the mini families' LR
# (``planning.MINI_LR``, measured by earlier studies); later sweeps re-centre.
DEFAULT_LR_CENTRES = dict(MINI_LR)
DEFAULT_LR_POINTS = 3
LR_FACTOR = math.sqrt(2.0)
# The slopes of log optimal LR vs log epochs that re-centre a sweep (``predicted_lr``).
LR_SLOPE_RANGE = (-0.5, 0.25)
TOP_SEEDS = 2
HARDWARE = "cpu_ref"
RESOLUTION = 32
BATCH_SIZE = 32
STEPS_PER_EXECUTION = 32
# Every fine-tune: the best run of a (model, budget) from its final weights with a fresh head
# on TRANSFER_DATASET, 64 steps (about 1.4 epochs of digits) at a quarter of the run's LR,
# through the model's pre-training recipe and resolution (docs/study.md says why).
DEFAULT_FINETUNE_STEPS = 64
FINETUNE_LR_FRACTION = 0.25


class StudyError(UserError, ValueError):
  """A bad flag value; one line naming the flag."""


def parse_budgets(values) -> list[float]:
  """Sorted unique positive budgets in core-seconds (``--budgets_core_seconds``)."""
  try:
    budgets = sorted({float(v) for v in values})
  except ValueError:
    raise StudyError(f"--budgets_core_seconds must be numbers, got {','.join(values)}") from None
  if not budgets or budgets[0] <= 0:
    raise StudyError("--budgets_core_seconds must be positive numbers")
  return budgets


def lr_sweep(centre: float, points: int) -> tuple[float, ...]:
  """``points`` learning rates on a factor-sqrt(2) grid around ``centre`` (ascending)."""
  low = -((points - 1) // 2)
  return tuple(float(centre) * LR_FACTOR ** k for k in range(low, low + points))


def predicted_lr(sweeps: Sequence[dict], epochs: float) -> float:
  """The optimal LR at ``epochs`` from one model's sweeps (``analysis.frontier.optimal_lr``
  records): the line through log refined-optimal LR vs log epochs, its slope clipped to
  ``LR_SLOPE_RANGE`` (two sweeps of a few dozen steps can suggest any slope; the paper's
  Figure 3 has -0.2 to -0.4), kept within one grid step of the LRs tried (4 significant
  digits). One sweep gives its own optimum."""
  x = np.log([s["epochs"] for s in sweeps])
  y = np.log([s["refined_lr"] for s in sweeps])
  slope = 0.0
  if len(np.unique(x)) >= 2:
    slope = float(np.clip(np.polyfit(x, y, 1)[0], *LR_SLOPE_RANGE))
  log_lr = float(np.mean(y) + slope * (math.log(epochs) - np.mean(x)))
  tried = [lr for s in sweeps for lr in s["lrs"]]
  lr = float(np.clip(math.exp(log_lr), min(tried) / LR_FACTOR, max(tried) * LR_FACTOR))
  return float(f"{lr:.4g}")


def size_budgets(rank: int, sizes: int, budgets: Sequence[float],
                 band: int = BAND) -> list[float]:
  """The budgets the ``rank``-th smallest of ``sizes`` models trains at: a band of ``band``
  consecutive sizes slides from the smallest sizes (at the smallest budgets) to the largest
  (at the largest budgets), so every budget has ``band`` sizes and no compute goes into a
  size that could not be optimal there (the largest at the smallest budget)."""
  budgets = sorted(budgets)
  if sizes <= band:
    return budgets
  own = []
  for index, budget in enumerate(budgets):
    first = round(index * (sizes - band) / max(len(budgets) - 1, 1))
    if first <= rank < first + band:
      own.append(budget)
  return own


@dataclasses.dataclass(frozen=True)
class ModelGrid:
  """One model's share of the study: its sweep budgets (each at ``lr_points`` LRs from
  ``lr_centre``, re-centred per budget) and, when it trains at the study's largest budget,
  that budget (``top_seeds`` runs at the predicted LR). ``prior_runs``: the model's runs of
  earlier rounds (``edges``), read to centre its sweeps, neither retrained nor fine-tuned."""
  model: str
  family: str
  sweep_budgets: tuple[float, ...]
  lr_centre: float
  lr_points: int
  top_budget: float | None
  top_seeds: int = TOP_SEEDS
  prior_runs: tuple[str, ...] = ()

  def trained_budgets(self) -> tuple[float, ...]:
    """Every budget the model trains at: its sweeps' and the largest."""
    return self.sweep_budgets + ((self.top_budget,) if self.top_budget is not None else ())

  def planned_core_seconds(self) -> float:
    return (sum(self.sweep_budgets) * self.lr_points
            + (self.top_budget or 0.0) * self.top_seeds)

  def planned_runs(self) -> int:
    return len(self.sweep_budgets) * self.lr_points + (self.top_budget is not None) * self.top_seeds


def make_grid(nfnets: Sequence[str], vits: Sequence[str], budgets: Sequence[float],
              lr_centres: Mapping[str, float], lr_points: int,
              top_seeds: int = TOP_SEEDS, hybrids: Sequence[str] = (),
              band: int = BAND) -> list[ModelGrid]:
  """Every model's ``ModelGrid``, each family's models in the order given (small to large);
  ``hybrids`` is the optional third arm; ``band`` sizes a budget (``size_budgets``)."""
  budgets = sorted(budgets)
  grids = []
  for family, models in zip(FAMILIES, (nfnets, vits, hybrids)):
    for rank, model in enumerate(models):
      own = size_budgets(rank, len(models), budgets, band)
      grids.append(model_grid(model, family, own, budgets, lr_centres[family], lr_points,
                              top_seeds))
  return grids


def model_grid(model: str, family: str, own: Sequence[float], budgets: Sequence[float],
               lr_centre: float, lr_points: int, top_seeds: int,
               prior_runs: Sequence[str] = ()) -> ModelGrid:
  """The ``ModelGrid`` of ``model`` training at its ``own`` budgets of the study's
  ``budgets``: the largest of those (when there are two or more) at the predicted LR with
  every seed, the others swept."""
  top = max(budgets) if len(budgets) > 1 else None
  return ModelGrid(model, family, tuple(b for b in own if b != top), float(lr_centre),
                   int(lr_points), top if top in own else None, int(top_seeds),
                   tuple(prior_runs))


def run_name(model: str, budget_core_seconds: float, lr: float, seed_offset: int = 0) -> str:
  seed = f"__seed{seed_offset}" if seed_offset else ""
  return f"{model}__{budget_core_seconds:g}cs__lr{lr:.4g}{seed}"


def family_config(model: str):
  """The config of ``model``'s family: pretrain_mini (NFNets: SGD + AGC) or
  pretrain_mini_vit (ViTs, and the hybrids: AdamW). A hybrid is mostly its transformer (the
  mini NF stem is a fifth to a third of its MACs), and its sources trained theirs on their
  ViT's recipe (Dosovitskiy et al. Section 4.1; Xiao et al. Section 4, AdamW), so the hybrids
  use the ViTs' (docs/hybrids.md)."""
  family = planning.model_spec(model).family
  return (pretrain_mini if family == "nfnet" else pretrain_mini_vit).get_config()


def study_config(model: str, budget_core_seconds: float, lr: float, seed: int,
                 batch_size: int = BATCH_SIZE, dataset: str = DATASET, data_seed: int = 0):
  """The config of one run of the study: its family's recipe (``family_config``), planned
  in reference-CPU core-seconds (FLOPs), without label smoothing."""
  config = family_config(model)
  config.model = model
  config.dataset = dataset
  config.resolution = RESOLUTION
  config.hardware = HARDWARE
  config.budget_core_hours = budget_core_seconds / 3600.0
  config.batch_size = int(batch_size)
  config.base_lr = float(lr)
  config.seed = int(seed)
  # A replicate at the largest budget: another data order and augmentation through the same
  # traced program (so the same initial weights; docs/study.md).
  config.data_seed = int(seed) + int(data_seed)
  # Smoothed targets put a floor under the held-out NLL (-ln 0.91 at 100% accuracy) that a
  # power law in compute has no term for (docs/study.md).
  config.label_smoothing = 0.0
  config.log_every_steps = 10 ** 9  # the study prints its own progress line per run
  _study_execution(config)
  return config


def _study_execution(config) -> None:
  """Execution settings of the study's runs (pre-training and fine-tuning alike)."""
  # 32 steps a host round trip: the host's per-chunk work (summaries, checks) cost a ViT run
  # of 4-step chunks a quarter of its wall time. The held-out set in 4 batches of 512.
  config.steps_per_execution = STEPS_PER_EXECUTION
  config.eval_batch_size = 512
  # XLA for every pre-training program, the NFNets' too: their study sizes are narrow, so
  # per-op costs dominate a step and XLA's fusion halves it (measured on 2 cores: the 50%-
  # width mini F0 2.0x faster, the mini F0 1.4x; docs/study.md), which pays for its compile.
  config.jit_compile = True
  # Runs of seconds: a checkpoint a minute bounds what a kill loses; one kept is enough.
  config.checkpoint_every_steps = 0
  config.keep_checkpoints = 1


def plan_run(model: str, budget: float, lr: float, seed: int, source,
             batch_size: int = BATCH_SIZE, dataset: str = DATASET, replicate: int = 0):
  """(config, plan) of one run (``replicate``: its data seed's offset from ``seed``);
  ``planning.PlanError`` when the budget buys no step."""
  config = study_config(model, budget, lr, seed, batch_size, dataset, replicate)
  plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                   num_classes=source.num_classes)
  return config, plan


def plan_finetune(model: str, steps: int, lr: float, seed: int, source,
                  batch_size: int = BATCH_SIZE, dataset: str = TRANSFER_DATASET):
  """(config, plan) of a fine-tune of one of ``model``'s runs on ``dataset``: its
  pre-training recipe for exactly ``steps`` steps at peak LR ``lr``."""
  # Pre-training's recipe and XLA setting: the fine-tune runs through its compiled step.
  config = study_config(model, 1.0, lr, seed, batch_size, dataset)
  config.budget_core_hours = None
  config.epochs = steps * int(batch_size) / source.train_size  # the planner rounds to steps
  config.warmup_steps = max(steps // 4, 1)
  plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                   num_classes=source.num_classes)
  return config, plan
