"""Synthetic runs that follow a known scaling law, for the analysis tests."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from reproduce.analysis.runs import Point, point_from_record
from reproduce.core import fileio
from reproduce.core import results


def synthetic_records(models: dict[str, float] | None = None,
                      epochs: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
                      lr_factors: Sequence[float] = (0.5, 1.0, 2.0), *, a: float = 3.0,
                      b: float = 0.1, irreducible: float = 0.0, noise: float = 0.0,
                      seed: int = 0, hours_per_param_epoch: float = 1e-6,
                      hardware: str = "cpu", family: str | None = None,
                      size_exponent: float = 0.5, size_penalty: float = 0.02,
                      flops_per_param: float = 2.0, finetune_b: float | None = None,
                      finetune_a: float = 0.5,
                      budgets: Sequence[float] | None = None, seeds: Sequence[int] = (0,),
                      lr_grid: Sequence[float] | None = None, lr_slope: float = -0.25,
                      lr_penalty: float = 0.03) -> list[dict]:
  """results.json records whose compute-optimal runs follow ``L = E + a * C^-b``.

  Compute is ``hours_per_param_epoch * params * epochs``. A run's loss is the law at its
  compute, raised by ``1 + size_penalty * log(params / optimal size)^2`` where the optimal
  size is ``k * C^size_exponent`` with k set so the grid's centre is optimal (so optimal
  epochs scale as ``C^(1 - size_exponent)``; at 0.5 the exponent ratio is 1), and by how far
  its LR is from the optimal LR 1.6 * epochs^lr_slope (``1 + lr_penalty * log2(lr /
  optimal)^2``); then multiplied by log-normal noise of std ``noise``, drawn anew for every
  seed of ``seeds`` (replicates: equal records but for ``seed`` and the noise).

  Args:
    models: model name -> params (default: five sizes 1e5..1.6e6, family from the name).
    epochs: epoch budgets of every model.
    lr_factors: each budget's LR sweep, as factors of the optimal LR.
    lr_grid: instead of ``lr_factors``, the same absolute LRs at every budget (the optimum
      then moves across a fixed grid, as in a real sweep).
    lr_slope, lr_penalty: the optimal LR's trend with epochs, and the cost of missing it.
    a, b, irreducible: the law.
    noise: log-normal noise std on the loss.
    seed: noise seed.
    hours_per_param_epoch: compute per parameter-epoch (core hours).
    hardware: written to each record (sets the compute unit).
    family: family of every model (default: the text before the first '_').
    size_exponent: optimal size ~ C^size_exponent.
    size_penalty: how fast the loss rises away from the optimal size. On a factor-2 grid
      above ~0.6 a run between two optimal ones is never on the noiseless frontier, so the
      noiseless pipeline recovers size_exponent exactly.
    flops_per_param: ``flops_per_image = flops_per_param * params``.
    finetune_b, finetune_a: when ``finetune_b`` is set, each run carries ``finetune_top1``
      with error ``finetune_a * C^-finetune_b`` (times the same noise); else None.
    budgets: when set, compute budgets (core hours) instead of ``epochs``: every model
      trains at every budget (epochs = budget / (hours_per_param_epoch * params)), and each
      record carries ``config.budget_core_hours``, as the study's runs do.

  Returns:
    A list of results.json dicts (schema ``reproduce.core.results.SCHEMA``).
  """
  models = models or {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}
  rng = np.random.default_rng(seed)
  sizes = list(models.values())
  centre_size = math.sqrt(min(sizes) * max(sizes))
  computes = budgets or [hours_per_param_epoch * centre_size * e for e in epochs]
  centre_compute = math.sqrt(min(computes) * max(computes))
  records = []
  for model, params in models.items():
    for i, e in enumerate(epochs if budgets is None else
                          [c / (hours_per_param_epoch * params) for c in budgets]):
      compute = hours_per_param_epoch * params * e
      size_gap = math.log(params / centre_size) - size_exponent * math.log(
          compute / centre_compute)
      lr_opt = 1.6 * e ** lr_slope
      lrs = [lr_opt * f for f in lr_factors] if lr_grid is None else list(lr_grid)
      for lr, run_seed in ((lr, s) for lr in lrs for s in seeds):
        penalty = 1 + size_penalty * size_gap ** 2 + lr_penalty * math.log2(lr / lr_opt) ** 2
        loss = (irreducible + a * compute ** -b) * penalty * math.exp(noise * rng.normal())
        top1 = float(np.clip(1.0 - 0.3 * loss / (irreducible + a), 0.0, 1.0))
        finetuned = None if finetune_b is None else float(np.clip(
            1.0 - finetune_a * compute ** -finetune_b * math.exp(noise * rng.normal()), 0, 1))
        records.append(dict(
            schema=results.SCHEMA, model=model, family=family or model.split("_")[0],
            params=params, flops_per_image=flops_per_param * params, resolution=32,
            dataset="synthetic", dataset_size=1000, num_classes=10, epochs=e,
            steps=int(e * 100), batch_size=16, base_lr=lr, hardware=hardware, seed=run_seed,
            planned_core_hours=compute, measured_core_hours=compute * 1.1, heldout_loss=loss,
            heldout_top1=top1, finetune_top1=finetuned,
            config=dict(seed=run_seed, **({} if budgets is None else
                                          dict(budget_core_hours=budgets[i])))))
  return records


def run_name(record: dict) -> str:
  """``<model>_e<epochs>_lr<lr>[_s<seed>]``: the run directory of a synthetic record."""
  seed = record.get("seed") or 0
  return (f"{record['model']}_e{record['epochs']:g}_lr{record['base_lr']:.4g}"
          + (f"_s{seed}" if seed else ""))


def as_points(records: Sequence[dict], compute: str = "planned") -> list[Point]:
  """The records as ``Point``s without writing them (as ``load_points`` would read them)."""
  return [point_from_record(run_name(r), run_name(r), r, compute) for r in records]


def write_records(directory: str, records) -> list[str]:
  """Writes each record to ``directory/<run_name>/results.json`` (as a finished run would);
  the run dirs."""
  dirs = []
  for r in records:
    run = fileio.join(directory, run_name(r))
    fileio.write_json(fileio.join(run, results.FILE), r, sort_keys=False)
    dirs.append(run)
  return dirs
