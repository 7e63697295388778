"""The fine-tune's plan and its compute accounting, from its config keys (declared, with
their defaults, in configs/finetune_base.py).
"""

from __future__ import annotations

import copy
import dataclasses

from reproduce.configs import finetune_base
from reproduce.data import repeated
from reproduce.train import sam


def with_defaults(config: dict) -> dict:
  """``config`` (a plain dict) with the fine-tune keys it lacks."""
  return {**finetune_base.defaults(), **config}


def cost_factor(config: dict) -> float:
  """Forward+backward passes per step relative to a plain step (SAM: 1 + ascent share)."""
  return sam.step_cost(config["sam"] or "none", float(config["sam_ascent_fraction"]))


def planning_config(config):
  """The config the planner sees: a core-hour budget shrinks by the SAM cost factor so the
  fine-tune, both passes counted, spends the budget (epochs need no change: repeated
  augmentation keeps an epoch's compute)."""
  planned = copy.deepcopy(config)
  if planned.get("budget_core_hours"):
    planned.budget_core_hours = float(planned.budget_core_hours) / cost_factor(planned)
  return planned


def charged_plan(plan, config: dict):
  """``plan`` with every pass of a step charged (core hours x ``cost_factor``), so the
  engine's budget check and results.json's planned hours count both SAM passes."""
  factor = cost_factor(config)
  if factor == 1.0:
    return plan
  charged = float(plan.core_hours) * factor
  if dataclasses.is_dataclass(plan):
    return dataclasses.replace(plan, core_hours=charged)
  plan = copy.copy(plan)
  plan.core_hours = charged
  return plan


def accounting(config: dict, plan, record: dict, init_info: dict, pretrain: dict) -> dict:
  """The fields a fine-tune adds to results.json."""
  factor = cost_factor(config)
  planned = record.get("planned_core_hours")
  multiplicity = int(config["augment_multiplicity"] or 1)
  dataset_size = int(record.get("dataset_size") or 0)
  pretrain_hours = pretrain.get("planned_core_hours") or pretrain.get("training_core_hours")
  return {
      "finetune_top1": record["heldout_top1"],
      # Both count every SAM pass: measured by the clock, planned by ``charged_plan``.
      "finetune_core_hours": record["training_core_hours"],
      "finetune_planned_core_hours": planned,
      "pretrain_core_hours": pretrain_hours,
      "finetune": {
          "init": init_info, "pretrain": pretrain,
          "sam": sam.canonical(config["sam"]), "sam_rho": float(config["sam_rho"]),
          "sam_ascent_fraction": sam.ascent_share(config["sam"],
                                                  float(config["sam_ascent_fraction"])),
          "step_cost_factor": factor,
          "augment_multiplicity": multiplicity,
          "unique_images_per_epoch": repeated.unique_per_epoch(dataset_size, multiplicity),
          "train_resolution": int(plan.resolution),
          "eval_resolution": int(config.get("eval_resolution") or plan.resolution),
      },
  }
