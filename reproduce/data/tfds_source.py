"""TFDS datasets as ``DataSource``s: ``tfds:NAME`` / ``NAME``, and ``digits`` (the kit's
``sklearn_digits`` builder, prepared offline on first use).

Random access to the train split: an ArrayRecord data source over the split's file
instructions (``record_index``) for array_record files, a TFRecord offset index
(``record_index.TFRecordIndex``, one header pass at load) for TFRecord files.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from reproduce.core import fileio
from reproduce.data.record_index import TFRecordIndex, example_fetch, open_array_records
from reproduce.data.datasource import (AUGMENT_DEFAULTS, DataError, DataSource, default_heldout,
                                       fraction_heldout, python_reader,
                                       split_heldout)

DEFAULT_DATA_CACHE = os.path.join("~", ".cache", "nfnet_vit_scaling", "tensorflow_datasets")
DIGITS_HELDOUT_FRACTION = 0.2
MANUAL_TARS = {"imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")}
# Digits: flips change digits' meaning and big crops cut strokes off.
DIGITS_AUGMENT = {**AUGMENT_DEFAULTS, "flip": False, "area_range": (0.65, 1.0),
                  "aspect_ratio_range": (0.85, 1.18), "min_object_covered": 0.0}


def digits_data_dir(data_dir: str | None) -> str:
  """Where ``digits`` is prepared: ``data_dir``, else the kit's cache under the home dir."""
  return fileio.expand(data_dir or DEFAULT_DATA_CACHE)


def load_digits(data_dir: str | None, heldout_size: int | None) -> DataSource:
  from reproduce.data import digits  # registers the 'sklearn_digits' builder
  del digits
  builder = _builder("digits", "sklearn_digits", digits_data_dir(data_dir))
  if not builder.is_prepared():
    builder.download_and_prepare(file_format="array_record")
  source = _source_from_builder(builder, "digits", "sklearn_digits", heldout_size,
                                default_fraction=DIGITS_HELDOUT_FRACTION)
  # The digit fills the whole 32 px frame: no eval crop.
  return dataclasses.replace(source, augment_defaults=dict(DIGITS_AUGMENT),
                             eval_crop_padding=0)


def load_tfds(spec: str, name: str, data_dir: str | None,
              manual_dir: str | None, heldout_size: int | None) -> DataSource:
  """A prepared TFDS dataset (``imagenet2012`` prepares itself from ``manual_dir``)."""
  builder = _prepared_builder(spec, name, data_dir, manual_dir)
  return _source_from_builder(builder, spec, name, heldout_size)


def load_tfds_with_heldout_split(spec: str, name: str, data_dir: str | None,
                                 manual_dir: str | None, heldout_split: str) -> DataSource:
  """A prepared TFDS dataset: all of 'train' to train on, all of ``heldout_split`` held out.

  Record ids ``0..T-1`` are the train split's, ``T..T+H-1`` the held-out split's.
  """
  builder = _prepared_builder(spec, name, data_dir, manual_dir)
  splits = builder.info.splits
  if "train" not in splits or heldout_split not in splits:
    raise DataError(f"TFDS dataset {name!r} lacks the 'train' or {heldout_split!r} split "
                    f"(splits: {sorted(splits.keys())})")
  label_key, multi_label, num_classes = label_feature(builder.info.features)
  train_fetch, num_train = _train_fetch(builder, "image", label_key, num_classes)
  heldout_fetch, num_heldout = _train_fetch(builder, "image", label_key, num_classes,
                                            split=heldout_split)

  def fetch(record_id: int):
    if record_id < num_train:
      return train_fetch(record_id)
    return heldout_fetch(record_id - num_train)

  return DataSource(
      name=spec, num_classes=num_classes, train_size=num_train, heldout_size=num_heldout,
      multi_label=multi_label, train_records=range(num_train),
      heldout_records=range(num_train, num_train + num_heldout),
      read=python_reader(fetch, num_classes),
      description=f"tfds {builder.name} {builder.version} in {builder.data_dir}, "
                  f"held out: its {heldout_split!r} split")


def _prepared_builder(spec: str, name: str, data_dir: str | None, manual_dir: str | None):
  builder = _builder(spec, name, data_dir)
  if not builder.is_prepared():
    base_name = _base_name(name)
    if base_name not in MANUAL_TARS:
      raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}: run "
                      f"`tfds build {name} --data_dir=DIR` and pass --data_dir=DIR")
    _prepare_manual(builder, base_name, manual_dir)
  return builder


def label_feature(features) -> tuple[str, bool, int]:
  """(label feature name, multi_label, num_classes) of a TFDS FeaturesDict."""
  import tensorflow_datasets as tfds
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


def label_info_from_metadata(directory: str) -> tuple[int | None, bool]:
  """(num_classes, multi_label) from the TFDS metadata of a prepared-dataset directory, or
  (None, False) where it has none (or none that names a label feature)."""
  if not fileio.exists(fileio.join(directory, "dataset_info.json")):
    return None, False
  import tensorflow_datasets as tfds
  from google.protobuf import json_format
  try:
    features = tfds.builder_from_directory(directory).info.features
    _, multi_label, num_classes = label_feature(features)
  except (DataError, ValueError, OSError, tf.errors.OpError, json_format.Error):
    return None, False  # unreadable or unlabelled metadata: the caller scans the labels
  return num_classes, multi_label


def _base_name(name: str) -> str:
  """``imagenet2012`` of ``imagenet2012/config:1.0.0``."""
  return name.split("/")[0].split(":")[0]


def _builder(spec: str, name: str, data_dir: str | None):
  import tensorflow_datasets as tfds
  try:
    return tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    # DatasetNotFoundError, ValueError (bad config), AssertionError (bad version), ...: any
    # failure to make the builder means TFDS has no usable dataset by that name.
    raise DataError(f"unknown dataset spec {spec!r}: TFDS has no dataset {name!r} "
                    f"({type(e).__name__})") from None


def _source_from_builder(builder, spec: str, name: str, heldout_size: int | None,
                         default_fraction: float | None = None) -> DataSource:
  """The prepared train split of ``builder`` (TFDS dataset ``name``), held-out set carved
  from its end: ``default_fraction`` of it by default, else ``default_heldout``'s rule.
  """
  if "train" not in builder.info.splits:
    raise DataError(f"TFDS dataset {name!r} has no 'train' split to carve a held-out set "
                    f"from (splits: {sorted(builder.info.splits.keys())})")
  label_key, multi_label, num_classes = label_feature(builder.info.features)
  if "image" not in builder.info.features:
    raise DataError(f"TFDS dataset {name!r} has no 'image' feature")
  fetch, num_records = _train_fetch(builder, "image", label_key, num_classes)
  if default_fraction is not None:
    default = fraction_heldout(num_records, default_fraction, at_most=None)
  else:
    default = default_heldout(num_records, multi_label, _base_name(name))
  # TFDS shuffles examples when preparing, so "the last N" is a random, fixed subset.
  train_ids, heldout_ids = split_heldout(spec, num_records, heldout_size, default)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids, read=python_reader(fetch, num_classes),
      description=f"tfds {builder.name} {builder.version} in {builder.data_dir}")


def _prepare_manual(builder, base_name: str, manual_dir: str | None) -> None:
  import tensorflow_datasets as tfds
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


def _train_fetch(builder, image_key: str, label_key: str, num_classes: int,
                 split: str = "train"):
  """(fetch(record_id) -> (encoded image, target), number of records) of a split."""
  file_format = str(getattr(builder.info, "file_format", "")).lower()
  if "array_record" in file_format:
    # TFDS writes Examples (encoded image, int64 labels); the shard lengths come from its
    # metadata, so no file is opened before a record is read.
    records = open_array_records(builder.info.splits[split].file_instructions,
                                 f"TFDS dataset {builder.name}")
    return example_fetch(records, image_key, label_key, num_classes), len(records)
  paths = [os.fspath(p) for p in builder.info.splits[split].filepaths]
  index = TFRecordIndex(paths)
  return example_fetch(index, image_key, label_key, num_classes), len(index)
