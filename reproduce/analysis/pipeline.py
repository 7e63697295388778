"""One family's whole selection-and-fit pipeline as a function of which runs are present.

The paper's exponents are fits to *selected* runs: the best LR of each sweep, the best run
of each budget (the frontier), each budget's optimal size (an iso-compute vertex), each
sweep's optimal LR (a vertex in log LR). An interval from resampling only the selected points
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
# (Sizes and epochs: 3 budgets with an interior iso-compute optimum.)
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
  """The runs of one family as arrays (logs precomputed); replicate seeds already averaged
  (``seeds.average_replicates``), so each run here is one selection candidate."""
  compute: np.ndarray
  log_compute: np.ndarray
  loss: np.ndarray
  log_loss: np.ndarray
  log_size: np.ndarray
  log_epochs: np.ndarray
  log_lr: np.ndarray
  sweep: np.ndarray     # LR sweep id of each run
  model: np.ndarray     # model id of each run
  budget: np.ndarray    # budget id of each run (``frontier.budget_ids``), by increasing budget
  budget_log_compute: np.ndarray  # log of each budget id's nominal compute
  # Per budget id, what the selection of its best run is expected to have gained by luck
  # (log loss, <= 0); the prediction's law is fitted on the frontier less this.
  log_loss_offset: np.ndarray | None = None

  @classmethod
  def from_points(cls, points: Sequence[Point],
                  log_loss_offset: np.ndarray | None = None) -> "FamilyRuns":
    def column(values):
      return np.array(list(values), dtype=float)

    compute = column(p.compute for p in points)
    loss = column(p.heldout_loss for p in points)
    groups = fr.budget_groups(points)
    return cls(compute=compute, log_compute=np.log(compute), loss=loss, log_loss=np.log(loss),
               log_size=np.log(column(model_size(p) for p in points)),
               log_epochs=np.log(column(p.epochs for p in points)),
               log_lr=np.log(column(p.base_lr for p in points)),
               sweep=fr.group_ids([p.sweep_key for p in points]),
               model=fr.group_ids([p.model for p in points]),
               budget=fr.budget_ids(points),
               budget_log_compute=np.log([fr.budget_value(g) for g in groups]),
               log_loss_offset=log_loss_offset)

  def select(self, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best LR of each sweep, frontier: the best of them per budget) among ``present``."""
    tuned = present[fr.lowest_per_group(self.sweep[present], self.loss[present])]
    return tuned, tuned[fr.budget_best_indices(self.budget[tuned], self.loss[tuned])]

  def optima(self, tuned: np.ndarray) -> np.ndarray:
    """Rows (budget id, log size, log epochs, interior) of each budget's iso-compute optimum.

    At each budget the best-LR loss of each size; the vertex of the parabola in log size
    through the best size and its neighbours (``frontier.local_vertex``) is the optimal size
    when interior; its epochs are interpolated in log size between the budget's runs. An
    edge optimum keeps the best size tried and interior 0.
    """
    rows = []
    for b in np.unique(self.budget[tuned]):
      here = tuned[self.budget[tuned] == b]
      here = here[fr.lowest_per_group(self.model[here], self.loss[here])]
      here = here[np.argsort(self.log_size[here], kind="stable")]
      size, interior = fr.local_vertex(self.log_size[here], self.loss[here])
      epochs = np.interp(size, self.log_size[here], self.log_epochs[here])
      rows.append((b, size, epochs, float(interior)))
    return np.array(rows, dtype=float).reshape(-1, 4)

  def estimates(self, indices: np.ndarray, parts: str = "all") -> np.ndarray:
    """Every estimate of ``ESTIMATES`` on the runs ``indices`` (a resample: with repeats).

    The selections are made among the distinct runs, then the loss law is fitted with each
    frontier run weighted by how often it was drawn, as a case bootstrap counts a repeated
    case; an estimate the resample cannot give (too few points) is NaN. ``parts="loss"``
    computes the loss law only. On ``arange(n)`` these are the reported point estimates.
    """
    count = np.bincount(np.asarray(indices, dtype=int), minlength=len(self.compute))
    present = np.flatnonzero(count)
    tuned, front = self.select(present)
    out = np.full(len(ESTIMATES), np.nan)
    if _fittable(self.log_compute[front]):
      log_loss = self.log_loss[front]
      if self.log_loss_offset is not None:
        log_loss = log_loss - self.log_loss_offset[self.budget[front]]
      log_a, slope = _line(self.log_compute[front], log_loss, count[front])
      out[0:2] = log_a, -slope
    if parts == "loss":
      return out
    optima = self.optima(tuned)
    interior = optima[optima[:, 3] == 1]
    log_c = self.budget_log_compute[interior[:, 0].astype(int)]
    if _fittable(log_c):
      out[2:4] = _line(log_c, interior[:, 1], np.ones(len(log_c)))
      out[4:6] = _line(log_c, interior[:, 2], np.ones(len(log_c)))
      out[6] = out[3] / out[5] if abs(out[5]) > 1e-12 else np.nan
    out[7] = self._lr_slope(present, count)
    return out

  @functools.cached_property
  def _sweep_runs(self) -> list[np.ndarray]:
    """Each sweep's runs, by increasing LR."""
    return [np.flatnonzero(self.sweep == s)[np.argsort(self.log_lr[self.sweep == s],
                                                       kind="stable")]
            for s in range(int(self.sweep.max()) + 1)] if len(self.sweep) else []

  def _lr_slope(self, present: np.ndarray, count: np.ndarray) -> float:
    """Pooled within-model slope of log optimal LR (interior vertices) vs log epochs."""
    mask = np.zeros(len(self.compute), dtype=bool)
    mask[present] = True
    rows = []
    for runs in self._sweep_runs:
      runs = runs[mask[runs]]
      if len(runs) < 3:
        continue
      # A resample can draw one LR twice: distinct LRs only (replicates are averaged).
      runs = runs[np.r_[True, np.diff(self.log_lr[runs]) > 0]]
      vertex, interior = fr.local_vertex(self.log_lr[runs], self.loss[runs])
      if interior:
        best = runs[np.argmin(self.loss[runs])]
        rows.append((self.model[best], self.log_epochs[best], vertex, count[best]))
    if not rows:
      return math.nan
    model, log_epochs, log_lr, weight = np.array(rows).T
    return fr.within_group_slope(model.astype(int), log_epochs, log_lr, weight)


def bootstrap_estimates(runs: FamilyRuns, n: int, seed: int, parts: str = "all") -> np.ndarray:
  """Rows of ``runs.estimates`` over ``n`` case resamples of the family's runs."""
  return boot.case_bootstrap(runs.compute, lambda idx: runs.estimates(idx, parts),
                             len(ESTIMATES), n, seed)


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
