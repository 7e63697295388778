"""A scaling law earns its name by predicting: the largest budget, predicted and then observed.

For each family, the law is fitted on every budget but the largest (the same selections and
fits as ``fits.fit_family``: best LR per sweep, frontier, interior optima), and extrapolated
to the largest budget's compute: the held-out loss of the compute-optimal run there, and its
model size (forward FLOPs per image) from the optimal-size law. Both intervals come from the
whole-pipeline case bootstrap (``pipeline.bootstrap_estimates``): each resample re-selects the
best LRs and the frontier of the smaller budgets, refits, and predicts; the interval is the
prediction +- normal quantile x the SD of the resampled predictions (on logs). The observed
value is the best run at the largest budget (its loss; its model's size).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from reproduce.analysis import bootstrap as boot
from reproduce.analysis import frontier as fr
from reproduce.analysis import pipeline
from reproduce.analysis.pipeline import ESTIMATES, model_size
from reproduce.analysis.runs import Point, ScalingError

MIN_FIT_BUDGETS = 3  # the loss law needs three frontier points, so three smaller budgets
BAND_POINTS = 40


def budget_value(group: Sequence[Point]) -> float:
  """A budget's compute: its planned ``budget`` when the runs carry one, else the geometric
  mean of their compute."""
  if group[0].budget is not None and group[0].compute_kind == "planned":
    return float(group[0].budget)
  return float(np.exp(np.mean(np.log([p.compute for p in group]))))


def _exp_interval(centre: float, draws: np.ndarray, confidence: float) -> list[float | None]:
  lo, hi = boot.normal_interval(centre, draws, confidence)
  return [None, None] if lo is None else [math.exp(lo), math.exp(hi)]


def _law_at(estimate: np.ndarray, samples: np.ndarray, coefficient: str, exponent: str,
            sign: float, log_compute: float) -> tuple[float, np.ndarray]:
  """(log of the law at ``log_compute``, the same over the bootstrap rows)."""
  k, e = ESTIMATES.index(coefficient), ESTIMATES.index(exponent)
  return (float(estimate[k] + sign * estimate[e] * log_compute),
          samples[:, k] + sign * samples[:, e] * log_compute)


def _judged(predicted: float, interval: list, observed: float, **more) -> dict:
  inside = None if interval[0] is None else bool(interval[0] <= observed <= interval[1])
  return dict(predicted=predicted, interval=interval, observed=observed, inside=inside, **more)


def _band(estimate, samples, computes: np.ndarray, confidence: float) -> dict:
  """The loss law and its interval over ``computes`` (the prediction figure's band)."""
  rows = [_law_at(estimate, samples, "log_a", "b", -1.0, math.log(c)) for c in computes]
  intervals = [_exp_interval(centre, draws, confidence) for centre, draws in rows]
  return dict(compute=computes.tolist(), centre=[math.exp(c) for c, _ in rows],
              lo=[i[0] for i in intervals], hi=[i[1] for i in intervals])


def _size_range(p: Point, group: Sequence[Point]) -> list[float | None]:
  """The sizes ``p`` stands for among those trained at its budget: from the geometric
  midpoint with the next smaller size to that with the next larger (None: unbounded)."""
  sizes = sorted({model_size(q) for q in group})
  i = sizes.index(model_size(p))
  return [math.sqrt(sizes[i - 1] * sizes[i]) if i > 0 else None,
          math.sqrt(sizes[i] * sizes[i + 1]) if i + 1 < len(sizes) else None]


def _edge_of(p: Point, group: Sequence[Point]) -> str | None:
  sizes = [model_size(q) for q in group]
  if min(sizes) == max(sizes):
    return "only size"
  return ("smallest" if model_size(p) == min(sizes) else
          "largest" if model_size(p) == max(sizes) else None)


def _size_part(runs, estimate, samples, log_compute, observed, held, confidence) -> dict:
  basis = runs.size_basis
  observed_size = dict(observed_model=observed.model, observed_edge=_edge_of(observed, held),
                       basis=basis)
  if len(np.unique(runs.log_size)) < 2:
    return dict(observed_size, predicted=None, interval=[None, None],
                observed=model_size(observed), inside=None,
                note="one model size: no optimal-size law")
  centre, draws = _law_at(estimate, samples, "log_size_k", "size_exponent", 1.0, log_compute)
  if not math.isfinite(centre):
    return dict(observed_size, predicted=None, interval=[None, None],
                observed=model_size(observed), inside=None,
                note="too few optimal runs below the largest budget for the optimal-size law")
  interval = _exp_interval(centre, draws, confidence)
  stands_for = _size_range(observed, held)
  part = dict(predicted=math.exp(centre), interval=interval, observed=model_size(observed),
              observed_range=stands_for, **observed_size)
  # Sizes are a grid: the best size stands for every size nearer to it than to its
  # neighbours, so the prediction holds when its interval meets that range.
  part["inside"] = None if interval[0] is None else bool(
      (stands_for[0] is None or interval[1] >= stands_for[0])
      and (stands_for[1] is None or interval[0] <= stands_for[1]))
  if basis != "interior":
    part.update(inside=None, note=f"optimal-size law fitted on edge optima: its exponent is "
                f"a {basis}, so the prediction is not judged")
  return part


def predict_family(points: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
                   confidence: float = 0.95, optimal: str = "frontier",
                   buckets: int | None = None) -> dict:
  """Fits one family on all budgets but the largest and predicts the largest.

  Returns:
    dict: family, status ("ok" or "skipped"), note (why skipped, else None), budgets
    (budget compute, increasing), compute (the largest budget's), law {a, b, ci_b} (the
    frontier law of the smaller budgets), train_frontier and held_out (runs: name, model,
    compute, heldout_loss), band {compute, centre, lo, hi}, loss and optimal_size
    {predicted, interval, observed, inside (None: not judged), ...; optimal_size also
    observed_range: the sizes the best, a grid size, stands for}, observed_run,
    confidence, bootstrap_ok.
  """
  points = list(points)
  if not points:
    raise ScalingError("no runs to predict from")
  groups = fr.budget_groups(points)
  record = dict(family=points[0].family, status="skipped", note=None,
                budgets=[budget_value(g) for g in groups], confidence=float(confidence))
  if len(groups) < MIN_FIT_BUDGETS + 1:
    record["note"] = (f"{len(groups)} budget(s): the prediction needs {MIN_FIT_BUDGETS} "
                      "budgets to fit and a larger one to predict")
    return record
  train, held = [p for g in groups[:-1] for p in g], groups[-1]
  runs = pipeline.FamilyRuns.from_points(train, optimal, buckets)
  estimate = runs.estimates(np.arange(len(train)))
  samples = pipeline.bootstrap_estimates(runs, bootstrap, seed)
  front = runs.select(np.arange(len(train)))[1]
  if not math.isfinite(estimate[ESTIMATES.index("b")]):
    record["note"] = (f"the frontier of the {len(groups) - 1} smaller budgets has "
                      f"{len(front)} point(s) at distinct compute: too few for the loss law")
    return record
  compute = record["budgets"][-1]
  observed = min(held, key=fr.heldout_loss)
  centre, draws = _law_at(estimate, samples, "log_a", "b", -1.0, math.log(compute))
  b = float(estimate[ESTIMATES.index("b")])

  def listed(ps):
    return [dict(name=p.name, model=p.model, compute=p.compute, heldout_loss=p.heldout_loss)
            for p in ps]

  record.update(
      status="ok", compute=compute, observed_run=observed.name,
      law=dict(a=math.exp(estimate[0]), b=b, ci_b=pipeline.interval(samples, "b", b,
                                                                      confidence)),
      train_frontier=listed(train[i] for i in front), held_out=listed(held),
      band=_band(estimate, samples, np.geomspace(min(runs.compute), 1.3 * compute,
                                                 BAND_POINTS), confidence),
      loss=_judged(math.exp(centre), _exp_interval(centre, draws, confidence),
                   observed.heldout_loss),
      optimal_size=_size_part(runs, estimate, samples, math.log(compute), observed, held,
                              confidence),
      bootstrap_ok=int(len(samples)))
  return record


def predict_all(points: Sequence[Point], **settings) -> dict:
  """{family: ``predict_family``} for every family of ``points`` (``settings`` passed on)."""
  points = list(points)
  return {family: predict_family([p for p in points if p.family == family], **settings)
          for family in sorted({p.family for p in points})}
