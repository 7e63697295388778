"""Fashion-MNIST at 32 px as a TensorFlow Datasets builder (the study's default dataset).

Zalando's Fashion-MNIST (60k train + 10k test 28x28 greyscale images, 10 classes, MIT
licence) is the miniature study's data because it is large enough for the paper's regime:
every run of the study trains under two epochs, as the paper's do (docs/study.md). Each image
is padded with 2 black pixels to 32x32 (the mini models' resolution; no resampling) and stored
as a greyscale PNG, which the pipeline decodes to RGB like any other image.

Where the four IDX files come from, in order (``idx_files``):
  1. an already prepared tfds ``fashion_mnist`` in ``data_dir`` (read back, not downloaded);
  2. Debian/Ubuntu's ``dataset-fashion-mnist`` package (``DEBIAN_DIR``), which our machines
     reach through the package registry: ``apt-get install dataset-fashion-mnist``;
  3. tfds' own download of ``fashion_mnist`` (needs the internet);
  else one line naming these ways.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from reproduce.data.kit_builders import PngClassificationBuilder

IMAGE_SIZE = 32
PADDING = (IMAGE_SIZE - 28) // 2
NUM_CLASSES = 10
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SPLIT_SIZES = {"train": 60000, "test": 10000}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
HOW_TO_GET = (f"Fashion-MNIST not found: install Debian's {DEBIAN_PACKAGE} "
              f"(`apt-get install -y {DEBIAN_PACKAGE}`, files in {DEBIAN_DIR}), prepare tfds' "
              f"fashion_mnist in --data_dir, or connect to the internet; --dataset=digits "
              f"needs none of these")


class FashionMnistMissing(FileNotFoundError):
  """No source of the Fashion-MNIST files is available (``HOW_TO_GET`` says the ways)."""


def read_idx(path: str) -> np.ndarray:
  """The array of one gzipped IDX file (the MNIST format: magic, dims, big-endian uint8)."""
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise FashionMnistMissing(f"{path}: unreadable ({e})") from None
  dims = raw[3] if len(raw) > 4 and raw[:3] == b"\x00\x00\x08" else 0
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
  if not dims or len(raw) != 4 + 4 * dims + int(np.prod(shape)):
    raise FashionMnistMissing(f"{path}: not a uint8 IDX file of its stated size")
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def padded(images: np.ndarray) -> np.ndarray:
  """[N, 28, 28] uint8 -> [N, 32, 32, 1], the item centred on black."""
  pad = ((0, 0), (PADDING, PADDING), (PADDING, PADDING))
  return np.pad(images, pad)[..., None]


def _from_debian(split: str) -> tuple[np.ndarray, np.ndarray] | None:
  paths = [os.path.join(DEBIAN_DIR, name) for name in IDX_FILES[split]]
  if not all(os.path.exists(p) for p in paths):
    return None
  return read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)


def _from_tfds(split: str, data_dir: str | None, download: bool):
  """The split from tfds' own ``fashion_mnist`` (prepared, or downloaded when allowed)."""
  root = data_dir or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
  if not download and not os.path.isdir(os.path.join(root, "fashion_mnist")):
    return None  # asking tfds would only warn that no version is there
  builder = tfds.builder("fashion_mnist", data_dir=data_dir)
  if not builder.is_prepared():
    if not download:
      return None
    try:
      builder.download_and_prepare()
    except Exception:  # pylint: disable=broad-except  # no internet: any failure means absent
      return None
  arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return arrays["image"][..., 0], arrays["label"].astype(np.int64)


def load_split(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, 28, 28] uint8, labels [N]) of ``split``, from the first source that has it."""
  for attempt in (lambda: _from_tfds(split, data_dir, download=False),
                  lambda: _from_debian(split),
                  lambda: _from_tfds(split, data_dir, download=True)):
    found = attempt()
    if found is not None:
      images, labels = found
      if images.shape != (SPLIT_SIZES[split], 28, 28) or labels.shape != (SPLIT_SIZES[split],):
        raise FashionMnistMissing(f"Fashion-MNIST {split} has shape {images.shape} / "
                                  f"{labels.shape}, expected {SPLIT_SIZES[split]} 28x28 images")
      return images, labels
  raise FashionMnistMissing(HOW_TO_GET)


def available(data_dir: str | None = None) -> bool:
  """Whether the source files are at hand without a download (cheap: no file is read)."""
  if all(os.path.exists(os.path.join(DEBIAN_DIR, n)) for pair in IDX_FILES.values()
         for n in pair):
    return True
  return tfds.builder("fashion_mnist", data_dir=data_dir).is_prepared()


class KitFashionMnist(PngClassificationBuilder):
  """Fashion-MNIST padded to 32x32, greyscale PNGs, the official train and test splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "28x28 padded to 32x32 (2 px black border), train and test."}
  DESCRIPTION = "Fashion-MNIST (Xiao et al. 2017) padded to 32x32 greyscale."
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
  IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
  LABEL = {"names": CLASS_NAMES}
  SPLITS = tuple(IDX_FILES)  # made by load_split's sources, never from a URL of ours

  def __init__(self, *, source_data_dir: str | None = None, **kwargs):
    self._source_data_dir = source_data_dir
    super().__init__(**kwargs)

  def _generate_examples(self, split: str):
    images, labels = load_split(split, self._source_data_dir)
    for index, (image, label) in enumerate(zip(padded(images), labels)):
      yield index, {"image": image, "label": int(label)}
