"""The engine compiles a bfloat16 CPU step's large activations with XLA
(``steps.activation_compiler`` through ``model_defs.common.elementwise_compiler``): where it
does, what it compiles, and that the function and its gradient stay the same."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_defs import common
from model_defs import nfnet_layers
from reproduce.train import steps
from reproduce.train import strategy as strategy_lib

_real_on_gpu = strategy_lib.on_gpu


def _xla_call_count(concrete) -> int:
  """Calls of XLA-compiled functions in a traced function and the functions it calls."""
  graph_def = concrete.graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return sum(1 for n in nodes if n.attr["_XlaMustCompile"].b)


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
  """As on a machine without a GPU, whichever machine runs the tests."""
  monkeypatch.setattr(strategy_lib, "on_gpu", lambda strategy: False)


@pytest.mark.parametrize("approximate", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gelu_through_xla_is_the_same_function_and_gradient(approximate, dtype):
  x = tf.constant(np.linspace(-6.0, 6.0, 4 * 2 ** 16).reshape(4, -1), dtype)

  def value_and_grad(compiler):
    @tf.function
    def run(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        with common.elementwise_compiler(compiler):
          y = common.gelu(x, approximate, 1.7)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * 0.5)
      return y, tape.gradient(loss, x)
    return run, [t.numpy().astype(np.float32) for t in run(x)]

  plain_fn, plain = value_and_grad(None)
  compiled_fn, compiled = value_and_grad(steps.activation_compiler(
      tf.distribute.get_strategy(), jit_compile=False, compute_dtype="bfloat16"))
  tolerance = 1e-5 if dtype == "float32" else 1e-2
  for ours, reference in zip(compiled, plain):
    np.testing.assert_allclose(ours, reference, atol=tolerance, rtol=tolerance)
  assert compiled[0].dtype == plain[0].dtype
  # Forward and gradient each run as one XLA call; the plain path has none.
  assert _xla_call_count(compiled_fn.get_concrete_function(x)) >= 2
  assert _xla_call_count(plain_fn.get_concrete_function(x)) == 0


def test_only_activations_large_enough_are_compiled():
  compile_activations = steps.activation_compiler(tf.distribute.get_strategy(), False,
                                                  "bfloat16")
  per_example = steps.MIN_COMPILED_ELEMENTS
  small = tf.TensorSpec((8, per_example // 2), tf.bfloat16)
  large = tf.TensorSpec((1, per_example), tf.bfloat16)
  unknown = tf.TensorSpec((1, None), tf.bfloat16)
  for spec, expected in ((small, 0), (large, 1), (unknown, 0)):
    traced = tf.function(compile_activations(lambda x: x * 2)).get_concrete_function(spec)
    assert _xla_call_count(traced) == expected, spec


def test_the_engine_compiles_activations_only_for_a_bfloat16_step_run_op_by_op_on_cpus(
    monkeypatch):
  default = tf.distribute.get_strategy()
  assert steps.activation_compiler(default, False, "bfloat16") is not None
  assert steps.activation_compiler(default, False, "float32") is None
  assert steps.activation_compiler(default, True, "bfloat16") is None  # compiled whole
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
  assert steps.activation_compiler(mirrored, False, "bfloat16") is None
  monkeypatch.setattr(strategy_lib, "on_gpu", lambda strategy: True)
  assert steps.activation_compiler(default, False, "bfloat16") is None


def test_a_strategy_on_cpus_is_not_on_gpus():
  """``on_gpu`` reads the strategy's devices (the fixture above stands in for it elsewhere)."""
  assert not _real_on_gpu(tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert _real_on_gpu(tf.distribute.get_strategy()) == bool(
      tf.config.list_logical_devices("GPU"))


def test_a_bfloat16_train_step_runs_its_large_gelus_through_xla(monkeypatch):
  """The engine's own chunk: a GELU of 2^16 elements per example is one XLA call forward
  and one backward, and the step trains as the plain bfloat16 step does, up to rounding."""
  def train():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(256, 3, padding="same")(inputs)  # 16 * 16 * 256 = 2^16
    h = nfnet_layers.GammaActivation("gelu")(h)
    outputs = keras.layers.Dense(4, dtype="float32")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    chunk = steps.make_train_chunk(tf.distribute.get_strategy(), model, optimizer,
                                   loss="softmax", label_smoothing=0.0, global_batch_size=2)
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(2, 16, 16, 3)).astype(np.float32),
             np.eye(4, dtype=np.float32)[[1, 3]])
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    chunk(iterator, tf.constant(2))
    calls = _xla_call_count(chunk.get_concrete_function(iterator, tf.constant(2)))
    return [v.numpy() for v in model.trainable_variables], calls

  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    compiled, compiled_calls = train()
    monkeypatch.setattr(steps, "activation_compiler", lambda *args: None)
    plain, plain_calls = train()
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert compiled_calls >= 2 and plain_calls == 0
  for ours, reference in zip(compiled, plain):
    np.testing.assert_allclose(ours, reference, atol=1e-2, rtol=1e-2)
