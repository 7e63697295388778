"""Scaling-law fits over finished runs: frontier, power laws, optimal size/epochs/LR.

The library behind ``python -m reproduce.fit_scaling`` and ``reproduce.study``. It reads
``results.json`` files (docs/architecture.md), turns them into ``Point`` objects and fits
the relations of Smith et al. 2023 (Figures 1-3):

* ``frontier``: the compute-efficient (Pareto) frontier of held-out loss vs compute.
* ``fit_power_law``: ``L = a * C^-b`` by log-log least squares, or ``L = E + a * C^-b``
  (``irreducible=True``) by ``scipy.optimize.curve_fit`` in log space; seeded bootstrap CIs.
* ``optimal_points`` + ``fit_exponent``: optimal model size and epochs vs compute,
  ``N_opt = k * C^alpha``; the paper's rule of thumb is alpha_size ~= alpha_epochs.
* ``optimal_lr`` + ``lr_trend``: the best base LR of every LR sweep and its trend vs epochs.
* ``fit_all``: all of the above in one JSON-ready dict (written to fits.json).

Everything here is numpy/scipy; TensorFlow is only imported to read ``gs://`` paths. The
TensorBoard writer lives in ``reproduce.tb_plots`` (``write_tensorboard`` below forwards).
Definitions and fits.json fields: docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
import glob as _glob
import json
import math
import os
from typing import Callable, Iterable, Sequence

import numpy as np

SCHEMA = "nfnet-vit-scaling/results/v1"
FITS_SCHEMA = "nfnet-vit-scaling/fits/v1"
RESULTS_FILE = "results.json"

COMPUTE_FIELDS = {"planned": "planned_core_hours", "measured": "measured_core_hours"}
REQUIRED_FIELDS = ("schema", "model", "family", "params", "flops_per_image", "epochs",
                   "base_lr", "heldout_loss", "heldout_top1")

# How each hardware's core hours are named on plots and in fits.json. Compute in different
# units is never fitted or plotted on one axis.
_UNIT_NAMES = {"tpu_v2": "TPU-v2", "tpu_v3": "TPU-v3", "tpu_v4": "TPU-v4", "tpu_v5e": "TPU-v5e",
               "tpu_v5p": "TPU-v5p", "tpu_v6e": "TPU-v6e", "gpu_a100": "A100 GPU",
               "gpu_h100": "H100 GPU", "gpu_h200": "H200 GPU", "cpu": "CPU"}
PAPER_COMPUTE_UNIT = "TPU-v4 core hours"

MIN_POINTS_LOGLOG = 3      # 2 parameters + 1 so the fit has a residual and a bootstrap
MIN_POINTS_IRREDUCIBLE = 4  # 3 parameters + 1
MIN_BOOTSTRAP_SAMPLES = 10  # fewer successful resamples than this: CI reported as unknown


class ScalingError(ValueError):
  """Bad input to a fit (no runs, broken results.json, too few points). One-line message."""


def compute_unit(hardware: str | None) -> str:
  """The unit name of core hours on ``hardware`` (e.g. ``"TPU-v4 core hours"``)."""
  name = _UNIT_NAMES.get(str(hardware), str(hardware))
  return f"{name} core hours"


@dataclasses.dataclass(frozen=True)
class Point:
  """One finished run, reduced to what the fits need.

  Attributes:
    run: where it was read from (run directory or results.json path).
    name: short unique label (the run directory's name).
    compute: pre-training compute in ``compute_unit`` (planned or measured core hours).
    compute_kind: ``"planned"`` or ``"measured"``.
    finetune_top1: fine-tuned ImageNet top-1 (fraction) or None.
    Other fields are copied from results.json (top-1 values are fractions in [0, 1]).
  """
  run: str
  name: str
  model: str
  family: str
  params: float
  flops_per_image: float
  epochs: float
  base_lr: float
  compute: float
  compute_unit: str
  compute_kind: str
  heldout_loss: float
  heldout_top1: float
  finetune_top1: float | None = None
  batch_size: int | None = None
  resolution: int | None = None
  dataset: str | None = None
  hardware: str | None = None

  @property
  def top1(self) -> float:
    """Fine-tuned top-1 when the run has one, else held-out top-1."""
    return self.heldout_top1 if self.finetune_top1 is None else self.finetune_top1

  @property
  def top1_source(self) -> str:
    return "heldout" if self.finetune_top1 is None else "finetune"

  @property
  def sweep_key(self) -> tuple:
    """Runs with equal keys differ only in ``base_lr`` (one LR sweep)."""
    return (self.model, self.epochs, self.batch_size, self.resolution, self.dataset)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------
# Loading.


def _is_remote(path: str) -> bool:
  return "://" in path


def _gfile():
  import tensorflow as tf  # only for gs:// and other remote filesystems
  return tf.io.gfile


def _glob_paths(pattern: str) -> list[str]:
  if _is_remote(pattern):
    return sorted(_gfile().glob(pattern))
  return sorted(_glob.glob(os.path.expanduser(pattern)))


def _isdir(path: str) -> bool:
  return _gfile().isdir(path) if _is_remote(path) else os.path.isdir(path)


def _exists(path: str) -> bool:
  return _gfile().exists(path) if _is_remote(path) else os.path.exists(path)


def _read_text(path: str) -> str:
  if _is_remote(path):
    with _gfile().GFile(path, "r") as f:
      return f.read()
  with open(path) as f:
    return f.read()


def _join(a: str, b: str) -> str:
  return a.rstrip("/") + "/" + b if _is_remote(a) else os.path.join(a, b)


def _list_names(items: Sequence[str], limit: int = 6) -> str:
  items = list(items)
  shown = ", ".join(items[:limit])
  return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _point_names(points: Sequence[Point], limit: int = 6) -> str:
  return _list_names([p.name for p in points], limit)


def _finite_number(record: dict, field: str, positive: bool) -> str | None:
  """An error string when ``record[field]`` is not a finite (positive) number, else None."""
  value = record.get(field)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    return f"{field}={value!r} is not a finite number"
  if positive and value <= 0:
    return f"{field}={value!r} must be > 0"
  return None


def _validate(record, compute_field: str) -> list[str]:
  """Schema problems of one results.json record (empty when valid)."""
  if not isinstance(record, dict):
    return ["not a JSON object"]
  missing = [f for f in REQUIRED_FIELDS + (compute_field,) if record.get(f) is None]
  if missing:
    return [f"missing {', '.join(missing)}"]
  problems = []
  if record["schema"] != SCHEMA:
    problems.append(f"schema={record['schema']!r}, expected {SCHEMA!r}")
  for field in ("params", "flops_per_image", "epochs", "base_lr", compute_field):
    problems.append(_finite_number(record, field, positive=True))
  problems.append(_finite_number(record, "heldout_loss", positive=False))
  for field in ("heldout_top1", "finetune_top1"):
    if record.get(field) is None:
      continue
    error = _finite_number(record, field, positive=False)
    if error is None and not 0.0 <= record[field] <= 1.0:
      error = f"{field}={record[field]!r} must be a fraction in [0, 1]"
    problems.append(error)
  return [p for p in problems if p]


def _unique_names(paths: Sequence[str]) -> list[str]:
  """Short run labels: the run directory's name, made unique with its parent if needed."""
  def label(path, depth):
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if parts and parts[-1] == RESULTS_FILE:
      parts = parts[:-1]
    return "/".join(parts[-depth:]) if parts else path

  for depth in (1, 2, 3):
    names = [label(p, depth) for p in paths]
    if len(set(names)) == len(names):
      return names
  return [f"{label(p, 1)}#{i}" for i, p in enumerate(paths)]


def load_points(runs: str | Sequence[str], compute: str = "planned") -> list[Point]:
  """Reads and validates every run matched by ``runs``.

  Args:
    runs: a glob (or comma-separated globs, or a list of them) matching run directories
      (each holding results.json) or results.json files; local or ``gs://``.
    compute: ``"planned"`` (plan's core hours) or ``"measured"`` (wall-clock core hours).

  Returns:
    Points sorted by (compute, model, base_lr).

  Raises:
    ScalingError: nothing matched, a run directory has no results.json, or a results.json
      is unreadable or misses a required field. The message names the runs.
  """
  if compute not in COMPUTE_FIELDS:
    raise ScalingError(f"compute must be one of {sorted(COMPUTE_FIELDS)}, got {compute!r}")
  patterns = [runs] if isinstance(runs, str) else list(runs)
  patterns = [p.strip() for pat in patterns for p in pat.split(",") if p.strip()]
  if not patterns:
    raise ScalingError("no run glob given")
  paths = []
  for pattern in patterns:
    paths += _glob_paths(pattern)
  paths = sorted(dict.fromkeys(paths))
  if not paths:
    raise ScalingError(f"no runs match {_list_names(patterns)}")

  files, no_results = [], []
  for path in paths:
    if _isdir(path):
      candidate = _join(path, RESULTS_FILE)
      (files if _exists(candidate) else no_results).append(
          candidate if _exists(candidate) else path)
    else:
      files.append(path)
  if no_results:
    raise ScalingError(f"no {RESULTS_FILE} in {len(no_results)} run dir(s): "
                       f"{_list_names(no_results)}")

  compute_field = COMPUTE_FIELDS[compute]
  records, bad = [], []
  for path in files:
    try:
      record = json.loads(_read_text(path))
    except (OSError, ValueError) as e:
      bad.append(f"{path} (unreadable: {str(e).splitlines()[0]})")
      continue
    problems = _validate(record, compute_field)
    if problems:
      bad.append(f"{path} ({'; '.join(problems)})")
    records.append(record)
  if bad:
    raise ScalingError(f"invalid results in {len(bad)} run(s): {_list_names(bad, 4)}")

  points = []
  for path, name, r in zip(files, _unique_names(files), records):
    run = path[:-len(RESULTS_FILE) - 1] if path.endswith("/" + RESULTS_FILE) else path
    points.append(Point(
        run=run, name=name, model=str(r["model"]), family=str(r["family"]),
        params=float(r["params"]), flops_per_image=float(r["flops_per_image"]),
        epochs=float(r["epochs"]), base_lr=float(r["base_lr"]),
        compute=float(r[compute_field]), compute_unit=compute_unit(r.get("hardware")),
        compute_kind=compute, heldout_loss=float(r["heldout_loss"]),
        heldout_top1=float(r["heldout_top1"]),
        finetune_top1=None if r.get("finetune_top1") is None else float(r["finetune_top1"]),
        batch_size=r.get("batch_size"), resolution=r.get("resolution"),
        dataset=r.get("dataset"), hardware=r.get("hardware")))
  return sorted(points, key=lambda p: (p.compute, p.model, p.base_lr))


def single_unit(points: Sequence[Point]) -> str:
  """The one compute unit of ``points``; ScalingError when runs mix hardware units."""
  units = sorted({p.compute_unit for p in points})
  if len(units) != 1:
    by_unit = {u: [p for p in points if p.compute_unit == u] for u in units}
    detail = "; ".join(f"{u}: {_point_names(ps, 3)}" for u, ps in by_unit.items())
    raise ScalingError(f"runs mix compute units, which cannot share one fit: {detail}"
                       if units else "no points")
  return units[0]


# ----------------------------------------------------------------------------------------
# Frontier and LR sweeps.


def best_lr_points(points: Sequence[Point]) -> list[Point]:
  """Per LR sweep (runs differing only in base_lr) the run with the lowest held-out loss.

  This is the paper's "base learning rate tuned separately for each epoch budget".
  """
  best = {}
  for p in points:
    key = p.sweep_key
    if key not in best or p.heldout_loss < best[key].heldout_loss:
      best[key] = p
  return sorted(best.values(), key=lambda p: (p.compute, p.model))


def frontier(points: Sequence[Point],
             metric: Callable[[Point], float] = lambda p: p.heldout_loss) -> list[Point]:
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
  chosen = {}
  for i, p in zip(index, tuned):
    if i not in chosen or p.heldout_loss < chosen[i].heldout_loss:
      chosen[i] = p
  return sorted(chosen.values(), key=lambda p: p.compute)


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
  sweeps = []
  for key, members in groups.items():
    by_lr = {}
    for p in members:  # repeated LRs (seeds): keep the best
      if p.base_lr not in by_lr or p.heldout_loss < by_lr[p.base_lr].heldout_loss:
        by_lr[p.base_lr] = p
    if len(by_lr) < 2:
      continue
    lrs = sorted(by_lr)
    losses = [by_lr[lr].heldout_loss for lr in lrs]
    i = int(np.argmin(losses))
    refined = lrs[i]
    if 0 < i < len(lrs) - 1:
      x = np.log2(lrs[i - 1:i + 2])
      c2, c1, _ = np.polyfit(x, losses[i - 1:i + 2], 2)
      if c2 > 0:
        refined = float(2.0 ** np.clip(-c1 / (2 * c2), x[0], x[-1]))
    best = by_lr[lrs[i]]
    sweeps.append(dict(model=best.model, family=best.family, epochs=best.epochs,
                       batch_size=best.batch_size, best_lr=lrs[i], refined_lr=refined,
                       at_edge=i in (0, len(lrs) - 1), best_loss=losses[i], lrs=lrs,
                       losses=losses, runs=[by_lr[lr].name for lr in lrs]))
  if not sweeps:
    raise ScalingError(f"optimal LR needs LR sweeps (runs that differ only in base_lr); none "
                       f"among {len(points)} run(s): {_point_names(points)}")
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
                       f"got sweeps for {_list_names(sorted(small))}")
  return dict(per_model=per_model, pooled_slope=sxy / sxx, small_epochs_lr=small,
              n_models=len(per_model))


# ----------------------------------------------------------------------------------------
# Power-law fits with bootstrap CIs.


def _check_xy(x, y, min_points: int, what: str, names: Sequence[str] | None):
  x = np.asarray(x, dtype=float)
  y = np.asarray(y, dtype=float)
  label = f" ({_list_names(names)})" if names else ""
  if x.shape != y.shape or x.ndim != 1:
    raise ScalingError(f"{what}: x and y must be 1-D of one length, got {x.shape}, {y.shape}")
  if len(x) < min_points or len(np.unique(x)) < 2:
    raise ScalingError(f"{what} needs at least {min_points} points at >= 2 distinct x, got "
                       f"{len(x)}{label}")
  if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x) & np.isfinite(y)):
    raise ScalingError(f"{what}: log-log fit needs positive finite values{label}")
  return x, y


def _loglog(x, y) -> tuple[float, float]:
  """(log coefficient, slope) of log y = c + s log x by least squares."""
  slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
  return float(intercept), float(slope)


def _fit_irreducible(x, y) -> tuple[float, float, float]:
  """(E, a, b) of y = E + a x^-b, least squares in log y (relative errors)."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top

  lx, ly = np.log(x), np.log(y)
  center = float(lx.mean())  # fit log a at the data's centre: far better conditioned
  ymin = float(y.min())

  def model(lxc, e, log_a, b):
    return np.log(e + np.exp(log_a - b * lxc))

  best = None
  for fraction in (0.0, 0.25, 0.5, 0.75, 0.9, 0.97):  # start from the best E grid point
    e0 = fraction * ymin
    c, s = _loglog(x, y - e0)
    residual = float(np.sum((model(lx - center, e0, c + s * center, -s) - ly) ** 2))
    if best is None or residual < best[0]:
      best = (residual, e0, c + s * center, max(-s, 1e-6))
  _, e0, la0, b0 = best
  upper_e = ymin * (1 - 1e-9)
  params, _ = optimize.curve_fit(
      model, lx - center, ly, p0=[min(e0, upper_e * 0.999), la0, b0],
      bounds=([0.0, -np.inf, 0.0], [upper_e, np.inf, 10.0]), maxfev=20000)
  e, la, b = (float(v) for v in params)
  return e, float(np.exp(la + b * center)), b


def _ci(samples: np.ndarray, confidence: float) -> list[float | None]:
  samples = samples[np.isfinite(samples)]
  if len(samples) < MIN_BOOTSTRAP_SAMPLES:
    return [None, None]
  tail = (1 - confidence) / 2 * 100
  return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))]


def _bootstrap(x: np.ndarray, fit: Callable[[np.ndarray], Sequence[float]], n: int,
               seed: int) -> np.ndarray:
  """Case-resampling bootstrap: rows of fit(indices) over ``n`` resamples (failures dropped)."""
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(n):
    idx = rng.integers(0, len(x), len(x))
    if len(np.unique(x[idx])) < 2:
      continue
    try:
      rows.append(list(fit(idx)))
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
      continue
  return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def _t_interval(estimate: float, samples: np.ndarray, dof: int,
                confidence: float) -> list[float | None]:
  """estimate +- t quantile x bootstrap standard deviation (well calibrated at small n)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  samples = samples[np.isfinite(samples)]
  if len(samples) < MIN_BOOTSTRAP_SAMPLES:
    return [None, None]
  half = float(stats.t.ppf((1 + confidence) / 2, max(dof, 1)) * np.std(samples, ddof=1))
  return [estimate - half, estimate + half]


def _residual_bootstrap(x: np.ndarray, y: np.ndarray, fitted: np.ndarray, n_params: int,
                        fit: Callable[[np.ndarray, np.ndarray], Sequence[float]], n: int,
                        seed: int) -> np.ndarray:
  """Residual bootstrap in log y (compute is a designed grid, so x stays fixed).

  Residuals are inflated by sqrt(n / (n - p)) so their spread is unbiased for the noise.
  """
  rng = np.random.default_rng(seed)
  residual = np.log(y) - np.log(fitted)
  residual = (residual - residual.mean()) * math.sqrt(len(x) / max(len(x) - n_params, 1))
  rows = []
  for _ in range(n):
    y_star = fitted * np.exp(rng.choice(residual, len(x)))
    try:
      rows.append(list(fit(x, y_star)))
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
      continue
  return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def fit_power_law(compute, loss, *, irreducible: bool = False, bootstrap: int = 200,
                  seed: int = 0, confidence: float = 0.95, names: Sequence[str] | None = None,
                  what: str = "power law", resample: str = "residual",
                  ci_method: str = "t") -> dict:
  """Fits ``L = a * C^-b`` (or ``L = E + a * C^-b``) with bootstrap confidence intervals.

  Args:
    compute: positive x values (compute).
    loss: positive y values (held-out loss, or top-1 error).
    irreducible: add the irreducible term E >= 0 (curve_fit in log space).
    bootstrap: number of case resamples for the CIs (0: no CIs).
    seed: bootstrap seed; the same inputs and seed give the same CIs.
    confidence: CI level.
    names: run names, for error messages and the record.
    what: what is fitted, for error messages.
    resample: ``"residual"`` (default: resample log residuals around the fit, x fixed; right
      for a planned compute grid) or ``"case"`` (resample whole points).
    ci_method: ``"t"`` (default: estimate +- t_{n-p} quantile x bootstrap SD, on log a;
      about 94% coverage at n = 6..80 in a 95% check) or ``"percentile"`` (bootstrap
      percentiles; under-covers at small n, about 89% at n = 10).

  Returns:
    dict: form, a, b, E, ci {a, b, E: [lo, hi] or [None, None]}, ci_method, n, rmse_log (RMS
    residual of log L), r2_log, bootstrap, bootstrap_ok (resamples that converged),
    resample, seed, confidence, runs.

  Raises:
    ScalingError: too few points (< 3, or < 4 with ``irreducible``) or non-positive values.
  """
  min_points = MIN_POINTS_IRREDUCIBLE if irreducible else MIN_POINTS_LOGLOG
  x, y = _check_xy(compute, loss, min_points, what, names)

  if resample not in ("residual", "case"):
    raise ScalingError(f"resample must be 'residual' or 'case', got {resample!r}")
  if ci_method not in ("t", "percentile"):
    raise ScalingError(f"ci_method must be 't' or 'percentile', got {ci_method!r}")

  def fit_xy(xs, ys):
    if irreducible:
      return _fit_irreducible(xs, ys)
    c, s = _loglog(xs, ys)
    return 0.0, math.exp(c), -s

  try:
    e, a, b = fit_xy(x, y)
  except (RuntimeError, ValueError) as err:
    raise ScalingError(f"{what}: fit did not converge ({err})") from None
  predicted = np.log(e + a * x ** -b)
  residual = np.log(y) - predicted
  total = np.sum((np.log(y) - np.log(y).mean()) ** 2)
  if not bootstrap:
    samples = np.zeros((0, 3))
  elif resample == "residual":
    samples = _residual_bootstrap(x, y, np.exp(predicted), 3 if irreducible else 2, fit_xy,
                                  bootstrap, seed)
  else:
    samples = _bootstrap(x, lambda idx: fit_xy(x[idx], y[idx]), bootstrap, seed)
  if ci_method == "t":
    dof = len(x) - (3 if irreducible else 2)
    log_a = _t_interval(math.log(a), np.log(np.maximum(samples[:, 1], 1e-300)), dof, confidence)
    e_ci = _t_interval(e, samples[:, 0], dof, confidence)
    ci = dict(E=[max(e_ci[0], 0.0), e_ci[1]] if e_ci[0] is not None else e_ci,
              a=[math.exp(v) for v in log_a] if log_a[0] is not None else log_a,
              b=_t_interval(b, samples[:, 2], dof, confidence))
  else:
    ci = dict(E=_ci(samples[:, 0], confidence), a=_ci(samples[:, 1], confidence),
              b=_ci(samples[:, 2], confidence))
  if not irreducible:
    ci["E"] = [0.0, 0.0]
  return dict(
      form="L = E + a*C^-b" if irreducible else "L = a*C^-b", a=a, b=b, E=e, ci=ci,
      ci_method=ci_method,
      n=int(len(x)), rmse_log=float(np.sqrt(np.mean(residual ** 2))),
      r2_log=float(1 - np.sum(residual ** 2) / total) if total > 0 else 1.0,
      bootstrap=int(bootstrap), bootstrap_ok=int(len(samples)), resample=resample,
      seed=int(seed), confidence=float(confidence), runs=list(names) if names else None)


def predict(fit: dict, compute) -> np.ndarray:
  """The fitted law ``E + a * C^-b`` at ``compute``."""
  return fit["E"] + fit["a"] * np.asarray(compute, dtype=float) ** -fit["b"]


def _exponent_record(c: float, s: float, samples: np.ndarray, confidence: float) -> dict:
  return dict(k=math.exp(c), exponent=s,
              ci=dict(k=_ci(np.exp(samples[:, 0]), confidence) if len(samples) else [None] * 2,
                      exponent=_ci(samples[:, 1], confidence) if len(samples) else [None] * 2))


def fit_exponent(x, y, *, bootstrap: int = 200, seed: int = 0, confidence: float = 0.95,
                 names: Sequence[str] | None = None, what: str = "trend") -> dict:
  """Fits ``y = k * x^exponent`` by log-log least squares, with bootstrap CIs.

  Returns:
    dict: form, k, exponent, ci {k, exponent}, n, bootstrap, seed, confidence.
  """
  x, y = _check_xy(x, y, MIN_POINTS_LOGLOG, what, names)
  c, s = _loglog(x, y)
  samples = _bootstrap(x, lambda i: _loglog(x[i], y[i]), bootstrap, seed) if bootstrap else (
      np.zeros((0, 2)))
  return dict(form="y = k*x^exponent", **_exponent_record(c, s, samples, confidence),
              n=int(len(x)), bootstrap=int(bootstrap), seed=int(seed),
              confidence=float(confidence))


def fit_optimal_scaling(optimal: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
                        confidence: float = 0.95) -> dict:
  """Optimal params and epochs vs compute, and the ratio of their exponents.

  Both laws are fitted on the same bootstrap resamples so the ratio's CI is paired.

  Returns:
    dict: params {k, exponent, ci}, epochs {k, exponent, ci}, ratio {value, ci}
    (params exponent / epochs exponent; the paper's rule of thumb is 1), n, runs.

  Raises:
    ScalingError: fewer than 3 optimal points.
  """
  names = [p.name for p in optimal]
  c = np.array([p.compute for p in optimal])
  n_params = np.array([p.params for p in optimal])
  n_epochs = np.array([p.epochs for p in optimal])
  _check_xy(c, n_params, MIN_POINTS_LOGLOG, "optimal size/epochs vs compute", names)

  def fit(idx):
    cp, sp = _loglog(c[idx], n_params[idx])
    ce, se = _loglog(c[idx], n_epochs[idx])
    return cp, sp, ce, se, (sp / se if abs(se) > 1e-12 else np.nan)

  full = fit(np.arange(len(c)))
  samples = _bootstrap(c, fit, bootstrap, seed) if bootstrap else np.zeros((0, 5))
  return dict(
      params=_exponent_record(full[0], full[1], samples[:, 0:2], confidence),
      epochs=_exponent_record(full[2], full[3], samples[:, 2:4], confidence),
      ratio=dict(value=None if not np.isfinite(full[4]) else float(full[4]),
                 ci=_ci(samples[:, 4], confidence) if len(samples) else [None, None]),
      n=int(len(c)), runs=names, bootstrap=int(bootstrap), seed=int(seed),
      confidence=float(confidence))


# ----------------------------------------------------------------------------------------
# Everything at once.


def _summary(p: Point) -> dict:
  return dict(name=p.name, model=p.model, family=p.family, params=p.params, epochs=p.epochs,
              base_lr=p.base_lr, compute=p.compute, heldout_loss=p.heldout_loss,
              top1=p.top1, top1_source=p.top1_source)


def fit_all(points: Sequence[Point], *, irreducible: bool = False, bootstrap: int = 200,
            seed: int = 0, confidence: float = 0.95, optimal: str = "frontier",
            buckets: int | None = None) -> dict:
  """Every fit of the study, JSON-ready (the content of fits.json).

  The loss-vs-compute law is required: its failure raises. The other analyses need runs the
  study may not have (LR sweeps, several epoch budgets, a second family); when one cannot
  be fitted its ScalingError message is stored under ``notes[<name>]`` instead.

  Args:
    points: runs from ``load_points`` (one compute unit).
    irreducible: fit ``L = E + a*C^-b`` for the loss frontier (else ``L = a*C^-b``).
    bootstrap, seed, confidence: bootstrap CI settings, shared by every fit.
    optimal, buckets: definition of "optimal at compute C" (see ``optimal_points``).

  Returns:
    dict with schema, compute_unit, compute_kind, settings, n_runs, frontier, loss_vs_compute,
    per_family, optimal, optimal_scaling, optimal_lr, lr_trend, top1_error, notes
    (docs/scaling.md describes every field).

  Raises:
    ScalingError: mixed compute units, or too few frontier points for the loss law.
  """
  points = list(points)
  if not points:
    raise ScalingError("no runs to fit")
  unit = single_unit(points)
  settings = dict(irreducible=irreducible, bootstrap=bootstrap, seed=seed,
                  confidence=confidence, optimal=optimal, buckets=buckets)
  boot = dict(bootstrap=bootstrap, seed=seed, confidence=confidence)
  notes = {}
  tuned = best_lr_points(points)
  front = frontier(tuned)
  try:
    loss_fit = fit_power_law([p.compute for p in front], [p.heldout_loss for p in front],
                             irreducible=irreducible, names=[p.name for p in front],
                             what="loss-vs-compute frontier fit", **boot)
  except ScalingError as e:
    raise ScalingError(f"{e}; the frontier is taken over {len(points)} run(s): "
                       f"{_point_names(points)}") from None

  per_family = {}
  for family in sorted({p.family for p in points}):
    family_front = frontier([p for p in tuned if p.family == family])
    try:
      per_family[family] = dict(
          frontier=[p.name for p in family_front],
          fit=fit_power_law([p.compute for p in family_front],
                            [p.heldout_loss for p in family_front],
                            names=[p.name for p in family_front],
                            what=f"{family} frontier fit", **boot))
    except ScalingError as e:
      per_family[family] = dict(frontier=[p.name for p in family_front], fit=None)
      notes[f"per_family.{family}"] = str(e)

  def attempt(name, fn):
    try:
      return fn()
    except ScalingError as e:
      notes[name] = str(e)
      return None

  best = optimal_points(points, optimal, buckets)
  optimal_scaling = attempt("optimal_scaling", lambda: fit_optimal_scaling(best, **boot))
  sweeps = attempt("optimal_lr", lambda: optimal_lr(points))
  trend = attempt("lr_trend", lambda: lr_trend(sweeps)) if sweeps else None
  if sweeps is None:
    notes.setdefault("lr_trend", "no LR sweeps")

  error_front = frontier(points, metric=lambda p: 1.0 - p.top1)
  top1_fit = attempt("top1_error", lambda: fit_power_law(
      [p.compute for p in error_front], [max(1.0 - p.top1, 1e-12) for p in error_front],
      names=[p.name for p in error_front], what="top-1 error frontier fit", **boot))
  sources = sorted({p.top1_source for p in points})
  return dict(
      schema=FITS_SCHEMA, compute_unit=unit, compute_kind=points[0].compute_kind,
      settings=settings, n_runs=len(points), n_tuned=len(tuned),
      frontier=[_summary(p) for p in front],
      loss_vs_compute=loss_fit, per_family=per_family,
      optimal=[_summary(p) for p in best], optimal_scaling=optimal_scaling,
      optimal_lr=sweeps, lr_trend=trend,
      top1_error=dict(source="+".join(sources), frontier=[_summary(p) for p in error_front],
                      fit=top1_fit),
      notes=notes)


def _json_safe(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, np.generic):
    return _json_safe(value.item())
  return value


def fits_to_json(fits: dict) -> str:
  """fits.json text (NaN/inf written as null so any JSON reader accepts it)."""
  return json.dumps(_json_safe(fits), indent=2, sort_keys=False)


def load_fits(path: str) -> dict:
  """Reads a fits.json written by ``fit_scaling``; ScalingError when unreadable."""
  try:
    fits = json.loads(_read_text(path))
  except (OSError, ValueError) as e:
    raise ScalingError(f"cannot read fits {path}: {str(e).splitlines()[0]}") from None
  if not isinstance(fits, dict) or fits.get("schema") != FITS_SCHEMA:
    raise ScalingError(f"{path} is not a fits.json (schema {FITS_SCHEMA!r})")
  return fits


POINT_COLUMNS = ("name", "model", "family", "params", "flops_per_image", "epochs", "base_lr",
                 "compute", "compute_unit", "compute_kind", "heldout_loss", "heldout_top1",
                 "finetune_top1", "batch_size", "resolution", "dataset", "hardware", "run")


def points_to_csv(points: Iterable[Point]) -> str:
  """points.csv text: one row per run, columns ``POINT_COLUMNS``."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(POINT_COLUMNS)
  for p in points:
    row = p.to_dict()
    writer.writerow(["" if row[c] is None else row[c] for c in POINT_COLUMNS])
  return buffer.getvalue()


def write_tensorboard(logdir: str, points: Sequence[Point], fits: dict) -> dict:
  """Forwards to ``reproduce.tb_plots.write_tensorboard`` (imports TensorFlow)."""
  from reproduce.analysis import tb_plots  # pylint: disable=g-import-not-at-top
  return tb_plots.write_tensorboard(logdir, points, fits)


# ----------------------------------------------------------------------------------------
# Synthetic runs with a known law (tests, docs, dry runs of the pipeline).


def synthetic_records(models: dict[str, float] | None = None,
                      epochs: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
                      lr_factors: Sequence[float] = (0.5, 1.0, 2.0), *, a: float = 3.0,
                      b: float = 0.1, irreducible: float = 0.0, noise: float = 0.0,
                      seed: int = 0, hours_per_param_epoch: float = 1e-6,
                      hardware: str = "cpu", family: str | None = None) -> list[dict]:
  """results.json records whose compute-optimal runs follow ``L = E + a * C^-b``.

  Compute is ``hours_per_param_epoch * params * epochs``. A run's loss is the law at its
  compute, raised by how far its size is from the optimal size sqrt(r * C / hours), r set
  so the grid's centre is optimal (so optimal size and epochs both scale as C^0.5: exponent
  ratio 1) and by how far its LR is from the
  optimal LR 1.6 * epochs^-0.25; then multiplied by log-normal noise of std ``noise``.

  Args:
    models: model name -> params (default: five sizes 1e5..1.6e6, family from the name).
    epochs: epoch budgets of every model.
    lr_factors: each budget's LR sweep, as factors of the optimal LR.
    a, b, irreducible: the law.
    noise: log-normal noise std on the loss.
    seed: noise seed.
    hours_per_param_epoch: compute per parameter-epoch (core hours).
    hardware: written to each record (sets the compute unit).
    family: family of every model (default: the text before the first '_').

  Returns:
    A list of results.json dicts (schema ``SCHEMA``).
  """
  models = models or {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}
  rng = np.random.default_rng(seed)
  # Optimal size / optimal epochs = this ratio at every compute: the grid's centre is optimal.
  sizes, budgets = list(models.values()), list(epochs)
  ratio = math.sqrt(min(sizes) * max(sizes) / (min(budgets) * max(budgets)))
  records = []
  for model, params in models.items():
    for e in epochs:
      compute = hours_per_param_epoch * params * e
      size_gap = math.log(params / math.sqrt(ratio * compute / hours_per_param_epoch))
      for factor in lr_factors:
        lr_opt = 1.6 * e ** -0.25
        penalty = 1 + 0.02 * size_gap ** 2 + 0.03 * math.log2(factor) ** 2
        loss = (irreducible + a * compute ** -b) * penalty * math.exp(noise * rng.normal())
        top1 = float(np.clip(1.0 - 0.3 * loss / (irreducible + a), 0.0, 1.0))
        records.append(dict(
            schema=SCHEMA, model=model, family=family or model.split("_")[0],
            params=params, flops_per_image=2.0 * params, resolution=32, dataset="synthetic",
            dataset_size=1000, num_classes=10, epochs=e, steps=int(e * 100), batch_size=16,
            base_lr=lr_opt * factor, hardware=hardware, planned_core_hours=compute,
            measured_core_hours=compute * 1.1, heldout_loss=loss, heldout_top1=top1,
            finetune_top1=None))
  return records


def write_records(directory: str, records: Sequence[dict]) -> list[str]:
  """Writes each record to ``directory/<model>_e<epochs>_lr<lr>/results.json``; the dirs."""
  dirs = []
  for r in records:
    run = os.path.join(directory, f"{r['model']}_e{r['epochs']:g}_lr{r['base_lr']:.4g}")
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, RESULTS_FILE), "w") as f:
      json.dump(r, f)
    dirs.append(run)
  return dirs
