"""``tfrecord:/path/glob*``: TFRecords of ``tf.train.Example`` with an encoded ``image`` and
int64 ``label``(s), as a ``DataSource``. Files are read in sorted name order.

``num_classes`` and multi-label come from TFDS metadata next to the files when they are a
prepared TFDS dataset, else from one pass over all labels. Opening reads every record header
(``record_index``): for data at JFT scale convert to ArrayRecord (``arrayrecord_source``).
"""

from __future__ import annotations

import os
from typing import Callable

from reproduce.core import fileio
from reproduce.data.datasource import (DataError, DataSource, default_heldout, python_reader,
                                       split_heldout)
from reproduce.data.record_index import TFRecordIndex, example_fetch, parse_example
from reproduce.data.tfds_source import label_info_from_metadata


def load_tfrecord_glob(spec: str, pattern: str, heldout_size: int | None) -> DataSource:
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"tfrecord glob {pattern!r} matches no files")
  return example_files_source(spec, "TFRecord", paths, TFRecordIndex(paths), heldout_size)


def example_files_source(spec: str, kind: str, paths: list[str], records,
                         heldout_size: int | None) -> DataSource:
  """A ``DataSource`` over random-access ``records`` (``len``, ``[record_id] -> bytes``) of
  serialized Examples read from ``paths``; the held-out set is the last records."""
  if not len(records):
    raise DataError(f"{spec}: {len(paths)} {kind} files but no records")
  num_classes, multi_label = example_label_info(paths, len(records), records.__getitem__)
  default = default_heldout(len(records), multi_label, "")
  train_ids, heldout_ids = split_heldout(spec, len(records), heldout_size, default)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids,
      read=python_reader(example_fetch(records, None, None, num_classes), num_classes),
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
