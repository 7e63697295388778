"""Repeated augmentation (Hoffer et al. 2019; Fort et al. 2021): each sampled image appears
``multiplicity`` times in its batch, every copy with its own augmentation.

Compute stays constant (the paper's footnote 4): an "epoch" still holds ``train_size``
samples, so it visits ``unique_per_epoch = train_size // multiplicity`` unique images (the
first positions of epoch ``e``'s order, ``order.example_index``), each
``multiplicity`` times. Sample ``p`` of the stream is copy ``p % m`` of unique image
``p // m``; the stream is a pure function of (seed, position), so ``start_step`` resumes
exactly. Copy ``k`` of train example ``i`` in epoch ``e`` is augmented with the seed
``fold_in(fold_in(fold_in([seed, AUGMENT_TAG], e), i), k)``. Batch mixing is not supported.
"""

from __future__ import annotations

import functools
import types

import numpy as np
import tensorflow as tf

from reproduce.data import order
from reproduce.data.datasource import DataError, DataSource, record_lookup
from reproduce.data.preprocess import resolve_augment, train_image


def unique_per_epoch(train_size: int, multiplicity: int) -> int:
  """Unique images an epoch visits under the compute-constant rule."""
  return int(train_size) // int(multiplicity)


def _share(global_batch_size: int, multiplicity: int, input_context) -> tuple[int, int, int]:
  """(per-replica batch, input pipelines, this pipeline's id); whole groups per replica."""
  replicas = input_context.num_replicas_in_sync if input_context else 1
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  per_replica = global_batch_size // replicas
  if global_batch_size <= 0 or global_batch_size % replicas or per_replica % multiplicity:
    raise DataError(f"global_batch_size={global_batch_size} must split into {replicas} "
                    f"replica batches that are multiples of multiplicity={multiplicity}")
  return per_replica, pipelines, pipeline_id


def train_dataset(source: DataSource, *, multiplicity: int, global_batch_size: int,
                  resolution: int, seed: int, start_step: int = 0, input_context=None,
                  augment: dict | None = None, dtype=tf.float32,
                  input_range: str | None = None) -> tf.data.Dataset:
  """The infinite train stream with repeated augmentation, from batch ``start_step`` on.

  Same signature and output as ``data.train_dataset`` plus ``multiplicity``:
  (images [b, res, res, 3], targets [b, num_classes]).
  """
  multiplicity = int(multiplicity)
  settings = resolve_augment(source, augment)
  if settings["mixup_alpha"] > 0 or settings["cutmix_alpha"] > 0:
    raise DataError("repeated augmentation does not support mixup/cutmix")
  if multiplicity < 1 or start_step < 0:
    raise DataError(f"multiplicity={multiplicity} must be >= 1, start_step >= 0")
  if source.shard_order is not None:
    raise DataError(f"{source.name}: repeated augmentation reads the global order; load the "
                    f"source with order='global'")
  per_replica, pipelines, pipeline_id = _share(global_batch_size, multiplicity, input_context)
  num_examples, unique = source.train_size, unique_per_epoch(source.train_size, multiplicity)
  if unique < 1:
    raise DataError(f"multiplicity={multiplicity} exceeds the {num_examples} train images")
  first_epoch, first_offset = divmod(int(start_step) * global_batch_size // multiplicity, unique)
  train_record = record_lookup(source.train_records)
  seed = int(seed)

  def epoch_samples(epoch):
    begin = tf.where(epoch == first_epoch, tf.constant(first_offset, tf.int64), 0)
    indices = order.example_index(tf.range(begin, unique), num_examples, seed, epoch)
    repeated = tf.repeat(indices, multiplicity)
    copies = tf.tile(tf.range(multiplicity, dtype=tf.int64), tf.shape(indices))
    return tf.data.Dataset.from_tensor_slices(
        (tf.fill(tf.shape(repeated), epoch), repeated, copies))

  dataset = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_samples)
  if pipelines > 1:  # this pipeline's contiguous slice of every global batch
    share = global_batch_size // pipelines
    dataset = dataset.batch(share, drop_remainder=True).shard(pipelines, pipeline_id).unbatch()
  augment_seed = order.base_seed(seed, order.AUGMENT_TAG)

  def load(epoch, index, copy):
    encoded, target = source.read(train_record(index))
    copy_seed = order.fold_in(order.fold_in(order.fold_in(augment_seed, epoch), index), copy)
    return train_image(encoded, copy_seed, resolution, settings, dtype, input_range), target

  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(per_replica, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def data_module(base, multiplicity: int):
  """``base`` (a module with the reproduce.data API) whose train stream repeats each image
  ``multiplicity`` times; ``base`` itself when the multiplicity is 1."""
  if int(multiplicity) <= 1:
    return base
  return types.SimpleNamespace(
      load_source=base.load_source, heldout_dataset=base.heldout_dataset,
      train_dataset=functools.partial(train_dataset, multiplicity=int(multiplicity)))
