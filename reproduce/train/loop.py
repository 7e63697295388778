"""The training loop: builds a run from its parts, restores it, trains it in chunks, and
finishes it with an evaluation, a checkpoint and ``results.json``.

``train(config, plan, model_dir)`` runs ``plan.steps`` steps of the NFNet recipe (SGD
Nesterov + AGC + coupled weight decay, warm-up + cosine, optional EMA). A second script (a
fine-tune) reuses it with its own initialisation or optimizer (``model_fn``,
``optimizer_fn``) and data (``source``, ``data_module``), or composes the parts itself:
``rundir``, ``steps``, ``inputs``, ``checkpoints``, ``clock``, ``summaries``, ``run_record``.
See docs/pretrain.md for resume, determinism and the TensorBoard tags.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from reproduce import data
from reproduce.train import budgeting
from reproduce.train import checkpoints as checkpoints_lib
from reproduce.train import clock as clock_lib
from reproduce.train import inputs
from reproduce.train import lock
from reproduce.train import lr_schedule
from reproduce.train import losses
from reproduce.train import optim
from reproduce.train import preemption
from reproduce.train import run_record
from reproduce.train import rundir
from reproduce.train import builders
from reproduce.train import steps
from reproduce.train import strategy as strategy_lib
from reproduce.train import summaries as summaries_lib

# on_step(step, logs) after every chunk; logs: loss, learning_rate, grad_norm,
# agc_clip_fraction, images_per_second, core_hours, total_steps (+ heldout when evaluated).
Hook = Callable[[int, dict], None]
ModelFn = Callable[[dict, object, int], keras.Model]          # (config, plan, num_classes)
OptimizerFn = Callable[[dict, object, keras.Model, int], object]  # (config, schedule, model, C)


# Config keys that shape only a run's plan or its bookkeeping: runs that differ in these alone
# can share one ``Program`` (the same traced train step).
PER_RUN_KEYS = ("budget_core_hours", "epochs", "mfu", "images_per_second_per_core", "base_lr",
                "data_seed",
                "warmup_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                "checkpoint_every_secs", "keep_checkpoints", "divergence_factor",
                "throughput_cache", "init", "provenance")
# Plan fields the traced program depends on.
PROGRAM_PLAN_FIELDS = ("model", "batch_size", "resolution")


def program_key(config: dict, plan) -> dict:
  """What a ``Program`` is built for: the config less ``PER_RUN_KEYS``, and the plan's
  model, batch size and resolution."""
  key = {k: v for k, v in config.items() if k not in PER_RUN_KEYS}
  key.update({f"plan.{k}": getattr(plan, k, None) for k in PROGRAM_PLAN_FIELDS})
  return key


@dataclasses.dataclass
class Program:
  """What a run traces and evaluates: model, optimizer, schedule, train chunk, evaluator.

  Built once per model and recipe by ``build_program``; ``reset`` readies it for another run
  that differs only in ``PER_RUN_KEYS`` and the plan's length and LR (another budget or LR
  of a sweep): the initial weights and optimizer state come back and the schedule takes the
  plan, so the traced train step is reused instead of traced again.
  """
  key: dict
  strategy: tf.distribute.Strategy
  dtype_policy: str
  data_module: object
  source: object
  model: keras.Model
  optimizer: object
  schedule: lr_schedule.PlanSchedule
  train_chunk: Callable
  evaluate: steps.Evaluator
  initial_state: list
  # (dataset, data seed) -> its training batches from step 0, built once (``train_iterator``).
  train_datasets: dict = dataclasses.field(default_factory=dict)

  def reset(self, config: dict, plan) -> None:
    """Initial weights, fresh optimizer state and ``plan``'s schedule; raises
    ``rundir.EngineError`` for a run this program was not built for."""
    key = program_key(config, plan)
    if key != self.key:
      changed = sorted(k for k in set(key) | set(self.key) if key.get(k) != self.key.get(k))
      raise rundir.EngineError(f"this program was built for another recipe: {changed} differ")
    for variable, value in zip(self.variables(), self.initial_state):
      variable.assign(value)
    self.schedule.set(plan)

  def train_iterator(self, config: dict, plan, start_step: int):
    """An iterator over ``config``'s training batches from ``start_step`` on.

    A run from step 0 re-iterates the dataset an earlier run of the same dataset and data
    seed built: building one traces its map functions, 0.1-0.2 s of each of the study's
    runs of a few seconds; a second ``iter`` gives the same batches (``inputs.train_batches``).
    """
    def build(step):
      return inputs.train_batches(self.strategy, self.data_module, self.source, config, plan,
                                  step, inputs.input_dtype(self.dtype_policy))

    if start_step:  # a resumed run: built for its step, not kept
      return iter(build(start_step))
    key = (config["dataset"], inputs.data_seed(config))
    if key not in self.train_datasets:
      self.train_datasets[key] = build(0)
    return iter(self.train_datasets[key])

  def variables(self) -> list:
    return list(self.model.variables) + list(self.optimizer.variables)

  def for_source(self, config: dict, plan, source) -> "Program":
    """This program fed by another dataset of the same classes (a transfer fine-tune): the
    same model, optimizer and traced train step, with ``source``'s held-out evaluator.

    The train step takes its batches from an iterator argument, so a dataset of the same
    image shape and classes does not trace it again. ``config`` may differ from the
    program's recipe only in ``dataset`` and ``PER_RUN_KEYS``; anything else raises
    ``rundir.EngineError``.
    """
    key = program_key(config, plan)
    changed = sorted(k for k in set(key) | set(self.key)
                     if k != "dataset" and key.get(k) != self.key.get(k))
    if changed:
      raise rundir.EngineError(f"this program was built for another recipe: {changed} differ")
    if int(source.num_classes) != int(self.source.num_classes):
      raise rundir.EngineError(f"{config['dataset']} has {source.num_classes} classes, this "
                               f"program's head {self.source.num_classes}")
    heldout_fn = inputs.heldout_dataset_fn(self.strategy, self.data_module, source, config,
                                           plan, inputs.input_dtype(self.dtype_policy))
    evaluator = steps.Evaluator(self.strategy, self.model, self.optimizer, config["loss"],
                                heldout_fn)
    return dataclasses.replace(self, key=key, source=source, evaluate=evaluator)


def build_program(config: dict, plan, strategy, *, source=None, data_module=None,
                  data_dir=None, manual_dir=None, model_fn: ModelFn | None = None,
                  optimizer_fn: OptimizerFn | None = None,
                  step_fn: Callable | None = None) -> Program:
  """Builds (does not yet trace) the program of ``plan.model`` on ``config``'s recipe."""
  strategy, policy = set_up_runtime(config, strategy, plan)
  data_module = data_module or data
  if source is None:
    source = inputs.open_source(data_module, config, data_dir, manual_dir)
  num_classes = int(source.num_classes)
  with strategy.scope():
    schedule = lr_schedule.schedule_from_plan(plan)
    model = (model_fn or builders.build_model)(config, plan, num_classes)
    optimizer = (optimizer_fn or builders.build_optimizer)(config, schedule, model, num_classes)
  train_chunk = steps.make_train_chunk(
      strategy, model, optimizer, loss=config["loss"],
      label_smoothing=float(config["label_smoothing"] or 0.0),
      global_batch_size=int(plan.batch_size), jit_compile=steps.use_jit(config, strategy),
      step_fn=step_fn)
  heldout_fn = inputs.heldout_dataset_fn(strategy, data_module, source, config, plan,
                                         inputs.input_dtype(policy))
  evaluator = steps.Evaluator(strategy, model, optimizer, config["loss"], heldout_fn)
  initial = [np.array(v.numpy()) for v in list(model.variables) + list(optimizer.variables)]
  return Program(program_key(config, plan), strategy, policy, data_module, source, model,
                 optimizer, schedule, train_chunk, evaluator, initial)


@dataclasses.dataclass
class Run:
  """The parts of one run: its ``Program`` and its own directory, clock and budget check."""
  config: dict
  plan: object
  directory: rundir.RunDirectory
  program: Program
  checkpoints: checkpoints_lib.RunCheckpoints
  summaries: summaries_lib.Summaries
  clock: clock_lib.RunClock
  say: Callable[[str], None]
  budget: budgeting.BudgetCheck

  def check_budget(self, step: int, final: bool) -> float | None:
    """Training/planned core hours so far (projected to the plan); warns once when off."""
    return self.budget.check(step, self.clock.totals()["training"], step, self.num_cores,
                             final)

  @property
  def num_cores(self) -> int:
    return int(getattr(self.plan, "num_cores", None)
               or self.program.strategy.num_replicas_in_sync)

  def core_hours(self) -> float:
    return self.clock.wall_seconds() * self.num_cores / 3600.0


def set_up_runtime(config: dict, strategy: tf.distribute.Strategy | None, plan):
  """Determinism, seeds and precision policy; returns (strategy, dtype policy)."""
  strategy = strategy or strategy_lib.make_strategy("auto")
  if int(plan.batch_size) % strategy.num_replicas_in_sync:
    raise rundir.EngineError(f"batch_size {plan.batch_size} is not divisible by "
                             f"{strategy.num_replicas_in_sync} replicas")
  if config["loss"] not in losses.LOSSES:
    raise rundir.EngineError(
        f"config.loss={config['loss']!r} is unknown; use 'softmax' or 'sigmoid'")
  if config["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  keras.utils.set_random_seed(int(config["seed"]))
  policy = config["dtype_policy"] or strategy_lib.policy_for(strategy)
  keras.mixed_precision.set_global_policy(policy)
  return strategy, policy


def build_run(config: dict, plan, model_dir: str, strategy, *, source=None, data_module=None,
              data_dir=None, manual_dir=None, model_fn: ModelFn | None = None,
              optimizer_fn: OptimizerFn | None = None, clock=None, say=print,
              warn=print, step_fn: Callable | None = None,
              program: Program | None = None) -> Run:
  """Builds every part of a run (nothing restored, nothing trained yet); with ``program``,
  resets and reuses it instead of building the model and its train step."""
  if program is None:
    program = build_program(config, plan, strategy, source=source, data_module=data_module,
                            data_dir=data_dir, manual_dir=manual_dir, model_fn=model_fn,
                            optimizer_fn=optimizer_fn, step_fn=step_fn)
  else:
    program.reset(config, plan)
  directory = rundir.RunDirectory(model_dir)
  checkpoints = checkpoints_lib.RunCheckpoints(
      directory.checkpoint_dir, program.model, program.optimizer,
      keep=int(config["keep_checkpoints"]), every_steps=int(config["checkpoint_every_steps"]),
      every_secs=float(config["checkpoint_every_secs"] or 0.0))
  summaries = summaries_lib.Summaries(directory.tensorboard_dir)
  return Run(config, plan, directory, program, checkpoints, summaries,
             clock or clock_lib.RunClock(), say,
             budgeting.BudgetCheck(plan, warn, summaries.write_budget_warning))


def chunk_end(step: int, total_steps: int, config: dict) -> int:
  """The next step at which the host must act: log, evaluate, checkpoint or finish."""
  every = [max(1, int(config["steps_per_execution"]))]
  every += [int(config[k]) for k in ("log_every_steps", "eval_every_steps",
                                     "checkpoint_every_steps") if config[k]]
  return min([total_steps] + [(step // b + 1) * b for b in every])


def run_chunk(run: Run, iterator, step: int, end: int) -> dict:
  """Trains steps ``step+1 .. end``; returns the chunk's logs (divergence raises)."""
  start = time.time()
  loss, grad_norm, clip_fraction = run.program.train_chunk(iterator, tf.constant(end - step))
  loss, grad_norm, clip_fraction = float(loss), float(grad_norm), float(clip_fraction)
  seconds = time.time() - start
  run.clock.add_chunk(end - step, seconds)
  num_classes = int(run.program.source.num_classes)
  losses.check_divergence(end, loss, grad_norm,
                          losses.reference_loss(run.config["loss"], num_classes),
                          float(run.config["divergence_factor"] or 0.0), run.checkpoints.latest)
  last_update_lr = float(run.program.schedule(end - 1))
  return {"loss": loss, "grad_norm": grad_norm, "agc_clip_fraction": clip_fraction,
          "learning_rate": last_update_lr,
          "images_per_second": (end - step) * int(run.plan.batch_size) / max(seconds, 1e-9),
          "core_hours": run.core_hours(), "total_steps": int(run.plan.steps)}


def evaluate(run: Run, step: int) -> dict:
  """Held-out metrics at ``step``, written to TensorBoard."""
  with run.clock.measure("evaluation"):
    metrics = run.program.evaluate()
  run.summaries.write_eval(step, metrics, run.core_hours())
  return metrics


def after_chunk(run: Run, step: int, logs: dict, hooks: Sequence[Hook]) -> None:
  """Summaries, progress line, periodic evaluation and checkpoint, then the hooks."""
  config, total = run.config, int(run.plan.steps)
  run.summaries.write_train(step, logs)
  log_every = int(config["log_every_steps"] or 0)
  if log_every and (step % log_every == 0 or step == total):
    run.say(summaries_lib.progress_line(step, total, logs, int(run.plan.batch_size)))
    if run.clock.chunks_this_attempt > 1:  # the first chunk alone is mostly tracing
      run.check_budget(step, final=False)
  eval_every = int(config["eval_every_steps"] or 0)
  if eval_every and step % eval_every == 0 and step < total:
    logs["heldout"] = evaluate(run, step)
    run.say(summaries_lib.eval_line(step, total, logs["heldout"]))
  with run.clock.measure("checkpointing"):
    run.checkpoints.save_if_due(step, run.clock)
  for hook in hooks:
    hook(step, logs)


def stop_if_preempted(run: Run, step: int, watch: preemption.Watch | None) -> None:
  """After SIGTERM: a checkpoint at ``step``, then ``Preempted``."""
  if watch is None or not watch.requested:
    return
  with run.clock.measure("checkpointing"):
    run.checkpoints.save(step, run.clock)
  run.summaries.flush()
  raise preemption.Preempted(step, run.checkpoints.latest)


def run_chunks(run: Run, step: int, hooks: Sequence[Hook] = (),
               watch: preemption.Watch | None = None) -> float:
  """Trains from ``step`` to ``plan.steps``; returns the last chunk's training loss.

  With a ``preemption.Watch``, a SIGTERM stops it after the current chunk with a checkpoint.
  """
  total = int(run.plan.steps)
  if step >= total:  # resumed after the final checkpoint: its loss was saved with it
    return float(run.checkpoints.train_loss.numpy())
  with run.clock.measure("startup"):  # the input pipeline's set-up
    iterator = [run.program.train_iterator(run.config, run.plan, step)]  # released later
  while step < total:
    end = chunk_end(step, total, run.config)
    logs = run_chunk(run, iterator[0], step, end)
    step, train_loss = end, logs["loss"]
    run.checkpoints.train_loss.assign(train_loss)
    after_chunk(run, step, logs, hooks)
    stop_if_preempted(run, step, watch)
  inputs.release_in_background(iterator)
  return train_loss


def finish(run: Run, step: int, train_loss: float) -> dict:
  """Final checkpoint and evaluation; writes and returns the results record."""
  with run.clock.measure("checkpointing"):
    run.checkpoints.save(step, run.clock)
  metrics = evaluate(run, step)
  seconds = run.clock.totals()
  run.summaries.write_core_hours(step, seconds["wall"] * run.num_cores / 3600.0)
  program = run.program
  summary = run_record.RunSummary(program.model, program.source, program.strategy,
                                  program.dtype_policy, step, metrics, train_loss, seconds,
                                  run.num_cores)
  record = run_record.record(run.config, run.plan, summary)
  run.directory.write_record(record)
  run.say(f"done: step {step}/{run.plan.steps} heldout loss {metrics['loss']:.4f} "
          f"top1 {metrics['top1']:.4f} core hours {record['measured_core_hours']:.4g}")
  run.say(run_record.budget_line(record, seconds))
  run.check_budget(step, final=True)
  run.summaries.close()
  return record


@lock.holds_model_dir_lock
def train(config, plan, model_dir: str, strategy: tf.distribute.Strategy | None = None, *,
          allow_config_change: bool = False, data_dir: str | None = None,
          manual_dir: str | None = None, source=None, data_module=None,
          model_fn: ModelFn | None = None, optimizer_fn: OptimizerFn | None = None,
          hooks: Sequence[Hook] = (), verbose: bool = True,
          log: Callable[[str], None] | None = None, step_fn: Callable | None = None,
          program: Program | None = None,
          initialise: Callable[[keras.Model, int], None] | None = None) -> dict:
  """Trains ``plan.model`` for ``plan.steps`` steps, resuming from ``model_dir``.

  Args:
    config: ConfigDict/dict of the experiment; missing keys come from configs/base.py.
    plan: a planning Plan (model, steps, batch_size, base_lr, warmup_steps, resolution...).
    model_dir: run directory (local or gs://); see ``rundir``.
    strategy: a tf.distribute strategy; default ``strategy.make_strategy('auto')``.
    allow_config_change: accept a config different from model_dir/config.json.
    data_dir, manual_dir: passed to ``data_module.load_source``.
    source: an already loaded data source (skips ``load_source``).
    data_module: ``load_source``, ``train_dataset``, ``heldout_dataset`` (default reproduce.data);
      ``heldout_dataset`` must give the same batches on every pass (a small held-out set is
      kept after its first pass: ``steps.Evaluator``).
    model_fn: ``(config, plan, num_classes) -> keras.Model`` (default ``builders.build_model``);
      called in the strategy scope, before a checkpoint is restored.
    optimizer_fn: ``(config, schedule, model, num_classes) -> built optimizer`` (default
      ``builders.build_optimizer``).
    hooks: ``on_step(step, logs)`` callables run after every chunk (progress, tests).
    verbose: print progress lines; log: the printer (default ``print`` with flush).
    step_fn: replaces the plain gradient step (``steps.make_train_chunk``; e.g. SAM).
    program: a ``build_program`` result to reuse (reset to this plan, not traced again);
      model_fn, optimizer_fn, step_fn, source and data_module are then the program's.
    initialise: ``(model, num_classes)`` sets the starting weights (e.g. a fine-tune's
      pre-trained body) before a checkpoint, if any, is restored.

  Returns:
    The results record, also written to ``model_dir/results.json``.

  Raises:
    rundir.EngineError / ConfigMismatchError: model_dir unusable or holding another config.
    losses.TrainingDiverged: NaN/inf or diverging loss; the last good checkpoint is kept.
    preemption.Preempted: SIGTERM arrived; a checkpoint at the current step was written.
  """
  clock = clock_lib.RunClock()
  log = log or (lambda line: print(line, flush=True))
  say = log if verbose else (lambda line: None)  # warnings go to ``log`` even when quiet
  config = rundir.config_to_dict(config)
  plan = rundir.RunDirectory(model_dir).prepare(config, plan, allow_config_change)
  run = build_run(config, plan, model_dir, strategy, source=source, data_module=data_module,
                  data_dir=data_dir, manual_dir=manual_dir, model_fn=model_fn,
                  optimizer_fn=optimizer_fn, clock=clock, say=say, warn=log,
                  step_fn=step_fn, program=program)
  program = run.program
  if initialise is not None:
    initialise(program.model, int(program.source.num_classes))
    optim.restart_ema(program.optimizer)
  resumed_from = run.checkpoints.restore(clock)
  step = int(program.optimizer.iterations.numpy())
  if resumed_from:
    say(f"resumed from {resumed_from} at step {step}/{plan.steps}")
  else:
    run.summaries.write_hparams(config, plan, summaries_lib.trial_id(model_dir))
  clock.startup_done()
  with preemption.Watch() as watch:
    train_loss = run_chunks(run, step, hooks, watch)
  return finish(run, int(program.optimizer.iterations.numpy()), train_loss)
