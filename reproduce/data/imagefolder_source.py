"""``imagefolder:/root``: ``root/train/<class>/*`` (or ``root/<class>/*``) image files as a
``DataSource`` (local disks only). Classes are the sorted directory names.

Unreadable images are found at load time (every file's signature; a full decode for folders
of up to ``FULL_DECODE_CHECK_LIMIT`` images) and skipped with a warning, or refused.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from reproduce.core import fileio
from reproduce.data import order
from reproduce.data.datasource import DataError, DataSource, fraction_heldout, split_heldout

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FULL_DECODE_CHECK_LIMIT = 20_000

log = logging.getLogger(__name__)


def load_imagefolder(spec: str, root: str, heldout_size: int | None, seed: int,
                     skip_corrupt: bool) -> DataSource:
  root = fileio.expand(root)
  if not os.path.isdir(root):
    raise DataError(f"imagefolder root {root!r} does not exist or is not a directory")
  # tfds ImageFolder layout root/train/<class>/ or a plain root/<class>/.
  base = fileio.join(root, "train") if os.path.isdir(fileio.join(root, "train")) else root
  classes, paths, labels = _list_images(base)
  paths, labels, skipped = _drop_corrupt(base, paths, labels, skip_corrupt)
  if len(paths) < 2:
    raise DataError(f"imagefolder {base!r} has fewer than 2 readable images")
  # Files are in class order: shuffle (fixed by seed) before taking the last N as held-out.
  shuffled = order.permutation(len(paths), seed, 0, order.HELDOUT_TAG)
  train_ids, heldout_ids = split_heldout(spec, len(paths), heldout_size,
                                         fraction_heldout(len(paths)), shuffled)
  path_table = tf.constant(paths)
  target_table = tf.one_hot(tf.constant(labels, tf.int64), len(classes))

  def read(record_id):
    return tf.io.read_file(tf.gather(path_table, record_id)), tf.gather(target_table, record_id)

  return DataSource(
      name=spec, num_classes=len(classes), train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=False, train_records=train_ids,
      heldout_records=heldout_ids, read=read, skipped_corrupt=skipped,
      description=f"{len(paths)} images in {len(classes)} classes under {base}")


def _list_images(base: str) -> tuple[list[str], list[str], list[int]]:
  """(class names, image paths in class then name order, their labels)."""
  classes = sorted(d for d in os.listdir(base) if os.path.isdir(fileio.join(base, d)))
  paths, labels = [], []
  for label, name in enumerate(classes):
    for file_name in sorted(os.listdir(fileio.join(base, name))):
      if file_name.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(fileio.join(base, name, file_name))
        labels.append(label)
  if not paths:
    raise DataError(f"imagefolder {base!r} has no images in class subdirectories "
                    f"(expected {base}/<class>/*.jpg)")
  return classes, paths, labels


def _drop_corrupt(base: str, paths: list[str], labels: list[int],
                  skip_corrupt: bool) -> tuple[list[str], list[int], int]:
  """(paths, labels) without unusable images, and how many were dropped."""
  full_decode = len(paths) <= FULL_DECODE_CHECK_LIMIT
  bad = [(p, why) for p in paths if (why := _image_problem(p, full_decode))]
  if not bad:
    return paths, labels, 0
  if not skip_corrupt:
    raise DataError(f"imagefolder {base!r}: {len(bad)} corrupt image(s), first {bad[0][0]} "
                    f"({bad[0][1]}); pass skip_corrupt=True to skip them")
  log.warning("imagefolder %s: skipping %d corrupt image(s), first %s (%s)", base, len(bad),
              bad[0][0], bad[0][1])
  bad_paths = {p for p, _ in bad}
  kept = [(p, l) for p, l in zip(paths, labels) if p not in bad_paths]
  return [p for p, _ in kept], [l for _, l in kept], len(bad)


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
