"""One family's whole selection-and-fit pipeline as a function of which runs are present.

The paper's exponents are fits to *selected* runs: the best LR of each sweep, the compute
frontier, the compute-optimal runs. An interval from resampling only the selected points
misses that another draw of noise selects other runs. ``FamilyRuns.estimates`` redoes every
selection on any subset of a family's runs with the same array functions the ``Point`` API
uses (``reproduce.analysis.frontier``), so ``bootstrap_estimates`` (runs resampled within the
family, ``bootstrap.case_bootstrap``) refits the whole pipeline in each resample.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import numpy as np

from reproduce.analysis import bootstrap as boot
from reproduce.analysis import frontier as fr
from reproduce.analysis.runs import Point

MIN_POINTS_LOGLOG = 3  # 2 parameters + 1 so the fit has a residual and a bootstrap
# The size axis of the optimal-size law: forward FLOPs per image. Unlike a parameter count
# it hardly sees the classifier (a 30k-class JFT head is 57% of F0's parameters), and
# compute = 3 x flops_per_image x images, so size x epochs ~ compute holds exactly.
SIZE_AXIS = "flops_per_image"
# What ``FamilyRuns.estimates`` returns, in order (log_* are natural logs of prefactors).
ESTIMATES = ("log_a", "b", "log_size_k", "size_exponent", "log_epochs_k", "epochs_exponent",
             "ratio", "lr_slope")


def model_size(p: Point) -> float:
  """A run's model size on ``SIZE_AXIS``."""
  return getattr(p, SIZE_AXIS)


def loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  """(intercept, slope) of log y = c + s log x by least squares (closed form)."""
  lx, ly = np.log(x), np.log(y)
  return _line(lx, ly, np.ones(len(lx)))


def _line(lx: np.ndarray, ly: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
  """(intercept, slope) of ly = c + s lx by least squares, each point counted ``weight``."""
  xm, ym = np.average(lx, weights=weight), np.average(ly, weights=weight)
  xc = lx - xm
  slope = float(np.dot(weight * xc, ly - ym) / np.dot(weight * xc, xc))
  return float(ym - slope * xm), slope


def _fittable(log_compute: np.ndarray) -> bool:
  return len(log_compute) >= MIN_POINTS_LOGLOG and np.ptp(log_compute) > 0


@dataclasses.dataclass(frozen=True, eq=False)
class FamilyRuns:
  """The runs of one family as arrays (logs precomputed), and how "optimal" is defined."""
  compute: np.ndarray
  log_compute: np.ndarray
  loss: np.ndarray
  log_loss: np.ndarray
  log_size: np.ndarray
  log_epochs: np.ndarray
  log_lr: np.ndarray
  sweep: np.ndarray     # LR sweep id of each run
  model: np.ndarray     # model id of each run
  lr_id: np.ndarray     # id of each run's base LR
  budget: np.ndarray    # budget id of each run (``frontier.budget_ids``)
  optimal: str = "frontier"
  buckets: int | None = None

  @classmethod
  def from_points(cls, points: Sequence[Point], optimal: str = "frontier",
                  buckets: int | None = None) -> "FamilyRuns":
    fr.check_optimal_method(optimal)

    def column(values):
      return np.array(list(values), dtype=float)

    compute = column(p.compute for p in points)
    loss = column(p.heldout_loss for p in points)
    return cls(compute=compute, log_compute=np.log(compute), loss=loss, log_loss=np.log(loss),
               log_size=np.log(column(model_size(p) for p in points)),
               log_epochs=np.log(column(p.epochs for p in points)),
               log_lr=np.log(column(p.base_lr for p in points)),
               sweep=fr.group_ids([p.sweep_key for p in points]),
               model=fr.group_ids([p.model for p in points]),
               lr_id=fr.group_ids([p.base_lr for p in points]),
               budget=fr.budget_ids(points), optimal=optimal, buckets=buckets)

  def select(self, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best LR of each sweep, frontier, optimal runs) among the distinct runs ``present``."""
    tuned = present[fr.lowest_per_group(self.sweep[present], self.loss[present])]
    front = tuned[fr.frontier_indices(self.compute[tuned], self.loss[tuned])]
    if self.optimal == "frontier":
      return tuned, front, front
    return tuned, front, tuned[fr.bucket_indices(self.compute[tuned], self.loss[tuned],
                                                 self.buckets)]

  @functools.cached_property
  def edges(self) -> tuple[np.ndarray, np.ndarray]:
    """(at smallest, at largest) of every run among the sizes trained at its budget."""
    everything = np.arange(len(self.compute))
    return fr.edge_optima(self.budget, self.log_size, everything, everything)

  @functools.cached_property
  def size_basis(self) -> str:
    """What the size law of all the runs is (``size_law_runs``); resamples keep it."""
    return self.size_law_runs(self.select(np.arange(len(self.compute)))[2])[1]

  def size_law_runs(self, optimal: np.ndarray,
                    basis: str | None = None) -> tuple[np.ndarray, str]:
    """The optimal runs the size and epochs laws are fitted on, and what the fit is.

    ``"interior"``: the optima not at the edge of the sizes trained at their budget
    (``edges``), when at least ``MIN_POINTS_LOGLOG`` of them span compute and two sizes (with
    three sizes trained at every budget, only the middle one is interior). Otherwise every
    optimum, and the size exponent is only a bound: ``"lower bound"`` when each edge optimum
    can only raise the slope (largest size above the mean compute, smallest below),
    ``"upper bound"`` when each can only lower it, else ``"no bound"``. A given ``basis``
    (a resample keeps that of all the runs) picks interior optima only ("interior") or all.
    """
    smallest, largest = self.edges[0][optimal], self.edges[1][optimal]
    edge = smallest | largest
    if basis is not None:
      return (optimal[~edge] if basis == "interior" else optimal), basis
    interior = optimal[~edge]
    if not edge.any() or (_fittable(self.log_compute[interior])
                          and np.ptp(self.log_size[interior]) > 0):
      return interior, "interior"
    side = largest.astype(float) - smallest  # +1 largest, -1 smallest, 0 the only size
    pull = (side * np.sign(self.log_compute[optimal] - self.log_compute[optimal].mean()))[edge]
    if np.all(side[edge] != 0) and np.all(pull >= 0):
      return optimal, "lower bound"
    if np.all(side[edge] != 0) and np.all(pull <= 0):
      return optimal, "upper bound"
    return optimal, "no bound"

  def estimates(self, indices: np.ndarray) -> np.ndarray:
    """Every estimate of ``ESTIMATES`` on the runs ``indices`` (a resample: with repeats).

    The best LR of each sweep, the frontier and the optimal runs (edge optima excluded:
    ``size_law_runs``) are selected among the distinct runs, then fitted with each selected
    run weighted by how often it was drawn, as a case bootstrap counts a repeated case; an estimate the resample cannot give (too
    few points) is NaN. On ``arange(n)`` these are the reported point estimates.
    """
    count = np.bincount(np.asarray(indices, dtype=int), minlength=len(self.compute))
    present = np.flatnonzero(count)
    tuned, front, optimal = self.select(present)
    optimal, _ = self.size_law_runs(optimal, self.size_basis)
    out = np.full(len(ESTIMATES), np.nan)
    if _fittable(self.log_compute[front]):
      log_a, slope = _line(self.log_compute[front], self.log_loss[front], count[front])
      out[0:2] = log_a, -slope
    if _fittable(self.log_compute[optimal]):
      out[2:4] = _line(self.log_compute[optimal], self.log_size[optimal], count[optimal])
      out[4:6] = _line(self.log_compute[optimal], self.log_epochs[optimal], count[optimal])
      out[6] = out[3] / out[5] if abs(out[5]) > 1e-12 else np.nan
    out[7] = self._lr_slope(present, tuned, count)
    return out

  def _lr_slope(self, present: np.ndarray, tuned: np.ndarray, count: np.ndarray) -> float:
    """Pooled within-model slope of log best LR vs log epochs over sweeps with >= 2 LRs."""
    n_lrs = int(self.lr_id.max()) + 1
    pairs = np.unique(self.sweep[present] * n_lrs + self.lr_id[present])
    lrs_per_sweep = np.bincount(pairs // n_lrs, minlength=int(self.sweep.max()) + 1)
    swept = tuned[lrs_per_sweep[self.sweep[tuned]] >= 2]
    return fr.within_group_slope(self.model[swept], self.log_epochs[swept], self.log_lr[swept],
                                 count[swept])


def bootstrap_estimates(runs: FamilyRuns, n: int, seed: int) -> np.ndarray:
  """Rows of ``runs.estimates`` over ``n`` case resamples of the family's runs."""
  return boot.case_bootstrap(runs.compute, runs.estimates, len(ESTIMATES), n, seed)


def interval(samples: np.ndarray, name: str, estimate: float | None, confidence: float,
             log: bool = False) -> list[float | None]:
  """Normal interval of ``name`` from ``bootstrap_estimates`` rows (``log``: of its log)."""
  if estimate is None or not math.isfinite(estimate) or (log and estimate <= 0):
    return [None, None]
  centre = math.log(estimate) if log else estimate
  lo, hi = boot.normal_interval(centre, samples[:, ESTIMATES.index(name)], confidence)
  if lo is None or not log:
    return [lo, hi]
  return [math.exp(lo), math.exp(hi)]
