"""Worker processes of the study: throughput measurements, training runs and fine-tunes.

Each job runs in its own spawned process (one TensorFlow per process: graph building is
single-threaded, so two workers keep two cores busy). ``workers=0`` runs jobs inline.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time

from reproduce.core import cli
from reproduce.core import fileio
from reproduce.core import results as results_schema
from reproduce.miniature import grid

THROUGHPUT_FILE = "throughput.json"
RUNS_DIR = "runs"
FINETUNE_DIR = "finetune"
# A fine-tune's fields copied into its pre-training run's results.json, where the fits read them.
FINETUNE_FIELDS = ("finetune_top1", "finetune_core_hours", "finetune_planned_core_hours")


def say(line: str) -> None:
  print(line, flush=True)


def _init_worker() -> None:
  """Set-up of a worker process: quiet TensorFlow, no Grappler rewrites."""
  tf = cli.import_tensorflow()
  # Grappler's graph rewrites cost ~15 s per traced run and buy nothing for runs this short.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def measure_job(model: str, batch_size: int, resolution: int, num_classes: int, steps: int):
  """(Throughput of the engine's own train step, seconds taken)."""
  import keras  # pylint: disable=g-import-not-at-top
  from reproduce.train import throughput  # pylint: disable=g-import-not-at-top
  start = time.time()
  # Timed with the family's own recipe (ViTs: AdamW; NFNets: SGD + AGC), as it trains.
  measured = throughput.measure(model, batch_size, resolution, steps=steps,
                                num_classes=num_classes, warmup_steps=1, hardware="cpu",
                                config=grid.family_config(model))
  keras.backend.clear_session()
  return measured, time.time() - start


def train_job(config, plan, run_dir: str, data_dir: str | None):
  """(results dict of one finished run, seconds taken)."""
  import keras  # pylint: disable=g-import-not-at-top
  from reproduce import data  # pylint: disable=g-import-not-at-top
  from reproduce.train import loop  # pylint: disable=g-import-not-at-top
  from reproduce.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  start = time.time()
  source = data.load_source(config.dataset, data_dir=data_dir, seed=int(config.seed))
  # The engine's budget warning stays in results.json and TensorBoard; the study prints the
  # training/planned ratio on each run's progress line instead.
  results = loop.train(config, plan, run_dir, strategy_lib.make_strategy("one_device"),
                       source=source, verbose=False, log=_quiet)
  keras.backend.clear_session()
  return results, time.time() - start


def finetune_job(config, plan, init_dir: str, run_dir: str, data_dir: str | None):
  """(results dict of the finished fine-tune of the run in ``init_dir``, seconds taken)."""
  import keras  # pylint: disable=g-import-not-at-top
  from reproduce import data  # pylint: disable=g-import-not-at-top
  from reproduce.finetuning import run as finetuning  # pylint: disable=g-import-not-at-top
  from reproduce.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  start = time.time()
  source = data.load_source(config.dataset, data_dir=data_dir, seed=int(config.seed))
  results = finetuning.finetune(config, plan, run_dir, init_dir,
                                strategy_lib.make_strategy("one_device"), source=source,
                                verbose=False, data_dir=data_dir, log=_quiet)
  keras.backend.clear_session()
  return results, time.time() - start


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


def make_pool(workers: int):
  if workers == 0:
    return InlineExecutor()
  return concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
      initializer=_init_worker)


def measure_models(pool, models, workdir: str, batch_size: int, resolution: int,
                   num_classes: int, steps: int) -> dict[str, float]:
  """Images/s per core of each model, measured once and cached in workdir."""
  path = fileio.join(workdir, THROUGHPUT_FILE)
  cache = fileio.read_json(path) if fileio.exists(path) else {}
  rates = cache.setdefault(f"batch{batch_size}_res{resolution}_classes{num_classes}", {})
  # The optimizer is part of a measurement's identity: a recipe change re-measures.
  keys = {m: f"{m}@{grid.family_config(m).optimizer}" for m in models}
  todo = [m for m in models if keys[m] not in rates]
  futures = {pool.submit(measure_job, m, batch_size, resolution, num_classes, steps): m
             for m in todo}
  for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
    model = futures[future]
    measured, took = future.result()
    rates[keys[model]] = measured.median
    say(f"  measure [{i}/{len(todo)}] {model:<20} {measured.median:8.1f} img/s/core "
        f"(min {measured.min:.1f}, max {measured.max:.1f}; {took:.0f} s)")
    fileio.write_json(path, cache)
  return {m: rates[keys[m]] for m in models}


def _quiet(line: str) -> None:
  del line


def _progress(i, total, name, plan, results, status, study_start, eta) -> None:
  eta_text = "" if eta is None else f" ETA {cli.format_duration(eta)}"
  ratio = results.get("training_over_planned")
  budget = "" if ratio is None else f" x{ratio:.2f} of plan"
  say(f"  [{i:2d}/{total}] {name:<26} {plan.epochs:6.2f} ep {plan.steps:5d} steps  "
      f"loss {results['heldout_loss']:.3f} top1 {results['heldout_top1']:.3f}  {status}{budget}  "
      f"| elapsed {cli.format_duration(time.time() - study_start)}{eta_text}")


def _submit_unfinished(pool, runs, workdir: str, data_dir: str | None):
  """Futures of the runs without results.json, and (name, plan, results) of the others."""
  futures, reused = {}, []
  # Longest first (NFNets trace slowest) so the workers finish together.
  order = sorted(runs, key=lambda r: -(r[2].core_hours * 3600.0 +
                                        (30 if r[2].family == "nfnet" else 8)))
  for name, config, plan in order:
    run_dir = fileio.join(workdir, RUNS_DIR, name)
    results_path = fileio.join(run_dir, results_schema.FILE)
    if fileio.exists(results_path):
      reused.append((name, plan, fileio.read_json(results_path)))
    else:
      futures[pool.submit(train_job, config, plan, run_dir, data_dir)] = (name, plan)
  return futures, reused


def train_runs(pool, runs, workdir: str, data_dir: str | None) -> None:
  """Trains every planned run (reusing finished ones), printing a line as each ends."""
  from reproduce.train import losses  # pylint: disable=g-import-not-at-top
  study_start = time.time()
  futures, reused = _submit_unfinished(pool, runs, workdir, data_dir)
  total = len(runs)
  for i, (name, plan, results) in enumerate(reused, 1):
    _progress(i, total, name, plan, results, "reused", study_start, None)
  # Remaining work in core-seconds of training, to turn the observed pace into an ETA.
  remaining = sum(plan.core_hours for name, plan in futures.values()) * 3600.0
  work_done = 0.0
  for i, future in enumerate(concurrent.futures.as_completed(futures), len(reused) + 1):
    name, plan = futures[future]
    work_done += plan.core_hours * 3600.0
    try:
      results, took = future.result()
    except losses.TrainingDiverged as e:  # a diverged run is a data point lost, not the study
      say(f"  [{i:2d}/{total}] {name:<26} diverged: {cli.first_line(e)}")
      continue
    elapsed = time.time() - study_start
    eta = elapsed / work_done * (remaining - work_done) if work_done else None
    _progress(i, total, name, plan, results, f"{took:5.1f} s", study_start, eta)


def record_finetune(pretrain_dir: str, finetune_dir: str, finetuned: dict) -> dict:
  """Writes the fine-tune's fields into the pre-training run's results.json (atomically);
  returns that record."""
  path = fileio.join(pretrain_dir, results_schema.FILE)
  record = fileio.read_json(path)
  update = {key: finetuned.get(key) for key in FINETUNE_FIELDS}
  update["finetune_run"] = finetune_dir
  if any(record.get(key) != value for key, value in update.items()):
    record.update(update)
    fileio.write_json(path, record)
  return record


def _submit_finetunes(pool, finetunes, workdir: str, data_dir: str | None):
  """Futures of the fine-tunes to run, and (name, results) of the finished ones."""
  futures, reused = {}, []
  for name, config, plan in finetunes:
    pretrain_dir = fileio.join(workdir, RUNS_DIR, name)
    finetune_dir = fileio.join(workdir, FINETUNE_DIR, name)
    if not fileio.exists(fileio.join(pretrain_dir, results_schema.FILE)):
      continue  # its pre-training diverged: nothing to fine-tune
    results_path = fileio.join(finetune_dir, results_schema.FILE)
    if not fileio.exists(results_path):
      futures[pool.submit(finetune_job, config, plan, pretrain_dir, finetune_dir,
                          data_dir)] = name
      continue
    results = fileio.read_json(results_path)
    if results.get("steps") not in (None, plan.steps):
      raise grid.StudyError(
          f"{finetune_dir} fine-tuned for {results['steps']} steps, not --finetune_steps="
          f"{plan.steps}: use another --workdir or delete {fileio.join(workdir, FINETUNE_DIR)}")
    reused.append((name, results))
  return futures, reused


def finetune_runs(pool, finetunes, workdir: str, data_dir: str | None) -> dict:
  """Fine-tunes every pre-trained run (reusing finished fine-tunes) and records each one's
  ``finetune_top1`` in its pre-training results.json. Returns what the stage cost:
  wall_seconds, core_seconds (measured, both SAM passes) of the fine-tunes run now, ran,
  reused, diverged."""
  from reproduce.train import losses  # pylint: disable=g-import-not-at-top
  start = time.time()
  futures, reused = _submit_finetunes(pool, finetunes, workdir, data_dir)
  total = len(futures) + len(reused)
  cost = dict(ran=0, reused=len(reused), diverged=0, core_seconds=0.0)

  def finished(i, name, results, status):
    record = record_finetune(fileio.join(workdir, RUNS_DIR, name),
                             fileio.join(workdir, FINETUNE_DIR, name), results)
    say(f"  [{i:2d}/{total}] fine-tune {name:<26} {results.get('steps') or 0:4d} steps at "
        f"{results.get('resolution') or 0} px  top1 {results['finetune_top1']:.3f} (pre-trained "
        f"{record['heldout_top1']:.3f})  {status}")

  for i, (name, results) in enumerate(reused, 1):
    finished(i, name, results, "reused")
  for i, future in enumerate(concurrent.futures.as_completed(futures), len(reused) + 1):
    name = futures[future]
    try:
      results, took = future.result()
    except losses.TrainingDiverged as e:  # a lost fine-tune leaves its run without one
      say(f"  [{i:2d}/{total}] fine-tune {name:<26} diverged: {cli.first_line(e)}")
      cost["diverged"] += 1
      continue
    cost["ran"] += 1
    cost["core_seconds"] += float(results.get("finetune_core_hours") or 0.0) * 3600.0
    finished(i, name, results, f"{took:5.1f} s")
  cost["wall_seconds"] = time.time() - start
  return cost
