"""``imagefolder:/root``: ``root/train/<class>/*`` (or ``root/<class>/*``) image files as a
``DataSource`` (local disks only). Classes are the sorted directory names.

Unusable files are found at load time: empty files, non-image files (hidden files such as
``.DS_Store`` are ignored), truncated JPEG/PNG files (every file's signature and end marker),
and, for folders of up to ``FULL_DECODE_CHECK_LIMIT`` images, files that fail to decode. They
are skipped with ONE warning that counts them and names the first ``MAX_NAMED``, or refused
with a one-line ``DataError`` (``skip_corrupt=False``: ``config.strict_data``). A dataset with
no images, or a class directory left without any, is a one-line ``DataError`` at once.
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
MAX_NAMED = 10  # unusable files named in the one warning (or error) line

log = logging.getLogger(__name__)


def load_imagefolder(spec: str, root: str, heldout_size: int | None, seed: int,
                     skip_corrupt: bool) -> DataSource:
  root = fileio.expand(root)
  if not os.path.isdir(root):
    raise DataError(f"imagefolder root {root!r} does not exist or is not a directory")
  # tfds ImageFolder layout root/train/<class>/ or a plain root/<class>/.
  base = fileio.join(root, "train") if os.path.isdir(fileio.join(root, "train")) else root
  classes, paths, labels, other = _list_images(base)
  paths, labels, skipped = _drop_unusable(base, classes, paths, labels, other, skip_corrupt)
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
      heldout_records=heldout_ids, read=read, skipped_corrupt=skipped, class_names=tuple(classes),
      description=f"{len(paths)} images in {len(classes)} classes under {base}")


def _list_images(base: str) -> tuple[list[str], list[str], list[int], list[tuple[str, str]]]:
  """(class names, image paths in class then name order, their labels, (path, why) of the
  other files in class directories). Hidden files (``.DS_Store``) are ignored."""
  classes = sorted(d for d in os.listdir(base) if os.path.isdir(fileio.join(base, d)))
  if not classes:
    raise DataError(f"imagefolder {base!r} has no class subdirectories "
                    f"(expected {base}/<class>/*.jpg)")
  paths, labels, other = [], [], []
  for label, name in enumerate(classes):
    for file_name in sorted(os.listdir(fileio.join(base, name))):
      path = fileio.join(base, name, file_name)
      if file_name.startswith(".") or os.path.isdir(path):
        continue
      if file_name.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(path)
        labels.append(label)
      else:
        other.append((path, "not an image file"))
  if not paths:
    raise DataError(f"imagefolder {base!r} has no images in class subdirectories "
                    f"(expected {base}/<class>/*.jpg)")
  return classes, paths, labels, other


def _named(bad: list[tuple[str, str]], base: str, shown: int = MAX_NAMED) -> str:
  """``cat/a.jpg (empty file), dog/b.txt (not an image file), ... (+N more)``."""
  names = [f"{os.path.relpath(path, base)} ({why})" for path, why in bad[:shown]]
  more = f" (+{len(bad) - shown} more)" if len(bad) > shown else ""
  return ", ".join(names) + more


def _drop_unusable(base: str, classes: list[str], paths: list[str], labels: list[int],
                   other: list[tuple[str, str]], skip_corrupt: bool):
  """(paths, labels) without unusable files, and how many files were dropped.

  Empty, truncated, undecodable and non-image files are skipped with ONE warning naming
  them, or refused (``skip_corrupt=False``); a class left without images is an error.
  """
  full_decode = len(paths) <= FULL_DECODE_CHECK_LIMIT
  bad = sorted(other + [(p, why) for p in paths if (why := _image_problem(p, full_decode))])
  if bad and not skip_corrupt:
    raise DataError(f"imagefolder {base!r}: {len(bad)} unusable file(s): {_named(bad, base)}; "
                    "remove them, or let them be skipped (config.strict_data=False)")
  if bad:
    log.warning("imagefolder %s: skipping %d unusable file(s): %s", base, len(bad),
                _named(bad, base))
  bad_paths = {p for p, _ in bad}
  kept = [(p, l) for p, l in zip(paths, labels) if p not in bad_paths]
  empty = sorted(set(range(len(classes))) - {l for _, l in kept})
  if empty:
    raise DataError(f"imagefolder {base!r}: class director{'ies' if len(empty) > 1 else 'y'} "
                    f"{', '.join(classes[i] for i in empty)} ha{'ve' if len(empty) > 1 else 's'}"
                    " no usable images")
  return [p for p, _ in kept], [l for _, l in kept], len(bad)


def _image_problem(path: str, full_decode: bool) -> str | None:
  """Why an image file is unusable, or None."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return f"unreadable ({e.strerror})"
  if not data:
    return "empty file"
  if data[:2] == b"\xff\xd8":
    if b"\xff\xd9" not in data[-16:]:
      return "truncated JPEG"
  elif data[:8] == b"\x89PNG\r\n\x1a\n":
    if b"IEND" not in data[-12:]:
      return "truncated PNG"
  elif not (data[:2] == b"BM" or data[:3] == b"GIF"):
    return "not a JPEG/PNG/BMP/GIF"
  if full_decode:
    try:
      tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
      return f"cannot be decoded: {str(e).splitlines()[0][:80]}"
  return None
