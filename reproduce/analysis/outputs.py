"""The analysis files for scripts: fits.json, points.csv and compare.json.

Every file is written atomically through ``reproduce.core.fileio`` (local or ``gs://``), so a
reader never sees half a file. JSON keeps the order of the dicts that produced it; NaN and
infinities are written as null.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Sequence

from reproduce.analysis.runs import Point, ScalingError, read_json
from reproduce.core import fileio
from reproduce.core import results

FITS_FILE = "fits.json"
POINTS_FILE = "points.csv"
POINT_COLUMNS = ("name", "model", "family", "params", "flops_per_image", "epochs", "base_lr",
                 "compute", "compute_unit", "compute_kind", "heldout_loss", "heldout_top1",
                 "finetune_top1", "batch_size", "resolution", "dataset", "hardware", "budget",
                 "seed", "run")


def points_to_csv(points: Iterable[Point]) -> str:
  """points.csv text: one row per run, columns ``POINT_COLUMNS``."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(POINT_COLUMNS)
  for p in points:
    row = p.to_dict()
    writer.writerow(["" if row[c] is None else row[c] for c in POINT_COLUMNS])
  return buffer.getvalue()


def write_fit_files(directory: str, points: Sequence[Point], fits: dict) -> list[str]:
  """Writes ``directory/fits.json`` and ``directory/points.csv``; returns their paths."""
  fits_path = fileio.join(directory, FITS_FILE)
  csv_path = fileio.join(directory, POINTS_FILE)
  fileio.write_json(fits_path, fits, sort_keys=False)
  fileio.write_text(csv_path, points_to_csv(points))
  return [fits_path, csv_path]


def load_fits(path: str) -> dict:
  """Reads a fits.json written by ``fit_scaling``; ScalingError when unreadable."""
  fits, error = read_json(path)
  if error:
    raise ScalingError(f"cannot read fits {path}: {error}")
  if not isinstance(fits, dict) or fits.get("schema") != results.FITS_SCHEMA:
    raise ScalingError(f"{path} is not a fits.json (schema {results.FITS_SCHEMA!r})")
  return fits


def write_compare_json(path: str, result: dict) -> None:
  """compare.json: the rows, notes and verdict of ``versus_published.compare``."""
  fileio.write_json(path, result, sort_keys=False)
