"""Datasets, preprocessing and the epoch-exact input pipeline.

Dataset specs (``load_source``):
  ``digits``                 scikit-learn digits through the kit's TFDS builder (offline).
  ``tfds:NAME`` or ``NAME``  a prepared TFDS dataset (``imagenet2012`` prepares from manual tars).
  ``imagefolder:/root``      ``root/[train/]<class>/<image>`` files.
  ``tfrecord:/path/glob*``   TFRecords of ``tf.train.Example`` with ``image`` (encoded) + ``label``.

Every source is random access: a train example is addressed by its index ``0..train_size-1``.
Epoch ``e`` visits the examples in ``example_order(source, seed, e)``; the stream is the
concatenation of epochs and batch ``s`` is ``stream[s*B:(s+1)*B]``, so recreating the stream
with ``start_step=s`` resumes exactly. Augmentation seeds are derived from
(seed, epoch, example index), mixing seeds from the stream position. See docs/data.md.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import struct
import threading
from typing import Any, Callable

import numpy as np
import tensorflow as tf

DIGITS_HELDOUT_FRACTION = 0.2
IMAGENET_HELDOUT = 10_000     # NFNet code's "minival": the last 10k train images
MULTI_LABEL_HELDOUT = 130_000  # the paper's JFT-4B held-out set
OTHER_HELDOUT_FRACTION = 0.1   # other single-label data: 10%, at most 10k
DEFAULT_DATA_CACHE = os.path.join("~", ".cache", "nfnet_vit_scaling", "tensorflow_datasets")
MANUAL_TARS = {"imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")}
_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FULL_DECODE_CHECK_LIMIT = 20_000  # ImageFolders up to this size are fully decoded at load

# NFNet normalisation (ImageNet mean/std on the 0..255 scale).
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# Distinct streams of stateless randomness.
_ORDER_TAG, _AUGMENT_TAG, _MIX_TAG, _HELDOUT_TAG = 1, 2, 3, 4

AUGMENT_DEFAULTS = {
    "crop": True,                     # Inception-style random-resized crop
    "area_range": (0.08, 1.0),
    "aspect_ratio_range": (3 / 4, 4 / 3),
    "min_object_covered": 0.1,
    "flip": True,                     # random horizontal flip
    "randaugment": None,              # (num_layers, magnitude), e.g. (4, 5) or "405"
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
}
# Digits: flips change digits' meaning and big crops cut strokes off.
DIGITS_AUGMENT = {**AUGMENT_DEFAULTS, "flip": False, "area_range": (0.65, 1.0),
                  "aspect_ratio_range": (0.85, 1.18), "min_object_covered": 0.0}

log = logging.getLogger(__name__)


class DataError(ValueError):
  """Bad dataset spec, missing files or data; the message is one line."""


@dataclasses.dataclass(frozen=True, eq=False)
class DataSource:
  """A random-access labelled image dataset with a carved-out held-out set.

  Attributes:
    name: the dataset spec it was loaded from.
    num_classes: label space size.
    train_size: examples in the train stream (held-out ones excluded).
    heldout_size: examples in the held-out set.
    multi_label: True for multi-hot (sigmoid) targets, False for one-hot (softmax).
    train_records: record ids (into ``read``) of train examples, by train index.
    heldout_records: record ids of held-out examples.
    read: ``read(record_id) -> (encoded image bytes, float32 [num_classes] target)``; traceable
      in tf.data.
    augment_defaults: the source's default ``augment`` settings.
    eval_crop_padding: pixels added before the centre crop at eval (None: NFNet rule).
    skipped_corrupt: files dropped as unreadable (ImageFolder).
    description: where the data was read from.
  """
  name: str
  num_classes: int
  train_size: int
  heldout_size: int
  multi_label: bool
  train_records: np.ndarray = dataclasses.field(repr=False)
  heldout_records: np.ndarray = dataclasses.field(repr=False)
  read: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]] = dataclasses.field(repr=False)
  augment_defaults: dict = dataclasses.field(default_factory=lambda: dict(AUGMENT_DEFAULTS),
                                             repr=False)
  eval_crop_padding: int | None = None
  skipped_corrupt: int = 0
  description: str = ""


# ----------------------------------------------------------------------------------------
# Loading sources.


def load_source(dataset: str, data_dir: str | None = None, manual_dir: str | None = None,
                heldout_size: int | None = None, seed: int = 0, *,
                skip_corrupt: bool = True) -> DataSource:
  """Opens a dataset and carves the held-out set from its train split.

  Args:
    dataset: ``digits``, ``tfds:NAME`` / ``NAME``, ``imagefolder:/root``, ``tfrecord:/glob``.
    data_dir: TFDS data directory (digits default: ``~/.cache/nfnet_vit_scaling/...``).
    manual_dir: directory holding manually downloaded archives (imagenet2012 tars).
    heldout_size: examples held out; default 20% for digits, 10k for imagenet2012, 130k for
      multi-label data, else 10% (at most 10k).
    seed: shuffles class-ordered sources (ImageFolder) before the held-out split is taken.
    skip_corrupt: ImageFolder only: drop unreadable images with a warning (else DataError).

  Returns:
    The DataSource.

  Raises:
    DataError: unknown spec, missing or empty data, bad held-out size.
  """
  spec = dataset.strip()
  if not spec:
    raise DataError("--dataset is empty: use digits, tfds:NAME, imagefolder:DIR or tfrecord:GLOB")
  kind, _, rest = spec.partition(":")
  if spec == "digits":
    return _load_digits(data_dir, heldout_size)
  if kind == "imagefolder" and rest:
    return _load_imagefolder(spec, rest, heldout_size, seed, skip_corrupt)
  if kind == "tfrecord" and rest:
    return _load_tfrecord_glob(spec, rest, heldout_size)
  if kind == "tfds" and rest:
    return _load_tfds(spec, rest, data_dir, manual_dir, heldout_size)
  if _TFDS_NAME.fullmatch(spec):
    return _load_tfds(spec, spec, data_dir, manual_dir, heldout_size)
  raise DataError(f"unknown dataset spec {dataset!r}: use digits, tfds:NAME, "
                  "imagefolder:DIR or tfrecord:GLOB")


def _split_heldout(spec: str, num_records: int, heldout_size: int | None, default: int,
                   canonical_order: np.ndarray | None = None):
  """Train/held-out record ids: the held-out set is the last ``heldout_size`` records."""
  size = default if heldout_size is None else int(heldout_size)
  if not 0 < size < num_records:
    raise DataError(f"{spec}: heldout_size={size} must be in 1..{num_records - 1} "
                    f"(the train split has {num_records} examples)")
  order = np.arange(num_records) if canonical_order is None else canonical_order
  return order[:num_records - size].astype(np.int64), order[num_records - size:].astype(np.int64)


def _default_heldout(num_records: int, multi_label: bool, name: str) -> int:
  if name.startswith("imagenet2012"):
    return IMAGENET_HELDOUT
  if multi_label:
    return MULTI_LABEL_HELDOUT
  return min(10_000, math.ceil(OTHER_HELDOUT_FRACTION * num_records))


def _multi_hot(labels, num_classes: int) -> np.ndarray:
  target = np.zeros([num_classes], np.float32)
  target[np.asarray(labels, np.int64).reshape(-1)] = 1.0
  return target


def _py_reader(fetch: Callable[[int], tuple[bytes, np.ndarray]], num_classes: int):
  """Wraps a Python random-access fetch as a traceable reader."""

  def numpy_fetch(record_id):
    encoded, target = fetch(int(record_id))
    return np.asarray(encoded, dtype=object), target.astype(np.float32)

  def read(record_id):
    encoded, target = tf.numpy_function(numpy_fetch, [record_id], (tf.string, tf.float32),
                                        stateful=False)
    return tf.ensure_shape(encoded, []), tf.ensure_shape(target, [num_classes])

  return read


# --- TFDS -----------------------------------------------------------------------------


def _load_digits(data_dir: str | None, heldout_size: int | None) -> DataSource:
  from reproduce.data import digits  # registers the 'sklearn_digits' builder
  del digits
  data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_CACHE)
  source = _load_tfds("digits", "sklearn_digits", data_dir, None, heldout_size,
                      default_heldout_fraction=DIGITS_HELDOUT_FRACTION, prepare=True)
  # The digit fills the whole 32 px frame: no eval crop.
  return dataclasses.replace(source, augment_defaults=dict(DIGITS_AUGMENT),
                             eval_crop_padding=0)


def _label_key(features) -> tuple[str, bool, int]:
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


def _load_tfds(spec: str, name: str, data_dir: str | None, manual_dir: str | None,
               heldout_size: int | None, default_heldout_fraction: float | None = None,
               prepare: bool = False) -> DataSource:
  import tensorflow_datasets as tfds
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # DatasetNotFoundError and friends
    raise DataError(f"unknown dataset spec {spec!r}: TFDS has no dataset {name!r} "
                    f"({type(e).__name__})") from None
  base_name = name.split("/")[0].split(":")[0]
  if not builder.is_prepared():
    if base_name in MANUAL_TARS:
      _prepare_manual(builder, base_name, manual_dir)
    elif prepare or _tfds_is_mocked():
      builder.download_and_prepare(file_format="array_record")
    else:
      raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}: run "
                      f"`tfds build {name} --data_dir=DIR` and pass --data_dir=DIR")
  if "train" not in builder.info.splits and not _tfds_is_mocked():
    raise DataError(f"TFDS dataset {name!r} has no 'train' split to carve a held-out set "
                    f"from (splits: {sorted(builder.info.splits.keys())})")
  label_key, multi_label, num_classes = _label_key(builder.info.features)
  image_key = "image"
  if image_key not in builder.info.features:
    raise DataError(f"TFDS dataset {name!r} has no 'image' feature")

  fetch, num_records = _tfds_fetch(builder, image_key, label_key, num_classes)
  if default_heldout_fraction is not None:
    default = math.ceil(default_heldout_fraction * num_records)
  else:
    default = _default_heldout(num_records, multi_label, base_name)
  # TFDS shuffles examples when preparing, so "the last N" is a random, fixed subset.
  train_ids, heldout_ids = _split_heldout(spec, num_records, heldout_size, default)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids, read=_py_reader(fetch, num_classes),
      description=f"tfds {builder.name} {builder.version} in {builder.data_dir}")


def _tfds_is_mocked() -> bool:
  """True inside ``tfds.testing.mock_data`` (it swaps ``download_and_prepare``)."""
  import tensorflow_datasets as tfds
  method = tfds.core.DatasetBuilder.download_and_prepare
  return "mock" in getattr(method, "__name__", "") or "mock" in type(method).__name__.lower()


def _prepare_manual(builder, base_name: str, manual_dir: str | None) -> None:
  import tensorflow_datasets as tfds
  expected = MANUAL_TARS[base_name]
  if not manual_dir:
    raise DataError(f"{base_name} is not prepared in {builder.data_dir}: pass --manual_dir=DIR "
                    f"with {' and '.join(expected)} (or --data_dir of a prepared copy)")
  missing = [f for f in expected if not tf.io.gfile.exists(os.path.join(manual_dir, f))]
  if missing:
    raise DataError(f"{base_name}: --manual_dir={manual_dir} lacks {' and '.join(missing)} "
                    f"(expected {' and '.join(expected)})")
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def _tfds_fetch(builder, image_key: str, label_key: str, num_classes: int):
  """Random access to the train split: array_record data source, else a TFRecord index."""
  import tensorflow_datasets as tfds
  file_format = str(getattr(builder.info, "file_format", "")).lower()
  if "array_record" in file_format or _tfds_is_mocked():
    data_source = builder.as_data_source(
        "train", decoders={image_key: tfds.decode.SkipDecoding()})

    def fetch(record_id: int):
      example = data_source[record_id]
      return example[image_key], _multi_hot(example[label_key], num_classes)

    return fetch, len(data_source)
  paths = [os.fspath(p) for p in builder.info.splits["train"].filepaths]
  index = _TFRecordIndex(paths)
  return index.example_fetch(image_key, label_key, num_classes), len(index)


# --- TFRecords ----------------------------------------------------------------------------


class _TFRecordIndex:
  """(file, offset, length) of every record, read from the record headers only.

  Gives O(1) random access to TFRecord files: ``record(i)`` reads one record with
  ``os.pread`` (thread-safe) on local files, or a seek on ``tf.io.gfile`` paths.
  """

  def __init__(self, paths: list[str]):
    self.paths = list(paths)
    file_ids, offsets, lengths = [], [], []
    for file_id, path in enumerate(self.paths):
      with tf.io.gfile.GFile(path, "rb") as f:
        position = 0
        while True:
          header = f.read(12)  # uint64 length + uint32 masked crc
          if len(header) < 12:
            break
          (length,) = struct.unpack("<Q", header[:8])
          file_ids.append(file_id)
          offsets.append(position + 12)
          lengths.append(length)
          position += 12 + length + 4
          f.seek(position)
    self.file_ids = np.asarray(file_ids, np.int32)
    self.offsets = np.asarray(offsets, np.int64)
    self.lengths = np.asarray(lengths, np.int64)
    self._local = threading.local()

  def __len__(self) -> int:
    return len(self.offsets)

  def record(self, record_id: int) -> bytes:
    path = self.paths[self.file_ids[record_id]]
    offset, length = int(self.offsets[record_id]), int(self.lengths[record_id])
    if "://" not in path:
      descriptors = self._local.__dict__.setdefault("fds", {})
      if path not in descriptors:
        descriptors[path] = os.open(path, os.O_RDONLY)
      return os.pread(descriptors[path], length, offset)
    with tf.io.gfile.GFile(path, "rb") as f:
      f.seek(offset)
      return f.read(length)

  def example_fetch(self, image_key: str | None, label_key: str | None, num_classes: int):
    def fetch(record_id: int):
      image, labels = _parse_example(self.record(record_id), image_key, label_key)
      return image, _multi_hot(labels, num_classes)
    return fetch


_IMAGE_KEYS = ("image", "image/encoded")
_LABEL_KEYS = ("label", "labels", "image/class/label")


def _parse_example(serialized: bytes, image_key: str | None = None,
                   label_key: str | None = None) -> tuple[bytes, list[int]]:
  feature = tf.train.Example.FromString(serialized).features.feature
  image_key = image_key if image_key and image_key in feature else next(
      (k for k in _IMAGE_KEYS if k in feature), None)
  label_key = label_key if label_key and label_key in feature else next(
      (k for k in _LABEL_KEYS if k in feature), None)
  if image_key is None or label_key is None:
    raise DataError(f"TFRecord example lacks an image {_IMAGE_KEYS} or label {_LABEL_KEYS} "
                    f"feature; it has {sorted(feature.keys())}")
  return feature[image_key].bytes_list.value[0], list(feature[label_key].int64_list.value)


def _load_tfrecord_glob(spec: str, pattern: str, heldout_size: int | None) -> DataSource:
  paths = sorted(tf.io.gfile.glob(os.path.expanduser(pattern)))
  if not paths:
    raise DataError(f"tfrecord glob {pattern!r} matches no files")
  index = _TFRecordIndex(paths)
  if not len(index):
    raise DataError(f"tfrecord glob {pattern!r}: {len(paths)} files but no records")
  num_classes, multi_label = _tfds_label_info(os.path.dirname(paths[0]))
  if num_classes is None:
    # No TFDS metadata: one pass over the labels.
    label_lists = [_parse_example(index.record(i))[1] for i in range(len(index))]
    num_classes = 1 + max(max(labels, default=0) for labels in label_lists)
    multi_label = any(len(labels) != 1 for labels in label_lists)
  default = _default_heldout(len(index), multi_label, "")
  train_ids, heldout_ids = _split_heldout(spec, len(index), heldout_size, default)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids,
      read=_py_reader(index.example_fetch(None, None, num_classes), num_classes),
      description=f"{len(paths)} TFRecord files, {len(index)} records")


def _tfds_label_info(directory: str) -> tuple[int | None, bool]:
  """(num_classes, multi_label) from TFDS metadata next to the files, if any."""
  if not tf.io.gfile.exists(os.path.join(directory, "features.json")):
    return None, False
  import tensorflow_datasets as tfds
  try:
    features = tfds.features.FeatureConnector.from_config(directory)
    _, multi_label, num_classes = _label_key(features)
    return num_classes, multi_label
  except Exception:  # unreadable metadata: fall back to scanning labels
    return None, False


# --- ImageFolder --------------------------------------------------------------------------


def _image_problem(path: str, full_decode: bool) -> str | None:
  """Why an image file is unusable, or None."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return f"unreadable ({e.strerror})"
  if data[:2] == b"\xff\xd8":
    if b"\xff\xd9" not in data[-16:]:
      return "truncated JPEG (no end marker)"
  elif not (data[:8] == b"\x89PNG\r\n\x1a\n" or data[:2] == b"BM" or data[:3] == b"GIF"):
    return "not a JPEG/PNG/BMP/GIF"
  if full_decode:
    try:
      tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
      return f"cannot be decoded ({str(e).splitlines()[0][:80]})"
  return None


def _load_imagefolder(spec: str, root: str, heldout_size: int | None, seed: int,
                      skip_corrupt: bool) -> DataSource:
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise DataError(f"imagefolder root {root!r} does not exist or is not a directory")
  # tfds ImageFolder layout root/train/<class>/ or a plain root/<class>/.
  base = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
  classes = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
  paths, labels = [], []
  for label, name in enumerate(classes):
    for file_name in sorted(os.listdir(os.path.join(base, name))):
      if file_name.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(base, name, file_name))
        labels.append(label)
  if not paths:
    raise DataError(f"imagefolder {base!r} has no images in class subdirectories "
                    f"(expected {base}/<class>/*.jpg)")
  full_decode = len(paths) <= FULL_DECODE_CHECK_LIMIT
  bad = [(p, why) for p in paths if (why := _image_problem(p, full_decode))]
  if bad:
    if not skip_corrupt:
      raise DataError(f"imagefolder {base!r}: {len(bad)} corrupt image(s), first {bad[0][0]} "
                      f"({bad[0][1]}); pass skip_corrupt=True to skip them")
    log.warning("imagefolder %s: skipping %d corrupt image(s), first %s (%s)", base, len(bad),
                bad[0][0], bad[0][1])
    bad_paths = {p for p, _ in bad}
    kept = [(p, l) for p, l in zip(paths, labels) if p not in bad_paths]
    paths, labels = [p for p, _ in kept], [l for _, l in kept]
  if len(paths) < 2:
    raise DataError(f"imagefolder {base!r} has fewer than 2 readable images")
  # Files are in class order: shuffle (fixed by seed) before taking the last N as held-out.
  order = _stateless_permutation(len(paths), seed, 0, _HELDOUT_TAG)
  train_ids, heldout_ids = _split_heldout(
      spec, len(paths), heldout_size,
      min(10_000, math.ceil(OTHER_HELDOUT_FRACTION * len(paths))), order)
  path_table = tf.constant(paths)
  target_table = tf.one_hot(tf.constant(labels, tf.int64), len(classes))

  def read(record_id):
    return tf.io.read_file(tf.gather(path_table, record_id)), tf.gather(target_table, record_id)

  return DataSource(
      name=spec, num_classes=len(classes), train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=False, train_records=train_ids,
      heldout_records=heldout_ids, read=read, skipped_corrupt=len(bad),
      description=f"{len(paths)} images in {len(classes)} classes under {base}")


# ----------------------------------------------------------------------------------------
# Order and seeds.


def _fold_in(seed: tf.Tensor, data) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def _base_seed(seed: int, tag: int) -> tf.Tensor:
  return tf.constant([seed, tag], tf.int64)


def _order_tensor(num_examples: int, seed, epoch, tag: int = _ORDER_TAG) -> tf.Tensor:
  epoch_seed = _fold_in(_base_seed(int(seed), tag), epoch)
  return tf.random.experimental.stateless_shuffle(
      tf.range(num_examples, dtype=tf.int64), epoch_seed, alg="philox")


def _stateless_permutation(num_examples: int, seed: int, epoch: int, tag: int) -> np.ndarray:
  return _order_tensor(num_examples, seed, epoch, tag).numpy()


def example_order(source: DataSource, seed: int, epoch: int) -> np.ndarray:
  """Train-example indices (0..train_size-1) in the order epoch ``epoch`` visits them."""
  return _stateless_permutation(source.train_size, int(seed), int(epoch), _ORDER_TAG)


# ----------------------------------------------------------------------------------------
# Preprocessing.


def _resolve_augment(source: DataSource, augment: dict | None) -> dict:
  settings = dict(source.augment_defaults)
  unknown = sorted(set(augment or {}) - set(AUGMENT_DEFAULTS))
  if unknown:
    raise DataError(f"augment has unknown key(s) {unknown}; known: {sorted(AUGMENT_DEFAULTS)}")
  settings.update({k: v for k, v in (augment or {}).items() if v is not None or k == "randaugment"})
  randaugment = settings["randaugment"]
  if isinstance(randaugment, str):
    if not (randaugment.isdigit() and len(randaugment) == 3):
      raise DataError(f"augment randaugment={randaugment!r}: use 'LMM' (e.g. '405') or (layers, magnitude)")
    randaugment = (int(randaugment[0]), int(randaugment[1:]))
  if randaugment is not None:
    layers, magnitude = randaugment
    randaugment = None if int(layers) == 0 else (int(layers), float(magnitude))
  settings["randaugment"] = randaugment
  for key in ("mixup_alpha", "cutmix_alpha"):
    settings[key] = float(settings[key] or 0.0)
    if settings[key] < 0:
      raise DataError(f"augment {key}={settings[key]} must be >= 0")
  return settings


def _decode_and_crop(encoded: tf.Tensor, crop_box_fn) -> tf.Tensor:
  """Decodes only the crop of JPEGs (decode_and_crop_jpeg); other formats decode then crop."""

  def jpeg():
    box = crop_box_fn(tf.image.extract_jpeg_shape(encoded))
    return tf.io.decode_and_crop_jpeg(encoded, box, channels=3)

  def other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    y, x, h, w = tf.unstack(crop_box_fn(tf.shape(image)))
    return image[y:y + h, x:x + w]

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  return tf.ensure_shape(image, [None, None, 3])


def _normalise(image: tf.Tensor, dtype) -> tf.Tensor:
  image = (tf.cast(image, tf.float32) - MEAN_RGB) / STDDEV_RGB
  return tf.cast(image, dtype)


def _resize(image: tf.Tensor, resolution: int) -> tf.Tensor:
  image = tf.image.resize(tf.cast(image, tf.float32), [resolution, resolution], method="bicubic")
  return tf.clip_by_value(image, 0.0, 255.0)


def train_image(encoded: tf.Tensor, seed: tf.Tensor, resolution: int, settings: dict,
                dtype=tf.float32) -> tf.Tensor:
  """Train preprocessing of one encoded image; a pure function of (encoded, seed).

  Inception crop (random area/aspect box via stateless_sample_distorted_bounding_box, decoded
  with decode_and_crop_jpeg), bicubic resize, optional flip and RandAugment, then ImageNet
  mean/std normalisation.
  """
  crop_seed, flip_seed, randaugment_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, num=3))

  def crop_box(shape):
    if not settings["crop"]:
      return tf.stack([0, 0, shape[0], shape[1]])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=settings["min_object_covered"],
        aspect_ratio_range=list(settings["aspect_ratio_range"]),
        area_range=list(settings["area_range"]), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])

  image = _resize(_decode_and_crop(encoded, crop_box), resolution)
  if settings["flip"]:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  if settings["randaugment"]:
    from reproduce.data.randaugment import randaugment
    layers, magnitude = settings["randaugment"]
    image = randaugment(tf.round(image), randaugment_seed, layers, magnitude)
  return _normalise(image, dtype)


def eval_crop_padding(resolution: int) -> int:
  """NFNet eval padding: 32 px; below 224 px scaled to keep the 224/256 crop fraction."""
  return 32 if resolution >= 224 else int(round(32 * resolution / 224))


def eval_image(encoded: tf.Tensor, resolution: int, padding: int | None = None,
               dtype=tf.float32) -> tf.Tensor:
  """NFNet eval preprocessing: centre crop res/(res+padding) of the shorter side, bicubic resize.

  Same geometry as resizing the shorter side to ``res + padding`` and centre-cropping ``res``
  (the official NFNet code crops first, which decodes less of each JPEG).
  """
  padding = eval_crop_padding(resolution) if padding is None else int(padding)
  fraction = resolution / (resolution + padding)

  def centre_box(shape):
    side = tf.cast(fraction * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])

  return _normalise(_resize(_decode_and_crop(encoded, centre_box), resolution), dtype)


def _sample_beta(seed: tf.Tensor, alpha: float) -> tf.Tensor:
  first, second = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  x = tf.random.stateless_gamma([], first, alpha=alpha)
  y = tf.random.stateless_gamma([], second, alpha=alpha)
  return x / tf.maximum(x + y, 1e-12)


def _mixup(images, labels, seed, alpha):
  """Mixes each example with the batch reversed, weight lam ~ Beta(alpha, alpha)."""
  lam = _sample_beta(seed, alpha)
  mixed = lam * tf.cast(images, tf.float32) + (1 - lam) * tf.cast(images[::-1], tf.float32)
  return tf.cast(mixed, images.dtype), lam * labels + (1 - lam) * labels[::-1]


def _cutmix(images, labels, seed, alpha):
  """Pastes a box of the reversed batch; labels mixed by the box's actual area."""
  beta_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
  lam = _sample_beta(beta_seed, alpha)
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  cut = tf.sqrt(1.0 - lam)
  cut_h = tf.cast(cut * tf.cast(height, tf.float32), tf.int32)
  cut_w = tf.cast(cut * tf.cast(width, tf.float32), tf.int32)
  centre_y = tf.random.stateless_uniform([], y_seed, 0, height, dtype=tf.int32)
  centre_x = tf.random.stateless_uniform([], x_seed, 0, width, dtype=tf.int32)
  y0, y1 = tf.maximum(centre_y - cut_h // 2, 0), tf.minimum(centre_y + cut_h // 2, height)
  x0, x1 = tf.maximum(centre_x - cut_w // 2, 0), tf.minimum(centre_x + cut_w // 2, width)
  rows = tf.logical_and(tf.range(height) >= y0, tf.range(height) < y1)
  cols = tf.logical_and(tf.range(width) >= x0, tf.range(width) < x1)
  box = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
  mixed = tf.where(box, images[::-1], images)
  area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(height * width, tf.float32)
  return mixed, (1 - area) * labels + area * labels[::-1]


def mix_batch(images, labels, seed: tf.Tensor, mixup_alpha: float, cutmix_alpha: float):
  """NFNet mixing: MixUp on the first half, CutMix on the second (or one of them on all)."""
  mixup_seed, cutmix_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  if mixup_alpha > 0 and cutmix_alpha > 0:
    half = tf.shape(images)[0] // 2
    first = _mixup(images[:half], labels[:half], mixup_seed, mixup_alpha)
    second = _cutmix(images[half:], labels[half:], cutmix_seed, cutmix_alpha)
    return tf.concat([first[0], second[0]], 0), tf.concat([first[1], second[1]], 0)
  if mixup_alpha > 0:
    return _mixup(images, labels, mixup_seed, mixup_alpha)
  return _cutmix(images, labels, cutmix_seed, cutmix_alpha)


# ----------------------------------------------------------------------------------------
# Pipelines.


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


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return options


def train_dataset(source: DataSource, *, global_batch_size: int, resolution: int, seed: int,
                  start_step: int = 0, input_context: tf.distribute.InputContext | None = None,
                  augment: dict | None = None, dtype=tf.float32) -> tf.data.Dataset:
  """The infinite, epoch-exact train stream from batch ``start_step`` on.

  Args:
    source: from ``load_source``.
    global_batch_size: examples per step over all replicas.
    resolution: output height and width.
    seed: fixes the example order of every epoch and all augmentation.
    start_step: first batch of the stream (resume: the step to resume at).
    input_context: ``tf.distribute.InputContext``; each pipeline yields per-replica batches
      of ``global_batch_size / num_replicas_in_sync`` made of its contiguous slice of every
      global batch.
    augment: overrides of ``source.augment_defaults`` (keys of ``AUGMENT_DEFAULTS``).
    dtype: image dtype (tf.bfloat16 on TPUs).

  Returns:
    A dataset of (images [b, res, res, 3] dtype, targets [b, num_classes] float32).
  """
  settings = _resolve_augment(source, augment)
  per_replica, pipelines, pipeline_id = _sharding(global_batch_size, input_context)
  if start_step < 0:
    raise DataError(f"start_step={start_step} must be >= 0")
  num_examples = source.train_size
  start = int(start_step) * int(global_batch_size)
  first_epoch, first_offset = divmod(start, num_examples)
  records = tf.constant(source.train_records, tf.int64)
  seed = int(seed)

  def epoch_positions(epoch):
    # (epoch, position in epoch, train index) for the rest of this epoch.
    begin = tf.where(epoch == first_epoch, tf.constant(first_offset, tf.int64), 0)
    positions = tf.range(begin, num_examples, dtype=tf.int64)
    order = _order_tensor(num_examples, seed, epoch)
    return tf.data.Dataset.from_tensor_slices(
        (tf.fill(tf.shape(positions), epoch), positions, tf.gather(order, positions)))

  dataset = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
  dataset = dataset.flat_map(epoch_positions)
  dataset = _take_share(dataset, global_batch_size, pipelines, pipeline_id)
  augment_seed = _base_seed(seed, _AUGMENT_TAG)

  def load(epoch, position, index):
    encoded, target = source.read(tf.gather(records, index))
    example_seed = _fold_in(_fold_in(augment_seed, epoch), index)
    image = train_image(encoded, example_seed, resolution, settings, dtype)
    return image, target, epoch * num_examples + position

  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(per_replica, drop_remainder=True)
  if settings["mixup_alpha"] > 0 or settings["cutmix_alpha"] > 0:
    mix_seed = _base_seed(seed, _MIX_TAG)

    def mix(images, targets, stream_positions):
      # Seeded by the stream position of the batch's first example: resumes identically.
      images, targets = mix_batch(images, targets, _fold_in(mix_seed, stream_positions[0]),
                                  settings["mixup_alpha"], settings["cutmix_alpha"])
      return images, targets, stream_positions

    dataset = dataset.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.map(lambda images, targets, _: (images, targets))
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def heldout_dataset(source: DataSource, *, global_batch_size: int, resolution: int,
                    input_context: tf.distribute.InputContext | None = None,
                    dtype=tf.float32) -> tf.data.Dataset:
  """The held-out set, once, in a fixed order, with eval preprocessing.

  The last global batch is padded (repeating the last example) to full size so every
  replica gets a full batch; the third element is a float32 mask, 0 on padding. Sum losses
  times mask and divide by the mask's sum.

  Returns:
    A dataset of (images [b, res, res, 3], targets [b, num_classes], mask [b]).
  """
  per_replica, pipelines, pipeline_id = _sharding(global_batch_size, input_context)
  count = source.heldout_size
  padded = math.ceil(count / global_batch_size) * global_batch_size
  records = tf.constant(source.heldout_records, tf.int64)
  dataset = tf.data.Dataset.range(padded)
  dataset = _take_share(dataset, global_batch_size, pipelines, pipeline_id)

  def load(position):
    encoded, target = source.read(tf.gather(records, tf.minimum(position, count - 1)))
    image = eval_image(encoded, resolution, source.eval_crop_padding, dtype)
    return image, target, tf.cast(position < count, tf.float32)

  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(per_replica, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def describe(source: DataSource) -> dict[str, Any]:
  """A JSON-able summary for logs and results.json."""
  return {"dataset": source.name, "num_classes": source.num_classes,
          "train_size": source.train_size, "heldout_size": source.heldout_size,
          "multi_label": source.multi_label, "skipped_corrupt": source.skipped_corrupt,
          "description": source.description}
