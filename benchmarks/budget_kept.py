"""Is a CPU budget kept? Runs the documented mini pre-training command and prints the
training / planned core hours and the overhead beside them.

  PYTHONPATH=$PWD python benchmarks/budget_kept.py [--budget_core_hours=0.005] [--runs=1]

Exit status 1 when a run's training/planned ratio leaves [0.8, 1.25] (the engine's own
warning band). A timing, so a benchmark: run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from reproduce.core import cli

_BUDGET = flags.DEFINE_float("budget_core_hours", 0.005,
                             "each mini pre-training run's budget in core hours", lower_bound=0)
_RUNS = flags.DEFINE_integer("runs", 1, "runs, each in a fresh directory", lower_bound=1)

BAND = (0.8, 1.25)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(budget: float, workdir: str) -> dict:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             NFNET_VIT_SCALING_THROUGHPUT_CACHE=os.path.join(workdir, "throughput.json"))
  model_dir = os.path.join(workdir, "mini")
  done = subprocess.run(
      [sys.executable, "-m", "reproduce.pretrain", "--config=reproduce/configs/pretrain_mini.py",
       f"--model_dir={model_dir}", f"--config.budget_core_hours={budget}"],
      capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False)
  if done.returncode:
    sys.exit(f"pretrain failed:\n{done.stderr[-2000:]}")
  with open(os.path.join(model_dir, "results.json")) as f:
    return json.load(f)


def main(argv: list[str]) -> None:
  cli.refuse_stray_arguments(argv)
  inside = True
  for i in range(_RUNS.value):
    with tempfile.TemporaryDirectory() as workdir:
      record = run_once(_BUDGET.value, workdir)
    ratio = record["training_over_planned"]
    overhead = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(record["overhead_seconds"].items()))
    ok = BAND[0] <= ratio <= BAND[1]
    inside &= ok
    print(f"run {i + 1}: {record['steps']} steps at {record['plan']['images_per_second_per_core']:.0f}"
          f" img/s/core planned; training {record['training_core_hours']:.5f} / planned "
          f"{record['planned_core_hours']:.5f} core hours = {ratio:.3f} "
          f"({'inside' if ok else 'OUTSIDE'} [{BAND[0]}, {BAND[1]}]); overhead: {overhead}")
  sys.exit(0 if inside else 1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
