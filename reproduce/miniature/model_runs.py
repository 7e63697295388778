"""One model's share of the study, run inside one worker process (``workers.model_job``).

Order: measure (or read the cached rate), the LR sweeps from the smallest budget up, the
largest budget at the LR the sweeps predict, then one fine-tune per budget of its best run.
Every run and fine-tune goes through the same ``loop.Program``: one trace per model.
"""

from __future__ import annotations

import contextlib
import gc
import time

from reproduce.core import cli
from reproduce.core import fileio
from reproduce.miniature import grid as grid_lib
from reproduce.miniature import workers


def _quiet(line: str) -> None:
  del line


@contextlib.contextmanager
def _collected_between_runs():
  """No garbage collection inside a run, one collection after it. Even with the program
  frozen (``_freeze_traced_graphs``), automatic collections took 1.3 s of a 9 s run."""
  gc.disable()
  try:
    yield
  finally:
    gc.enable()
    gc.collect()


def _freeze_traced_graphs() -> None:
  """Moves every object alive now (the traced program: millions of graph objects) out of the
  garbage collector's reach. Its full collections otherwise paused each run for seconds:
  measured 5.9 s -> 2.2 s of wall for a 2.5 core-second vit_mini_m run."""
  gc.collect()
  gc.freeze()


class ModelRuns:
  """The runs of one ``ModelGrid``; ``cost`` collects core-seconds by kind."""

  def __init__(self, model_grid: grid_lib.ModelGrid, settings: workers.Settings, events):
    from reproduce import data  # pylint: disable=g-import-not-at-top
    from reproduce.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    start = time.time()
    self.grid, self.settings, self.events = model_grid, settings, events
    self.model = model_grid.model
    self.source = data.load_source("digits", data_dir=settings.data_dir, seed=settings.seed)
    self.strategy = strategy_lib.make_strategy("one_device")
    self.program = None
    self.frozen = False  # the traced program is out of the garbage collector's reach
    self.rate = None
    self.cost = {"job setup": time.time() - start}

  # -- throughput ------------------------------------------------------------------------

  def _rate_path(self) -> str:
    config = grid_lib.family_config(self.model)
    # The recipe's optimizer and XLA setting are part of a measurement's identity.
    key = (f"{self.model}@{config.optimizer}{'_xla' if config.jit_compile else ''}_batch"
           f"{self.settings.batch_size}_res{grid_lib.RESOLUTION}_classes"
           f"{self.source.num_classes}")
    return fileio.join(self.settings.workdir, workers.THROUGHPUT_DIR, f"{key}.json")

  def measured_rate(self) -> float:
    """Images/s per core of the model's own program, measured once and cached."""
    from reproduce.train import throughput  # pylint: disable=g-import-not-at-top
    path = self._rate_path()
    if fileio.exists(path):
      self.rate = float(fileio.read_json(path)["images_per_second_per_core"])
      return self.rate
    start = time.time()
    probe_budget = max(self.grid.sweep_budgets + (self.grid.top_budget or 0.0,))
    config, plan = self._plan(probe_budget, self.grid.lrs[0], rate=1000.0)
    program = self._pretrain_program(config, plan)
    measured, first_chunk = throughput.measure_program(
        program, config, plan, self.settings.measure_steps, workers.MEASURE_STEPS_PER_CHUNK)
    self.rate = measured.median
    fileio.write_json(path, measured.to_dict())
    _freeze_traced_graphs()
    self.frozen = True
    self.cost["tracing"] = self.cost.get("tracing", 0.0) + first_chunk
    self.cost["throughput measurement"] = time.time() - start - first_chunk
    workers.emit(self.events, "measured", name=self.model, rate=self.rate,
                 spread=(measured.min, measured.max), seconds=time.time() - start)
    return self.rate

  # -- pre-training ----------------------------------------------------------------------

  def _plan(self, budget: float, lr: float, rate: float | None = None):
    return grid_lib.plan_run(self.model, budget, rate or self.rate, lr, self.settings.seed,
                             self.source, self.settings.batch_size)

  def _pretrain_program(self, config, plan):
    from reproduce.train import loop  # pylint: disable=g-import-not-at-top
    from reproduce.train import rundir  # pylint: disable=g-import-not-at-top
    if self.program is None:
      start = time.time()
      self.program = loop.build_program(rundir.config_to_dict(config), plan, self.strategy,
                                        source=self.source)
      self.cost["program build"] = self.cost.get("program build", 0.0) + time.time() - start
    return self.program

  def pretrain(self, budget: float, lr: float) -> dict | None:
    """Trains (or reuses) one run; its results, or None when it diverged or buys no step."""
    from reproduce import planning  # pylint: disable=g-import-not-at-top
    from reproduce.train import loop  # pylint: disable=g-import-not-at-top
    from reproduce.train import losses  # pylint: disable=g-import-not-at-top
    name = grid_lib.run_name(self.model, budget, lr)
    path = workers.run_dir(self.settings.workdir, name)
    done = workers.finished(path)
    if done is not None:
      workers.emit(self.events, "run", name=name, results=done, status="reused")
      return done
    try:
      config, plan = self._plan(budget, lr)
    except planning.PlanError as e:
      workers.emit(self.events, "skipped", name=name, error=cli.first_line(e))
      return None
    start = time.time()
    try:
      with _collected_between_runs():
        results = loop.train(config, plan, path, self.strategy, source=self.source,
                             verbose=False, log=_quiet,
                             program=self._pretrain_program(config, plan))
    except losses.TrainingDiverged as e:  # a diverged run is a data point lost, not the study
      workers.emit(self.events, "diverged", name=name, error=cli.first_line(e))
      return None
    workers.add_cost(self.cost, workers.run_cost(results))
    if not self.frozen:  # the program was traced in this run (its rate was cached)
      _freeze_traced_graphs()
      self.frozen = True
    workers.emit(self.events, "run", name=name, results=results,
                 status=f"{time.time() - start:5.1f} s")
    return results

  def top_lr(self, sweeps: dict) -> float:
    """The LR of the largest budget: the model's optimal-LR trend (Figure 3) extrapolated
    from its sweeps, or its best LR at its largest swept budget when the trend is unknown."""
    from reproduce.analysis import frontier  # pylint: disable=g-import-not-at-top
    from reproduce.analysis import runs  # pylint: disable=g-import-not-at-top
    points = [runs.point_from_record(r["_dir"], r["_name"], r)
              for results in sweeps.values() for r in results]
    _, top_plan = self._plan(self.grid.top_budget, self.grid.lrs[0])
    return frontier.extrapolated_lr(points, self.model, float(top_plan.epochs),
                                    default=self.grid.lrs[len(self.grid.lrs) // 2])

  # -- fine-tuning -----------------------------------------------------------------------

  def _from_run(self, pretrain_dir: str):
    """``loop.train``'s initialise: the run's final weights, the builder's fresh head."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from reproduce.finetuning import init as init_lib  # pylint: disable=g-import-not-at-top
    from reproduce.train import rundir  # pylint: disable=g-import-not-at-top
    latest = tf.train.latest_checkpoint(fileio.join(pretrain_dir, rundir.CHECKPOINT_DIR))

    def initialise(model, num_classes: int) -> None:
      head = init_lib.head_variables(model, num_classes)
      fresh = [v.numpy() for v in head]  # the builder's init: the program was just reset
      tf.train.Checkpoint(model=model).restore(latest).expect_partial()
      for variable, value in zip(head, fresh):
        variable.assign(value)

    return initialise

  def finetune(self, name: str, pretrained: dict) -> None:
    """Fine-tunes the run ``name`` (or reuses its fine-tune) and records its top-1."""
    from reproduce.train import loop  # pylint: disable=g-import-not-at-top
    from reproduce.train import losses  # pylint: disable=g-import-not-at-top
    pretrain_dir = workers.run_dir(self.settings.workdir, name)
    finetune_dir = fileio.join(self.settings.workdir, workers.FINETUNE_DIR, name)
    lr = float(pretrained["base_lr"]) * grid_lib.FINETUNE_LR_FRACTION
    config, plan = grid_lib.plan_finetune(self.model, self.settings.finetune_steps, self.rate,
                                          lr, self.settings.seed, self.source,
                                          self.settings.batch_size)
    done, start, status = workers.finished(finetune_dir), time.time(), "reused"
    if done is not None and done.get("steps") not in (None, plan.steps):
      raise grid_lib.StudyError(
          f"{finetune_dir} fine-tuned for {done['steps']} steps, not --finetune_steps="
          f"{plan.steps}: use another --workdir or delete it")
    if done is None:
      try:
        with _collected_between_runs():
          done = loop.train(config, plan, finetune_dir, self.strategy, source=self.source,
                            verbose=False, log=_quiet,
                            program=self._pretrain_program(config, plan),
                            initialise=self._from_run(pretrain_dir))
      except losses.TrainingDiverged as e:  # the run keeps no fine-tuned top-1
        workers.emit(self.events, "diverged", name=f"fine-tune {name}",
                     error=cli.first_line(e))
        return
      workers.add_cost(self.cost, workers.run_cost(done))
      status = f"{time.time() - start:5.1f} s"
    record = workers.record_finetune(pretrain_dir, finetune_dir, done)
    workers.emit(self.events, "finetune", name=name, results=done, status=status,
                 pretrained_top1=record["heldout_top1"])

  def traces(self) -> int:
    """How often the model's train step was traced (0: never built, every run reused)."""
    return 0 if self.program is None else int(
        self.program.train_chunk.experimental_get_tracing_count())

  # -- the whole job ---------------------------------------------------------------------

  def run_all(self) -> None:
    """Sweeps, the largest budget at its predicted LR, then the fine-tunes."""
    self.measured_rate()
    sweeps = {}
    for budget in self.grid.sweep_budgets:
      results = []
      for lr in self.grid.lrs:
        record = self.pretrain(budget, lr)
        if record is not None:
          name = grid_lib.run_name(self.model, budget, lr)
          results.append(dict(record, _dir=workers.run_dir(self.settings.workdir, name),
                              _name=name))
      sweeps[budget] = results
    if self.grid.top_budget is not None:
      lr = self.top_lr(sweeps)
      record = self.pretrain(self.grid.top_budget, lr)
      name = grid_lib.run_name(self.model, self.grid.top_budget, lr)
      sweeps[self.grid.top_budget] = [] if record is None else [dict(record, _name=name)]
    if self.settings.finetune_steps > 0:
      for results in sweeps.values():
        if results:
          best = min(results, key=lambda r: r["heldout_loss"])
          self.finetune(best["_name"], best)
