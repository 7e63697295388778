"""Plan a pre-training run from a compute budget or an epoch budget.

Examples:
  python -m reproduce.plan --model=nfnet_f7plus --epochs=8          # the paper's 110k run
  python -m reproduce.plan --model=nfnet_f0 --budget_core_hours=400 --format=json
  python -m reproduce.plan --sweep                                   # Figure 2 grid
  python -m reproduce.plan --allocate --budget_core_hours=20000      # rule-of-thumb pairs
  python -m reproduce.plan --model=nfnet_mini_f0 --epochs=2 --dataset_size=1437 \
      --hardware=cpu --batch_size=16 --measure --measure_steps=3

Bad input prints one line naming the flag on stderr and exits with status 2.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TF's start-up chatter off stderr

import json  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402

# A private flag registry: other mains (reproduce.pretrain, ...) may define --model or
# --epochs too, and tests import several of them into one process.
FLAGS = flags.FlagValues()


def _define(kind: str, name: str, default, help_text: str):
  return getattr(flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=FLAGS)


_MODEL = _define("string", "model", None, "Model name (see python -m model_defs.summary).")
_MODELS = _define("list", "models", None,
                            "Models for --sweep/--allocate (default: the --family list).")
_FAMILY = _define("string", "family", "nfnet",
                              "Model list for --sweep/--allocate: nfnet (Figure 2) or nfnet_mini.")
_BUDGET = _define("float", "budget_core_hours", None, "Compute budget in --hardware core hours.")
_EPOCHS = _define("float", "epochs", None, "Epoch budget (exclusive with --budget_core_hours).")
_DATASET_SIZE = _define("float", "dataset_size", None,
                                   "Images per epoch (default: JFT-4B, from reproduce.published).")
_HARDWARE = _define("string", "hardware", "tpu_v4", "Accelerator kind (budget.HARDWARE).")
_BATCH_SIZE = _define("integer", "batch_size", 4096, "Global batch size.")
_RESOLUTION = _define("integer", "resolution", None,
                      "Training resolution (default: 224 for full NFNets, else the model's).")
_NUM_CLASSES = _define("integer", "num_classes", 1000, "Classifier width for FLOP counting.")
_NUM_CORES = _define("integer", "num_cores", None,
                                  "Cores used, for wall clock (default: replicas x cores/device).")
_NUM_REPLICAS = _define("integer", "num_replicas", 1, "Data-parallel replicas.")
_MFU = _define("float", "mfu", None, "Override the calibrated model-FLOP utilisation.")
_MEASURE = _define("bool", "measure", False,
                             "Time real training steps here and plan with the measured images/s.")
_MEASURE_STEPS = _define("integer", "measure_steps", 5, "Timed steps for --measure.")
_MEASURE_BATCH = _define("integer", "measure_batch_size", None,
                         "Batch for --measure (default: --batch_size / --num_replicas).")
_SWEEP = _define("bool", "sweep", False, "Print the models x epochs grid (Figure 2).")
_SWEEP_EPOCHS = _define("list", "sweep_epochs", None, "Epoch grid for --sweep "
                                  "(default 0.25,0.5,1,2,4,8).")
_ALLOCATE = _define("bool", "allocate", False,
                              "Rank models for --budget_core_hours by the rule of thumb.")
_LR_GRID = _define("integer", "lr_grid", None, "Also list N factor-2 LR candidates.")
_FORMAT = _define("string", "format", "table", "Output: table or json.")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv):
  """Parses ``FLAGS``; a bad flag is one line on stderr and exit status 2."""
  if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
    print(__doc__)
    print(FLAGS.get_help())
    sys.exit(0)
  FLAGS.unparse_flags()
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  flags.FLAGS.mark_as_parsed()  # app.run reads absl's own flags (--run_with_pdb, ...)
  return rest


def _fmt_hours(hours: float) -> str:
  if hours >= 1e3:
    return f"{hours / 1e3:.3g}k"
  return f"{hours:.3g}"


def _plan_table(plan, lr_candidates=None) -> str:
  rows = [
      ("model", f"{plan.model} ({plan.params / 1e6:.1f}M params, {plan.resolution} px)"),
      ("hardware", f"{plan.hardware} x {plan.num_cores} cores, {plan.num_replicas} replicas"),
      ("core hours", f"{plan.core_hours:,.6g}  (wall clock {plan.wall_clock_hours:,.6g} h)"),
      ("epochs", f"{plan.epochs:.6g} of {plan.dataset_size:,} images"),
      ("steps", f"{plan.steps:,} x batch {plan.batch_size} = {plan.images:,} images"),
      ("base LR", f"{plan.base_lr:g} ({plan.decay}, {plan.warmup_steps:,} warm-up steps)"),
      ("train FLOPs/image", f"{plan.train_flops_per_image:.4g} "
                            f"({plan.train_flops_multiplier:g} x forward)"),
      ("images/s/core", f"{plan.images_per_second_per_core:.4g} ({plan.throughput_source}, "
                        f"MFU {plan.mfu:.3f} of {plan.peak_flops_per_core / 1e12:.4g} TFLOP/s)"),
  ]
  if lr_candidates:
    rows.append(("LR grid", ", ".join(f"{lr:g}" for lr in lr_candidates)))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _sweep_table(models, epochs_grid, plans) -> str:
  cells = [(m, e) for m in models for e in epochs_grid]  # budget.sweep's order
  by_cell = dict(zip(cells, plans))
  header = ["model"] + [f"{e:g} ep" for e in epochs_grid]
  lines = [header]
  for m in models:
    lines.append([m] + [_fmt_hours(by_cell[(m, e)].core_hours) for e in epochs_grid])
  widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
  text = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                    enumerate(zip(row, widths))) for row in lines]
  hardware = plans[0].hardware
  return "\n".join(text + [f"({hardware} core hours; base LR per cell in --format=json)"])


def _allocation_table(allocations) -> str:
  lines = [("", "model", "epochs", "target", "core hours", "base LR")]
  for a in allocations:
    lines.append(("*" if a.recommended else "", a.model, f"{a.epochs:.3g}",
                  f"{a.target_epochs:.3g}", _fmt_hours(a.core_hours), f"{a.plan.base_lr:g}"))
  widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)


def _run(budget) -> str:
  """Does the work; returns the text to print. Raises budget.PlanError on bad input."""
  out_format = _FORMAT.value
  if out_format not in ("table", "json"):
    raise budget.PlanError("format", f"must be table or json, got {out_format!r}")
  common = dict(dataset_size=_DATASET_SIZE.value, hardware=_HARDWARE.value,
                batch_size=_BATCH_SIZE.value, resolution=_RESOLUTION.value,
                num_replicas=_NUM_REPLICAS.value, num_cores=_NUM_CORES.value,
                num_classes=_NUM_CLASSES.value, mfu=_MFU.value)
  budget.get_hardware(_HARDWARE.value)

  if _SWEEP.value or _ALLOCATE.value:
    if _SWEEP.value and _ALLOCATE.value:
      raise budget.PlanError("sweep", "and --allocate are exclusive")
    models = _MODELS.value or ([_MODEL.value] if _MODEL.value else
                               list(budget.family_models(_FAMILY.value)))
    if _SWEEP.value:
      try:
        grid = ([float(e) for e in _SWEEP_EPOCHS.value] if _SWEEP_EPOCHS.value
                else list(budget.FIGURE2_EPOCHS))
      except ValueError:
        raise budget.PlanError("sweep_epochs", f"must be numbers, got {_SWEEP_EPOCHS.value}")
      plans = budget.sweep(models, grid, **common)
      if out_format == "json":
        return json.dumps({"sweep": [p.to_dict() for p in plans]}, indent=2)
      return _sweep_table(models, grid, plans)
    if _BUDGET.value is None:
      raise budget.PlanError("budget_core_hours", "is required with --allocate")
    allocations = budget.allocate(_BUDGET.value, models, **common)
    if out_format == "json":
      return json.dumps({"allocation": [a.to_dict() for a in allocations]}, indent=2)
    return _allocation_table(allocations)

  if not _MODEL.value:
    raise budget.PlanError("model", "is required (or use --sweep / --allocate)")
  if (_BUDGET.value is None) == (_EPOCHS.value is None):
    raise budget.PlanError("budget_core_hours", "or --epochs: give exactly one")
  measured = None
  if _MEASURE.value:
    measure_batch = _MEASURE_BATCH.value or max(1, _BATCH_SIZE.value // max(1, _NUM_REPLICAS.value))
    measured = budget.measure_throughput(
        _MODEL.value, measure_batch, _RESOLUTION.value, _MEASURE_STEPS.value,
        _NUM_CLASSES.value, hardware=_HARDWARE.value)
    common["images_per_second_per_core"] = measured.median
  if _BUDGET.value is not None:
    plan = budget.plan_from_budget(_MODEL.value, _BUDGET.value, **common)
  else:
    plan = budget.plan_from_epochs(_MODEL.value, _EPOCHS.value, **common)
  lr_candidates = budget.lr_grid(plan.base_lr, _LR_GRID.value) if _LR_GRID.value is not None \
      else None
  if out_format == "json":
    result = plan.to_dict()
    if lr_candidates:
      result["lr_grid"] = lr_candidates
    if measured:
      result["measurement"] = measured.to_dict()
    return json.dumps(result, indent=2)
  text = _plan_table(plan, lr_candidates)
  if measured:
    text += (f"\nmeasured  {measured.steps} steps of batch {measured.batch_size}: images/s/core "
             f"min {measured.min:.4g}, median {measured.median:.4g}, max {measured.max:.4g}")
  return text


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from reproduce.planning import budget  # Deferred: imports model_defs (and TensorFlow).
  try:
    text = _run(budget)
  except budget.PlanError as e:
    _fail(str(e).splitlines()[0])
  print(text)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
