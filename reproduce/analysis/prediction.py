"""A scaling law earns its name by predicting: the largest budget, predicted and then observed.

For each family the loss law is fitted on the frontier of every budget but the largest (the
selections of ``fits.fit_family``, replicate seeds averaged) and extrapolated to the largest
budget. The loss interval is a *prediction* interval for the best run observed there, on
log loss, with three parts:

* the line's uncertainty: the SD of the prediction over the whole-pipeline bootstrap
  (``pipeline.bootstrap_estimates``: each resample re-selects and refits);
* the selection effect: each frontier point is the best of many noisy runs and the observed
  point the best of few, so each is optimistic by a different amount
  (``seeds.min_of_normals`` with the seed SD): the frontier is fitted less its optimism, and
  the top budget's optimism is added to the prediction;
* the seed noise of the observed point: the SD of that minimum (the seed SD from the top
  budget's replicates, else all replicates, never below ``seeds.SEED_SD_FLOOR``).

The optimal size is predicted from the interior iso-compute optima of the smaller budgets
and compared with the largest budget's own iso-compute optimum.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from reproduce.analysis import bootstrap as boot
from reproduce.analysis import frontier as fr
from reproduce.analysis import pipeline
from reproduce.analysis import seeds
from reproduce.analysis.pipeline import ESTIMATES
from reproduce.analysis.runs import Point, ScalingError

MIN_FIT_BUDGETS = 3  # the loss law needs three frontier points, so three smaller budgets
BAND_POINTS = 40


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


def _optimism(groups: Sequence[Sequence[Point]], sd: float) -> list[tuple[float, float]]:
  """Per budget, (mean, SD) of how much lower its best run's log loss is than its best
  candidate's mean, for candidates with seed noise ``sd / sqrt(n_seeds)``."""
  return [seeds.min_of_normals(np.log([p.heldout_loss for p in group]),
                               sd / np.sqrt([p.n_seeds for p in group])) for group in groups]


def _welch_dof(parts: Sequence[tuple[float, float]]) -> float:
  """Welch-Satterthwaite degrees of freedom of a sum of variances (sd, dof) pairs."""
  total = sum(sd ** 2 for sd, _ in parts) ** 2
  spread = sum(sd ** 4 / dof for sd, dof in parts if dof > 0 and math.isfinite(dof))
  return total / spread if spread > 0 else math.inf


def _loss_part(runs: pipeline.FamilyRuns, samples: np.ndarray, log_compute: float,
               top: tuple[float, float], seed_dof: float, observed: float,
               confidence: float) -> dict:
  """The predicted loss at ``log_compute`` with its prediction interval (module docstring)."""
  estimate = runs.estimates(np.arange(len(runs.compute)), "loss")
  centre, draws = _law_at(estimate, samples, "log_a", "b", -1.0, log_compute)
  draws = draws[np.isfinite(draws)]
  line_sd = float(np.std(draws, ddof=1)) if len(draws) >= boot.MIN_BOOTSTRAP_SAMPLES else None
  if line_sd is None:
    return _judged(math.exp(centre + top[0]), [None, None], observed,
                   note="too few bootstrap resamples for an interval")
  n = len(np.unique(runs.budget))
  # Both SDs are estimated from few numbers: a t quantile on their combined dof.
  dof = _welch_dof([(line_sd, n - 2), (top[1], seed_dof)])
  half = float(stats.t.ppf((1 + confidence) / 2, dof)) * math.hypot(line_sd, top[1])
  predicted = centre + top[0]
  return _judged(math.exp(predicted), [math.exp(predicted - half), math.exp(predicted + half)],
                 observed, line_sd=line_sd, seed_sd=top[1], selection_shift=top[0],
                 dof=dof)


def _size_part(train_runs: pipeline.FamilyRuns, samples: np.ndarray, top: Sequence[Point],
               log_compute: float, confidence: float) -> dict:
  """The optimal size predicted at ``log_compute`` vs the top budget's iso-compute optimum."""
  estimate = train_runs.estimates(np.arange(len(train_runs.compute)))
  top_runs = pipeline.FamilyRuns.from_points(top)
  _, log_size, _, interior = top_runs.optima(top_runs.select(np.arange(len(top)))[0])[0]
  observed = math.exp(log_size)
  centre, draws = _law_at(estimate, samples, "log_size_k", "size_exponent", 1.0, log_compute)
  if not math.isfinite(centre):
    return dict(predicted=None, interval=[None, None], observed=observed, inside=None,
                note="too few interior optima below the largest budget for the size law")
  part = _judged(math.exp(centre), _exp_interval(centre, draws, confidence), observed)
  if not interior:
    part.update(inside=None, note="the largest budget's optimum is at the edge of its sizes")
  return part


def predict_family(points: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
                   confidence: float = 0.95) -> dict:
  """Fits one family on all budgets but the largest and predicts the largest.

  Returns:
    dict: family, status ("ok" or "skipped"), note (why skipped, else None), budgets
    (nominal budget compute, increasing), compute (the largest's), law {a, b, ci_b} (the
    frontier law of the smaller budgets, fitted less their selection optimism), seed_sd
    (the noise used) and seed_source, train_frontier and held_out (runs: name, model,
    compute, heldout_loss), band {compute, centre, lo, hi} (the line's confidence band),
    loss {predicted, interval (the prediction interval), observed, inside (None: not
    judged), line_sd, seed_sd, selection_shift} and optimal_size {predicted, interval,
    observed (the top budget's iso-compute optimum), inside, note}, observed_run,
    confidence, bootstrap_ok.
  """
  raw = list(points)
  if not raw:
    raise ScalingError("no runs to predict from")
  raw_groups = fr.budget_groups(raw)
  record = dict(family=raw[0].family, status="skipped", note=None,
                budgets=[fr.budget_value(g) for g in raw_groups], confidence=float(confidence))
  if len(raw_groups) < MIN_FIT_BUDGETS + 1:
    record["note"] = (f"{len(raw_groups)} budget(s): the prediction needs {MIN_FIT_BUDGETS} "
                      "budgets to fit and a larger one to predict")
    return record
  top_spread = seeds.seed_spread(raw_groups[-1])
  spread = top_spread if top_spread["sd"] is not None else seeds.seed_spread(raw)
  sd = seeds.noise_sd(spread)
  groups = [seeds.average_replicates(g) for g in raw_groups]
  train, held = [p for g in groups[:-1] for p in g], groups[-1]
  offsets = np.array([mean for mean, _ in _optimism(groups[:-1], sd)])
  runs = pipeline.FamilyRuns.from_points(train, log_loss_offset=offsets)
  samples = pipeline.bootstrap_estimates(runs, bootstrap, seed)
  estimate = runs.estimates(np.arange(len(train)), "loss")
  front = runs.select(np.arange(len(train)))[1]
  if not math.isfinite(estimate[ESTIMATES.index("b")]):
    record["note"] = (f"the frontier of the {len(groups) - 1} smaller budgets has "
                      f"{len(front)} point(s) at distinct compute: too few for the loss law")
    return record
  compute = record["budgets"][-1]
  observed = min(held, key=fr.heldout_loss)
  b = float(estimate[ESTIMATES.index("b")])

  def listed(ps):
    return [dict(name=p.name, model=p.model, compute=p.compute, heldout_loss=p.heldout_loss)
            for p in ps]

  record.update(
      status="ok", compute=compute, observed_run=observed.name, seed_sd=sd,
      seed_source=("top budget's replicates" if top_spread["sd"] is not None else
                   "all replicates" if spread["sd"] is not None else "floor (no replicates)"),
      law=dict(a=math.exp(estimate[0]), b=b, ci_b=pipeline.interval(samples, "b", b,
                                                                      confidence)),
      train_frontier=listed(train[i] for i in front), held_out=listed(held),
      band=_band(estimate, samples, np.geomspace(min(runs.compute), 1.3 * compute,
                                                 BAND_POINTS), confidence),
      loss=_loss_part(runs, samples, math.log(compute), _optimism([held], sd)[0],
                      spread["dof"] if spread["sd"] else math.inf, observed.heldout_loss,
                      confidence),
      optimal_size=_size_part(runs, samples, held, math.log(compute), confidence),
      bootstrap_ok=int(len(samples)))
  return record


def predict_all(points: Sequence[Point], **settings) -> dict:
  """{family: ``predict_family``} for every family of ``points`` (``settings`` passed on)."""
  points = list(points)
  return {family: predict_family([p for p in points if p.family == family], **settings)
          for family in sorted({p.family for p in points})}
