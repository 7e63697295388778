"""Strategy selection without a TPU, precision policy, per-host input contexts."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from reproduce.train import strategy as strategy_lib


def test_auto_without_tpu_or_gpu_is_one_device(monkeypatch):
  monkeypatch.delenv("TPU_NAME", raising=False)
  strategy = strategy_lib.make_strategy("auto")
  assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
  assert strategy_lib.policy_for(strategy) == "float32"
  assert strategy_lib.supports_jit(strategy)


def test_tpu_without_name_fails_fast_one_line(monkeypatch):
  monkeypatch.delenv("TPU_NAME", raising=False)
  start = time.time()
  with pytest.raises(strategy_lib.StrategyError) as info:
    strategy_lib.make_strategy("tpu")
  assert time.time() - start < 5
  message = str(info.value)
  assert "\n" not in message and "TPU" in message


def test_tpu_local_without_tpu_fails_past_the_resolver(monkeypatch):
  """The real resolver and TPU initialisation: 'local' gets as far as looking for the chips."""
  monkeypatch.delenv("TPU_NAME", raising=False)
  with pytest.raises(strategy_lib.StrategyError) as info:
    strategy_lib.make_strategy("tpu", tpu="local")
  message = str(info.value)
  assert "\n" not in message and "local" in message
  assert "NotFoundError" in message and "TPU Name" not in message


def test_the_real_resolver_with_our_arguments():
  """No mock: TensorFlow's own TPUClusterResolver, built exactly as make_strategy builds it."""
  resolver = strategy_lib.tpu_cluster_resolver("local")
  assert isinstance(resolver, tf.distribute.cluster_resolver.TPUClusterResolver)
  assert resolver.master() == "" and resolver.cluster_spec().as_dict() == {}
  # What 'local' must not become: '' asks the Cloud TPU API for a name (the old bug).
  with pytest.raises(ValueError, match="TPU Name"):
    tf.distribute.cluster_resolver.TPUClusterResolver(tpu="")


def test_pretrain_tpu_local_cli_fails_past_the_resolver(tmp_path):
  """The issue's command: one line naming TensorFlow's NotFoundError, exit 2."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
  env.pop("TPU_NAME", None)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, "-m", "reproduce.pretrain", "--config=reproduce/configs/pretrain_mini.py",
       f"--model_dir={tmp_path}/tpu_try", "--strategy=tpu", "--tpu=local"],
      cwd=root, env=env, capture_output=True, text=True, timeout=300)
  lines = proc.stderr.splitlines()
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  assert "cannot use TPU 'local': NotFoundError" in lines[0]


def test_auto_picks_tpu_from_environment(monkeypatch):
  # 'local' fails without a TPU; the point is that auto tried the TPU path.
  monkeypatch.setenv("TPU_NAME", "local")
  with pytest.raises(strategy_lib.StrategyError, match="TPU 'local'"):
    strategy_lib.make_strategy("auto")


def test_unknown_kind():
  with pytest.raises(strategy_lib.StrategyError, match="unknown strategy"):
    strategy_lib.make_strategy("multiworker")


def test_bf16_policy_on_tpu_strategy():
  # A TPUStrategy cannot exist without a TPU: check the type dispatch with a stand-in.
  fake = object.__new__(tf.distribute.TPUStrategy)
  assert strategy_lib.policy_for(fake) == "mixed_bfloat16"


def test_input_context_of_one_host_among_four():
  strategy = strategy_lib.make_strategy("one_device")
  # What one host of four receives from distribute_datasets_from_function.
  ctx = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=2,
                                   num_replicas_in_sync=strategy.num_replicas_in_sync)
  assert (ctx.input_pipeline_id, ctx.num_input_pipelines, ctx.num_replicas_in_sync) == (2, 4, 1)
  assert ctx.get_per_replica_batch_size(16) == 16


_MIRRORED_SCRIPT = textwrap.dedent("""
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from reproduce.train import strategy as strategy_lib
  strategy = strategy_lib.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
  assert not strategy_lib.supports_jit(strategy)
  assert strategy_lib.policy_for(strategy) == "float32"
  seen = []
  def dataset_fn(ctx):
    seen.append((ctx.num_input_pipelines, ctx.input_pipeline_id, ctx.num_replicas_in_sync,
                 ctx.get_per_replica_batch_size(16)))
    per_replica = ctx.get_per_replica_batch_size(16)
    return tf.data.Dataset.range(64).shard(ctx.num_input_pipelines, ctx.input_pipeline_id).batch(per_replica)
  dist = strategy.distribute_datasets_from_function(dataset_fn)
  batch = next(iter(dist))
  parts = [t.numpy().tolist() for t in strategy.experimental_local_results(batch)]
  assert seen == [(1, 0, 2, 8)], seen
  assert parts == [list(range(8)), list(range(8, 16))], parts
  print("OK")
""")


def test_mirrored_input_context_on_two_logical_cpus():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TPU_NAME", None)
  result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True,
                          text=True, timeout=120, env=env)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
