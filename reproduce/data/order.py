"""Stateless, epoch-exact randomness: example order and the seeds derived from it.

Epoch ``e`` visits train example ``example_index(i, N, seed, e)`` at position ``i``: a
stateless index permutation (``tf.random.experimental.index_shuffle``, a Philox-keyed
bijection of ``0..N-1``), so the order is a pure function of ``(seed, e)`` and any position
is computed on its own, without materialising an N-sized order. Every random stream (order,
per-example augmentation, batch mixing, the ImageFolder held-out shuffle) starts from its own
base seed ``[seed, tag]``, so the streams never share random numbers.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reproduce.data.datasource import DataSource

ORDER_TAG, AUGMENT_TAG, MIX_TAG, HELDOUT_TAG = 1, 2, 3, 4


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


def example_order(source: DataSource, seed: int, epoch: int) -> np.ndarray:
  """Train-example indices (0..train_size-1) in the order epoch ``epoch`` visits them
  (materialised: for tests and inspection; the pipeline computes positions one by one)."""
  positions = tf.range(source.train_size, dtype=tf.int64)
  return example_index(positions, source.train_size, seed, epoch).numpy()
