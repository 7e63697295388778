"""The per-host input of a run: ``data_module`` pipelines handed to the strategy.

Each host builds its own pipeline from ``input_context``; each replica gets
``batch_size / replicas`` examples. The training stream restarts exactly at ``start_step``.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def input_dtype(policy: str) -> tf.DType:
  """Images in bfloat16 under the mixed bfloat16 policy (half the host-to-TPU bytes)."""
  return tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32


def train_iterator(strategy: tf.distribute.Strategy, data_module, source, config: dict, plan,
                   start_step: int, dtype: tf.DType):
  """A distributed iterator over the training batches from ``start_step`` on."""

  def dataset_fn(ctx):
    return data_module.train_dataset(
        source, global_batch_size=int(plan.batch_size), resolution=int(plan.resolution),
        seed=int(config["seed"]), start_step=start_step, input_context=ctx,
        augment=dict(config["augment"] or {}) or None, dtype=dtype)

  return iter(strategy.distribute_datasets_from_function(dataset_fn))


def heldout_dataset_fn(strategy: tf.distribute.Strategy, data_module, source, config: dict,
                       plan, dtype: tf.DType) -> Callable:
  """``fn(input_context)`` of the held-out set, batched at a multiple of the replica count."""
  num_replicas = strategy.num_replicas_in_sync
  eval_batch = int(config["eval_batch_size"] or plan.batch_size)
  eval_batch -= eval_batch % num_replicas

  def dataset_fn(ctx):
    return data_module.heldout_dataset(source, global_batch_size=eval_batch,
                                       resolution=int(plan.resolution), input_context=ctx,
                                       dtype=dtype)

  return dataset_fn
