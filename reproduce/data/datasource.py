"""The ``DataSource`` contract every loader returns, its one-line ``DataError``, and the
held-out rule: the held-out set is the last ``heldout_size`` records of the train split.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from reproduce.core.errors import UserError
from reproduce.data.augment_defaults import AUGMENT_DEFAULTS

IMAGENET_HELDOUT = 10_000     # NFNet code's "minival": the last 10k train images
MULTI_LABEL_HELDOUT = 130_000  # the paper's JFT-4B held-out set
OTHER_HELDOUT_FRACTION = 0.1   # other single-label data: 10%, at most 10k
OTHER_HELDOUT_MAX = 10_000
IN_MEMORY_BYTES = 64 * 2**20  # datasets this small are read once, into memory (memory_reader)

class DataError(UserError, ValueError):
  """Bad dataset spec, missing files or data; the message is one line."""


@dataclasses.dataclass(frozen=True)
class ShardOrder:
  """A source read in the per-shard order (``order.py``): ``sizes`` are the train examples of
  each shard (shards hold consecutive train indices, in order), ``window`` the shards a host
  reads at a time."""
  sizes: tuple[int, ...]
  window: int


@dataclasses.dataclass(frozen=True, eq=False)
class DataSource:
  """A random-access labelled image dataset with a carved-out held-out set.

  Attributes:
    name: the dataset spec it was loaded from.
    num_classes: label space size.
    train_size: examples in the train stream (held-out ones excluded).
    heldout_size: examples in the held-out set.
    multi_label: True for multi-hot (sigmoid) targets, False for one-hot (softmax).
    train_records: record ids (into ``read``) of train examples, by train index: a ``range``
      where they are contiguous (no N-sized array), else an int64 array.
    heldout_records: record ids of held-out examples (``range`` or array, likewise).
    read: ``read(record_id) -> (encoded image bytes, float32 [num_classes] target)``; traceable
      in tf.data.
    augment_defaults: the source's default ``augment`` settings.
    eval_crop_padding: pixels added before the centre crop at eval (None: NFNet rule).
    eval_crop: the default eval crop protocol, "nfnet" (resize the whole image, crop) or
      "vit" (resize the shorter side, crop).
    skipped_corrupt: files dropped as unreadable (ImageFolder).
    description: where the data was read from.
    shard_order: None: the train stream visits each epoch in one global permutation; else
      in the per-shard order over these shards (``order.py``, docs/data.md).
    class_names: the label names by class id where the source knows them (TFDS ClassLabel
      names, ImageFolder folders), else empty.
  """
  name: str
  num_classes: int
  train_size: int
  heldout_size: int
  multi_label: bool
  train_records: range | np.ndarray = dataclasses.field(repr=False)
  heldout_records: range | np.ndarray = dataclasses.field(repr=False)
  read: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]] = dataclasses.field(repr=False)
  augment_defaults: dict = dataclasses.field(default_factory=lambda: dict(AUGMENT_DEFAULTS),
                                             repr=False)
  eval_crop_padding: int | None = None
  eval_crop: str = "nfnet"
  skipped_corrupt: int = 0
  description: str = ""
  shard_order: ShardOrder | None = None
  class_names: tuple[str, ...] = ()


def describe(source: DataSource) -> dict[str, Any]:
  """A JSON-able summary for logs and results.json."""
  return {"dataset": source.name, "num_classes": source.num_classes,
          "train_size": source.train_size, "heldout_size": source.heldout_size,
          "multi_label": source.multi_label, "skipped_corrupt": source.skipped_corrupt,
          "description": source.description}


def split_heldout(spec: str, num_records: int, heldout_size: int | None, default: int,
                  canonical_order: np.ndarray | None = None
                  ) -> tuple[range | np.ndarray, range | np.ndarray]:
  """Train/held-out record ids: the held-out set is the last ``heldout_size`` records (of
  ``canonical_order`` if given, else of the records: two ``range``s, nothing N-sized)."""
  size = default if heldout_size is None else int(heldout_size)
  if not 0 < size < num_records:
    raise DataError(f"{spec}: heldout_size={size} must be in 1..{num_records - 1} "
                    f"(the train split has {num_records} examples)")
  if canonical_order is None:
    return range(num_records - size), range(num_records - size, num_records)
  order = canonical_order.astype(np.int64)
  return order[:num_records - size], order[num_records - size:]


def record_lookup(records: range | np.ndarray) -> Callable[[tf.Tensor], tf.Tensor]:
  """``lookup(index) -> record id`` in tf.data: arithmetic for a ``range`` (no constant),
  a gather from an int64 constant for an array."""
  if isinstance(records, range):
    start, step = records.start, records.step
    return lambda index: start + tf.cast(index, tf.int64) * step
  table = tf.constant(np.asarray(records, np.int64))
  return lambda index: tf.gather(table, index)


def fraction_heldout(num_records: int, fraction: float = OTHER_HELDOUT_FRACTION,
                     at_most: int | None = OTHER_HELDOUT_MAX) -> int:
  """``ceil(fraction * num_records)``, capped at ``at_most``."""
  size = math.ceil(fraction * num_records)
  return size if at_most is None else min(at_most, size)


def default_heldout(num_records: int, multi_label: bool, name: str) -> int:
  """ImageNet: NFNet's minival; multi-label: the paper's JFT set; else 10%, at most 10k."""
  if name.startswith("imagenet2012"):
    return IMAGENET_HELDOUT
  if multi_label:
    return MULTI_LABEL_HELDOUT
  return fraction_heldout(num_records)


def multi_hot(labels, num_classes: int) -> np.ndarray:
  target = np.zeros([num_classes], np.float32)
  target[np.asarray(labels, np.int64).reshape(-1)] = 1.0
  return target


def record_reader(fetch: Callable[[int], tuple[bytes, np.ndarray]], num_classes: int,
                  num_records: int, stored_bytes: int | None):
  """``memory_reader`` for a dataset of at most ``IN_MEMORY_BYTES`` stored, else
  ``python_reader`` (``stored_bytes`` None: unknown, so read lazily)."""
  if stored_bytes is not None and 0 < stored_bytes <= IN_MEMORY_BYTES:
    return memory_reader(fetch, num_classes, num_records)
  return python_reader(fetch, num_classes)


def memory_reader(fetch: Callable[[int], tuple[bytes, np.ndarray]], num_classes: int,
                  num_records: int):
  """A ``DataSource.read`` over every record, fetched once (when a pipeline is first built:
  loading still opens no file) and then gathered from constant tensors.

  Why: ``python_reader`` runs Python under the GIL for every example, about 150 us of a
  core each; the study's mini models eat 2000 images/s a core, so a worker's input thread
  fought its own training thread and the other worker's for the GIL and the cores. A gather
  costs ~20 us and no Python.
  """
  records = {}

  # Not converted by autograph: it runs inside the first pipeline's trace, where autograph
  # would convert every Python call of the fetch loop (Fashion-MNIST: 23 s instead of 0.4).
  @tf.autograph.experimental.do_not_convert
  def read_all() -> tuple[tf.Tensor, tf.Tensor]:
    # Eager tensors, made once and captured by every pipeline's traced function: a constant
    # made inside the trace was serialised into each run's graph (Fashion-MNIST's 43 MB
    # took minutes a run on a loaded machine).
    if not records:
      many = getattr(fetch, "many", None)
      fetched = (many(range(num_records)) if many else
                 [fetch(record_id) for record_id in range(num_records)])
      with tf.init_scope():
        records["images"] = tf.constant(
            np.asarray([image for image, _ in fetched], dtype=object), tf.string)
        records["targets"] = tf.constant(np.stack(
            [np.asarray(t, np.float32) for _, t in fetched]).reshape(num_records, num_classes))
    return records["images"], records["targets"]

  def read(record_id):
    images, targets = read_all()
    return tf.gather(images, record_id), tf.gather(targets, record_id)

  return read


def python_reader(fetch: Callable[[int], tuple[bytes, np.ndarray]], num_classes: int):
  """Wraps a Python random-access ``fetch(record_id)`` as a ``DataSource.read``."""

  def numpy_fetch(record_id):
    encoded, target = fetch(int(record_id))
    return np.asarray(encoded, dtype=object), target.astype(np.float32)

  def read(record_id):
    encoded, target = tf.numpy_function(numpy_fetch, [record_id], (tf.string, tf.float32),
                                        stateful=False)
    return tf.ensure_shape(encoded, []), tf.ensure_shape(target, [num_classes])

  return read
