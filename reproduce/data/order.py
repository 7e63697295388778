"""Stateless, epoch-exact randomness: example order and the seeds derived from it.

Epoch ``e`` visits the train examples in ``example_order(source, seed, e)``, a pure function
of ``(seed, e)``. Every random stream (order, per-example augmentation, batch mixing, the
ImageFolder held-out shuffle) starts from its own base seed ``[seed, tag]``, so the streams
never share random numbers.
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


def order_tensor(num_examples: int, seed, epoch, tag: int = ORDER_TAG) -> tf.Tensor:
  """A permutation of ``0..num_examples-1`` fixed by (seed, epoch, tag); traceable."""
  epoch_seed = fold_in(base_seed(int(seed), tag), epoch)
  return tf.random.experimental.stateless_shuffle(
      tf.range(num_examples, dtype=tf.int64), epoch_seed, alg="philox")


def permutation(num_examples: int, seed: int, epoch: int, tag: int) -> np.ndarray:
  return order_tensor(num_examples, seed, epoch, tag).numpy()


def example_order(source: DataSource, seed: int, epoch: int) -> np.ndarray:
  """Train-example indices (0..train_size-1) in the order epoch ``epoch`` visits them."""
  return permutation(source.train_size, int(seed), int(epoch), ORDER_TAG)
