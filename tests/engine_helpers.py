"""Helpers of the training-engine tests, shared by test files and their subprocess scripts.

A tiny registered model, a synthetic data module with the ``reproduce.data`` API, small
plans/configs, checkpoint and TensorBoard readers, and a subprocess runner.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import tensorflow as tf

import tiny_models

TINY = "engine_test_tiny"
NUM_CLASSES = 4
RES = 16
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def register_engine_tiny_model():
  """A tiny conv net with dropout (exercises the SeedGenerator state)."""
  return tiny_models.register_tiny_model(TINY, builder=tiny_models.dropout_conv_builder,
                                         train_resolution=RES)


def _synthetic_arrays(train_size: int, heldout: int, res: int):
  """Learnable images: noise plus a per-class offset; one-hot labels."""
  rng = np.random.default_rng(0)
  labels = np.arange(train_size + heldout) % NUM_CLASSES
  images = rng.normal(size=(train_size + heldout, res, res, 3)).astype(np.float32) * 0.5
  images += labels[:, None, None, None].astype(np.float32) * 0.3
  return images, np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def fake_data(nan_from_step=None, train_size=64, heldout=24, res=RES):
  """A data module with the reproduce.data API over synthetic, learnable images."""
  images, onehot = _synthetic_arrays(train_size, heldout, res)
  source = types.SimpleNamespace(name="synthetic", num_classes=NUM_CLASSES,
                                 train_size=train_size, heldout_size=heldout, multi_label=False)

  def load_source(dataset, data_dir=None, manual_dir=None, heldout_size=None, seed=0):
    return source

  def train_dataset(src, *, global_batch_size, resolution, seed, start_step=0,
                    input_context=None, augment=None, dtype=tf.float32):
    per_replica = (input_context.get_per_replica_batch_size(global_batch_size)
                   if input_context else global_batch_size)
    x, y = tf.constant(images[:train_size]), tf.constant(onehot[:train_size])

    def example(i):
      image = tf.gather(x, i % train_size)
      if nan_from_step is not None:  # poison every batch from that step on
        poison = i // global_batch_size >= nan_from_step
        image = tf.where(poison, tf.fill(tf.shape(image), np.nan), image)
      return tf.cast(image, dtype), tf.gather(y, i % train_size)

    # Element i of the global stream; batch s = elements [s*B, (s+1)*B) for any start_step.
    return tf.data.Dataset.range(start_step * global_batch_size, 2 ** 62).map(example).batch(
        per_replica, drop_remainder=True)

  def heldout_dataset(src, *, global_batch_size, resolution, input_context=None,
                      dtype=tf.float32):
    per_replica = (input_context.get_per_replica_batch_size(global_batch_size)
                   if input_context else global_batch_size)
    return tf.data.Dataset.from_tensor_slices((images[train_size:], onehot[train_size:])).map(
        lambda a, b: (tf.cast(a, dtype), b)).batch(per_replica)

  return types.SimpleNamespace(load_source=load_source, train_dataset=train_dataset,
                               heldout_dataset=heldout_dataset)


def tiny_plan(steps=8, lr=0.2, warmup=2, batch=8):
  from reproduce.train import rundir
  return rundir.StoredPlan(model=TINY, steps=steps, batch_size=batch, base_lr=lr,
                           warmup_steps=warmup, decay="cosine", resolution=RES,
                           dataset_size=64, epochs=steps * batch / 64, hardware="cpu",
                           num_cores=2, core_hours=0.001)


def tiny_config(**overrides):
  config = dict(model=TINY, dataset="synthetic", batch_size=8, resolution=RES,
                log_every_steps=0, eval_every_steps=0, checkpoint_every_steps=0,
                checkpoint_every_secs=0, deterministic=True, weight_decay=1e-4,
                label_smoothing=0.1, steps_per_execution=1, seed=3)
  config.update(overrides)
  return config


def one_device():
  from reproduce.train import strategy as strategy_lib
  return strategy_lib.make_strategy("one_device")


def checkpoint_tensors(model_dir):
  """All tensors of the latest checkpoint in model_dir, by key (timers left out)."""
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if "OBJECT_GRAPH" not in k and "save_counter" not in k and "elapsed" not in k}


def scalar_values(model_dir, tag):
  """The values of one TensorBoard scalar tag in model_dir/tensorboard."""
  values = []
  for path in sorted(glob.glob(os.path.join(model_dir, "tensorboard", "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      values += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value if v.tag == tag]
  return values


def run_script(script, timeout=240, logical_cpus=None):
  """Runs a Python script in a fresh process (tests/ importable via conftest's PYTHONPATH)."""
  prelude = ""
  if logical_cpus:
    prelude = textwrap.dedent(f"""
      import tensorflow as tf
      _cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          _cpu, [tf.config.LogicalDeviceConfiguration()] * {logical_cpus})
    """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TPU_NAME", None)
  return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)
