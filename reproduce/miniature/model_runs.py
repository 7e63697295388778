"""One model's share of the study, run inside one worker process (``worker_pool.model_job``).

Order: the LR sweeps from the smallest budget up (each re-centred where the model's earlier
sweeps point), the largest budget at the LR the sweeps predict (every seed), then one
fine-tune per budget of its best run on the transfer dataset. Every run goes through the
model's one traced train step (``loop.Program``; the transfer dataset's program shares it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time

from reproduce import data
from reproduce import planning
from reproduce.analysis import frontier
from reproduce.analysis import runs
from reproduce.core import cli
from reproduce.finetuning import init as init_lib
from reproduce.miniature import accounting
from reproduce.miniature import grid as grid_lib
from reproduce.miniature import progress
from reproduce.miniature import run_paths
from reproduce.train import losses
from reproduce.train import loop
from reproduce.train import rundir
from reproduce.train import strategy as strategy_lib

_SOURCES = {}  # (dataset, data_dir, seed) -> DataSource, per process (``load_source``)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every job of one study shares."""
  workdir: str
  data_dir: str | None
  seed: int
  batch_size: int
  finetune_steps: int
  dataset: str = grid_lib.DATASET
  transfer_dataset: str = grid_lib.TRANSFER_DATASET


def load_source(dataset: str, data_dir: str | None, seed: int):
  """The dataset's source, opened once per worker process: its in-memory records (read on
  first use: Fashion-MNIST's take seconds) then serve every job of the process."""
  key = (dataset, data_dir, seed)
  if key not in _SOURCES:
    _SOURCES[key] = data.load_source(dataset, data_dir=data_dir, seed=seed)
  return _SOURCES[key]


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

  def __init__(self, model_grid: grid_lib.ModelGrid, settings: Settings, events):
    start = time.time()
    self.grid, self.settings, self.events = model_grid, settings, events
    self.model = model_grid.model
    self.source = load_source(settings.dataset, settings.data_dir, settings.seed)
    self.strategy = strategy_lib.make_strategy("one_device")
    self.programs = {}  # dataset -> its loop.Program (all share the first one's trace)
    self.frozen = False  # the traced programs are out of the garbage collector's reach
    self.cost = {"job setup": time.time() - start}
    self.finished_runs = []  # names of this job's finished runs: what the fits read

  # -- programs --------------------------------------------------------------------------

  def _program(self, config, plan, source):
    """The model's program for ``config``'s dataset: built (and traced) for the first
    dataset; another dataset (the transfer fine-tunes) reuses its traced train step."""
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
    name = grid_lib.run_name(self.model, budget, lr, seed_offset)
    path = run_paths.run_dir(self.settings.workdir, name)
    try:
      config, plan = self._plan(budget, lr, seed_offset)
    except planning.PlanError as e:
      progress.emit(self.events, "skipped", name=name, error=cli.first_line(e))
      return None
    done = rundir.RunDirectory(path).results()
    if done is not None:
      run_paths.check_reusable(path, done, config, plan)
      progress.emit(self.events, "run", name=name, results=done, status="reused")
      self.finished_runs.append(name)
      return dict(done, _name=name)
    start = time.time()
    try:
      results = self._train(config, plan, path, self.source)
    except losses.TrainingDiverged as e:  # a diverged run is a data point lost, not the study
      progress.emit(self.events, "diverged", name=name, error=cli.first_line(e))
      return None
    accounting.add_cost(self.cost, accounting.run_cost(results))
    progress.emit(self.events, "run", name=name, results=results,
                 status=f"{time.time() - start:5.1f} s")
    self.finished_runs.append(name)
    return dict(results, _name=name)

  def _lr_at(self, done: list[dict], budget: float, default: float) -> float:
    """The model's optimal LR at ``budget`` from the sweeps among its finished runs ``done``
    (``grid.predicted_lr``: the trend of Figure 3, its slope kept plausible), or ``default``
    before any sweep."""
    points = [runs.point_from_record(run_paths.run_dir(self.settings.workdir, r["_name"]),
                                     r["_name"], r) for r in done]
    try:
      found = frontier.optimal_lr(points)
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

  def _transfer_source(self):
    return load_source(self.settings.transfer_dataset, self.settings.data_dir,
                               self.settings.seed)

  def finetune(self, name: str, pretrained: dict, source) -> None:
    """Fine-tunes the run ``name`` on ``source`` (or reuses it) and records its top-1 in the
    run's results.json, where the fits read it. The fine-tune starts from the run's final
    raw weights and the head the program was just reset to (``init.run_initialiser``)."""
    pretrain_dir = run_paths.run_dir(self.settings.workdir, name)
    finetune_dir = run_paths.finetune_dir(self.settings.workdir, name)
    lr = float(pretrained["base_lr"]) * grid_lib.FINETUNE_LR_FRACTION
    config, plan = grid_lib.plan_finetune(self.model, self.settings.finetune_steps, lr,
                                          self.settings.seed, source,
                                          self.settings.batch_size,
                                          self.settings.transfer_dataset)
    done = rundir.RunDirectory(finetune_dir).results()
    start, status = time.time(), "reused"
    if done is not None:
      run_paths.check_reusable(finetune_dir, done, config, plan)
    if done is None:
      try:
        done = self._train(config, plan, finetune_dir, source,
                           initialise=init_lib.run_initialiser(pretrain_dir))
      except losses.TrainingDiverged as e:  # the run keeps no fine-tuned top-1
        progress.emit(self.events, "diverged", name=f"fine-tune {name}",
                      error=cli.first_line(e))
        return
      accounting.add_cost(self.cost, accounting.run_cost(done))
      status = f"{time.time() - start:5.1f} s"
    record = rundir.RunDirectory(pretrain_dir).add_finetune({
        "finetune_top1": done["heldout_top1"],
        "finetune_core_hours": done.get("training_core_hours"),
        "finetune_planned_core_hours": done.get("planned_core_hours"),
        "finetune_run": finetune_dir})
    progress.emit(self.events, "finetune", name=name, results=done, status=status,
                  pretrained_top1=record["heldout_top1"])

  def traces(self) -> int:
    """How often the model's train step was traced (once, however many runs and datasets
    went through it; 0: every run reused)."""
    chunks = {id(p.train_chunk): p.train_chunk for p in self.programs.values()}
    return sum(int(c.experimental_get_tracing_count()) for c in chunks.values())

  # -- the whole job ---------------------------------------------------------------------

  def _prior_results(self) -> list[dict]:
    """The results (with ``_name``) of the model's finished runs of earlier rounds
    (``grid.ModelGrid.prior_runs``): they centre the sweeps like the model's own."""
    prior = []
    for name in self.grid.prior_runs:
      done = rundir.RunDirectory(run_paths.run_dir(self.settings.workdir, name)).results()
      if done is not None:
        prior.append(dict(done, _name=name))
    return prior

  def run_all(self) -> None:
    """Sweeps from the smallest budget up, each centred where the last ones (and the prior
    rounds' runs) point; the largest budget at its predicted LR with every seed; then the
    fine-tunes of this job's budgets."""
    prior, sweeps, centre = self._prior_results(), {}, self.grid.lr_centre

    def done():  # every finished run of the model: the prior rounds' and this job's
      return prior + [r for results in sweeps.values() for r in results]

    for budget in self.grid.sweep_budgets:
      centre = self._lr_at(done(), budget, centre)
      sweeps[budget] = self.sweep(budget, centre)
    if self.grid.top_budget is not None:
      lr = self._lr_at(done(), self.grid.top_budget, centre)
      seeds = [self.pretrain(self.grid.top_budget, lr, s) for s in range(self.grid.top_seeds)]
      sweeps[self.grid.top_budget] = [r for r in seeds if r is not None]
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
