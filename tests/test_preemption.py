"""SIGTERM (a TPU VM's pre-emption notice): a checkpoint at the current step, a clean stop,
and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from engine_helpers import checkpoint_tensors, run_script
from reproduce.train import preemption

# TERM_AT: 0 trains to the end; N > 0 sends SIGTERM to this process from the loop's hook after
# the first chunk that ends at or past step N (checkpoints are otherwise due every 4 steps).
_SCRIPT = """
  import json, os, signal, sys
  import engine_helpers as h
  from reproduce.train import loop, preemption
  h.register_engine_tiny_model()

  def term_at(step, logs):
    if TERM_AT and step >= TERM_AT:
      os.kill(os.getpid(), signal.SIGTERM)

  config = h.tiny_config(checkpoint_every_steps=4, steps_per_execution=1, ema_decay=0.9)
  try:
    res = loop.train(config, h.tiny_plan(steps=9), MODEL_DIR, h.one_device(),
                     data_module=h.fake_data(), verbose=False, hooks=[term_at])
  except preemption.Preempted as e:
    print("PREEMPTED", e.step)
    sys.exit(preemption.EXIT_CODE)
  print("RESULT", json.dumps([res["heldout_loss"], res["heldout_top1"], res["final_train_loss"]]))
"""


def _script(model_dir, term_at=0):
  return _SCRIPT.replace("MODEL_DIR", repr(model_dir)).replace("TERM_AT", str(term_at))


def _result(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads([l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1][6:])


def test_sigterm_checkpoints_the_current_step_and_resume_equals_uninterrupted(tmp_path):
  stopped_dir, clean_dir = str(tmp_path / "stopped"), str(tmp_path / "clean")
  stopped = run_script(_script(stopped_dir, term_at=6))
  assert stopped.returncode == preemption.EXIT_CODE, stopped.stderr[-3000:]
  assert "PREEMPTED 6" in stopped.stdout
  # Step 6 is not a checkpoint step (every 4): the SIGTERM wrote it.
  assert tf.train.latest_checkpoint(os.path.join(stopped_dir, "checkpoints")).endswith("ckpt-6")
  assert not os.path.exists(os.path.join(stopped_dir, "results.json"))
  resumed, clean = _result(run_script(_script(stopped_dir))), _result(run_script(_script(clean_dir)))
  assert resumed == clean
  a, b = checkpoint_tensors(stopped_dir), checkpoint_tensors(clean_dir)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_watch_restores_the_previous_handler():
  import signal
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Watch() as watch:
    assert signal.getsignal(signal.SIGTERM) != before and not watch.requested
  assert signal.getsignal(signal.SIGTERM) == before
