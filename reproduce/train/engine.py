"""The pre-training loop: distributed steps, checkpoints, resume, TensorBoard, results.json.

``train(config, plan, model_dir)`` runs ``plan.steps`` steps of the NFNet recipe
(SGD Nesterov + AGC + coupled weight decay, warm-up + cosine, optional EMA) and
returns the results dict that it also writes to ``model_dir/results.json``.

Layout of ``model_dir`` (local path or gs://, all I/O through tf.io.gfile):

  config.json      resolved config; a restart with a different one is refused
  plan.json        the planning.Plan; a restart continues this plan
  checkpoints/     tf.train.CheckpointManager (state file written last = atomic)
  tensorboard/     tf.summary events (scalars + hparams)
  results.json     written once the run has finished

See docs/pretrain.md for the semantics (resume, determinism, tags).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import types
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from reproduce.train import optim
from reproduce.train import strategy as strategy_lib

RESULTS_SCHEMA = "nfnet-vit-scaling/results/v1"
CONFIG_FILE = "config.json"
PLAN_FILE = "plan.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
# Test hook: kill -9 this process right after the given step (an exact pre-emption).
CRASH_ENV = "REPRODUCE_CRASH_AT_STEP"

# Config keys and their defaults; configs in reproduce/configs set them explicitly.
DEFAULTS = dict(
    model="nfnet_mini_f0", model_overrides={}, dataset="digits", heldout_size=None,
    hardware="cpu", batch_size=16, resolution=None, epochs=None, budget_core_hours=None,
    base_lr=None, warmup_steps=None, momentum=0.9, nesterov=True,
    agc_clipping=0.01, agc_eps=1e-3, agc_exclude=(), weight_decay=1e-6,
    label_smoothing=0.1, loss="softmax", ema_decay=None, seed=0, augment=None,
    steps_per_execution=1, log_every_steps=10, eval_every_steps=0, eval_batch_size=None,
    checkpoint_every_steps=1000, checkpoint_every_secs=600.0, keep_checkpoints=3,
    divergence_factor=10.0, dtype_policy=None, jit_compile=False, deterministic=False,
)

# Plan fields that define the optimisation; the rest (throughput estimates) may vary.
PLAN_TRAINING_FIELDS = ("model", "steps", "batch_size", "base_lr", "warmup_steps", "decay",
                        "resolution", "dataset_size")


class EngineError(RuntimeError):
  """A user-facing problem with the run (bad model_dir, config mismatch); one line."""


class ConfigMismatchError(EngineError):
  """model_dir holds a run with a different config."""


class TrainingDiverged(RuntimeError):
  """The loss became NaN/inf or diverged; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------
# Small helpers.


def config_to_dict(config) -> dict:
  """Plain, JSON-normalised dict of a ConfigDict / dict / namespace, defaults filled in."""
  if hasattr(config, "to_dict"):
    raw = config.to_dict()
  elif isinstance(config, dict):
    raw = dict(config)
  else:
    raw = dict(vars(config))
  merged = dict(DEFAULTS)
  merged.update(raw)
  return json.loads(json.dumps(merged, sort_keys=True, default=_json_default))


def _json_default(value):
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, (set, tuple)):
    return list(value)
  if hasattr(value, "to_dict"):
    return value.to_dict()
  return str(value)


def _join(*parts: str) -> str:
  return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def _read_json(path: str):
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)


def write_json_atomic(path: str, data) -> None:
  """Writes JSON through a temporary file and a rename (no half-written file)."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _diff_keys(old: dict, new: dict) -> list[str]:
  keys = sorted(set(old) | set(new))
  return [k for k in keys if old.get(k, "<unset>") != new.get(k, "<unset>")]


class StoredPlan(types.SimpleNamespace):
  """A plan read back from plan.json (attribute access plus ``to_dict``)."""

  def to_dict(self) -> dict:
    return dict(vars(self))


def plan_to_dict(plan) -> dict:
  return json.loads(json.dumps(plan.to_dict(), sort_keys=True, default=_json_default))


def prepare_model_dir(model_dir: str, config_dict: dict, plan, allow_config_change: bool = False):
  """Checks/writes config.json and plan.json; returns the plan the run must follow.

  A fresh model_dir gets both files. A model_dir with the same config resumes on
  its stored plan (so a CPU throughput re-measurement cannot change the step
  count mid-run). A different config is refused unless ``allow_config_change``,
  which then replaces both files with the new ones.
  """
  try:
    tf.io.gfile.makedirs(model_dir)
    config_path, plan_path = _join(model_dir, CONFIG_FILE), _join(model_dir, PLAN_FILE)
    plan_dict = plan_to_dict(plan)
    if tf.io.gfile.exists(config_path):
      old_config = _read_json(config_path)
      changed = _diff_keys(old_config, config_dict)
      if changed and not allow_config_change:
        shown = ", ".join(f"{k}: {old_config.get(k)!r} -> {config_dict.get(k)!r}"
                          for k in changed[:4])
        more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
        raise ConfigMismatchError(
            f"model_dir {model_dir} holds a run with a different config ({shown}{more}); "
            "use a new --model_dir or pass --allow_config_change")
      if not changed and tf.io.gfile.exists(plan_path):
        stored = _read_json(plan_path)
        return StoredPlan(**stored)
    write_json_atomic(config_path, config_dict)
    write_json_atomic(plan_path, plan_dict)
    return plan
  except (tf.errors.OpError, OSError) as e:
    raise EngineError(f"cannot use model_dir {model_dir}: {str(e).splitlines()[0]}") from None


# ----------------------------------------------------------------------------------------
# Losses.


def per_example_loss(labels, logits, kind: str = "softmax", label_smoothing: float = 0.0):
  """Per-example loss of (one- or multi-hot) labels against logits (float32).

  softmax: cross-entropy against the labels normalised to sum 1 (multi-hot
    labels share the mass), smoothed as (1 - ls) * y + ls / C.
  sigmoid: sum over classes of binary cross-entropy (big_vision convention),
    targets smoothed towards 1/2 as (1 - ls) * y + ls / 2.
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.float32)
  num_classes = tf.cast(tf.shape(logits)[-1], tf.float32)
  if kind == "softmax":
    labels = labels / tf.maximum(tf.reduce_sum(labels, axis=-1, keepdims=True), 1e-8)
    if label_smoothing:
      labels = (1.0 - label_smoothing) * labels + label_smoothing / num_classes
    return -tf.reduce_sum(labels * tf.nn.log_softmax(logits), axis=-1)
  if kind == "sigmoid":
    if label_smoothing:
      labels = (1.0 - label_smoothing) * labels + 0.5 * label_smoothing
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits),
                         axis=-1)
  raise ValueError(f"unknown loss {kind!r}; use 'softmax' or 'sigmoid'")


def reference_loss(kind: str, num_classes: int) -> float:
  """Loss of a uniform predictor: the yardstick for divergence."""
  return math.log(num_classes) if kind == "softmax" else num_classes * math.log(2.0)


# ----------------------------------------------------------------------------------------
# The run.


def _data_module():
  from reproduce import data  # imported lazily: optional for unit tests
  return data


def _seed_states(model) -> list:
  """Keras SeedGenerator states (dropout, stochastic depth): not tracked by
  tf.train.Checkpoint through the model, so they are checkpointed explicitly."""
  return [v for v in model.non_trainable_variables if "seed_generator" in v.path]


def _build_model(config: dict, plan, num_classes: int):
  import model_defs
  overrides = dict(config.get("model_overrides") or {})
  spec = model_defs.get_spec(plan.model)
  if spec.family == "vit" and "image_size" not in overrides:
    overrides["image_size"] = int(plan.resolution)
  model = model_defs.build(plan.model, num_classes=num_classes, **overrides)
  if not model.built:
    model(tf.zeros((1, int(plan.resolution), int(plan.resolution), 3)), training=False)
  return model


def _flops_per_image(plan, num_classes: int, overrides: dict) -> float | None:
  try:
    import model_defs
    return float(model_defs.stats(plan.model, resolution=int(plan.resolution),
                                  num_classes=num_classes, **overrides).flops)
  except Exception:  # analytic counter missing for a test model: fall back to the plan
    value = getattr(plan, "forward_flops_per_image", None)
    return float(value) if value is not None else None


def _family(model_name: str) -> str | None:
  try:
    import model_defs
    return model_defs.get_spec(model_name).family
  except Exception:
    return None


def _hparams(config: dict, plan) -> dict:
  values = {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))}
  for key in ("steps", "epochs", "base_lr", "core_hours", "warmup_steps"):
    value = getattr(plan, key, None)
    if isinstance(value, (int, float)):
      values[f"plan_{key}"] = value
  return values


def _format_eta(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(config, plan, model_dir: str, strategy: tf.distribute.Strategy | None = None, *,
          allow_config_change: bool = False, data_dir: str | None = None,
          manual_dir: str | None = None, source=None, data_module=None,
          verbose: bool = True, log: Callable[[str], None] | None = None) -> dict:
  """Trains ``plan.model`` for ``plan.steps`` steps, resuming from ``model_dir``.

  Args:
    config: ConfigDict/dict of the experiment (keys of ``DEFAULTS``).
    plan: ``planning.Plan`` (model, steps, batch_size, base_lr, warmup_steps, resolution...).
    model_dir: run directory (local or gs://).
    strategy: a tf.distribute strategy; default ``make_strategy('auto')``.
    allow_config_change: accept a config different from model_dir/config.json.
    data_dir, manual_dir: passed to ``data.load_source``.
    source: an already loaded data source (skips ``load_source``).
    data_module: object with ``load_source``, ``train_dataset``, ``heldout_dataset``
      (default ``reproduce.data``).
    verbose: print progress lines.
    log: progress printer (default ``print`` with flush).

  Returns:
    The results dict (schema ``RESULTS_SCHEMA``), also written to results.json.

  Raises:
    EngineError / ConfigMismatchError: model_dir unusable or holding another config.
    TrainingDiverged: NaN/inf or diverging loss; the last good checkpoint is kept.
  """
  log = log or (lambda line: print(line, flush=True))
  say = log if verbose else (lambda line: None)
  run_start = time.time()
  data = data_module or _data_module()
  cfg = config_to_dict(config)
  plan = prepare_model_dir(model_dir, cfg, plan, allow_config_change)
  strategy = strategy or strategy_lib.make_strategy("auto")
  num_replicas = strategy.num_replicas_in_sync
  global_batch = int(plan.batch_size)
  if global_batch % num_replicas:
    raise EngineError(f"batch_size {global_batch} is not divisible by {num_replicas} replicas")
  resolution = int(plan.resolution)
  total_steps = int(plan.steps)

  if cfg["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  keras.utils.set_random_seed(int(cfg["seed"]))
  policy = cfg["dtype_policy"] or strategy_lib.policy_for(strategy)
  keras.mixed_precision.set_global_policy(policy)

  if source is None:
    source = data.load_source(cfg["dataset"], data_dir=data_dir, manual_dir=manual_dir,
                              heldout_size=cfg["heldout_size"], seed=int(cfg["seed"]))
  num_classes = int(source.num_classes)
  loss_kind = cfg["loss"]
  if loss_kind not in ("softmax", "sigmoid"):
    raise EngineError(f"config.loss={loss_kind!r} is unknown; use 'softmax' or 'sigmoid'")

  schedule = optim.schedule_from_plan(plan)
  with strategy.scope():
    model = _build_model(cfg, plan, num_classes)
    optimizer = optim.nfnet_sgd(
        schedule, momentum=float(cfg["momentum"]),
        nesterov=bool(cfg["nesterov"]), clipping=float(cfg["agc_clipping"] or 0.0),
        eps=float(cfg["agc_eps"]), exclude=list(cfg["agc_exclude"] or []),
        exclude_variables=optim.classifier_kernels(model, num_classes),
        weight_decay=float(cfg["weight_decay"] or 0.0), ema_decay=cfg["ema_decay"])
    optimizer.build(model.trainable_variables)
    elapsed_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed_seconds")
  rng_states = {f"state_{i}": v for i, v in enumerate(_seed_states(model))}
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                   elapsed_seconds=elapsed_seconds,
                                   rng=tf.train.Checkpoint(**rng_states))
  manager = tf.train.CheckpointManager(checkpoint, _join(model_dir, CHECKPOINT_DIR),
                                       max_to_keep=int(cfg["keep_checkpoints"]))
  resumed_from = manager.latest_checkpoint
  if resumed_from:
    checkpoint.restore(resumed_from).assert_existing_objects_matched()
  step = int(optimizer.iterations.numpy())
  elapsed_before = float(elapsed_seconds.numpy())
  if resumed_from:
    say(f"resumed from {resumed_from} at step {step}/{total_steps}")

  # --- input pipelines (per host; each replica gets batch_size / replicas) ---
  input_dtype = tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32

  def train_fn(ctx):
    return data.train_dataset(source, global_batch_size=global_batch, resolution=resolution,
                              seed=int(cfg["seed"]), start_step=step, input_context=ctx,
                              augment=dict(cfg["augment"] or {}) or None, dtype=input_dtype)

  eval_batch = int(cfg["eval_batch_size"] or global_batch)
  eval_batch -= eval_batch % num_replicas

  def heldout_fn(ctx):
    return data.heldout_dataset(source, global_batch_size=eval_batch, resolution=resolution,
                                input_context=ctx, dtype=input_dtype)

  # --- step functions ---
  label_smoothing = float(cfg["label_smoothing"] or 0.0)
  jit = bool(cfg["jit_compile"]) and strategy_lib.supports_jit(strategy) \
      and not strategy_lib.is_tpu(strategy)

  def replica_step(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      losses = per_example_loss(labels, logits, loss_kind, label_smoothing)
      # Sum / global batch: the optimizer's SUM all-reduce then gives the mean.
      loss = tf.reduce_sum(losses) / global_batch
      if model.losses:
        loss += tf.add_n([tf.cast(l, tf.float32) for l in model.losses]) / num_replicas
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    stats = optimizer.agc_statistics()
    return loss, stats["grad_norm"], stats["agc_clip_fraction"]

  if jit:
    replica_step = tf.function(replica_step, jit_compile=True)

  @tf.function
  def train_chunk(iterator, num_steps):
    loss_sum = tf.constant(0.0, tf.float32)
    grad_norm = tf.constant(0.0, tf.float32)
    clip_fraction = tf.constant(0.0, tf.float32)
    for _ in tf.range(num_steps):
      images, labels = next(iterator)[:2]
      loss, norm, clip = strategy.run(replica_step, args=(images, labels))
      loss_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
      # Identical on every replica (computed from the reduced gradient).
      grad_norm = strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)
      clip_fraction = strategy.reduce(tf.distribute.ReduceOp.MEAN, clip, axis=None)
    return loss_sum / tf.cast(num_steps, tf.float32), grad_norm, clip_fraction

  def replica_eval(batch):
    images, labels = batch[0], batch[1]
    logits = tf.cast(model(images, training=False), tf.float32)
    losses = per_example_loss(labels, logits, loss_kind, 0.0)
    hits = tf.gather(tf.cast(labels, tf.float32), tf.argmax(logits, axis=-1), batch_dims=1) > 0
    weights = tf.cast(batch[2], tf.float32) if len(batch) > 2 else tf.ones_like(losses)
    return (tf.reduce_sum(losses * weights), tf.reduce_sum(tf.cast(hits, tf.float32) * weights),
            tf.reduce_sum(weights))

  @tf.function
  def eval_step(batch):
    outputs = strategy.run(replica_eval, args=(batch,))
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, o, axis=None) for o in outputs]

  heldout_cache = {}

  def evaluate() -> dict:
    if "dataset" not in heldout_cache:
      heldout_cache["dataset"] = strategy.distribute_datasets_from_function(heldout_fn)
    totals = np.zeros(3, np.float64)
    with optim.swap_in_ema(optimizer):
      for batch in heldout_cache["dataset"]:
        totals += np.array([float(t) for t in eval_step(tuple(batch))])
    count = max(totals[2], 1.0)
    return {"loss": totals[0] / count, "top1": totals[1] / count, "examples": int(totals[2])}

  # --- summaries ---
  writer = tf.summary.create_file_writer(_join(model_dir, TENSORBOARD_DIR))
  num_cores = int(getattr(plan, "num_cores", None) or num_replicas)

  def core_hours_now() -> float:
    return (elapsed_before + time.time() - run_start) * num_cores / 3600.0

  if not resumed_from:
    try:
      from tensorboard.plugins.hparams import api as hp
      with writer.as_default():
        hp.hparams_config(hparams=[hp.HParam(k) for k in _hparams(cfg, plan)],
                          metrics=[hp.Metric("heldout/loss"), hp.Metric("heldout/top1")])
        hp.hparams(_hparams(cfg, plan), trial_id=os.path.basename(model_dir.rstrip("/")))
    except ImportError:  # tensorboard is a dependency; keep training if it is broken
      pass

  def write_eval(at_step: int, metrics: dict) -> None:
    with writer.as_default():
      tf.summary.scalar("heldout/loss", metrics["loss"], step=at_step)
      tf.summary.scalar("heldout/top1", metrics["top1"], step=at_step)
      # Same curve against compute (micro core hours as the integer x-axis).
      tf.summary.scalar("heldout_vs_core_hours/loss", metrics["loss"],
                        step=int(round(core_hours_now() * 1e6)))
    writer.flush()

  def save(at_step: int) -> None:
    elapsed_seconds.assign(elapsed_before + time.time() - run_start)
    manager.save(checkpoint_number=at_step)

  # --- the loop ---
  crash_at = int(os.environ.get(CRASH_ENV, "0") or 0)
  spe = max(1, int(cfg["steps_per_execution"]))
  boundaries = [spe] + [int(cfg[k]) for k in ("log_every_steps", "eval_every_steps",
                                                "checkpoint_every_steps") if cfg[k]]
  if crash_at:
    boundaries.append(crash_at)
  reference = reference_loss(loss_kind, num_classes)
  divergence_factor = float(cfg["divergence_factor"] or 0.0)
  last_save_time = time.time()
  saved_step = step if resumed_from else -1
  train_loss = float("nan")
  metrics = None
  iterator = iter(strategy.distribute_datasets_from_function(train_fn)) if step < total_steps else None

  while step < total_steps:
    chunk_end = min([total_steps] + [(step // b + 1) * b for b in boundaries])
    chunk_start_time = time.time()
    loss, grad_norm, clip_fraction = train_chunk(iterator, tf.constant(chunk_end - step))
    train_loss, grad_norm, clip_fraction = float(loss), float(grad_norm), float(clip_fraction)
    chunk_seconds = time.time() - chunk_start_time
    previous_step, step = step, chunk_end
    if not (math.isfinite(train_loss) and math.isfinite(grad_norm)):
      raise TrainingDiverged(
          f"loss is {train_loss} (gradient norm {grad_norm}) at step {step}: stopped without "
          f"saving; last good checkpoint: {manager.latest_checkpoint or 'none'}")
    if divergence_factor and train_loss > divergence_factor * reference:
      raise TrainingDiverged(
          f"loss {train_loss:.4g} at step {step} exceeds {divergence_factor:g} x the "
          f"uniform-guess loss {reference:.4g}: stopped without saving; last good checkpoint: "
          f"{manager.latest_checkpoint or 'none'}")
    images_per_second = (step - previous_step) * global_batch / max(chunk_seconds, 1e-9)
    learning_rate = float(schedule(step - 1))  # the LR of the chunk's last update
    core_hours = core_hours_now()
    with writer.as_default():
      tf.summary.scalar("train/loss", train_loss, step=step)
      tf.summary.scalar("train/learning_rate", learning_rate, step=step)
      tf.summary.scalar("train/grad_norm", grad_norm, step=step)
      tf.summary.scalar("train/agc_clip_fraction", clip_fraction, step=step)
      tf.summary.scalar("train/images_per_second", images_per_second, step=step)
      tf.summary.scalar("train/core_hours", core_hours, step=step)
    log_every = int(cfg["log_every_steps"] or 0)
    if log_every and (step % log_every == 0 or step == total_steps):
      eta = (total_steps - step) * global_batch / max(images_per_second, 1e-9)
      say(f"step {step}/{total_steps} loss {train_loss:.4f} lr {learning_rate:.4g} "
          f"grad_norm {grad_norm:.3g} clip {clip_fraction:.3f} {images_per_second:.1f} img/s "
          f"core_h {core_hours:.4g} ETA {_format_eta(eta)}")
    eval_every = int(cfg["eval_every_steps"] or 0)
    if eval_every and step % eval_every == 0 and step < total_steps:
      metrics = evaluate()
      write_eval(step, metrics)
      say(f"step {step}/{total_steps} heldout loss {metrics['loss']:.4f} "
          f"top1 {metrics['top1']:.4f}")
    ckpt_every = int(cfg["checkpoint_every_steps"] or 0)
    secs = float(cfg["checkpoint_every_secs"] or 0)
    if (ckpt_every and step % ckpt_every == 0) or (secs and time.time() - last_save_time >= secs):
      save(step)
      saved_step, last_save_time = step, time.time()
    if crash_at and step >= crash_at:
      writer.flush()
      os.kill(os.getpid(), signal.SIGKILL)

  if saved_step != step:
    save(step)
  metrics = evaluate()
  write_eval(step, metrics)
  wall_seconds = elapsed_before + time.time() - run_start
  measured_core_hours = wall_seconds * num_cores / 3600.0
  with writer.as_default():
    tf.summary.scalar("train/core_hours", measured_core_hours, step=step)
  writer.flush()
  say(f"done: step {step}/{total_steps} heldout loss {metrics['loss']:.4f} "
      f"top1 {metrics['top1']:.4f} core hours {measured_core_hours:.4g}")

  overrides = dict(cfg.get("model_overrides") or {})
  results = {
      "schema": RESULTS_SCHEMA,
      "model": plan.model, "family": _family(plan.model),
      "params": int(model.count_params()),
      "flops_per_image": _flops_per_image(plan, num_classes, overrides),
      "resolution": resolution,
      "dataset": cfg["dataset"], "dataset_size": int(getattr(source, "train_size", 0) or
                                                      getattr(plan, "dataset_size", 0)),
      "num_classes": num_classes,
      "epochs": float(getattr(plan, "epochs", step * global_batch / max(
          getattr(source, "train_size", 1) or 1, 1))),
      "steps": step, "batch_size": global_batch, "base_lr": float(plan.base_lr),
      "hardware": getattr(plan, "hardware", cfg["hardware"]),
      "planned_core_hours": float(getattr(plan, "core_hours", float("nan"))),
      "measured_core_hours": measured_core_hours,
      "wall_seconds": wall_seconds,
      "heldout_loss": metrics["loss"], "heldout_top1": metrics["top1"],
      "heldout_examples": metrics["examples"],
      "eval_weights": "ema" if cfg["ema_decay"] else "raw",
      "final_train_loss": train_loss,
      "finetune_top1": None,
      "num_replicas": num_replicas, "strategy": type(strategy).__name__,
      "dtype_policy": policy,
      "plan": plan_to_dict(plan),
      "config": cfg,
  }
  write_json_atomic(_join(model_dir, RESULTS_FILE), results)
  return results
