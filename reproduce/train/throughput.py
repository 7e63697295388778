"""Measured training speed: the engine's own train step, timed on random data.

``measure`` builds what ``loop.train`` builds (model, NFNet optimizer with AGC, the
``steps.make_train_chunk`` step with one-hot labels, the config's loss and XLA setting, and
a fine-tune's SAM step when the config has ``sam``)
and times single-step chunks after a warm-up that traces it, so a measured budget is the
cost of the program the engine runs.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from reproduce import planning
from reproduce.train import inputs
from reproduce.train import lr_schedule
from reproduce.train import rundir
from reproduce.train import sam
from reproduce.train import builders
from reproduce.train import steps as steps_lib
from reproduce.train import strategy as strategy_lib


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


def _random_batches(strategy, batch_size: int, resolution: int, num_classes: int, seed: int,
                    dtype):
  """A distributed iterator repeating one random batch (images, one-hot labels)."""
  rng = np.random.default_rng(seed)
  images = rng.standard_normal((batch_size, resolution, resolution, 3), dtype=np.float32)
  labels = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, size=batch_size)]

  def dataset_fn(ctx):
    per_replica = ctx.get_per_replica_batch_size(batch_size)
    batch = (tf.cast(images[:per_replica], dtype), labels[:per_replica])
    return tf.data.Dataset.from_tensors(batch).repeat()

  return iter(strategy.distribute_datasets_from_function(dataset_fn))


def _engine_step(model_name, batch_size, resolution, num_classes, total_steps, config, strategy):
  """The loop's train chunk (same builders) for ``model_name``; returns (chunk, policy)."""
  config = dict(rundir.config_to_dict(config or {}), model=model_name, batch_size=batch_size)
  plan = rundir.StoredPlan(model=model_name, resolution=resolution, batch_size=batch_size,
                           steps=total_steps, warmup_steps=0, decay="cosine",
                           base_lr=float(config["base_lr"] or 0.1))
  policy = config["dtype_policy"] or strategy_lib.policy_for(strategy)
  keras.mixed_precision.set_global_policy(policy)
  with strategy.scope():
    model = builders.build_model(config, plan, num_classes)
    schedule = lr_schedule.schedule_from_plan(plan)
    optimizer = builders.build_optimizer(config, schedule, model, num_classes)
  chunk = steps_lib.make_train_chunk(
      strategy, model, optimizer, loss=config["loss"],
      label_smoothing=float(config["label_smoothing"] or 0.0), global_batch_size=batch_size,
      jit_compile=steps_lib.use_jit(config, strategy),
      step_fn=sam.from_config(config) if config.get("sam") else None)
  return chunk, policy


def engine_step(model_name: str, batch_size: int, resolution: int, num_classes: int = 1000,
                total_steps: int = 100, seed: int = 0, config=None):
  """The loop's train step (as ``measure`` builds it) on a repeated random batch, as a
  callable running one step and returning its loss as a host value (the step has finished).

  For benchmarks that interleave it with a peer's step, so that machine load hits both alike.
  """
  strategy = tf.distribute.get_strategy()
  chunk, policy = _engine_step(model_name, batch_size, resolution, num_classes, total_steps,
                               config, strategy)
  batches = _random_batches(strategy, batch_size, resolution, num_classes, seed,
                            inputs.input_dtype(policy))
  one = tf.constant(1)
  return lambda: float(chunk(batches, one)[0])


def measure(model_name: str, batch_size: int, resolution: int | None = None, steps: int = 5,
            num_classes: int = 1000, warmup_steps: int = 2, hardware: str | None = None,
            seed: int = 0, config=None, steps_per_chunk: int = 1) -> Throughput:
  """Times ``steps`` train steps of ``model_name`` on the current devices.

  Uses the active ``tf.distribute`` strategy (default: one device); ``batch_size`` is the
  global batch; ``config`` (a config or dict; defaults from configs/base.py) gives the loss,
  optimizer settings, XLA and precision. Warm-up steps (at least one: tracing) are not timed.
  ``steps_per_chunk`` > 1 times chunks of that many steps (as ``steps_per_execution`` runs
  them); ``steps`` counts chunks then, and each rate is per step of its chunk.

  Returns:
    ``Throughput`` with min/median/max images/s per core over the timed steps;
    cores = replicas x ``cores_per_device`` of ``hardware`` (1 when not given).

  Raises:
    planning.PlanError: unknown model or hardware, or a count that is not > 0.
  """
  batch_size = planning.positive("measure_batch_size", batch_size, integer=True)
  steps = planning.positive("measure_steps", steps, integer=True)
  steps_per_chunk = planning.positive("steps_per_execution", steps_per_chunk, integer=True)
  num_classes = planning.positive("num_classes", num_classes, integer=True)
  default = planning.default_resolution(model_name)  # an unknown model is a --model error
  resolution = default if resolution is None else planning.positive("resolution", resolution,
                                                                     integer=True)
  cores_per_device = planning.get_hardware(hardware).cores_per_device if hardware else 1
  warmup_steps = max(int(warmup_steps), 1)
  strategy = tf.distribute.get_strategy()
  chunk, policy = _engine_step(model_name, batch_size, resolution, num_classes,
                               (warmup_steps + steps) * steps_per_chunk, config, strategy)
  batches = _random_batches(strategy, batch_size, resolution, num_classes, seed,
                            inputs.input_dtype(policy))
  _, seconds = time_chunks(chunk, batches, steps, warmup_steps, steps_per_chunk)
  return _throughput(model_name, batch_size, resolution, warmup_steps, seconds,
                     strategy.num_replicas_in_sync, cores_per_device)


def time_chunks(chunk, iterator, steps: int, warmup_steps: int, steps_per_chunk: int):
  """(seconds of the warm-up chunks, seconds per step of each timed chunk)."""
  n = tf.constant(steps_per_chunk)
  start = time.perf_counter()
  for _ in range(warmup_steps):
    float(chunk(iterator, n)[0])
  warmup_seconds = time.perf_counter() - start
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    float(chunk(iterator, n)[0])  # a host value: the chunk has finished
    seconds.append((time.perf_counter() - start) / steps_per_chunk)
  return warmup_seconds, seconds


def _throughput(model_name, batch_size, resolution, warmup_steps, seconds, num_replicas,
                cores_per_device) -> Throughput:
  cores = num_replicas * cores_per_device
  rates = [batch_size / s / cores for s in seconds]
  return Throughput(model_name, batch_size, resolution, len(seconds), warmup_steps,
                    num_replicas, cores, tuple(seconds), min(rates), statistics.median(rates),
                    max(rates))
