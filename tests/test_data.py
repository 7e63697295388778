"""Tests for reproduce.data: sources, epoch-exact order, resume, sharding, preprocessing, errors."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from reproduce import data
from reproduce.data import randaugment as randaugment_lib

RES = 16


def _write_jpeg(path, seed: int, height: int = 12, width: int = 10) -> None:
  pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
  tf.io.write_file(str(path), tf.io.encode_jpeg(pixels))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def digits(digits_dir):
  return data.load_source("digits", data_dir=digits_dir)


@pytest.fixture(scope="session")
def unique_folder(tmp_path_factory):
  """24 images, each its own class, so a target's argmax names the image."""
  root = tmp_path_factory.mktemp("unique")
  for i in range(24):
    os.makedirs(root / f"c{i:02d}")
    _write_jpeg(root / f"c{i:02d}" / "img.jpg", i)
  return data.load_source(f"imagefolder:{root}", heldout_size=4, seed=3)


def _ids(batches) -> list[np.ndarray]:
  return [np.argmax(targets, axis=-1) for _, targets in batches]


def _take(dataset, count):
  return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


# --- sources ------------------------------------------------------------------------------


def test_digits_offline_source_and_batches(digits):
  assert (digits.num_classes, digits.train_size, digits.heldout_size) == (10, 1437, 360)
  assert not digits.multi_label
  images, targets = next(iter(data.train_dataset(
      digits, global_batch_size=8, resolution=32, seed=0)))
  assert images.shape == (8, 32, 32, 3) and images.dtype == tf.float32
  np.testing.assert_allclose(targets.numpy().sum(-1), 1.0)
  low = (0 - np.array(data.MEAN_RGB)) / data.STDDEV_RGB
  high = (255 - np.array(data.MEAN_RGB)) / data.STDDEV_RGB
  assert low.min() - 1e-4 <= images.numpy().min() and images.numpy().max() <= high.max() + 1e-4


def test_heldout_is_disjoint_and_complete(digits, unique_folder):
  for source in (digits, unique_folder):
    train, heldout = set(source.train_records), set(source.heldout_records)
    assert not train & heldout
    assert len(train) + len(heldout) == source.train_size + source.heldout_size


def test_heldout_dataset_pads_with_mask(digits):
  batches = list(data.heldout_dataset(digits, global_batch_size=100, resolution=24))
  assert len(batches) == 4 and all(b[0].shape == (100, 24, 24, 3) for b in batches)
  masks = np.concatenate([b[2].numpy() for b in batches])
  assert masks.sum() == 360 and masks[:360].all()
  again = list(data.heldout_dataset(digits, global_batch_size=100, resolution=24))
  np.testing.assert_array_equal(batches[1][0].numpy(), again[1][0].numpy())


# --- order, resume, sharding --------------------------------------------------------------


def test_example_order_is_pure_permutation(digits):
  first = data.example_order(digits, seed=5, epoch=2)
  np.testing.assert_array_equal(first, data.example_order(digits, seed=5, epoch=2))
  np.testing.assert_array_equal(np.sort(first), np.arange(digits.train_size))
  assert not np.array_equal(first, data.example_order(digits, seed=5, epoch=3))
  assert not np.array_equal(first, data.example_order(digits, seed=6, epoch=2))


def test_resume_gives_identical_batches_across_epoch_boundary(digits_dir):
  # 100 train examples, batch 16: the epoch ends inside batch 6.
  small = data.load_source("digits", data_dir=digits_dir, heldout_size=1697)
  augment = {"randaugment": (2, 15), "mixup_alpha": 0.2, "cutmix_alpha": 1.0}
  kwargs = dict(global_batch_size=16, resolution=RES, seed=11, augment=augment)
  from_start = _take(data.train_dataset(small, **kwargs), 9)
  resumed = _take(data.train_dataset(small, start_step=5, **kwargs), 4)
  for (x0, y0), (x1, y1) in zip(from_start[5:], resumed):
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)


def test_every_example_once_per_epoch_across_restart(unique_folder):
  source, batch = unique_folder, 6  # 20 train examples: epochs end inside batches 3 and 6
  kwargs = dict(global_batch_size=batch, resolution=8, seed=4)
  before_crash = _ids(_take(data.train_dataset(source, **kwargs), 2))
  after_restart = _ids(_take(data.train_dataset(source, start_step=2, **kwargs), 5))
  stream = np.concatenate(before_crash + after_restart)
  train_classes = set(source.train_records.tolist())  # class id == record id here
  for epoch in range(2):
    seen = stream[epoch * 20:(epoch + 1) * 20]
    assert sorted(seen.tolist()) == sorted(train_classes)
    expected = source.train_records[data.example_order(source, seed=4, epoch=epoch)]
    np.testing.assert_array_equal(seen, expected)
  assert not set(stream.tolist()) & set(source.heldout_records.tolist())


def test_pipelines_share_each_global_batch_exactly(unique_folder):
  global_batch, replicas, pipelines = 8, 4, 2
  kwargs = dict(global_batch_size=global_batch, resolution=8, seed=1, start_step=1)
  whole = _take(data.train_dataset(unique_folder, **kwargs), 3)
  shards = []
  for pipeline in range(pipelines):
    context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                         input_pipeline_id=pipeline,
                                         num_replicas_in_sync=replicas)
    batches = _take(data.train_dataset(unique_folder, input_context=context, **kwargs), 6)
    assert all(x.shape[0] == global_batch // replicas for x, _ in batches)
    shards.append(batches)
  for step in range(3):
    # Pipeline p feeds its 2 local replicas with batches 2*step and 2*step+1.
    parts = [shards[p][2 * step + r] for p in range(pipelines) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), whole[step][0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), whole[step][1])


def test_heldout_sharding_covers_each_example_once(unique_folder):
  seen = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(2, pipeline, 2)
    for _, targets, mask in data.heldout_dataset(unique_folder, global_batch_size=4,
                                                 resolution=8, input_context=context):
      seen += np.argmax(targets.numpy(), -1)[mask.numpy() > 0].tolist()
  assert sorted(seen) == sorted(unique_folder.heldout_records.tolist())


# --- preprocessing ------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", [tf.io.encode_jpeg, tf.io.encode_png])
def test_train_and_eval_preprocessing_shapes(encoder):
  pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
  encoded = encoder(pixels)
  settings = {**data.AUGMENT_DEFAULTS, "randaugment": (2, 10)}
  seed = tf.constant([1, 2], tf.int64)
  image = data.train_image(encoded, seed, 24, settings, tf.bfloat16)
  assert image.shape == (24, 24, 3) and image.dtype == tf.bfloat16
  np.testing.assert_array_equal(image.numpy(), data.train_image(encoded, seed, 24, settings,
                                                                tf.bfloat16).numpy())
  evaluated = data.eval_image(encoded, 24)
  assert evaluated.shape == (24, 24, 3)
  assert np.abs(evaluated.numpy()).max() < 3.0
  assert data.eval_crop_padding(224) == 32 and data.eval_crop_padding(32) == 5


def test_randaugment_every_op_keeps_shape_and_range():
  image = tf.constant(np.random.default_rng(1).integers(0, 256, (16, 16, 3)), tf.float32)
  for op in range(len(randaugment_lib.OP_NAMES)):
    out = randaugment_lib._apply_op(image, tf.constant(op), 1.5, tf.constant(-1.0))
    assert out.shape == (16, 16, 3), randaugment_lib.OP_NAMES[op]
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0


def test_mixing_keeps_targets_normalised():
  images = tf.random.stateless_uniform([8, 6, 6, 3], [0, 1])
  targets = tf.one_hot(tf.range(8) % 3, 3)
  seed = tf.constant([3, 4], tf.int64)
  mixed, mixed_targets = data.mix_batch(images, targets, seed, 0.2, 1.0)
  assert mixed.shape == images.shape
  np.testing.assert_allclose(mixed_targets.numpy().sum(-1), 1.0, rtol=1e-5)
  again = data.mix_batch(images, targets, seed, 0.2, 1.0)
  np.testing.assert_array_equal(mixed.numpy(), again[0].numpy())


# --- other sources ------------------------------------------------------------------------


def test_imagefolder_skips_corrupt_jpeg(tmp_path, caplog):
  for label in ("cat", "dog"):
    os.makedirs(tmp_path / "train" / label)
    for i in range(5):
      _write_jpeg(tmp_path / "train" / label / f"{i}.jpg", i)
  (tmp_path / "train" / "dog" / "garbage.jpg").write_bytes(b"not an image at all")
  good = (tmp_path / "train" / "cat" / "0.jpg").read_bytes()
  (tmp_path / "train" / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
  with caplog.at_level(logging.WARNING):
    source = data.load_source(f"imagefolder:{tmp_path}", heldout_size=2)
  assert source.skipped_corrupt == 2 and "skipping 2 corrupt" in caplog.text
  assert (source.num_classes, source.train_size, source.heldout_size) == (2, 8, 2)
  images, _ = next(iter(data.train_dataset(source, global_batch_size=4, resolution=8, seed=0)))
  assert images.shape == (4, 8, 8, 3)
  with pytest.raises(data.DataError, match="2 corrupt image"):
    data.load_source(f"imagefolder:{tmp_path}", skip_corrupt=False)


def test_tfds_mock_imagenette():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=20):
    source = data.load_source("tfds:imagenette", heldout_size=4)
    assert (source.num_classes, source.train_size, source.heldout_size) == (10, 16, 4)
    images, targets = next(iter(data.train_dataset(
        source, global_batch_size=4, resolution=RES, seed=0)))
    assert images.shape == (4, RES, RES, 3) and targets.shape == (4, 10)
    _, _, mask = next(iter(data.heldout_dataset(source, global_batch_size=8, resolution=RES)))
    assert mask.numpy().sum() == 4


def _write_tfrecords(directory, label_lists) -> None:
  for shard in range(2):
    with tf.io.TFRecordWriter(str(directory / f"data.tfrecord-{shard:05d}")) as writer:
      for i in range(shard, len(label_lists), 2):
        pixels = np.full((9, 9, 3), 10 * i, np.uint8)
        example = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[tf.io.encode_jpeg(pixels).numpy()])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=label_lists[i])),
        }))
        writer.write(example.SerializeToString())


def test_tfrecord_glob_single_and_multi_label(tmp_path):
  _write_tfrecords(tmp_path, [[i % 3] for i in range(10)])
  single = data.load_source(f"tfrecord:{tmp_path}/data.tfrecord-*", heldout_size=2)
  assert (single.num_classes, single.multi_label, single.train_size) == (3, False, 8)
  multi_dir = tmp_path / "multi"
  os.makedirs(multi_dir)
  _write_tfrecords(multi_dir, [[0, 4], [1], [2, 3]] * 3)
  multi = data.load_source(f"tfrecord:{multi_dir}/*", heldout_size=3)
  assert (multi.num_classes, multi.multi_label, multi.train_size) == (5, True, 6)
  _, targets = next(iter(data.train_dataset(multi, global_batch_size=6, resolution=8, seed=0)))
  assert sorted(targets.numpy().sum(-1).tolist()) == [1, 1, 2, 2, 2, 2]


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ("cifar:///x", "unknown dataset spec"),
    ("/some/path", "unknown dataset spec"),
    ("tfds:no_such_dataset_xyz", "TFDS has no dataset"),
    ("imagefolder:/no/such/dir", "does not exist"),
    ("tfrecord:/no/such/dir/*.tfrecord", "matches no files"),
])
def test_bad_specs_raise_one_line_errors(spec, message):
  with pytest.raises(data.DataError, match=message) as error:
    data.load_source(spec)
  assert "\n" not in str(error.value)


def test_missing_tfds_and_imagenet_manual_errors(tmp_path):
  with pytest.raises(data.DataError, match=f"not prepared in {tmp_path}"):
    data.load_source("mnist", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"):
    data.load_source("imagenet2012", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match=f"manual_dir={tmp_path} lacks"):
    data.load_source("imagenet2012", data_dir=str(tmp_path), manual_dir=str(tmp_path))


def test_empty_imagefolder_and_bad_options(tmp_path, digits, digits_dir):
  os.makedirs(tmp_path / "empty_class")
  with pytest.raises(data.DataError, match="has no images"):
    data.load_source(f"imagefolder:{tmp_path}")
  with pytest.raises(data.DataError, match="heldout_size=5000"):
    data.load_source("digits", data_dir=digits_dir, heldout_size=5000)
  with pytest.raises(data.DataError, match="unknown key"):
    data.train_dataset(digits, global_batch_size=4, resolution=8, seed=0, augment={"blur": 1})
  with pytest.raises(data.DataError, match="multiple of the 4 replicas"):
    data.train_dataset(digits, global_batch_size=6, resolution=8, seed=0,
                       input_context=tf.distribute.InputContext(1, 0, 4))


def test_tfds_tfrecord_files_are_read_by_index(tmp_path, digits):
  """A TFDS dataset prepared as TFRecords (tfds' default) reads the same examples."""
  import tensorflow_datasets as tfds
  builder = tfds.builder("sklearn_digits", data_dir=str(tmp_path))
  builder.download_and_prepare(file_format="tfrecord")
  source = data.load_source("tfds:sklearn_digits", data_dir=str(tmp_path), heldout_size=360)
  assert (source.train_size, source.num_classes) == (1437, 10)
  assert "tfrecord" in str(builder.info.file_format).lower()
  _, _, mask = next(iter(data.heldout_dataset(source, global_batch_size=400, resolution=8)))
  assert mask.numpy().sum() == 360
