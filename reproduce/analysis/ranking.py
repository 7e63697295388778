"""The study's families side by side at its largest budget, ranked only beyond seed noise.

Each family's best run there is its last iso-compute optimum (``fits.per_family[f].optimal``:
a replicate group's geometric-mean loss over ``n_seeds`` runs). Two families are told apart
when the log ratio of their losses exceeds the 95% two-sided t threshold of the difference of
two seed means: ``t(dof1 + dof2) * sqrt(sd1^2 / n1 + sd2^2 / n2)``, each family's seed SD of
log loss (``seeds.noise_sd``, never below its floor) and degrees of freedom from its own
replicates. Without replicates the noise is unknown and no pair is ranked.
"""

from __future__ import annotations

import math

from scipy import stats

from reproduce.analysis import seeds

LEVEL = 0.95


def largest_budget(fits: dict) -> tuple[dict, list[str]]:
  """({family: its optimum at the study's largest budget}, families with none there)."""
  tops = {}
  for family, entry in sorted((fits.get("per_family") or {}).items()):
    optima = [o for o in entry.get("optimal") or [] if o.get("heldout_loss") is not None]
    if optima:
      tops[family] = max(optima, key=lambda o: o["compute"])
  if not tops:
    return {}, []
  largest = max(o["compute"] for o in tops.values())
  missing = sorted(f for f, o in tops.items() if not math.isclose(o["compute"], largest))
  return {f: o for f, o in tops.items() if f not in missing}, missing


def versus(fits: dict, tops: dict, first: str, second: str) -> dict:
  """How ``first``'s loss at the largest budget compares with ``second``'s: log_ratio
  (log of second's loss over first's: positive when first is lower), threshold (None
  without replicates) and relation: 'below', 'above', 'level with' or 'unranked'."""
  log_ratio = math.log(tops[second]["heldout_loss"] / tops[first]["heldout_loss"])
  spreads = [fits["per_family"][f].get("seeds") or {} for f in (first, second)]
  if any(s.get("sd") is None or not s.get("dof") for s in spreads):
    return dict(log_ratio=log_ratio, threshold=None, relation="unranked")
  variance = sum(seeds.noise_sd(s) ** 2 / max(int(tops[f].get("n_seeds") or 1), 1)
                 for s, f in zip(spreads, (first, second)))
  dof = sum(int(s["dof"]) for s in spreads)
  threshold = float(stats.t.ppf(0.5 + LEVEL / 2, dof)) * math.sqrt(variance)
  relation = ("below" if log_ratio > threshold else "above" if log_ratio < -threshold
              else "level with")
  return dict(log_ratio=log_ratio, threshold=threshold, relation=relation)
