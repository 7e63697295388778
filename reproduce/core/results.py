"""The ``results.json`` contract between the run directory (writer) and analysis (reader).

A finished run's ``<run dir>/results.json`` has three parts, each written by one method of
``reproduce.train.rundir.RunDirectory`` and declared here: the pre-training record
(``RECORD_FIELDS``, ``write_record``), the fine-tune fields (``FINETUNE_FIELDS``,
``add_finetune``) and the eval section (``EVAL_SECTION``, ``add_eval``). Fits, the comparison
and the study read it. The schema name, the file name and the field names live here only.
"""

from __future__ import annotations

import math

SCHEMA = "nfnet-vit-scaling/results/v1"
FILE = "results.json"
FITS_SCHEMA = "nfnet-vit-scaling/fits/v2"  # v2: per-family claims, FLOPs size axis

# The pre-training record, in the order written (``finetune_top1``: None until a fine-tune
# adds it).
RECORD_FIELDS = ("schema", "model", "family", "params", "flops_per_image", "resolution",
                 "dataset", "dataset_size", "num_classes", "epochs", "steps", "batch_size",
                 "base_lr", "hardware", "planned_core_hours", "measured_core_hours",
                 "training_core_hours", "training_over_planned", "overhead_seconds",
                 "wall_seconds", "heldout_loss", "heldout_top1", "heldout_examples",
                 "eval_weights", "final_train_loss", "finetune_top1", "num_replicas",
                 "strategy", "dtype_policy", "plan", "config")
# What a fine-tune adds to results.json: ``reproduce.finetune`` to its own run (its accounting
# and a ``finetune`` section); the study also to the run it started from (its top-1, cost and
# ``finetune_run``, where the fits read them).
FINETUNE_FIELDS = ("finetune_top1", "finetune_core_hours", "finetune_planned_core_hours",
                   "pretrain_core_hours", "finetune_run", "finetune")
# ``eval[dataset][resolution as a string] = entry``: what ``reproduce.evaluate`` adds.
EVAL_SECTION = "eval"

# Which field holds a run's compute, by the name the CLIs use for it.
COMPUTE_FIELDS = {"planned": "planned_core_hours", "measured": "measured_core_hours"}
REQUIRED_FIELDS = ("schema", "model", "family", "params", "flops_per_image", "epochs",
                   "base_lr", "heldout_loss", "heldout_top1")
POSITIVE_FIELDS = ("params", "flops_per_image", "epochs", "base_lr")
FRACTION_FIELDS = ("heldout_top1", "finetune_top1")


def _finite_number(record: dict, field: str, positive: bool) -> str | None:
  """An error string when ``record[field]`` is not a finite (positive) number, else None."""
  value = record.get(field)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    return f"{field}={value!r} is not a finite number"
  if positive and value <= 0:
    return f"{field}={value!r} must be > 0"
  return None


def problems(record, compute_field: str = COMPUTE_FIELDS["planned"]) -> list[str]:
  """Schema problems of one results.json record (empty when valid)."""
  if not isinstance(record, dict):
    return ["not a JSON object"]
  missing = [f for f in REQUIRED_FIELDS + (compute_field,) if record.get(f) is None]
  if missing:
    return [f"missing {', '.join(missing)}"]
  found = []
  if record["schema"] != SCHEMA:
    found.append(f"schema={record['schema']!r}, expected {SCHEMA!r}")
  for field in POSITIVE_FIELDS + (compute_field,):
    found.append(_finite_number(record, field, positive=True))
  found.append(_finite_number(record, "heldout_loss", positive=False))
  for field in FRACTION_FIELDS:
    if record.get(field) is None:
      continue
    error = _finite_number(record, field, positive=False)
    if error is None and not 0.0 <= record[field] <= 1.0:
      error = f"{field}={record[field]!r} must be a fraction in [0, 1]"
    found.append(error)
  return [p for p in found if p]
