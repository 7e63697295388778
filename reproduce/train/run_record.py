"""The pre-training record of a finished run: the first part of its ``results.json``
(fields in ``reproduce.core.results.RECORD_FIELDS``, written by ``rundir.RunDirectory``).

Besides the required fields, the record carries the run's own accounting:
``measured_core_hours`` (wall seconds over all attempts x cores), ``training_core_hours``
(seconds inside train steps x cores), ``training_over_planned`` (training over planned core
hours: how well the budget was kept) and ``overhead_seconds`` (startup, tracing, evaluation,
checkpointing; see ``clock``).
"""

from __future__ import annotations

import dataclasses

import model_defs
from reproduce.core import results as schema
from reproduce.train import clock as clock_lib
from reproduce.train import rundir


@dataclasses.dataclass
class RunSummary:
  """What the loop knows at the end of a run, beyond its config and plan."""
  model: object               # the keras.Model
  source: object              # the data source (num_classes, train_size)
  strategy: object            # the tf.distribute strategy
  dtype_policy: str
  step: int
  heldout: dict               # {"loss", "top1", "examples"}
  final_train_loss: float
  seconds: dict               # clock.RunClock.totals()
  num_cores: int


def flops_per_image(model_name: str, resolution: int, num_classes: int, overrides: dict) -> float:
  """Forward FLOPs (2 x MACs) per image from the model's analytic counter."""
  return float(model_defs.stats(model_name, resolution=resolution, num_classes=num_classes,
                                **overrides).flops)


def _core_hours(seconds: float, num_cores: int) -> float:
  return seconds * num_cores / 3600.0


def _ratio(numerator: float, denominator: float) -> float:
  return numerator / denominator if denominator and denominator == denominator else float("nan")


def budget_line(record_: dict, seconds: dict) -> str:
  """``budget: training 0.0049 / planned 0.005 core hours = 0.98; overhead startup 3.1 s ...``.

  ``seconds`` is the clock's totals; ``other`` is wall time in none of the named parts
  (summaries, progress lines, hooks, writing results).
  """
  overhead = {k: seconds[k] for k in clock_lib.OVERHEADS}
  overhead["other"] = max(seconds["wall"] - seconds["training"] - sum(overhead.values()), 0.0)
  parts = ", ".join(f"{k} {v:.1f} s" for k, v in overhead.items())
  return (f"budget: training {record_['training_core_hours']:.4g} / planned "
          f"{record_['planned_core_hours']:.4g} core hours = "
          f"{record_['training_over_planned']:.3g}; overhead {parts} "
          f"(wall {seconds['wall']:.1f} s)")


def record(config: dict, plan, run: RunSummary) -> dict:
  """The pre-training record (``schema.RECORD_FIELDS``, in that order)."""
  batch, train_size = int(plan.batch_size), getattr(run.source, "train_size", 0)
  num_classes = int(run.source.num_classes)
  planned = float(getattr(plan, "core_hours", float("nan")))
  training = _core_hours(run.seconds["training"], run.num_cores)
  return {
      "schema": schema.SCHEMA,
      "model": plan.model, "family": model_defs.get_spec(plan.model).family,
      "params": int(run.model.count_params()),
      "flops_per_image": flops_per_image(plan.model, int(plan.resolution), num_classes,
                                         dict(config.get("model_overrides") or {})),
      "resolution": int(plan.resolution),
      "dataset": config["dataset"],
      "dataset_size": int(train_size or getattr(plan, "dataset_size", 0)),
      "num_classes": num_classes,
      "epochs": float(getattr(plan, "epochs", run.step * batch / max(train_size or 1, 1))),
      "steps": run.step, "batch_size": batch, "base_lr": float(plan.base_lr),
      "hardware": getattr(plan, "hardware", config["hardware"]),
      "planned_core_hours": planned,
      "measured_core_hours": _core_hours(run.seconds["wall"], run.num_cores),
      "training_core_hours": training,
      "training_over_planned": _ratio(training, planned),
      "overhead_seconds": {k: run.seconds[k] for k in clock_lib.OVERHEADS},
      "wall_seconds": run.seconds["wall"],
      "heldout_loss": run.heldout["loss"], "heldout_top1": run.heldout["top1"],
      "heldout_examples": run.heldout["examples"],
      "eval_weights": "ema" if config["ema_decay"] else "raw",
      "final_train_loss": run.final_train_loss,
      "finetune_top1": None,
      "num_replicas": run.strategy.num_replicas_in_sync,
      "strategy": type(run.strategy).__name__,
      "dtype_policy": run.dtype_policy,
      "plan": rundir.plan_to_dict(plan),
      "config": config,
  }

