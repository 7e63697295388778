"""``arrayrecord:/path/glob*``: ArrayRecord files of ``tf.train.Example``s (what TFDS writes by
default, and what ``tfds convert_format`` makes of TFRecord datasets), as a ``DataSource``.
Files are read in sorted name order; record ``i`` of the concatenation is read by index.

Opening reads no record: record counts come from TFDS metadata next to the files or a
``record_counts.json`` sidecar, else from each file's footer. A file's chunk offsets (8 bytes
per record) are loaded when it is first read. Files must be written with ``group_size:1``
(TFDS does) for fast random reads.
"""

from __future__ import annotations

from reproduce.core import fileio
from reproduce.data.datasource import DataError, DataSource
from reproduce.data.tfrecord_source import example_files_source


def load_arrayrecord_glob(spec: str, pattern: str, heldout_size: int | None, order_name: str,
                          window: int) -> DataSource:
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"arrayrecord glob {pattern!r} matches no files")
  return example_files_source(spec, "ArrayRecord", paths, heldout_size, order_name, window)
