"""reproduce.engine: outputs, resume after kill -9, Mirrored == one device, NaN, config checks.

Unit tests use a tiny registered model and a synthetic data module with the
reproduce.data API; subprocess tests import this file as a helper module.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import tensorflow as tf

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TINY = "engine_test_tiny"
NUM_CLASSES = 4
RES = 16


# ----------------------------------------------------------------------------------------
# Helpers (also used by the subprocess scripts).


def register_tiny_model():
  """Registers a tiny conv net with dropout (exercises the SeedGenerator state)."""
  import keras
  import model_defs
  from model_defs import registry
  from model_defs.stats import ModelStats
  if TINY in model_defs.names():
    return

  def builder(config, num_classes, name=TINY, dropout=0.25, **unused):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, name="hidden")(x)
    if dropout:
      x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)

  def counter(config, resolution, num_classes, name=TINY, **unused):
    params = 3 * 3 * 3 * 8 + 8 + 8 * 8 + 8 + 8 * num_classes + num_classes
    return ModelStats(name=name, resolution=resolution, num_classes=num_classes,
                      params=params, macs=(resolution // 2) ** 2 * 27 * 8)

  registry.register(registry.ModelSpec(
      name=TINY, family="nfnet", config={}, builder=builder, counter=counter,
      train_resolution=RES, test_resolution=RES, source="test fixture", mini=True))


def fake_data(nan_from_step=None, train_size=64, heldout=24, res=RES):
  """A data module with the reproduce.data API over synthetic, learnable images."""
  RES = res  # noqa: N806 (shadows the module default for the closures below)
  rng = np.random.default_rng(0)
  labels = np.arange(train_size + heldout) % NUM_CLASSES
  images = rng.normal(size=(train_size + heldout, RES, RES, 3)).astype(np.float32) * 0.5
  images += labels[:, None, None, None].astype(np.float32) * 0.3
  onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
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
    return tf.data.Dataset.from_tensor_slices(
        (images[train_size:].astype(np.float32), onehot[train_size:])).map(
            lambda a, b: (tf.cast(a, dtype), b)).batch(per_replica)

  return types.SimpleNamespace(load_source=load_source, train_dataset=train_dataset,
                               heldout_dataset=heldout_dataset)


def tiny_plan(steps=8, lr=0.2, warmup=2, batch=8):
  from reproduce.train import engine
  return engine.StoredPlan(model=TINY, steps=steps, batch_size=batch, base_lr=lr,
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


def checkpoint_tensors(model_dir):
  """All tensors of the latest checkpoint in model_dir, by key."""
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


def run_script(script, env_extra=None, timeout=240, logical_cpus=None):
  prelude = ""
  if logical_cpus:
    prelude = textwrap.dedent(f"""
      import tensorflow as tf
      _cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          _cpu, [tf.config.LogicalDeviceConfiguration()] * {logical_cpus})
    """)
  header = f"import sys; sys.path.insert(0, {TESTS_DIR!r})\n" + prelude
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
  env.pop("TPU_NAME", None)
  return subprocess.run([sys.executable, "-c", header + textwrap.dedent(script)],
                        capture_output=True, text=True, timeout=timeout, env=env,
                        cwd=os.path.dirname(TESTS_DIR))


@pytest.fixture(scope="module")
def tiny():
  from model_defs import registry
  register_tiny_model()
  yield TINY
  registry.unregister(TINY)


def _one_device():
  from reproduce.train import strategy as strategy_lib
  return strategy_lib.make_strategy("one_device")


# ----------------------------------------------------------------------------------------
# In-process tests.


def test_run_writes_checkpoints_tensorboard_results(tiny, tmp_path):
  from reproduce.train import engine
  model_dir = str(tmp_path / "run")
  config = tiny_config(steps_per_execution=2, eval_every_steps=4, checkpoint_every_steps=4,
                       log_every_steps=2, ema_decay=0.99)
  lines = []
  results = engine.train(config, tiny_plan(steps=6), model_dir, _one_device(),
                         data_module=fake_data(), log=lines.append)
  on_disk = json.load(open(os.path.join(model_dir, "results.json")))
  assert on_disk["heldout_loss"] == pytest.approx(results["heldout_loss"])
  for key in ("schema", "model", "family", "params", "flops_per_image", "resolution", "dataset",
              "dataset_size", "num_classes", "epochs", "steps", "batch_size", "base_lr",
              "hardware", "planned_core_hours", "measured_core_hours", "heldout_loss",
              "heldout_top1", "finetune_top1", "plan", "config"):
    assert key in on_disk, key
  assert on_disk["steps"] == 6 and on_disk["eval_weights"] == "ema"
  assert on_disk["measured_core_hours"] > 0 and np.isfinite(on_disk["heldout_loss"])
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
  again = engine.train(config, tiny_plan(steps=6), model_dir, _one_device(),
                       data_module=fake_data(), verbose=False)
  assert again["heldout_loss"] == pytest.approx(results["heldout_loss"], rel=1e-6)


def test_config_mismatch_refused(tiny, tmp_path):
  from reproduce.train import engine
  model_dir = str(tmp_path / "run")
  engine.train(tiny_config(), tiny_plan(steps=2), model_dir, _one_device(),
               data_module=fake_data(), verbose=False)
  with pytest.raises(engine.ConfigMismatchError) as info:
    engine.train(tiny_config(weight_decay=0.5), tiny_plan(steps=2), model_dir, _one_device(),
                 data_module=fake_data(), verbose=False)
  message = str(info.value)
  assert "\n" not in message and "weight_decay" in message and "--allow_config_change" in message
  results = engine.train(tiny_config(weight_decay=0.5), tiny_plan(steps=4), model_dir,
                         _one_device(), data_module=fake_data(), verbose=False,
                         allow_config_change=True)
  assert results["steps"] == 4 and results["config"]["weight_decay"] == 0.5


def test_nan_stops_and_keeps_last_good_checkpoint(tiny, tmp_path):
  from reproduce.train import engine
  model_dir = str(tmp_path / "run")
  with pytest.raises(engine.TrainingDiverged, match="step 6") as info:
    engine.train(tiny_config(checkpoint_every_steps=2), tiny_plan(steps=10), model_dir,
                 _one_device(), data_module=fake_data(nan_from_step=5), verbose=False)
  assert "ckpt-4" in str(info.value)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  assert latest.endswith("ckpt-4")
  assert all(np.all(np.isfinite(t)) for t in checkpoint_tensors(model_dir).values()
             if np.issubdtype(t.dtype, np.floating))
  assert not os.path.exists(os.path.join(model_dir, "results.json"))


def test_loss_functions():
  from reproduce.train import engine
  logits = tf.constant([[2.0, 0.0, -1.0]])
  labels = tf.constant([[1.0, 0.0, 0.0]])
  log_p = tf.nn.log_softmax(logits).numpy()[0]
  smooth = 0.9 * np.array([1, 0, 0]) + 0.1 / 3
  np.testing.assert_allclose(engine.per_example_loss(labels, logits, "softmax", 0.1).numpy(),
                             [-(smooth * log_p).sum()], rtol=1e-6)
  z = logits.numpy()[0]
  target = 0.95 * np.array([1, 0, 0]) + 0.025
  bce = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
  np.testing.assert_allclose(engine.per_example_loss(labels, logits, "sigmoid", 0.05).numpy(),
                             [bce.sum()], rtol=1e-6)


# ----------------------------------------------------------------------------------------
# Subprocess tests: kill -9 / resume, and Mirrored on two logical CPUs.

_TRAIN_SCRIPT = """
  import json, sys
  import test_engine as h
  from reproduce.train import engine, strategy as strategy_lib
  h.register_tiny_model()
  model_dir, steps = sys.argv[1], int(sys.argv[2])
  config = h.tiny_config(checkpoint_every_steps=3, steps_per_execution=2, ema_decay=0.9)
  res = engine.train(config, h.tiny_plan(steps=steps), model_dir,
                     strategy_lib.make_strategy("one_device"), data_module=h.fake_data(),
                     verbose=False)
  print("RESULT", json.dumps([res["heldout_loss"], res["heldout_top1"], res["final_train_loss"]]))
"""


def _result_line(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])


def test_kill9_then_resume_equals_uninterrupted(tmp_path):
  killed_dir, clean_dir = str(tmp_path / "killed"), str(tmp_path / "clean")
  script = "\n".join([_TRAIN_SCRIPT.replace("sys.argv[1], int(sys.argv[2])", "MODEL_DIR, 11")])
  killed = run_script(script.replace("MODEL_DIR", repr(killed_dir)), {"REPRODUCE_CRASH_AT_STEP": "7"})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  # The crash came after steps 7-8 ran but before any save past step 6.
  assert tf.train.latest_checkpoint(os.path.join(killed_dir, "checkpoints")).endswith("ckpt-6")
  resumed = _result_line(run_script(script.replace("MODEL_DIR", repr(killed_dir))))
  clean = _result_line(run_script(script.replace("MODEL_DIR", repr(clean_dir))))
  assert resumed == clean
  a, b = checkpoint_tensors(killed_dir), checkpoint_tensors(clean_dir)
  assert a.keys() == b.keys() and any("seed_generator" in k or "rng" in k for k in a)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


_MIRRORED_SCRIPT = """
  import numpy as np
  import test_engine as h
  from reproduce.train import engine, strategy as strategy_lib
  h.register_tiny_model()
  import tempfile, os
  root = tempfile.mkdtemp()
  config = h.tiny_config(model_overrides={"dropout": 0.0}, agc_clipping=0.01, steps_per_execution=2,
                         deterministic=False)
  plan = h.tiny_plan(steps=6, lr=0.4, warmup=1)
  one = strategy_lib.make_strategy("one_device")
  mirrored = strategy_lib.make_strategy("mirrored")
  assert mirrored.num_replicas_in_sync == 2
  single = engine.train(config, plan, os.path.join(root, "one"), one, data_module=h.fake_data(),
                        verbose=False)
  multi = engine.train(config, plan, os.path.join(root, "two"), mirrored,
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


def run_cli(*args, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TPU_NAME", None)
  return subprocess.run([sys.executable, "-m", "reproduce.pretrain", f"--config={MINI_CONFIG}",
                         *args], capture_output=True, text=True, timeout=timeout, env=env,
                        cwd=os.path.dirname(TESTS_DIR))


def assert_one_line_error(proc, *needles, code=2):
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert proc.returncode == code, proc.stderr[-3000:]
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for needle in needles:
    assert needle in errors[0], errors[0]


def test_cli_unknown_model_one_line_exit_2(tmp_path):
  assert_one_line_error(run_cli(f"--model_dir={tmp_path / 'run'}", "--config.model=nfnet_nope"),
                        "nfnet_nope")


def _mini_config(**overrides):
  from reproduce.configs import pretrain_mini
  config = pretrain_mini.get_config()
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _error_line(error):
  from reproduce import pretrain
  return pretrain._first_line(error)


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
  from reproduce import pretrain
  kwargs = dict(dict(model_dir=str(tmp_path / "run"), strategy_kind="one_device"), **kwargs)
  with pytest.raises(pretrain._user_errors()) as info:
    pretrain.run(_mini_config(**overrides), **kwargs)
  assert type(info.value).__name__ == error_name
  line = _error_line(info.value)
  assert needle in line and "\n" not in line


@needs_data
def test_run_unusable_model_dir(tmp_path):
  from reproduce.train import engine, pretrain
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(engine.EngineError, match="model_dir") as info:
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
