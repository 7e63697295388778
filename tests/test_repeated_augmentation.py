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


def _batches(source, steps, start_step=0, multiplicity=MULTIPLICITY, augment=None,
             input_range=None):
  dataset = repeated.train_dataset(source, multiplicity=multiplicity, global_batch_size=BATCH,
                                   resolution=RES, seed=SEED, start_step=start_step,
                                   augment=augment, input_range=input_range)
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


def test_two_hosts_batches_together_are_one_hosts():
  """Each of 2 input pipelines reads its contiguous half of every global batch, augmented
  with the same seeds: host 0's batch then host 1's is the one-host batch."""
  source = _source()
  one = _batches(source, steps=3, start_step=2)
  hosts = []
  for host in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=host,
                                         num_replicas_in_sync=2)
    dataset = repeated.train_dataset(source, multiplicity=MULTIPLICITY, global_batch_size=BATCH,
                                     resolution=RES, seed=SEED, start_step=2,
                                     input_context=context)
    hosts.append([(i.numpy(), np.argmax(t.numpy(), -1)) for i, t in dataset.take(3)])
  for (images, indices), (a, ia), (b, ib) in zip(one, *hosts):
    assert len(ia) == len(ib) == BATCH // 2
    np.testing.assert_array_equal(np.concatenate([ia, ib]), indices)
    np.testing.assert_array_equal(np.concatenate([a, b]), images)


@pytest.mark.parametrize("augment", [{"mixup_alpha": 0.2}, {"cutmix_alpha": 1.0}])
def test_mixup_or_cutmix_alone_is_refused(augment):
  with pytest.raises(data.DataError, match="does not support mixup/cutmix"):
    _batches(_source(), steps=1, augment=augment)


def test_input_range_reaches_the_images():
  from reproduce.data import preprocess
  plain = dict(crop=False, flip=False)
  images = {r: _batches(_source(), steps=1, augment=plain, input_range=r)[0][0]
            for r in ("imagenet", "minus_one_one")}
  pixels = images["minus_one_one"] * 127.5 + 127.5
  mean, std = (np.array(v, np.float32) for v in preprocess.INPUT_RANGES["imagenet"])
  np.testing.assert_allclose(images["imagenet"] * std + mean, pixels, atol=1e-3)
  assert np.abs(images["imagenet"] - images["minus_one_one"]).max() > 0.1
