"""Where the study's time goes: training versus every named overhead, in core-seconds.

The study occupies ``cores`` cores for its whole wall time; what is not training is
overhead: the study's own phases (data preparation, fits and report, while the workers'
cores wait), the workers' start-up, model building, tracing,
evaluation, checkpointing, per-run set-up, and cores left idle when one worker has finished
before another. The overhead share is ``1 - training / (cores x wall)``.
"""

from __future__ import annotations

import os
import time

from reproduce.core import formatting
from reproduce.core import timing

# Kinds the jobs report (``run_cost`` and model_runs), in the order printed.
JOB_KINDS = ("worker startup", "job setup", "program build",
             "tracing", "startup", "evaluation", "checkpointing")
LABELS = {"startup": "run set-up (input pipelines, restore)"}
OVERHEAD_GOAL = 0.25


def run_cost(record: dict) -> dict:
  """Core-seconds of one finished run by kind (training and the engine's overheads)."""
  overhead = dict(record.get("overhead_seconds") or {})
  cores = float(record.get("num_replicas") or 1)
  cost = {kind: float(seconds) * cores for kind, seconds in overhead.items()}
  cost["training"] = float(record.get("training_core_hours") or 0.0) * 3600.0
  cost["wall"] = float(record.get("wall_seconds") or 0.0) * cores
  return cost


def add_cost(totals: dict, cost: dict) -> None:
  for kind, seconds in cost.items():
    totals[kind] = totals.get(kind, 0.0) + seconds


def study_cores(workers: int) -> int:
  """Cores the study occupies: its workers' threads, or the whole machine inline."""
  cores = os.cpu_count() or 1
  return cores if workers == 0 else workers * max(1, cores // workers)


class StudyClock:
  """The study's own phases, timed from the command's start."""

  def __init__(self, started: float, workers: int):
    self.started = started
    self.cores = study_cores(workers)
    self.phases = {"process start": time.time() - started}

  def phase(self, name: str):
    """Adds the time spent inside the block to the phase ``name``."""
    return timing.add_seconds(self.phases, name)

  def breakdown(self, jobs) -> dict:
    """``breakdown_from`` this clock, now."""
    return breakdown_from(self, jobs, wall=time.time() - self.started)


def breakdown_from(clock: StudyClock, jobs, wall: float) -> dict:
  """Core-seconds by kind; ``jobs``: what each ``worker_pool.model_job`` returned."""
  totals, traces = {}, {}
  for job in jobs:
    # A model's job of each edge round (``edges``) traces its program again.
    traces[job["model"]] = traces.get(job["model"], 0) + job["traces"]
    for kind, seconds in job["cost"].items():
      totals[kind] = totals.get(kind, 0.0) + seconds
  training = totals.get("training", 0.0)
  kinds = {LABELS.get(k, k): totals[k] for k in JOB_KINDS if k in totals}
  named = sum(kinds.values()) + training
  kinds["other in jobs (results, files, scheduling)"] = max(totals.get("job wall", 0.0) - named,
                                                            0.0)
  busy = clock.phases.get("workers", 0.0) * clock.cores
  kinds["cores idle while others worked"] = max(busy - totals.get("job wall", 0.0), 0.0)
  for name in ("process start", "data preparation", "fits and report"):
    kinds[name] = clock.phases.get(name, 0.0) * clock.cores
  total = wall * clock.cores
  return dict(wall_seconds=wall, cores=clock.cores, training_core_seconds=training,
              overhead_fraction=max(1.0 - training / total, 0.0) if total else None,
              overhead_goal=OVERHEAD_GOAL, overhead_core_seconds=kinds,
              traces=traces)


def format_breakdown(breakdown: dict) -> list[str]:
  """The breakdown as printed lines (core-seconds and shares of cores x wall)."""
  total = breakdown["wall_seconds"] * breakdown["cores"]
  lines = [f"  wall {formatting.duration(breakdown['wall_seconds'])} on {breakdown['cores']} "
           f"cores = {total:.0f} core-s; training {breakdown['training_core_seconds']:.0f} "
           f"core-s ({breakdown['training_core_seconds'] / total:.0%})"]
  for kind, seconds in sorted(breakdown["overhead_core_seconds"].items(),
                              key=lambda item: -item[1]):
    lines.append(f"    {kind:<44} {seconds:7.1f} core-s  {seconds / total:6.1%}")
  share = breakdown["overhead_fraction"]
  verdict = "within" if share <= breakdown["overhead_goal"] else "ABOVE"
  lines.append(f"  time not spent training: {share:.1%} of the wall time ({verdict} the "
               f"{breakdown['overhead_goal']:.0%} goal)")
  return lines
