"""The study's grid: sizes, budgets, learning rates, and each run's config and plan.

docs/study.md says why the grid is what it is. In short: three compute-matched sizes per
family, five budgets spanning 100x, a factor-2 sweep of three learning rates at every budget
but the largest, and at the largest budget each model trained once at the LR its own sweeps
predict (the optimal-LR trend, Figure 3), so that budget tests the scaling laws' prediction.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

# Compute-matched pairs (per-image MACs at 32 px): 3.4M / 3.2M, 6.2M / 6.6M, 12.0M / 14.9M.
DEFAULT_NFNETS = ("nfnet_mini_f0", "nfnet_mini_f1", "nfnet_mini_f3")
DEFAULT_VITS = ("vit_mini_ti", "vit_mini_s", "vit_mini_m")
# Budgets in measured CPU core-seconds: 100x in four steps of sqrt(10); ``--scale`` multiplies.
DEFAULT_BUDGETS_CORE_SECONDS = (0.9, 2.9, 9.0, 29.0, 90.0)
# The centre of each family's LR sweep (the sweep is centre x 2^k, k = -1, 0, 1).
DEFAULT_LR_CENTRES = {"nfnet": 0.4, "vit": 4e-3}
DEFAULT_LR_POINTS = 3
RESOLUTION = 32
BATCH_SIZE = 32
STEPS_PER_EXECUTION = 32
# Every fine-tune: the best run of a (model, budget) from its final weights with a fresh head,
# 64 steps (about 1.4 epochs) at a quarter of the run's own LR, through the model's own
# pre-training program (its recipe and resolution; docs/study.md says why).
DEFAULT_FINETUNE_STEPS = 64
FINETUNE_LR_FRACTION = 0.25

class StudyError(ValueError):
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
  """``points`` learning rates on a factor-2 grid around ``centre`` (ascending)."""
  low = -((points - 1) // 2)
  return tuple(float(centre) * 2.0 ** k for k in range(low, low + points))


def size_budgets(rank: int, sizes: int, budgets: Sequence[float]) -> list[float]:
  """The budgets the ``rank``-th smallest of ``sizes`` models trains at: the smallest skips
  the largest budget, the largest skips the smallest, the others train at all (a band:
  every budget has at least two sizes, so its optimal size can move)."""
  budgets = list(budgets)
  if sizes == 1 or len(budgets) < 3:
    return budgets
  if rank == 0:
    return budgets[:-1]
  if rank == sizes - 1:
    return budgets[1:]
  return budgets


@dataclasses.dataclass(frozen=True)
class ModelGrid:
  """One model's share of the study: its sweep budgets (each at every LR of ``lrs``) and,
  when it trains at the study's largest budget, that budget (one run, predicted LR)."""
  model: str
  family: str
  sweep_budgets: tuple[float, ...]
  lrs: tuple[float, ...]
  top_budget: float | None

  def planned_core_seconds(self) -> float:
    return sum(self.sweep_budgets) * len(self.lrs) + (self.top_budget or 0.0)


def make_grid(nfnets: Sequence[str], vits: Sequence[str], budgets: Sequence[float],
              lr_centres: Mapping[str, float], lr_points: int) -> list[ModelGrid]:
  """Every model's ``ModelGrid``, each family's models in the order given (small to large)."""
  budgets = sorted(budgets)
  top = budgets[-1] if len(budgets) > 1 else None
  grids = []
  for family, models in (("nfnet", nfnets), ("vit", vits)):
    lrs = lr_sweep(lr_centres[family], lr_points)
    for rank, model in enumerate(models):
      own = size_budgets(rank, len(models), budgets)
      grids.append(ModelGrid(model, family, tuple(b for b in own if b != top), lrs,
                             top if top in own else None))
  return grids


def run_name(model: str, budget_core_seconds: float, lr: float) -> str:
  return f"{model}__{budget_core_seconds:g}cs__lr{lr:g}"


def family_config(model: str):
  """The config of ``model``'s family: pretrain_mini (NFNets: SGD + AGC) or
  pretrain_mini_vit (ViTs: AdamW)."""
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce.configs import pretrain_mini  # pylint: disable=g-import-not-at-top
  from reproduce.configs import pretrain_mini_vit  # pylint: disable=g-import-not-at-top
  family = model_defs.get_spec(model).family
  return (pretrain_mini_vit if family == "vit" else pretrain_mini).get_config()


def study_config(model: str, budget_core_seconds: float, images_per_second_per_core: float,
                 lr: float, seed: int, batch_size: int = BATCH_SIZE):
  """The config of one run of the study: its family's recipe (``family_config``)."""
  config = family_config(model)
  config.model = model
  config.resolution = RESOLUTION
  config.budget_core_hours = budget_core_seconds / 3600.0
  config.images_per_second_per_core = float(images_per_second_per_core)
  config.batch_size = int(batch_size)
  config.base_lr = float(lr)
  config.seed = int(seed)
  config.log_every_steps = 10 ** 9  # the study prints its own progress line per run
  _study_execution(config)
  return config


def _study_execution(config) -> None:
  """Execution settings of the study's runs (pre-training and fine-tuning alike)."""
  # 32 steps a host round trip: the host's per-chunk work (summaries, checks) cost a ViT run
  # of 4-step chunks a quarter of its wall time. The held-out set in 3 batches, not 12.
  config.steps_per_execution = STEPS_PER_EXECUTION
  config.eval_batch_size = 128
  # Runs of seconds: a checkpoint a minute bounds what a kill loses; one kept is enough.
  config.checkpoint_every_steps = 0
  config.keep_checkpoints = 1


def plan_run(model: str, budget: float, rate: float, lr: float, seed: int, source,
             batch_size: int = BATCH_SIZE):
  """(config, plan) of one run; ``planning.PlanError`` when the budget buys no step."""
  from reproduce import planning  # pylint: disable=g-import-not-at-top
  config = study_config(model, budget, rate, lr, seed, batch_size)
  plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                   num_classes=source.num_classes)
  return config, plan


def plan_finetune(model: str, steps: int, rate: float, lr: float, seed: int, source,
                  batch_size: int = BATCH_SIZE):
  """(config, plan) of a fine-tune of one of ``model``'s runs: its pre-training config (so
  the same program serves it) for exactly ``steps`` steps at peak LR ``lr``."""
  from reproduce import planning  # pylint: disable=g-import-not-at-top
  config = study_config(model, 1.0, rate, lr, seed, batch_size)
  config.budget_core_hours = None
  config.epochs = steps * int(batch_size) / source.train_size  # the planner rounds to steps
  config.warmup_steps = max(steps // 4, 1)
  plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                   num_classes=source.num_classes)
  return config, plan
