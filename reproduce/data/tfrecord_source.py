"""``tfrecord:/path/glob*`` and ``arrayrecord:/path/glob*``: TFRecord or ArrayRecord files of
``tf.train.Example`` with an encoded ``image`` and int64 ``label``(s), as a ``DataSource``.
Files are read in sorted name order; record ``i`` of the concatenation is read by index.
ArrayRecord is what TFDS writes by default and what ``tfds convert_format`` makes of TFRecord
datasets; files must be written with ``group_size:1`` (TFDS does) for fast random reads.

``num_classes`` and multi-label come from TFDS metadata next to the files when they are a
prepared TFDS dataset, else from one pass over all labels. Record counts per file come from
that metadata's shard lengths or a ``record_counts.json`` sidecar, else from reading each
file's record headers (TFRecord) or footer (ArrayRecord) at load
(``record_index.file_record_counts``). A file's record offsets (TFRecord) or chunk offsets
(ArrayRecord) are read when it is first read from.
"""

from __future__ import annotations

import os
from typing import Callable

from reproduce.core import fileio
from reproduce.data.datasource import (DataError, DataSource, default_heldout, python_reader,
                                       split_heldout)
from reproduce.data.record_index import (GLOB_KINDS, OPENERS, RecordFiles, example_fetch,
                                         file_record_counts, parse_example)
from reproduce.data.tfds_source import (label_info_from_metadata, read_order,
                                        shard_lengths_from_metadata)


def load_record_glob(spec: str, prefix: str, pattern: str, heldout_size: int | None,
                     order_name: str, window: int) -> DataSource:
  """``prefix:pattern`` (``prefix`` a key of ``GLOB_KINDS``) as a ``DataSource``."""
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"{prefix} glob {pattern!r} matches no files")
  return example_files_source(spec, GLOB_KINDS[prefix], paths, heldout_size, order_name,
                              window)


def example_files_source(spec: str, kind: str, paths: list[str], heldout_size: int | None,
                         order_name: str, window: int) -> DataSource:
  """A ``DataSource`` over the serialized Examples in ``paths`` (``kind``: "TFRecord" or
  "ArrayRecord"); the held-out set is the last records."""
  directory = os.path.dirname(paths[0])
  counts = file_record_counts(paths, kind, shard_lengths_from_metadata(directory))
  records = RecordFiles(list(zip(paths, [0] * len(paths), counts)), OPENERS[kind],
                        max_open=None)
  if not len(records):
    raise DataError(f"{spec}: {len(paths)} {kind} files but no records")
  num_classes, multi_label = example_label_info(paths, len(records), records.__getitem__)
  default = default_heldout(len(records), multi_label, "")
  train_ids, heldout_ids = split_heldout(spec, len(records), heldout_size, default)
  shard_order = read_order(records, order_name, len(train_ids), window)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids,
      read=python_reader(example_fetch(records, None, None, num_classes), num_classes),
      shard_order=shard_order,
      description=f"{len(paths)} {kind} files, {len(records)} records")


def example_label_info(paths: list[str], num_records: int,
                       serialized: Callable[[int], bytes]) -> tuple[int, bool]:
  """(num_classes, multi_label) of files of ``tf.train.Example``s: from the TFDS metadata next
  to them, else from one pass over all ``num_records`` labels (O(N): small data only)."""
  num_classes, multi_label = label_info_from_metadata(os.path.dirname(paths[0]))
  if num_classes is None:
    label_lists = [parse_example(serialized(i))[1] for i in range(num_records)]
    num_classes = 1 + max(max(labels, default=0) for labels in label_lists)
    multi_label = any(len(labels) != 1 for labels in label_lists)
  return num_classes, multi_label
