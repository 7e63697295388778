"""Edge rounds: the next size of a family's ladder, trained where a budget's best size sat at
the edge of the sizes it trained.

A budget's band of sizes (``grid.size_budgets``) is the grid's guess of where its optimum
lies. When the best size there is the smallest or the largest it trained, the optimum is only
bounded, and the size, epochs and ratio laws cannot use that budget (``fits._optima``). An
edge round trains the ladder's next size beyond it at that budget, as a sweep adds one LR
beyond an edge optimum (``model_runs.ModelRuns.sweep``); rounds repeat until every optimum
is interior, the ladder ends, or ``--edge_rounds`` are spent. The choice reads only the
finished runs' held-out losses, which are deterministic on one machine at one commit, so
there every run adds the same sizes.
"""

from __future__ import annotations

import collections
import math
from typing import Collection, Mapping, Sequence

from reproduce.analysis import seeds
from reproduce.analysis.runs import Point
from reproduce.miniature import grid as grid_lib


def _nominal(budget_core_hours: float, budgets: Sequence[float]) -> float:
  """The study budget (core-seconds, as ``grid.plan_run`` takes it) a run was planned for:
  its results.json keeps core hours."""
  seconds = budget_core_hours * 3600.0
  return min(budgets, key=lambda b: abs(math.log(b / seconds)))


def edge_sizes(points: Sequence[Point], ladders: Mapping[str, Sequence[str]],
               budgets: Sequence[float],
               tried: Collection[tuple[str, float]] = ()) -> dict[str, list[float]]:
  """{model: budgets (core-seconds, ascending)} to add: at each family's budget whose best
  size (seeds averaged, its best LR) is the smallest or largest trained there, the next size
  of ``ladders[family]`` (smallest first, as the study's flags take them) beyond it, unless
  the ladder ends there or that (model, budget) was ``tried`` already (it diverged or bought
  no step: trying it again would give the same)."""
  best = collections.defaultdict(dict)  # (family, budget) -> {model: lowest loss}
  for p in seeds.average_replicates(points):
    if p.family not in ladders or p.budget is None:
      continue
    losses = best[(p.family, _nominal(p.budget, budgets))]
    losses[p.model] = min(p.heldout_loss, losses.get(p.model, math.inf))
  added = collections.defaultdict(list)
  for (family, budget), losses in sorted(best.items()):
    ladder = list(ladders[family])
    ranks = sorted(ladder.index(m) for m in losses if m in ladder)
    if not ranks:
      continue
    top = ladder.index(min((m for m in losses if m in ladder), key=losses.get))
    for edge, step in ((ranks[0], -1), (ranks[-1], 1)):
      if top == edge and 0 <= top + step < len(ladder):
        if (ladder[top + step], budget) not in tried:
          added[ladder[top + step]].append(budget)
  return {model: sorted(b) for model, b in sorted(added.items())}


def edge_grids(points: Sequence[Point], ladders: Mapping[str, Sequence[str]],
               budgets: Sequence[float], finished: Mapping[str, Sequence[str]],
               tried: Collection[tuple[str, float]], lr_centres: Mapping[str, float],
               lr_points: int, top_seeds: int) -> list[grid_lib.ModelGrid]:
  """One ``ModelGrid`` per model of the next edge round (``edge_sizes``): its added budgets,
  the largest at the predicted LR with every seed, its sweeps centred by its ``finished``
  runs (names per model, read, never retrained)."""
  family_of = {m: family for family, ladder in ladders.items() for m in ladder}
  return [grid_lib.model_grid(model, family_of[model], added, budgets,
                              lr_centres[family_of[model]], lr_points, top_seeds,
                              prior_runs=finished.get(model, ()))
          for model, added in edge_sizes(points, ladders, budgets, tried).items()]
