"""TFDS datasets as ``DataSource``s: ``tfds:NAME`` / ``NAME``, and ``digits`` (the kit's
``sklearn_digits`` builder, prepared offline on first use).

Random access to a split: ``record_index.RecordFiles`` over its array_record or TFRecord
files, record counts from the metadata's shard lengths (no file opened at load).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os

from google.protobuf import json_format
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from reproduce.core import fileio
from reproduce.data import digits
from reproduce.data import fashion_mnist
from reproduce.data import order
from reproduce.data.record_index import OPENERS, RecordFiles, example_fetch
from reproduce.data.augment_defaults import DIGITS_AUGMENT, FASHION_MNIST_AUGMENT
from reproduce.data.datasource import (DataError, DataSource, ShardOrder, default_heldout,
                                       fraction_heldout, record_reader, split_heldout)

DEFAULT_DATA_CACHE = os.path.join("~", ".cache", "nfnet_vit_scaling", "tensorflow_datasets")
DIGITS_HELDOUT_FRACTION = 0.2
# The study's held-out set: a fixed slice of Fashion-MNIST's official test split (docs/study.md).
FASHION_MNIST_HELDOUT = 2048
MANUAL_TARS = {"imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")}


def kit_data_dir(data_dir: str | None) -> str:
  """Where the kit's own builders (``digits``, ``fashion_mnist``) are prepared: ``data_dir``,
  else the kit's cache under the home dir."""
  return fileio.expand(data_dir or DEFAULT_DATA_CACHE)


def load_digits(data_dir: str | None, heldout_size: int | None, order_name: str = "auto",
                window: int = order.SHARD_WINDOW) -> DataSource:
  builder = _digits_builder(data_dir)
  source = _source_from_builder(builder, "digits", "sklearn_digits", heldout_size,
                                DIGITS_HELDOUT_FRACTION, order_name, window)
  # The digit fills the whole 32 px frame: no eval crop.
  return dataclasses.replace(source, augment_defaults=dict(DIGITS_AUGMENT),
                             eval_crop_padding=0)


def _digits_builder(data_dir: str | None):
  """The ``sklearn_digits`` builder in ``kit_data_dir``, prepared on first use (offline)."""
  return _prepared_quietly(_builder("digits", digits.SklearnDigits.name, kit_data_dir(data_dir)))


@contextlib.contextmanager
def _tfds_notices_off():
  """No TFDS notices (absl warnings, e.g. ``is_prepared``'s "Variant folder ... has no
  dataset_info.json") on stderr, which carries only errors (one line) in the kit's mains."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def _prepared_quietly(builder):
  """``builder`` prepared (array_record) if it is not yet: seconds of work on first use, with
  no progress bars or TFDS notices. Its own errors pass through."""
  with _tfds_notices_off():
    if not builder.is_prepared():
      tfds.disable_progress_bar()
      try:
        builder.download_and_prepare(file_format="array_record")
      finally:
        tfds.enable_progress_bar()
  return builder


def load_tfds(spec: str, name: str, data_dir: str | None, manual_dir: str | None,
              heldout_size: int | None, order_name: str = "auto",
              window: int = order.SHARD_WINDOW) -> DataSource:
  """A prepared TFDS dataset (``imagenet2012`` prepares itself from ``manual_dir``)."""
  builder = _prepared_builder(spec, name, data_dir, manual_dir)
  return _source_from_builder(builder, spec, name, heldout_size, order_name=order_name,
                              window=window)


def load_tfds_with_heldout_split(spec: str, name: str, data_dir: str | None,
                                 manual_dir: str | None, heldout_split: str,
                                 order_name: str = "auto",
                                 window: int = order.SHARD_WINDOW) -> DataSource:
  """A prepared TFDS dataset: all of 'train' to train on, all of ``heldout_split`` held out.

  Record ids ``0..T-1`` are the train split's, ``T..T+H-1`` the held-out split's.
  """
  builder = _prepared_builder(spec, name, data_dir, manual_dir)
  return _source_with_heldout_split(builder, spec, name, heldout_split, order_name, window)


def load_fashion_mnist(data_dir: str | None, heldout_size: int | None,
                       order_name: str = "auto", window: int = order.SHARD_WINDOW) -> DataSource:
  """``fashion_mnist``: the kit's 32 px builder (prepared on first use, ``fashion_mnist``
  says from where); all 60k train images, held out the first ``heldout_size`` (default
  ``FASHION_MNIST_HELDOUT``) of the official test split as stored: a fixed slice."""
  try:
    builder = _prepared_quietly(fashion_mnist.KitFashionMnist(
        data_dir=kit_data_dir(data_dir), source_data_dir=data_dir))
  except fashion_mnist.FashionMnistMissing as e:
    raise DataError(str(e)) from None
  size = FASHION_MNIST_HELDOUT if heldout_size is None else int(heldout_size)
  test_size = builder.info.splits["test"].num_examples
  if not 0 < size <= test_size:
    raise DataError(f"fashion_mnist: heldout_size={size} must be in 1..{test_size} (a slice "
                    f"of the official test split)")
  source = _source_with_heldout_split(builder, "fashion_mnist", builder.name, "test",
                                      order_name, window, heldout_limit=size)
  return dataclasses.replace(source, augment_defaults=dict(FASHION_MNIST_AUGMENT),
                             eval_crop_padding=0)


def _source_with_heldout_split(builder, spec: str, name: str, heldout_split: str,
                               order_name: str, window: int,
                               heldout_limit: int | None = None) -> DataSource:
  """All of 'train' to train on; ``heldout_split`` (its first ``heldout_limit`` records as
  stored, else all) held out, with record ids after the train split's."""
  splits = builder.info.splits
  if "train" not in splits or heldout_split not in splits:
    raise DataError(f"TFDS dataset {name!r} lacks the 'train' or {heldout_split!r} split "
                    f"(splits: {sorted(splits.keys())})")
  label_key, multi_label, num_classes = label_feature(builder.info.features)
  train, heldout = _split_records(builder), _split_records(builder, heldout_split)
  num_train = len(train)
  num_heldout = len(heldout) if heldout_limit is None else min(heldout_limit, len(heldout))
  shard_order = read_order(train, order_name, num_train, window)
  train_fetch = example_fetch(train, "image", label_key, num_classes)
  heldout_fetch = example_fetch(heldout, "image", label_key, num_classes)

  def fetch(record_id: int):
    if record_id < num_train:
      return train_fetch(record_id)
    return heldout_fetch(record_id - num_train)

  def many(record_ids) -> list:
    ids = np.asarray(record_ids, np.int64)
    found = [None] * len(ids)
    for part, part_fetch, first in ((ids < num_train, train_fetch, 0),
                                    (ids >= num_train, heldout_fetch, num_train)):
      where = np.nonzero(part)[0]
      for index, item in zip(where, part_fetch.many(ids[where] - first)):
        found[index] = item
    return found

  fetch.many = many  # what ``memory_reader`` reads every record with
  limit = "" if heldout_limit is None else f"the first {num_heldout} of "
  return DataSource(
      name=spec, num_classes=num_classes, train_size=num_train, heldout_size=num_heldout,
      multi_label=multi_label, train_records=range(num_train),
      heldout_records=range(num_train, num_train + num_heldout),
      read=_reader(builder, fetch, num_classes, num_train + num_heldout),
      shard_order=shard_order,
      description=f"tfds {builder.name} {builder.version} in {builder.data_dir}, "
                  f"held out: {limit}its {heldout_split!r} split")


def tfds_split_names(spec: str, name: str, data_dir: str | None,
                     manual_dir: str | None = None) -> tuple[str, ...]:
  """The split names of prepared TFDS dataset ``name``."""
  builder = (_digits_builder(data_dir) if _base_name(name) == "sklearn_digits"
             else _prepared_builder(spec, name, data_dir, manual_dir))
  return tuple(builder.info.splits.keys())


def load_tfds_split(spec: str, name: str, data_dir: str | None, manual_dir: str | None,
                    split: str, label_key: str | None = None) -> DataSource:
  """One whole TFDS split as the held-out set of a source with no train stream (what
  ``evaluate`` scores for ``tfds:NAME@SPLIT``); read by random access like every TFDS source,
  so array_record datasets (``digits``) work. ``label_key`` None: ``label_feature``'s."""
  if _base_name(name) == "sklearn_digits":
    builder = _digits_builder(data_dir)
  else:
    builder = _prepared_builder(spec, name, data_dir, manual_dir)
  splits = builder.info.splits
  if split not in splits:
    raise DataError(f"{spec}: TFDS dataset {name!r} has no split {split!r} "
                    f"(splits: {', '.join(sorted(splits.keys()))})")
  features = builder.info.features
  if label_key is None:
    label_key = label_feature(features)[0]
  label = features[label_key] if label_key in features else None
  inner = getattr(label, "feature", label)
  if "image" not in features or not hasattr(inner, "num_classes"):
    raise DataError(f"{spec}: TFDS dataset {name!r} lacks an 'image' or {label_key!r} "
                    f"class-label feature")
  records = _split_records(builder, split)
  fetch = example_fetch(records, "image", label_key, inner.num_classes)
  return DataSource(
      name=spec, num_classes=inner.num_classes, train_size=0, heldout_size=len(records),
      multi_label=label is not inner, train_records=range(0), heldout_records=range(len(records)),
      read=_reader(builder, fetch, inner.num_classes, len(records)),
      class_names=tuple(inner.names),
      description=f"tfds {builder.name} {builder.version} {split}")


def class_names(features) -> tuple[str, ...]:
  """The label names of a TFDS FeaturesDict's label feature (empty when it has none)."""
  try:
    key = label_feature(features)[0]
  except DataError:
    return ()
  return tuple(getattr(features[key], "feature", features[key]).names)


def _reader(builder, fetch, num_classes: int, num_records: int):
  """The source's ``read``: in memory when the prepared dataset is small (``record_reader``)."""
  stored = getattr(builder.info, "dataset_size", None)
  return record_reader(fetch, num_classes, num_records, int(stored) if stored else None)


def _prepared_builder(spec: str, name: str, data_dir: str | None, manual_dir: str | None):
  builder = _builder(spec, name, data_dir)
  with _tfds_notices_off():
    prepared = builder.is_prepared()
  if not prepared:
    base_name = _base_name(name)
    if base_name not in MANUAL_TARS:
      raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}: run "
                      f"`tfds build {name} --data_dir=DIR` and pass --data_dir=DIR")
    _prepare_manual(builder, base_name, manual_dir)
  return builder


def label_feature(features) -> tuple[str, bool, int]:
  """(label feature name, multi_label, num_classes) of a TFDS FeaturesDict."""
  for key in ("label", "labels"):
    if key not in features:
      continue
    feature = features[key]
    if isinstance(feature, tfds.features.ClassLabel):
      return key, False, feature.num_classes
    inner = getattr(feature, "feature", None)
    if isinstance(feature, tfds.features.Sequence) and isinstance(inner, tfds.features.ClassLabel):
      return key, True, inner.num_classes
  raise DataError(f"the dataset has no 'label' ClassLabel (or 'labels' Sequence(ClassLabel)) "
                  f"feature; features: {sorted(features.keys())}")


def _metadata(directory: str):
  """The TFDS ``DatasetInfo`` of a prepared-dataset directory, or None where it has none
  (or unreadable metadata)."""
  if not fileio.exists(fileio.join(directory, "dataset_info.json")):
    return None
  try:
    return tfds.builder_from_directory(directory).info
  except (ValueError, OSError, tf.errors.OpError, json_format.Error):
    return None


def label_info_from_metadata(directory: str) -> tuple[int | None, bool]:
  """(num_classes, multi_label) from the TFDS metadata of a prepared-dataset directory, or
  (None, False) where it has none (or none that names a label feature)."""
  info = _metadata(directory)
  try:
    _, multi_label, num_classes = label_feature(info.features)
  except (DataError, AttributeError):
    return None, False  # no or unlabelled metadata: the caller scans the labels
  return num_classes, multi_label


def shard_lengths_from_metadata(directory: str) -> dict[str, int]:
  """{file name: records} of every shard the TFDS metadata in ``directory`` lists ({} where
  it has none): record counts without opening a file."""
  info = _metadata(directory)
  if info is None:
    return {}
  return {name: int(length) for split in info.splits.values()
          for name, length in zip(split.filenames, split.shard_lengths)}


def read_order(records: RecordFiles, order_name: str, train_size: int,
               window: int) -> ShardOrder | None:
  """The order the train stream reads ``records`` in (``order.choose_order``); in the shard
  order, at most two windows of files stay open (a host's reads overlap at a window's end)."""
  shard_order = order.choose_order(order_name, records.file_sizes, train_size, window)
  if shard_order is not None:
    records.max_open = 2 * window
  return shard_order


def _base_name(name: str) -> str:
  """``imagenet2012`` of ``imagenet2012/config:1.0.0``."""
  return name.split("/")[0].split(":")[0]


def _builder(spec: str, name: str, data_dir: str | None):
  try:
    return tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    # DatasetNotFoundError, ValueError (bad config), AssertionError (bad version), ...: any
    # failure to make the builder means TFDS has no usable dataset by that name.
    raise DataError(f"unknown dataset spec {spec!r}: TFDS has no dataset {name!r} "
                    f"({type(e).__name__})") from None


def _source_from_builder(builder, spec: str, name: str, heldout_size: int | None,
                         default_fraction: float | None = None, order_name: str = "auto",
                         window: int = order.SHARD_WINDOW) -> DataSource:
  """The prepared train split of ``builder`` (TFDS dataset ``name``), held-out set carved
  from its end: ``default_fraction`` of it by default, else ``default_heldout``'s rule.
  """
  if "train" not in builder.info.splits:
    raise DataError(f"TFDS dataset {name!r} has no 'train' split to carve a held-out set "
                    f"from (splits: {sorted(builder.info.splits.keys())})")
  label_key, multi_label, num_classes = label_feature(builder.info.features)
  if "image" not in builder.info.features:
    raise DataError(f"TFDS dataset {name!r} has no 'image' feature")
  records = _split_records(builder)
  num_records = len(records)
  if default_fraction is not None:
    default = fraction_heldout(num_records, default_fraction, at_most=None)
  else:
    default = default_heldout(num_records, multi_label, _base_name(name))
  # TFDS shuffles examples when preparing, so "the last N" is a random, fixed subset.
  train_ids, heldout_ids = split_heldout(spec, num_records, heldout_size, default)
  shard_order = read_order(records, order_name, len(train_ids), window)
  fetch = example_fetch(records, "image", label_key, num_classes)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids, read=_reader(builder, fetch, num_classes, num_records),
      shard_order=shard_order, class_names=class_names(builder.info.features),
      description=f"tfds {builder.name} {builder.version} in {builder.data_dir}")


def _prepare_manual(builder, base_name: str, manual_dir: str | None) -> None:
  expected = MANUAL_TARS[base_name]
  if not manual_dir:
    raise DataError(f"{base_name} is not prepared in {builder.data_dir}: pass --manual_dir=DIR "
                    f"with {' and '.join(expected)} (or --data_dir of a prepared copy)")
  missing = [f for f in expected if not fileio.exists(fileio.join(manual_dir, f))]
  if missing:
    raise DataError(f"{base_name}: --manual_dir={manual_dir} lacks {' and '.join(missing)} "
                    f"(expected {' and '.join(expected)})")
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def _split_records(builder, split: str = "train") -> RecordFiles:
  """The records of a split, counted from its metadata (shard lengths): no file opened."""
  info = builder.info.splits[split]
  if "array_record" in str(getattr(builder.info, "file_format", "")).lower():
    # TFDS writes Examples (encoded image, int64 labels) with group_size:1.
    files = [(i.filename, i.skip, i.take) for i in info.file_instructions]
    return RecordFiles(files, OPENERS["ArrayRecord"], max_open=None)
  files = [(os.fspath(p), 0, n) for p, n in zip(info.filepaths, info.shard_lengths)]
  return RecordFiles(files, OPENERS["TFRecord"], max_open=None)
