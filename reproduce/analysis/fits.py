"""One family's fits, with whole-pipeline intervals, and every fit of a study (fits.json).

* ``fit_family``: one family's frontier (the best run of each budget), its loss law, the
  floor diagnostic (E of ``L = E + a*C^-b``), the iso-compute optimal size and epochs and
  their exponents, the optimal LR of each sweep and its trend, the seeds' spread, and the
  fine-tuned top-1 error law (``fit_finetune_error``, the paper's Figure 1). Intervals come
  from the whole-pipeline bootstrap (``reproduce.analysis.pipeline``).
* ``fit_all``: every fit of a study in one JSON-ready dict (the content of fits.json,
  docs/scaling.md). The claims are judged on each family's own fits.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from reproduce.analysis import frontier as fr
from reproduce.analysis import pipeline
from reproduce.analysis import seeds
from reproduce.analysis import laws
from reproduce.analysis.laws import fit_power_law
from reproduce.analysis.pipeline import MIN_POINTS_LOGLOG, SIZE_AXIS
from reproduce.analysis.runs import Point, ScalingError, point_names, single_unit
from reproduce.core import results

# The laws live in ``laws``; callers of ``fits`` keep finding them here.
predict, fit_exponent = laws.predict, laws.fit_exponent

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
  """Sets the CIs of the selections' fits (optimal size/epochs, LR trend): normal intervals
  from the pipeline bootstrap. The loss law keeps ``fit_power_law``'s residual-bootstrap t
  interval: its points are one per budget, and a case resample that drops a budget's best
  run jumps to a run far from the law, which is not another draw of noise."""
  def ci(name, estimate, log=False):
    return pipeline.interval(samples, name, estimate, confidence, log)

  scaling, trend = entry["optimal_scaling"], entry["lr_trend"]
  if scaling:
    for part in ("size", "epochs"):
      scaling[part]["ci"] = dict(k=ci(f"log_{part}_k", scaling[part]["k"], log=True),
                                 exponent=ci(f"{part}_exponent", scaling[part]["exponent"]))
    scaling["ratio"]["ci"] = ci("ratio", scaling["ratio"]["value"])
  if trend:
    trend["ci"] = ci("lr_slope", trend["pooled_slope"])
  for record in (scaling, trend):
    if record:
      record.update(ci_method="normal", resample="case-pipeline")


def _edge(vertex: float, log_sizes: np.ndarray) -> str | None:
  if np.ptp(log_sizes) == 0:
    return "only size"
  if len(log_sizes) < 3:
    return "fewer than 3 sizes"
  return ("smallest" if vertex <= log_sizes.min() else
          "largest" if vertex >= log_sizes.max() else "no vertex")


def _optima(points: Sequence[Point], runs: pipeline.FamilyRuns) -> list[dict]:
  """Each budget's iso-compute optimum: compute (the nominal budget), the optimal size
  (``SIZE_AXIS``) and epochs, edge (None when interior, else why not), the budget's best
  run (name, model) and the sizes tried."""
  tuned, _ = runs.select(np.arange(len(points)))
  out = []
  for b, log_size, log_epochs, interior in runs.optima(tuned):
    here = tuned[runs.budget[tuned] == int(b)]
    best = points[here[np.argmin(runs.loss[here])]]
    sizes = np.unique(runs.log_size[here])
    out.append(dict(compute=float(np.exp(runs.budget_log_compute[int(b)])),
                    **{SIZE_AXIS: float(np.exp(log_size))}, epochs=float(np.exp(log_epochs)),
                    edge=None if interior else _edge(log_size, sizes), name=best.name,
                    model=best.model, heldout_loss=best.heldout_loss, n_seeds=best.n_seeds,
                    sizes_tried=[float(v) for v in np.exp(sizes)]))
  return out


def _optimal_scaling(optimal: list[dict], estimate: np.ndarray, notes: dict) -> dict | None:
  """The size and epochs laws of the interior optima (``pipeline.FamilyRuns.estimates``);
  None with a note when fewer than ``MIN_POINTS_LOGLOG`` budgets have one."""
  interior = [o for o in optimal if o["edge"] is None]
  value = dict(zip(pipeline.ESTIMATES, estimate))
  if len(interior) < MIN_POINTS_LOGLOG or not math.isfinite(value["size_exponent"]):
    edges = ", ".join(f"{o['compute']:.3g}: {o['edge']}" for o in optimal if o["edge"])
    notes["optimal_scaling"] = (f"too few interior optima: {len(interior)} of {len(optimal)} "
                                f"budgets have one, the size and epochs laws need "
                                f"{MIN_POINTS_LOGLOG} (edge optima: {edges or 'none'})")
    return None

  def law(part):
    return dict(k=math.exp(value[f"log_{part}_k"]), exponent=value[f"{part}_exponent"])

  ratio = value["ratio"]
  return dict(size_axis=SIZE_AXIS, size=law("size"), epochs=law("epochs"),
              ratio=dict(value=float(ratio) if math.isfinite(ratio) else None),
              n=len(interior), n_budgets=len(optimal),
              edge_budgets=[o["compute"] for o in optimal if o["edge"]])


def _floor(front: Sequence[Point], notes: dict) -> dict | None:
  """The diagnostic E of ``L = E + a*C^-b`` on the frontier, and E / the top budget's loss.

  A floor near the losses reached means the pure power law bends over the range fitted (its
  predictions then run low); the issue wants E / top loss below one half on real data.
  """
  law = _attempt(notes, "floor", lambda: fit_power_law(
      [p.compute for p in front], [p.heldout_loss for p in front], irreducible=True,
      bootstrap=0, names=[p.name for p in front], what="floor fit (L = E + a*C^-b)"))
  if law is None:
    return None
  top = front[-1].heldout_loss
  return dict(E=law["E"], a=law["a"], b=law["b"], top_loss=top, E_over_top_loss=law["E"] / top,
              n=law["n"], rmse_log=law["rmse_log"])


def fit_family(points: Sequence[Point], *, bootstrap: int = 200, seed: int = 0,
               confidence: float = 0.95) -> tuple[dict, dict]:
  """One family's own fits: the way the paper's claims are stated (about NFNets).

  Replicate seeds are averaged first (``seeds.average_replicates``). The point estimates are
  fits to the selected runs. The loss law's interval is the residual bootstrap of
  ``fit_power_law``; the optimal size/epochs and LR-trend intervals come from the
  whole-pipeline bootstrap (runs resampled within the family, every selection redone,
  everything refitted; estimate +- normal quantile x bootstrap SD).

  Returns:
    (entry, notes). entry: n_runs, n_candidates (after averaging seeds), seeds
    (``seeds.seed_spread``), frontier (best run per budget, names), fit (``L = a*C^-b`` on
    the frontier), floor (``_floor``), optimal (each budget's iso-compute optimum, ``edge``
    None when interior), optimal_scaling (size/epochs laws of the interior optima, ratio),
    optimal_lr (``frontier.optimal_lr``), lr_trend (``frontier.lr_trend`` + ci),
    finetune_fit. A part that cannot be fitted is None and the reason is in notes[part];
    finetune_fit is None without a note when no run was fine-tuned.
  """
  raw = list(points)
  if not raw:
    raise ScalingError("no runs to fit")
  family, notes = raw[0].family, {}
  points = seeds.average_replicates(raw)
  front = fr.frontier(fr.best_lr_points(points))
  runs = pipeline.FamilyRuns.from_points(points)
  estimate = runs.estimates(np.arange(len(points)))
  optimal = _optima(points, runs)
  sweeps = _attempt(notes, "optimal_lr", lambda: fr.optimal_lr(points))
  entry = dict(
      n_runs=len(raw), n_candidates=len(points), seeds=seeds.seed_spread(raw),
      frontier=[p.name for p in front],
      fit=_attempt(notes, "fit", lambda: fit_power_law(
          [p.compute for p in front], [p.heldout_loss for p in front], bootstrap=bootstrap,
          seed=seed, confidence=confidence, names=[p.name for p in front],
          what=f"{family} frontier fit")),
      floor=_floor(front, notes), optimal=optimal,
      optimal_scaling=_optimal_scaling(optimal, estimate, notes), optimal_lr=sweeps,
      lr_trend=_attempt(notes, "lr_trend", lambda: fr.lr_trend(sweeps)) if sweeps else None)
  if sweeps is None:
    notes.setdefault("lr_trend", "no LR sweeps")
  samples = pipeline.bootstrap_estimates(runs, bootstrap, seed)
  _pipeline_intervals(entry, samples, confidence)
  for record in (entry["optimal_scaling"], entry["lr_trend"]):
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
            seed: int = 0, confidence: float = 0.95) -> dict:
  """Every fit of the study, JSON-ready (the content of fits.json).

  ``per_family[family]`` (``fit_family``) holds each family's fits: the paper's claims are
  judged there. ``frontier`` and ``loss_vs_compute`` pool every family (the best run of each
  budget over both): the compute-matched comparison, not a claim, never drawn as Figure 2.
  The pooled law is required (its failure raises); a per-family analysis the runs cannot
  support stores its reason as ``notes["per_family.<family>.<part>"]``.

  Args:
    points: runs from ``load_points`` (one compute unit).
    irreducible: fit ``L = E + a*C^-b`` for the pooled loss frontier (else ``L = a*C^-b``).
    bootstrap, seed, confidence: bootstrap CI settings, shared by every fit.

  Returns:
    dict with schema, size_axis, compute_unit, compute_kind, settings, n_runs, n_tuned,
    families, frontier, loss_vs_compute, per_family, top1_error, notes (docs/scaling.md).
    Identical for identical points and settings (no time stamps, sorted families).

  Raises:
    ScalingError: mixed compute units, or too few frontier points for the pooled loss law.
  """
  points = list(points)
  if not points:
    raise ScalingError("no runs to fit")
  unit = single_unit(points)
  boot_settings = dict(bootstrap=bootstrap, seed=seed, confidence=confidence)
  tuned = fr.best_lr_points(seeds.average_replicates(points))
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
        [p for p in points if p.family == family], **boot_settings)
    notes.update({f"per_family.{family}.{k}": v for k, v in sorted(family_notes.items())})
  return dict(
      schema=results.FITS_SCHEMA, size_axis=SIZE_AXIS, compute_unit=unit,
      compute_kind=points[0].compute_kind,
      settings=dict(irreducible=irreducible, **boot_settings, optimal="iso-compute vertex",
                    family_intervals="whole-pipeline case bootstrap, normal"),
      n_runs=len(points), n_tuned=len(tuned), families=families,
      frontier=[_summary(p) for p in front], loss_vs_compute=dict(loss_fit, scope="pooled"),
      per_family=per_family, top1_error=_top1_error(points, notes, boot_settings),
      notes=notes)
