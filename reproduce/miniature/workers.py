"""The study's worker processes: one job per model, one traced train step per job.

A job builds its model's ``loop.Program`` once, then trains every budget and learning rate of
the model's grid through it (``loop.train(program=)``: the schedule, LR and step count are
variables, so nothing is traced again), picks the LR of the largest budget from its own
sweeps, and fine-tunes the best run of each budget on the transfer dataset through a second
program. Finished runs are reused; an interrupted run resumes from its checkpoint.
Jobs report to the study's process through an event queue (``emit``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import multiprocessing
import os
import time

from reproduce.core import cli
from reproduce.core import fileio
from reproduce.core import formatting
from reproduce.core import results as results_schema
from reproduce.miniature import grid as grid_lib

RUNS_DIR = "runs"
FINETUNE_DIR = "finetune"
_WORKER = {"startup_seconds": 0.0}  # this process's start-up, reported by its first job
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


def init_worker(threads: int) -> None:
  """Set-up of a worker process: quiet TensorFlow on ``threads`` cores, no Grappler."""
  start = time.time()
  tf = cli.import_tensorflow()
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(threads)
  # Grappler's rewrites cost ~15 s per traced model and buy nothing for steps this small.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  import keras  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  _WORKER["startup_seconds"] = time.time() - start


def load_source(dataset: str, data_dir: str | None, seed: int):
  """The dataset's source, opened once per worker process: its in-memory records (read on
  first use: Fashion-MNIST's take seconds) then serve every job of the process."""
  from reproduce import data  # pylint: disable=g-import-not-at-top
  key = (dataset, data_dir, seed)
  if key not in _SOURCES:
    _SOURCES[key] = data.load_source(dataset, data_dir=data_dir, seed=seed)
  return _SOURCES[key]


def make_pool(workers: int):
  """``workers`` processes, sharing the machine's cores; 0: jobs run in this process."""
  if workers == 0:
    return InlineExecutor()
  threads = max(1, (os.cpu_count() or 1) // workers)
  return concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
      initializer=init_worker, initargs=(threads,))


class InlineExecutor:
  """``--workers=0``: runs each job in this process when submitted (debugging, tests)."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def submit(self, fn, *args):
    future = concurrent.futures.Future()
    try:
      future.set_result(fn(*args))
    except Exception as e:  # pylint: disable=broad-except  # re-raised by future.result()
      future.set_exception(e)
    return future


def emit(events, kind: str, **fields) -> None:
  """Sends one event to the study's process (``events``: a queue, or None)."""
  if events is not None:
    events.put(dict(kind=kind, time=time.time(), **fields))


def run_dir(workdir: str, name: str) -> str:
  return fileio.join(workdir, RUNS_DIR, name)


# What makes a finished run the one asked for: a workdir holding another study's runs under
# the same names (another --dataset, --seed, --batch_size, ...) must not be reused silently.
REUSE_CONFIG_KEYS = ("model", "dataset", "seed", "data_seed", "batch_size", "base_lr",
                     "budget_core_hours", "epochs", "label_smoothing", "resolution")


def check_reusable(path: str, done: dict, config, plan) -> None:
  """``StudyError`` naming ``path`` when its finished run is not the run ``config`` and
  ``plan`` describe (another study's run in the same workdir)."""
  recorded = done.get("config") or {}
  differ = [key for key in REUSE_CONFIG_KEYS if recorded.get(key) != config.get(key)]
  if done.get("steps") not in (None, plan.steps):
    differ.append(f"steps {done.get('steps')} != {plan.steps}")
  if differ:
    raise grid_lib.StudyError(
        f"{path} holds another run ({', '.join(differ)} differ): use another --workdir "
        f"or delete it")


def finished(path: str) -> dict | None:
  """The results.json of a finished run or fine-tune in ``path``; None when unfinished."""
  results_path = fileio.join(path, results_schema.FILE)
  return fileio.read_json(results_path) if fileio.exists(results_path) else None


def run_cost(record: dict) -> dict:
  """Core-seconds of one finished run by kind (training and the engine's overheads)."""
  overhead = dict(record.get("overhead_seconds") or {})
  cores = float(record.get("num_replicas") or 1)
  cost = {kind: float(seconds) * cores for kind, seconds in overhead.items()}
  cost["training"] = float(record.get("training_core_hours") or 0.0) * 3600.0
  cost["wall"] = float(record.get("wall_seconds") or 0.0) * cores
  return cost


def add_cost(totals: dict, cost: dict) -> None:
  for kind, seconds in cost.items():
    totals[kind] = totals.get(kind, 0.0) + seconds


def model_job(model_grid: grid_lib.ModelGrid, settings: Settings, events) -> dict:
  """Everything of one model (see the module docstring). Returns ``model``, ``cost`` (its
  core-seconds by kind), ``traces`` (times its programs' train steps were traced: one per
  program, however many runs and fine-tunes went through it) and ``runs`` (the names of its
  finished runs)."""
  import keras  # pylint: disable=g-import-not-at-top
  from reproduce.miniature import model_runs  # pylint: disable=g-import-not-at-top
  start = time.time()
  job = model_runs.ModelRuns(model_grid, settings, events)
  job.cost["worker startup"], _WORKER["startup_seconds"] = _WORKER["startup_seconds"], 0.0
  job.run_all()
  result = dict(model=model_grid.model, cost=job.cost, traces=job.traces(),
                runs=list(job.finished_runs))
  del job
  gc.unfreeze()  # the finished job's graphs become collectable again
  keras.backend.clear_session(free_memory=True)  # the process's next job starts clean
  result["cost"]["job wall"] = time.time() - start + result["cost"]["worker startup"]
  return result


def submit_models(pool, grids, settings: Settings, events) -> dict:
  """Futures of every model's job, the longest first (the workers then end together)."""
  order = sorted(grids, key=lambda g: -job_seconds_guess(g, settings.batch_size))
  return {pool.submit(model_job, g, settings, events): g for g in order}


# What a job costs beyond its planned FLOPs on one core, measured on a 2-core Xeon (the
# study's XLA steps, batch 32, 32 px): a fixed time per step (op launches, the optimizer's
# per-variable updates), which makes the 25%-width NFNet train at about 2.8x its reference
# time and the 75%-width one at 1.3x, and the trace and XLA compile of its program.
_STEP_OVERHEAD_SECONDS = {"nfnet": 0.011, "vit": 0.004}
_COMPILE_SECONDS = {"nfnet": 80.0, "vit": 7.0}


def job_seconds_guess(model_grid: grid_lib.ModelGrid, batch_size: int) -> float:
  """Rough seconds of a model's job on one core, only to order the jobs (never to plan a
  run): each planned reference core-second stretched by the per-step overhead, plus the
  compile."""
  from reproduce.planning import cost  # pylint: disable=g-import-not-at-top
  from reproduce.planning import hardware  # pylint: disable=g-import-not-at-top
  flops = cost.train_flops_per_image(model_grid.model, grid_lib.RESOLUTION, num_classes=10)
  reference_step = flops * batch_size / hardware.REFERENCE_CORE_FLOPS
  family = model_grid.family if model_grid.family in _COMPILE_SECONDS else "vit"
  stretch = 1.0 + _STEP_OVERHEAD_SECONDS[family] / reference_step
  return model_grid.planned_core_seconds() * stretch + _COMPILE_SECONDS[family]


def record_finetune(pretrain_dir: str, finetune_dir: str, finetuned: dict) -> dict:
  """Writes the fine-tune's held-out top-1 and cost into the pre-training run's results.json
  (atomically), where the fits read them; returns that record."""
  path = fileio.join(pretrain_dir, results_schema.FILE)
  record = fileio.read_json(path)
  update = {"finetune_top1": finetuned["heldout_top1"],
            "finetune_core_hours": finetuned.get("training_core_hours"),
            "finetune_planned_core_hours": finetuned.get("planned_core_hours"),
            "finetune_run": finetune_dir}
  if any(record.get(key) != value for key, value in update.items()):
    record.update(update)
    fileio.write_json(path, record)
  return record


def format_progress(event: dict, done: int, total: int, elapsed: float,
                    eta: float | None) -> str:
  """The study's line for one finished run or fine-tune event (``total``: the runs planned;
  an LR beyond an edge optimum adds one, so the count may pass it)."""
  eta_text = "" if eta is None else f" ETA {formatting.duration(eta)}"
  tail = f"| elapsed {formatting.duration(elapsed)}{eta_text}"
  name, status = event["name"], event.get("status", "")
  if event["kind"] == "diverged":
    return f"  [{done:3d}/~{total}] {name:<34} diverged: {event['error']}  {tail}"
  r = event["results"]
  ratio = r.get("training_over_planned")
  budget = "" if ratio is None else f" x{ratio:.2f} of plan"
  if event["kind"] == "finetune":
    return (f"  [{done:3d}/~{total}] fine-tune {name:<24} {r.get('steps') or 0:4d} steps  top1 "
            f"{r['heldout_top1']:.3f} (pre-trained {event['pretrained_top1']:.3f})  "
            f"{status}{budget}  {tail}")
  return (f"  [{done:3d}/~{total}] {name:<34} {r['epochs']:6.2f} ep {r['steps']:5d} steps  "
          f"loss {r['heldout_loss']:.3f} top1 {r['heldout_top1']:.3f}  {status}{budget}  "
          f"{tail}")
