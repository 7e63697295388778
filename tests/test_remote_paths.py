"""Remote paths (``gs://`` on Cloud TPU) without a network: TensorFlow's in-memory ``ram://``
file system stands in for GCS. It goes through the same ``tf.io.gfile`` layer, so every path
the kit handles as remote (``fileio.is_remote``) is exercised: file I/O, the training loop's
checkpoints, results.json and TensorBoard events, the fits read from and written to it, and
TFRecord data read from it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

import engine_helpers as h
from reproduce import data
from reproduce.analysis import fits as fits_lib, outputs, runs
from reproduce.core import fileio
from reproduce.core import results as results_schema
from reproduce.train import loop

STEPS = (4, 8, 16, 32)
_ROOTS = itertools.count()


@pytest.fixture
def ram_root():
  """A fresh ``ram://`` directory per test (the RAM file system is process-wide)."""
  return f"ram://kit-tests/{next(_ROOTS)}"


def _ram_files(root: str) -> list[str]:
  return sorted(f"{directory}/{name}" for directory, _, names in tf.io.gfile.walk(root)
                for name in names)


def test_fileio_round_trips_on_ram(ram_root):
  path = fileio.join(ram_root, "deep/dir/record.json")
  assert fileio.is_remote(path) and not fileio.exists(path)
  fileio.write_json(path, {"b": 1, "a": [1.5, float("nan")]})
  assert fileio.read_json(path) == {"a": [1.5, None], "b": 1}
  fileio.write_text(path, '{"b": 2}\n')  # overwrite through the rename
  assert fileio.read_json(path) == {"b": 2}
  assert not [f for f in _ram_files(ram_root) if ".tmp-" in f]  # the temporary was renamed
  fileio.write_text(fileio.join(ram_root, "deep/dir/other.json"), "{}")
  assert fileio.glob(fileio.join(ram_root, "deep/dir/*.json")) == [
      fileio.join(ram_root, "deep/dir/other.json"), path]
  assert fileio.glob(fileio.join(ram_root, "nothing/*")) == []
  assert fileio.isdir(fileio.join(ram_root, "deep")) and fileio.exists(path)
  fileio.remove(path)
  assert not fileio.exists(path)


@pytest.fixture(scope="module")
def ram_runs(tiny):
  """Four runs of the tiny model at growing compute, with their model_dirs on ram://."""
  root = "ram://kit-tests/runs"
  data = h.fake_data()
  records = []
  for steps in STEPS:
    plan = h.tiny_plan(steps=steps)
    plan.core_hours = 1e-4 * steps
    config = h.tiny_config(checkpoint_every_steps=2, eval_every_steps=steps, log_every_steps=2)
    records.append(loop.train(config, plan, f"{root}/{tiny}__{steps}steps", h.one_device(),
                              data_module=data, verbose=False))
  return root, records


def _scalar_tags(model_dir: str) -> set[str]:
  tags = set()
  for path in fileio.glob(fileio.join(model_dir, "tensorboard", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


def test_training_writes_checkpoints_results_and_events_to_ram(ram_runs, tiny):
  root, records = ram_runs
  model_dir = f"{root}/{tiny}__4steps"
  on_disk = fileio.read_json(fileio.join(model_dir, results_schema.FILE))
  assert on_disk["steps"] == 4 and results_schema.problems(on_disk, "measured_core_hours") == []
  assert on_disk["heldout_loss"] == pytest.approx(records[0]["heldout_loss"])
  latest = tf.train.latest_checkpoint(fileio.join(model_dir, "checkpoints"))
  assert latest is not None and latest.startswith("ram://") and latest.endswith("ckpt-4")
  assert {"train/loss", "heldout/loss"} <= _scalar_tags(model_dir)


def test_training_resumes_from_a_ram_checkpoint(tiny, ram_root):
  """Stopped at step 4 of 8 and resumed from ram:// equals an uninterrupted 8-step run."""
  config = h.tiny_config(checkpoint_every_steps=2)
  data = h.fake_data()
  whole = f"{ram_root}/whole"
  loop.train(config, h.tiny_plan(steps=8), whole, h.one_device(), data_module=data,
             verbose=False)
  split = f"{ram_root}/split"
  with pytest.raises(_Stop):
    loop.train(config, h.tiny_plan(steps=8), split, h.one_device(), data_module=data,
               verbose=False, hooks=[_stop_at(4)])
  assert tf.train.latest_checkpoint(f"{split}/checkpoints").endswith("ckpt-4")
  loop.train(config, h.tiny_plan(steps=8), split, h.one_device(), data_module=data,
             verbose=False)
  expected, resumed = _checkpoint_tensors(whole), _checkpoint_tensors(split)
  assert expected.keys() == resumed.keys()
  for key, value in expected.items():
    assert (resumed[key] == value).all(), key


class _Stop(Exception):
  pass


def _stop_at(step: int):
  def hook(at_step, logs):
    del logs
    if at_step >= step:
      raise _Stop()
  return hook


def _checkpoint_tensors(model_dir: str) -> dict:
  # The directory, not the prefix: on ram:// a prefix of existing files counts as a directory,
  # so load_checkpoint(".../ckpt-8") would look for checkpoints inside it.
  reader = tf.train.load_checkpoint(f"{model_dir}/checkpoints")
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if "OBJECT_GRAPH" not in k and "save_counter" not in k and "elapsed" not in k}


def test_fits_read_ram_runs_and_write_ram_files(ram_runs, ram_root):
  root, records = ram_runs
  points = runs.load_points(f"{root}/*", compute="planned")
  assert len(points) == len(STEPS) and all(p.run.startswith("ram://") for p in points)
  assert sorted(p.heldout_loss for p in points) == pytest.approx(
      sorted(r["heldout_loss"] for r in records))
  fits = fits_lib.fit_all(points, bootstrap=20, seed=0)
  written = outputs.write_fit_files(f"{ram_root}/fits", points, fits)
  assert all(fileio.exists(path) and path.startswith("ram://") for path in written)
  assert outputs.load_fits(written[0])["schema"] == results_schema.FITS_SCHEMA
  assert fileio.read_text(written[1]).splitlines()[0].startswith("name,")


def test_tfrecord_data_read_from_ram(ram_root):
  """TFRecord data on a remote file system: globbed, indexed and read through tf.io.gfile.
  (ArrayRecord files are read by array_record's own file layer, not tf.io.gfile.)"""
  png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
  for shard in range(2):
    with tf.io.TFRecordWriter(f"{ram_root}/data/train.tfrecord-{shard}") as writer:
      for label in range(5):
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        })).SerializeToString())
  source = data.load_source(f"tfrecord:{ram_root}/data/train.tfrecord-*", heldout_size=2)
  assert (source.num_classes, source.train_size, source.heldout_size) == (5, 8, 2)
  _, targets = next(iter(data.train_dataset(source, global_batch_size=8, resolution=4, seed=0)))
  assert sorted(np.argmax(targets.numpy(), -1).tolist()) == [0, 0, 1, 1, 2, 2, 3, 4]
