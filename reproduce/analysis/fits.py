"""Scaling-law fits with bootstrap confidence intervals (Smith et al. 2023, Figures 1-3).

* ``fit_power_law``: ``L = a * C^-b`` by log-log least squares, or ``L = E + a * C^-b``
  (``irreducible=True``) by ``scipy.optimize.curve_fit`` in log space.
* ``fit_exponent`` / ``fit_optimal_scaling``: ``N_opt = k * C^alpha`` for optimal model size
  (forward FLOPs per image, ``pipeline.SIZE_AXIS``) and epochs; the paper's rule of thumb is
  alpha_size ~= alpha_epochs.
* ``fit_family``: one family's frontier, loss law, optimal size/epochs and LR trend, with
  intervals from the whole-pipeline bootstrap (``reproduce.analysis.pipeline``), and its
  fine-tuned top-1 error law (``fit_finetune_error``, the paper's Figure 1).
* ``fit_all``: every fit of a study in one JSON-ready dict (the content of fits.json,
  docs/scaling.md): the pooled frontier for the compute-matched comparison, and each
  family's own fits, on which the paper's claims are judged.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from reproduce.analysis import bootstrap as boot
from reproduce.analysis import frontier as fr
from reproduce.analysis import pipeline
from reproduce.analysis.pipeline import MIN_POINTS_LOGLOG, SIZE_AXIS, loglog, model_size
from reproduce.analysis.runs import Point, ScalingError, list_names, point_names, single_unit
from reproduce.core import results

MIN_POINTS_IRREDUCIBLE = 4  # 3 parameters + 1


def _check_xy(x, y, min_points: int, what: str, names: Sequence[str] | None):
  x = np.asarray(x, dtype=float)
  y = np.asarray(y, dtype=float)
  label = f" ({list_names(names)})" if names else ""
  if x.shape != y.shape or x.ndim != 1:
    raise ScalingError(f"{what}: x and y must be 1-D of one length, got {x.shape}, {y.shape}")
  if len(x) < min_points or len(np.unique(x)) < 2:
    raise ScalingError(f"{what} needs at least {min_points} points at >= 2 distinct x, got "
                       f"{len(x)}{label}")
  if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x) & np.isfinite(y)):
    raise ScalingError(f"{what}: log-log fit needs positive finite values{label}")
  return x, y


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
    c, s = loglog(x, y - e0)
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


def _power_law_ci(estimate: tuple, samples: np.ndarray, dof: int, ci_method: str,
                  confidence: float) -> dict:
  """{E, a, b: [lo, hi]} from bootstrap rows (E, a, b); the t interval of a is on log a."""
  e, a, b = estimate
  if ci_method == "percentile":
    return {name: boot.percentile_interval(samples[:, i], confidence)
            for i, name in enumerate("Eab")}
  log_a = boot.t_interval(math.log(a), np.log(np.maximum(samples[:, 1], 1e-300)), dof,
                          confidence)
  e_ci = boot.t_interval(e, samples[:, 0], dof, confidence)
  return dict(E=[max(e_ci[0], 0.0), e_ci[1]] if e_ci[0] is not None else e_ci,
              a=[math.exp(v) for v in log_a] if log_a[0] is not None else log_a,
              b=boot.t_interval(b, samples[:, 2], dof, confidence))


def fit_power_law(compute, loss, *, irreducible: bool = False, bootstrap: int = 200,
                  seed: int = 0, confidence: float = 0.95, names: Sequence[str] | None = None,
                  what: str = "power law", resample: str = "residual",
                  ci_method: str = "t") -> dict:
  """Fits ``L = a * C^-b`` (or ``L = E + a * C^-b``) with bootstrap confidence intervals.

  Args:
    compute: positive x values (compute).
    loss: positive y values (held-out loss, or top-1 error).
    irreducible: add the irreducible term E >= 0 (curve_fit in log space).
    bootstrap: number of resamples for the CIs (0: no CIs).
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
  n_params = 3 if irreducible else 2
  x, y = _check_xy(compute, loss, MIN_POINTS_IRREDUCIBLE if irreducible else MIN_POINTS_LOGLOG,
                   what, names)
  if resample not in ("residual", "case"):
    raise ScalingError(f"resample must be 'residual' or 'case', got {resample!r}")
  if ci_method not in ("t", "percentile"):
    raise ScalingError(f"ci_method must be 't' or 'percentile', got {ci_method!r}")

  def fit_xy(xs, ys):
    if irreducible:
      return _fit_irreducible(xs, ys)
    c, s = loglog(xs, ys)
    return 0.0, math.exp(c), -s

  try:
    e, a, b = fit_xy(x, y)
  except (RuntimeError, ValueError) as err:
    raise ScalingError(f"{what}: fit did not converge ({err})") from None
  predicted = np.log(e + a * x ** -b)
  residual = np.log(y) - predicted
  total = np.sum((np.log(y) - np.log(y).mean()) ** 2)
  if resample == "residual":
    samples = boot.residual_bootstrap(x, y, np.exp(predicted), n_params, fit_xy, 3, bootstrap,
                                      seed)
  else:
    samples = boot.case_bootstrap(x, lambda idx: fit_xy(x[idx], y[idx]), 3, bootstrap, seed)
  ci = _power_law_ci((e, a, b), samples, len(x) - n_params, ci_method, confidence)
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
              ci=dict(k=boot.percentile_interval(np.exp(samples[:, 0]), confidence),
                      exponent=boot.percentile_interval(samples[:, 1], confidence)))


def fit_exponent(x, y, *, bootstrap: int = 200, seed: int = 0, confidence: float = 0.95,
                 names: Sequence[str] | None = None, what: str = "trend") -> dict:
  """Fits ``y = k * x^exponent`` by log-log least squares, with case-bootstrap CIs.

  Returns:
    dict: form, k, exponent, ci {k, exponent}, n, bootstrap, seed, confidence.
  """
  x, y = _check_xy(x, y, MIN_POINTS_LOGLOG, what, names)
  c, s = loglog(x, y)
  samples = boot.case_bootstrap(x, lambda i: loglog(x[i], y[i]), 2, bootstrap, seed)
  return dict(form="y = k*x^exponent", **_exponent_record(c, s, samples, confidence),
              n=int(len(x)), bootstrap=int(bootstrap), seed=int(seed),
              confidence=float(confidence))



def fit_optimal_scaling(optimal: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
                        confidence: float = 0.95) -> dict:
  """Optimal model size and epochs vs compute, and the ratio of their exponents.

  Size is ``SIZE_AXIS`` (forward FLOPs per image). Both laws are fitted on the same
  case-bootstrap resamples of ``optimal`` so the ratio's CI is paired; these CIs ignore how
  the optimal runs were selected (``fit_family`` replaces them with whole-pipeline ones).

  Returns:
    dict: size_axis, size {k, exponent, ci}, epochs {k, exponent, ci}, ratio {value, ci}
    (size exponent / epochs exponent; the paper's rule of thumb is 1), n, runs.

  Raises:
    ScalingError: fewer than 3 optimal points.
  """
  names = [p.name for p in optimal]
  c = np.array([p.compute for p in optimal])
  size = np.array([model_size(p) for p in optimal])
  n_epochs = np.array([p.epochs for p in optimal])
  _check_xy(c, size, MIN_POINTS_LOGLOG, "optimal size/epochs vs compute", names)

  def fit(idx):
    cs, ss = loglog(c[idx], size[idx])
    ce, se = loglog(c[idx], n_epochs[idx])
    return cs, ss, ce, se, (ss / se if abs(se) > 1e-12 else np.nan)

  full = fit(np.arange(len(c)))
  samples = boot.case_bootstrap(c, fit, 5, bootstrap, seed)
  return dict(
      size_axis=SIZE_AXIS,
      size=_exponent_record(full[0], full[1], samples[:, 0:2], confidence),
      epochs=_exponent_record(full[2], full[3], samples[:, 2:4], confidence),
      ratio=dict(value=None if not np.isfinite(full[4]) else float(full[4]),
                 ci=boot.percentile_interval(samples[:, 4], confidence)),
      n=int(len(c)), runs=names, bootstrap=int(bootstrap), seed=int(seed),
      confidence=float(confidence))


# Floor of a fitted top-1 error: a run with no error left would be -inf on log axes; 1e-3 is
# below one image of the digits' held-out set.
MIN_TOP1_ERROR = 1e-3


def fit_finetune_error(points: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
                       confidence: float = 0.95, what: str = "fine-tuned error fit") -> dict:
  """Fine-tuned top-1 error vs pre-training compute (the paper's Figure 1): ``err = a*C^-b``
  on the best fine-tuned run of each budget (``frontier.best_per_budget``), with the
  residual-bootstrap intervals of ``fit_power_law``.

  Returns:
    ``fit_power_law``'s dict plus selection and n_finetuned (fine-tuned runs seen).

  Raises:
    ScalingError: fewer than 3 budgets with a fine-tuned run.
  """
  finetuned = [p for p in points if p.finetune_top1 is not None]
  best = fr.best_per_budget(finetuned, lambda p: 1.0 - p.finetune_top1)
  law = fit_power_law([p.compute for p in best],
                      [max(1.0 - p.finetune_top1, MIN_TOP1_ERROR) for p in best],
                      names=[p.name for p in best], what=what, bootstrap=bootstrap, seed=seed,
                      confidence=confidence)
  law.update(selection="best fine-tuned run per budget", n_finetuned=len(finetuned))
  return law


# ----------------------------------------------------------------------------------------
# One family, with whole-pipeline intervals.


def _summary(p: Point) -> dict:
  return dict(name=p.name, model=p.model, family=p.family, params=p.params,
              flops_per_image=p.flops_per_image, epochs=p.epochs, base_lr=p.base_lr,
              compute=p.compute, heldout_loss=p.heldout_loss, top1=p.top1,
              top1_source=p.top1_source)


def _attempt(notes: dict, name: str, fn):
  """``fn()``, or None with its ScalingError message stored as ``notes[name]``."""
  try:
    return fn()
  except ScalingError as e:
    notes[name] = str(e)
    return None


def _pipeline_intervals(entry: dict, samples: np.ndarray, confidence: float) -> None:
  """Replaces the CIs of ``entry``'s fits with normal intervals from the pipeline bootstrap."""
  def ci(name, estimate, log=False):
    return pipeline.interval(samples, name, estimate, confidence, log)

  law, scaling, trend = entry["fit"], entry["optimal_scaling"], entry["lr_trend"]
  if law:
    law["ci"] = dict(a=ci("log_a", law["a"], log=True), b=ci("b", law["b"]), E=[0.0, 0.0])
  if scaling:
    for part in ("size", "epochs"):
      scaling[part]["ci"] = dict(k=ci(f"log_{part}_k", scaling[part]["k"], log=True),
                                 exponent=ci(f"{part}_exponent", scaling[part]["exponent"]))
    scaling["ratio"]["ci"] = ci("ratio", scaling["ratio"]["value"])
  if trend:
    trend["ci"] = ci("lr_slope", trend["pooled_slope"])
  for record in (law, scaling, trend):
    if record:
      record.update(ci_method="normal", resample="case-pipeline")


def _optimal_part(points: Sequence[Point], runs: pipeline.FamilyRuns,
                  notes: dict) -> tuple[list[dict], dict | None]:
  """(optimal run summaries with their ``edge``, ``fit_optimal_scaling`` of the runs
  ``runs.size_law_runs`` keeps, with its ``basis`` and ``edge_runs``)."""
  chosen = runs.select(np.arange(len(points)))[2]
  smallest, largest = runs.edges[0][chosen], runs.edges[1][chosen]
  edges = [("only size" if low and high else "smallest" if low else "largest" if high else None)
           for low, high in zip(smallest, largest)]
  optimal = [dict(_summary(points[i]), edge=edge) for i, edge in zip(chosen, edges)]
  kept, basis = runs.size_law_runs(chosen)
  scaling = _attempt(notes, "optimal_scaling",
                     lambda: fit_optimal_scaling([points[i] for i in kept], bootstrap=0))
  if scaling:
    scaling.update(basis=basis, edge_runs=[o["name"] for o in optimal if o["edge"]])
  elif basis != "interior" or any(edges):
    notes["optimal_scaling"] = (f"{notes.get('optimal_scaling', 'no fit')}; "
                                f"{sum(map(bool, edges))} of {len(edges)} optima at the edge "
                                "of their budget's sizes")
  return optimal, scaling


def fit_family(points: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
               confidence: float = 0.95, optimal: str = "frontier",
               buckets: int | None = None) -> tuple[dict, dict]:
  """One family's own fits: the way the paper's claims are stated (about NFNets).

  The point estimates are fits to the selected runs (best LR per sweep, frontier, optimal
  runs). Their intervals come from the whole-pipeline bootstrap: runs are resampled within
  the family, every selection is redone and everything refitted in each resample
  (``pipeline.FamilyRuns``); intervals are estimate +- normal quantile x bootstrap SD.

  Returns:
    (entry, notes). entry: n_runs, n_tuned, frontier (run names), fit (``L = a*C^-b`` on the
    frontier, keys of ``fit_power_law``), optimal (summaries; ``edge``: "smallest",
    "largest" or "only size" when the optimum is at the edge of the sizes trained at its
    budget, else None), optimal_scaling (``fit_optimal_scaling`` on the interior optima, with
    ``basis`` "interior"; with too few of them, on every optimum with ``basis`` "lower bound",
    "upper bound" or "no bound" for the size exponent; ``edge_runs``), optimal_lr (``frontier.optimal_lr``), lr_trend
    (``frontier.lr_trend`` + ci of pooled_slope); a part that cannot be fitted is None and
    its ScalingError message is in notes[part]. finetune_fit (``fit_finetune_error``) is None
    without a note when no run was fine-tuned.
  """
  points = list(points)
  if not points:
    raise ScalingError("no runs to fit")
  family = points[0].family
  notes = {}
  tuned = fr.best_lr_points(points)
  front = fr.frontier(tuned)
  runs = pipeline.FamilyRuns.from_points(points, optimal, buckets)
  best, scaling = _optimal_part(points, runs, notes)
  sweeps = _attempt(notes, "optimal_lr", lambda: fr.optimal_lr(points))
  entry = dict(
      n_runs=len(points), n_tuned=len(tuned), frontier=[p.name for p in front],
      fit=_attempt(notes, "fit", lambda: fit_power_law(
          [p.compute for p in front], [p.heldout_loss for p in front], bootstrap=0,
          names=[p.name for p in front], what=f"{family} frontier fit")),
      optimal=best, optimal_scaling=scaling,
      optimal_lr=sweeps,
      lr_trend=_attempt(notes, "lr_trend", lambda: fr.lr_trend(sweeps)) if sweeps else None)
  if sweeps is None:
    notes.setdefault("lr_trend", "no LR sweeps")
  samples = pipeline.bootstrap_estimates(runs, bootstrap, seed)
  _pipeline_intervals(entry, samples, confidence)
  for record in (entry["fit"], entry["optimal_scaling"], entry["lr_trend"]):
    if record:
      record.update(bootstrap=int(bootstrap), bootstrap_ok=int(len(samples)), seed=int(seed),
                    confidence=float(confidence))
  entry["finetune_fit"] = None
  if any(p.finetune_top1 is not None for p in points):
    entry["finetune_fit"] = _attempt(notes, "finetune_fit", lambda: fit_finetune_error(
        points, bootstrap=bootstrap, seed=seed, confidence=confidence,
        what=f"{family} fine-tuned error fit"))
  return entry, notes


# ----------------------------------------------------------------------------------------
# Every fit of a study.


def _top1_error(points: Sequence[Point], notes: dict, boot_settings: dict) -> dict:
  """The pooled top-1 error frontier and its law (Figure 1's compute-matched comparison)."""
  error_front = fr.frontier(points, metric=lambda p: 1.0 - p.top1)
  law = _attempt(notes, "top1_error", lambda: fit_power_law(
      [p.compute for p in error_front], [max(1.0 - p.top1, 1e-12) for p in error_front],
      names=[p.name for p in error_front], what="top-1 error frontier fit", **boot_settings))
  return dict(source="+".join(sorted({p.top1_source for p in points})),
              frontier=[_summary(p) for p in error_front], fit=law)


def fit_all(points: Sequence[Point], *, irreducible: bool = False, bootstrap: int = 200,
            seed: int = 0, confidence: float = 0.95, optimal: str = "frontier",
            buckets: int | None = None) -> dict:
  """Every fit of the study, JSON-ready (the content of fits.json).

  ``per_family[family]`` (``fit_family``) holds each family's frontier, loss law, optimal
  size/epochs and LR trend: the paper's claims are judged there. ``frontier`` and
  ``loss_vs_compute`` pool every family: the compute-matched comparison of Figures 1-2, not a
  claim. The pooled law is required (its failure raises); a per-family analysis the runs
  cannot support stores its ScalingError message as ``notes["per_family.<family>.<part>"]``.

  Args:
    points: runs from ``load_points`` (one compute unit).
    irreducible: fit ``L = E + a*C^-b`` for the pooled loss frontier (else ``L = a*C^-b``).
    bootstrap, seed, confidence: bootstrap CI settings, shared by every fit.
    optimal, buckets: definition of "optimal at compute C" (see ``frontier.optimal_points``).

  Returns:
    dict with schema, size_axis, compute_unit, compute_kind, settings, n_runs, n_tuned,
    families, frontier, loss_vs_compute, per_family, top1_error, notes (docs/scaling.md).

  Raises:
    ScalingError: mixed compute units, or too few frontier points for the pooled loss law.
  """
  points = list(points)
  if not points:
    raise ScalingError("no runs to fit")
  unit = single_unit(points)
  fr.check_optimal_method(optimal)
  boot_settings = dict(bootstrap=bootstrap, seed=seed, confidence=confidence)
  tuned = fr.best_lr_points(points)
  front = fr.frontier(tuned)
  try:
    loss_fit = fit_power_law([p.compute for p in front], [p.heldout_loss for p in front],
                             names=[p.name for p in front], what="loss-vs-compute frontier fit",
                             irreducible=irreducible, **boot_settings)
  except ScalingError as e:
    raise ScalingError(f"{e}; the frontier is taken over {len(points)} run(s): "
                       f"{point_names(points)}") from None
  notes, per_family = {}, {}
  families = sorted({p.family for p in points})
  for family in families:
    per_family[family], family_notes = fit_family(
        [p for p in points if p.family == family], optimal=optimal, buckets=buckets,
        **boot_settings)
    notes.update({f"per_family.{family}.{k}": v for k, v in family_notes.items()})
  return dict(
      schema=results.FITS_SCHEMA, size_axis=SIZE_AXIS, compute_unit=unit,
      compute_kind=points[0].compute_kind,
      settings=dict(irreducible=irreducible, **boot_settings, optimal=optimal, buckets=buckets,
                    family_intervals="whole-pipeline case bootstrap, normal"),
      n_runs=len(points), n_tuned=len(tuned), families=families,
      frontier=[_summary(p) for p in front], loss_vs_compute=dict(loss_fit, scope="pooled"),
      per_family=per_family, top1_error=_top1_error(points, notes, boot_settings),
      notes=notes)
