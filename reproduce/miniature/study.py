"""The study end to end: data, throughput, training, fine-tuning, fits, comparison."""

from __future__ import annotations

import os
import time

from reproduce.core import cli
from reproduce.core import fileio
from reproduce.miniature import grid
from reproduce.miniature import workers
from reproduce.miniature.workers import say

FITS_DIR = "fits"
COMPARE_FILE = "compare.json"
# Figure 1 as a file too (both families on one compute-matched plot), beside fits.json.
FIGURE1_PNG = "fig1_top1_error_vs_compute.png"


def fit_and_compare(workdir: str, bootstrap: int, seed: int) -> dict:
  """Scaling fits + TensorBoard figures + the comparison with the paper's claims."""
  # pylint: disable=g-import-not-at-top  (TensorFlow starts after the flags are checked)
  from reproduce.analysis import compare, figures, fits as fits_lib, outputs, runs, tensorboard
  points = runs.load_points(fileio.join(workdir, workers.RUNS_DIR, "*"), compute="planned")
  fits = fits_lib.fit_all(points, bootstrap=bootstrap, seed=seed)
  logdir = fileio.join(workdir, FITS_DIR)
  outputs.write_fit_files(logdir, points, fits)
  tensorboard.write_fits(logdir, points, fits)
  fileio.write_bytes(fileio.join(logdir, FIGURE1_PNG),
                     figures.png_bytes(figures.figure_top1_vs_compute(points, fits)))
  result = compare.compare(points, fits, model_stats=False)
  tensorboard.write_compare(logdir, result)
  outputs.write_compare_json(fileio.join(workdir, COMPARE_FILE), result)
  say(compare.format_table(result))
  for family, per_family in sorted(fits.get("per_family", {}).items()):
    say(family_summary(family, per_family))
  return result


def family_summary(family: str, per_family: dict) -> str:
  """One line per family: its frontier law and how its optimal size and epochs scale."""
  law = per_family.get("fit") or {}
  line = f"{family}:"
  if law.get("b") is not None:
    line += (f" frontier loss ~ C^-{law['b']:.3f} (95% CI {cli.format_interval(law['ci']['b'])};"
             f" {law['n']} runs)")
  scaling = per_family.get("optimal_scaling") or {}
  if scaling.get("size") and scaling.get("epochs"):
    size, epochs = scaling["size"], scaling["epochs"]
    line += (f"; optimal size (forward FLOPs/image) ~ C^{size['exponent']:.2f} "
             f"{cli.format_interval(size['ci']['exponent'])}, epochs ~ C^{epochs['exponent']:.2f} "
             f"{cli.format_interval(epochs['ci']['exponent'])}")
  finetuned = per_family.get("finetune_fit")
  if finetuned:
    line += (f"; fine-tuned top-1 error ~ C^-{finetuned['b']:.3f} (95% CI "
             f"{cli.format_interval(finetuned['ci']['b'])}; best of {finetuned['n']} budgets)")
  return line


def check_models(nfnets, vits) -> list[str]:
  """All models of the study; StudyError / UnknownModelError before any work."""
  import model_defs  # pylint: disable=g-import-not-at-top
  if not nfnets or not vits:
    raise grid.StudyError("--nfnet_models and --vit_models must each name at least one model")
  models = list(nfnets) + list(vits)
  for model in models:
    model_defs.get_spec(model)
  return models


def finetune_stage(pool, runs, rates, source, workdir: str, steps: int, seed: int,
                   data_dir: str | None) -> None:
  """Fine-tunes every pre-trained run for ``steps`` steps (0: skipped) and prints the cost."""
  if steps <= 0:
    say("3/4 fine-tuning skipped (--finetune_steps=0): the fits use what the runs' "
        "results.json hold")
    return
  finetunes = grid.plan_finetunes(runs, steps, rates, source, seed)
  recipe = ""
  if finetunes:
    config = finetunes[0][1]  # finetune_mini: the same recipe for every run
    recipe = (f" (batch {config.batch_size} at {config.resolution} px, SAM {config.sam}, "
              f"repeated augmentation x{config.augment_multiplicity})")
  say(f"3/4 fine-tuning every run for {steps} steps{recipe}:")
  cost = workers.finetune_runs(pool, finetunes, workdir, data_dir)
  say(f"  fine-tuning took {cli.format_duration(cost['wall_seconds'])} wall, "
      f"{cost['core_seconds']:.0f} core-s measured ({cost['ran']} run, {cost['reused']} "
      f"reused, {cost['diverged']} diverged)")


def run_study(workdir: str, nfnets, vits, budgets, batch_size: int, base_lr,
              measure_steps: int, bootstrap: int, seed: int, data_dir: str | None,
              workers_at_once: int = 2,
              finetune_steps: int = grid.DEFAULT_FINETUNE_STEPS) -> dict:
  """The whole study; returns the comparison result."""
  from reproduce import data  # pylint: disable=g-import-not-at-top
  models = check_models(nfnets, vits)
  fileio.makedirs(workdir)
  start = time.time()
  say(f"Miniature study in {os.path.abspath(workdir)}")
  source = data.load_source("digits", data_dir=data_dir, seed=seed)
  say(f"1/4 data: {source.name}, {source.train_size} train / {source.heldout_size} held-out "
      f"images, {source.num_classes} classes. Measuring throughput (CPU, batch {batch_size}):")
  with workers.make_pool(workers_at_once) as pool:
    rates = workers.measure_models(pool, models, workdir, batch_size, grid.RESOLUTION,
                                   source.num_classes, measure_steps)
    runs, skipped = grid.plan_runs(models, budgets, rates, source, batch_size, base_lr, seed)
    total = sum(plan.core_hours for _, _, plan in runs) * 3600.0
    say(f"2/4 training {len(runs)} runs = {len(models)} models x {len(budgets)} budgets "
        f"({', '.join(f'{b:g}' for b in budgets)} core-s), {total:.0f} core-s of training, "
        f"{workers_at_once} at a time:")
    for line in skipped:
      say(f"  skipped {line}")
    workers.train_runs(pool, runs, workdir, data_dir)
    finetune_stage(pool, runs, rates, source, workdir, finetune_steps, seed, data_dir)
  say("4/4 scaling fits and comparison with the paper's claims:")
  result = fit_and_compare(workdir, bootstrap, seed)
  say(f"Done in {cli.format_duration(time.time() - start)}. {result['n_pass']}/"
      f"{result['n_rows']} comparison rows pass.")
  say(f"TensorBoard logs: {os.path.abspath(workdir)} (fits and figures under {FITS_DIR}/; "
      f"Figure 1 also as {fileio.join(FITS_DIR, FIGURE1_PNG)})")
  say(f"  view them: tensorboard --logdir {os.path.abspath(workdir)} --host 127.0.0.1")
  return result
