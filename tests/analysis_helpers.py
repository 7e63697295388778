"""Synthetic studies shaped like the miniature study, for the analysis tests.

Every model trains at every budget (``config.budget_core_hours``) with a 3-LR sweep, except at
the largest budget, where each model trains once at its optimal LR: the study's design.
"""

from reproduce.analysis import synthetic

FIVE_SIZES = {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}
BUDGETS = tuple(0.1 * 2.0 ** k for k in range(6))


def study_records(models=None, budgets=BUDGETS, noise=0.02, seed=1, **law):
  """results.json records of a study-shaped grid (``synthetic.synthetic_records`` law)."""
  records = synthetic.synthetic_records(models or FIVE_SIZES, budgets=budgets, noise=noise,
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
  return synthetic.as_points(records)
