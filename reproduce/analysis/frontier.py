"""Which runs count: the best run of each LR sweep, the compute frontier, the optimal runs.

Definitions as in Smith et al. 2023 (docs/scaling.md): runs that differ only in ``base_lr``
form an LR sweep, whose lowest-loss run stands for its (model, epochs); the frontier holds
the best run of each nominal budget; the optimal LR of a sweep (a fitted vertex) and its
trend with the epoch budget are the paper's Figure 3.

Each selection has one definition, on arrays (``lowest_per_group``, ``budget_best_indices``,
``local_vertex``, ``within_group_slope``): the functions on ``Point`` lists call them, and
so does the whole-pipeline bootstrap (``reproduce.analysis.pipeline``) in every resample.
"""

from __future__ import annotations

import math
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

import numpy as np

from reproduce.analysis.runs import Point, ScalingError, list_names, point_names

T = TypeVar("T")


def heldout_loss(p: Point) -> float:
  return p.heldout_loss


def best_per_group(items: Iterable[T], group: Callable[[T], Hashable],
                   score: Callable[[T], float]) -> dict:
  """{group key: the item with the lowest ``score``}, keys in order of first appearance.

  The one definition of "the best run of a group" (of an LR sweep, a learning rate, a
  budget, a model); ties keep the first item.
  """
  best = {}
  for item in items:
    key = group(item)
    if key not in best or score(item) < score(best[key]):
      best[key] = item
  return best


def group_ids(keys: Sequence[Hashable]) -> np.ndarray:
  """Integer id of each key, numbered in order of first appearance."""
  ids = {}
  return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=int)


def lowest_per_group(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Indices of the lowest score of each group (integer ids); ties keep the earliest index."""
  if not len(scores):
    return np.zeros(0, dtype=int)
  order = np.lexsort((np.arange(len(scores)), scores, groups))
  sorted_groups = groups[order]
  return order[np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]]


def budget_best_indices(budget: np.ndarray, loss: np.ndarray) -> np.ndarray:
  """Indices of the lowest loss of each budget id, by increasing budget: the frontier."""
  chosen = lowest_per_group(budget, loss)
  return chosen[np.argsort(budget[chosen], kind="stable")]


def within_group_slope(groups: np.ndarray, x: np.ndarray, y: np.ndarray,
                       weight: np.ndarray | None = None) -> float:
  """The common slope of y on x within groups (each group centred), each point counted
  ``weight`` times (default once); NaN when x never varies within a group."""
  if not len(x):
    return math.nan
  weight = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=float)
  total = np.maximum(np.bincount(groups, weight), 1e-300)
  xc = x - (np.bincount(groups, weight * x) / total)[groups]
  yc = y - (np.bincount(groups, weight * y) / total)[groups]
  sxx = float(np.dot(weight * xc, xc))
  return float(np.dot(weight * xc, yc)) / sxx if sxx > 1e-300 else math.nan


def best_lr_points(points: Sequence[Point]) -> list[Point]:
  """Per LR sweep (runs differing only in base_lr) the run with the lowest held-out loss.

  This is the paper's "base learning rate tuned separately for each epoch budget".
  """
  points = list(points)
  losses = np.array([p.heldout_loss for p in points], dtype=float)
  chosen = lowest_per_group(group_ids([p.sweep_key for p in points]), losses)
  return sorted((points[i] for i in chosen), key=lambda p: (p.compute, p.model))


def frontier(points: Sequence[Point],
             metric: Callable[[Point], float] = heldout_loss) -> list[Point]:
  """The frontier: the best run (lowest ``metric``) of each nominal budget, by compute.

  A budget whose best run is worse than a cheaper budget's stays in, so a law fitted through
  the frontier can show a trend of either sign (a loss that rises with compute fails).
  """
  points = list(points)
  scores = np.array([metric(p) for p in points], dtype=float)
  return [points[i] for i in budget_best_indices(budget_ids(points), scores)]


# Runs within this factor of compute of the cheapest run of their group share a budget: a run
# spends its budget to within one step, and budgets of a study are further apart (it doubles).
BUDGET_GAP = 1.4


def budget_ids(points: Sequence[Point]) -> np.ndarray:
  """Budget id of each point, numbered by increasing budget.

  Runs that carry a ``budget`` (results.json ``config.budget_core_hours``) share it exactly;
  a run without one joins the cheapest run of its group when within ``BUDGET_GAP`` of its
  compute (older results.json files have no budget).
  """
  keys: list = [None] * len(points)
  start = None
  for i in sorted(range(len(points)), key=lambda i: points[i].compute):
    p = points[i]
    if p.budget is not None:
      keys[i] = (p.budget, 0)
      continue
    if start is None or p.compute > BUDGET_GAP * start:
      start = p.compute
    keys[i] = (start, 1)
  number = {key: n for n, key in enumerate(sorted(set(keys)))}
  return np.array([number[k] for k in keys], dtype=int)


def budget_groups(points: Sequence[Point]) -> list[list[Point]]:
  """The runs of each budget (``budget_ids``), by increasing budget."""
  points = list(points)
  ids = budget_ids(points)
  return [[p for p, i in zip(points, ids) if i == b] for b in sorted(set(ids.tolist()))]


def budget_value(group: Sequence[Point]) -> float:
  """A budget's compute: its planned ``budget`` when the runs carry one, else the geometric
  mean of their compute."""
  if group[0].budget is not None and group[0].compute_kind == "planned":
    return float(group[0].budget)
  return float(np.exp(np.mean(np.log([p.compute for p in group]))))


def best_per_budget(points: Sequence[Point], metric: Callable[[Point], float]) -> list[Point]:
  """The run with the lowest ``metric`` of each compute budget: ``frontier``."""
  return frontier(points, metric)


def local_vertex(x: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
  """(vertex, interior) of the parabola through the lowest y and its two neighbours in x.

  ``x`` sorted and distinct. Interior when the lowest y has a neighbour on each side: the
  parabola then opens upward and its vertex lies between them. At an edge (or with fewer
  than three points) the optimum is only bounded: (x of the lowest y, False).
  """
  i = int(np.argmin(y))
  if not 0 < i < len(x) - 1:
    return float(x[i]), False
  (x0, x1, x2), (y0, y1, y2) = x[i - 1:i + 2], y[i - 1:i + 2]
  left, right = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)  # secant slopes
  curvature = (right - left) / (x2 - x0)
  if not curvature > 0:  # a flat bottom: no vertex
    return float(x1), False
  # The parabola's slope at the midpoint of each secant equals the secant's slope.
  return float(np.clip((x0 + x1) / 2 - left / (2 * curvature), x0, x2)), True


def _sweep(members: Sequence[Point]) -> dict | None:
  """The optimal-LR record of one sweep; None when it tried fewer than two LRs."""
  by_lr = best_per_group(members, lambda p: p.base_lr, heldout_loss)
  if len(by_lr) < 2:
    return None
  lrs = sorted(by_lr)
  losses = [by_lr[lr].heldout_loss for lr in lrs]
  i = int(np.argmin(losses))
  best = by_lr[lrs[i]]
  vertex, interior = local_vertex(np.log(lrs), np.array(losses))
  return dict(model=best.model, family=best.family, epochs=best.epochs,
              batch_size=best.batch_size, best_lr=lrs[i], refined_lr=float(np.exp(vertex)),
              at_edge=not interior, best_loss=losses[i], lrs=lrs, losses=losses,
              runs=[by_lr[lr].name for lr in lrs])


def optimal_lr(points: Sequence[Point]) -> list[dict]:
  """The best base LR of every LR sweep with at least two learning rates.

  Returns:
    One dict per sweep, sorted by (model, epochs): model, family, epochs, batch_size,
    best_lr (grid optimum), refined_lr (``local_vertex`` in log LR: the vertex of the
    parabola through the optimum and its neighbours; equals best_lr at a grid edge), at_edge
    (no interior vertex: the true optimum may lie outside the grid), best_loss, lrs, losses,
    runs.

  Raises:
    ScalingError: no run has an LR sweep.
  """
  groups = {}
  for p in points:
    groups.setdefault(p.sweep_key, []).append(p)
  sweeps = [s for s in map(_sweep, groups.values()) if s is not None]
  if not sweeps:
    raise ScalingError(f"optimal LR needs LR sweeps (runs that differ only in base_lr); none "
                       f"among {len(points)} run(s): {point_names(points)}")
  return sorted(sweeps, key=lambda s: (s["model"], s["epochs"]))


def lr_trend(sweeps: Sequence[dict]) -> dict:
  """How the optimal LR moves with the epoch budget: lr_opt ~ epochs^slope.

  Fitted on the fitted vertices (``refined_lr``) of the sweeps with an interior optimum, so
  the slope is not quantised by the LR grid; an edge sweep only bounds its optimum.

  Returns:
    per_model: {model: {slope, epochs, refined_lr}} for models with >= 2 interior sweeps;
    pooled_slope: the common within-model slope of log lr vs log epochs (negative: the
    optimal LR falls as the budget rises, the paper's Figure 3); small_epochs_lr: per model
    the grid optimum at its smallest budget; n_models; n_edge (edge sweeps left out).

  Raises:
    ScalingError: no model has interior sweeps at two epoch budgets.
  """
  per_model, small = {}, {}
  interior = [s for s in sweeps if not s["at_edge"]]
  for model in sorted({s["model"] for s in sweeps}):
    small[model] = min((s for s in sweeps if s["model"] == model),
                       key=lambda s: s["epochs"])["best_lr"]
    rows = sorted((s for s in interior if s["model"] == model), key=lambda s: s["epochs"])
    x = np.log([s["epochs"] for s in rows])
    if len(np.unique(x)) < 2:
      continue
    y = np.log([s["refined_lr"] for s in rows])
    per_model[model] = dict(slope=within_group_slope(np.zeros(len(x), dtype=int), x, y),
                            epochs=[s["epochs"] for s in rows],
                            refined_lr=[s["refined_lr"] for s in rows])
  if not per_model:
    raise ScalingError(f"optimal-LR trend needs interior LR optima of one model at >= 2 epoch "
                       f"budgets; {len(sweeps) - len(interior)} of {len(sweeps)} sweeps have "
                       f"their optimum at the LR grid's edge (models "
                       f"{list_names(sorted(small))})")
  pooled = within_group_slope(group_ids([s["model"] for s in interior]),
                              np.log([s["epochs"] for s in interior]),
                              np.log([s["refined_lr"] for s in interior]))
  return dict(per_model=per_model, pooled_slope=pooled, small_epochs_lr=small,
              n_models=len(per_model), n_edge=len(sweeps) - len(interior))
