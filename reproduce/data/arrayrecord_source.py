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
from reproduce.data.datasource import DataError, DataSource
from reproduce.data.record_index import open_array_records
from reproduce.data.tfrecord_source import example_files_source


def load_arrayrecord_glob(spec: str, pattern: str, heldout_size: int | None) -> DataSource:
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"arrayrecord glob {pattern!r} matches no files")
  records = open_array_records(paths, f"arrayrecord glob {pattern!r}")
  return example_files_source(spec, "ArrayRecord", paths, records, heldout_size)
