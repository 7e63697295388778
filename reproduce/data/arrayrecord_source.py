"""``arrayrecord:/path/glob*``: ArrayRecord files of ``tf.train.Example``s (what TFDS writes by
default, and what ``tfds convert_format`` makes of TFRecord datasets), as a ``DataSource``.
Files are read in sorted name order; record ``i`` of the concatenation is read by index.

Opening reads each file's footer only (its record count; TFDS datasets not even that: their
metadata has the shard lengths), never the records. A file's chunk offsets (8 bytes per
record) are loaded when it is first read. Files must be written with ``group_size:1`` (TFDS
does) for random reads.
"""

from __future__ import annotations

from reproduce.core import fileio
from reproduce.data.datasource import (DataError, DataSource, default_heldout, python_reader,
                                       split_heldout)
from reproduce.data.record_index import example_fetch, open_array_records
from reproduce.data.tfrecord_source import example_label_info

def load_arrayrecord_glob(spec: str, pattern: str, heldout_size: int | None) -> DataSource:
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"arrayrecord glob {pattern!r} matches no files")
  records = open_array_records(paths, f"arrayrecord glob {pattern!r}")
  if not len(records):
    raise DataError(f"arrayrecord glob {pattern!r}: {len(paths)} files but no records")
  num_classes, multi_label = example_label_info(paths, len(records), records.__getitem__)
  default = default_heldout(len(records), multi_label, "")
  train_ids, heldout_ids = split_heldout(spec, len(records), heldout_size, default)
  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids,
      read=python_reader(example_fetch(records, None, None, num_classes), num_classes),
      description=f"{len(paths)} ArrayRecord files, {len(records)} records")
