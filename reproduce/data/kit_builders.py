"""The base of the kit's own TFDS builders (``digits``, ``fashion_mnist``): PNG images of one
shape with one ``ClassLabel``, every split made from data at hand, nothing downloaded by TFDS.
"""

from __future__ import annotations

import tensorflow_datasets as tfds


class PngClassificationBuilder(tfds.core.GeneratorBasedBuilder):
  """A builder of PNG images and one ``ClassLabel``.

  Subclasses set ``DESCRIPTION``, ``HOMEPAGE``, ``IMAGE_SHAPE``, ``LABEL`` (the ``ClassLabel``
  keyword arguments) and ``SPLITS``, and write ``_generate_examples(split)``. Left abstract,
  so TFDS registers only the subclasses.
  """

  DESCRIPTION: str
  HOMEPAGE: str
  IMAGE_SHAPE: tuple[int, int, int]
  LABEL: dict
  SPLITS: tuple[str, ...]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=self.IMAGE_SHAPE, encoding_format="png"),
            "label": tfds.features.ClassLabel(**self.LABEL),
        }),
        supervised_keys=("image", "label"), homepage=self.HOMEPAGE)

  def _split_generators(self, dl_manager):
    del dl_manager  # the subclass reads its own sources, never a URL through TFDS
    return {split: self._generate_examples(split) for split in self.SPLITS}
