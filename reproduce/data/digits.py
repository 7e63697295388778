"""The scikit-learn handwritten digits as a TensorFlow Datasets builder.

``sklearn.datasets.load_digits()`` ships 1797 real 8x8 greyscale digits (10 classes) inside
the scikit-learn wheel, so this builder prepares offline in about a second. Each digit is
upscaled to 32x32 (bilinear), replicated to RGB and stored as a PNG, so the kit reads it
through exactly the same path as ImageNet: encoded images + a ``ClassLabel``.

The builder writes ``array_record`` files by default (``reproduce.data`` prepares it that
way), which gives the random access that the epoch-exact input pipeline needs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from reproduce.data.kit_builders import PngClassificationBuilder

IMAGE_SIZE = 32
NUM_CLASSES = 10


def upscaled_digits(image_size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """The digits as uint8 RGB images [1797, size, size, 3] and int labels [1797]."""
  from sklearn.datasets import load_digits  # slow (~0.7 s), needed once: see core/cli.py
  digits = load_digits()
  # sklearn pixel values are 0..16 (ink counts over a 4x4 block).
  images = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
  images = tf.image.resize(images, [image_size, image_size], method="bilinear").numpy()
  images = np.clip(np.round(images), 0, 255).astype(np.uint8)
  return np.repeat(images, 3, axis=-1), digits.target.astype(np.int64)


class SklearnDigits(PngClassificationBuilder):
  """scikit-learn handwritten digits (UCI optdigits test set), 32x32 RGB PNGs."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "8x8 digits upscaled to 32x32 RGB, one 'train' split."}
  DESCRIPTION = "1797 handwritten digits from scikit-learn, upscaled to 32x32 RGB."
  HOMEPAGE = ("https://scikit-learn.org/stable/modules/generated/"
              "sklearn.datasets.load_digits.html")
  IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
  LABEL = {"num_classes": NUM_CLASSES}
  SPLITS = ("train",)  # only a train split: the kit carves its held-out set from it

  def _generate_examples(self, split: str):
    del split  # the one split
    images, labels = upscaled_digits()
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image, "label": int(label)}
