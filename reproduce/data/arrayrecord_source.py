"""``arrayrecord:/path/glob*``: ArrayRecord files of ``tf.train.Example``s (what TFDS writes
by default, and what ``tfds convert_format`` makes of TFRecord datasets), as a ``DataSource``.
Files are read in sorted name order; record ``i`` of the concatenation is read by index.

Opening reads each file's footer only (its record count), never the records, so start-up
time and memory do not grow with the number of records. The files must be written with
``group_size:1`` (TFDS does) for fast random reads.
"""

from __future__ import annotations

from reproduce.core import fileio
from reproduce.data.datasource import (DataError, DataSource, default_heldout, multi_hot,
                                       python_reader, split_heldout)
from reproduce.data.record_index import parse_example
from reproduce.data.tfrecord_source import example_label_info


def load_arrayrecord_glob(spec: str, pattern: str, heldout_size: int | None) -> DataSource:
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  paths = fileio.glob(pattern)
  if not paths:
    raise DataError(f"arrayrecord glob {pattern!r} matches no files")
  try:
    records = array_record_data_source.ArrayRecordDataSource(paths)
  except (OSError, ValueError, RuntimeError) as e:
    raise DataError(f"arrayrecord glob {pattern!r}: unreadable ArrayRecord files "
                    f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
  if not len(records):
    raise DataError(f"arrayrecord glob {pattern!r}: {len(paths)} files but no records")
  num_classes, multi_label = example_label_info(paths, len(records), records.__getitem__)
  default = default_heldout(len(records), multi_label, "")
  train_ids, heldout_ids = split_heldout(spec, len(records), heldout_size, default)

  def fetch(record_id: int):
    image, labels = parse_example(records[record_id])
    return image, multi_hot(labels, num_classes)

  return DataSource(
      name=spec, num_classes=num_classes, train_size=len(train_ids),
      heldout_size=len(heldout_ids), multi_label=multi_label, train_records=train_ids,
      heldout_records=heldout_ids, read=python_reader(fetch, num_classes),
      description=f"{len(paths)} ArrayRecord files, {len(records)} records")
