"""Compute budgets in accelerator core hours: hardware table, Plan, LR rule, allocation.

The 2023 paper measures every run in TPU-v4 core hours. This module turns a model and a
budget (core hours, or epochs) into a concrete training ``Plan`` (integer steps, batch,
learning rate, warm-up) and back, using one accounting rule:

  core_hours = images x train_flops_per_image / (mfu x peak_flops_per_core) / 3600
  train_flops_per_image = TRAIN_FLOPS_PER_FORWARD (3) x forward FLOPs at the train resolution

The model-FLOP utilisation ``mfu`` is not typed in: it is calibrated so that the paper's
anchor (NFNet-F7+, 224 px, 8 epochs of JFT-4B on TPU-v4 = 110k core hours, all read from
``reproduce.published``) comes out exactly. A measured images/s can replace the analytic
throughput (``measure_throughput``). See docs/budget.md for the worked example.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import statistics
import time
from typing import Sequence

import model_defs
from reproduce.core import published

# Training step ~ forward + backward (backward ~ 2 x forward): the usual 3x convention
# (Kaplan et al. 2020; Hoffmann et al. 2022). Overridable per plan.
TRAIN_FLOPS_PER_FORWARD = 3.0

PAPER_BATCH_SIZE = published.PAPER_BATCH_SIZE
PAPER_PRETRAIN_RESOLUTION = published.PAPER_PRETRAIN_RESOLUTION
DECAY = "cosine"

# Figure 2 grid ([P] Figure 2 legend, Figure 3 x-axis ticks).
FIGURE2_MODELS = ("nfnet_f0", "nfnet_f1", "nfnet_f3", "nfnet_f3plus", "nfnet_f7",
                  "nfnet_f7plus")
FIGURE2_EPOCHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
FAMILIES = {
    "nfnet": FIGURE2_MODELS,
    "nfnet_mini": tuple(m.replace("nfnet_", "nfnet_mini_") for m in FIGURE2_MODELS),
}

# Warm-up default: NFNet JFT-300M runs used a 5,000-step linear warm-up ([N] A.5); short
# runs get a fixed fraction of their steps instead so warm-up never dominates.
WARMUP_FRACTION = 0.05
WARMUP_CAP_STEPS = 5000

# A budget within this many steps of the next whole step buys that step (absorbs float
# round-off so budget -> plan -> core_hours -> plan is exact).
_STEP_TOLERANCE = 1e-6


class PlanError(ValueError):
  """Bad planning input. The message is one line and starts with the offending --flag."""

  def __init__(self, flag: str, message: str):
    self.flag = flag
    separator = "" if message[:1] in ("=", ":") else " "
    super().__init__(f"--{flag}{separator}{message}")


# ----------------------------------------------------------------------------------------
# Hardware table.


@dataclasses.dataclass(frozen=True)
class Hardware:
  """One accelerator kind.

  Attributes:
    name: key used by ``--hardware``.
    peak_flops_per_core: theoretical dense bf16 FLOP/s of one core (None: measured, cpu).
    core: what one "core" is for core-hour accounting.
    cores_per_device: cores behind one framework device (= one replica): 2 for megacore
      TPUs (v4, v5p) whose two TensorCores TF/JAX expose as one device.
    mfu_scale: this hardware's utilisation relative to the calibrated TPU-v4 anchor.
    source: where the peak comes from, and notes.
  """
  name: str
  peak_flops_per_core: float | None
  core: str
  cores_per_device: int
  mfu_scale: float
  source: str


_TC = "one TensorCore"
HARDWARE: dict[str, Hardware] = {h.name: h for h in (
    Hardware("tpu_v2", 45e12 / 2, _TC, 1, 1.0,
             "45 TFLOP/s bf16 per chip, 2 TensorCores per chip (Cloud TPU docs; Jouppi et al. "
             "CACM 2020)"),
    Hardware("tpu_v3", 123e12 / 2, _TC, 1, 1.0,
             "123 TFLOP/s bf16 per chip, 2 TensorCores per chip (Cloud TPU docs; Jouppi et al. "
             "ISCA 2023). The anchor MFU predicts ~246k v3 core hours for F7+ vs the paper's 250k"),
    Hardware("tpu_v4", 275e12 / 2, _TC, 2, 1.0,
             "275 TFLOP/s bf16 per chip, 2 TensorCores per chip (megacore: one device per chip) "
             "(Jouppi et al. ISCA 2023). 2.24x a v3 core: the paper's 'roughly double' "
             "(footnote 1). MFU calibration anchor"),
    Hardware("tpu_v5e", 197e12, _TC, 1, 1.0,
             "197 TFLOP/s bf16 per chip, 1 TensorCore per chip (Cloud TPU v5e docs)"),
    Hardware("tpu_v5p", 459e12 / 2, _TC, 2, 1.0,
             "459 TFLOP/s bf16 per chip, 2 TensorCores per chip (megacore) (Cloud TPU v5p docs)"),
    Hardware("tpu_v6e", 918e12, _TC, 1, 1.0,
             "918 TFLOP/s bf16 per chip, 1 TensorCore per chip (Cloud TPU v6e Trillium docs)"),
    Hardware("gpu_a100", 312e12, "one GPU", 1, 1.0,
             "312 TFLOP/s dense bf16 (NVIDIA A100 datasheet; 624 is with sparsity)"),
    Hardware("gpu_h100", 989e12, "one GPU", 1, 1.0,
             "989 TFLOP/s dense bf16, SXM5 (NVIDIA H100 datasheet; 1979 is with sparsity; "
             "PCIe: 756)"),
    Hardware("gpu_h200", 989e12, "one GPU", 1, 1.0,
             "989 TFLOP/s dense bf16, SXM (NVIDIA H200 datasheet: same compute as H100 SXM)"),
    Hardware("cpu", None, "the host CPU as one TF device (all its threads)", 1, 1.0,
             "peak measured on the spot: best float32 1024^3 matmul rate, cached per process"),
)}


def get_hardware(name: str) -> Hardware:
  """The hardware entry ``name``; unknown names raise ``PlanError`` listing the known ones."""
  try:
    return HARDWARE[name]
  except KeyError:
    raise PlanError("hardware", f"={name} is unknown; known: "
                    f"{', '.join(HARDWARE)}") from None


@functools.lru_cache(maxsize=None)
def measured_cpu_peak_flops(size: int = 1024, repeats: int = 8) -> float:
  """Peak float32 FLOP/s of this process's CPU device: the best of ``repeats`` matmuls."""
  import tensorflow as tf  # Deferred: only CPU plans pay for it.
  with tf.device("/CPU:0"):
    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32)
    tf.linalg.matmul(a, b).numpy()  # warm-up: thread pool start, kernel selection
    best = math.inf
    for _ in range(repeats):
      start = time.perf_counter()
      tf.linalg.matmul(a, b).numpy()
      best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def peak_flops_per_core(hardware: str) -> float:
  """Theoretical (or, for cpu, measured) peak FLOP/s of one core of ``hardware``."""
  entry = get_hardware(hardware)
  if entry.peak_flops_per_core is None:
    return measured_cpu_peak_flops()
  return entry.peak_flops_per_core


# ----------------------------------------------------------------------------------------
# Model compute.


def _spec(model: str):
  try:
    return model_defs.get_spec(model)
  except model_defs.UnknownModelError as e:
    raise PlanError("model", f": {e}") from None


def default_resolution(model: str) -> int:
  """Pre-training resolution: 224 px for the full NFNets (the paper), else the spec's."""
  spec = _spec(model)
  if spec.family == "nfnet" and not spec.mini:
    return PAPER_PRETRAIN_RESOLUTION
  return spec.train_resolution


def train_flops_per_image(model: str, resolution: int | None = None, num_classes: int = 1000,
                          multiplier: float = TRAIN_FLOPS_PER_FORWARD) -> int:
  """Training FLOPs per image = ``multiplier`` x forward FLOPs at ``resolution``."""
  resolution = default_resolution(model) if resolution is None else resolution
  forward = model_defs.stats(model, resolution=resolution, num_classes=num_classes).flops
  return int(round(multiplier * forward))


# ----------------------------------------------------------------------------------------
# MFU calibration.


def _anchor() -> dict:
  return dict(
      model="nfnet_f7plus",
      core_hours=published.value("nfnet_f7plus.pretrain_core_hours"),
      epochs=published.value("nfnet_f7plus.pretrain_epochs"),
      dataset_size=int(published.value("jft4b.dataset_size")),
      hardware="tpu_v4",
      resolution=PAPER_PRETRAIN_RESOLUTION,
      batch_size=PAPER_BATCH_SIZE,
  )


def implied_mfu(model: str, epochs: float, dataset_size: int, core_hours: float,
                hardware: str, resolution: int | None = None,
                batch_size: int = PAPER_BATCH_SIZE, num_classes: int = 1000,
                multiplier: float = TRAIN_FLOPS_PER_FORWARD) -> float:
  """The MFU at which ``epochs`` of ``model`` cost ``core_hours`` on ``hardware``.

  Images are counted exactly as a Plan counts them (whole steps of ``batch_size``), so a plan
  built with this MFU reproduces ``core_hours`` to float precision.
  """
  steps = _steps_from_epochs(epochs, dataset_size, batch_size)
  total = steps * batch_size * train_flops_per_image(model, resolution, num_classes, multiplier)
  return total / (core_hours * 3600.0 * peak_flops_per_core(hardware))


@functools.lru_cache(maxsize=None)
def anchor_mfu() -> float:
  """MFU of TPU-v4 calibrated on the paper's F7+ run (110k core hours; about 0.35)."""
  a = _anchor()
  try:
    return implied_mfu(a["model"], a["epochs"], a["dataset_size"], a["core_hours"],
                       a["hardware"], a["resolution"], a["batch_size"])
  except PlanError as e:
    raise PlanError("hardware", f"analytic MFU needs the calibration anchor {a['model']} "
                    "registered in model_defs; use --measure or --mfu") from e


def hardware_mfu(hardware: str) -> float:
  """Analytic MFU of ``hardware``: the calibrated v4 anchor times the entry's ``mfu_scale``."""
  return anchor_mfu() * get_hardware(hardware).mfu_scale


def calibration() -> dict:
  """The anchor, the implied MFU, and the TPU-v3 cross-check against the paper's 250k."""
  a = _anchor()
  mfu = anchor_mfu()
  v3_published = published.value("nfnet_f7plus.pretrain_core_hours_v3")
  v3_plan = plan_from_epochs(a["model"], a["epochs"], dataset_size=a["dataset_size"],
                             hardware="tpu_v3", batch_size=a["batch_size"],
                             resolution=a["resolution"])
  return dict(
      anchor=a, mfu=mfu,
      v3_predicted_core_hours=v3_plan.core_hours,
      v3_published_core_hours=v3_published,
      v3_implied_mfu=implied_mfu(a["model"], a["epochs"], a["dataset_size"], v3_published,
                                 "tpu_v3", a["resolution"], a["batch_size"]),
  )


# ----------------------------------------------------------------------------------------
# Learning rate and warm-up.

LR_AT_PAPER_BATCH = published.value("claim.optimal_lr_small_epochs")  # 1.6 at batch 4096
LR_FLAT_UNTIL_EPOCHS = 0.5      # Figure 3: alpha ~ 1.6 for small epoch budgets
LR_SLOPE_SMALL_MODEL = 0.25     # log2 LR drop per doubling of epochs, F0 (-> 0.8 at 8 epochs)
LR_SLOPE_LARGE_MODEL = 0.5      # same for F7+ (-> 0.4 at 8 epochs): big models fall faster


def lr_rule(epochs: float, size_fraction: float, batch_size: int = PAPER_BATCH_SIZE) -> float:
  """Base LR on the factor-2 grid for an epoch budget and a relative model size.

  ``log2(lr / 1.6) = -slope x max(0, log2(epochs / 0.5))``, slope interpolating linearly from
  0.25 (``size_fraction`` 0, F0) to 0.5 (``size_fraction`` 1, F7+); the exponent is rounded
  to the nearest integer (halves up) so the LR at batch 4096 is in {1.6, 0.8, 0.4, ...}, then
  scaled linearly with batch size (1.6 x B / 4096 = 0.1 x B / 256 at the small-budget end).
  Monotone non-increasing in both epochs and size.
  """
  size_fraction = min(max(float(size_fraction), 0.0), 1.0)
  slope = LR_SLOPE_SMALL_MODEL + (LR_SLOPE_LARGE_MODEL - LR_SLOPE_SMALL_MODEL) * size_fraction
  drop = slope * max(0.0, math.log2(epochs / LR_FLAT_UNTIL_EPOCHS))
  halvings = math.floor(drop + 0.5)
  return LR_AT_PAPER_BATCH * 2.0 ** -halvings * batch_size / PAPER_BATCH_SIZE


def model_size_fraction(model: str) -> float:
  """Where ``model`` sits between F0 (0) and F7+ (1) in log parameter count, clipped to [0, 1].

  Full-scale models are placed between the published F0 and F7+ sizes; mini models between
  ``nfnet_mini_f0`` and ``nfnet_mini_f7plus`` (0 when those are not registered).
  """
  spec = _spec(model)
  params = model_defs.stats(model, num_classes=1000).params
  if spec.mini:
    try:
      small = model_defs.stats("nfnet_mini_f0", num_classes=1000).params
      large = model_defs.stats("nfnet_mini_f7plus", num_classes=1000).params
    except model_defs.UnknownModelError:
      return 0.0
  else:
    small = published.value("nfnet_f0.params") * 1e6
    large = published.value("nfnet_f7plus.params") * 1e6
  fraction = math.log(params / small) / math.log(large / small)
  return min(max(fraction, 0.0), 1.0)


def base_lr(model: str, epochs: float, batch_size: int = PAPER_BATCH_SIZE) -> float:
  """The LR rule (``lr_rule``) for ``model`` trained for ``epochs``."""
  return lr_rule(epochs, model_size_fraction(model), batch_size)


def lr_grid(base: float, n: int) -> list[float]:
  """``n`` factor-2 neighbours of ``base`` for a sweep, largest first.

  Candidates are taken in the order base, base/2, 2 base, base/4, 4 base, ...: smaller first,
  because the optimum falls with epochs and size ([P]: "tune within 2 trials").
  """
  if n < 1:
    raise PlanError("lr_grid", f"must be >= 1, got {n}")
  exponents = [0]
  k = 1
  while len(exponents) < n:
    exponents.append(-k)
    if len(exponents) < n:
      exponents.append(k)
    k += 1
  return sorted((base * 2.0 ** e for e in exponents), reverse=True)


def default_warmup_steps(steps: int, fraction: float = WARMUP_FRACTION,
                         cap: int = WARMUP_CAP_STEPS) -> int:
  """Linear warm-up length: ``round(fraction x steps)``, at most ``cap``, never > steps."""
  return max(0, min(int(cap), int(round(fraction * steps)), int(steps)))


# ----------------------------------------------------------------------------------------
# Plan.


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

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _positive(flag: str, value, integer: bool = False):
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise PlanError(flag, f"must be a number, got {value!r}")
  if not (value > 0) or not math.isfinite(value):
    raise PlanError(flag, f"must be > 0, got {value:g}")
  if integer and int(value) != value:
    raise PlanError(flag, f"must be a whole number, got {value:g}")
  return int(value) if integer else float(value)


def _steps_from_epochs(epochs: float, dataset_size: int, batch_size: int) -> int:
  return int(round(epochs * dataset_size / batch_size))


@dataclasses.dataclass(frozen=True)
class _Setup:
  """Everything about a plan except its length."""
  model: str
  family: str
  params: int
  hardware: str
  num_cores: int
  num_replicas: int
  batch_size: int
  dataset_size: int
  resolution: int
  num_classes: int
  forward_flops: int
  train_flops: int
  multiplier: float
  peak: float
  mfu: float
  images_per_second_per_core: float
  throughput_source: str


def _setup(model, dataset_size, hardware, batch_size, resolution, num_replicas, num_cores,
           num_classes, mfu, images_per_second_per_core, train_flops_multiplier) -> _Setup:
  dataset_size = _positive("dataset_size", dataset_size, integer=True)
  batch_size = _positive("batch_size", batch_size, integer=True)
  num_replicas = _positive("num_replicas", num_replicas, integer=True)
  num_classes = _positive("num_classes", num_classes, integer=True)
  multiplier = _positive("train_flops_multiplier", train_flops_multiplier)
  hw = get_hardware(hardware)
  if batch_size % num_replicas:
    raise PlanError("batch_size", f"={batch_size} must be divisible by "
                    f"--num_replicas={num_replicas}")
  spec = _spec(model)
  resolution = default_resolution(model) if resolution is None else _positive(
      "resolution", resolution, integer=True)
  num_cores = num_replicas * hw.cores_per_device if num_cores is None else _positive(
      "num_cores", num_cores, integer=True)
  stats = model_defs.stats(model, resolution=resolution, num_classes=num_classes)
  train_flops = int(round(multiplier * stats.flops))
  peak = peak_flops_per_core(hardware)
  if images_per_second_per_core is not None:
    ips = _positive("images_per_second_per_core", images_per_second_per_core)
    mfu = ips * train_flops / peak
    source = "measured"
  else:
    mfu = hardware_mfu(hardware) if mfu is None else _positive("mfu", mfu)
    ips = mfu * peak / train_flops
    source = "analytic"
  return _Setup(model, spec.family, stats.params, hardware, num_cores, num_replicas,
                batch_size, dataset_size, resolution, num_classes, stats.flops, train_flops,
                multiplier, peak, mfu, ips, source)


def _core_hours(setup: _Setup, steps: int) -> float:
  return steps * setup.batch_size / setup.images_per_second_per_core / 3600.0


def _plan(setup: _Setup, steps: int, warmup_steps: int | None, lr: float | None) -> Plan:
  images = steps * setup.batch_size
  epochs = images / setup.dataset_size
  core_hours = _core_hours(setup, steps)
  if warmup_steps is None:
    warmup_steps = default_warmup_steps(steps)
  elif not 0 <= warmup_steps <= steps:
    raise PlanError("warmup_steps", f"must be in [0, {steps}] (the plan's steps), "
                    f"got {warmup_steps}")
  if lr is None:
    lr = base_lr(setup.model, epochs, setup.batch_size)
  return Plan(
      model=setup.model, family=setup.family, params=setup.params,
      hardware=setup.hardware, num_cores=setup.num_cores, num_replicas=setup.num_replicas,
      core_hours=core_hours, wall_clock_hours=core_hours / setup.num_cores,
      epochs=epochs, images=images, steps=steps, batch_size=setup.batch_size,
      per_replica_batch_size=setup.batch_size // setup.num_replicas,
      base_lr=lr, warmup_steps=int(warmup_steps), decay=DECAY, mfu=setup.mfu,
      peak_flops_per_core=setup.peak, dataset_size=setup.dataset_size,
      resolution=setup.resolution, num_classes=setup.num_classes,
      forward_flops_per_image=setup.forward_flops, train_flops_per_image=setup.train_flops,
      train_flops_multiplier=setup.multiplier, total_train_flops=float(images) * setup.train_flops,
      images_per_second_per_core=setup.images_per_second_per_core,
      throughput_source=setup.throughput_source)


def plan_from_budget(model: str, core_hours: float,
                     dataset_size: int | None = None, hardware: str = "tpu_v4",
                     batch_size: int = PAPER_BATCH_SIZE, resolution: int | None = None,
                     num_replicas: int = 1, num_cores: int | None = None,
                     num_classes: int = 1000, mfu: float | None = None,
                     images_per_second_per_core: float | None = None,
                     train_flops_multiplier: float = TRAIN_FLOPS_PER_FORWARD,
                     warmup_steps: int | None = None, lr: float | None = None) -> Plan:
  """The longest run of ``model`` that fits in ``core_hours`` of ``hardware``.

  Steps = floor(budget / cost of one step) (a budget within 1e-6 of a step buys it), so the
  plan's ``core_hours`` is <= the budget and within one step of it.

  Args:
    model: registered model name.
    core_hours: budget in ``hardware`` core hours.
    dataset_size: images per epoch (default JFT-4B, 4e9).
    hardware: key of ``HARDWARE``.
    batch_size: global batch size.
    resolution: training resolution (default ``default_resolution(model)``).
    num_replicas: data-parallel replicas; must divide ``batch_size``.
    num_cores: cores used (sets wall clock only); default replicas x cores per device.
    num_classes: classifier width used for the FLOP count.
    mfu: override the calibrated utilisation.
    images_per_second_per_core: a measured throughput; replaces the analytic one.
    train_flops_multiplier: training FLOPs per forward FLOP.
    warmup_steps: override ``default_warmup_steps``.
    lr: override the LR rule.

  Raises:
    PlanError: bad input; the message names the flag.
  """
  core_hours = _positive("budget_core_hours", core_hours)
  if dataset_size is None:
    dataset_size = published.value("jft4b.dataset_size")
  setup = _setup(model, dataset_size, hardware, batch_size, resolution, num_replicas,
                 num_cores, num_classes, mfu, images_per_second_per_core,
                 train_flops_multiplier)
  step_cost = _core_hours(setup, 1)
  steps = math.floor(core_hours / step_cost + _STEP_TOLERANCE)
  if steps < 1:
    raise PlanError("budget_core_hours", f"={core_hours:g} is smaller than one training step "
                    f"({step_cost:.3g} core hours at --batch_size={setup.batch_size})")
  return _plan(setup, steps, warmup_steps, lr)


def plan_from_epochs(model: str, epochs: float,
                     dataset_size: int | None = None, hardware: str = "tpu_v4",
                     batch_size: int = PAPER_BATCH_SIZE, resolution: int | None = None,
                     num_replicas: int = 1, num_cores: int | None = None,
                     num_classes: int = 1000, mfu: float | None = None,
                     images_per_second_per_core: float | None = None,
                     train_flops_multiplier: float = TRAIN_FLOPS_PER_FORWARD,
                     warmup_steps: int | None = None, lr: float | None = None) -> Plan:
  """A run of ``model`` for ``epochs`` passes over ``dataset_size`` images.

  Steps = round(epochs x dataset_size / batch_size). Arguments as ``plan_from_budget``.
  """
  epochs = _positive("epochs", epochs)
  if dataset_size is None:
    dataset_size = published.value("jft4b.dataset_size")
  setup = _setup(model, dataset_size, hardware, batch_size, resolution, num_replicas,
                 num_cores, num_classes, mfu, images_per_second_per_core,
                 train_flops_multiplier)
  steps = _steps_from_epochs(epochs, setup.dataset_size, setup.batch_size)
  if steps < 1:
    raise PlanError("epochs", f"={epochs:g} is less than one step of --batch_size="
                    f"{setup.batch_size} over --dataset_size={setup.dataset_size}")
  return _plan(setup, steps, warmup_steps, lr)


def plan_from_config(config, dataset_size: int, num_classes: int, num_replicas: int = 1) -> Plan:
  """The plan of an experiment config (reproduce/configs): its budget, else its epochs.

  ``config.dataset_size`` overrides ``dataset_size`` when set; the budget wins when both
  ``config.budget_core_hours`` and ``config.epochs`` are set.
  """
  common = dict(
      dataset_size=int(config.get("dataset_size") or dataset_size),
      hardware=config.hardware, batch_size=int(config.batch_size),
      resolution=config.get("resolution"), num_replicas=num_replicas,
      num_classes=int(num_classes), mfu=config.get("mfu"),
      images_per_second_per_core=config.get("images_per_second_per_core"),
      warmup_steps=config.get("warmup_steps"), lr=config.get("base_lr"))
  if config.get("budget_core_hours"):
    return plan_from_budget(config.model, float(config.budget_core_hours), **common)
  if config.get("epochs"):
    return plan_from_epochs(config.model, float(config.epochs), **common)
  raise PlanError("config.budget_core_hours", "or --config.epochs must be set")


# ----------------------------------------------------------------------------------------
# Sweeps and allocation.


def family_models(family: str) -> tuple[str, ...]:
  """The Figure-2 model list of ``family`` ('nfnet' or its CPU-scale twin 'nfnet_mini')."""
  try:
    return FAMILIES[family]
  except KeyError:
    raise PlanError("family", f"={family} is unknown; known: "
                    f"{', '.join(FAMILIES)}") from None


def sweep(models: Sequence[str] = FIGURE2_MODELS,
          epochs_grid: Sequence[float] = FIGURE2_EPOCHS, **plan_kwargs) -> list[Plan]:
  """One plan per (model, epochs) cell, models outer; ``plan_kwargs`` go to plan_from_epochs."""
  return [plan_from_epochs(m, e, **plan_kwargs) for m in models for e in epochs_grid]


@dataclasses.dataclass(frozen=True)
class Allocation:
  """One model's share of a budget, ranked by the rule of thumb."""
  model: str
  epochs: float            # what the budget buys for this model
  core_hours: float        # what those whole steps cost
  target_epochs: float     # what the rule of thumb asks for at this budget
  log2_distance: float     # |log2(epochs / target_epochs)|
  recommended: bool
  plan: Plan

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["plan"] = self.plan.to_dict()
    return d


def epochs_exponent() -> float:
  """Epochs grow as compute^b with b = 1 / (1 + size-vs-epochs exponent ratio) = 0.5."""
  return 1.0 / (1.0 + published.value("claim.size_vs_epochs_exponent_ratio"))


def reference_train_flops(models: Sequence[str], dataset_size: int | None = None,
                          resolution: int | None = None) -> float:
  """Training FLOPs at which the rule of thumb wants 1 epoch.

  Full-scale models: the paper's "optimal epochs exceed 1 above ~5k TPU-v4 core hours"
  converted to FLOPs with the calibrated MFU. Mini models: the same relative position inside
  their own Figure-2 grid (log-interpolated between the cheapest and the dearest cell) as 5k
  has inside the paper's grid, so the rule transfers to CPU scale.
  """
  paper_ref = (published.value("claim.optimal_epochs_gt1_above_core_hours") * 3600.0
               * peak_flops_per_core("tpu_v4") * anchor_mfu())
  if not any(_spec(m).mini for m in models):
    return paper_ref

  def grid_flops(names, size, res):
    costs = [train_flops_per_image(m, res) * size for m in names]
    return min(costs) * min(FIGURE2_EPOCHS), max(costs) * max(FIGURE2_EPOCHS)

  jft = published.value("jft4b.dataset_size")
  lo, hi = grid_flops(FIGURE2_MODELS, jft, PAPER_PRETRAIN_RESOLUTION)
  position = math.log(paper_ref / lo) / math.log(hi / lo)
  size = published.value("jft4b.dataset_size") if dataset_size is None else dataset_size
  lo_m, hi_m = grid_flops(models, size, resolution)
  return lo_m * (hi_m / lo_m) ** position


def allocate(core_hours: float, models: Sequence[str] = FIGURE2_MODELS,
             reference_flops: float | None = None, **plan_kwargs) -> list[Allocation]:
  """Ranks ``models`` for a budget by the paper's rule of thumb.

  "Scale the model size and the number of training epochs at the same rate" ([P] Section 2):
  the target epoch budget is ``(C / C_ref) ** 0.5`` with C the budget's training FLOPs and
  C_ref = ``reference_train_flops`` (1 epoch). Each model gets what the budget buys
  (``plan_from_budget``); the one whose epochs are nearest the target (in log2) is
  recommended, so the chosen size grows as C^0.5 too. Models that cannot afford one step are
  left out. Returned nearest first.
  """
  core_hours = _positive("budget_core_hours", core_hours)
  models = list(models)
  if not models:
    raise PlanError("models", "must name at least one model")
  if reference_flops is None:
    reference_flops = reference_train_flops(models, plan_kwargs.get("dataset_size"),
                                            plan_kwargs.get("resolution"))
  rows = []
  for model in models:
    try:
      plan = plan_from_budget(model, core_hours, **plan_kwargs)
    except PlanError as e:
      if e.flag == "budget_core_hours":
        continue
      raise
    budget_flops = (core_hours * 3600.0 * plan.images_per_second_per_core
                    * plan.train_flops_per_image)
    target = (budget_flops / reference_flops) ** epochs_exponent()
    rows.append((abs(math.log2(plan.epochs / target)), model, plan, target))
  if not rows:
    raise PlanError("budget_core_hours", f"={core_hours:g} is smaller than one training step "
                    "of every model")
  rows.sort(key=lambda r: r[0])
  return [Allocation(model, plan.epochs, plan.core_hours, target, dist, i == 0, plan)
          for i, (dist, model, plan, target) in enumerate(rows)]


# ----------------------------------------------------------------------------------------
# Measured throughput.


@dataclasses.dataclass(frozen=True)
class Throughput:
  """Measured training speed; rates are images/s per core (one value per timed step)."""
  model: str
  batch_size: int
  resolution: int
  steps: int
  warmup_steps: int
  num_replicas: int
  cores: int
  step_seconds: tuple[float, ...]
  min: float
  median: float
  max: float

  @property
  def images_per_second_per_core(self) -> float:
    return self.median

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["images_per_second_per_core"] = self.median
    return d


def measure_throughput(model_name: str, batch_size: int, resolution: int | None = None,
                       steps: int = 5, num_classes: int = 1000, warmup_steps: int = 2,
                       hardware: str | None = None, jit_compile="auto",
                       seed: int = 0) -> Throughput:
  """Times real SGD training steps of ``model_name`` on random data on the current devices.

  Uses the active ``tf.distribute`` strategy (default: one device); ``batch_size`` is the
  global batch. Warm-up steps (tracing, compilation) are not timed.

  Returns:
    ``Throughput`` with min/median/max images/s per core over the ``steps`` timed steps;
    cores = replicas x ``cores_per_device`` of ``hardware`` (1 when not given).
  """
  import numpy as np
  import tensorflow as tf
  import keras

  batch_size = _positive("measure_batch_size", batch_size, integer=True)
  steps = _positive("measure_steps", steps, integer=True)
  resolution = default_resolution(model_name) if resolution is None else _positive(
      "resolution", resolution, integer=True)
  cores_per_device = get_hardware(hardware).cores_per_device if hardware else 1
  strategy = tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  rng = np.random.default_rng(seed)
  images = tf.constant(rng.standard_normal((batch_size, resolution, resolution, 3),
                                           dtype=np.float32))
  labels = tf.constant(rng.integers(0, num_classes, size=(batch_size,)), dtype=tf.int32)
  _spec(model_name)  # unknown names -> PlanError naming --model
  with strategy.scope():
    model = model_defs.build(model_name, num_classes=num_classes)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
  for _ in range(max(warmup_steps, 1)):  # at least one: the first step traces the graph
    model.train_on_batch(images, labels)
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    model.train_on_batch(images, labels)  # returns host values, so the step has finished
    seconds.append(time.perf_counter() - start)
  cores = replicas * cores_per_device
  rates = [batch_size / s / cores for s in seconds]
  return Throughput(model_name, batch_size, resolution, steps, max(warmup_steps, 1), replicas,
                    cores, tuple(seconds), min(rates), statistics.median(rates), max(rates))
