"""Repeated augmentation (reproduce.data.repeated): every batch holds each sampled image
``multiplicity`` times with different augmentations; an epoch visits train_size //
multiplicity unique images; the stream resumes exactly at any step."""

from __future__ import annotations

import types

import numpy as np
import pytest
import tensorflow as tf

from reproduce import data
from reproduce.data import repeated

TRAIN, MULTIPLICITY, BATCH, RES, SEED = 42, 4, 8, 8, 5


def _source(train_size=TRAIN):
  """Noise images whose one-hot target is their train index (num_classes = train_size)."""
  rng = np.random.default_rng(0)
  encoded = tf.constant([tf.io.encode_png(rng.integers(0, 256, (64, 64, 3), np.uint8)).numpy()
                         for _ in range(train_size)])

  def read(record):
    return tf.gather(encoded, record), tf.one_hot(record, train_size)

  return data.DataSource(name="indexed", num_classes=train_size, train_size=train_size,
                         heldout_size=0, multi_label=False,
                         train_records=np.arange(train_size), heldout_records=np.arange(0),
                         read=read)


def _batches(source, steps, start_step=0, multiplicity=MULTIPLICITY, augment=None):
  dataset = repeated.train_dataset(source, multiplicity=multiplicity, global_batch_size=BATCH,
                                   resolution=RES, seed=SEED, start_step=start_step,
                                   augment=augment)
  return [(images.numpy(), np.argmax(targets.numpy(), -1))
          for images, targets in dataset.take(steps)]


def test_each_batch_holds_each_image_multiplicity_times_differently_augmented():
  for images, indices in _batches(_source(), steps=6):
    groups = indices.reshape(-1, MULTIPLICITY)
    assert (groups == groups[:, :1]).all()                       # m copies of one image...
    assert len(set(groups[:, 0])) == BATCH // MULTIPLICITY       # ... of distinct images
    for group in images.reshape(-1, MULTIPLICITY, RES, RES, 3):
      for a in range(MULTIPLICITY):                              # ... each augmented anew
        for b in range(a):
          assert np.abs(group[a] - group[b]).max() > 1e-3


def test_copies_are_identical_without_augmentation():
  plain = dict(crop=False, flip=False)
  for images, _ in _batches(_source(), steps=2, augment=plain):
    groups = images.reshape(-1, MULTIPLICITY, RES, RES, 3)
    np.testing.assert_array_equal(groups, np.repeat(groups[:, :1], MULTIPLICITY, axis=1))


def test_unique_images_per_epoch_follow_the_compute_constant_rule():
  source = _source()
  unique = repeated.unique_per_epoch(TRAIN, MULTIPLICITY)
  assert unique == TRAIN // MULTIPLICITY == 10
  steps_per_epoch = unique * MULTIPLICITY // BATCH                # 40 samples = 5 steps
  indices = np.concatenate([i for _, i in _batches(source, 2 * steps_per_epoch)])
  for epoch in range(2):
    visited = indices[epoch * unique * MULTIPLICITY:(epoch + 1) * unique * MULTIPLICITY]
    firsts = visited[::MULTIPLICITY]
    assert len(set(firsts)) == unique
    np.testing.assert_array_equal(firsts, data.example_order(source, SEED, epoch)[:unique])


def test_stream_resumes_exactly_at_any_step():
  source = _source()
  whole = _batches(source, steps=9)
  # An epoch is 5 steps: resume inside the first epoch, at its end, and inside the second.
  for start in (2, 5, 7):
    resumed = _batches(source, steps=9 - start, start_step=start)
    assert len(resumed) == 9 - start
    for (a, ia), (b, ib) in zip(whole[start:], resumed):
      np.testing.assert_array_equal(ia, ib)
      np.testing.assert_array_equal(a, b)


def test_data_module_wraps_only_the_train_stream():
  base = types.SimpleNamespace(load_source=1, heldout_dataset=2, train_dataset=3)
  assert repeated.data_module(base, 1) is base
  wrapped = repeated.data_module(base, 4)
  assert (wrapped.load_source, wrapped.heldout_dataset) == (1, 2)
  assert wrapped.train_dataset.keywords == {"multiplicity": 4}


def test_batch_must_hold_whole_groups():
  with pytest.raises(data.DataError, match="multiplicity"):
    repeated.train_dataset(_source(), multiplicity=3, global_batch_size=BATCH, resolution=RES,
                           seed=0)
