"""Figure-2 sweeps and the rule-of-thumb allocation of a budget over model sizes."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from reproduce.core import published
from reproduce.planning import cost
from reproduce.planning.mfu import anchor_mfu
from reproduce.planning.errors import PlanError, positive
from reproduce.planning.hardware import PAPER_HARDWARE, peak_flops_per_core
from reproduce.planning.run_plan import Plan, plan_from_budget, plan_from_epochs

# Figure 2 grid ([P] Figure 2 legend, Figure 3 x-axis ticks).
FIGURE2_MODELS = ("nfnet_f0", "nfnet_f1", "nfnet_f3", "nfnet_f3plus", "nfnet_f7",
                  "nfnet_f7plus")
FIGURE2_EPOCHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
FAMILIES = {
    "nfnet": FIGURE2_MODELS,
    "nfnet_mini": tuple(m.replace("nfnet_", "nfnet_mini_") for m in FIGURE2_MODELS),
}


def family_models(family: str) -> tuple[str, ...]:
  """The Figure-2 model list of ``family`` ('nfnet' or its CPU-scale twin 'nfnet_mini')."""
  try:
    return FAMILIES[family]
  except KeyError:
    raise PlanError("family", f"={family} is unknown; known: "
                    f"{', '.join(FAMILIES)}") from None


def sweep(models: Sequence[str] = FIGURE2_MODELS,
          epochs_grid: Sequence[float] = FIGURE2_EPOCHS, **plan_kwargs) -> list[Plan]:
  """One plan per (model, epochs) cell, models outer; ``plan_kwargs`` go to plan_from_epochs."""
  return [plan_from_epochs(m, e, **plan_kwargs) for m in models for e in epochs_grid]


@dataclasses.dataclass(frozen=True)
class Allocation:
  """One model's share of a budget, ranked by the rule of thumb."""
  model: str
  epochs: float            # what the budget buys for this model
  core_hours: float        # what those whole steps cost
  target_epochs: float     # what the rule of thumb asks for at this budget
  log2_distance: float     # |log2(epochs / target_epochs)|
  recommended: bool
  plan: Plan

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["plan"] = self.plan.to_dict()
    return d


def epochs_exponent() -> float:
  """Epochs grow as compute^b with b = 1 / (1 + size-vs-epochs exponent ratio) = 0.5."""
  return 1.0 / (1.0 + published.value("claim.size_vs_epochs_exponent_ratio"))


def _grid_flops(models: Sequence[str], dataset_size: float,
                resolution: int | None) -> tuple[float, float]:
  """Training FLOPs of the cheapest and the dearest cell of a models x FIGURE2_EPOCHS grid."""
  costs = [cost.train_flops_per_image(m, resolution) * dataset_size for m in models]
  return min(costs) * min(FIGURE2_EPOCHS), max(costs) * max(FIGURE2_EPOCHS)


def reference_train_flops(models: Sequence[str], dataset_size: int | None = None,
                          resolution: int | None = None) -> float:
  """Training FLOPs at which the rule of thumb wants 1 epoch.

  Full-scale models: the paper's "optimal epochs exceed 1 above ~5k TPU-v4 core hours"
  converted to FLOPs with the calibrated MFU. Mini models: the same relative position inside
  their own Figure-2 grid (log-interpolated between the cheapest and the dearest cell) as 5k
  has inside the paper's grid, so the rule transfers to CPU scale.
  """
  paper_ref = (published.value("claim.optimal_epochs_gt1_above_core_hours") * 3600.0
               * peak_flops_per_core(PAPER_HARDWARE) * anchor_mfu())
  if not any(cost.model_spec(m).mini for m in models):
    return paper_ref
  jft = published.value("jft4b.dataset_size")
  lo, hi = _grid_flops(FIGURE2_MODELS, jft, published.PAPER_PRETRAIN_RESOLUTION)
  position = math.log(paper_ref / lo) / math.log(hi / lo)
  size = jft if dataset_size is None else dataset_size
  lo_m, hi_m = _grid_flops(models, size, resolution)
  return lo_m * (hi_m / lo_m) ** position


def allocate(core_hours: float, models: Sequence[str] = FIGURE2_MODELS,
             reference_flops: float | None = None, **plan_kwargs) -> list[Allocation]:
  """Ranks ``models`` for a budget by the paper's rule of thumb.

  "Scale the model size and the number of training epochs at the same rate" ([P] Section 2):
  the target epoch budget is ``(C / C_ref) ** 0.5`` with C the budget's training FLOPs and
  C_ref = ``reference_train_flops`` (1 epoch). Each model gets what the budget buys
  (``plan_from_budget``); the one whose epochs are nearest the target (in log2) is
  recommended, so the chosen size grows as C^0.5 too. Models that cannot afford one step are
  left out. Returned nearest first.
  """
  core_hours = positive("budget_core_hours", core_hours)
  models = list(models)
  if not models:
    raise PlanError("models", "must name at least one model")
  if reference_flops is None:
    reference_flops = reference_train_flops(models, plan_kwargs.get("dataset_size"),
                                            plan_kwargs.get("resolution"))
  rows = []
  for model in models:
    try:
      plan = plan_from_budget(model, core_hours, **plan_kwargs)
    except PlanError as e:
      if e.flag == "budget_core_hours":
        continue
      raise
    budget_flops = (core_hours * 3600.0 * plan.images_per_second_per_core
                    * plan.train_flops_per_image)
    target = (budget_flops / reference_flops) ** epochs_exponent()
    rows.append((abs(math.log2(plan.epochs / target)), model, plan, target))
  if not rows:
    raise PlanError("budget_core_hours", f"={core_hours:g} is smaller than one training step "
                    "of every model")
  rows.sort(key=lambda r: r[0])
  return [Allocation(model, plan.epochs, plan.core_hours, target, dist, i == 0, plan)
          for i, (dist, model, plan, target) in enumerate(rows)]
