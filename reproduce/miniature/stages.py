"""The study end to end: data, one job per model (sweeps, prediction runs,
fine-tunes), fits, the prediction test, the comparison, the report and the time breakdown."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_lib
import time

import model_defs
from reproduce import data
from reproduce.analysis import figures
from reproduce.analysis import fits as fits_lib
from reproduce.analysis import outputs
from reproduce.analysis import prediction
from reproduce.analysis import runs
from reproduce.analysis import study_report
from reproduce.analysis import tensorboard
from reproduce.analysis import verdicts
from reproduce.analysis import versus_published
from reproduce.core import fileio
from reproduce.core import formatting
from reproduce.miniature import accounting
from reproduce.miniature import edges
from reproduce.miniature import grid as grid_lib
from reproduce.miniature import model_runs
from reproduce.miniature import progress as progress_lib
from reproduce.miniature import run_paths
from reproduce.miniature import worker_pool

FITS_DIR = "fits"
COMPARE_FILE = "compare.json"
BREAKDOWN_FILE = "time_breakdown.json"
# Figure 1 as a file too (every family on one compute-matched plot), beside fits.json.
FIGURE1_PNG = "fig1_top1_error_vs_compute.png"


def say(line: str) -> None:
  print(line, flush=True)


@dataclasses.dataclass(frozen=True)
class StudySpec:
  """What the study's flags ask for."""
  workdir: str
  nfnets: tuple[str, ...]
  vits: tuple[str, ...]
  budgets: tuple[float, ...]
  lr_centres: dict
  lr_points: int
  batch_size: int
  finetune_steps: int
  bootstrap: int
  seed: int
  data_dir: str | None
  workers: int
  dataset: str = grid_lib.DATASET
  transfer_dataset: str = grid_lib.TRANSFER_DATASET
  top_seeds: int = grid_lib.TOP_SEEDS
  hybrids: tuple[str, ...] = ()  # the optional third arm
  band: int = grid_lib.BAND  # sizes a budget
  edge_rounds: int = 0  # rounds of sizes added beyond edge optima (``edges``)


def check_models(nfnets, vits, hybrids=()) -> list[str]:
  """All models of the study, each of its arm's family; StudyError / UnknownModelError before
  any work."""
  if not nfnets or not vits:
    raise grid_lib.StudyError("--nfnet_models and --vit_models must each name at least one "
                              "model")
  models = []
  for family, names in zip(grid_lib.FAMILIES, (nfnets, vits, hybrids)):
    for model in names:
      spec = model_defs.get_spec(model)
      if spec.family != family:
        raise grid_lib.StudyError(f"--{family}_models names {model}, a model of family "
                                  f"{spec.family}")
      models.append(model)
  return models


def describe_grid(grids, budgets) -> None:
  """The grid in a few lines: sizes, budgets, LRs, runs and planned compute."""
  run_count = sum(g.planned_runs() for g in grids)
  total = sum(g.planned_core_seconds() for g in grids)
  say(f"2/4 training {run_count}+ runs ({total:.0f} reference core-s = {total * 1e-5:.3g} PFLOP "
      f"planned): budgets {', '.join(f'{b:g}' for b in budgets)} core-s "
      f"({budgets[-1] / budgets[0]:.0f}x)")
  describe_models(grids)


def describe_models(grids) -> None:
  """One line per model: its sweeps, their first centre, its runs at the largest budget."""
  for g in grids:
    top = ("" if g.top_budget is None else
           f"; {g.top_budget:g} at the predicted LR x {g.top_seeds} seeds")
    centre = ("centred by its earlier runs" if g.prior_runs else
              f"first centred on {g.lr_centre:g}")
    say(f"  {g.model:<17} sweeps at {', '.join(f'{b:g}' for b in g.sweep_budgets) or 'none'} "
        f"core-s x {g.lr_points} LRs ({centre}){top}")


ETA_AFTER_FRACTION = 0.05


class Progress:
  """Prints the workers' events with a count, the elapsed time and an ETA."""

  def __init__(self, grids, finetune_steps: int):
    self.total, self.planned, self.finetune_steps = 0, 0.0, finetune_steps
    self.add(grids)
    self.done, self.done_core_seconds, self.start = 0, 0.0, time.time()

  def add(self, grids) -> None:
    """Counts ``grids``' runs (and fine-tunes) in the total and the plan."""
    self.total += sum(g.planned_runs() for g in grids)
    if self.finetune_steps:
      self.total += sum(len(g.sweep_budgets) + (g.top_budget is not None) * g.top_seeds
                        for g in grids)
    self.planned += sum(g.planned_core_seconds() for g in grids)

  def show(self, event: dict) -> None:
    if event["kind"] == "skipped":
      say(f"  skipped {event['name']}: {event['error']}")
      return
    self.done += 1
    if event["kind"] == "run":
      self.done_core_seconds += float(event["results"].get("planned_core_hours") or 0) * 3600
    elapsed = time.time() - self.start
    eta = None
    # Before 5% of the plan is trained the elapsed time is mostly start-up and tracing.
    if (self.done_core_seconds >= ETA_AFTER_FRACTION * self.planned
        and event.get("status") != "reused"):
      left = max(self.planned - self.done_core_seconds, 0.0)
      eta = elapsed * left / self.done_core_seconds
    say(progress_lib.format_progress(event, self.done, self.total, elapsed, eta))


def run_jobs(pool, grids, settings: model_runs.Settings, progress: Progress,
             inline: bool) -> list:
  """Runs every model's job, printing events as they come; returns the jobs' costs."""
  manager = None if inline else multiprocessing.Manager()
  events = queue_lib.Queue() if inline else manager.Queue()
  try:
    futures = worker_pool.submit_models(pool, grids, settings, events)
    pending = set(futures)
    while pending:
      try:
        progress.show(events.get(timeout=0.5))
      except queue_lib.Empty:
        pass
      pending = {f for f in pending if not f.done()}
    while not events.empty():
      progress.show(events.get())
    return [future.result() for future in futures]
  finally:
    if manager is not None:
      manager.shutdown()


def edge_round(spec: StudySpec, costs, tried, round_number: int) -> list:
  """The grids of the next edge round (``edges.edge_grids``) from the runs finished so far
  (``costs``: the jobs' returns), never a (model, budget) of the ``tried`` grids again;
  printed; [] when every optimum is interior or bounded by its ladder's end."""
  finished = {}
  for cost in costs:
    finished.setdefault(cost["model"], []).extend(cost["runs"])
  names = sorted(n for runs_of in finished.values() for n in runs_of)
  points = runs.load_points([run_paths.run_dir(spec.workdir, n) for n in names],
                            compute="planned")
  ladders = dict(zip(grid_lib.FAMILIES, (spec.nfnets, spec.vits, spec.hybrids)))
  pairs = {(g.model, b) for g in tried for b in g.trained_budgets()}
  more = edges.edge_grids(points, ladders, spec.budgets, finished, pairs, spec.lr_centres,
                          spec.lr_points, spec.top_seeds)
  if not more:
    say(f"  edge round {round_number} of {spec.edge_rounds}: none to add (every budget's "
        f"optimum is interior or at the end of its ladder)")
    return more
  say(f"  edge round {round_number} of {spec.edge_rounds}: the next size where a budget's "
      f"best size was the edge of its band")
  describe_models(more)
  return more


def fit_and_compare(workdir: str, run_names, bootstrap: int, seed: int) -> dict:
  """Scaling fits, the prediction of the largest budget, the comparison, TensorBoard;
  returns what ``write_report`` needs."""
  # The runs this study finished, not whatever else the workdir holds (a run a kill left
  # unfinished, another grid's).
  points = runs.load_points([run_paths.run_dir(workdir, name) for name in sorted(run_names)],
                            compute="planned")
  fits = fits_lib.fit_all(points, bootstrap=bootstrap, seed=seed)
  predictions = prediction.predict_all(points, bootstrap=bootstrap, seed=seed)
  logdir = fileio.join(workdir, FITS_DIR)
  outputs.write_fit_files(logdir, points, fits)
  tensorboard.write_fits(logdir, points, fits)
  fileio.write_bytes(fileio.join(logdir, FIGURE1_PNG),
                     figures.png_bytes(figures.figure_top1_vs_compute(points, fits)))
  result = versus_published.compare(points, fits, model_stats=False, predictions=predictions)
  tensorboard.write_compare(logdir, result)
  outputs.write_compare_json(fileio.join(workdir, COMPARE_FILE), result)
  say(versus_published.format_table(result))
  for family, per_family in sorted(fits.get("per_family", {}).items()):
    say(family_summary(family, per_family))
  return dict(points=points, fits=fits, comparison=result, predictions=predictions)


def write_report(workdir: str, analysis: dict, breakdown: dict) -> str:
  """report.md (and its figures, and the same text in TensorBoard); returns its path."""
  cores = breakdown["cores"]
  per_category = {kind: seconds / cores
                  for kind, seconds in breakdown["overhead_core_seconds"].items()}
  written = study_report.write_report(
      workdir, analysis["points"], analysis["fits"], analysis["comparison"],
      analysis["predictions"], per_category, wall_seconds=breakdown["wall_seconds"],
      cores=cores, training_core_seconds=breakdown["training_core_seconds"],
      logdir=fileio.join(workdir, FITS_DIR))
  return written["report"]


def family_summary(family: str, per_family: dict) -> str:
  """One line per family: its frontier law and how its optimal size and epochs scale."""
  law = per_family.get("fit") or {}
  line = f"{family}:"
  if law.get("b") is not None:
    line += (f" frontier loss ~ C^{-law['b']:.3f} (95% CI of the decay rate b "
             f"{formatting.interval(law['ci']['b'])}; {law['n']} runs)")
  scaling = per_family.get("optimal_scaling") or {}
  if scaling.get("size") and scaling.get("epochs"):
    size, epochs = scaling["size"], scaling["epochs"]
    line += (f"; optimal size (forward FLOPs/image) ~ C^{size['exponent']:.2f} "
             f"{formatting.interval(size['ci']['exponent'])}, epochs ~ C^{epochs['exponent']:.2f} "
             f"{formatting.interval(epochs['ci']['exponent'])}")
  finetuned = per_family.get("finetune_fit")
  if finetuned:
    line += (f"; fine-tuned top-1 error ~ C^{-finetuned['b']:.3f} (95% CI of b "
             f"{formatting.interval(finetuned['ci']['b'])}; best of {finetuned['n']} budgets)")
  return line


def run_study(spec: StudySpec, started: float | None = None) -> dict:
  """The whole study; returns the comparison result. ``started``: when the command began
  (the time breakdown counts from there)."""
  started = started or time.time()
  check_models(spec.nfnets, spec.vits, spec.hybrids)
  fileio.makedirs(spec.workdir)
  say(f"Miniature study in {os.path.abspath(spec.workdir)}")
  clock = accounting.StudyClock(started, spec.workers)
  with clock.phase("data preparation"):
    source = data.load_source(spec.dataset, data_dir=spec.data_dir, seed=spec.seed)
    # Opened now, so a bad --transfer_dataset fails before any training, not after it.
    transfer = data.load_source(spec.transfer_dataset, data_dir=spec.data_dir, seed=spec.seed)
  say(f"1/4 data: {source.name}, {source.train_size} train / {source.heldout_size} held-out "
      f"images, {source.num_classes} classes; fine-tunes on {transfer.name} "
      f"({transfer.train_size} / {transfer.heldout_size})")
  grids = grid_lib.make_grid(spec.nfnets, spec.vits, spec.budgets, spec.lr_centres,
                             spec.lr_points, spec.top_seeds, spec.hybrids, spec.band)
  describe_grid(grids, spec.budgets)
  settings = model_runs.Settings(spec.workdir, spec.data_dir, spec.seed, spec.batch_size,
                                 spec.finetune_steps, spec.dataset, spec.transfer_dataset)
  progress = Progress(grids, spec.finetune_steps)
  with clock.phase("workers"):
    with worker_pool.make_pool(spec.workers) as pool:
      costs = run_jobs(pool, grids, settings, progress, inline=spec.workers == 0)
      tried = list(grids)
      for round_number in range(1, spec.edge_rounds + 1):
        more = edge_round(spec, costs, tried, round_number)
        if not more:
          break
        progress.add(more)
        tried += more
        costs += run_jobs(pool, more, settings, progress, inline=spec.workers == 0)
  say("3/4 scaling fits, the prediction and the comparison with the paper's claims:")
  with clock.phase("fits and report"):
    finished = [name for cost in costs for name in cost["runs"]]
    analysis = fit_and_compare(spec.workdir, finished, spec.bootstrap, spec.seed)
    breakdown = clock.breakdown(costs)
    report_path = write_report(spec.workdir, analysis, breakdown)
  breakdown = clock.breakdown(costs)  # now with the report's own time
  fileio.write_json(fileio.join(spec.workdir, BREAKDOWN_FILE), breakdown)
  say("4/4 where the time went:")
  for line in accounting.format_breakdown(breakdown):
    say(line)
  result = analysis["comparison"]
  say(f"Done in {formatting.duration(breakdown['wall_seconds'])}. Comparison: "
      f"{verdicts.verdict_line(result)}. Report: {os.path.abspath(report_path)}")
  fits_dir = os.path.abspath(fileio.join(spec.workdir, FITS_DIR))
  # The figures and the report first: the fits' logdir holds images and text, no per-step
  # scalars, so TensorBoard opens on them; every run's curves are one flag away.
  say(f"Figures and report in TensorBoard: tensorboard --logdir {fits_dir} --host 127.0.0.1, "
      f"then http://127.0.0.1:6006/#images")
  say(f"  every run's training curves too: tensorboard --logdir "
      f"{os.path.abspath(spec.workdir)} --host 127.0.0.1")
  return result
