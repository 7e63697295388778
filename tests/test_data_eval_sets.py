"""What ``reproduce.data`` gives the evaluation besides pre-training's sources: a whole TFDS
split read with a named label feature (ImageNet ReaL's ``real_label``), and the 200-class
subsets of ImageNet-A/-R as indices of a label space (their published lists:
test_evaluation_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from reproduce import data
from reproduce.data import imagenet_subsets

NAMES = ("cat", "dog", "fox", "owl")


class KitTestTwoLabels(tfds.core.GeneratorBasedBuilder):
  """6 constant 8x8 images (value 20*i), each with one ``original_label`` and a
  ``real_label`` set of 0 to 2 labels, in a 'validation' split only."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    label = tfds.features.ClassLabel(names=NAMES)
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)),
        "original_label": label,
        "real_label": tfds.features.Sequence(tfds.features.ClassLabel(names=NAMES)),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"validation": self._generate_examples()}

  def _generate_examples(self):
    for i in range(6):
      yield i, {"image": np.full((8, 8, 3), 20 * i, np.uint8), "original_label": i % 4,
                "real_label": _real_labels(i)}


def _real_labels(i: int) -> list[int]:
  return [[], [i % 4], [i % 4, (i + 1) % 4]][i % 3]


@pytest.fixture(scope="module")
def two_labels_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("two_labels"))
  KitTestTwoLabels(data_dir=data_dir).download_and_prepare()
  return data_dir


def test_a_whole_split_is_read_with_the_named_label_feature(two_labels_dir):
  source = data.load_tfds_split("real", "kit_test_two_labels", two_labels_dir, None,
                                "validation", "real_label")
  assert (source.train_size, source.heldout_size, source.num_classes) == (0, 6, 4)
  assert source.multi_label and source.class_names == NAMES
  assert source.description == "tfds kit_test_two_labels 1.0.0 validation"
  stored = tfds.builder("kit_test_two_labels", data_dir=two_labels_dir).as_dataset(
      split="validation", shuffle_files=False)  # TFDS shuffled the examples when preparing
  for record, example in zip(source.heldout_records, stored, strict=True):
    encoded, target = source.read(tf.constant(record, tf.int64))
    i = int(tf.io.decode_image(encoded)[0, 0, 0]) // 20
    assert i == int(example["image"][0, 0, 0]) // 20  # the stored order
    assert np.flatnonzero(target.numpy()).tolist() == sorted(_real_labels(i))
  single = data.load_tfds_split("original", "kit_test_two_labels", two_labels_dir, None,
                                "validation", "original_label")
  assert not single.multi_label
  with pytest.raises(data.DataError, match="lacks an 'image' or 'label' class-label"):
    data.load_tfds_split("x", "kit_test_two_labels", two_labels_dir, None, "validation",
                         "label")


def test_subset_indices_are_ascending_positions_of_its_wnids():
  wnids = list(imagenet_subsets.SUBSETS["imagenet_r"])
  names = ["n00000000"] + wnids[::-1]  # any order, a class outside the subset
  assert data.subset_indices("imagenet_r", names) == list(range(1, 201))
  with pytest.raises(data.DataError, match=f"imagenet_r: wnid {wnids[-1]} is not among"):
    data.subset_indices("imagenet_r", names[2:])
