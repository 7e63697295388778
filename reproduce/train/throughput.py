"""Measured training speed: the engine's own train step, timed on random data.

``measure`` builds what ``loop.train`` builds (model, NFNet optimizer with AGC, the
``steps.make_train_chunk`` step with one-hot labels, the config's loss and XLA setting)
and times single-step chunks after a warm-up that traces it, so a measured budget is the
cost of the program the engine runs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import statistics
import time

from reproduce.planning import budget


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


def _count(flag: str, value) -> int:
  """``value`` as a positive whole number, else ``PlanError`` naming ``--flag``."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not math.isfinite(value) or value < 1 or value != int(value)):
    raise budget.PlanError(flag, f"must be a whole number > 0, got {value!r}")
  return int(value)


def _random_batches(strategy, batch_size: int, resolution: int, num_classes: int, seed: int,
                    dtype):
  """A distributed iterator repeating one random batch (images, one-hot labels)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
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
  import keras  # pylint: disable=g-import-not-at-top
  from reproduce.train import optim, rundir, steps  # pylint: disable=g-import-not-at-top
  from reproduce.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  config = dict(rundir.config_to_dict(config or {}), model=model_name, batch_size=batch_size)
  plan = rundir.StoredPlan(model=model_name, resolution=resolution, batch_size=batch_size,
                           steps=total_steps, warmup_steps=0, decay="cosine",
                           base_lr=float(config["base_lr"] or 0.1))
  policy = config["dtype_policy"] or strategy_lib.policy_for(strategy)
  keras.mixed_precision.set_global_policy(policy)
  with strategy.scope():
    model = steps.build_model(config, plan, num_classes)
    optimizer = steps.build_optimizer(config, optim.schedule_from_plan(plan), model, num_classes)
  chunk = steps.make_train_chunk(
      strategy, model, optimizer, loss=config["loss"],
      label_smoothing=float(config["label_smoothing"] or 0.0), global_batch_size=batch_size,
      jit_compile=steps.use_jit(config, strategy))
  return chunk, policy


def measure(model_name: str, batch_size: int, resolution: int | None = None, steps: int = 5,
            num_classes: int = 1000, warmup_steps: int = 2, hardware: str | None = None,
            seed: int = 0, config=None) -> Throughput:
  """Times ``steps`` train steps of ``model_name`` on the current devices.

  Uses the active ``tf.distribute`` strategy (default: one device); ``batch_size`` is the
  global batch; ``config`` (a config or dict; defaults from configs/base.py) gives the loss,
  optimizer settings, XLA and precision. Warm-up steps (at least one: tracing) are not timed.

  Returns:
    ``Throughput`` with min/median/max images/s per core over the timed steps;
    cores = replicas x ``cores_per_device`` of ``hardware`` (1 when not given).

  Raises:
    planning.budget.PlanError: unknown model or hardware, or a count that is not > 0.
  """
  batch_size = _count("measure_batch_size", batch_size)
  steps = _count("measure_steps", steps)
  num_classes = _count("num_classes", num_classes)
  resolution = (budget.default_resolution(model_name) if resolution is None
                else _count("resolution", resolution))  # unknown model -> --model
  cores_per_device = budget.get_hardware(hardware).cores_per_device if hardware else 1
  warmup_steps = max(int(warmup_steps), 1)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from reproduce.train import inputs  # pylint: disable=g-import-not-at-top
  strategy = tf.distribute.get_strategy()
  chunk, policy = _engine_step(model_name, batch_size, resolution, num_classes,
                               warmup_steps + steps, config, strategy)
  batches = _random_batches(strategy, batch_size, resolution, num_classes, seed,
                            inputs.input_dtype(policy))
  one = tf.constant(1)
  for _ in range(warmup_steps):
    float(chunk(batches, one)[0])
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    float(chunk(batches, one)[0])  # a host value: the step has finished
    seconds.append(time.perf_counter() - start)
  cores = strategy.num_replicas_in_sync * cores_per_device
  rates = [batch_size / s / cores for s in seconds]
  return Throughput(model_name, batch_size, resolution, steps, warmup_steps,
                    strategy.num_replicas_in_sync, cores, tuple(seconds), min(rates),
                    statistics.median(rates), max(rates))
