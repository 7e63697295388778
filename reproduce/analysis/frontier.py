"""Which runs count: the best run of each LR sweep, the compute frontier, the optimal runs.

Definitions as in Smith et al. 2023 (docs/scaling.md): runs that differ only in ``base_lr``
form an LR sweep, whose lowest-loss run stands for its (model, epochs); the frontier holds
the runs no cheaper run beats; the optimal LR of a sweep and its trend with the epoch budget
are the paper's Figure 3.

Each selection has one definition, on arrays (``lowest_per_group``, ``frontier_indices``,
``bucket_indices``, ``within_group_slope``): the functions on ``Point`` lists call them, and
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
  compute bucket, a model); ties keep the first item.
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


def frontier_indices(compute: np.ndarray, metric: np.ndarray) -> np.ndarray:
  """Indices of the frontier, by compute: each beats every run of lower or equal compute."""
  order = np.lexsort((metric, compute))  # stable: exact ties keep the earliest index
  ordered = metric[order]
  best_before = np.r_[np.inf, np.minimum.accumulate(ordered)[:-1]]
  return order[ordered < best_before]


def bucket_indices(compute: np.ndarray, loss: np.ndarray, buckets: int | None) -> np.ndarray:
  """Per log-spaced compute bucket the lowest-loss index (default ceil(sqrt(n)) buckets)."""
  if not len(compute):
    return np.zeros(0, dtype=int)
  n = buckets or max(1, math.ceil(math.sqrt(len(compute))))
  logc = np.log(compute)
  edges = np.linspace(logc.min(), logc.max(), n + 1)
  bucket = np.clip(np.searchsorted(edges, logc, side="right") - 1, 0, n - 1)
  chosen = lowest_per_group(bucket, loss)
  return chosen[np.argsort(compute[chosen], kind="stable")]


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


def _arrays(points: Sequence[Point], metric: Callable[[Point], float]):
  return (np.array([p.compute for p in points], dtype=float),
          np.array([metric(p) for p in points], dtype=float))


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
  """The compute-efficient (Pareto) frontier, sorted by compute.

  A point is on it when every run of lower or equal compute has a higher ``metric``
  (lower is better): the best result any run achieved for that much compute.
  """
  points = list(points)
  return [points[i] for i in frontier_indices(*_arrays(points, metric))]


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


def best_per_budget(points: Sequence[Point], metric: Callable[[Point], float]) -> list[Point]:
  """The run with the lowest ``metric`` of each compute budget, sorted by compute.

  Unlike the frontier, a budget whose best run is worse than a cheaper one stays in, so a
  fit through these points can show a trend of either sign.
  """
  return sorted((min(group, key=metric) for group in budget_groups(points)),
                key=lambda p: p.compute)


def edge_optima(budget: np.ndarray, log_size: np.ndarray, present: np.ndarray,
                optimal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(at smallest, at largest): per ``optimal`` index, whether its size is the smallest or
  the largest among the runs ``present`` at its budget (both when only one size was there).

  An optimum at the grid's edge only bounds the true optimal size: it may lie outside.
  """
  lowest = np.full(int(budget.max()) + 1 if len(budget) else 0, np.inf)
  highest = np.full(len(lowest), -np.inf)
  np.minimum.at(lowest, budget[present], log_size[present])
  np.maximum.at(highest, budget[present], log_size[present])
  ids, sizes = budget[optimal], log_size[optimal]
  return sizes <= lowest[ids], sizes >= highest[ids]


def optimal_points(points: Sequence[Point], method: str = "frontier",
                   buckets: int | None = None) -> list[Point]:
  """The compute-optimal runs: "the optimal model at compute C".

  Args:
    points: runs (LR sweeps are first reduced to their best LR).
    method: ``"frontier"``: the frontier points (each is the best run at its compute, and
      no cheaper run beats it). ``"bucket"``: log-spaced compute buckets, in each the run
      with the lowest loss.
    buckets: number of buckets for ``"bucket"`` (default: ceil(sqrt(#runs))).

  Returns:
    Points sorted by compute.
  """
  check_optimal_method(method)
  tuned = best_lr_points(points)
  if method == "frontier":
    return frontier(tuned)
  return [tuned[i] for i in bucket_indices(*_arrays(tuned, heldout_loss), buckets)]


def check_optimal_method(method: str) -> None:
  if method not in ("frontier", "bucket"):
    raise ScalingError(f"optimal method must be 'frontier' or 'bucket', got {method!r}")


def _refined_lr(lrs: Sequence[float], losses: Sequence[float], i: int) -> float:
  """Vertex of the parabola in log2 LR through the grid optimum ``i`` and its neighbours."""
  if not 0 < i < len(lrs) - 1:
    return lrs[i]
  x = np.log2(lrs[i - 1:i + 2])
  c2, c1, _ = np.polyfit(x, losses[i - 1:i + 2], 2)
  return float(2.0 ** np.clip(-c1 / (2 * c2), x[0], x[-1])) if c2 > 0 else lrs[i]


def _sweep(members: Sequence[Point]) -> dict | None:
  """The optimal-LR record of one sweep; None when it tried fewer than two LRs."""
  by_lr = best_per_group(members, lambda p: p.base_lr, heldout_loss)  # seeds: keep the best
  if len(by_lr) < 2:
    return None
  lrs = sorted(by_lr)
  losses = [by_lr[lr].heldout_loss for lr in lrs]
  i = int(np.argmin(losses))
  best = by_lr[lrs[i]]
  return dict(model=best.model, family=best.family, epochs=best.epochs,
              batch_size=best.batch_size, best_lr=lrs[i], refined_lr=_refined_lr(lrs, losses, i),
              at_edge=i in (0, len(lrs) - 1), best_loss=losses[i], lrs=lrs, losses=losses,
              runs=[by_lr[lr].name for lr in lrs])


def optimal_lr(points: Sequence[Point]) -> list[dict]:
  """The best base LR of every LR sweep with at least two learning rates.

  Returns:
    One dict per sweep, sorted by (model, epochs): model, family, epochs, batch_size,
    best_lr (grid optimum), refined_lr (vertex of a parabola in log2 LR through the optimum
    and its neighbours; equals best_lr at a grid edge), at_edge (optimum is the smallest or
    largest LR tried: the true optimum may lie outside), best_loss, lrs, losses, runs.

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
  """How the optimal (grid) LR moves with the epoch budget: lr_opt ~ epochs^slope.

  Returns:
    per_model: {model: {slope, epochs, best_lr}} for models with >= 2 epoch budgets;
    pooled_slope: the common within-model slope of log lr vs log epochs (negative: the
    optimal LR falls as the budget rises, the paper's Figure 3); small_epochs_lr: per model
    the optimal LR at its smallest budget; n_models.

  Raises:
    ScalingError: no model has sweeps at two epoch budgets.
  """
  per_model, small = {}, {}
  for model in sorted({s["model"] for s in sweeps}):
    rows = sorted((s for s in sweeps if s["model"] == model), key=lambda s: s["epochs"])
    small[model] = rows[0]["best_lr"]
    x = np.log([s["epochs"] for s in rows])
    if len(np.unique(x)) < 2:
      continue
    y = np.log([s["best_lr"] for s in rows])
    per_model[model] = dict(slope=within_group_slope(np.zeros(len(x), dtype=int), x, y),
                            epochs=[s["epochs"] for s in rows],
                            best_lr=[s["best_lr"] for s in rows])
  if not per_model:
    raise ScalingError("optimal-LR trend needs LR sweeps of one model at >= 2 epoch budgets; "
                       f"got sweeps for {list_names(sorted(small))}")
  pooled = within_group_slope(group_ids([s["model"] for s in sweeps]),
                              np.log([s["epochs"] for s in sweeps]),
                              np.log([s["best_lr"] for s in sweeps]))
  return dict(per_model=per_model, pooled_slope=pooled, small_epochs_lr=small,
              n_models=len(per_model))


def extrapolated_lr(points: Sequence[Point], model: str, epochs: float, default: float) -> float:
  """``model``'s optimal LR at ``epochs``, from its LR sweeps (3 significant digits).

  The line through log(refined optimal LR) vs log(epochs) of its sweeps (the trend of
  Figure 3), evaluated at ``epochs`` and kept within a factor 2 of the LRs swept; one sweep
  gives its own optimum; none gives ``default``.
  """
  try:
    sweeps = optimal_lr([p for p in points if p.model == model])
  except ScalingError:
    return float(default)
  x = np.log([s["epochs"] for s in sweeps])
  y = np.log([s["refined_lr"] for s in sweeps])
  if len(np.unique(x)) < 2:
    lr = float(np.exp(y[np.argmax(x)]))
  else:
    slope, intercept = np.polyfit(x, y, 1)
    tried = [lr for s in sweeps for lr in s["lrs"]]
    lr = float(np.clip(np.exp(intercept + slope * np.log(epochs)), min(tried) / 2,
                       max(tried) * 2))
  return float(f"{lr:.3g}")
