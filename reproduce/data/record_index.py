"""Random access to files of ``tf.train.Example``s by one record id (file after file):
``RecordFiles`` over ArrayRecord or TFRecord files, and ``tf.train.Example`` parsing.

A file is opened when a record of it is first read, and at most ``max_open`` files are kept
open (the least recently read is dropped first), so memory is O(open files x file size), not
O(all records). Opening an ArrayRecord file loads its chunk offsets (8 bytes per record of
that file); opening a TFRecord file reads that file's 12-byte record headers and keeps
(offset, length) per record (16 bytes). A TFRecord record is then one ``os.pread`` on local
files (thread-safe, so parallel ``tf.data`` maps share one descriptor) or one seek on remote
``tf.io.gfile`` paths. Binary reads at offsets are not whole-file I/O, so they bypass
``reproduce.core.fileio``.

Record counts per file (``file_record_counts``) come from a ``record_counts.json`` sidecar
next to the files (``write_record_counts``, once per dataset), else from opening every file.
"""

from __future__ import annotations

import bisect
import collections
import os
import struct
import threading
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from reproduce.core import fileio
from reproduce.data.datasource import DataError, multi_hot

IMAGE_KEYS = ("image", "image/encoded")
LABEL_KEYS = ("label", "labels", "image/class/label")
RECORD_COUNTS_FILE = "record_counts.json"  # {file name: records}, next to the files
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


class RecordFiles:
  """Records of files read by one id: ``files`` are (path, first record, record count), ids
  run file after file. ``open_file(path) -> read(position) -> bytes``; at most ``max_open``
  files are kept open (None: all). ``opened`` counts file opens (for tests and logs)."""

  def __init__(self, files: Sequence[tuple[str, int, int]],
               open_file: Callable[[str], Callable[[int], bytes]], max_open: int | None):
    self.paths = [os.fspath(path) for path, _, _ in files]
    self.skips = [int(skip) for _, skip, _ in files]
    self.file_sizes = tuple(int(count) for _, _, count in files)
    self.starts = [0, *np.cumsum(self.file_sizes, dtype=np.int64).tolist()]
    self._open_file, self.max_open = open_file, max_open
    self._readers: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()
    self._opening: dict[int, threading.Lock] = {}  # per file: O(files) locks
    self.opened = 0

  def __len__(self) -> int:
    return self.starts[-1]

  def _reader(self, file_id: int) -> Callable[[int], bytes]:
    with self._lock:
      if file_id in self._readers:
        self._readers.move_to_end(file_id)
        return self._readers[file_id]
      opening = self._opening.setdefault(file_id, threading.Lock())
    with opening:  # one thread opens a file; reads of other files go on meanwhile
      with self._lock:
        if file_id in self._readers:
          return self._readers[file_id]
      reader = self._open_file(self.paths[file_id])
      with self._lock:
        self.opened += 1
        self._readers[file_id] = reader
        while self.max_open is not None and len(self._readers) > self.max_open:
          # Dropped, not closed: a thread still reading it holds a reference until done.
          self._readers.popitem(last=False)
    return reader

  def record(self, record_id: int) -> bytes:
    if not 0 <= record_id < len(self):
      raise IndexError(f"record {record_id} outside 0..{len(self) - 1}")
    file_id = bisect.bisect_right(self.starts, record_id) - 1
    position = self.skips[file_id] + record_id - self.starts[file_id]
    return self._reader(file_id)(position)

  __getitem__ = record

  def records(self, record_ids) -> list[bytes]:
    """Many records at once, read in one batch per file where its reader can (ArrayRecord:
    60k records in 0.4 s instead of 17 s one by one); in the order of ``record_ids``."""
    ids = np.asarray(record_ids, np.int64)
    if ids.size and not (0 <= ids.min() and ids.max() < len(self)):
      raise IndexError(f"records outside 0..{len(self) - 1}")
    file_ids = np.searchsorted(self.starts, ids, side="right") - 1
    found: list = [None] * len(ids)
    for file_id in np.unique(file_ids).tolist():
      where = np.nonzero(file_ids == file_id)[0]
      positions = (self.skips[file_id] + ids[where] - self.starts[file_id]).tolist()
      reader = self._reader(file_id)
      many = getattr(reader, "many", None)
      for index, record in zip(where, many(positions) if many else map(reader, positions)):
        found[index] = record
    return found


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


def _with_array_record(path: str, use: Callable, **options):
  """``use(reader)`` of an ``ArrayRecordReader`` of ``path``; its errors as one DataError."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  try:
    return use(array_record_module.ArrayRecordReader(path, **options))
  except (OSError, ValueError, RuntimeError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DataError(f"{path}: unreadable ArrayRecord file ({message})") from None


def open_array_record(path: str) -> Callable[[int], bytes]:
  """``read(position)`` of one ArrayRecord file (its chunk offsets loaded now)."""
  # array_record's data-source defaults. "index_storage_option:offloaded" would keep the
  # offsets on disk but made random reads about 25x slower (array_record 0.8.6; docs/data.md).
  reader = _with_array_record(path, lambda reader: reader, options="readahead_buffer_size:0",
                              file_reader_buffer_size=32768)

  def read(position: int) -> bytes:
    return reader.read([position])[0]

  read.many = reader.read  # a list of positions in one call (``RecordFiles.records``)
  return read


def _tfrecord_headers(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(data offset, data length) of every record of one TFRecord file, from its headers
  (checked: ``_record_extents``)."""
  extents = _record_extents(path)
  offsets = np.asarray([offset for offset, _ in extents], np.int64)
  lengths = np.asarray([length for _, length in extents], np.int64)
  return offsets, lengths


class _TFRecordFile:
  """``read(position)`` of one TFRecord file through its header index."""

  def __init__(self, path: str):
    self.path = path
    self.offsets, self.lengths = _tfrecord_headers(path)
    self._descriptor = None if fileio.is_remote(path) else os.open(path, os.O_RDONLY)

  def __call__(self, position: int) -> bytes:
    offset, length = int(self.offsets[position]), int(self.lengths[position])
    if self._descriptor is not None:
      return os.pread(self._descriptor, length, offset)
    with tf.io.gfile.GFile(self.path, "rb") as f:
      f.seek(offset)
      return f.read(length)

  def __del__(self):
    if getattr(self, "_descriptor", None) is not None:
      os.close(self._descriptor)


OPENERS = {"ArrayRecord": open_array_record, "TFRecord": _TFRecordFile}
GLOB_KINDS = {"tfrecord": "TFRecord", "arrayrecord": "ArrayRecord"}  # spec prefix: file kind


def count_records(path: str, kind: str) -> int:
  """Records in one file, by opening it (ArrayRecord: its footer; TFRecord: its headers)."""
  if kind == "TFRecord":
    return len(_tfrecord_headers(path)[0])

  def count_and_close(reader) -> int:
    count = reader.num_records()
    reader.close()
    return count

  return _with_array_record(path, count_and_close)


def file_record_counts(paths: Sequence[str], kind: str,
                       known: dict[str, int] | None = None) -> list[int]:
  """Records per file: from ``known`` ({file name: count}, e.g. TFDS shard lengths) or the
  ``record_counts.json`` sidecar next to the files where they name every file, else by
  opening each file (``count_records``)."""
  names = [os.path.basename(path) for path in paths]
  sidecar = fileio.join(os.path.dirname(paths[0]), RECORD_COUNTS_FILE)
  for counts in (known or {}, fileio.read_json(sidecar) if fileio.exists(sidecar) else {}):
    if all(name in counts for name in names):
      return [int(counts[name]) for name in names]
  return [count_records(path, kind) for path in paths]


def write_record_counts(spec: str) -> str:
  """Writes the ``record_counts.json`` sidecar of the files of ``tfrecord:GLOB`` or
  ``arrayrecord:GLOB`` (counted by opening each file, once), so that later loads open no file
  to count records. Returns its path."""
  prefix, _, pattern = spec.partition(":")
  if prefix not in GLOB_KINDS or not pattern:
    raise DataError(f"write_record_counts({spec!r}): use tfrecord:GLOB or arrayrecord:GLOB")
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"{prefix} glob {pattern!r} matches no files")
  sidecar = fileio.join(os.path.dirname(paths[0]), RECORD_COUNTS_FILE)
  counts = fileio.read_json(sidecar) if fileio.exists(sidecar) else {}
  counts.update({os.path.basename(p): count_records(p, GLOB_KINDS[prefix]) for p in paths})
  fileio.write_json(sidecar, counts)
  return sidecar


def example_fetch(records, image_key: str | None, label_key: str | None, num_classes: int):
  """``fetch(record_id) -> (encoded image, multi-hot target)`` of serialized Examples."""

  def fetch(record_id: int):
    image, labels = parse_example(records[record_id], image_key, label_key)
    return image, multi_hot(labels, num_classes)

  def many(record_ids) -> list:
    parsed = (parse_example(r, image_key, label_key) for r in records.records(record_ids))
    return [(image, multi_hot(labels, num_classes)) for image, labels in parsed]

  fetch.many = many  # what ``memory_reader`` reads every record with
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
