"""Helpers of the evaluation tests: the reference metrics written as plain loops, a
converted-weights directory writer, and an ImageFolder of PNGs."""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

# ``indices_in_1k`` of hendrycks/natural-adv-examples eval.py and ``imagenet_r_indices`` of
# hendrycks/imagenet-r eval.py.
PUBLISHED_A = [
    6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70, 71, 76, 79, 89, 90, 94, 96,
    97, 99, 105, 107, 108, 110, 113, 124, 125, 130, 132, 143, 144, 150, 151, 207, 234, 235, 254,
    277, 283, 287, 291, 295, 298, 301, 306, 307, 308, 309, 310, 311, 313, 314, 315, 317, 319,
    323, 324, 326, 327, 330, 334, 335, 336, 347, 361, 363, 372, 378, 386, 397, 400, 401, 402,
    404, 407, 411, 416, 417, 420, 425, 428, 430, 437, 438, 445, 456, 457, 461, 462, 470, 472,
    483, 486, 488, 492, 496, 514, 516, 528, 530, 539, 542, 543, 549, 552, 557, 561, 562, 569,
    572, 573, 575, 579, 589, 606, 607, 609, 614, 626, 627, 640, 641, 642, 643, 658, 668, 677,
    682, 684, 687, 701, 704, 719, 736, 746, 749, 752, 758, 763, 765, 768, 773, 774, 776, 779,
    780, 786, 792, 797, 802, 803, 804, 813, 815, 820, 823, 831, 833, 835, 839, 845, 847, 850,
    859, 862, 870, 879, 880, 888, 890, 897, 900, 907, 913, 924, 932, 933, 934, 937, 943, 945,
    947, 951, 954, 956, 957, 959, 971, 972, 980, 981, 984, 986, 987, 988]
PUBLISHED_R = [
    1, 2, 4, 6, 8, 9, 11, 13, 22, 23, 26, 29, 31, 39, 47, 63, 71, 76, 79, 84, 90, 94, 96, 97, 99,
    100, 105, 107, 113, 122, 125, 130, 132, 144, 145, 147, 148, 150, 151, 155, 160, 161, 162,
    163, 171, 172, 178, 187, 195, 199, 203, 207, 208, 219, 231, 232, 234, 235, 242, 245, 247,
    250, 251, 254, 259, 260, 263, 265, 267, 269, 276, 277, 281, 288, 289, 291, 292, 293, 296,
    299, 301, 308, 309, 310, 311, 314, 315, 319, 323, 327, 330, 334, 335, 337, 338, 340, 341,
    344, 347, 353, 355, 361, 362, 365, 366, 367, 368, 372, 388, 390, 393, 397, 401, 407, 413,
    414, 425, 428, 430, 435, 437, 441, 447, 448, 457, 462, 463, 469, 470, 471, 472, 476, 483,
    487, 515, 546, 555, 558, 570, 579, 583, 587, 593, 594, 596, 609, 613, 617, 621, 629, 637,
    657, 658, 701, 717, 724, 763, 768, 774, 776, 779, 780, 787, 805, 812, 815, 820, 824, 833,
    847, 852, 866, 875, 883, 889, 895, 907, 928, 931, 932, 933, 934, 936, 937, 943, 945, 947,
    948, 949, 951, 953, 954, 957, 963, 965, 967, 980, 981, 983, 988]


def loop_metrics(logits, label_sets_per_row, num_bins=15):
  """Independent per-row loops: top-1/top-5 in the label set, NLL of the set, Guo ECE.

  Rows with an empty label set are left out (they are not scorable)."""
  rows = []
  for row, labels in zip(np.asarray(logits, np.float64), label_sets_per_row):
    if not labels:
      continue
    z = row - row.max()
    p = np.exp(z) / np.exp(z).sum()
    order = sorted(range(len(p)), key=lambda c: -p[c])
    rows.append((order[0] in labels, any(c in labels for c in order[:5]),
                 -math.log(sum(p[c] for c in labels)), p.max()))
  top1 = np.array([r[0] for r in rows], float)
  conf = np.array([r[3] for r in rows])
  ece = 0.0
  for k in range(num_bins):
    lo, hi = k / num_bins, (k + 1) / num_bins
    in_bin = (conf > lo) & (conf <= hi)
    if in_bin.any():
      ece += in_bin.mean() * abs(top1[in_bin].mean() - conf[in_bin].mean())
  return {"top1": top1.mean(), "top5": np.mean([r[1] for r in rows]),
          "nll": np.mean([r[2] for r in rows]), "ece": ece, "examples": len(rows)}


def write_converted(model, out_dir, *, name, num_classes, resolution, overrides=None,
                    ema=False):
  """The converted-weights directory format, through the kit's own writer."""
  from model_defs import weights_file
  weights_file.save(model, out_dir, name=name, num_classes=num_classes,
                    overrides=overrides or {}, resolution=resolution, source="test", ema=ema)
  return out_dir


def write_imagefolder(root, per_folder, folders=("a", "b", "c"), size=(20, 28), seed=0):
  """root/<folder>/<i>.png random images; returns root."""
  rng = np.random.default_rng(seed)
  for folder in folders:
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i in range(per_folder):
      pixels = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
      with open(os.path.join(root, folder, f"{i}.png"), "wb") as f:
        f.write(tf.io.encode_png(pixels).numpy())
  return root


def randomise(model, scale=1.0, seed=0):
  """Random normal weights (models with zero-initialised heads give uniform logits)."""
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(size=w.shape).astype(np.float32) * scale
                     for w in model.get_weights()])


def prepare_fake_tfds(name, data_dir, split, num_examples, seed=0, num_labels=None,
                      file_format="tfrecord"):
  """A prepared copy of TFDS dataset ``name`` in ``data_dir``: one ``split`` of random examples
  of its own features (class labels among the first ``num_labels``, default all), as
  ``tfds build`` writes it (TFRecord files; ``as_dataset`` reads them too), without the real
  files."""
  import unittest.mock
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=data_dir)
  rng = np.random.default_rng(seed)

  def value(feature, index):
    if isinstance(feature, tfds.features.Image):
      height, width = rng.integers(20, 40, size=2)
      return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if isinstance(feature, tfds.features.ClassLabel):
      return int(rng.integers(num_labels or feature.num_classes))
    if isinstance(feature, tfds.features.Sequence):
      return [value(feature.feature, index) for _ in range(rng.integers(0, 4))]
    return f"{name}_{index}"

  def examples():
    for index in range(num_examples):
      yield index, {key: value(feature, index)
                    for key, feature in builder.info.features.items()}

  with unittest.mock.patch.object(type(builder), "_split_generators",
                                  lambda self, dl_manager: {split: examples()}):
    tfds.disable_progress_bar()
    builder.download_and_prepare(file_format=file_format)
  return data_dir
