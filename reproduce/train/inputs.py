"""The per-host input of a run: ``data_module`` pipelines handed to the strategy.

Each host builds its own pipeline from ``input_context``; each replica gets
``batch_size / replicas`` examples. The training stream restarts exactly at ``start_step``.
"""

from __future__ import annotations

import threading
from typing import Callable

import tensorflow as tf

from reproduce.data.preprocess import DEFAULT_INPUT_RANGE


def input_dtype(policy: str) -> tf.DType:
  """Images in bfloat16 under the mixed bfloat16 policy (half the host-to-TPU bytes)."""
  return tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32


def data_seed(config: dict) -> int:
  """The seed of the data order and augmentation: ``data_seed``, else ``seed``."""
  value = config.get("data_seed")
  return int(config["seed"] if value is None else value)


def train_batches(strategy: tf.distribute.Strategy, data_module, source, config: dict, plan,
                  start_step: int, dtype: tf.DType) -> tf.distribute.DistributedDataset:
  """The distributed dataset of the training batches from ``start_step`` on; each ``iter``
  of it starts there again (the stream is a function of its seeds and positions)."""

  def dataset_fn(ctx):
    return data_module.train_dataset(
        source, global_batch_size=int(plan.batch_size), resolution=int(plan.resolution),
        seed=data_seed(config), start_step=start_step, input_context=ctx,
        augment=dict(config["augment"] or {}) or None, dtype=dtype, **input_range(config))

  return strategy.distribute_datasets_from_function(dataset_fn)


def release_in_background(holder: list) -> None:
  """Drops the iterator in ``holder`` (a list holding its last reference) on another thread.

  Why: its destructor joins tf.data's autotuning thread, which can sit in a timed wait for
  seconds; with two study workers on two cores a run waited 3-9 s, idle, at its end
  (docs/study.md). The thread is not a daemon, so the process still exits cleanly.
  """
  threading.Thread(target=holder.clear, name="release-input-iterator").start()


def open_source(data_module, config: dict, data_dir: str | None = None,
                manual_dir: str | None = None):
  """``data_module.load_source`` of the config's dataset and held-out set.

  ``heldout_split`` (e.g. ImageNet's official 'validation') and ``skip_corrupt=False`` (from
  ``strict_data``) are passed only when the config asks, so a data module without them serves
  every other config.
  """
  options = {"heldout_split": config["heldout_split"]} if config.get("heldout_split") else {}
  if config.get("strict_data"):
    options["skip_corrupt"] = False
  return data_module.load_source(config["dataset"], data_dir=data_dir, manual_dir=manual_dir,
                                 heldout_size=config["heldout_size"], seed=int(config["seed"]),
                                 **options)


def input_range(config: dict) -> dict:
  """``{"input_range": config['input_range']}`` when the config sets one other than the
  default, else {} (the data module's default, ImageNet mean/std), so a data module without
  the option serves every ImageNet-normalised run."""
  chosen = config.get("input_range")
  return {"input_range": chosen} if chosen and chosen != DEFAULT_INPUT_RANGE else {}


def eval_resolution(config: dict, plan) -> int:
  """The held-out resolution: ``config['eval_resolution']``, else the training resolution."""
  return int(config.get("eval_resolution") or plan.resolution)


def heldout_dataset_fn(strategy: tf.distribute.Strategy, data_module, source, config: dict,
                       plan, dtype: tf.DType) -> Callable:
  """``fn(input_context)`` of the held-out set at ``eval_resolution``, batched at a multiple
  of the replica count. ``config['eval_crop']`` ('nfnet' / 'vit') and
  ``config['input_range']`` are passed only when set (None: the source's default crop,
  ImageNet mean/std)."""
  num_replicas = strategy.num_replicas_in_sync
  eval_batch = int(config["eval_batch_size"] or plan.batch_size)
  eval_batch -= eval_batch % num_replicas
  crop = {"crop": config["eval_crop"]} if config.get("eval_crop") else {}

  def dataset_fn(ctx):
    return data_module.heldout_dataset(source, global_batch_size=eval_batch,
                                       resolution=eval_resolution(config, plan),
                                       input_context=ctx, dtype=dtype, **crop,
                                       **input_range(config))

  return dataset_fn
