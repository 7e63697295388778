"""Budgets kept: plans from the engine's measured speed, and runs checked against their plan.

Where the paper's anchor calibrates no MFU (CPU, GPU: ``planning.Hardware.mfu_calibrated``),
``plan_with_measured_throughput`` times the loop's own train chunk (``throughput.measure``)
before planning, and caches the rate per model, resolution, batch, classes, precision, XLA,
replicas and machine in a small JSON file (``cache_path``). ``BudgetCheck`` compares the core
hours a run spends in training steps with its plan and warns once when they part.
"""

from __future__ import annotations

import json
import os
import time

import tensorflow as tf

from reproduce import planning
from reproduce.core import cpu
from reproduce.core import fileio
from reproduce.train import rundir
from reproduce.train import steps as steps_lib
from reproduce.train import strategy as strategy_lib
from reproduce.train import throughput

CACHE_ENV = "NFNET_VIT_SCALING_THROUGHPUT_CACHE"
DEFAULT_CACHE = "~/.cache/nfnet_vit_scaling/throughput.json"
BAND = (0.8, 1.25)  # training / planned core hours outside this band warns at the end
# Mid-run projections from a few chunks are noisy (machine load, warm-up); they warn only
# outside this wider band, which still catches a run planned 20x off at its first log line.
EARLY_BAND = (0.5, 2.0)
MEASURE_CHUNKS = 8  # timed chunks (of steps_per_execution steps) per measurement; median
MEASURE_WARMUP_CHUNKS = 2  # untimed: tracing, then the first executions


def cache_path(config) -> str:
  """The throughput cache: ``config.throughput_cache``, else $CACHE_ENV, else DEFAULT_CACHE."""
  path = config.get("throughput_cache") or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
  return os.path.expanduser(path)


def needs_measurement(config) -> bool:
  """True when the config gives no speed and its hardware has no calibrated (or, for a unit
  defined by FLOPs, fixed) MFU."""
  if config.get("images_per_second_per_core") or config.get("mfu"):
    return False
  hardware = planning.get_hardware(config["hardware"])
  return not hardware.mfu_calibrated and hardware.fixed_mfu is None


def machine() -> dict:
  """What a measured speed depends on besides the program: CPU, cores, GPUs, TF version."""
  gpus = [tf.config.experimental.get_device_details(d).get("device_name", d.name)
          for d in tf.config.list_physical_devices("GPU")]
  return {"cpu": cpu.name(), "cpu_cores": os.cpu_count(), "gpus": gpus,
          "tensorflow": tf.__version__}


def _measurement_key(config: dict, num_classes: int, strategy) -> dict:
  return {"model": config["model"], "model_overrides": config["model_overrides"],
          "resolution": int(config["resolution"] or planning.default_resolution(config["model"])),
          "batch_size": int(config["batch_size"]), "num_classes": int(num_classes),
          "loss": config["loss"], "ema": bool(config["ema_decay"]),
          "dtype_policy": config["dtype_policy"] or strategy_lib.policy_for(strategy),
          "jit_compile": steps_lib.use_jit(config, strategy),
          "steps_per_execution": max(1, int(config["steps_per_execution"])),
          "num_replicas": strategy.num_replicas_in_sync, "hardware": config["hardware"],
          "sam": [config.get("sam") or "none", config.get("sam_ascent_fraction")],
          "machine": machine()}


def _read_cache(path: str) -> dict:
  try:
    cache = fileio.read_json(path) if fileio.exists(path) else {}
  except (ValueError, OSError, tf.errors.OpError):  # unreadable: measure again, rewrite it
    return {}
  return cache if isinstance(cache, dict) else {}


def measured_throughput(config, num_classes: int, strategy, say=print) -> tuple[float, str]:
  """(images/s per core of the engine's train chunk, a note saying how it was measured).

  Reads the cache first; a miss measures ``MEASURE_CHUNKS`` chunks under ``strategy`` and
  writes the cache atomically.
  """
  config = rundir.config_to_dict(config)
  path = cache_path(config)
  key_fields = _measurement_key(config, num_classes, strategy)
  key = json.dumps(key_fields, sort_keys=True)
  cache = _read_cache(path)
  if key in cache:
    ips = float(cache[key]["images_per_second_per_core"])
    return ips, f"measured {ips:.4g} images/s/core (cached in {path})"
  spe = key_fields["steps_per_execution"]
  start = time.time()
  say(f"measuring the train step of {config['model']} (batch {config['batch_size']}, "
      f"{MEASURE_CHUNKS} chunks of {spe} steps); cached in {path}")
  with strategy.scope():
    measured = throughput.measure(
        config["model"], int(config["batch_size"]), key_fields["resolution"],
        steps=MEASURE_CHUNKS, num_classes=num_classes, warmup_steps=MEASURE_WARMUP_CHUNKS,
        hardware=config["hardware"], seed=int(config["seed"]), config=config,
        steps_per_chunk=spe)
  ips = measured.images_per_second_per_core
  say(f"measured {ips:.4g} images/s/core in {time.time() - start:.1f} s")
  cache[key] = dict(measured.to_dict(), **key_fields)
  fileio.makedirs(os.path.dirname(path) or ".")
  fileio.write_json(path, cache)
  cpu = key_fields["machine"]["cpu"]
  return ips, (f"measured {ips:.4g} images/s/core: the engine's train chunk on {cpu}, "
               f"{os.cpu_count()} cores (cached in {path})")


def plan_with_measured_throughput(config, source, strategy, say=print, passes: float = 1.0):
  """The config's ``planning.Plan``, from a measured speed where no MFU is calibrated: how
  ``reproduce.pretrain`` and ``reproduce.finetune`` both plan.

  A config that sets ``images_per_second_per_core`` or ``mfu``, or runs on a TPU kind, is
  planned as it says, with no measurement. ``passes``: forward+backward passes of the
  measured step that the caller charges separately (a fine-tune's SAM step: 2, charged by
  ``finetuning.recipe.charged_plan``); the plan gets the speed of one pass.
  """
  num_replicas = strategy.num_replicas_in_sync
  ips, note = None, None
  if needs_measurement(config):
    ips, note = measured_throughput(config, int(source.num_classes), strategy, say)
    if passes != 1.0:
      ips, note = ips * passes, f"{note}; a step of {passes:g} passes, charged per pass"
  return planning.plan_from_config(config, dataset_size=source.train_size,
                                   num_classes=source.num_classes, num_replicas=num_replicas,
                                   images_per_second_per_core=ips, throughput_note=note)


def plan_line(plan) -> str:
  """The one line ``pretrain`` and ``finetune`` print about their plan."""
  return (f"plan: {plan.steps} steps of batch {plan.batch_size}, {plan.core_hours:.4g} "
          f"{plan.hardware} core hours; throughput {plan.throughput_note}")


class BudgetCheck:
  """Training core hours against the plan's; warns once when the ratio leaves ``BAND``."""

  def __init__(self, plan, warn, write_text=None):
    self.plan, self.warn, self.write_text = plan, warn, write_text
    self.warned = False

  def planned(self) -> float:
    value = getattr(self.plan, "core_hours", None)
    return float(value) if value else 0.0

  def ratio(self, training_seconds: float, steps_done: int, num_cores: int) -> float | None:
    """Training core hours over planned, projected to the plan's steps from ``steps_done``."""
    if not (self.planned() and steps_done and training_seconds > 0):
      return None
    per_step = training_seconds * num_cores / 3600.0 / steps_done
    return per_step * int(self.plan.steps) / self.planned()

  def message(self, ratio: float, training_seconds: float, steps_done: int,
              num_cores: int, band: tuple[float, float] = BAND) -> str:
    """The warning: how far off, the cause and the fix."""
    measured = steps_done * int(self.plan.batch_size) / (training_seconds * num_cores)
    planned = int(self.plan.steps) * int(self.plan.batch_size) / (self.planned() * 3600.0)
    source = getattr(self.plan, "throughput_source", "given")
    note = getattr(self.plan, "throughput_note", "") or source
    if source == "analytic":
      fix = ("plan with a measured throughput: set config.images_per_second_per_core, or "
             "leave it and config.mfu unset on cpu/gpu so that pretrain measures it")
    else:
      fix = (f"measure again (delete the throughput cache, ${CACHE_ENV} or "
             f"{DEFAULT_CACHE}, if the machine or its load changed) or set "
             "config.images_per_second_per_core to the rate measured here")
    return (f"warning: training is on course for {ratio:.2f}x its planned core hours "
            f"(outside [{band[0]}, {band[1]}]): planned from {source} throughput "
            f"{planned:.4g} images/s/core ({note}), measured {measured:.4g}; fix: {fix}")

  def check(self, step: int, training_seconds: float, steps_done: int, num_cores: int,
            final: bool = True) -> float | None:
    """The projected ratio; warns (log line + TensorBoard text) the first time it is off:
    outside ``BAND`` at the end (``final``), outside ``EARLY_BAND`` before."""
    ratio = self.ratio(training_seconds, steps_done, num_cores)
    band = BAND if final else EARLY_BAND
    if ratio is None or self.warned or band[0] <= ratio <= band[1]:
      return ratio
    self.warned = True
    text = self.message(ratio, training_seconds, steps_done, num_cores, band)
    self.warn(text)
    if self.write_text:
      self.write_text(step, text)
    return ratio
