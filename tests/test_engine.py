"""The training engine (reproduce.train): outputs, Mirrored == one device, NaN, config checks,
hooks, throughput, and the pretrain CLI (resume after kill -9: tests/test_reliability.py).

Unit tests use a tiny registered model and a synthetic data module with the reproduce.data
API (tests/engine_helpers.py); subprocess scripts import the same helper module.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from reproduce.train import steps

from engine_helpers import (REPO_ROOT, checkpoint_tensors, fake_data, one_device, run_script,
                            tiny_config, tiny_plan)


# ----------------------------------------------------------------------------------------
# In-process tests.


def test_run_writes_checkpoints_tensorboard_results(tiny, tmp_path):
  from reproduce.core import results as schema
  from reproduce.train import loop
  model_dir = str(tmp_path / "run")
  config = tiny_config(steps_per_execution=2, eval_every_steps=4, checkpoint_every_steps=4,
                       log_every_steps=2, ema_decay=0.99)
  lines, hook_calls = [], []
  results = loop.train(config, tiny_plan(steps=6), model_dir, one_device(),
                       data_module=fake_data(), log=lines.append,
                       hooks=[lambda step, logs: hook_calls.append((step, dict(logs)))])
  on_disk = json.load(open(os.path.join(model_dir, "results.json")))
  assert on_disk["heldout_loss"] == pytest.approx(results["heldout_loss"])
  for key in ("schema", "model", "family", "params", "flops_per_image", "resolution", "dataset",
              "dataset_size", "num_classes", "epochs", "steps", "batch_size", "base_lr",
              "hardware", "planned_core_hours", "measured_core_hours", "heldout_loss",
              "heldout_top1", "finetune_top1", "plan", "config"):
    assert key in on_disk, key
  assert schema.problems(on_disk, "measured_core_hours") == []
  assert on_disk["steps"] == 6 and on_disk["eval_weights"] == "ema"
  assert on_disk["measured_core_hours"] > 0 and np.isfinite(on_disk["heldout_loss"])
  # Training steps are part of the wall time; the overheads are the other named parts of it.
  assert 0 < on_disk["training_core_hours"] < on_disk["measured_core_hours"]
  overhead = on_disk["overhead_seconds"]
  assert set(overhead) == {"startup", "tracing", "evaluation", "checkpointing"}
  assert all(v >= 0 for v in overhead.values()) and overhead["evaluation"] > 0
  assert overhead["checkpointing"] > 0 and overhead["startup"] > 0
  training_seconds = on_disk["training_core_hours"] * 3600 / 2  # plan.num_cores = 2
  assert training_seconds + sum(overhead.values()) <= on_disk["wall_seconds"] + 1e-6
  # The hooks saw every chunk (steps_per_execution 2), with the logged values.
  assert [step for step, _ in hook_calls] == [2, 4, 6]
  assert "heldout" in hook_calls[1][1] and hook_calls[1][1]["total_steps"] == 6
  assert all(np.isfinite(logs["loss"]) and logs["images_per_second"] > 0
             for _, logs in hook_calls)
  assert json.load(open(os.path.join(model_dir, "config.json")))["steps_per_execution"] == 2
  assert json.load(open(os.path.join(model_dir, "plan.json")))["steps"] == 6
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-6")
  assert any("step 2/6" in line and "img/s" in line and "ETA" in line for line in lines)
  tags = set()
  for path in glob.glob(os.path.join(model_dir, "tensorboard", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  for tag in ("train/loss", "train/learning_rate", "train/grad_norm", "train/agc_clip_fraction",
              "train/images_per_second", "train/core_hours", "heldout/loss", "heldout/top1",
              "_hparams_/session_start_info"):
    assert tag in tags, (tag, sorted(tags))
  # A finished run restarted in place does no work and reports the same metrics.
  again = loop.train(config, tiny_plan(steps=6), model_dir, one_device(),
                     data_module=fake_data(), verbose=False)
  assert again["heldout_loss"] == pytest.approx(results["heldout_loss"], rel=1e-6)
  assert again["training_core_hours"] == pytest.approx(results["training_core_hours"])


def test_config_mismatch_refused(tiny, tmp_path):
  from reproduce.train import loop, rundir
  model_dir = str(tmp_path / "run")
  loop.train(tiny_config(), tiny_plan(steps=2), model_dir, one_device(),
             data_module=fake_data(), verbose=False)
  with pytest.raises(rundir.ConfigMismatchError) as info:
    loop.train(tiny_config(weight_decay=0.5), tiny_plan(steps=2), model_dir, one_device(),
               data_module=fake_data(), verbose=False)
  message = str(info.value)
  assert "\n" not in message and "weight_decay" in message and "--allow_config_change" in message
  results = loop.train(tiny_config(weight_decay=0.5), tiny_plan(steps=4), model_dir,
                       one_device(), data_module=fake_data(), verbose=False,
                       allow_config_change=True)
  assert results["steps"] == 4 and results["config"]["weight_decay"] == 0.5


def test_nan_stops_and_keeps_last_good_checkpoint(tiny, tmp_path):
  from reproduce.train import losses, loop
  model_dir = str(tmp_path / "run")
  with pytest.raises(losses.TrainingDiverged, match="step 6") as info:
    loop.train(tiny_config(checkpoint_every_steps=2), tiny_plan(steps=10), model_dir,
               one_device(), data_module=fake_data(nan_from_step=5), verbose=False)
  assert "ckpt-4" in str(info.value)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  assert latest.endswith("ckpt-4")
  assert all(np.all(np.isfinite(t)) for t in checkpoint_tensors(model_dir).values()
             if np.issubdtype(t.dtype, np.floating))
  assert not os.path.exists(os.path.join(model_dir, "results.json"))


def test_loss_functions():
  from reproduce.train import losses
  logits = tf.constant([[2.0, 0.0, -1.0]])
  labels = tf.constant([[1.0, 0.0, 0.0]])
  log_p = tf.nn.log_softmax(logits).numpy()[0]
  smooth = 0.9 * np.array([1, 0, 0]) + 0.1 / 3
  np.testing.assert_allclose(losses.per_example_loss(labels, logits, "softmax", 0.1).numpy(),
                             [-(smooth * log_p).sum()], rtol=1e-6)
  z = logits.numpy()[0]
  target = 0.95 * np.array([1, 0, 0]) + 0.025
  bce = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
  np.testing.assert_allclose(losses.per_example_loss(labels, logits, "sigmoid", 0.05).numpy(),
                             [bce.sum()], rtol=1e-6)


def test_model_fn_and_optimizer_fn_replace_the_defaults(tiny, tmp_path):
  # What a fine-tuning script does: its own initialisation and optimizer, the same loop.
  import keras
  from reproduce.train import builders, loop
  calls = []

  def model_fn(config, plan, num_classes):
    model = builders.build_model(config, plan, num_classes)
    for variable in model.trainable_variables:
      variable.assign(tf.zeros_like(variable) + 0.01)
    calls.append("model")
    return model

  def optimizer_fn(config, schedule, model, num_classes):
    calls.append("optimizer")
    optimizer = keras.optimizers.SGD(schedule)
    optimizer.build(model.trainable_variables)
    return optimizer

  seen = []
  results = loop.train(tiny_config(), tiny_plan(steps=3), str(tmp_path / "ft"), one_device(),
                       data_module=fake_data(), verbose=False, model_fn=model_fn,
                       optimizer_fn=optimizer_fn, hooks=[lambda s, logs: seen.append(logs)])
  assert calls == ["model", "optimizer"] and results["steps"] == 3
  assert all(logs["grad_norm"] == 0.0 for logs in seen)  # plain SGD keeps no AGC statistics
  assert np.isfinite(results["heldout_loss"])


def test_config_defaults_come_from_the_base_config():
  import importlib
  from reproduce.configs import base
  from reproduce.train import rundir
  defaults = rundir.config_to_dict(base.get_config())
  assert rundir.config_to_dict({}) == defaults
  filled = rundir.config_to_dict({"batch_size": 8, "extra": 1})
  assert filled == dict(defaults, batch_size=8, extra=1)
  for name in ("pretrain_mini", "pretrain_jft", "pretrain_imagenet", "pretrain_i21k"):
    config = importlib.import_module(f"reproduce.configs.{name}").get_config()
    assert set(config.to_dict()) == set(defaults), name  # every config derives from base


def test_throughput_measures_the_engine_train_step(tiny, monkeypatch):
  from reproduce import planning
  from reproduce.train import throughput
  built = []
  original = steps.make_train_chunk

  def spy(*args, **kwargs):
    built.append(kwargs)
    return original(*args, **kwargs)

  monkeypatch.setattr(steps, "make_train_chunk", spy)
  result = throughput.measure(tiny, batch_size=4, steps=3, num_classes=4, warmup_steps=1,
                              hardware="cpu", config=dict(label_smoothing=0.2))
  assert len(built) == 1 and built[0]["loss"] == "softmax"
  assert built[0]["label_smoothing"] == 0.2 and built[0]["jit_compile"] is False
  assert len(result.step_seconds) == 3 and result.cores == 1 and result.resolution == 16
  assert 0 < result.min <= result.median <= result.max
  assert result.images_per_second_per_core == result.median
  assert result.to_dict()["images_per_second_per_core"] == result.median
  for kwargs, flag in ((dict(model_name="no_such_model"), "--model"),
                       (dict(batch_size=0), "--measure_batch_size"),
                       (dict(steps=1.5), "--measure_steps"),
                       (dict(hardware="abacus"), "--hardware")):
    arguments = dict(dict(model_name=tiny, batch_size=4), **kwargs)
    with pytest.raises(planning.PlanError) as info:
      throughput.measure(**arguments)
    assert str(info.value).startswith(flag), info.value


# ----------------------------------------------------------------------------------------
# Subprocess tests: Mirrored on two logical CPUs.

# kill -9 and exact resume: tests/test_reliability.py (killed at random steps and inside a
# checkpoint save, then resumed to bit-equal weights and metrics).


_MIRRORED_SCRIPT = """
  import numpy as np
  import engine_helpers as h
  from reproduce.train import loop, strategy as strategy_lib
  h.register_engine_tiny_model()
  import tempfile, os
  root = tempfile.mkdtemp()
  config = h.tiny_config(model_overrides={"dropout": 0.0}, agc_clipping=0.01, steps_per_execution=2,
                         deterministic=False)
  plan = h.tiny_plan(steps=6, lr=0.4, warmup=1)
  one = strategy_lib.make_strategy("one_device")
  mirrored = strategy_lib.make_strategy("mirrored")
  assert mirrored.num_replicas_in_sync == 2
  single = loop.train(config, plan, os.path.join(root, "one"), one, data_module=h.fake_data(),
                      verbose=False)
  multi = loop.train(config, plan, os.path.join(root, "two"), mirrored,
                     data_module=h.fake_data(), verbose=False)
  a, b = h.checkpoint_tensors(os.path.join(root, "one")), h.checkpoint_tensors(os.path.join(root, "two"))
  assert a.keys() == b.keys()
  worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a if a[k].dtype.kind == "f")
  assert worst < 1e-5, worst
  assert abs(single["heldout_loss"] - multi["heldout_loss"]) < 1e-5
  clip = h.scalar_values(os.path.join(root, "two"), "train/agc_clip_fraction")
  assert max(clip) > 0, clip  # AGC was active on the reduced gradient
  print("OK", worst)
"""


def test_mirrored_two_cpus_matches_one_device_with_agc():
  proc = run_script(_MIRRORED_SCRIPT, logical_cpus=2)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


# ----------------------------------------------------------------------------------------
# The CLI (python -m reproduce.pretrain) with the real mini config and digits.

MINI_CONFIG = "reproduce/configs/pretrain_mini.py"


def _have_data_module():
  import importlib.util
  return importlib.util.find_spec("reproduce.data") is not None


needs_data = pytest.mark.skipif(not _have_data_module(), reason="reproduce.data not available")


def run_cli(*args, timeout=300, config=MINI_CONFIG, tf_log_level="2"):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=tf_log_level)
  env.pop("TPU_NAME", None)
  config_flag = [f"--config={config}"] if config else []
  return subprocess.run([sys.executable, "-m", "reproduce.pretrain", *config_flag, *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


def assert_one_line_error(proc, *needles, code=2):
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert proc.returncode == code, proc.stderr[-3000:]
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for needle in needles:
    assert needle in errors[0], errors[0]


def test_cli_unknown_model_one_line_exit_2(tmp_path):
  assert_one_line_error(run_cli(f"--model_dir={tmp_path / 'run'}", "--config.model=nfnet_nope"),
                        "nfnet_nope")


@pytest.mark.parametrize("args, config, needle", [
    (["--config.model=nfnet_nope"], MINI_CONFIG, "nfnet_nope"),
    ([], None, "--config"),
    (["--strategy=warp"], MINI_CONFIG, "--strategy"),
    ([], "reproduce/configs/no_such_config.py", "no_such_config"),
    (["--config.epochs=0", "--config.budget_core_hours=0"], MINI_CONFIG, "epochs"),
])
def test_cli_errors_are_exactly_one_line_with_tf_chatter_on(tmp_path, args, config, needle):
  # TF_CPP_MIN_LOG_LEVEL=0 makes TensorFlow's start-up notices appear (as on AVX-512/AMX
  # CPUs whatever the level): they must not reach the user on a flag error.
  proc = run_cli(f"--model_dir={tmp_path / 'run'}", *args, config=config, tf_log_level="0")
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-3000:]
  assert needle in lines[0]


def _mini_config(**overrides):
  from reproduce.configs import pretrain_mini
  config = pretrain_mini.get_config()
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _error_line(error):
  from reproduce.core import cli
  return cli.first_line(error)


@pytest.mark.parametrize("overrides, kwargs, error_name, needle", [
    ({"model": "nfnet_nope"}, {}, "UnknownModelError", "nfnet_nope"),
    ({}, {"strategy_kind": "tpu"}, "StrategyError", "TPU"),
    ({}, {"model_dir": ""}, "UsageError", "--model_dir"),
    ({"dataset": "no_such_dataset"}, {}, "DataError", "no_such_dataset"),
    ({"budget_core_hours": -1.0}, {}, "PlanError", "budget_core_hours"),
    ({"budget_core_hours": 1e-12}, {}, "PlanError", "budget_core_hours"),
    ({"budget_core_hours": None, "epochs": None}, {}, "UsageError", "epochs"),
])
def test_run_user_errors_are_one_line(tmp_path, monkeypatch, overrides, kwargs, error_name,
                                      needle):
  monkeypatch.delenv("TPU_NAME", raising=False)
  if error_name in ("DataError", "PlanError") and not _have_data_module():
    pytest.skip("reproduce.data not available")
  import model_defs  # noqa: F401  (user_error_types lists its error once it is imported)
  from reproduce import pretrain
  from reproduce.core import cli
  kwargs = dict(dict(model_dir=str(tmp_path / "run"), strategy_kind="one_device"), **kwargs)
  with pytest.raises(cli.user_error_types()) as info:
    pretrain.run(_mini_config(**overrides), **kwargs)
  assert type(info.value).__name__ == error_name
  line = _error_line(info.value)
  assert needle in line and "\n" not in line


@needs_data
def test_run_unusable_model_dir(tmp_path):
  from reproduce import pretrain
  from reproduce.train import rundir
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(rundir.EngineError, match="model_dir") as info:
    pretrain.run(_mini_config(budget_core_hours=None, epochs=0.05), str(blocker / "run"),
                 strategy_kind="one_device")
  assert "\n" not in str(info.value)


@needs_data
@pytest.mark.parametrize("model", ["nfnet_mini_f0", "vit_mini_ti"])
def test_cli_mini_config_end_to_end(tmp_path, model):
  model_dir = tmp_path / model
  flags = [f"--model_dir={model_dir}", f"--config.model={model}", "--config.budget_core_hours=0",
           "--config.epochs=0.03", "--config.batch_size=8", "--config.checkpoint_every_steps=2",
           "--config.log_every_steps=2", "--config.steps_per_execution=2",
           "--strategy=one_device"]
  proc = run_cli(*flags)
  assert proc.returncode == 0, proc.stderr[-4000:]
  results = json.load(open(model_dir / "results.json"))
  assert results["model"] == model and results["dataset"] == "digits"
  assert results["steps"] >= 2 and np.isfinite(results["heldout_loss"])
  assert 0.0 <= results["heldout_top1"] <= 1.0 and results["measured_core_hours"] > 0
  assert results["plan"]["steps"] == results["steps"]
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  assert "train/loss" in {t for t in _tags(model_dir)}
  if model.startswith("nfnet"):
    return
  # Same model_dir, different config: refused with one line.
  assert_one_line_error(run_cli(*flags, "--config.weight_decay=0.5"), "--allow_config_change",
                        "weight_decay")


def _tags(model_dir):
  for path in glob.glob(os.path.join(str(model_dir), "tensorboard", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        yield value.tag


def test_release_in_background_drops_the_last_reference_off_the_main_thread():
  """A run's input iterator is released on another thread (its destructor can wait seconds
  for tf.data's autotuning thread); the reference must really go."""
  import threading
  import weakref
  from reproduce.train import inputs

  class Iterator:
    pass

  iterator = Iterator()
  alive = weakref.ref(iterator)
  holder = [iterator]
  del iterator
  inputs.release_in_background(holder)
  for thread in threading.enumerate():
    if thread.name == "release-input-iterator":
      thread.join()
  assert alive() is None and holder == []


@pytest.mark.parametrize("cache_bytes,passes", [(steps.CACHE_BYTES, 1), (1, 3)])
def test_evaluator_keeps_a_small_held_out_set_and_streams_a_large_one(monkeypatch, cache_bytes,
                                                                       passes):
  """A held-out set within CACHE_BYTES goes through its pipeline once and is kept; a larger
  one streams on every evaluation; both score the model as it is at each call."""
  import keras
  monkeypatch.setattr(steps, "CACHE_BYTES", cache_bytes)
  pulled = tf.Variable(0, dtype=tf.int64)
  images = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
  labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]]

  def dataset_fn(_):
    def count(x, y):
      pulled.assign_add(1)
      return x, y
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(4).map(count)

  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  evaluator = steps.Evaluator(one_device(), model, keras.optimizers.SGD(), "softmax",
                              dataset_fn)
  results = []
  for scale in (1.0, 1.0, 3.0):
    model.layers[0].kernel.assign(scale * np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
    results.append(evaluator())
    logits = images @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy()
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert results[-1]["loss"] == pytest.approx(-(labels * log_p).sum(-1).mean(), rel=1e-5)
  assert results[0] == results[1] != results[2] and results[0]["examples"] == 10
  assert int(pulled.numpy()) == 3 * passes  # three batches per pass through the pipeline
