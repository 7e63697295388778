"""One model's share of the study, run inside one worker process (``workers.model_job``).

Order: the LR sweeps from the smallest budget up (each re-centred where the model's earlier
sweeps point), the largest budget at the LR the sweeps predict (every seed), then one
fine-tune per budget of its best run on the transfer dataset. Every run goes through the
model's one traced train step (``loop.Program``; the transfer dataset's program shares it).
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
    from reproduce.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    start = time.time()
    self.grid, self.settings, self.events = model_grid, settings, events
    self.model = model_grid.model
    self.source = workers.load_source(settings.dataset, settings.data_dir, settings.seed)
    self.strategy = strategy_lib.make_strategy("one_device")
    self.programs = {}  # dataset -> its loop.Program (all share the first one's trace)
    self.frozen = False  # the traced programs are out of the garbage collector's reach
    self.cost = {"job setup": time.time() - start}
    self.finished_runs = []  # names of this job's finished runs: what the fits read

  # -- programs --------------------------------------------------------------------------

  def _program(self, config, plan, source):
    """The model's program for ``config``'s dataset: built (and traced) for the first
    dataset; another dataset (the transfer fine-tunes) reuses its traced train step."""
    from reproduce.train import loop  # pylint: disable=g-import-not-at-top
    from reproduce.train import rundir  # pylint: disable=g-import-not-at-top
    config = rundir.config_to_dict(config)
    if config["dataset"] not in self.programs:
      start = time.time()
      if self.programs:
        first = next(iter(self.programs.values()))
        program = first.for_source(config, plan, source)
      else:
        program = loop.build_program(config, plan, self.strategy, source=source)
        self.frozen = False
      self.programs[config["dataset"]] = program
      self.cost["program build"] = self.cost.get("program build", 0.0) + time.time() - start
    return self.programs[config["dataset"]]

  def _train(self, config, plan, path: str, source, initialise=None) -> dict:
    """One run through the model's program; freezes the program once it is traced."""
    from reproduce.train import loop  # pylint: disable=g-import-not-at-top
    program = self._program(config, plan, source)
    with _collected_between_runs():
      results = loop.train(config, plan, path, self.strategy, source=source, verbose=False,
                           log=_quiet, program=program, initialise=initialise)
    if not self.frozen:
      _freeze_traced_graphs()
      self.frozen = True
    return results

  # -- pre-training ----------------------------------------------------------------------

  def _plan(self, budget: float, lr: float, seed_offset: int = 0):
    return grid_lib.plan_run(self.model, budget, lr, self.settings.seed, self.source,
                             self.settings.batch_size, self.settings.dataset, seed_offset)

  def pretrain(self, budget: float, lr: float, seed_offset: int = 0) -> dict | None:
    """Trains (or reuses) one run; its results (with ``_name``), or None when it diverged
    or buys no step."""
    from reproduce import planning  # pylint: disable=g-import-not-at-top
    from reproduce.train import losses  # pylint: disable=g-import-not-at-top
    name = grid_lib.run_name(self.model, budget, lr, seed_offset)
    path = workers.run_dir(self.settings.workdir, name)
    try:
      config, plan = self._plan(budget, lr, seed_offset)
    except planning.PlanError as e:
      workers.emit(self.events, "skipped", name=name, error=cli.first_line(e))
      return None
    done = workers.finished(path)
    if done is not None:
      workers.check_reusable(path, done, config, plan)
      workers.emit(self.events, "run", name=name, results=done, status="reused")
      self.finished_runs.append(name)
      return dict(done, _name=name)
    start = time.time()
    try:
      results = self._train(config, plan, path, self.source)
    except losses.TrainingDiverged as e:  # a diverged run is a data point lost, not the study
      workers.emit(self.events, "diverged", name=name, error=cli.first_line(e))
      return None
    workers.add_cost(self.cost, workers.run_cost(results))
    workers.emit(self.events, "run", name=name, results=results,
                 status=f"{time.time() - start:5.1f} s")
    self.finished_runs.append(name)
    return dict(results, _name=name)

  def _points(self, sweeps: dict) -> list:
    from reproduce.analysis import runs  # pylint: disable=g-import-not-at-top
    return [runs.point_from_record(workers.run_dir(self.settings.workdir, r["_name"]),
                                   r["_name"], r)
            for results in sweeps.values() for r in results]

  def _lr_at(self, sweeps: dict, budget: float, default: float) -> float:
    """The model's optimal LR at ``budget`` from its sweeps so far (``grid.predicted_lr``:
    the trend of Figure 3, its slope kept plausible), or ``default`` before any sweep."""
    from reproduce.analysis import frontier  # pylint: disable=g-import-not-at-top
    from reproduce.analysis import runs  # pylint: disable=g-import-not-at-top
    try:
      found = frontier.optimal_lr(self._points(sweeps))
    except runs.ScalingError:  # no sweep yet
      return float(default)
    _, plan = self._plan(budget, default)
    return grid_lib.predicted_lr(found, float(plan.epochs))

  def sweep(self, budget: float, centre: float) -> list[dict]:
    """The LR sweep of one budget around ``centre``, plus one LR beyond the edge when the
    best loss sits at the smallest or largest LR tried."""
    lrs = list(grid_lib.lr_sweep(centre, self.grid.lr_points))
    results = [r for r in (self.pretrain(budget, lr) for lr in lrs) if r is not None]
    if len(results) >= 2:
      best = min(results, key=lambda r: r["heldout_loss"])["base_lr"]
      tried = sorted(r["base_lr"] for r in results)
      if best in (tried[0], tried[-1]):
        step = grid_lib.LR_FACTOR if best == tried[-1] else 1.0 / grid_lib.LR_FACTOR
        extra = self.pretrain(budget, float(f"{best * step:.4g}"))
        results += [extra] if extra is not None else []
    return results

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

  def _transfer_source(self):
    return workers.load_source(self.settings.transfer_dataset, self.settings.data_dir,
                               self.settings.seed)

  def finetune(self, name: str, pretrained: dict, source) -> None:
    """Fine-tunes the run ``name`` on ``source`` (or reuses it) and records its top-1."""
    from reproduce.train import losses  # pylint: disable=g-import-not-at-top
    pretrain_dir = workers.run_dir(self.settings.workdir, name)
    finetune_dir = fileio.join(self.settings.workdir, workers.FINETUNE_DIR, name)
    lr = float(pretrained["base_lr"]) * grid_lib.FINETUNE_LR_FRACTION
    config, plan = grid_lib.plan_finetune(self.model, self.settings.finetune_steps, lr,
                                          self.settings.seed, source,
                                          self.settings.batch_size,
                                          self.settings.transfer_dataset)
    done, start, status = workers.finished(finetune_dir), time.time(), "reused"
    if done is not None:
      workers.check_reusable(finetune_dir, done, config, plan)
    if done is None:
      try:
        done = self._train(config, plan, finetune_dir, source,
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
    """How often the model's train step was traced (once, however many runs and datasets
    went through it; 0: every run reused)."""
    chunks = {id(p.train_chunk): p.train_chunk for p in self.programs.values()}
    return sum(int(c.experimental_get_tracing_count()) for c in chunks.values())

  # -- the whole job ---------------------------------------------------------------------

  def run_all(self) -> None:
    """Sweeps from the smallest budget up, each centred where the last ones point; the
    largest budget at its predicted LR with every seed; then the fine-tunes."""
    sweeps, centre = {}, self.grid.lr_centre
    for budget in self.grid.sweep_budgets:
      centre = self._lr_at(sweeps, budget, centre)
      sweeps[budget] = self.sweep(budget, centre)
    if self.grid.top_budget is not None:
      lr = self._lr_at(sweeps, self.grid.top_budget, centre)
      runs = [self.pretrain(self.grid.top_budget, lr, s) for s in range(self.grid.top_seeds)]
      sweeps[self.grid.top_budget] = [r for r in runs if r is not None]
    if self.settings.finetune_steps > 0:
      source = self._transfer_source()
      for budget, results in sweeps.items():
        if not results:
          continue
        # The best LR of a sweep; at the largest budget every seed (one LR), so that its
        # averaged point has a fine-tuned top-1 like every other budget.
        chosen = (results if budget == self.grid.top_budget
                  else [min(results, key=lambda r: r["heldout_loss"])])
        for run in chosen:
          self.finetune(run["_name"], run, source)
