"""Evaluation sets: a dataset spec (see ``specs``) to labelled, preprocessed batches whose
targets are multi-hot rows over the model's classes. Every set is read through
``reproduce.data`` (the ImageNet names: their whole TFDS split, ``data.load_tfds_split``; the
others: ``data.load_eval_source``) with its held-out pipeline; this module only maps the
labels to the model's classes.

A ``class_map`` (JSON file: class name -> model class index) maps the labels of ``tfds:``
and ``imagefolder:`` sets (an ImageFolder folder missing from it is an error; a tfds label
missing from it is unscored); without one, label i is model class i (ImageFolder: sorted
folder names). When the mapped classes are fewer than the model's, logits are restricted to
them, as ImageNet-A/-R restrict theirs to their 200 classes.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf

from reproduce.core import cli
from reproduce.core import fileio
from reproduce import data
from reproduce.evaluation import specs
from reproduce.evaluation.specs import EvaluationError

IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True, eq=False)
class EvalSet:
  """A dataset to score, with its labels mapped to the model's classes.

  Attributes:
    name: the spec it came from (the key in results.json).
    examples: ``fn(resolution, crop, input_range=None) -> tf.data`` of (image, dataset label
      ids [k]).
    label_map: dataset label id -> model class index (-1: not a model class).
    scored_classes: model classes the logits are restricted to (None: all of them).
    description: where the data comes from.
  """
  name: str
  examples: object
  label_map: np.ndarray
  scored_classes: np.ndarray | None
  description: str


def read_class_map(path: str) -> dict[str, int]:
  """The JSON class map ``{class name: model class index}``."""
  try:
    mapping = json.loads(fileio.read_text(path))
  except (OSError, tf.errors.OpError, ValueError) as e:
    raise EvaluationError(f"cannot read --class_map={path}: {cli.first_line(e)}") from None
  if not isinstance(mapping, dict) or not all(
      isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in mapping.values()):
    raise EvaluationError(f"--class_map={path} must be a JSON object of "
                          "name -> class index >= 0")
  return mapping


def _mapped(names: list[str], class_map: dict[str, int] | None,
            num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
  """(label id -> model class, restricted classes or None) of labels called ``names``."""
  if class_map is None:
    label_map = np.arange(len(names), dtype=np.int64)
  else:
    label_map = np.array([class_map.get(n, -1) for n in names], np.int64)
  too_big = label_map[label_map >= num_classes]
  if too_big.size:
    raise EvaluationError(f"class index {int(too_big[0])} is beyond the model's "
                          f"{num_classes} classes")
  classes = np.unique(label_map[label_map >= 0])
  return label_map, (classes if len(classes) < num_classes else None)


def _source_examples(source):
  """(examples fn) of a ``reproduce.data`` source's held-out set: the data module's own
  held-out pipeline (its eval preprocessing and crop padding), one example at a time."""

  def examples(resolution: int, crop: str, input_range: str | None = None) -> tf.data.Dataset:
    dataset = data.heldout_dataset(source, global_batch_size=64, resolution=resolution,
                                   crop=crop, input_range=input_range).unbatch()
    dataset = dataset.filter(lambda image, target, mask: mask > 0)
    return dataset.map(lambda image, target, mask: (image, tf.reshape(tf.where(target > 0),
                                                                       [-1])))

  return examples


def open_source(spec: str, data_dir: str | None, manual_dir: str | None = None):
  """The ``reproduce.data`` source whose held-out set ``spec`` scores (the ImageNet names: their
  whole TFDS split, prepared from ``manual_dir``'s tars when not yet prepared); a DataError
  becomes one EvaluationError line. Needs no model: ``run`` opens every set before loading
  weights."""
  spec = specs.check_dataset(spec)
  try:
    if spec in specs.IMAGENET_SETS:
      name, split, label_key, _ = specs.IMAGENET_SETS[spec]
      source = data.load_tfds_split(spec, name, data_dir, manual_dir, split, label_key)
    else:
      source = data.load_eval_source(spec, data_dir)
  except data.DataError as e:
    raise EvaluationError(cli.first_line(e)) from None
  if not source.heldout_size:
    raise EvaluationError(f"{spec}: no examples to score")
  return source


def open_set(spec: str, num_classes: int, data_dir: str | None = None,
             class_map: dict[str, int] | None = None, source=None) -> EvalSet:
  """The EvalSet of ``spec`` for a model with ``num_classes`` outputs (``source``: its
  ``open_source``, when already open)."""
  spec = specs.check_dataset(spec)
  imagenet = specs.IMAGENET_SETS.get(spec)
  if imagenet and num_classes != IMAGENET_CLASSES:
    raise EvaluationError(f"{spec} scores ImageNet classifiers ({IMAGENET_CLASSES} "
                          f"classes); the model has {num_classes}")
  source = source or open_source(spec, data_dir)
  names = list(source.class_names) or [str(i) for i in range(source.num_classes)]
  if imagenet:
    # Labels are ImageNet class ids; A/R score only the classes of their subset.
    *_, on_subset = imagenet
    scored = _subset(spec, names) if on_subset else None
    return EvalSet(spec, _source_examples(source), np.arange(IMAGENET_CLASSES), scored,
                   source.description)
  if spec.startswith("imagefolder:") and class_map is not None:
    missing = [n for n in names if n not in class_map]
    if missing:
      raise EvaluationError(f"{spec}: folder {missing[0]!r} is not in the class map "
                            f"({len(missing)} folder(s) missing)")
  label_map, scored = _mapped(names, class_map, num_classes)
  description = f"{source.description}: {source.heldout_size} images"
  return EvalSet(spec, _source_examples(source), label_map, scored, description)


def _subset(spec: str, class_names: list[str]) -> np.ndarray:
  try:
    return np.array(data.subset_indices(spec, class_names))
  except data.DataError as e:
    raise EvaluationError(cli.first_line(e)) from None


def batches(eval_set: EvalSet, resolution: int, crop: str, batch_size: int, num_classes: int,
            max_examples: int | None = None, input_range: str | None = None) -> tf.data.Dataset:
  """(images [b, res, res, 3] in the model's ``input_range``, multi-hot targets
  [b, num_classes]) in dataset order."""
  # The range is passed only when it is not the default, so an ``examples`` fn of two
  # arguments still serves ImageNet-normalised models.
  ranged = input_range and input_range != data.DEFAULT_INPUT_RANGE
  dataset = eval_set.examples(resolution, crop, *([input_range] if ranged else []))
  if max_examples:
    dataset = dataset.take(int(max_examples))
  table = tf.constant(eval_set.label_map, tf.int64)

  def target(image, labels):
    classes = tf.gather(table, labels)
    # one_hot of -1 (no model class) is all zeros; an empty label list sums to zeros.
    hot = tf.reduce_sum(tf.one_hot(classes, num_classes, dtype=tf.float32), axis=0)
    return image, tf.minimum(hot, 1.0)

  dataset = dataset.map(target, num_parallel_calls=tf.data.AUTOTUNE).batch(int(batch_size))
  options = tf.data.Options()
  options.deterministic = True
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)
