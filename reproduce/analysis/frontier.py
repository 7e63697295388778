"""Which runs count: the best run of each LR sweep, the compute frontier, the optimal runs.

Definitions as in Smith et al. 2023 (docs/scaling.md): runs that differ only in ``base_lr``
form an LR sweep, whose lowest-loss run stands for its (model, epochs); the frontier holds
the runs no cheaper run beats; the optimal LR of a sweep and its trend with the epoch budget
are the paper's Figure 3.
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


def best_lr_points(points: Sequence[Point]) -> list[Point]:
  """Per LR sweep (runs differing only in base_lr) the run with the lowest held-out loss.

  This is the paper's "base learning rate tuned separately for each epoch budget".
  """
  best = best_per_group(points, lambda p: p.sweep_key, heldout_loss)
  return sorted(best.values(), key=lambda p: (p.compute, p.model))


def frontier(points: Sequence[Point],
             metric: Callable[[Point], float] = heldout_loss) -> list[Point]:
  """The compute-efficient (Pareto) frontier, sorted by compute.

  A point is on it when every run of lower or equal compute has a higher ``metric``
  (lower is better): the best result any run achieved for that much compute.
  """
  ordered = sorted(points, key=lambda p: (p.compute, metric(p)))
  result, best = [], math.inf
  for p in ordered:
    if metric(p) < best:
      result.append(p)
      best = metric(p)
  return result


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
  tuned = best_lr_points(points)
  if method == "frontier":
    return frontier(tuned)
  if method != "bucket":
    raise ScalingError(f"optimal method must be 'frontier' or 'bucket', got {method!r}")
  if not tuned:
    return []
  n = buckets or max(1, math.ceil(math.sqrt(len(tuned))))
  logc = np.log([p.compute for p in tuned])
  edges = np.linspace(logc.min(), logc.max(), n + 1)
  index = np.clip(np.searchsorted(edges, logc, side="right") - 1, 0, n - 1)
  best = best_per_group(zip(index, tuned), lambda pair: pair[0],
                        lambda pair: pair[1].heldout_loss)
  return sorted((p for _, p in best.values()), key=lambda p: p.compute)


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
  per_model, small, sxy, sxx = {}, {}, 0.0, 0.0
  for model in sorted({s["model"] for s in sweeps}):
    rows = sorted((s for s in sweeps if s["model"] == model), key=lambda s: s["epochs"])
    small[model] = rows[0]["best_lr"]
    x = np.log([s["epochs"] for s in rows])
    y = np.log([s["best_lr"] for s in rows])
    if len(np.unique(x)) < 2:
      continue
    slope = float(np.polyfit(x, y, 1)[0])
    per_model[model] = dict(slope=slope, epochs=[s["epochs"] for s in rows],
                            best_lr=[s["best_lr"] for s in rows])
    sxy += float(np.sum((x - x.mean()) * (y - y.mean())))
    sxx += float(np.sum((x - x.mean()) ** 2))
  if not per_model:
    raise ScalingError("optimal-LR trend needs LR sweeps of one model at >= 2 epoch budgets; "
                       f"got sweeps for {list_names(sorted(small))}")
  return dict(per_model=per_model, pooled_slope=sxy / sxx, small_epochs_lr=small,
              n_models=len(per_model))
