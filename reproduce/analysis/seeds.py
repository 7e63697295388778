"""Replicate seeds: averaging them for selection, their spread, and the optimism of a minimum.

Runs equal in everything but ``seed`` (``Point.replicate_key``) are replicates. Selections
(best LR, best size, best run of a budget) see one point per replicate group, whose loss is
the geometric mean of the seeds' losses. The spread of log loss across seeds is the noise of
one run; it sets how optimistic "the best of k runs" is (``min_of_normals``), which the
prediction of the largest budget corrects for (``reproduce.analysis.prediction``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from reproduce.analysis.runs import Point

# The seed SD of log loss assumed when no run was repeated: 1% of the loss. It keeps the
# prediction interval from claiming that a single run is exact.
SEED_SD_FLOOR = 0.01
# Monte-Carlo draws for the expected minimum of noisy runs (fixed seed: deterministic).
MIN_DRAWS = 4000
MIN_DRAWS_SEED = 12345
TIE_SDS = 1.0


def replicate_groups(points: Sequence[Point]) -> list[list[Point]]:
  """The runs of each replicate group, groups in order of first appearance."""
  groups: dict = {}
  for p in points:
    groups.setdefault(p.replicate_key, []).append(p)
  return list(groups.values())


def _mean_or_none(values):
  return None if any(v is None for v in values) else float(np.mean(values))


def average_replicates(points: Sequence[Point]) -> list[Point]:
  """One point per replicate group: geometric-mean loss, mean top-1, ``n_seeds`` runs."""
  out = []
  for group in replicate_groups(points):
    if len(group) == 1:
      out.append(group[0])
      continue
    out.append(dataclasses.replace(
        group[0], heldout_loss=float(np.exp(np.mean([np.log(p.heldout_loss) for p in group]))),
        heldout_top1=float(np.mean([p.heldout_top1 for p in group])),
        finetune_top1=_mean_or_none([p.finetune_top1 for p in group]),
        seed=None, n_seeds=len(group)))
  return out


def seed_spread(points: Sequence[Point]) -> dict:
  """The pooled SD of log loss across seeds within replicate groups.

  Returns:
    dict: sd (None without replicates), dof (sum of group sizes - 1), n_groups (groups with
    >= 2 seeds), n_runs (runs in them).
  """
  squares, dof, n_groups, n_runs = 0.0, 0, 0, 0
  for group in replicate_groups(points):
    if len(group) < 2:
      continue
    logs = np.log([p.heldout_loss for p in group])
    squares += float(np.sum((logs - logs.mean()) ** 2))
    dof += len(group) - 1
    n_groups += 1
    n_runs += len(group)
  return dict(sd=math.sqrt(squares / dof) if dof else None, dof=dof, n_groups=n_groups,
              n_runs=n_runs)


def noise_sd(spread: dict) -> float:
  """The seed SD a prediction uses: the measured one, never below ``SEED_SD_FLOOR``."""
  return max(spread["sd"] or 0.0, SEED_SD_FLOOR)


def min_of_normals(log_losses: Sequence[float], sd) -> tuple[float, float]:
  """(mean, SD) of ``min_i(l_i + sd * z_i) - min_i(l_i)`` for standard normal z.

  The optimism of a best-of-k selection: with k equal candidates the mean is
  ``sd * E[min of k standard normals]`` (-0.56 sd for 2, -1.16 sd for 5); candidates far
  worse than the best hardly ever win and add nothing. The plug-in uses the observed
  ``log_losses`` as the candidates' means; ``sd`` is one number or one per candidate.
  """
  values = np.asarray(log_losses, dtype=float)
  sd = np.broadcast_to(np.asarray(sd, dtype=float), values.shape)
  if not len(values) or not np.any(sd > 0):
    return 0.0, 0.0
  # Observed gaps are themselves noisy: a candidate within TIE_SDS noise SDs of the best is
  # as likely equal to it as worse, so it counts as tied (else the optimism is underrated).
  gap = values - values.min()
  values = np.where(gap < TIE_SDS * np.hypot(sd, sd[np.argmin(values)]), values.min(), values)
  draws = np.random.default_rng(MIN_DRAWS_SEED).standard_normal((MIN_DRAWS, len(values)))
  minima = np.min(values + sd * draws, axis=1) - values.min()
  return float(minima.mean()), float(minima.std(ddof=1))
