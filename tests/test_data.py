"""Tests for reproduce.data: sources, epoch-exact order, resume, sharding, preprocessing and
the eval crops, batch mixing against NumPy formulas, errors (RandAugment: test_randaugment.py).

Nothing here writes outside pytest's temporary directories: every prepared dataset lives in a
``tmp_path``, and ``HOME`` points into one too (so the default cache dir is exercised safely).
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from reproduce import data
from reproduce.data import tfds_source

RES = 16
MULTI_LABEL_CLASSES = 7  # the builder declares 7 classes; its examples use only 0..4


class KitTestMultiLabel(tfds.core.GeneratorBasedBuilder):
  """20 constant 8x8 images (value 10*i) with 1 or 2 labels each, as a TFDS dataset."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)),
        "labels": tfds.features.Sequence(
            tfds.features.ClassLabel(num_classes=MULTI_LABEL_CLASSES)),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(20):
      yield i, {"image": np.full((8, 8, 3), 10 * i, np.uint8), "labels": _multi_labels(i)}


def _multi_labels(i: int) -> list[int]:
  return [i % 5, (i + 2) % 5] if i % 2 else [i % 5]


@pytest.fixture(autouse=True)
def _home_in_tmp(tmp_path, monkeypatch):
  """Anything defaulting to ``~`` lands in this test's temporary directory."""
  monkeypatch.setenv("HOME", str(tmp_path / "home"))


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
def multi_label_dir(tmp_path_factory):
  """KitTestMultiLabel prepared twice: as array_record and as TFRecord files."""
  root = tmp_path_factory.mktemp("multi_label")
  for file_format in ("array_record", "tfrecord"):
    builder = KitTestMultiLabel(data_dir=str(root / file_format))
    builder.download_and_prepare(file_format=file_format)
  return root


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


def _ramp_png(height: int = 48, width: int = 96) -> tuple[tf.Tensor, np.ndarray, np.ndarray]:
  """A non-square PNG whose red channel is 2 * column and green 4 * row, so every pixel of
  an output names the source point it came from (resampling keeps linear ramps)."""
  rows, cols = np.mgrid[0:height, 0:width]
  pixels = np.stack([2 * cols, 4 * rows, np.full_like(rows, 60)], -1).astype(np.uint8)
  return tf.io.encode_png(pixels), rows, cols


def _source_points(image) -> tuple[np.ndarray, np.ndarray]:
  """(source column, source row) of every output pixel of ``eval_image`` on ``_ramp_png``."""
  pixels = image.numpy() * data.STDDEV_RGB + data.MEAN_RGB
  return pixels[..., 0] / 2, pixels[..., 1] / 4


def _expected_points(size, offset, scale):
  """Half-pixel-centre resampling: output pixel k of the crop samples (k + offset + 0.5) *
  scale - 0.5 of the source, per axis."""
  return (np.arange(size) + offset + 0.5) * scale - 0.5


@pytest.mark.parametrize("crop", ["nfnet", "vit"])
def test_eval_crop_takes_the_protocols_pixels(crop):
  """48x96 source, res 16, padding 8. nfnet: the whole image squashed to 24x24 (bicubic),
  centre 16x16 at offset 4. vit: the shorter side to 24 (48x96 -> 24x48, area), centre
  16x16 at offsets (4, 16)."""
  encoded, _, _ = _ramp_png()
  image = data.eval_image(encoded, 16, padding=8, crop=crop)
  assert image.shape == (16, 16, 3)
  columns, rows = _source_points(image)
  if crop == "nfnet":
    want_columns = _expected_points(16, 4, 96 / 24)  # squashed: 4 source px per output px
  else:
    want_columns = _expected_points(16, 16, 96 / 48)  # aspect kept: 2 source px per px
  want_rows = _expected_points(16, 4, 48 / 24)
  np.testing.assert_allclose(columns, np.broadcast_to(want_columns, (16, 16)), atol=0.02)
  np.testing.assert_allclose(rows, np.broadcast_to(want_rows[:, None], (16, 16)), atol=0.02)
  # nfnet shows 62% of the width (source columns 17.5..77.5), vit the central third.
  assert (columns.min() < 32) == (crop == "nfnet") and (columns.max() > 64) == (crop == "nfnet")


def test_eval_crop_default_padding_and_choice_by_source_or_caller(unique_folder):
  encoded, _, _ = _ramp_png()
  np.testing.assert_array_equal(data.eval_image(encoded, 16).numpy(),
                                data.eval_image(encoded, 16, padding=2, crop="nfnet").numpy())
  assert data.eval_crop_padding(16) == 2 and sorted(data.EVAL_CROPS) == ["nfnet", "vit"]
  assert unique_folder.eval_crop == "nfnet"
  first_record = unique_folder.heldout_records[0]
  encoded = unique_folder.read(tf.constant(first_record))[0]
  for crop in (None, "vit"):
    images, _, _ = next(iter(data.heldout_dataset(unique_folder, global_batch_size=2,
                                                  resolution=8, crop=crop)))
    expected = data.eval_image(encoded, 8, unique_folder.eval_crop_padding, crop=crop or "nfnet")
    np.testing.assert_array_equal(images[0].numpy(), expected.numpy())
  with pytest.raises(data.DataError, match="eval crop 'centre'"):
    data.heldout_dataset(unique_folder, global_batch_size=2, resolution=8, crop="centre")


# --- MixUp and CutMix ---------------------------------------------------------------------


def _mixing_batch(batch: int = 8):
  """Distinct random images, and one class per example (so a target names its partner)."""
  images = tf.random.stateless_uniform([batch, 12, 10, 3], [5, 6], maxval=255.0)
  return images, tf.one_hot(tf.range(batch), batch)


def _check_mixup(images, labels, mixed, targets, offset=0):
  """MixUp of a (sub-)batch: x' = lam x + (1 - lam) x[::-1], y' = lam y + (1 - lam) y[::-1]."""
  size = len(images)
  rows = np.arange(size)
  lam = targets[rows, offset + rows]
  np.testing.assert_allclose(lam, lam[0], rtol=1e-6)  # one lam per (sub-)batch
  lam = float(lam[0])
  assert 0.0 < lam < 1.0, f"MixUp did not mix (lam={lam})"
  np.testing.assert_allclose(targets, lam * labels + (1 - lam) * labels[::-1], atol=1e-6)
  np.testing.assert_allclose(mixed, lam * images + (1 - lam) * images[::-1], atol=1e-3)
  return lam


def _check_cutmix(images, labels, mixed, targets):
  """CutMix: the partner's pixels inside one box, the original outside; labels by its area."""
  pasted = np.any(mixed != images, axis=-1)
  box = pasted[0]
  assert all(np.array_equal(p, box) for p in pasted), "one box for the whole batch"
  box_rows, box_cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
  assert box.any(), "CutMix pasted nothing"
  assert np.array_equal(box, np.outer(box.any(1), box.any(0))), "the pasted region is a box"
  assert np.ptp(box_rows) == len(box_rows) - 1 and np.ptp(box_cols) == len(box_cols) - 1
  np.testing.assert_array_equal(mixed[:, box], images[::-1][:, box])
  np.testing.assert_array_equal(mixed[:, ~box], images[:, ~box])
  area = box.mean()
  assert 0.0 < area < 1.0
  np.testing.assert_allclose(targets, (1 - area) * labels + area * labels[::-1], atol=1e-6)
  return area


def test_mixup_mixes_with_the_reversed_batch():
  images, labels = _mixing_batch()
  lams = set()
  for seed in range(4):
    mixed, targets = data.mix_batch(images, labels, tf.constant([seed, 4], tf.int64), 0.4, 0.0)
    lams.add(_check_mixup(images.numpy(), labels.numpy(), mixed.numpy(), targets.numpy()))
  assert len(lams) == 4, "lam changes with the seed"


def test_mixup_lambda_follows_beta_alpha_alpha():
  alpha = 0.3
  images, labels = _mixing_batch(2)
  lams = np.array([float(data.mix_batch(images, labels, tf.constant([seed, 1], tf.int64),
                                        alpha, 0.0)[1][0, 0]) for seed in range(300)])
  assert abs(lams.mean() - 0.5) < 0.06
  beta_variance = 1 / (4 * (2 * alpha + 1))  # Var of Beta(a, a)
  assert abs(lams.var() / beta_variance - 1) < 0.2, lams.var()


def test_cutmix_pastes_a_box_of_the_reversed_batch():
  images, labels = _mixing_batch()
  areas = set()
  for seed in range(4):
    mixed, targets = data.mix_batch(images, labels, tf.constant([seed, 4], tf.int64), 0.0, 1.0)
    areas.add(_check_cutmix(images.numpy(), labels.numpy(), mixed.numpy(), targets.numpy()))
  assert len(areas) > 1, "the box changes with the seed"


def test_mix_batch_with_both_mixes_up_the_first_half_and_cuts_the_second():
  images, labels = _mixing_batch()
  seed = tf.constant([3, 4], tf.int64)
  mixed, targets = data.mix_batch(images, labels, seed, 0.2, 1.0)
  images, labels, mixed, targets = (t.numpy() for t in (images, labels, mixed, targets))
  _check_mixup(images[:4], labels[:4], mixed[:4], targets[:4])
  _check_cutmix(images[4:], labels[4:], mixed[4:], targets[4:])
  again = data.mix_batch(tf.constant(images), tf.constant(labels), seed, 0.2, 1.0)
  np.testing.assert_array_equal(mixed, again[0].numpy())


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
  assert source.skipped_corrupt == 2 and "skipping 2 unusable file(s)" in caplog.text
  assert (source.num_classes, source.train_size, source.heldout_size) == (2, 8, 2)
  images, _ = next(iter(data.train_dataset(source, global_batch_size=4, resolution=8, seed=0)))
  assert images.shape == (4, 8, 8, 3)
  with pytest.raises(data.DataError, match="2 unusable file"):
    data.load_source(f"imagefolder:{tmp_path}", skip_corrupt=False)


def _pixel_ids(images) -> list[int]:
  """Example ids of constant images whose pixel value is 10 * id."""
  pixels = np.asarray(images, np.float32) * data.STDDEV_RGB + data.MEAN_RGB
  return np.round(pixels.mean(axis=(1, 2, 3)) / 10).astype(int).tolist()


@pytest.mark.parametrize("spec", ["tfds:kit_test_multi_label", "kit_test_multi_label"])
def test_tfds_multi_label_source_reads_each_example_with_its_labels(multi_label_dir, spec):
  source = data.load_source(spec, data_dir=str(multi_label_dir / "array_record"),
                            heldout_size=4)
  assert (source.num_classes, source.multi_label) == (MULTI_LABEL_CLASSES, True)
  assert (source.train_size, source.heldout_size) == (16, 4)
  images, targets = next(iter(data.train_dataset(
      source, global_batch_size=16, resolution=RES, seed=0)))
  train_ids = _pixel_ids(images)
  assert len(set(train_ids)) == 16 and set(train_ids) <= set(range(20))
  for example_id, target in zip(train_ids, targets.numpy()):
    assert np.flatnonzero(target).tolist() == sorted(_multi_labels(example_id))
  images, _, mask = next(iter(data.heldout_dataset(source, global_batch_size=8, resolution=RES)))
  heldout_ids = [i for i, m in zip(_pixel_ids(images), mask.numpy()) if m]
  assert sorted(train_ids + heldout_ids) == list(range(20))


def test_tfds_multi_label_default_heldout_is_the_papers_130k(multi_label_dir):
  with pytest.raises(data.DataError, match="heldout_size=130000"):
    data.load_source("kit_test_multi_label", data_dir=str(multi_label_dir / "array_record"))


def test_tfrecord_glob_of_a_tfds_dataset_reads_its_metadata(multi_label_dir):
  """num_classes comes from the TFDS metadata (7), not from the labels seen (0..4)."""
  directory = multi_label_dir / "tfrecord" / "kit_test_multi_label" / "1.0.0"
  assert tfds_source.label_info_from_metadata(str(directory)) == (MULTI_LABEL_CLASSES, True)
  assert tfds_source.label_info_from_metadata(str(multi_label_dir)) == (None, False)
  source = data.load_source(f"tfrecord:{directory}/*.tfrecord*", heldout_size=5)
  assert (source.num_classes, source.multi_label, source.train_size) == (7, True, 15)
  images, targets = next(iter(data.train_dataset(
      source, global_batch_size=15, resolution=8, seed=0)))
  for example_id, target in zip(_pixel_ids(images), targets.numpy()):
    assert np.flatnonzero(target).tolist() == sorted(_multi_labels(example_id))


def test_tfrecord_glob_with_unreadable_tfds_metadata_scans_the_labels(multi_label_dir, tmp_path):
  copy = tmp_path / "copy"
  shutil.copytree(multi_label_dir / "tfrecord" / "kit_test_multi_label" / "1.0.0", copy)
  (copy / "dataset_info.json").write_text("{not json")
  assert tfds_source.label_info_from_metadata(str(copy)) == (None, False)
  source = data.load_source(f"tfrecord:{copy}/*.tfrecord*", heldout_size=5)
  assert (source.num_classes, source.multi_label) == (5, True)  # labels 0..4 seen


def test_digits_default_data_dir_is_the_kit_cache_under_home(tmp_path):
  cache = tmp_path / "home" / ".cache" / "nfnet_vit_scaling" / "tensorflow_datasets"
  assert tfds_source.kit_data_dir(None) == str(cache)
  assert tfds_source.kit_data_dir("~/elsewhere") == str(tmp_path / "home" / "elsewhere")
  source = data.load_source("digits")
  assert f"in {cache}/sklearn_digits/1.0.0" in source.description
  assert (cache / "sklearn_digits" / "1.0.0" / "dataset_info.json").is_file()


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


def test_small_datasets_are_read_from_memory_exactly_as_from_their_files(digits_dir,
                                                                         monkeypatch):
  """Below ``IN_MEMORY_BYTES`` a source is read once into tensors (no Python per example);
  above it, lazily from its files: the same records and the same batches either way."""
  from reproduce.data import datasource
  in_memory = data.load_source("digits", data_dir=digits_dir)
  assert "memory_reader" in in_memory.read.__qualname__
  monkeypatch.setattr(datasource, "IN_MEMORY_BYTES", 1)
  from_files = data.load_source("digits", data_dir=digits_dir)
  assert "python_reader" in from_files.read.__qualname__
  for record_id in (0, 700, 1796):
    ours, theirs = (s.read(tf.constant(record_id, tf.int64)) for s in (in_memory, from_files))
    assert ours[0].numpy() == theirs[0].numpy()
    np.testing.assert_array_equal(ours[1].numpy(), theirs[1].numpy())
  batches = [next(iter(data.train_dataset(s, global_batch_size=8, resolution=32, seed=3)))
             for s in (in_memory, from_files)]
  for ours, theirs in zip(*batches):
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_many_records_at_once_equal_one_at_a_time():
  """``RecordFiles.records`` (what ``memory_reader`` reads with: one batch per file) gives
  exactly what one-at-a-time reads give, in the order asked, across files with skips, with
  batch readers and without."""
  from reproduce.data.record_index import RecordFiles
  batches = []

  def opener(batched: bool):
    def open_file(path):
      def read(position):
        return f"{path}:{position}".encode()
      if batched:
        def many(positions):
          batches.append((path, list(positions)))
          return [read(p) for p in positions]
        read.many = many
      return read
    return open_file

  files = [("a", 0, 3), ("b", 2, 4), ("c", 0, 2)]  # ids 0-2 in a, 3-6 in b (from 2), 7-8 in c
  ids = [8, 0, 5, 3, 5, 2, 7]
  expected = [b"c:1", b"a:0", b"b:4", b"b:2", b"b:4", b"a:2", b"c:0"]
  for batched in (True, False):
    records = RecordFiles(files, opener(batched), max_open=None)
    assert records.records(ids) == expected == [records[i] for i in ids]
  assert sorted(path for path, _ in batches) == ["a", "b", "c"]  # one batch per file
  with pytest.raises(IndexError):
    records.records([0, len(records)])


def test_the_memory_reader_builds_its_tensors_once(digits_dir):
  """A traced read captures the eager tensors made once; it holds no copy of the dataset as
  a graph constant (each run's pipeline graph did, which cost Fashion-MNIST minutes a run)."""
  source = data.load_source("digits", data_dir=digits_dir)
  traced = tf.function(source.read).get_concrete_function(tf.TensorSpec([], tf.int64))
  sizes = [op.outputs[0].shape.num_elements() or 0
           for op in traced.graph.get_operations() if op.type == "Const"]
  assert max(sizes, default=0) < 100, sizes
  assert len(traced.captured_inputs) >= 2  # the images and the targets


def test_the_memory_reader_fetches_its_records_as_plain_python_inside_a_trace():
  """The records are fetched inside the first pipeline's traced map function; autograph must
  not convert the fetch (it converted every call of the loop: Fashion-MNIST's 60,000 records
  took 23 s instead of 1)."""
  import sys
  from reproduce.data import datasource
  files_seen = []

  def fetch(record_id):
    files_seen.append(sys._getframe().f_code.co_filename)  # a converted copy lives elsewhere
    return b"\x00", np.eye(2, dtype=np.float32)[record_id % 2]

  read = datasource.memory_reader(fetch, num_classes=2, num_records=3)
  dataset = tf.data.Dataset.range(3).map(lambda i: read(i)[1])
  assert [int(np.argmax(t)) for t in dataset.as_numpy_iterator()] == [0, 1, 0]
  assert files_seen == [__file__] * 3


def test_a_train_dataset_iterated_again_gives_the_same_batches(digits_dir):
  """A study program keeps a run's train dataset and iterates it again for the next run of
  the same data seed (``loop.Program.train_iterator``): every pass is the same stream, with
  RandAugment and MixUp/CutMix on, as a freshly built dataset's."""
  source = data.load_source("digits", data_dir=digits_dir)
  augment = {"randaugment": (2, 15), "mixup_alpha": 0.2, "cutmix_alpha": 1.0}
  dataset = data.train_dataset(source, global_batch_size=8, resolution=16, seed=5,
                               augment=augment)
  fresh = data.train_dataset(source, global_batch_size=8, resolution=16, seed=5,
                             augment=augment)
  passes = [list(dataset.take(3)), list(dataset.take(3)), list(fresh.take(3))]
  for later in passes[1:]:
    for ours, theirs in zip(passes[0], later):
      for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
