r"""Plan a pre-training run from a compute budget or an epoch budget.

Examples:
  python -m reproduce.plan --model=nfnet_f7plus --epochs=8          # the paper's 110k run
  python -m reproduce.plan --model=nfnet_f0 --budget_core_hours=400 --format=json
  python -m reproduce.plan --sweep                                   # Figure 2 grid
  python -m reproduce.plan --allocate --budget_core_hours=20000      # rule-of-thumb pairs
  python -m reproduce.plan --model=nfnet_mini_f0 --epochs=2 --dataset_size=1437 \
      --hardware=cpu --batch_size=16 --measure --measure_steps=3

Bad input prints one line naming the flag on stderr and exits with status 2.
"""

import dataclasses
import json

from absl import app, flags

from reproduce import planning  # pure arithmetic: imports no TensorFlow
from reproduce.core import cli
from reproduce.core import published
from reproduce.planning import plan_tables

_MODEL = flags.DEFINE_string("model", None, "Model name (see python -m model_defs.summary).")
_MODELS = flags.DEFINE_list("models", None,
                            "Models for --sweep/--allocate (default: the --family list).")
_FAMILY = flags.DEFINE_string("family", "nfnet",
                              "Model list for --sweep/--allocate: nfnet (Figure 2) or nfnet_mini.")
_BUDGET = flags.DEFINE_float("budget_core_hours", None, "Compute budget in --hardware core hours.")
_EPOCHS = flags.DEFINE_float("epochs", None, "Epoch budget (exclusive with --budget_core_hours).")
_DATASET_SIZE = flags.DEFINE_float("dataset_size", None,
                                   "Images per epoch (default: JFT-4B, from core/published.py).")
_HARDWARE = flags.DEFINE_string("hardware", planning.PAPER_HARDWARE,
                                 "Accelerator kind (planning.HARDWARE; default: the paper's).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", published.PAPER_BATCH_SIZE,
                                   "Global batch size (default: the paper's).")
_RESOLUTION = flags.DEFINE_integer(
    "resolution", None, "Training resolution (default: 224 for full NFNets, else the model's).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classifier width for FLOP counting.")
_NUM_CORES = flags.DEFINE_integer("num_cores", None,
                                  "Cores used, for wall clock (default: replicas x cores/device).")
_NUM_REPLICAS = flags.DEFINE_integer("num_replicas", 1, "Data-parallel replicas.")
_MFU = flags.DEFINE_float("mfu", None, "Override the calibrated model-FLOP utilisation.")
_MEASURE = flags.DEFINE_bool("measure", False,
                             "Time real training steps here and plan with the measured images/s.")
_MEASURE_STEPS = flags.DEFINE_integer("measure_steps", 5, "Timed steps for --measure.")
_MEASURE_BATCH = flags.DEFINE_integer(
    "measure_batch_size", None, "Batch for --measure (default: --batch_size / --num_replicas).")
_SWEEP = flags.DEFINE_bool("sweep", False, "Print the models x epochs grid (Figure 2).")
_SWEEP_EPOCHS = flags.DEFINE_list("sweep_epochs", None,
                                  "Epoch grid for --sweep (default 0.25,0.5,1,2,4,8).")
_ALLOCATE = flags.DEFINE_bool("allocate", False,
                              "Rank models for --budget_core_hours by the rule of thumb.")
_LR_GRID = flags.DEFINE_integer("lr_grid", None, "Also list N factor-2 LR candidates.")
_FORMAT = flags.DEFINE_string("format", "table", "Output: table or json.")



def _sweep_epochs() -> list[float]:
  if not _SWEEP_EPOCHS.value:
    return list(planning.FIGURE2_EPOCHS)
  try:
    return [float(e) for e in _SWEEP_EPOCHS.value]
  except ValueError:
    raise planning.PlanError("sweep_epochs",
                             f"must be numbers, got {_SWEEP_EPOCHS.value}") from None


def _check_flags() -> None:
  """Checks what needs no model lookup, before TensorFlow is imported; raises PlanError."""
  if _FORMAT.value not in ("table", "json"):
    raise planning.PlanError("format", f"must be table or json, got {_FORMAT.value!r}")
  planning.get_hardware(_HARDWARE.value)
  for flag in (_BATCH_SIZE, _NUM_REPLICAS, _NUM_CLASSES, _NUM_CORES, _RESOLUTION, _DATASET_SIZE):
    if flag.value is not None:
      planning.positive(flag.name, flag.value, integer=True)
  if _BATCH_SIZE.value % _NUM_REPLICAS.value:
    raise planning.PlanError("batch_size", f"={_BATCH_SIZE.value} must be divisible by "
                             f"--num_replicas={_NUM_REPLICAS.value}")
  if _LR_GRID.value is not None and _LR_GRID.value < 1:
    raise planning.PlanError("lr_grid", f"must be >= 1, got {_LR_GRID.value}")
  if _SWEEP.value and _ALLOCATE.value:
    raise planning.PlanError("sweep", "and --allocate are exclusive")
  if _SWEEP.value or _ALLOCATE.value:
    if not (_MODELS.value or _MODEL.value):
      planning.family_models(_FAMILY.value)
    if _SWEEP.value:
      _sweep_epochs()
    elif _BUDGET.value is None:
      raise planning.PlanError("budget_core_hours", "is required with --allocate")
    else:
      planning.positive("budget_core_hours", _BUDGET.value)
    return
  if not _MODEL.value:
    raise planning.PlanError("model", "is required (or use --sweep / --allocate)")
  if (_BUDGET.value is None) == (_EPOCHS.value is None):
    raise planning.PlanError("budget_core_hours", "or --epochs: give exactly one")
  if _BUDGET.value is not None:
    planning.positive("budget_core_hours", _BUDGET.value)
  else:
    planning.positive("epochs", _EPOCHS.value)
  if _MEASURE.value:
    planning.positive("measure_steps", _MEASURE_STEPS.value, integer=True)
    if _MEASURE_BATCH.value is not None:
      planning.positive("measure_batch_size", _MEASURE_BATCH.value, integer=True)


def _plan_kwargs() -> dict:
  return dict(dataset_size=_DATASET_SIZE.value, hardware=_HARDWARE.value,
              batch_size=_BATCH_SIZE.value, resolution=_RESOLUTION.value,
              num_replicas=_NUM_REPLICAS.value, num_cores=_NUM_CORES.value,
              num_classes=_NUM_CLASSES.value, mfu=_MFU.value)


def _sweep_or_allocation(as_json: bool) -> str:
  models = _MODELS.value or ([_MODEL.value] if _MODEL.value else
                             list(planning.family_models(_FAMILY.value)))
  if _SWEEP.value:
    grid = _sweep_epochs()
    plans = planning.sweep(models, grid, **_plan_kwargs())
    if as_json:
      return json.dumps({"sweep": [p.to_dict() for p in plans]}, indent=2)
    return plan_tables.sweep_table(models, grid, plans)
  allocations = planning.allocate(_BUDGET.value, models, **_plan_kwargs())
  if as_json:
    return json.dumps({"allocation": [a.to_dict() for a in allocations]}, indent=2)
  return plan_tables.allocation_table(allocations)


def _measure():
  """Times the training engine's own step on this machine (``reproduce.train.throughput``)."""
  from reproduce.train import throughput  # after flags: see core/cli.py
  planning.model_spec(_MODEL.value)  # an unknown name is a --model error, not a crash
  resolution = _RESOLUTION.value or planning.default_resolution(_MODEL.value)
  batch_size = _MEASURE_BATCH.value or max(1, _BATCH_SIZE.value // _NUM_REPLICAS.value)
  return throughput.measure(_MODEL.value, batch_size, resolution, steps=_MEASURE_STEPS.value,
                            num_classes=_NUM_CLASSES.value, hardware=_HARDWARE.value)


def _one_plan(as_json: bool) -> str:
  kwargs = _plan_kwargs()
  measured = _measure() if _MEASURE.value else None
  if measured:
    kwargs["images_per_second_per_core"] = measured.median
  if _BUDGET.value is not None:
    plan = planning.plan_from_budget(_MODEL.value, _BUDGET.value, **kwargs)
  else:
    plan = planning.plan_from_epochs(_MODEL.value, _EPOCHS.value, **kwargs)
  if measured:
    plan = dataclasses.replace(plan, throughput_note=(
        f"measured {measured.median:.4g} images/s/core (--measure: the engine's train step, "
        f"median of {measured.steps})"))
  lr_candidates = (planning.lr_grid(plan.base_lr, _LR_GRID.value)
                   if _LR_GRID.value is not None else None)
  if as_json:
    result = plan.to_dict()
    if lr_candidates:
      result["lr_grid"] = lr_candidates
    if measured:
      result["measurement"] = measured.to_dict()
    return json.dumps(result, indent=2)
  text = plan_tables.plan_table(plan, lr_candidates)
  if measured:
    text += "\n" + plan_tables.measurement_line(measured)
  return text


def main(argv):
  cli.refuse_stray_arguments(argv)
  with cli.errors_as_one_line():
    _check_flags()
    cli.import_tensorflow()  # model lookups import model_defs, hence Keras and TensorFlow
    as_json = _FORMAT.value == "json"
    text = _sweep_or_allocation(as_json) if _SWEEP.value or _ALLOCATE.value else _one_plan(as_json)
  print(text)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
