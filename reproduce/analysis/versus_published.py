"""Ours vs published: a PASS / FAIL / UNDECIDED table over every number we can compare.

Rows appear only where the kit has a comparable number (docs/scaling.md):

* ``model_stats``: analytic params / GMACs / GFLOPs of the full-size variants
  (``model_defs.stats``) vs the published tables. Always available for registered models;
  a model not (yet) registered is skipped with a note.
* ``finetune``: a run's fine-tuned ImageNet top-1 (best run per model) vs the published
  top-1 of that model.
* ``claim`` and ``prediction``: the paper's claims on each family's own fits and the
  prediction of the largest budget (``reproduce.analysis.claims``); ViT rows are shown, not
  counted. Compute in any other unit is never compared with TPU-v4 core hours.

Each row is PASS, FAIL or UNDECIDED (``reproduce.analysis.verdicts``); only a counted FAIL
fails the comparison.

``run`` is the library side of ``python -m reproduce.compare``; the table goes to TensorBoard
through ``tensorboard.write_compare`` and to compare.json through ``outputs.write_compare_json``.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import model_defs
from reproduce.analysis import fits as fits_lib
from reproduce.analysis import outputs
from reproduce.analysis import runs
from reproduce.analysis import verdicts
from reproduce.analysis import claims
from reproduce.analysis.claims import NOT_A_CLAIM, claim_rows, entry_row as _row
from reproduce.analysis.claims import prediction_rows
from reproduce.analysis.frontier import best_per_group
from reproduce.analysis.runs import Point
from reproduce.core import published

# Re-exported: the claim rules live in ``claims`` and ``verdicts``.
CLAIM_FAMILY, PAPER_BATCH_SIZE, Row = claims.CLAIM_FAMILY, claims.PAPER_BATCH_SIZE, verdicts.Row
STATS_QUANTITIES = {"params": ("params", 1e-6), "gmacs": ("macs", 1e-9),
                    "gflops": ("flops", 1e-9)}


# ----------------------------------------------------------------------------------------
# Row makers. Each returns (rows, notes).


def _resolution(convention: str) -> int | None:
  match = re.search(r"(\d+)\s*px", convention)
  return int(match.group(1)) if match else None


def model_stats_rows(models: Sequence[str] | None = None) -> tuple[list[Row], list[str]]:
  """Analytic params/GMACs/GFLOPs vs the published tables (1000-class heads)."""
  rows, notes, failed = [], [], {}
  entries = [e for e in published.ENTRIES if e.quantity in STATS_QUANTITIES
             and (models is None or e.model in models)]
  for entry in entries:
    if entry.model in failed:
      continue
    resolution = _resolution(entry.convention)
    try:
      stats = model_defs.stats(entry.model, resolution=resolution, num_classes=1000,
                               **dict(entry.model_overrides))
    except model_defs.UnknownModelError:
      failed[entry.model] = f"{entry.model}: not registered in model_defs; skipped"
      continue
    except Exception as e:  # pylint: disable=broad-except  (keep comparing the others)
      failed[entry.model] = (f"{entry.model}: model_defs.stats failed "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
      continue
    attribute, scale = STATS_QUANTITIES[entry.quantity]
    rows.append(_row(entry, "model_stats", getattr(stats, attribute) * scale,
                     note=f"model_defs.stats at {stats.resolution} px"))
  notes += list(failed.values())
  return rows, notes


def finetune_rows(points: Sequence[Point]) -> tuple[list[Row], list[str]]:
  """Best fine-tuned ImageNet top-1 per model vs the model's published top-1."""
  rows, notes = [], []
  best = best_per_group([p for p in points if p.finetune_top1 is not None],
                        lambda p: p.model, lambda p: -p.finetune_top1)
  for model, p in sorted(best.items()):
    try:
      entry = published.get(f"{model}.imagenet_top1")
    except KeyError:
      notes.append(f"{model}: fine-tuned top-1 of {p.name} has no published counterpart")
      continue
    rows.append(_row(entry, "finetune", 100.0 * p.finetune_top1, note=f"run {p.name}"))
  return rows, notes


# ----------------------------------------------------------------------------------------
# The comparison.


def compare(points: Sequence[Point] = (), fits: dict | None = None, *,
            model_stats: bool = True, models: Sequence[str] | None = None,
            predictions: dict | None = None) -> dict:
  """Every comparable row of ours vs published.

  Args:
    points: runs (for fine-tuned top-1 rows).
    fits: ``fits.fit_all`` output (for claim rows); None: no claim rows.
    model_stats: include the analytic model-size rows.
    models: restrict the model-stats rows to these models.
    predictions: ``prediction.predict_all`` output (prediction rows); None: none.

  Returns:
    dict: rows (Row.to_dict(), each with status PASS/FAIL/UNDECIDED), notes (why something
    was skipped), n_rows (counted rows), n_pass, n_fail, n_undecided (of those), n_info
    (rows shown for comparison only), verdict (FAIL when a counted row fails, PASS when
    every counted row passes, else UNDECIDED) and passed (no counted row failed: what
    ``--strict`` exits 1 on).
  """
  rows, notes = [], []
  for enabled, make in ((model_stats, lambda: model_stats_rows(models)),
                        (bool(points), lambda: finetune_rows(points)),
                        (fits is not None, lambda: claim_rows(fits)),
                        (predictions is not None, lambda: (prediction_rows(predictions), []))):
    if enabled:
      more_rows, more_notes = make()
      rows += more_rows
      notes += more_notes
  result = verdicts.counts(rows)
  if not result["n_rows"]:
    notes.append("nothing comparable: no counted rows")
  if result["n_info"]:
    notes.append(f"status in parentheses: {NOT_A_CLAIM}")
  return dict(rows=[r.to_dict() for r in rows], notes=notes, **result)


def _fmt(value: float) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  return f"{value:.6g}"


_COLUMNS = ("key", "ours", "published", "difference", "tolerance", "unit", "status")


def _status(row: dict) -> str:
  return row["status"] if row.get("counted", True) else f"({row['status']})"


def table_rows(result: dict) -> list[list[str]]:
  return [[r["key"], _fmt(r["ours"]), _fmt(r["published"]), _fmt(r["difference"]),
           _fmt(r["tolerance"]), r["unit"], _status(r)] for r in result["rows"]]


def format_table(result: dict) -> str:
  """Plain-text table for the console, with notes and a verdict line."""
  body = [list(_COLUMNS)] + table_rows(result)
  widths = [max(len(line[i]) for line in body) for i in range(len(_COLUMNS))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in body]
  lines.insert(1, "  ".join("-" * w for w in widths))
  lines += [f"note: {n}" for n in result["notes"]]
  lines.append(verdicts.verdict_line(result))
  return "\n".join(lines)


def markdown_table(result: dict) -> str:
  lines = ["| " + " | ".join(_COLUMNS) + " | note |", "|" + "---|" * (len(_COLUMNS) + 1)]
  for cells, r in zip(table_rows(result), result["rows"]):
    lines.append("| " + " | ".join(cells) + f" | {r['note']} |")
  lines += [""] + [f"- {n}" for n in result["notes"]]
  lines.append(f"\n**{verdicts.verdict_line(result)}**")
  return "\n".join(lines)


def run(runs_glob: str | None, fits_path: str | None, compute: str, bootstrap: int,
        model_stats: bool) -> dict:
  """Loads, fits when needed, compares. Raises ScalingError on bad input."""
  points = runs.load_points(runs_glob, compute) if runs_glob else []
  notes = []
  fits = None
  if fits_path:
    fits = outputs.load_fits(fits_path)
  elif points:
    try:
      fits = fits_lib.fit_all(points, bootstrap=bootstrap)
    except runs.ScalingError as e:
      notes.append(f"claims skipped: {e}")
  result = compare(points, fits, model_stats=model_stats)
  result["notes"] = notes + result["notes"]
  return result
