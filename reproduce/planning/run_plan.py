"""``Plan``: a concrete run (integer steps, batch, LR, warm-up) and what it costs.

One accounting rule, from a budget in core hours or in epochs:

  core_hours = images x train_flops_per_image / (mfu x peak_flops_per_core) / 3600
  train_flops_per_image = TRAIN_FLOPS_PER_FORWARD (3) x forward FLOPs at the train resolution

with the calibrated MFU (``mfu.calibration``) or a measured images/s per core.
"""

from __future__ import annotations

import dataclasses
import math

from reproduce.core import published
from reproduce.planning import cost
from reproduce.planning import lr as lr_rules  # not `lr`: the plan functions' LR override
from reproduce.planning.mfu import calibration_note, hardware_mfu
from reproduce.planning.errors import PlanError, positive
from reproduce.planning.hardware import PAPER_HARDWARE, get_hardware, peak_flops_per_core

DECAY = "cosine"

# A budget within this many steps of the next whole step buys that step (absorbs float
# round-off so budget -> plan -> core_hours -> plan is exact).
_STEP_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class Plan:
  """A concrete pre-training run. ``reproduce.pretrain`` consumes exactly this.

  ``core_hours`` is defined from the integer ``steps``:
  ``steps x batch_size / images_per_second_per_core / 3600``; ``epochs`` is
  ``steps x batch_size / dataset_size``. So ``plan_from_epochs(p.epochs)`` and
  ``plan_from_budget(p.core_hours)`` both give back ``p``.
  """
  model: str
  family: str
  params: int
  hardware: str
  num_cores: int
  num_replicas: int
  core_hours: float
  wall_clock_hours: float
  epochs: float
  images: int
  steps: int
  batch_size: int
  per_replica_batch_size: int
  base_lr: float
  warmup_steps: int
  decay: str
  mfu: float
  peak_flops_per_core: float
  dataset_size: int
  resolution: int
  num_classes: int
  forward_flops_per_image: int
  train_flops_per_image: int
  train_flops_multiplier: float
  total_train_flops: float
  images_per_second_per_core: float
  throughput_source: str  # "analytic" (calibrated MFU) or "measured"
  throughput_note: str = ""  # which calibration or measurement, in words

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _setup(model: str, *, dataset_size: int | None = None, hardware: str = PAPER_HARDWARE,
           batch_size: int = published.PAPER_BATCH_SIZE, resolution: int | None = None,
           num_replicas: int = 1, num_cores: int | None = None, num_classes: int = 1000,
           mfu: float | None = None, images_per_second_per_core: float | None = None,
           train_flops_multiplier: float = cost.TRAIN_FLOPS_PER_FORWARD) -> dict:
  """The ``Plan`` fields of a run of ``model`` that do not depend on its length; the plan
  functions' setup options.

  Args:
    model: registered model name.
    dataset_size: images per epoch (default JFT-4B, 4e9).
    hardware: key of ``HARDWARE`` (default: the paper's).
    batch_size: global batch size (default: the paper's).
    resolution: training resolution (default ``default_resolution(model)``).
    num_replicas: data-parallel replicas; must divide ``batch_size``.
    num_cores: cores used (sets wall clock only); default replicas x cores per device.
    num_classes: classifier width used for the FLOP count.
    mfu: override the calibrated utilisation.
    images_per_second_per_core: a measured throughput; replaces the analytic one.
    train_flops_multiplier: training FLOPs per forward FLOP.
  """
  if dataset_size is None:
    dataset_size = published.value("jft4b.dataset_size")
  dataset_size = positive("dataset_size", dataset_size, integer=True)
  batch_size = positive("batch_size", batch_size, integer=True)
  num_replicas = positive("num_replicas", num_replicas, integer=True)
  num_classes = positive("num_classes", num_classes, integer=True)
  multiplier = positive("train_flops_multiplier", train_flops_multiplier)
  hw = get_hardware(hardware)
  if batch_size % num_replicas:
    raise PlanError("batch_size", f"={batch_size} must be divisible by "
                    f"--num_replicas={num_replicas}")
  spec = cost.model_spec(model)
  resolution = cost.default_resolution(model) if resolution is None else positive(
      "resolution", resolution, integer=True)
  num_cores = num_replicas * hw.cores_per_device if num_cores is None else positive(
      "num_cores", num_cores, integer=True)
  stats = cost.model_stats(model, resolution, num_classes)
  train_flops = int(round(multiplier * stats.flops))
  peak = peak_flops_per_core(hardware)
  if images_per_second_per_core is not None:
    ips = positive("images_per_second_per_core", images_per_second_per_core)
    mfu = ips * train_flops / peak
    source, note = "measured", f"given: {ips:.4g} images/s/core"
  elif mfu is not None:
    mfu = positive("mfu", mfu)
    ips = mfu * peak / train_flops
    source, note = "analytic", f"MFU {mfu:.3g} given"
  else:
    mfu = hardware_mfu(hardware)
    ips = mfu * peak / train_flops
    source, note = "analytic", calibration_note(hardware, spec.family)
  return dict(model=model, family=spec.family, params=stats.params, hardware=hardware,
              num_cores=num_cores, num_replicas=num_replicas, batch_size=batch_size,
              dataset_size=dataset_size, resolution=resolution, num_classes=num_classes,
              forward_flops_per_image=stats.flops, train_flops_per_image=train_flops,
              train_flops_multiplier=multiplier, peak_flops_per_core=peak, mfu=mfu,
              images_per_second_per_core=ips, throughput_source=source, throughput_note=note)


def _core_hours(setup: dict, steps: int) -> float:
  return steps * setup["batch_size"] / setup["images_per_second_per_core"] / 3600.0


def _plan(setup: dict, steps: int, warmup_steps: int | None, base_lr: float | None) -> Plan:
  images = steps * setup["batch_size"]
  epochs = images / setup["dataset_size"]
  core_hours = _core_hours(setup, steps)
  if warmup_steps is None:
    warmup_steps = lr_rules.default_warmup_steps(steps)
  elif not 0 <= warmup_steps <= steps:
    raise PlanError("warmup_steps", f"must be in [0, {steps}] (the plan's steps), "
                    f"got {warmup_steps}")
  if base_lr is None:
    base_lr = lr_rules.base_lr(setup["model"], epochs, setup["batch_size"])
  return Plan(
      **setup, core_hours=core_hours, wall_clock_hours=core_hours / setup["num_cores"],
      epochs=epochs, images=images, steps=steps,
      per_replica_batch_size=setup["batch_size"] // setup["num_replicas"], base_lr=base_lr,
      warmup_steps=int(warmup_steps), decay=DECAY,
      total_train_flops=float(images) * setup["train_flops_per_image"])


def plan_from_budget(model: str, core_hours: float, *, warmup_steps: int | None = None,
                     lr: float | None = None, **setup_options) -> Plan:
  """The longest run of ``model`` that fits in ``core_hours`` of ``hardware``.

  Steps = floor(budget / cost of one step) (a budget within 1e-6 of a step buys it), so the
  plan's ``core_hours`` is <= the budget and within one step of it.

  Args:
    model: registered model name.
    core_hours: budget in ``hardware`` core hours.
    warmup_steps: override ``default_warmup_steps``.
    lr: override the LR rule.
    **setup_options: the run's setup (``hardware``, ``batch_size``, ``dataset_size``, ...),
      arguments and defaults as ``_setup``.

  Raises:
    PlanError: bad input; the message names the flag.
  """
  core_hours = positive("budget_core_hours", core_hours)
  setup = _setup(model, **setup_options)
  step_cost = _core_hours(setup, 1)
  steps = math.floor(core_hours / step_cost + _STEP_TOLERANCE)
  if steps < 1:
    raise PlanError("budget_core_hours", f"={core_hours:g} is smaller than one training step "
                    f"({step_cost:.3g} core hours at --batch_size={setup['batch_size']})")
  return _plan(setup, steps, warmup_steps, lr)


def plan_from_epochs(model: str, epochs: float, *, warmup_steps: int | None = None,
                     lr: float | None = None, **setup_options) -> Plan:
  """A run of ``model`` for ``epochs`` passes over ``dataset_size`` images.

  Steps = round(epochs x dataset_size / batch_size). Arguments as ``plan_from_budget``.
  """
  epochs = positive("epochs", epochs)
  setup = _setup(model, **setup_options)
  steps = cost.steps_from_epochs(epochs, setup["dataset_size"], setup["batch_size"])
  if steps < 1:
    raise PlanError("epochs", f"={epochs:g} is less than one step of --batch_size="
                    f"{setup['batch_size']} over --dataset_size={setup['dataset_size']}")
  return _plan(setup, steps, warmup_steps, lr)


def plan_from_config(config, dataset_size: int, num_classes: int, num_replicas: int = 1,
                     images_per_second_per_core: float | None = None,
                     throughput_note: str | None = None) -> Plan:
  """The plan of an experiment config (reproduce/configs): its budget, else its epochs.

  ``config.dataset_size`` overrides ``dataset_size`` when set; the budget wins when both
  ``config.budget_core_hours`` and ``config.epochs`` are set. A measured
  ``images_per_second_per_core`` (``reproduce.train.budgeting``) is used when the config sets
  none, with ``throughput_note`` saying how it was measured.
  """
  common = dict(
      dataset_size=int(config.get("dataset_size") or dataset_size),
      hardware=config.hardware, batch_size=int(config.batch_size),
      resolution=config.get("resolution"), num_replicas=num_replicas,
      num_classes=int(num_classes), mfu=config.get("mfu"),
      images_per_second_per_core=(config.get("images_per_second_per_core")
                                  or images_per_second_per_core),
      warmup_steps=config.get("warmup_steps"), lr=config.get("base_lr"))
  if config.get("budget_core_hours"):
    plan = plan_from_budget(config.model, float(config.budget_core_hours), **common)
  elif config.get("epochs"):
    plan = plan_from_epochs(config.model, float(config.epochs), **common)
  else:
    raise PlanError("config.budget_core_hours", "or --config.epochs must be set")
  if throughput_note and not config.get("images_per_second_per_core"):
    plan = dataclasses.replace(plan, throughput_note=throughput_note)
  return plan
