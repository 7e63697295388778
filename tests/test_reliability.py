"""The reliability suite: a run survives kill -9 (also in the middle of a checkpoint save), a full
disk, a NaN loss and a second process on its model_dir, and ends equal to an uninterrupted run;
bad ImageFolder/TFRecord data and unusable model_dirs give one-line errors.

Each fault is injected from outside the engine: by tests/reliability_driver.py (a hook passed
to loop.train, RLIMIT_FSIZE, a patched save in the driver's own process) or by the test.
BENCHMARKS.md ("Reliability suite") lists what is injected and what each test checks.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import engine_helpers
import reliability_driver as driver
from engine_helpers import REPO_ROOT, checkpoint_tensors, fake_data, one_device

ATTEMPT_TIMEOUT = 240


def _attempt(model_dir, **faults):
  """Starts one attempt of the driver in a fresh process; returns its Popen."""
  flags = [f"--{name}={value}" for name, value in faults.items()]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "tests",
                                                        "reliability_driver.py"),
                           str(model_dir), *flags], cwd=REPO_ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
  """(results, checkpoint tensors) of the run with no fault, trained in this process."""
  engine_helpers.register_engine_tiny_model()
  from reproduce.train import loop
  model_dir = str(tmp_path_factory.mktemp("uninterrupted"))
  res = loop.train(driver.config(), driver.plan(), model_dir, one_device(),
                   data_module=fake_data(), verbose=False)
  return ([res["heldout_loss"], res["heldout_top1"], res["final_train_loss"]],
          checkpoint_tensors(model_dir))


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
  clean_metrics, clean_tensors = uninterrupted
  assert json.loads(_line(proc, "RESULT")) == clean_metrics
  tensors = checkpoint_tensors(model_dir)
  assert tensors.keys() == clean_tensors.keys()
  assert any("rng" in key for key in tensors)
  for key in tensors:
    np.testing.assert_array_equal(tensors[key], clean_tensors[key], err_msg=key)
  record = json.load(open(os.path.join(model_dir, "results.json")))
  assert record["steps"] == driver.TOTAL_STEPS and record["overhead_seconds"]["startup"] > 0
