"""The data path at scale: the epoch order as a stateless index permutation (nothing N-sized),
exact resume, each input pipeline reading only its share of every global batch, and
``arrayrecord:GLOB`` sources read by index; the per-shard order for large data (each host
its own shards, a window of them open, the documented rule, exact resume on every host, no
file opened at load).

Record ``i`` of the test files has label ``i`` (one class per record), so a batch's targets
name the records it holds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from reproduce import data
from reproduce.data import order, record_index, tfrecord_source

NUM_RECORDS, HELDOUT = 24, 4
TRAIN = NUM_RECORDS - HELDOUT


def _example(label: int, value: int) -> bytes:
  png = tf.io.encode_png(np.full((2, 2, 3), value, np.uint8)).numpy()
  return tf.train.Example(features=tf.train.Features(feature={
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
      "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
  })).SerializeToString()


@pytest.fixture(scope="module")
def arrayrecord_glob(tmp_path_factory):
  """24 records in 3 ArrayRecord files; record i: label i, a constant image of value 10*i."""
  from array_record.python import array_record_module
  directory = tmp_path_factory.mktemp("arrayrecord")
  for shard, records in enumerate(np.array_split(np.arange(NUM_RECORDS), 3)):
    writer = array_record_module.ArrayRecordWriter(
        str(directory / f"data.array_record-{shard:05d}-of-00003"), "group_size:1")
    for i in records:
      writer.write(_example(int(i), 10 * int(i)))
    writer.close()
  return f"arrayrecord:{directory}/data.array_record-*"


@pytest.fixture(scope="module")
def source(arrayrecord_glob):
  return data.load_source(arrayrecord_glob, heldout_size=HELDOUT)


def _batches(dataset, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
  return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def _record_ids(batches) -> np.ndarray:
  return np.concatenate([np.argmax(y, -1) for _, y in batches])


def _reference_order(seed: int, epoch: int) -> np.ndarray:
  """The documented rule, written out: index_shuffle of 0..N-1 keyed by fold_in([seed, 1], e)."""
  epoch_seed = tf.random.experimental.stateless_fold_in(tf.constant([seed, 1], tf.int64), epoch)
  return tf.random.experimental.index_shuffle(
      tf.range(TRAIN, dtype=tf.int64), epoch_seed, tf.constant(TRAIN - 1, tf.int64)).numpy()


def test_arrayrecord_source_reads_records_by_index(source):
  assert (source.num_classes, source.train_size, source.heldout_size) == (NUM_RECORDS, TRAIN,
                                                                         HELDOUT)
  assert source.train_records == range(TRAIN)  # contiguous ids: no N-sized array
  assert source.heldout_records == range(TRAIN, NUM_RECORDS)
  for record in (0, 9, 23):
    encoded, target = source.read(tf.constant(record, tf.int64))
    assert tf.io.decode_png(encoded).numpy().max() == 10 * record
    assert np.argmax(target.numpy()) == record
  _, targets, mask = next(iter(data.heldout_dataset(source, global_batch_size=8, resolution=4)))
  assert np.argmax(targets.numpy(), -1)[mask.numpy() > 0].tolist() == list(range(TRAIN,
                                                                                  NUM_RECORDS))


def test_stream_follows_the_index_shuffle_rule_across_restarts(source):
  """Three epochs (batch 7 straddles every epoch end), read whole and resumed at two steps:
  the same stream, each epoch exactly the documented permutation, each example once."""
  kwargs = dict(global_batch_size=7, resolution=4, seed=9)
  whole = _record_ids(_batches(data.train_dataset(source, **kwargs), 9))
  restarted = np.concatenate([
      _record_ids(_batches(data.train_dataset(source, **kwargs), 2)),
      _record_ids(_batches(data.train_dataset(source, start_step=2, **kwargs), 3)),
      _record_ids(_batches(data.train_dataset(source, start_step=5, **kwargs), 4))])
  np.testing.assert_array_equal(restarted, whole)
  for epoch in range(3):
    seen = whole[epoch * TRAIN:(epoch + 1) * TRAIN]
    assert sorted(seen.tolist()) == list(range(TRAIN))
    np.testing.assert_array_equal(seen, _reference_order(9, epoch))
    np.testing.assert_array_equal(seen, data.example_order(source, seed=9, epoch=epoch))
  assert not np.array_equal(_reference_order(9, 0), _reference_order(9, 1))


@pytest.mark.parametrize("pipelines, replicas, start_step",
                         [(2, 2, 0), (2, 4, 3), (4, 4, 0), (4, 8, 5)])
def test_pipelines_union_is_the_single_host_global_batch(source, pipelines, replicas,
                                                         start_step):
  """Each host (input pipeline) reads only its contiguous slice of every global batch; the
  hosts' per-replica batches, in pipeline then replica order, are those of one host feeding
  the same replicas (MixUp on: mixing is per replica batch), also after a resume at
  ``start_step``; without mixing, their union is the no-context global batch."""
  global_batch, steps = 8, 4
  kwargs = dict(global_batch_size=global_batch, resolution=4, seed=2, start_step=start_step)

  def per_replica_batches(pipeline_count, pipeline, **extra):
    context = tf.distribute.InputContext(num_input_pipelines=pipeline_count,
                                         input_pipeline_id=pipeline,
                                         num_replicas_in_sync=replicas)
    local = replicas // pipeline_count
    batches = _batches(data.train_dataset(source, input_context=context, **kwargs, **extra),
                       steps * local)
    assert all(x.shape[0] == global_batch // replicas for x, _ in batches)
    return [batches[s * local:(s + 1) * local] for s in range(steps)]

  for extra in ({"augment": {"mixup_alpha": 0.2}}, {}):
    one_host = per_replica_batches(1, 0, **extra)
    hosts = [per_replica_batches(pipelines, p, **extra) for p in range(pipelines)]
    for step in range(steps):
      parts = [part for host in hosts for part in host[step]]
      for (x, y), (x1, y1) in zip(parts, one_host[step], strict=True):
        np.testing.assert_array_equal(x, x1)
        np.testing.assert_array_equal(y, y1)
  no_context = _batches(data.train_dataset(source, **kwargs), steps)
  for step in range(steps):
    parts = [part for host in hosts for part in host[step]]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), no_context[step][0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), no_context[step][1])


def test_a_four_billion_example_source_builds_without_n_sized_state():
  """train_size 4e9: the pipeline's graph stays small (no order or record-id constant) and
  its first batches come at once, each a distinct set of in-range examples."""
  size = 4_000_000_000
  png = tf.io.encode_png(np.zeros((2, 2, 3), np.uint8))

  def read(record_id):
    return png, tf.one_hot(record_id % 10, 10)

  huge = data.DataSource(name="huge", num_classes=10, train_size=size, heldout_size=130_000,
                         multi_label=False, train_records=range(size),
                         heldout_records=range(size, size + 130_000), read=read)
  dataset = data.train_dataset(huge, global_batch_size=16, resolution=4, seed=0,
                               start_step=size // 16 - 1)  # the last batch of epoch 0
  assert len(dataset._as_serialized_graph().numpy()) < 1_000_000  # pylint: disable=protected-access
  assert next(iter(dataset))[0].shape == (16, 4, 4, 3)
  last = order.example_index(tf.range(size - 64, size, dtype=tf.int64), size, 0, 0).numpy()
  first = order.example_index(tf.range(64, dtype=tf.int64), size, 0, 1).numpy()
  for indices in (last, first):
    assert indices.min() >= 0 and indices.max() < size and len(set(indices.tolist())) == 64


def test_arrayrecord_glob_errors(tmp_path):
  with pytest.raises(data.DataError, match="matches no files"):
    data.load_source(f"arrayrecord:{tmp_path}/none-*")
  (tmp_path / "bad.array_record").write_bytes(b"not an array record file")
  with pytest.raises(data.DataError, match="unreadable ArrayRecord") as error:
    data.load_source(f"arrayrecord:{tmp_path}/bad.array_record")
  assert "\n" not in str(error.value)


# --- the shard order --------------------------------------------------------------------

SHARD_SIZES = (5, 7, 6, 8, 4, 6)  # 36 records; the last 4 held out: train shards end 5+7+6+8+4+2
SHARD_TRAIN = sum(SHARD_SIZES) - HELDOUT
TRAIN_SHARDS = (5, 7, 6, 8, 4, 2)


@pytest.fixture(scope="module")
def shard_globs(tmp_path_factory):
  """The same 36 records (record i: label i) as 6 ArrayRecord and 6 TFRecord files of
  ``SHARD_SIZES``, each set with its ``record_counts.json`` sidecar."""
  from array_record.python import array_record_module
  directory = tmp_path_factory.mktemp("shards")
  starts = np.cumsum(SHARD_SIZES) - SHARD_SIZES
  for shard, (start, size) in enumerate(zip(starts, SHARD_SIZES)):
    name = f"{shard:05d}-of-{len(SHARD_SIZES):05d}"
    writer = array_record_module.ArrayRecordWriter(str(directory / f"data.array_record-{name}"),
                                                   "group_size:1")
    with tf.io.TFRecordWriter(str(directory / f"data.tfrecord-{name}")) as tf_writer:
      for i in range(start, start + size):
        writer.write(_example(int(i), int(i)))
        tf_writer.write(_example(int(i), int(i)))
    writer.close()
  globs = {kind: f"{kind}:{directory}/data.{ext}-*"
           for kind, ext in (("arrayrecord", "array_record"), ("tfrecord", "tfrecord"))}
  for spec in globs.values():
    data.write_record_counts(spec)
  return globs


@pytest.fixture
def opened_files(monkeypatch):
  """Names of the record files opened (for reading or counting) from now on; labels come
  from metadata, as for a TFDS-prepared dataset, so a load needs no record."""
  opened = []

  def recording(open_file):
    def open_and_record(path):
      opened.append(os.path.basename(path))
      return open_file(path)
    return open_and_record

  for kind, open_file in list(record_index.OPENERS.items()):
    monkeypatch.setitem(record_index.OPENERS, kind, recording(open_file))
  monkeypatch.setattr(record_index, "count_records",
                      lambda path, kind: opened.append(os.path.basename(path)))
  monkeypatch.setattr(tfrecord_source, "label_info_from_metadata",
                      lambda directory: (sum(SHARD_SIZES), False))
  return opened


def _reference_shard_epoch(seed: int, pipelines: int, host: int, epoch: int,
                           window: int) -> np.ndarray:
  """The documented rule, written out: host ``host`` owns shards host, host+P, ...; epoch e
  permutes them by index_shuffle keyed by fold_in(fold_in([seed, 5], host), e), cuts the
  permuted list into windows of ``window`` shards, and visits window w's records (concatenated
  in slot order) in the index_shuffle permutation keyed by fold_in(fold_in(fold_in([seed, 1],
  host), e), w)."""
  def key(tag, *data_):
    key_ = tf.constant([seed, tag], tf.int64)
    for value in data_:
      key_ = tf.random.experimental.stateless_fold_in(key_, tf.constant(value, tf.int64))
    return key_

  def shuffle(count, key_):
    return tf.random.experimental.index_shuffle(
        tf.range(count, dtype=tf.int64), key_, tf.constant(count - 1, tf.int64)).numpy()

  starts = np.cumsum(TRAIN_SHARDS) - TRAIN_SHARDS
  mine = list(range(host, len(TRAIN_SHARDS), pipelines))
  slots = [mine[j] for j in shuffle(len(mine), key(5, host, epoch))]
  order_ = []
  for w, begin in enumerate(range(0, len(slots), window)):
    records = np.concatenate([starts[s] + np.arange(TRAIN_SHARDS[s])
                              for s in slots[begin:begin + window]])
    order_.append(records[shuffle(len(records), key(1, host, epoch, w))])
  return np.concatenate(order_)


def _host_stream(source, pipelines: int, host: int, steps: int, start_step: int = 0):
  """Record ids host ``host`` of ``pipelines`` (one replica each, 2 examples per step) reads."""
  context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=host,
                                       num_replicas_in_sync=pipelines)
  return _record_ids(_batches(data.train_dataset(
      source, global_batch_size=2 * pipelines, resolution=4, seed=4, start_step=start_step,
      input_context=context), steps))


@pytest.mark.parametrize("pipelines, window", [(1, 2), (2, 2), (3, 8)])
def test_shard_order_follows_its_rule_and_resumes_exactly_on_every_host(
    shard_globs, pipelines, window):
  """Each host reads the documented per-shard order of its own shards, epoch after epoch
  (batches straddle its epoch ends), and a resume at any step gives the same stream; over
  one epoch of every host, the hosts together read each train record once."""
  source = data.load_source(shard_globs["arrayrecord"], heldout_size=HELDOUT, order="shards",
                            shard_window=window)
  assert (source.shard_order.sizes, source.shard_order.window) == (TRAIN_SHARDS, window)
  epoch_sets = []
  for host in range(pipelines):
    expected = np.concatenate([_reference_shard_epoch(4, pipelines, host, e, window)
                               for e in range(2)])
    steps = len(expected) // 2
    whole = _host_stream(source, pipelines, host, steps)
    np.testing.assert_array_equal(whole, expected[:2 * steps])
    first_epoch = data.example_order(source, seed=4, epoch=0, pipelines=pipelines,
                                     pipeline_id=host)
    at_epoch_end = len(first_epoch) // 2  # the step that holds (or follows) its epoch end
    resumed = np.concatenate([
        _host_stream(source, pipelines, host, 3),
        _host_stream(source, pipelines, host, at_epoch_end - 3, start_step=3),
        _host_stream(source, pipelines, host, steps - at_epoch_end, start_step=at_epoch_end)])
    np.testing.assert_array_equal(resumed, whole)
    np.testing.assert_array_equal(first_epoch, expected[:len(first_epoch)])
    epoch_sets.append(first_epoch)
  assert sorted(np.concatenate(epoch_sets).tolist()) == list(range(SHARD_TRAIN))


@pytest.mark.parametrize("kind", ["arrayrecord", "tfrecord"])
def test_loading_opens_no_file_and_a_host_opens_only_its_shards(shard_globs, opened_files,
                                                                kind):
  """With the record counts in the sidecar, a load opens no file (no record, header or chunk
  offset read) and keeps O(files) state; host 1 of 2 then opens only its shards 1, 3, 5 (the
  last holds the held-out records), each once, and reads the same order in either format."""
  source = data.load_source(shard_globs[kind], heldout_size=HELDOUT, order="shards",
                            shard_window=2)  # up to 4 files open: host 1's 3 stay open
  assert opened_files == [] and source.train_records == range(SHARD_TRAIN)
  assert len(source.shard_order.sizes) == len(SHARD_SIZES)
  host_epoch = _reference_shard_epoch(4, 2, 1, 0, window=2)
  np.testing.assert_array_equal(_host_stream(source, 2, 1, 8), host_epoch[:16])
  shards_read = sorted(set(name[-14:-9] for name in opened_files))
  assert shards_read == ["00001", "00003", "00005"] and len(opened_files) == 3


def test_record_files_keep_at_most_max_open_files_open():
  """Files open on first read; beyond ``max_open`` the least recently read is dropped."""
  opened = []

  def open_file(path):
    opened.append(path)
    return lambda position: f"{path}:{position}".encode()

  records = record_index.RecordFiles([("a", 0, 3), ("b", 2, 2), ("c", 0, 4)], open_file,
                                     max_open=2)
  assert (len(records), records.file_sizes, opened) == (9, (3, 2, 4), [])
  assert [records[i] for i in (0, 3, 4, 5, 2)] == [b"a:0", b"b:2", b"b:3", b"c:0", b"a:2"]
  assert opened == ["a", "b", "c", "a"] and records.opened == 4  # "a" was dropped for "c"
  assert records[8] == b"c:3" and opened[-1] == "a"  # "c" still open
  with pytest.raises(IndexError):
    records.record(9)


def test_a_tfds_dataset_is_counted_from_its_metadata(tmp_path, opened_files):
  """A TFDS dataset's record counts are its metadata's shard lengths: no file opened."""
  source = data.load_source("digits", data_dir=str(tmp_path), order="shards")
  assert opened_files == [] and source.shard_order.sizes == (source.train_size,)


def test_order_rule_and_errors(shard_globs, tmp_path):
  """"auto" keeps small data in the global order and picks shards above SHARD_ORDER_FROM."""
  sizes = (3, 3, 4)
  assert order.choose_order("auto", sizes, data.SHARD_ORDER_FROM) is None
  assert order.choose_order("global", sizes, 10**12) is None
  assert order.choose_order("shards", sizes, 7, window=2).sizes == (3, 3, 1)
  assert order.choose_order("auto", (10**9, 10**9), data.SHARD_ORDER_FROM + 1).sizes == (
      data.SHARD_ORDER_FROM + 1,)
  assert data.load_source(shard_globs["arrayrecord"], heldout_size=HELDOUT).shard_order is None
  with pytest.raises(data.DataError, match="order='bogus'"):
    data.load_source(shard_globs["arrayrecord"], heldout_size=HELDOUT, order="bogus")
  with pytest.raises(data.DataError, match="shard_window=0"):
    order.choose_order("shards", sizes, 7, window=0)
  source = data.load_source(shard_globs["tfrecord"], heldout_size=HELDOUT, order="shards")
  with pytest.raises(data.DataError, match="6 shards for 8 input pipelines"):
    order.HostShards(source.shard_order, 0, 8, 0)
  os.makedirs(tmp_path / "c0")
  with pytest.raises(data.DataError, match="global order"):
    data.load_source(f"imagefolder:{tmp_path}", order="shards")
  with pytest.raises(data.DataError, match="tfrecord:GLOB or arrayrecord:GLOB"):
    data.write_record_counts(str(tmp_path))
