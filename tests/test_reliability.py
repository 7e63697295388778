"""The reliability suite: a run survives kill -9 (also in the middle of a checkpoint save), a full
disk, a NaN loss and a second process on its model_dir, and ends equal to an uninterrupted run;
bad ImageFolder/TFRecord data and unusable model_dirs give one-line errors.

Each fault is injected from outside the engine: by tests/reliability_driver.py (a hook passed
to loop.train, RLIMIT_FSIZE, a patched save in the driver's own process) or by the test.
BENCHMARKS.md ("Reliability suite") lists what is injected and what each test checks.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types

import numpy as np
import pytest
import tensorflow as tf

import engine_helpers
import reliability_driver as driver
from engine_helpers import REPO_ROOT, checkpoint_tensors, fake_data, one_device

ATTEMPT_TIMEOUT = 240


def _attempt(model_dir, preexec_fn=None, **faults):
  """Starts one attempt of the driver in a fresh process; returns its Popen."""
  flags = [f"--{name}={value}" for name, value in faults.items()]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "tests",
                                                        "reliability_driver.py"),
                           str(model_dir), *flags], cwd=REPO_ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)


def _finish(process):
  stdout, stderr = process.communicate(timeout=ATTEMPT_TIMEOUT)
  done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
  done.pid = process.pid
  return done


def _run(model_dir, **faults):
  return _finish(_attempt(model_dir, **faults))


def _line(proc, tag: str) -> str:
  lines = [l for l in proc.stdout.splitlines() if l.startswith(tag + " ")]
  assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
  return lines[-1][len(tag) + 1:]


def _latest_step(model_dir) -> int:
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  return int(latest.rsplit("-", 1)[1]) if latest else 0


def _assert_latest_loads(model_dir) -> None:
  """The latest checkpoint reads whole, with finite weights."""
  for key, value in checkpoint_tensors(model_dir).items():
    if np.issubdtype(value.dtype, np.floating):
      assert np.all(np.isfinite(value)), key


def _assert_killed_holding_the_lock(proc, model_dir) -> None:
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  holder = json.load(open(os.path.join(model_dir, "lock")))
  assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The run with no fault, trained in this process: its metrics, tensors and model_dir."""
  engine_helpers.register_engine_tiny_model()
  from reproduce.train import loop
  model_dir = str(tmp_path_factory.mktemp("uninterrupted"))
  res = loop.train(driver.config(), driver.plan(), model_dir, one_device(),
                   data_module=fake_data(), verbose=False)
  return types.SimpleNamespace(
      metrics=[res["heldout_loss"], res["heldout_top1"], res["final_train_loss"]],
      tensors=checkpoint_tensors(model_dir), model_dir=model_dir)


def test_a_run_survives_every_fault_in_turn_and_ends_equal_to_an_uninterrupted_one(
    tmp_path, uninterrupted):
  """One run directory, six attempts: kill -9 at two random steps, kill -9 inside a checkpoint
  save, a full disk, a NaN loss, and a second process while the last attempt trains."""
  model_dir = str(tmp_path / "run")
  rng = random.Random(14)  # the number: the same "random" steps on every machine
  first_kill, second_kill = rng.choice([2, 3, 4]), rng.choice([8, 9])

  # 1. kill -9 at a random step: the lock stays behind, naming the dead pid.
  proc = _run(model_dir, kill_at=first_kill)
  _assert_killed_holding_the_lock(proc, model_dir)
  assert _latest_step(model_dir) == first_kill // 3 * 3

  # 2. kill -9 in the middle of the save at step 6: ckpt-6's files are on disk, torn, and are
  # never read: the latest stays the previous checkpoint. The stale lock was taken over.
  proc = _run(model_dir, kill_in_save=6)
  _assert_killed_holding_the_lock(proc, model_dir)
  assert "warning: taking over the lock" in proc.stdout and "no longer runs" in proc.stdout
  assert os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-6.index"))
  assert _latest_step(model_dir) == 3
  _assert_latest_loads(model_dir)

  # 3. The disk fills after step 6: the next write (TensorBoard's, at step 8) fails with one
  # line naming it; ckpt-6 (written whole over the torn one) stays the latest and loads.
  proc = _run(model_dir, disk_full_after=6)
  assert proc.returncode == 3, proc.stderr[-3000:]
  error = _line(proc, "ERROR")
  assert error == (f"cannot use model_dir {model_dir}: cannot write {model_dir}/tensorboard: "
                   "File too large")
  assert _latest_step(model_dir) == 6
  _assert_latest_loads(model_dir)

  # 4. NaN batches from step 7 on: the chunk of steps 7-8 stops the run, naming step 8 and the
  # last good checkpoint (6), before anything is saved.
  proc = _run(model_dir, nan_from=6)
  assert proc.returncode == 3, proc.stderr[-3000:]
  error = _line(proc, "ERROR")
  assert "at step 8" in error and "ckpt-6" in error
  assert _latest_step(model_dir) == 6
  _assert_latest_loads(model_dir)

  # 5. kill -9 at another random step.
  proc = _run(model_dir, kill_at=second_kill)
  _assert_killed_holding_the_lock(proc, model_dir)
  assert _latest_step(model_dir) == second_kill // 3 * 3

  # 6. The last attempt; while it trains, a second process on the same model_dir is refused
  # with one line naming the holder, and leaves the run alone.
  ready, go = str(tmp_path / "ready"), str(tmp_path / "go")
  last = _attempt(model_dir, hold_at=10, ready=ready, go=go)
  deadline = time.time() + ATTEMPT_TIMEOUT
  while not os.path.exists(ready) and last.poll() is None and time.time() < deadline:
    time.sleep(0.1)
  assert os.path.exists(ready), last.communicate()[1][-3000:]
  from reproduce.train import lock, loop
  with pytest.raises(lock.ModelDirLocked) as info:
    loop.train(driver.config(), driver.plan(), model_dir, one_device(),
               data_module=fake_data(), verbose=False)
  message = str(info.value)
  assert "\n" not in message and f"pid {last.pid} on host {socket.gethostname()}" in message
  open(go, "w").close()
  proc = _finish(last)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not os.path.exists(os.path.join(model_dir, "lock"))

  # Nothing was lost: the same metrics and bit-equal weights, optimizer and RNG states.
  clean_tensors = uninterrupted.tensors
  assert json.loads(_line(proc, "RESULT")) == uninterrupted.metrics
  tensors = checkpoint_tensors(model_dir)
  assert tensors.keys() == clean_tensors.keys()
  assert any("rng" in key for key in tensors)
  for key in tensors:
    np.testing.assert_array_equal(tensors[key], clean_tensors[key], err_msg=key)
  record = json.load(open(os.path.join(model_dir, "results.json")))
  assert record["steps"] == driver.TOTAL_STEPS and record["overhead_seconds"]["startup"] > 0


# ----------------------------------------------------------------------------------------
# Full disk and read-only model_dir: one line naming the file, the previous checkpoint intact.


@contextlib.contextmanager
def _disk_full():
  """Inside the block no file of this process may grow (RLIMIT_FSIZE 0, SIGXFSZ ignored)."""
  limits = resource.getrlimit(resource.RLIMIT_FSIZE)
  handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (0, limits[1]))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    signal.signal(signal.SIGXFSZ, handler)


def test_saves_on_a_full_disk_are_one_line_and_keep_the_previous_checkpoint(tmp_path):
  import keras
  from reproduce.core import results as schema
  from reproduce.train import checkpoints, clock, rundir
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.build(model.trainable_variables)
  directory, run_clock = str(tmp_path / "checkpoints"), clock.RunClock()
  saver = checkpoints.RunCheckpoints(directory, model, optimizer, keep=2)
  first = saver.save(1, run_clock)
  before = {name: open(os.path.join(directory, name), "rb").read()
            for name in os.listdir(directory)}
  with _disk_full():
    with pytest.raises(rundir.EngineError) as info:
      saver.save(2, run_clock)
    with pytest.raises(rundir.EngineError) as results_info:
      rundir.RunDirectory(str(tmp_path)).write_record(dict.fromkeys(schema.RECORD_FIELDS))
  assert str(info.value) == (f"cannot write checkpoint {directory}/ckpt-2: File too large; the "
                             f"latest checkpoint is still {first}")
  assert str(results_info.value) == (f"cannot use model_dir {tmp_path}: cannot write "
                                     f"{tmp_path}/results.json: File too large")
  after = {name: open(os.path.join(directory, name), "rb").read()
           for name in os.listdir(directory)}
  assert after == before  # no partial ckpt-2 files, the state file still names ckpt-1
  assert not [n for n in os.listdir(tmp_path) if n.startswith("results.json")]
  assert tf.train.latest_checkpoint(directory) == first and saver.restore() == first


def _obey_file_permissions() -> None:
  """``preexec_fn``: drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so
  a child of root (as in CI) obeys file permissions like any user; nothing for other users."""
  libc = ctypes.CDLL(None, use_errno=True)
  for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


def _child_writes_into_read_only_directories() -> bool:
  with tempfile.TemporaryDirectory() as directory:
    os.chmod(directory, 0o555)
    try:
      return subprocess.run(["touch", os.path.join(directory, "probe")], capture_output=True,
                            preexec_fn=_obey_file_permissions).returncode == 0
    finally:
      os.chmod(directory, 0o755)


@pytest.mark.skipif(_child_writes_into_read_only_directories(),
                    reason="a child process here writes into read-only directories")
def test_a_read_only_model_dir_is_one_line_and_left_intact(uninterrupted):
  model_dir = uninterrupted.model_dir
  files = sorted(os.path.join(d, n) for d, _, names in os.walk(model_dir) for n in names)
  before = {path: open(path, "rb").read() for path in files}
  for path in [model_dir] + [d for d, _, _ in os.walk(model_dir)]:
    os.chmod(path, 0o555)
  try:
    proc = _finish(_attempt(model_dir, preexec_fn=_obey_file_permissions))
  finally:
    for path in [d for d, _, _ in os.walk(model_dir)]:
      os.chmod(path, 0o755)
  assert proc.returncode == 3, proc.stderr[-3000:]
  assert _line(proc, "ERROR") == (f"cannot use model_dir {model_dir}: cannot write "
                                  f"{model_dir}/lock: Permission denied")
  assert {path: open(path, "rb").read() for path in files} == before


def _foreign_lock(model_dir, heartbeat_age: float, host: str = "other-host") -> dict:
  """A lock record of pid 1 on ``host`` written into ``model_dir`` (local or ram://)."""
  from reproduce.core import fileio
  holder = {"host": host, "pid": 1, "started": time.time() - heartbeat_age - 60,
            "heartbeat": time.time() - heartbeat_age, "token": "someone-else"}
  fileio.write_json(fileio.join(str(model_dir), "lock"), holder)
  return holder


@pytest.mark.parametrize("fault", ["held by another process", "disk full"])
def test_the_pretrain_main_exits_2_with_one_line_at_once(tmp_path, fault):
  model_dir = tmp_path / "run"
  os.makedirs(model_dir)
  limit = None
  if fault == "held by another process":
    _foreign_lock(model_dir, heartbeat_age=5)
  else:
    def limit():  # no file may grow past 100 bytes (Python's start-up still needs a few)
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))
  proc = subprocess.run([sys.executable, "-m", "reproduce.pretrain",
                         "--config=reproduce/configs/pretrain_mini.py", f"--model_dir={model_dir}"],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=ATTEMPT_TIMEOUT,
                        preexec_fn=limit, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0"))
  lines = proc.stderr.splitlines()
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
  if fault == "disk full":
    assert lines[0] == (f"error: cannot use model_dir {model_dir}: cannot write "
                        f"{model_dir}/lock: File too large")
  else:
    assert lines[0].startswith(f"error: model_dir {model_dir} is being trained by pid 1 on "
                               "host other-host (since ")
  assert os.listdir(model_dir) == (["lock"] if fault != "disk full" else [])


# ----------------------------------------------------------------------------------------
# The lock (reproduce/train/lock.py): stale locks recovered, live ones refused, gs:// too.


def test_a_lock_with_an_old_heartbeat_is_taken_over_and_a_fresh_one_refused(tmp_path):
  from reproduce.train import lock
  warnings = []
  _foreign_lock(tmp_path, heartbeat_age=lock.STALE_SECONDS + 100)
  with lock.RunLock(str(tmp_path), warn=warnings.append) as held:
    assert json.load(open(tmp_path / "lock"))["token"] == held.record["token"]
  assert len(warnings) == 1 and "heartbeat is 280 s old" in warnings[0]
  assert not os.path.exists(tmp_path / "lock")
  _foreign_lock(tmp_path, heartbeat_age=lock.STALE_SECONDS - 100)
  with pytest.raises(lock.ModelDirLocked, match="pid 1 on host other-host"):
    lock.RunLock(str(tmp_path)).acquire()


def test_unreadable_own_pid_and_remote_locks(tmp_path, monkeypatch):
  from reproduce.core import fileio
  from reproduce.train import lock
  (tmp_path / "lock").write_text("{torn")
  warnings = []
  with lock.RunLock(str(tmp_path), warn=warnings.append):
    with lock.RunLock(str(tmp_path), warn=warnings.append) as inner:  # nested: this process
      assert not inner.held
    assert os.path.exists(tmp_path / "lock")
  assert warnings == [f"warning: taking over the lock of {tmp_path}: the lock file is "
                      "unreadable"]
  # A lock naming this pid that this process did not take: a restarted container's.
  fileio.write_json(str(tmp_path / "lock"), dict(_foreign_lock(tmp_path, 0),
                                                 host=socket.gethostname(), pid=os.getpid()))
  assert "left by an earlier process" in lock.stale_reason(json.load(open(tmp_path / "lock")))
  # gs:// goes through tf.io.gfile (ram:// here): refused while held, taken once stale.
  remote = "ram://reliability/run"
  _foreign_lock(remote, heartbeat_age=1)
  with pytest.raises(lock.ModelDirLocked, match="other-host"):
    lock.RunLock(remote).acquire()
  _foreign_lock(remote, heartbeat_age=lock.STALE_SECONDS + 1)
  with lock.RunLock(remote, warn=warnings.append) as held:
    assert fileio.read_json(f"{remote}/lock")["token"] == held.record["token"]
  assert not fileio.exists(f"{remote}/lock")
  # The other workers of a multi-host TPU slice share worker 0's lock.
  monkeypatch.setattr(socket, "gethostname", lambda: "t1v-n-1234abcd-w-3")
  with lock.RunLock(str(tmp_path / "worker3")) as held:
    assert not held.held and not os.path.exists(tmp_path / "worker3" / "lock")


def test_the_heartbeat_refreshes_the_lock_and_notices_losing_it(tmp_path):
  from reproduce.train import lock
  warnings = []
  with lock.RunLock(str(tmp_path), heartbeat_seconds=0.01, warn=warnings.append) as held:
    first = json.load(open(tmp_path / "lock"))["heartbeat"]
    deadline = time.time() + 60
    while json.load(open(tmp_path / "lock"))["heartbeat"] == first and time.time() < deadline:
      time.sleep(0.01)
    assert json.load(open(tmp_path / "lock"))["heartbeat"] > first
    # A refresh already past its check may write once more over the foreign record: write it
    # again until the heartbeat has noticed and stopped.
    deadline = time.time() + 60
    while held._thread.is_alive() and time.time() < deadline:  # pylint: disable=protected-access
      _foreign_lock(tmp_path, heartbeat_age=0)
      held._thread.join(timeout=0.5)  # pylint: disable=protected-access
  assert warnings == [f"warning: lost the lock of {tmp_path} to pid 1 on host other-host "
                      f"{warnings[0].split('other-host ', 1)[1]}"]
  assert json.load(open(tmp_path / "lock"))["token"] == "someone-else"  # theirs: left alone


# ----------------------------------------------------------------------------------------
# Bad data: unusable ImageFolder files skipped with one warning (or refused), empty datasets
# and classes refused at once, a corrupt TFRecord file named.


def _damage_imagefolder(root) -> list[str]:
  """Adds five unusable files to an ImageFolder of PNGs; returns their names in the warning."""
  good = open(os.path.join(root, "a", "0.png"), "rb").read()
  damage = {"a/empty.png": b"", "a/truncated.png": good[:len(good) // 2],
            "b/not_an_image.jpg": b"<html>a saved web page</html>", "b/notes.txt": b"notes",
            "c/truncated.jpg": tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy()[:-40]}
  for name, content in damage.items():
    with open(os.path.join(root, name), "wb") as f:
      f.write(content)
  open(os.path.join(root, "c", ".DS_Store"), "wb").close()  # hidden: ignored, not counted
  return ["a/empty.png (empty file)", "a/truncated.png (truncated PNG)",
          "b/not_an_image.jpg (not a JPEG/PNG/BMP/GIF)", "b/notes.txt (not an image file)",
          "c/truncated.jpg (truncated JPEG)"]


def test_unusable_imagefolder_files_are_counted_and_skipped_with_one_warning(tmp_path, caplog):
  import logging
  import evaluation_helpers
  from reproduce import data
  root = evaluation_helpers.write_imagefolder(str(tmp_path), per_folder=3, size=(8, 8))
  named = _damage_imagefolder(root)
  with caplog.at_level(logging.WARNING):
    source = data.load_source(f"imagefolder:{root}", heldout_size=2)
  assert (source.skipped_corrupt, source.train_size + source.heldout_size) == (5, 9)
  assert len(caplog.records) == 1, caplog.text
  assert caplog.records[0].getMessage() == (
      f"imagefolder {root}: skipping 5 unusable file(s): {', '.join(named)}")
  with pytest.raises(data.DataError) as info:  # config.strict_data
    data.load_source(f"imagefolder:{root}", heldout_size=2, skip_corrupt=False)
  assert str(info.value).startswith(f"imagefolder {root!r}: 5 unusable file(s): {named[0]}")
  assert "\n" not in str(info.value) and "strict_data" in str(info.value)


def test_empty_imagefolders_and_classes_fail_at_once(tmp_path):
  import evaluation_helpers
  from reproduce import data
  os.makedirs(tmp_path / "no_classes")
  root = evaluation_helpers.write_imagefolder(str(tmp_path / "images"), per_folder=2,
                                              size=(8, 8))
  os.makedirs(os.path.join(root, "d"))
  os.makedirs(os.path.join(root, "e"))
  with open(os.path.join(root, "e", "only.jpg"), "wb") as f:
    f.write(b"\xff\xd8 cut short")
  for spec, message in [
      (f"imagefolder:{tmp_path}/no_classes", "has no class subdirectories"),
      (f"imagefolder:{root}", "class directories d, e have no usable images")]:
    with pytest.raises(data.DataError, match=message) as info:
      data.load_source(spec, heldout_size=1)
    assert "\n" not in str(info.value)


def test_a_corrupt_or_truncated_tfrecord_file_is_named_in_one_line(tmp_path):
  from reproduce import data
  from reproduce.data import record_index
  for shard in range(2):
    with tf.io.TFRecordWriter(str(tmp_path / f"train.tfrecord-{shard}")) as writer:
      for i in range(3):
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * 50])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))
        })).SerializeToString())
  spec = f"tfrecord:{tmp_path}/train.tfrecord-*"
  assert data.load_source(spec, heldout_size=2).train_size == 4
  shard = tmp_path / "train.tfrecord-1"
  content = shard.read_bytes()
  record = len(content) // 3
  shard.write_bytes(content[:record] + b"\x00" * 12 + content[record + 12:])  # a bad header
  with pytest.raises(data.DataError) as info:
    data.load_source(spec, heldout_size=2)
  assert str(info.value) == (f"TFRecord file {shard} is corrupt: no valid record header at "
                             f"byte {record} (record 1)")
  shard.write_bytes(content[:-10])
  with pytest.raises(data.DataError, match=f"TFRecord file {shard} is truncated: record 2"):
    data.load_source(spec, heldout_size=2)
  assert record_index.masked_crc32c(b"") == 0xA282EAD8  # TFRecord's mask of the empty CRC


def test_strict_data_reaches_the_data_module_only_when_asked():
  from reproduce.configs import base
  from reproduce.train import inputs, rundir
  calls = []
  module = types.SimpleNamespace(load_source=lambda dataset, **kwargs: calls.append(kwargs))
  config = rundir.config_to_dict(base.get_config())
  inputs.open_source(module, config)
  inputs.open_source(module, dict(config, strict_data=True))
  assert "skip_corrupt" not in calls[0] and calls[1]["skip_corrupt"] is False
  # A run started before the key existed resumes: a missing key counts as its default.
  stored = {k: v for k, v in config.items() if k != "strict_data"}
  changed_keys = rundir._changed_keys  # pylint: disable=protected-access
  assert changed_keys(stored, config) == []
  assert changed_keys(stored, dict(config, strict_data=True)) == ["strict_data"]


@pytest.mark.parametrize("loss, grad_norm", [(float("inf"), 1.0), (1.0, float("-inf")),
                                             (float("nan"), 1.0)])
def test_an_infinite_or_nan_loss_or_gradient_names_the_step_and_the_kept_checkpoint(loss,
                                                                                   grad_norm):
  from reproduce.train import losses
  with pytest.raises(losses.TrainingDiverged) as info:
    losses.check_divergence(8, loss, grad_norm, reference=1.4, factor=10.0,
                            last_checkpoint="RUN/checkpoints/ckpt-6")
  assert "at step 8" in str(info.value) and str(info.value).endswith(
      "last good checkpoint: RUN/checkpoints/ckpt-6")


def test_a_run_killed_after_its_final_checkpoint_still_reports_its_final_loss(tiny, tmp_path):
  """Killed between the final checkpoint and results.json: the re-run trains nothing and
  reports the loss saved with that checkpoint."""
  from engine_helpers import fake_data, one_device, tiny_config, tiny_plan
  from reproduce.train import loop
  model_dir = str(tmp_path / "run")
  train = lambda: loop.train(tiny_config(), tiny_plan(steps=4), model_dir, one_device(),
                             data_module=fake_data(), verbose=False)
  first = train()
  os.remove(os.path.join(model_dir, "results.json"))
  again = train()
  assert again["steps"] == 4 and again["final_train_loss"] == first["final_train_loss"]
  assert np.isfinite(again["final_train_loss"])
