"""Bootstrap resampling for the fits' confidence intervals, and the intervals themselves.

Both resampling schemes draw through ``scipy.stats.bootstrap``: the case bootstrap resamples
whole points (indices into the data), the residual bootstrap resamples the fit's log
residuals and keeps compute fixed. A resample whose fit fails is dropped, and the intervals
are computed here from the surviving resamples (scipy's own interval would turn NaN).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

MIN_BOOTSTRAP_SAMPLES = 10  # fewer successful resamples than this: CI reported as unknown
FIT_ERRORS = (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError)


def _resample(data: np.ndarray, statistic: Callable[[np.ndarray], Sequence[float]],
              n_outputs: int, n: int, seed: int) -> np.ndarray:
  """Rows of ``statistic(resample of data)`` over ``n`` resamples; failed fits dropped.

  ``statistic`` returns ``n_outputs`` numbers, or None for a resample it cannot fit.
  """
  def safe(sample):
    try:
      values = statistic(sample)
    except FIT_ERRORS:
      values = None
    return np.full(n_outputs, np.nan) if values is None else np.asarray(values, dtype=float)

  if n <= 0:
    return np.zeros((0, n_outputs))
  with warnings.catch_warnings():
    # Failed resamples are NaN, which makes scipy warn that its interval is undefined; the
    # intervals are computed below from the rows that did fit.
    warnings.simplefilter("ignore", stats.DegenerateDataWarning)
    result = stats.bootstrap((data,), safe, n_resamples=n, vectorized=False,
                             method="percentile", rng=np.random.default_rng(seed))
  rows = np.asarray(result.bootstrap_distribution, dtype=float).reshape(n_outputs, n).T
  return rows[~np.all(np.isnan(rows), axis=1)]


def case_bootstrap(x: np.ndarray, fit: Callable[[np.ndarray], Sequence[float]],
                   n_outputs: int, n: int, seed: int) -> np.ndarray:
  """Case resampling: rows of ``fit(indices)``; resamples with < 2 distinct x are dropped."""
  def statistic(indices):
    indices = indices.astype(int)
    return fit(indices) if len(np.unique(x[indices])) >= 2 else None

  return _resample(np.arange(len(x)), statistic, n_outputs, n, seed)


def residual_bootstrap(x: np.ndarray, y: np.ndarray, fitted: np.ndarray, n_params: int,
                       fit: Callable[[np.ndarray, np.ndarray], Sequence[float]],
                       n_outputs: int, n: int, seed: int) -> np.ndarray:
  """Residual resampling in log y: rows of ``fit(x, fitted * exp(resampled residuals))``.

  Compute is a designed grid, so x stays fixed. Residuals are inflated by sqrt(n / (n - p))
  so their spread is unbiased for the noise.
  """
  residual = np.log(y) - np.log(fitted)
  residual = (residual - residual.mean()) * math.sqrt(len(x) / max(len(x) - n_params, 1))
  return _resample(residual, lambda r: fit(x, fitted * np.exp(r)), n_outputs, n, seed)


def percentile_interval(samples: np.ndarray, confidence: float) -> list[float | None]:
  """The central ``confidence`` percentile interval of the finite samples."""
  samples = samples[np.isfinite(samples)]
  if len(samples) < MIN_BOOTSTRAP_SAMPLES:
    return [None, None]
  tail = (1 - confidence) / 2 * 100
  return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))]


def t_interval(estimate: float, samples: np.ndarray, dof: int,
               confidence: float) -> list[float | None]:
  """estimate +- t quantile x bootstrap standard deviation (well calibrated at small n)."""
  samples = samples[np.isfinite(samples)]
  if len(samples) < MIN_BOOTSTRAP_SAMPLES:
    return [None, None]
  half = float(stats.t.ppf((1 + confidence) / 2, max(dof, 1)) * np.std(samples, ddof=1))
  return [estimate - half, estimate + half]


def normal_interval(estimate: float, samples: np.ndarray,
                    confidence: float) -> list[float | None]:
  """estimate +- normal quantile x bootstrap SD: the interval of the whole-pipeline bootstrap.

  In the coverage check of docs/scaling.md (runs from a known law, selections redone per
  resample) it covered 90-98% for a nominal 95%; percentile intervals over-covered the size
  and ratio exponents (99-100%: resamples that lose an optimal run give heavy tails), basic
  ones under-covered (50-88%).
  """
  return t_interval(estimate, samples, math.inf, confidence)
