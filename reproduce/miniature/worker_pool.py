"""The study's worker pool: one job per model (``model_runs.ModelRuns``), the longest first.

A job builds its model's ``loop.Program`` once, then trains every budget and learning rate of
the model's grid through it (``loop.train(program=)``: the schedule, LR and step count are
variables, so nothing is traced again), picks the LR of the largest budget from its own
sweeps, and fine-tunes the best run of each budget on the transfer dataset through a second
program. Finished runs are reused; an interrupted run resumes from its checkpoint.
Jobs report to the study's process through an event queue (``progress.emit``).
"""

from __future__ import annotations

import concurrent.futures
import gc
import multiprocessing
import os
import time

from reproduce.core import cli
from reproduce.miniature import grid as grid_lib
from reproduce.planning import cost
from reproduce.planning import hardware

_WORKER = {"startup_seconds": 0.0}  # this process's start-up, reported by its first job


def init_worker(threads: int) -> None:
  """Set-up of a worker process: quiet TensorFlow on ``threads`` cores, no Grappler."""
  start = time.time()
  tf = cli.import_tensorflow()
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(threads)
  # Grappler's rewrites cost ~15 s per traced model and buy nothing for steps this small.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  _WORKER["startup_seconds"] = time.time() - start


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


def model_job(model_grid: grid_lib.ModelGrid, settings, events) -> dict:
  """Everything of one model (see the module docstring; ``settings``: the study's
  ``model_runs.Settings``). Returns ``model``, ``cost`` (its core-seconds by kind),
  ``traces`` (times its programs' train steps were traced: one per program, however many
  runs and fine-tunes went through it) and ``runs`` (the names of its finished runs)."""
  start = time.time()  # a worker's first job imports the kit: its time is the job's
  # pylint: disable=g-import-not-at-top  (after init_worker: see core/cli.py)
  import keras
  from reproduce.miniature import model_runs
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


def submit_models(pool, grids, settings, events) -> dict:
  """Futures of every model's job, the longest first (the workers then end together)."""
  order = sorted(grids, key=lambda g: -job_seconds_guess(g, settings.batch_size))
  return {pool.submit(model_job, g, settings, events): g for g in order}


# What a job costs beyond its planned FLOPs on one core, measured on a 2-core Xeon (the
# study's XLA steps, batch 32, 32 px): a fixed time per step (op launches, the optimizer's
# per-variable updates), which makes the 25%-width NFNet train at about 2.8x its reference
# time and the 75%-width one at 1.3x, and the trace and XLA compile of its program.
_STEP_OVERHEAD_SECONDS = {"nfnet": 0.011, "vit": 0.004, "hybrid": 0.006}
_COMPILE_SECONDS = {"nfnet": 80.0, "vit": 7.0, "hybrid": 12.0}


def job_seconds_guess(model_grid: grid_lib.ModelGrid, batch_size: int) -> float:
  """Rough seconds of a model's job on one core, only to order the jobs (never to plan a
  run): each planned reference core-second stretched by the per-step overhead, plus the
  compile."""
  flops = cost.train_flops_per_image(model_grid.model, grid_lib.RESOLUTION, num_classes=10)
  reference_step = flops * batch_size / hardware.REFERENCE_CORE_FLOPS
  family = model_grid.family if model_grid.family in _COMPILE_SECONDS else "vit"
  stretch = 1.0 + _STEP_OVERHEAD_SECONDS[family] / reference_step
  return model_grid.planned_core_seconds() * stretch + _COMPILE_SECONDS[family]
