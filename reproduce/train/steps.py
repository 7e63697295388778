"""The compiled train chunk and eval step of a model and optimizer under a strategy.

A fine-tuning script builds its own model and optimizer (``builders`` are the engine's) and
reuses these steps; ``throughput.measure`` times the very same ``make_train_chunk``.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from model_defs import common as model_common
from reproduce.train import inputs
from reproduce.train import losses
from reproduce.train import optim
from reproduce.train import strategy as strategy_lib


def use_jit(config: dict, strategy: tf.distribute.Strategy) -> bool:
  """XLA for the replica step: when the config asks and the strategy allows (TPUs compile
  the whole step anyway)."""
  return bool(config["jit_compile"]) and strategy_lib.jit_within_step(strategy)


# Activations of at least this many elements per example are compiled; below it an XLA
# call's fixed cost outweighs what it saves (BENCHMARKS.md, run M).
MIN_COMPILED_ELEMENTS = 2 ** 16


def _compiled_by_xla(fn: Callable) -> Callable:
  """``fn`` as one XLA kernel (and its gradient as another) for inputs of at least
  ``MIN_COMPILED_ELEMENTS`` per example; as it is for smaller ones and for inputs whose size
  per example is not known when traced."""
  compiled = tf.function(fn, jit_compile=True)

  def run(x):
    per_example = x.shape[1:].num_elements()
    return compiled(x) if (per_example or 0) >= MIN_COMPILED_ELEMENTS else fn(x)

  return run


def activation_compiler(strategy: tf.distribute.Strategy, jit_compile: bool,
                        compute_dtype: str) -> Callable | None:
  """What compiles the large activations (``model_defs.common.elementwise_compiler``) of a
  bfloat16 step run op by op on CPUs: XLA, where TensorFlow's CPU kernels convert bfloat16
  element by element in each of a GELU's dozen ops (BENCHMARKS.md, run M). None in float32
  (nothing measurable to gain), where the step is compiled whole (XLA fuses them there
  already), on TPUs (compiled whole), under Mirrored (no XLA on logical CPUs) and on GPUs
  (not measured)."""
  if (compute_dtype != "bfloat16" or jit_compile or not strategy_lib.jit_within_step(strategy)
      or strategy_lib.on_gpu(strategy)):
    return None
  return _compiled_by_xla


def _update_statistics(optimizer):
  """(gradient norm, AGC clip fraction) of the last update; zeros for optimizers without AGC."""
  if hasattr(optimizer, "agc_statistics"):
    stats = optimizer.agc_statistics()
    return stats["grad_norm"], stats["agc_clip_fraction"]
  return tf.constant(0.0), tf.constant(0.0)


def make_train_chunk(strategy: tf.distribute.Strategy, model: keras.Model, optimizer, *,
                     loss: str, label_smoothing: float, global_batch_size: int,
                     jit_compile: bool = False, step_fn: Callable | None = None) -> Callable:
  """``train_chunk(iterator, num_steps) -> (mean loss, grad norm, clip fraction)``.

  Runs ``num_steps`` updates in one ``tf.function`` call on batches ``(images, labels, ...)``
  of a distributed iterator; the norm and clip fraction are those of the last update.
  ``step_fn(model, optimizer, objective) -> update(images, labels) -> loss`` replaces the
  plain gradient step (e.g. ``sam.sam_step_fn``); ``objective(labels, logits, extra_losses)``
  is the per-replica loss below.
  """
  num_replicas = strategy.num_replicas_in_sync

  def objective(labels, logits, extra_losses):
    per_example = losses.per_example_loss(labels, logits, loss, label_smoothing)
    # Sum / global batch: the optimizer's SUM all-reduce then gives the mean.
    value = tf.reduce_sum(per_example) / global_batch_size
    if extra_losses:
      value += tf.add_n([tf.cast(l, tf.float32) for l in extra_losses]) / num_replicas
    return value

  def gradient_step(images, labels):
    with tf.GradientTape() as tape:
      value = objective(labels, model(images, training=True), model.losses)
    grads = tape.gradient(value, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return value

  update = step_fn(model, optimizer, objective) if step_fn else gradient_step

  activations = activation_compiler(strategy, jit_compile, model.dtype_policy.compute_dtype)

  def replica_step(images, labels):
    with model_common.elementwise_compiler(activations):
      return (update(images, labels),) + tuple(_update_statistics(optimizer))

  if jit_compile:
    replica_step = tf.function(replica_step, jit_compile=True)

  def reduce(op, value):
    return strategy.reduce(op, value, axis=None)

  @tf.function
  def train_chunk(iterator, num_steps):
    loss_sum = tf.constant(0.0, tf.float32)
    grad_norm = tf.constant(0.0, tf.float32)
    clip_fraction = tf.constant(0.0, tf.float32)
    for _ in tf.range(num_steps):
      images, labels = next(iterator)[:2]
      value, norm, clip = strategy.run(replica_step, args=(images, labels))
      loss_sum += reduce(tf.distribute.ReduceOp.SUM, value)
      # Identical on every replica (computed from the reduced gradient).
      grad_norm = reduce(tf.distribute.ReduceOp.MEAN, norm)
      clip_fraction = reduce(tf.distribute.ReduceOp.MEAN, clip)
    return loss_sum / tf.cast(num_steps, tf.float32), grad_norm, clip_fraction

  return train_chunk


def make_eval_step(strategy: tf.distribute.Strategy, model: keras.Model, loss: str) -> Callable:
  """``eval_step(batch) -> [loss sum, hits, examples]`` summed over replicas.

  A batch is ``(images, labels[, weights])``; a hit is an argmax class that is labelled.
  """

  def replica_eval(batch):
    images, labels = batch[0], batch[1]
    logits = tf.cast(model(images, training=False), tf.float32)
    per_example = losses.per_example_loss(labels, logits, loss, 0.0)
    hits = tf.gather(tf.cast(labels, tf.float32), tf.argmax(logits, axis=-1), batch_dims=1) > 0
    weights = tf.cast(batch[2], tf.float32) if len(batch) > 2 else tf.ones_like(per_example)
    return (tf.reduce_sum(per_example * weights),
            tf.reduce_sum(tf.cast(hits, tf.float32) * weights), tf.reduce_sum(weights))

  @tf.function
  def eval_step(batch):
    outputs = strategy.run(replica_eval, args=(batch,))
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, o, axis=None) for o in outputs]

  return eval_step


# Held-out sets up to this size stay in memory after their first pass, so later evaluations
# skip the input pipeline: the study evaluates each model's 2,048 held-out images after every
# run, and making the iterator was about half of each evaluation (0.2-0.3 s of 0.35-0.55 s on
# 2 cores). Larger sets (ImageNet's) stream every time.
CACHE_BYTES = 64 << 20


def _nbytes(batch) -> int:
  return sum(int(t.shape.num_elements()) * t.dtype.size
             for t in tf.nest.flatten(batch, expand_composites=True))


class Evaluator:
  """Held-out loss and top-1 of the model, with the optimizer's EMA weights when it keeps one.

  The batches of a held-out set up to ``CACHE_BYTES`` are kept after the first evaluation
  (on an accelerator, in its memory, for the program's life). This relies on the data
  module's contract that ``heldout_dataset`` is deterministic, every pass the same batches
  (``loop.train``'s ``data_module``; docs/pretrain.md), as the kit's own pipelines are.
  """

  def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model, optimizer,
               loss: str, dataset_fn: Callable):
    self._strategy = strategy
    self._optimizer = optimizer
    self._eval_step = make_eval_step(strategy, model, loss)
    self._dataset_fn = dataset_fn
    self._dataset = None
    self._kept = None  # the held-out batches, once one pass found them small enough

  def _batches(self):
    """The held-out batches: the kept ones, or one pass of the pipeline (keeping them when
    they fit in ``CACHE_BYTES``)."""
    if self._kept is not None:
      yield from self._kept
      return
    if self._dataset is None:  # built on first use: most runs evaluate only at the end
      self._dataset = self._strategy.distribute_datasets_from_function(self._dataset_fn)
    kept, size = [], 0
    iterator = [iter(self._dataset)]  # the only reference: released in the background
    try:
      for batch in iterator[0]:
        batch = tuple(batch)
        size += _nbytes(batch)
        if kept is not None and size <= CACHE_BYTES:
          kept.append(batch)
        else:
          kept = None
        yield batch
    finally:
      inputs.release_in_background(iterator)
    self._kept = kept  # reached only after a whole pass

  def __call__(self) -> dict:
    totals = np.zeros(3, np.float64)
    with optim.swap_in_ema(self._optimizer):
      for batch in self._batches():
        totals += np.array([float(t) for t in self._eval_step(batch)])
    count = max(totals[2], 1.0)
    return {"loss": totals[0] / count, "top1": totals[1] / count, "examples": int(totals[2])}
