"""The benchmark scripts start and document their flags (``--help``); their figures are
measured by running them (BENCHMARKS.md), never in tests."""

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# script -> a flag its help names (absl's own --help exits 1, cli.parse_flags' 0)
SCRIPTS = {"throughput_vs_timm.py": "--precision", "input_pipeline.py": "--models",
           "gpu_vs_timm.py": "--pairs", "op_profile.py": "--jit_compile",
           "budget_kept.py": "--budget_core_hours", "docs_examples.py": "--slow"}
# script -> a bad value of one of its flags (checked before any work starts)
BAD_FLAGS = {"benchmarks/budget_kept.py": "--runs=0", "benchmarks/docs_examples.py": "--only=x.md",
             "benchmarks/gpu_vs_timm.py": "--pairs=x", "scripts/mutation_score.py": "--sample=x",
             "benchmarks/op_profile.py": "--jit_compile=maybe",
             "benchmarks/input_pipeline.py": "--models=no_such_model",
             "benchmarks/data_startup.py": "--records_per_shard=x",
             "benchmarks/throughput_vs_timm.py": "--pairs=x"}  # checked in main


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_prints_its_help(script):
  done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", script), "--help"],
                        capture_output=True, text=True, cwd=REPO_ROOT, check=False, timeout=120)
  assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr[-2000:]
  assert SCRIPTS[script] in done.stdout


@pytest.mark.parametrize("script", sorted(BAD_FLAGS))
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(script):
  done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), BAD_FLAGS[script]],
                        capture_output=True, text=True, cwd=REPO_ROOT, check=False, timeout=120)
  flag = BAD_FLAGS[script].split("=")[0]
  assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
  assert done.stderr.startswith("error: ") and flag in done.stderr, done.stderr


def test_every_kit_model_of_the_pairs_is_registered():
  sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
  import peers  # pylint: disable=g-import-not-at-top
  import model_defs  # pylint: disable=g-import-not-at-top
  assert set(peers.TIMM_NAMES) <= set(model_defs.names())


def test_the_op_profile_reads_the_ops_of_a_traced_function(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
  import trace_ops  # pylint: disable=g-import-not-at-top

  @tf.function
  def relu_of_matmuls(a):
    return tf.nn.relu(tf.linalg.matmul(a, a) + tf.linalg.matmul(a, a, transpose_a=True))

  a = tf.ones((64, 64))
  relu_of_matmuls(a)
  tf.profiler.experimental.start(str(tmp_path))
  for _ in range(2):
    relu_of_matmuls(a).numpy()
  tf.profiler.experimental.stop()
  by_type, count, by_op = trace_ops.op_seconds(str(tmp_path), steps=2)
  matmuls = [op_type for op_type in by_type if "MatMul" in op_type]
  assert matmuls and sum(count[t] for t in matmuls) == 2, count  # per step, not per trace
  assert count["Relu"] == 1 and by_type["Relu"] > 0, count
  assert not set(by_type) & trace_ops.CONTAINER_OPS
  assert sum(by_op.values()) == pytest.approx(sum(by_type.values()))
