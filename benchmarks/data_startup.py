"""Start-up time and memory per host of the train pipeline versus the number of records,
under the global order and the per-shard order.

Writes synthetic datasets of tiny ``tf.train.Example``s (a 1x1 PNG and a label, about 90 bytes
each) as ArrayRecord and TFRecord shards of ``--records_per_shard`` records (so larger data
have more shards, as real datasets do) in a temporary directory, with the TFDS metadata of
``digits`` next to them (so no label scan) and the ``record_counts.json`` sidecar
(``data.write_record_counts``, the one-time command; timed). Then, for each size, format and
order, in a fresh process: ``load_source`` + ``train_dataset`` + ``--batches`` batches, timing
it and reading the resident memory after them (``/proc/self/statm``) and the peak
(``VmHWM`` in ``/proc/self/status``). ``--formats=old_order`` times the rule before the stateless index
permutation (a materialised ``stateless_shuffle`` of all N indices per epoch). Prints a table;
it is a script, not a test:

  PYTHONPATH=$PWD python benchmarks/data_startup.py --sizes=1000000,4000000
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from reproduce.core import cli

_SIZES = flags.DEFINE_list("sizes", ["1000000", "4000000"], "records per dataset")
_RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 62_500, "records per file")
_FORMATS = flags.DEFINE_list("formats", ["arrayrecord", "tfrecord"],
                             "arrayrecord, tfrecord, old_order (N-sized shuffle alone)")
_ORDERS = flags.DEFINE_list("orders", ["global", "shards"], "load_source orders to measure")
_WINDOW = flags.DEFINE_integer("shard_window", 8, "shards a host reads at a time (shards)")
_GROUP_SIZE = flags.DEFINE_integer("group_size", 1, "ArrayRecord group_size of the written files")
_BATCH = flags.DEFINE_integer("batch", 256, "global batch size")
_BATCHES = flags.DEFINE_integer("batches", 4, "batches read after start-up")
_CHILD = flags.DEFINE_string("child", None, "internal: measure one FORMAT:ORDER:DIR:N")


def _peak_rss_mb() -> float:
  """This process's peak resident memory (VmHWM: reset at exec, unlike ``ru_maxrss``, which a
  child started by ``subprocess`` inherits from the benchmark's own, larger, process)."""
  with open("/proc/self/status") as f:
    line = next(line for line in f if line.startswith("VmHWM:"))
  return int(line.split()[1]) / 1024  # KiB


def _rss_mb() -> float:
  """Resident memory now (the peak is set by TensorFlow's import on small data)."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(kind: str, order: str, directory: str, num_records: int) -> dict:
  """In this (fresh) process: import, then build the pipeline and read the batches."""
  start = time.perf_counter()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from reproduce import data  # pylint: disable=g-import-not-at-top
  imported, rss_imported = time.perf_counter(), _rss_mb()
  if kind == "old_order":  # the previous rule: stateless_shuffle(range(N)) per epoch
    tf.random.experimental.stateless_shuffle(
        tf.range(num_records, dtype=tf.int64), tf.constant([0, 1], tf.int64), alg="philox")
  else:
    extension = {"arrayrecord": "array_record", "tfrecord": "tfrecord"}[kind]
    source = data.load_source(f"{kind}:{directory}/data.{extension}-*", heldout_size=1000,
                              order=order, shard_window=_WINDOW.value)
    assert (source.shard_order is None) == (order == "global")
    dataset = data.train_dataset(source, global_batch_size=_BATCH.value, resolution=8, seed=0,
                                 augment={"crop": False, "flip": False})
    for images, _ in dataset.take(_BATCHES.value):
      assert images.shape[0] == _BATCH.value
  return {"seconds": time.perf_counter() - imported, "import_seconds": imported - start,
          "rss_after_import_mb": rss_imported, "rss_mb": _rss_mb(),
          "peak_rss_mb": _peak_rss_mb()}


def _write_dataset(directory: str, num_records: int, metadata_dir: str) -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  os.makedirs(directory)
  png = tf.io.encode_png(np.full((1, 1, 3), 128, np.uint8)).numpy()
  examples = [tf.train.Example(features=tf.train.Features(feature={
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
      "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
              .SerializeToString() for label in range(10)]
  shards = -(-num_records // _RECORDS_PER_SHARD.value)
  bounds = np.linspace(0, num_records, shards + 1).astype(int)
  for shard in range(shards):
    name = f"{shard:05d}-of-{shards:05d}"
    records = [examples[i % 10] for i in range(bounds[shard], bounds[shard + 1])]
    if "arrayrecord" in _FORMATS.value:
      writer = array_record_module.ArrayRecordWriter(
          f"{directory}/data.array_record-{name}", f"group_size:{_GROUP_SIZE.value}")
      for record in records:
        writer.write(record)
      writer.close()
    if "tfrecord" in _FORMATS.value:
      with tf.io.TFRecordWriter(f"{directory}/data.tfrecord-{name}") as tf_writer:
        for record in records:
          tf_writer.write(record)
  for name in ("dataset_info.json", "features.json"):  # digits' metadata: 10 classes
    shutil.copy(os.path.join(metadata_dir, name), directory)


def _digits_metadata(root: str) -> str:
  from reproduce import data  # pylint: disable=g-import-not-at-top
  data.load_source("digits", data_dir=os.path.join(root, "tfds"))
  info = [p for p in _walk(os.path.join(root, "tfds")) if p.endswith("dataset_info.json")]
  return os.path.dirname(info[0])


def _walk(root: str):
  for directory, _, files in os.walk(root):
    yield from (os.path.join(directory, f) for f in files)


def _write_record_counts(directory: str) -> float:
  """The one-time sidecar command for each format written; returns its seconds."""
  from reproduce import data  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  for kind, extension in (("arrayrecord", "array_record"), ("tfrecord", "tfrecord")):
    if kind in _FORMATS.value:
      data.write_record_counts(f"{kind}:{directory}/data.{extension}-*")
  return time.perf_counter() - start


def _run_child(kind: str, order: str, directory: str, num_records: int) -> dict:
  argv = [sys.executable, __file__, f"--child={kind}:{order}:{directory}:{num_records}",
          f"--batch={_BATCH.value}", f"--batches={_BATCHES.value}",
          f"--shard_window={_WINDOW.value}"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  output = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
  return json.loads(output.strip().splitlines()[-1])


def main(argv):
  cli.refuse_stray_arguments(argv)
  if _CHILD.value:
    kind, order, directory, num_records = _CHILD.value.split(":")
    print(json.dumps(_measure(kind, order, directory, int(num_records))))
    return
  sizes = [int(s) for s in _SIZES.value]
  with tempfile.TemporaryDirectory() as root:
    metadata_dir = _digits_metadata(root)
    print(f"{'records':>10} {'shards':>6} {'format':>12} {'order':>7} {'generate s':>10} "
          f"{'counts s':>8} {'start-up s':>10} {'RSS import MB':>13} {'RSS read MB':>11} "
          f"{'added MB':>8} {'peak RSS MB':>11}", flush=True)
    for size in sizes:
      directory = os.path.join(root, f"n{size}")
      start = time.perf_counter()
      _write_dataset(directory, size, metadata_dir)
      generated = time.perf_counter() - start
      counted = _write_record_counts(directory)
      shards = -(-size // _RECORDS_PER_SHARD.value)
      runs = [(kind, order) for kind in _FORMATS.value
              for order in (["-"] if kind == "old_order" else _ORDERS.value)]
      for kind, order in runs:
        figures = _run_child(kind, order, directory, size)
        added = figures["rss_mb"] - figures["rss_after_import_mb"]
        print(f"{size:>10} {shards:>6} {kind:>12} {order:>7} {generated:>10.1f} "
              f"{counted:>8.1f} {figures['seconds']:>10.2f} "
              f"{figures['rss_after_import_mb']:>13.0f} {figures['rss_mb']:>11.0f} "
              f"{added:>8.0f} {figures['peak_rss_mb']:>11.0f}", flush=True)
      shutil.rmtree(directory)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
