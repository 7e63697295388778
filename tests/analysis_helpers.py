"""Synthetic studies shaped like the miniature study, for the analysis tests.

Every model trains at every budget (``config.budget_core_hours``) with a 3-LR sweep, except at
the largest budget, where each model trains once at its optimal LR: the study's design.
"""

import math

import synthetic_runs


FIVE_SIZES = {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}
BUDGETS = tuple(0.1 * 2.0 ** k for k in range(6))


def study_records(models=None, budgets=BUDGETS, noise=0.02, seed=1, **law):
  """results.json records of a study-shaped grid (``synthetic_runs.synthetic_records`` law)."""
  records = synthetic_runs.synthetic_records(models or FIVE_SIZES, budgets=budgets, noise=noise,
                                             seed=seed, size_penalty=law.pop("size_penalty", 1.0),
                                             **law)
  largest = max(budgets)
  return [r for r in records if r["config"]["budget_core_hours"] < largest
          or abs(r["base_lr"] - 1.6 * r["epochs"] ** -0.25) < 1e-9]


def study_points(models=None, budgets=BUDGETS, off_law: float = 1.0, family=None, **kwargs):
  """``study_records`` as points; the largest budget's losses times ``off_law``."""
  records = study_records(models, budgets, family=family, **kwargs)
  for r in records:
    if r["config"]["budget_core_hours"] == max(budgets):
      r["heldout_loss"] *= off_law
  return synthetic_runs.as_points(records)


SQRT2_GRID = tuple(1.6 * 2.0 ** (k / 2) for k in range(-5, 3))  # 0.28 .. 3.2, factor sqrt(2)


def verdict_records(models=None, budgets=BUDGETS, noise=0.01, seed=0, top_seeds=(0, 1), **law):
  """A study as the lead's grid plans it: every size at every budget over a fixed sqrt(2) LR
  grid; at the largest budget each size once at the grid LR nearest its optimum, with
  ``top_seeds`` replicates. ``law``: ``synthetic_runs.synthetic_records`` overrides."""
  law.setdefault("size_penalty", 0.3)
  law.setdefault("lr_grid", SQRT2_GRID)
  records = synthetic_runs.synthetic_records(models or FIVE_SIZES, budgets=budgets, noise=noise,
                                             seed=seed, seeds=tuple(top_seeds), **law)
  slope, top = law.get("lr_slope", -0.25), max(budgets)

  def kept(r):
    if r["config"]["budget_core_hours"] < top:
      return r["seed"] == top_seeds[0]
    best = 1.6 * r["epochs"] ** slope
    return r["base_lr"] == min(law["lr_grid"], key=lambda g: abs(math.log(g / best)))

  return [r for r in records if kept(r)]


def verdict_points(**kwargs):
  return synthetic_runs.as_points(verdict_records(**kwargs))
