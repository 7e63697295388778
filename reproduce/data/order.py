"""Stateless, epoch-exact randomness: example order and the seeds derived from it.

Global order: epoch ``e`` visits train example ``example_index(i, N, seed, e)`` at position
``i``: a stateless index permutation (``tf.random.experimental.index_shuffle``, a Philox-keyed
bijection of ``0..N-1``), so the order is a pure function of ``(seed, e)`` and any position
is computed on its own, without materialising an N-sized order.

Shard order (large data, ``HostShards``): input pipeline ``i`` of ``P`` owns shards
``i, i+P, ...``; its epoch ``e`` permutes its shards (index_shuffle over their ids), cuts the
permuted list into windows of ``k`` shards and visits each window's records in an
index_shuffle permutation of the window, window after window. Any position is computed from
O(shards) tables, so a host opens at most ``k`` shards at a time and reads nothing of the others.

Every random stream (order, per-example augmentation, batch mixing, the ImageFolder held-out
shuffle) starts from its own base seed ``[seed, tag]``, so the streams never share random
numbers.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reproduce.data.datasource import DataError, DataSource, ShardOrder

ORDER_TAG, AUGMENT_TAG, MIX_TAG, HELDOUT_TAG, SHARD_TAG = 1, 2, 3, 4, 5
ORDERS = ("auto", "global", "shards")
# "auto" reads sources of more train examples than this in the shard order: the global
# permutation makes every host open every file, and ArrayRecord keeps 8 bytes per record of
# each opened file (0.8 GB per host at 1e8 examples).
SHARD_ORDER_FROM = 100_000_000
SHARD_WINDOW = 8  # shards a host reads at a time in the shard order


def fold_in(seed: tf.Tensor, data) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def base_seed(seed: int, tag: int) -> tf.Tensor:
  return tf.constant([seed, tag], tf.int64)


def example_index(position, num_examples: int, seed, epoch, tag: int = ORDER_TAG) -> tf.Tensor:
  """The example at ``position`` (scalar or vector, int64) of scalar epoch ``epoch``'s permutation
  of ``0..num_examples-1``, fixed by (seed, epoch, tag); traceable, O(1) memory per position."""
  epoch_seed = fold_in(base_seed(int(seed), tag), epoch)
  # index_shuffle's max_index is inclusive; index, max_index and output share one dtype.
  return tf.random.experimental.index_shuffle(
      tf.cast(position, tf.int64), epoch_seed, tf.constant(int(num_examples) - 1, tf.int64))


def permutation(num_examples: int, seed: int, epoch: int, tag: int) -> np.ndarray:
  """A materialised permutation of ``0..num_examples-1`` (``stateless_shuffle``; O(N)): the
  ImageFolder held-out shuffle, whose file list is O(N) anyway. Kept as it was so existing
  ImageFolder runs keep their held-out sets."""
  epoch_seed = fold_in(base_seed(int(seed), tag), epoch)
  return tf.random.experimental.stateless_shuffle(
      tf.range(num_examples, dtype=tf.int64), epoch_seed, alg="philox").numpy()


def example_order(source: DataSource, seed: int, epoch: int, pipelines: int = 1,
                  pipeline_id: int = 0) -> np.ndarray:
  """Train-example indices in the order epoch ``epoch`` visits them (materialised: for tests
  and inspection; the pipeline computes positions one by one): a permutation of
  0..train_size-1, or, in the shard order, of input pipeline ``pipeline_id``'s examples."""
  if source.shard_order is None:
    positions = tf.range(source.train_size, dtype=tf.int64)
    return example_index(positions, source.train_size, seed, epoch).numpy()
  host = HostShards(source.shard_order, seed, pipelines, pipeline_id)
  tables = host.epoch_tables(epoch)
  positions = tf.data.Dataset.range(host.size)
  return np.fromiter(positions.map(lambda r: host.train_index(tables, epoch, r))
                     .as_numpy_iterator(), np.int64, host.size)


def choose_order(name: str, file_sizes: tuple[int, ...], train_size: int,
                 window: int = SHARD_WINDOW) -> ShardOrder | None:
  """The shard order over the train parts of files of ``file_sizes`` records (train ids
  0..train_size-1 first), or None for the global order: ``name`` "global", "shards", or
  "auto" (shards from ``SHARD_ORDER_FROM`` train examples on)."""
  if name not in ORDERS:
    raise DataError(f"order={name!r}: use one of {', '.join(ORDERS)}")
  if window < 1:
    raise DataError(f"shard_window={window} must be >= 1")
  if name == "global" or (name == "auto" and train_size <= SHARD_ORDER_FROM):
    return None
  ends = np.minimum(np.cumsum(np.asarray(file_sizes, np.int64)), train_size)
  sizes = np.diff(ends, prepend=0)
  return ShardOrder(sizes=tuple(int(n) for n in sizes if n > 0), window=int(window))


class HostShards:
  """The shard order of input pipeline ``pipeline_id`` of ``pipelines``: it owns shards
  ``pipeline_id, pipeline_id + pipelines, ...`` (``size`` examples per epoch, the same every
  epoch); ``epoch_tables`` and ``train_index`` place its examples in an epoch."""

  def __init__(self, shard_order: ShardOrder, seed: int, pipelines: int, pipeline_id: int):
    sizes = np.asarray(shard_order.sizes, np.int64)
    if len(sizes) < pipelines:
      raise DataError(f"shard order: {len(sizes)} shards for {pipelines} input pipelines "
                      f"(each needs one); use order='global' or more files")
    starts = np.cumsum(sizes) - sizes
    self.starts = tf.constant(starts[pipeline_id::pipelines])
    self.sizes = tf.constant(sizes[pipeline_id::pipelines])
    self.size = int(sizes[pipeline_id::pipelines].sum())
    count = len(sizes[pipeline_id::pipelines])
    window = shard_order.window
    self._window_last_slot = np.minimum(np.arange(0, count, window) + window, count) - 1
    self._shard_seed = fold_in(base_seed(int(seed), SHARD_TAG), pipeline_id)
    self._record_seed = fold_in(base_seed(int(seed), ORDER_TAG), pipeline_id)

  def epoch_tables(self, epoch) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(host shard at each slot, each slot's end, each window's end) of epoch ``epoch``;
    slots are the permuted shards, ends count examples from the epoch's start."""
    count = int(self.sizes.shape[0])
    slots = tf.random.experimental.index_shuffle(
        tf.range(count, dtype=tf.int64), fold_in(self._shard_seed, epoch),
        tf.constant(count - 1, tf.int64))
    slot_ends = tf.cumsum(tf.gather(self.sizes, slots))
    return slots, slot_ends, tf.gather(slot_ends, self._window_last_slot)

  def train_index(self, tables, epoch, position) -> tf.Tensor:
    """The train index at scalar ``position`` (0..size-1) of epoch ``epoch``: the window
    holding it, an index_shuffle of that window's records, then the shard and the offset."""
    slots, slot_ends, window_ends = tables
    position = tf.cast(position, tf.int64)
    window = tf.searchsorted(window_ends, position[None], side="right")[0]
    window_start = tf.concat([[0], window_ends], 0)[window]
    shuffled = window_start + tf.random.experimental.index_shuffle(
        position - window_start, fold_in(fold_in(self._record_seed, epoch), window),
        window_ends[window] - window_start - 1)
    slot = tf.searchsorted(slot_ends, shuffled[None], side="right")[0]
    shard = slots[slot]
    return self.starts[shard] + shuffled - (slot_ends[slot] - self.sizes[shard])
