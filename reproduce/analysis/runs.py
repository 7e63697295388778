"""Finished runs as ``Point`` objects: reading and validating their ``results.json``.

``load_points`` expands run globs (local or ``gs://``), reads every ``results.json`` through
``reproduce.core.fileio`` and checks it against ``reproduce.core.results``; every other
module of ``reproduce.analysis`` works on the resulting points. Bad input raises
``ScalingError`` with a one-line message that names the runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from reproduce.core import cli
from reproduce.core import fileio
from reproduce.core.errors import UserError
from reproduce.core import results
from reproduce.planning.hardware import PAPER_HARDWARE, compute_unit

# The unit of every compute number in the paper; other units are never compared with it.
PAPER_COMPUTE_UNIT = compute_unit(PAPER_HARDWARE)


class ScalingError(UserError, ValueError):
  """Bad input to a fit (no runs, broken results.json, too few points). One-line message."""


@dataclasses.dataclass(frozen=True)
class Point:
  """One finished run, reduced to what the fits need.

  Attributes:
    run: where it was read from (run directory or results.json path).
    name: short unique label (the run directory's name).
    compute: pre-training compute in ``compute_unit`` (planned or measured core hours).
    compute_kind: ``"planned"`` or ``"measured"``.
    finetune_top1: fine-tuned ImageNet top-1 (fraction) or None.
    budget: the compute budget the run was planned for (results.json
      ``config.budget_core_hours``), or None (older runs): runs of one budget share it.
    seed: the run's seed (results.json ``seed``, else ``config.data_seed``, else
      ``config.seed``), or None: runs equal
      in everything but the seed are replicates (``seeds``).
    n_seeds: how many replicate runs this point averages (1 for a run as read).
    Other fields are copied from results.json (top-1 values are fractions in [0, 1]).
  """
  run: str
  name: str
  model: str
  family: str
  params: float
  flops_per_image: float
  epochs: float
  base_lr: float
  compute: float
  compute_unit: str
  compute_kind: str
  heldout_loss: float
  heldout_top1: float
  finetune_top1: float | None = None
  batch_size: int | None = None
  resolution: int | None = None
  dataset: str | None = None
  hardware: str | None = None
  budget: float | None = None
  seed: int | None = None
  n_seeds: int = 1

  @property
  def top1(self) -> float:
    """Fine-tuned top-1 when the run has one, else held-out top-1."""
    return self.heldout_top1 if self.finetune_top1 is None else self.finetune_top1

  @property
  def top1_source(self) -> str:
    return "heldout" if self.finetune_top1 is None else "finetune"

  @property
  def sweep_key(self) -> tuple:
    """Runs with equal keys differ only in ``base_lr`` (one LR sweep)."""
    return (self.model, self.epochs, self.batch_size, self.resolution, self.dataset)

  @property
  def replicate_key(self) -> tuple:
    """Runs with equal keys differ only in ``seed`` (replicates of one run)."""
    return self.sweep_key + (self.base_lr, self.budget)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def list_names(items: Sequence[str], limit: int = 6) -> str:
  """``a, b, c and 4 more``: a short list for one-line error messages."""
  items = list(items)
  shown = ", ".join(items[:limit])
  return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def point_names(points: Sequence[Point], limit: int = 6) -> str:
  return list_names([p.name for p in points], limit)


def read_json(path: str) -> tuple[Any, str | None]:
  """(parsed JSON, None), or (None, the first line of why ``path`` could not be read)."""
  # tf.io.gfile reports missing or unreadable files as tf.errors.OpError, not OSError.
  errors = (OSError, ValueError, cli.import_tensorflow().errors.OpError)
  try:
    return fileio.read_json(path), None
  except errors as e:
    return None, cli.first_line(e)


def _unique_names(paths: Sequence[str]) -> list[str]:
  """Short run labels: the run directory's name, made unique with its parent if needed."""
  def label(path, depth):
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if parts and parts[-1] == results.FILE:
      parts = parts[:-1]
    return "/".join(parts[-depth:]) if parts else path

  for depth in (1, 2, 3):
    names = [label(p, depth) for p in paths]
    if len(set(names)) == len(names):
      return names
  return [f"{label(p, 1)}#{i}" for i, p in enumerate(paths)]


def _matched_paths(runs: str | Sequence[str]) -> list[str]:
  """Every path matched by the comma-separated globs of ``runs``, sorted, without repeats."""
  patterns = [runs] if isinstance(runs, str) else list(runs)
  patterns = [p.strip() for pat in patterns for p in pat.split(",") if p.strip()]
  if not patterns:
    raise ScalingError("no run glob given")
  paths = sorted(dict.fromkeys(path for pattern in patterns for path in fileio.glob(pattern)))
  if not paths:
    raise ScalingError(f"no runs match {list_names(patterns)}")
  return paths


def _results_files(paths: Sequence[str]) -> list[str]:
  """The results.json of each run dir in ``paths`` (files are kept as they are)."""
  files, no_results = [], []
  for path in paths:
    if not fileio.isdir(path):
      files.append(path)
      continue
    candidate = fileio.join(path, results.FILE)
    if fileio.exists(candidate):
      files.append(candidate)
    else:
      no_results.append(path)
  if no_results:
    raise ScalingError(f"no {results.FILE} in {len(no_results)} run dir(s): "
                       f"{list_names(no_results)}")
  return files


def _valid_records(files: Sequence[str], compute_field: str) -> list[dict]:
  """The record of every file; one ScalingError naming every unreadable or invalid one."""
  records, bad = [], []
  for path in files:
    record, error = read_json(path)
    problems = [f"unreadable: {error}"] if error else results.problems(record, compute_field)
    if problems:
      bad.append(f"{path} ({'; '.join(problems)})")
    records.append(record)
  if bad:
    raise ScalingError(f"invalid results in {len(bad)} run(s): {list_names(bad, 4)}")
  return records


def point_from_record(path: str, name: str, r: dict, compute: str = "planned") -> Point:
  """The ``Point`` of one results.json record ``r`` read from ``path``."""
  suffix = "/" + results.FILE
  config = r.get("config") or {}
  budget = config.get("budget_core_hours")
  # Replicates differ in their data seed where one is set (same program, same init).
  seed = r.get("seed", config.get("data_seed", config.get("seed")))
  seed = config.get("seed") if seed is None else seed
  return Point(
      run=path[:-len(suffix)] if path.endswith(suffix) else path, name=name,
      model=str(r["model"]), family=str(r["family"]), params=float(r["params"]),
      flops_per_image=float(r["flops_per_image"]), epochs=float(r["epochs"]),
      base_lr=float(r["base_lr"]), compute=float(r[results.COMPUTE_FIELDS[compute]]),
      compute_unit=compute_unit(r.get("hardware")), compute_kind=compute,
      heldout_loss=float(r["heldout_loss"]), heldout_top1=float(r["heldout_top1"]),
      finetune_top1=None if r.get("finetune_top1") is None else float(r["finetune_top1"]),
      batch_size=r.get("batch_size"), resolution=r.get("resolution"),
      dataset=r.get("dataset"), hardware=r.get("hardware"),
      budget=None if budget is None else float(budget),
      seed=None if seed is None else int(seed))


def load_points(runs: str | Sequence[str], compute: str = "planned") -> list[Point]:
  """Reads and validates every run matched by ``runs``.

  Args:
    runs: a glob (or comma-separated globs, or a list of them) matching run directories
      (each holding results.json) or results.json files; local or ``gs://``.
    compute: ``"planned"`` (plan's core hours) or ``"measured"`` (wall-clock core hours).

  Returns:
    Points sorted by (compute, model, base_lr).

  Raises:
    ScalingError: nothing matched, a run directory has no results.json, or a results.json
      is unreadable or misses a required field. The message names the runs.
  """
  if compute not in results.COMPUTE_FIELDS:
    raise ScalingError(f"compute must be one of {sorted(results.COMPUTE_FIELDS)}, "
                       f"got {compute!r}")
  files = _results_files(_matched_paths(runs))
  records = _valid_records(files, results.COMPUTE_FIELDS[compute])
  points = [point_from_record(path, name, record, compute)
            for path, name, record in zip(files, _unique_names(files), records)]
  return sorted(points, key=lambda p: (p.compute, p.model, p.base_lr))


def single_unit(points: Sequence[Point]) -> str:
  """The one compute unit of ``points``; ScalingError when runs mix hardware units."""
  units = sorted({p.compute_unit for p in points})
  if len(units) != 1:
    by_unit = {u: [p for p in points if p.compute_unit == u] for u in units}
    detail = "; ".join(f"{u}: {point_names(ps, 3)}" for u, ps in by_unit.items())
    raise ScalingError(f"runs mix compute units, which cannot share one fit: {detail}"
                       if units else "no points")
  return units[0]
