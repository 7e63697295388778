"""The per-host ``tf.data`` pipelines: the infinite, epoch-exact train stream and the padded
held-out set, each sharded over ``tf.distribute`` input pipelines.

The train stream is the concatenation of epochs, epoch ``e`` in ``example_order(source, seed,
e)``, each position's example computed on its own (``order.example_index``: nothing N-sized);
batch ``s`` is ``stream[s*B:(s+1)*B]``, so recreating the stream with ``start_step=s`` resumes
exactly, and each input pipeline computes only its slice of every global batch. Sources in
the shard order (``source.shard_order``): each input pipeline reads its own stream of epochs
over its own shards, ``B/P`` examples per step, resumed likewise at position
``start_step * B/P``. Augmentation
seeds come from (seed, epoch, example index), mixing seeds from the stream position. See
docs/data.md.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from reproduce.data import order
from reproduce.data.datasource import DataError, DataSource, record_lookup
from reproduce.data.mixing import mix_batch
from reproduce.data.preprocess import (augment_batch, check_eval_crop, check_input_range,
                                       crop_and_flip, eval_image, normalise, resolve_augment)


def _sharding(global_batch_size: int, input_context) -> tuple[int, int, int]:
  """(per-replica batch, number of input pipelines, this pipeline's id)."""
  if global_batch_size <= 0:
    raise DataError(f"global_batch_size={global_batch_size} must be positive")
  if input_context is None:
    return global_batch_size, 1, 0
  replicas = input_context.num_replicas_in_sync
  pipelines = input_context.num_input_pipelines
  if global_batch_size % replicas or replicas % pipelines:
    raise DataError(f"global_batch_size={global_batch_size} must be a multiple of the "
                    f"{replicas} replicas (and replicas of the {pipelines} input pipelines)")
  return global_batch_size // replicas, pipelines, input_context.input_pipeline_id


def _take_share(dataset: tf.data.Dataset, global_batch_size: int, pipelines: int,
                pipeline_id: int) -> tf.data.Dataset:
  """Keeps slice ``pipeline_id`` of every global batch (contiguous, B/pipelines elements)."""
  if pipelines == 1:
    return dataset
  share = global_batch_size // pipelines
  return dataset.batch(share, drop_remainder=True).shard(pipelines, pipeline_id).unbatch()


def _own_stream_positions(start_step: int, global_batch_size: int, pipelines: int,
                          pipeline_id: int) -> tf.data.Dataset:
  """Stream positions this pipeline reads from batch ``start_step`` on: slice ``pipeline_id``
  (``B/pipelines`` contiguous positions) of every global batch, computed, not filtered, so a
  host never touches the other hosts' positions."""
  share = global_batch_size // pipelines
  offsets = tf.range(share, dtype=tf.int64) + pipeline_id * share
  last_step = np.iinfo(np.int64).max // global_batch_size - 1
  steps = tf.data.Dataset.range(int(start_step), last_step)
  return steps.map(lambda step: step * global_batch_size + offsets).unbatch()


def _global_order_stream(num_examples: int, seed: int, start_step: int,
                         global_batch_size: int, pipelines: int,
                         pipeline_id: int) -> tf.data.Dataset:
  """(epoch, train index, stream position) of this pipeline's examples in the global order."""

  def place(stream_position):
    epoch, position = stream_position // num_examples, stream_position % num_examples
    return epoch, order.example_index(position, num_examples, seed, epoch), stream_position

  return _own_stream_positions(start_step, global_batch_size, pipelines,
                               pipeline_id).map(place, num_parallel_calls=tf.data.AUTOTUNE)


def _shard_order_stream(source: DataSource, seed: int, start_step: int,
                        global_batch_size: int, pipelines: int,
                        pipeline_id: int) -> tf.data.Dataset:
  """(host epoch, train index, stream position) of this pipeline's examples in the shard
  order: its own stream of epochs over its shards (``order.HostShards``), ``B/P`` examples per
  step, from position ``start_step * B/P`` on; the stream position is where the example sits
  in the global stream (batch ``s`` holds pipeline ``i``'s slice at ``s*B + i*B/P``)."""
  host = order.HostShards(source.shard_order, seed, pipelines, pipeline_id)
  share = global_batch_size // pipelines
  first_epoch, first_position = divmod(int(start_step) * share, host.size)

  def epoch_examples(epoch):
    tables = host.epoch_tables(epoch)
    begin = tf.where(epoch == first_epoch, tf.constant(first_position, tf.int64), 0)

    def place(position):
      host_position = epoch * host.size + position
      stream_position = ((host_position // share) * global_batch_size + pipeline_id * share
                         + host_position % share)
      return epoch, host.train_index(tables, epoch, position), stream_position

    return tf.data.Dataset.range(begin, host.size).map(place,
                                                       num_parallel_calls=tf.data.AUTOTUNE)

  epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
  return epochs.flat_map(epoch_examples)


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return options


def _mix_then_augment(dataset: tf.data.Dataset, settings: dict, seed: int) -> tf.data.Dataset:
  """MixUp/CutMix per batch, then RandAugment per (mixed) image, as the NFNet code
  (augment_before_mix=False). Elements: (images, targets, stream positions, example seeds)."""
  if settings["mixup_alpha"] > 0 or settings["cutmix_alpha"] > 0:
    mix_seed = order.base_seed(seed, order.MIX_TAG)

    def mix(images, targets, stream_positions, example_seeds):
      # Seeded by the stream position of the batch's first example: resumes identically.
      images, targets = mix_batch(images, targets, order.fold_in(mix_seed, stream_positions[0]),
                                  settings["mixup_alpha"], settings["cutmix_alpha"])
      return images, targets, stream_positions, example_seeds

    dataset = dataset.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
  if settings["randaugment"]:
    # Each image with the seed of the example at its batch position.
    def augment_each(images, targets, stream_positions, example_seeds):
      images = augment_batch(images, example_seeds, settings)
      return images, targets, stream_positions, example_seeds

    dataset = dataset.map(augment_each, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset


def train_dataset(source: DataSource, *, global_batch_size: int, resolution: int, seed: int,
                  start_step: int = 0, input_context: tf.distribute.InputContext | None = None,
                  augment: dict | None = None, dtype=tf.float32,
                  input_range: str | None = None) -> tf.data.Dataset:
  """The infinite, epoch-exact train stream from batch ``start_step`` on.

  Args:
    source: from ``load_source``.
    global_batch_size: examples per step over all replicas.
    resolution: output height and width.
    seed: fixes the example order of every epoch and all augmentation.
    start_step: first batch of the stream (resume: the step to resume at).
    input_context: ``tf.distribute.InputContext``; each pipeline yields per-replica batches
      of ``global_batch_size / num_replicas_in_sync`` made of its contiguous slice of every
      global batch (in the shard order, from its own shards: ``source.shard_order``).
    augment: overrides of ``source.augment_defaults`` (keys of ``AUGMENT_DEFAULTS``).
    dtype: image dtype (tf.bfloat16 on TPUs).
    input_range: the model's input range (``preprocess.INPUT_RANGES``; None: ImageNet
      mean/std).

  Returns:
    A dataset of (images [b, res, res, 3] dtype, targets [b, num_classes] float32).
  """
  settings = resolve_augment(source, augment)
  per_replica, pipelines, pipeline_id = _sharding(global_batch_size, input_context)
  if start_step < 0:
    raise DataError(f"start_step={start_step} must be >= 0")
  train_record = record_lookup(source.train_records)
  seed = int(seed)
  if source.shard_order is None:
    dataset = _global_order_stream(source.train_size, seed, start_step, global_batch_size,
                                   pipelines, pipeline_id)
  else:
    dataset = _shard_order_stream(source, seed, start_step, global_batch_size, pipelines,
                                  pipeline_id)
  augment_seed = order.base_seed(seed, order.AUGMENT_TAG)

  def load(epoch, index, stream_position):
    encoded, target = source.read(train_record(index))
    example_seed = order.fold_in(order.fold_in(augment_seed, epoch), index)
    image = crop_and_flip(encoded, example_seed, resolution, settings)
    return image, target, stream_position, example_seed

  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(per_replica, drop_remainder=True)
  dataset = _mix_then_augment(dataset, settings, seed)
  dataset = dataset.map(lambda images, targets, *_: (normalise(images, dtype, input_range),
                                                             targets))
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def heldout_dataset(source: DataSource, *, global_batch_size: int, resolution: int,
                    input_context: tf.distribute.InputContext | None = None,
                    dtype=tf.float32, crop: str | None = None,
                    input_range: str | None = None) -> tf.data.Dataset:
  """The held-out set, once, in a fixed order, with eval preprocessing.

  ``crop``: the eval crop protocol, "nfnet" or "vit" (see ``eval_image``); None takes the
  source's ``eval_crop``. ``input_range``: as ``train_dataset``'s.

  The last global batch is padded (repeating the last example) to full size so every
  replica gets a full batch; the third element is a float32 mask, 0 on padding. Sum losses
  times mask and divide by the mask's sum.

  Returns:
    A dataset of (images [b, res, res, 3], targets [b, num_classes], mask [b]).
  """
  per_replica, pipelines, pipeline_id = _sharding(global_batch_size, input_context)
  crop = check_eval_crop(source.eval_crop if crop is None else crop)
  check_input_range(input_range)
  count = source.heldout_size
  padded = math.ceil(count / global_batch_size) * global_batch_size
  heldout_record = record_lookup(source.heldout_records)
  dataset = tf.data.Dataset.range(padded)
  dataset = _take_share(dataset, global_batch_size, pipelines, pipeline_id)

  def load(position):
    encoded, target = source.read(heldout_record(tf.minimum(position, count - 1)))
    image = eval_image(encoded, resolution, source.eval_crop_padding, dtype, crop,
                       input_range)
    return image, target, tf.cast(position < count, tf.float32)

  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(per_replica, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())
