"""One attempt of a small training run (the engine tests' tiny model, synthetic data) in its own
process, with the faults of tests/test_reliability.py injected from outside the engine:

  python tests/reliability_driver.py MODEL_DIR [--kill_at=N] [--kill_in_save=N]
      [--disk_full_after=N] [--nan_from=N] [--hold_at=N --ready=FILE --go=FILE]

  --kill_at=N          SIGKILL after the chunk that ends at step N (a loop hook)
  --kill_in_save=N     SIGKILL in the middle of the checkpoint save at step N: ckpt-N's files are
                       written, then its data file is cut to half, and the process dies before
                       the manager's state file names ckpt-N (a torn save)
  --disk_full_after=N  after the chunk ending at step N no file may grow (RLIMIT_FSIZE 0 with
                       SIGXFSZ ignored: every write fails as on a full disk)
  --nan_from=N         every batch from step N + 1 on is NaN
  --hold_at=N          after the chunk ending at step N: create READY, then wait for GO

Prints ``RESULT [heldout loss, heldout top-1, final train loss]``, or ``ERROR <the engine's
one-line message>`` and exits 3.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import signal
import sys
import time

import engine_helpers as h

TOTAL_STEPS = 12


def config():
  """The run's config: checkpoints every 3 steps, chunks of 2 (resume re-chunks)."""
  return h.tiny_config(checkpoint_every_steps=3, steps_per_execution=2, ema_decay=0.9)


def plan():
  return h.tiny_plan(steps=TOTAL_STEPS)


def _hooks(args) -> list:
  def on_step(step, logs):
    del logs
    if args.kill_at and step >= args.kill_at:
      os.kill(os.getpid(), signal.SIGKILL)
    if args.disk_full_after and step >= args.disk_full_after:
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      resource.setrlimit(resource.RLIMIT_FSIZE,
                         (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    if args.hold_at and step == args.hold_at:
      open(args.ready, "w").close()
      deadline = time.time() + 300
      while not os.path.exists(args.go) and time.time() < deadline:
        time.sleep(0.05)
  return [on_step]


def _tear_the_save_at(step: int) -> None:
  """``RunCheckpoints.save`` at ``step`` writes ckpt-N, truncates it and dies (see above)."""
  from reproduce.train import checkpoints
  real_save = checkpoints.RunCheckpoints.save

  def save(self, at_step, clock, check_interval=False):
    if at_step != step:
      return real_save(self, at_step, clock, check_interval)
    prefix = os.path.join(self.directory, f"ckpt-{at_step}")
    self.checkpoint.write(prefix)  # data + index files, no state file update
    data_file = glob.glob(f"{prefix}.data-*")[0]
    with open(data_file, "r+b") as f:
      f.truncate(os.path.getsize(data_file) // 2)
    os.kill(os.getpid(), signal.SIGKILL)

  checkpoints.RunCheckpoints.save = save


def main(argv) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("model_dir")
  for name in ("kill_at", "kill_in_save", "disk_full_after", "nan_from", "hold_at"):
    parser.add_argument(f"--{name}", type=int, default=0)
  parser.add_argument("--ready")
  parser.add_argument("--go")
  args = parser.parse_args(argv)
  h.register_engine_tiny_model()
  from reproduce.train import loop, losses, rundir
  if args.kill_in_save:
    _tear_the_save_at(args.kill_in_save)
  try:
    res = loop.train(config(), plan(), args.model_dir, h.one_device(), verbose=False,
                     data_module=h.fake_data(nan_from_step=args.nan_from or None),
                     hooks=_hooks(args))
  except (rundir.EngineError, losses.TrainingDiverged) as e:
    print("ERROR", str(e), flush=True)
    return 3
  print("RESULT", json.dumps([res["heldout_loss"], res["heldout_top1"],
                              res["final_train_loss"]]), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
