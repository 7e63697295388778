r"""The miniature study: the paper's compute-matched NFNet-vs-ViT sweep on 2 CPU cores.

  python -m reproduce.study                       # the embedded default, ~10-15 min
  python -m reproduce.study --workdir=/tmp/study --budgets_core_seconds=4,8,16,32,64

What it does, end to end, with the kit's real code paths:
  1. loads the embedded real dataset ('digits': scikit-learn's handwritten digits,
     prepared as a tfds dataset) through reproduce.data;
  2. measures each model's training throughput on this machine (train.throughput.measure);
  3. for every (model, budget) turns the budget, in measured CPU core-seconds, into a plan
     (planning.plan_from_budget) and trains it with reproduce.engine (checkpoints,
     TensorBoard, results.json per run);
  4. fits the scaling laws (reproduce.scaling), writes the figures to TensorBoard and
     checks the paper's claims (reproduce.compare).

Re-running the same command resumes: finished runs are reused, an interrupted run
continues from its last checkpoint, and throughput measurements are cached.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

# Compute-matched pairs: per-image MACs at 32 px are 3.4M / 3.2M and 6.2M / 6.6M.
DEFAULT_NFNETS = ("nfnet_mini_f0", "nfnet_mini_f1")
DEFAULT_VITS = ("vit_mini_ti", "vit_mini_s")
DEFAULT_BUDGETS_CORE_SECONDS = (3.0, 6.0, 12.0, 24.0)
THROUGHPUT_FILE = "throughput.json"
RUNS_DIR = "runs"
FITS_DIR = "fits"

class StudyError(ValueError):
  """A bad flag value; one line."""


def _say(line: str) -> None:
  print(line, flush=True)


def _clock(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  return f"{seconds // 60:d}:{seconds % 60:02d}"


def parse_budgets(values) -> list[float]:
  try:
    budgets = sorted({float(v) for v in values})
  except ValueError:
    raise StudyError(f"--budgets_core_seconds must be numbers, got {','.join(values)}") from None
  if not budgets or budgets[0] <= 0:
    raise StudyError("--budgets_core_seconds must be positive numbers")
  return budgets


def run_name(model: str, budget_core_seconds: float) -> str:
  return f"{model}__{budget_core_seconds:g}cs"


def study_config(model: str, budget_core_seconds: float, images_per_second_per_core: float,
                 batch_size: int, base_lr: float | None, seed: int):
  """The pretrain_mini config of one run of the study."""
  from reproduce.configs import pretrain_mini
  config = pretrain_mini.get_config()
  config.model = model
  config.budget_core_hours = budget_core_seconds / 3600.0
  config.images_per_second_per_core = float(images_per_second_per_core)
  config.batch_size = int(batch_size)
  config.base_lr = base_lr
  config.seed = int(seed)
  config.log_every_steps = 10 ** 9  # the study prints its own progress line per run
  return config


def _init_worker() -> None:
  """Set-up of a study worker process (one TensorFlow per process)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  # Grappler's graph rewrites cost ~15 s per traced run and buy nothing for runs this short.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def _measure_one(model: str, batch_size: int, resolution: int, num_classes: int, steps: int):
  import keras
  from reproduce.train import throughput
  start = time.time()
  measured = throughput.measure(model, batch_size, resolution, steps=steps,
                                num_classes=num_classes, warmup_steps=1, hardware="cpu")
  keras.backend.clear_session()
  return measured, time.time() - start


def _train_one(config, plan, run_dir: str, data_dir: str | None):
  import keras
  from reproduce import data
  from reproduce.train import engine
  from reproduce.train import strategy as strategy_lib
  start = time.time()
  source = data.load_source(config.dataset, data_dir=data_dir, seed=int(config.seed))
  results = engine.train(config, plan, run_dir, strategy_lib.make_strategy("one_device"),
                         source=source, verbose=False)
  keras.backend.clear_session()
  return results, time.time() - start


class _InlineExecutor:
  """``--workers=0``: runs each job in this process when submitted (debugging, tests)."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def submit(self, fn, *args):
    import concurrent.futures
    future = concurrent.futures.Future()
    try:
      future.set_result(fn(*args))
    except Exception as e:  # pylint: disable=broad-except
      future.set_exception(e)
    return future


def _make_pool(workers: int):
  import concurrent.futures
  import multiprocessing
  if workers == 0:
    return _InlineExecutor()
  return concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
      initializer=_init_worker)


def measure_models(pool, models, workdir: str, batch_size: int, resolution: int,
                   num_classes: int, steps: int) -> dict[str, float]:
  """Images/s per core of each model, measured once and cached in workdir."""
  path = os.path.join(workdir, THROUGHPUT_FILE)
  cache = {}
  if os.path.exists(path):
    with open(path) as f:
      cache = json.load(f)
  key = f"batch{batch_size}_res{resolution}_classes{num_classes}"
  rates = cache.setdefault(key, {})
  todo = [m for m in models if m not in rates]
  futures = {pool.submit(_measure_one, m, batch_size, resolution, num_classes, steps): m
             for m in todo}
  for i, future in enumerate(_as_completed(futures), 1):
    model = futures[future]
    measured, took = future.result()
    rates[model] = measured.median
    _say(f"  measure [{i}/{len(todo)}] {model:<20} {measured.median:8.1f} img/s/core "
         f"(min {measured.min:.1f}, max {measured.max:.1f}; {took:.0f} s)")
    with open(path + ".tmp", "w") as f:
      json.dump(cache, f, indent=1)
    os.replace(path + ".tmp", path)
  return {m: rates[m] for m in models}


def plan_runs(models, budgets, rates, source, batch_size, base_lr, seed):
  """(name, config, plan) of every feasible run; budgets below one step are skipped."""
  from reproduce import planning
  runs, skipped = [], []
  for model in models:
    for b in budgets:
      config = study_config(model, b, rates[model], batch_size, base_lr, seed)
      try:
        plan = planning.plan_from_budget(
            model, config.budget_core_hours, dataset_size=source.train_size, hardware="cpu",
            batch_size=batch_size, resolution=config.resolution,
            num_classes=source.num_classes, images_per_second_per_core=rates[model],
            lr=base_lr)
      except planning.PlanError as e:
        skipped.append(f"{run_name(model, b)}: {e}")
        continue
      runs.append((run_name(model, b), config, plan))
  return runs, skipped


def _as_completed(futures):
  import concurrent.futures
  return concurrent.futures.as_completed(futures)


def train_runs(pool, runs, workdir: str, data_dir: str | None) -> None:
  """Trains every planned run (reusing finished ones), printing a line as each ends."""
  from reproduce.train import engine
  study_start = time.time()
  futures, reused = {}, []
  # Longest first (NFNets trace slowest) so the workers finish together.
  runs = sorted(runs, key=lambda r: -(r[2].core_hours * 3600.0 + (30 if r[2].family == "nfnet" else 8)))
  for name, config, plan in runs:
    run_dir = os.path.join(workdir, RUNS_DIR, name)
    results_path = os.path.join(run_dir, engine.RESULTS_FILE)
    if os.path.exists(results_path):
      with open(results_path) as f:
        reused.append((name, plan, json.load(f)))
    else:
      futures[pool.submit(_train_one, config, plan, run_dir, data_dir)] = (name, plan)
  total = len(runs)
  for i, (name, plan, results) in enumerate(reused, 1):
    _progress(i, total, name, plan, results, "reused", study_start, None)
  # Remaining work in core-seconds of training, to turn the observed pace into an ETA.
  remaining = sum(plan.core_hours for name, plan in futures.values()) * 3600.0
  work_done = 0.0
  for i, future in enumerate(_as_completed(futures), len(reused) + 1):
    name, plan = futures[future]
    work_done += plan.core_hours * 3600.0
    try:
      results, took = future.result()
    except engine.TrainingDiverged as e:  # a diverged run is a data point lost, not the study
      _say(f"  [{i:2d}/{total}] {name:<26} diverged: {str(e).splitlines()[0]}")
      continue
    elapsed = time.time() - study_start
    eta = elapsed / work_done * (remaining - work_done) if work_done else None
    _progress(i, total, name, plan, results, f"{took:5.1f} s", study_start, eta)


def _progress(i, total, name, plan, results, status, study_start, eta) -> None:
  eta_text = "" if eta is None else f" ETA {_clock(eta)}"
  _say(f"  [{i:2d}/{total}] {name:<26} {plan.epochs:6.2f} ep {plan.steps:5d} steps  "
       f"loss {results['heldout_loss']:.3f} top1 {results['heldout_top1']:.3f}  {status}  "
       f"| elapsed {_clock(time.time() - study_start)}{eta_text}")


def fit_and_compare(workdir: str, bootstrap: int, seed: int) -> dict:
  """Scaling fits + TensorBoard figures + the comparison with the paper's claims."""
  from reproduce.analysis import compare, scaling
  points = scaling.load_points(os.path.join(workdir, RUNS_DIR, "*"), compute="planned")
  fits = scaling.fit_all(points, bootstrap=bootstrap, seed=seed)
  logdir = os.path.join(workdir, FITS_DIR)
  scaling.write_tensorboard(logdir, points, fits)
  result = compare.compare(points, fits, model_stats=False)
  compare.write_tensorboard(logdir, result)
  compare.write_json(os.path.join(workdir, "compare.json"), result)
  _say(compare.format_table(result))
  for family, fit in sorted(fits.get("per_family", {}).items()):
    law = fit.get("fit") or {}
    if law.get("b") is not None:
      lo, hi = law["ci"]["b"]
      _say(f"{family} compute-efficient frontier: held-out loss ~ C^-{law['b']:.3f} "
           f"(95% CI of the exponent {lo:.3f}..{hi:.3f}; {law['n']} runs)")
  return result


def run_study(workdir: str, nfnets, vits, budgets, batch_size: int, base_lr: float | None,
              measure_steps: int, bootstrap: int, seed: int, data_dir: str | None,
              workers: int = 2) -> dict:
  """The whole study; returns the comparison result."""
  import model_defs
  from reproduce import data
  models = list(nfnets) + list(vits)
  if not nfnets or not vits:
    raise StudyError("--nfnet_models and --vit_models must each name at least one model")
  for model in models:
    model_defs.get_spec(model)
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  _say(f"Miniature study in {os.path.abspath(workdir)}")
  source = data.load_source("digits", data_dir=data_dir, seed=seed)
  resolution = 32
  _say(f"1/3 data: {source.name}, {source.train_size} train / {source.heldout_size} held-out "
       f"images, {source.num_classes} classes. Measuring throughput (CPU, batch {batch_size}):")
  with _make_pool(workers) as pool:
    rates = measure_models(pool, models, workdir, batch_size, resolution, source.num_classes,
                           measure_steps)
    runs, skipped = plan_runs(models, budgets, rates, source, batch_size, base_lr, seed)
    total = sum(plan.core_hours for _, _, plan in runs) * 3600.0
    _say(f"2/3 training {len(runs)} runs = {len(models)} models x {len(budgets)} budgets "
         f"({', '.join(f'{b:g}' for b in budgets)} core-s), {total:.0f} core-s of training, "
         f"{workers} at a time:")
    for line in skipped:
      _say(f"  skipped {line}")
    train_runs(pool, runs, workdir, data_dir)
  _say("3/3 scaling fits and comparison with the paper's claims:")
  result = fit_and_compare(workdir, bootstrap, seed)
  _say(f"Done in {_clock(time.time() - start)}. {result['n_pass']}/{result['n_rows']} "
       f"comparison rows pass.")
  _say(f"TensorBoard logs: {os.path.abspath(workdir)} (fits and figures under {FITS_DIR}/)")
  _say(f"  view them: tensorboard --logdir {os.path.abspath(workdir)} --host 127.0.0.1")
  return result


def _define_flags() -> None:
  """Defines the study's flags (only when run as a program, so importing this module from
  Python or tests never clashes with another script's flags)."""
  flags.DEFINE_string("workdir", "study_runs", "Where runs, fits and logs go.")
  flags.DEFINE_list("nfnet_models", list(DEFAULT_NFNETS), "ConvNets of the study.")
  flags.DEFINE_list("vit_models", list(DEFAULT_VITS), "ViTs of the study.")
  flags.DEFINE_list(
      "budgets_core_seconds", [f"{b:g}" for b in DEFAULT_BUDGETS_CORE_SECONDS],
      "Compute budgets per run, in measured CPU core-seconds (the same for both families).")
  flags.DEFINE_integer("batch_size", 32, "Global batch size of every run.")
  flags.DEFINE_float(
      "base_lr", 0.2, "Peak learning rate; <= 0 uses the planner's rule (planning.base_lr).")
  flags.DEFINE_integer("measure_steps", 4, "Timed steps per throughput measure.")
  flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples for the fit CIs.")
  flags.DEFINE_integer("seed", 0, "Seed of data order, init and bootstrap.")
  flags.DEFINE_string("data_dir", None, "tfds data_dir for the prepared digits.")
  flags.DEFINE_bool("strict", False, "Exit 1 when a comparison row fails.")
  flags.DEFINE_integer(
      "workers", 2, "Runs trained at a time, each in its own process (graph building is "
      "single-threaded, so 2 keep 2 cores busy); 0 trains in this process.")


def main(argv):
  FLAGS = flags.FLAGS  # noqa: N806
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  import model_defs
  from reproduce import data, planning
  from reproduce.analysis import scaling
  from reproduce.train import engine
  user_errors = (StudyError, model_defs.UnknownModelError, data.DataError, planning.PlanError,
                 engine.EngineError, scaling.ScalingError)
  try:
    if FLAGS.workers < 0:
      raise StudyError(f"--workers must be >= 0 (0: in this process), got {FLAGS.workers}")
    if FLAGS.batch_size < 1:
      raise StudyError(f"--batch_size must be a positive integer, got {FLAGS.batch_size}")
    result = run_study(
        FLAGS.workdir, FLAGS.nfnet_models, FLAGS.vit_models, parse_budgets(FLAGS.budgets_core_seconds),
        FLAGS.batch_size, FLAGS.base_lr if FLAGS.base_lr > 0 else None,
        FLAGS.measure_steps, FLAGS.bootstrap, FLAGS.seed, FLAGS.data_dir,
        FLAGS.workers)
  except user_errors as e:
    print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.strict and not result["passed"]:
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
