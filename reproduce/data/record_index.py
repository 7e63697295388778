"""Random access to files of ``tf.train.Example``s: ArrayRecord files through their own index
(``open_array_records``), TFRecord files through an offset index (``TFRecordIndex``).

The TFRecord index reads only the 12-byte record headers (but all of them, at load) and keeps
(file, offset, length) per record (20 bytes each); a record is then one ``os.pread`` on local
files (thread-safe, so parallel ``tf.data`` maps share one descriptor per thread) or one seek on
remote ``tf.io.gfile`` paths. Binary reads at offsets are not whole-file I/O, so they bypass
``reproduce.core.fileio``.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Sequence

import numpy as np
import tensorflow as tf

from reproduce.core import fileio
from reproduce.data.datasource import DataError, multi_hot

IMAGE_KEYS = ("image", "image/encoded")
LABEL_KEYS = ("label", "labels", "image/class/label")
_HEADER_BYTES = 12  # uint64 length + uint32 masked crc
_FOOTER_BYTES = 4   # uint32 masked crc of the data


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C of ``data`` (pure Python: meant for 8-byte headers)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordIndex:
  """(file, offset, length) of every record in ``paths``, read from the record headers.

  Each header's CRC and each record's extent are checked at load time, so a corrupt or
  truncated file is a one-line ``DataError`` naming it (record bodies are not read then).
  """

  def __init__(self, paths: list[str]):
    self.paths = list(paths)
    file_ids, offsets, lengths = [], [], []
    for file_id, path in enumerate(self.paths):
      for offset, length in _record_extents(path):
        file_ids.append(file_id)
        offsets.append(offset)
        lengths.append(length)
    self.file_ids = np.asarray(file_ids, np.int32)
    self.offsets = np.asarray(offsets, np.int64)
    self.lengths = np.asarray(lengths, np.int64)
    self._local = threading.local()

  def __len__(self) -> int:
    return len(self.offsets)

  def record(self, record_id: int) -> bytes:
    path = self.paths[self.file_ids[record_id]]
    offset, length = int(self.offsets[record_id]), int(self.lengths[record_id])
    if not fileio.is_remote(path):
      descriptors = self._local.__dict__.setdefault("fds", {})
      if path not in descriptors:
        descriptors[path] = os.open(path, os.O_RDONLY)
      return os.pread(descriptors[path], length, offset)
    with tf.io.gfile.GFile(path, "rb") as f:
      f.seek(offset)
      return f.read(length)

  __getitem__ = record


def _record_extents(path: str) -> list[tuple[int, int]]:
  """(data offset, length) of every record of one TFRecord file; ``DataError`` if corrupt."""
  extents, position = [], 0
  try:
    size = tf.io.gfile.stat(path).length
    with tf.io.gfile.GFile(path, "rb") as f:
      while position < size:
        header = f.read(_HEADER_BYTES)
        (length,) = struct.unpack("<Q", header[:8]) if len(header) == _HEADER_BYTES else (-1,)
        end = position + _HEADER_BYTES + length + _FOOTER_BYTES
        if length < 0 or struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
          raise DataError(f"TFRecord file {path} is corrupt: no valid record header at byte "
                          f"{position} (record {len(extents)})")
        if end > size:
          raise DataError(f"TFRecord file {path} is truncated: record {len(extents)} at byte "
                          f"{position} ends at byte {end}, past the file's {size} bytes")
        extents.append((position + _HEADER_BYTES, length))
        position = end
        f.seek(position)
  except tf.errors.OpError as e:
    raise DataError(f"cannot read TFRecord file {path}: {e.message.splitlines()[0]}") from None
  return extents


def open_array_records(files: Sequence, what: str):
  """An ``ArrayRecordDataSource`` (``len``, ``[record_id] -> bytes``) over ``files``: paths,
  or TFDS ``FileInstruction``s (which need no file opened to count records)."""
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  try:
    # Default reader options: a file's chunk offsets (8 bytes per record) are loaded when
    # it is first read. "index_storage_option:offloaded" would keep them on disk, but made
    # random reads about 25x slower (array_record 0.8.6; docs/data.md).
    return array_record_data_source.ArrayRecordDataSource(list(files))
  except (OSError, ValueError, RuntimeError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DataError(f"{what}: unreadable ArrayRecord files ({message})") from None


def example_fetch(records, image_key: str | None, label_key: str | None, num_classes: int):
  """``fetch(record_id) -> (encoded image, multi-hot target)`` of serialized Examples."""

  def fetch(record_id: int):
    image, labels = parse_example(records[record_id], image_key, label_key)
    return image, multi_hot(labels, num_classes)

  return fetch


def parse_example(serialized: bytes, image_key: str | None = None,
                  label_key: str | None = None) -> tuple[bytes, list[int]]:
  """(encoded image, labels) of a serialized Example; keys default to the first present."""
  feature = tf.train.Example.FromString(serialized).features.feature
  image_key = image_key if image_key and image_key in feature else next(
      (k for k in IMAGE_KEYS if k in feature), None)
  label_key = label_key if label_key and label_key in feature else next(
      (k for k in LABEL_KEYS if k in feature), None)
  if image_key is None or label_key is None:
    raise DataError(f"TFRecord example lacks an image {IMAGE_KEYS} or label {LABEL_KEYS} "
                    f"feature; it has {sorted(feature.keys())}")
  return feature[image_key].bytes_list.value[0], list(feature[label_key].int64_list.value)
