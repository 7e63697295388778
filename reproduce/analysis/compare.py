"""Ours vs published: a PASS/FAIL table over every number we can compare.

Rows appear only where the kit has a comparable number (docs/scaling.md):

* ``model_stats``: analytic params / GMACs / GFLOPs of the full-size variants
  (``model_defs.stats``) vs the published tables. Always available for registered models;
  a model not (yet) registered is skipped with a note.
* ``finetune``: a run's fine-tuned ImageNet top-1 (best run per model) vs the published
  top-1 of that model.
* ``claim``: the paper's claims measured on each family's own fits (``claim.<family>.*``):
  the loss-vs-compute slope is negative, so is the slope of the fine-tuned top-1 error vs
  pre-training compute (Figure 1; when runs carry ``finetune_top1``), optimal size and epochs both grow with compute at a
  ratio near 1, the optimal LR falls with the epoch budget; in TPU-v4 core hours with the
  paper's batch size also the absolute claims (optimal LR ~1.6 at small budgets, optimal
  epochs > 1 above ~5k core hours). The claims are the paper's for NFNets
  (``claim.nfnet.*``); the ViT rows beside them apply the same test, are marked "not a paper
  claim" and are not counted in the verdict. Compute in any other unit is never compared
  with TPU-v4 core hours.

* ``prediction``: each family's law fitted on all budgets but the largest predicts the
  largest (``prediction.predict_all``); PASS when the observed value is inside the interval.

``run`` is the library side of ``python -m reproduce.compare``; the table goes to TensorBoard
through ``tensorboard.write_compare`` and to compare.json through ``outputs.write_compare_json``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

from reproduce.analysis import fits as fits_lib
from reproduce.analysis import outputs
from reproduce.analysis import runs
from reproduce.analysis.frontier import best_per_group
from reproduce.analysis.runs import PAPER_COMPUTE_UNIT, Point
from reproduce.core import cli
from reproduce.core import published

STATS_QUANTITIES = {"params": ("params", 1e-6), "gmacs": ("macs", 1e-9),
                    "gflops": ("flops", 1e-9)}
PAPER_BATCH_SIZE = published.PAPER_BATCH_SIZE
# The paper states its scaling claims for NFNets; rows of other families are shown, not judged.
CLAIM_FAMILY = published.get("claim.size_vs_epochs_exponent_ratio").model
NOT_A_CLAIM = "not a paper claim (the paper states it for NFNets only); not in the verdict"


@dataclasses.dataclass
class Row:
  """One comparison. ``difference`` = ours - published; PASS when |difference| <= tolerance.

  ``counted`` is False for a row shown for comparison only (a claim measured on a family the
  paper does not make it for): its status is reported but not part of the verdict.
  """
  key: str
  kind: str
  model: str
  quantity: str
  ours: float
  published: float
  unit: str
  tolerance: float
  source: str
  note: str = ""
  counted: bool = True

  @property
  def difference(self) -> float:
    return self.ours - self.published

  @property
  def passed(self) -> bool:
    # A hair of slack so values printed equal to the tolerance's precision pass.
    return (math.isfinite(self.ours)
            and abs(self.difference) <= self.tolerance + 1e-9 * max(1.0, abs(self.published)))

  @property
  def status(self) -> str:
    return "PASS" if self.passed else "FAIL"

  def to_dict(self) -> dict:
    return dict(dataclasses.asdict(self), difference=self.difference, status=self.status)


def _row(entry: published.Published, kind: str, ours: float, note: str = "") -> Row:
  return Row(key=entry.key, kind=kind, model=entry.model, quantity=entry.quantity,
             ours=float(ours), published=entry.value, unit=entry.unit,
             tolerance=entry.tolerance, source=entry.source, note=note)


# ----------------------------------------------------------------------------------------
# Row makers. Each returns (rows, notes).


def _resolution(convention: str) -> int | None:
  match = re.search(r"(\d+)\s*px", convention)
  return int(match.group(1)) if match else None


def model_stats_rows(models: Sequence[str] | None = None) -> tuple[list[Row], list[str]]:
  """Analytic params/GMACs/GFLOPs vs the published tables (1000-class heads)."""
  try:
    import model_defs  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except  (a broken package must not hide rows)
    return [], [f"model_defs unavailable ({type(e).__name__}: {e}); model-stats rows skipped"]

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


def _sign(estimate: float | None, ci: Sequence | None) -> tuple[float, str]:
  """+1/-1 when the CI (or, without one, the estimate) is on one side of 0, else 0."""
  if estimate is None or not math.isfinite(estimate):
    return math.nan, "estimate undefined"
  if ci and ci[0] is not None:
    lo, hi = ci
    sign = 1.0 if lo > 0 else -1.0 if hi < 0 else 0.0
    return sign, f"estimate {estimate:.4g}, CI {cli.format_interval(ci)}"
  sign = 1.0 if estimate > 0 else -1.0 if estimate < 0 else 0.0
  return sign, f"estimate {estimate:.4g} (no CI)"


def _sign_row(entry: published.Published, family: str, estimate, ci, what: str) -> Row:
  sign, note = _sign(estimate, ci)
  return _claim_row(entry, family, sign, f"{what}: {note}")


def _slope_row(key: str, family: str, law: dict, what: str) -> Row:
  """The sign of the log-log slope -b of a power law ``a*C^-b``, judged on its CI."""
  lo, hi = law["ci"]["b"]
  return _sign_row(published.get(key), family, -law["b"], None if lo is None else [-hi, -lo],
                   what)


def _claim_row(entry: published.Published, family: str, ours: float, note: str) -> Row:
  """``entry`` measured on ``family``'s own fits, keyed ``claim.<family>.<quantity>``.

  The paper states its claims for ``entry.model`` (NFNets); the same test on another family
  is shown beside it, marked, and not counted in the verdict.
  """
  row = _row(entry, "claim", ours, note)
  row.key = f"claim.{family}.{entry.key[len('claim.'):]}"
  row.model = family
  if family != entry.model:
    row.counted = False
    row.note = f"{NOT_A_CLAIM} for {family}: {note}"
  return row


_OTHER_BOUND = {"lower bound": "upper bound", "upper bound": "lower bound"}


def _exponent_ci(opt: dict, part: str) -> tuple[list | None, str]:
  """The CI a sign is judged on, and the row's text. Fitted on edge optima, an exponent is
  only a bound: a lower bound's CI extends to +inf, an upper one's to -inf (epochs move
  against size at a fixed budget, so their bound is the other one)."""
  basis = opt.get("basis", "interior")
  ci = opt[part]["ci"]["exponent"]
  if basis == "interior":
    return ci, f"{part} ~ C^alpha"
  basis = _OTHER_BOUND.get(basis, basis) if part == "epochs" else basis
  estimate = opt[part]["exponent"]
  lo, hi = (estimate, estimate) if ci[0] is None else ci
  bounded = {"lower bound": [lo, math.inf], "upper bound": [-math.inf, hi]}
  return (bounded.get(basis, [-math.inf, math.inf]),
          f"{part} ~ C^alpha, a {basis} (edge optima: {', '.join(opt['edge_runs'])})")


def _why_no_ratio(opt: dict) -> str:
  if opt.get("basis", "interior") != "interior":
    return f"size exponent is only a {opt['basis']} (too few interior optima)"
  return "epochs exponent ~0"


def _family_claims(family: str, fits: dict) -> tuple[list[Row], list[str]]:
  """The qualitative claims measured on one family's fits (``fits.fit_family``)."""
  rows, notes = [], []
  entry = fits["per_family"][family]
  all_notes = fits.get("notes") or {}
  why_not = {part: all_notes.get(f"per_family.{family}.{part}", "no fit")
             for part in ("fit", "optimal_scaling", "lr_trend")}
  law = entry.get("fit")
  if law:
    rows.append(_slope_row("claim.loss_vs_compute_slope_sign", family, law, "log-log slope -b"))
  else:
    notes.append(f"{family}: loss-law claim skipped: {why_not['fit']}")
  finetuned = entry.get("finetune_fit")
  if finetuned:
    rows.append(_slope_row("claim.finetune_error_vs_compute_slope_sign", family, finetuned,
                           f"fine-tuned error ~ C^-b, best run of {finetuned['n']} budgets"))
  elif f"per_family.{family}.finetune_fit" in all_notes:  # no fine-tuned runs: no note
    notes.append(f"{family}: fine-tuned error claim skipped: "
                 f"{all_notes[f'per_family.{family}.finetune_fit']}")
  opt = entry.get("optimal_scaling")
  if opt:
    for key, part in (("claim.optimal_size_exponent_sign", "size"),
                      ("claim.optimal_epochs_exponent_sign", "epochs")):
      ci, what = _exponent_ci(opt, part)
      rows.append(_sign_row(published.get(key), family, opt[part]["exponent"], ci, what))
    ratio = dict(opt["ratio"])
    if opt.get("basis", "interior") != "interior":
      ratio["value"] = None
    ci_text = f", CI {cli.format_interval(ratio['ci'])}" if ratio["ci"][0] is not None else ""
    rows.append(_claim_row(published.get("claim.size_vs_epochs_exponent_ratio"), family,
                           math.nan if ratio["value"] is None else ratio["value"],
                           (f"undefined: {_why_no_ratio(opt)}" if ratio["value"] is None else
                            f"{opt['n']} optimal runs ({fits['settings']['optimal']}), size = "
                            f"{opt['size_axis']}{ci_text}")))
  else:
    notes.append(f"{family}: optimal size/epochs claims skipped: {why_not['optimal_scaling']}")
  trend = entry.get("lr_trend")
  if trend:
    rows.append(_sign_row(published.get("claim.optimal_lr_vs_epochs_sign"), family,
                          trend["pooled_slope"], trend.get("ci"),
                          f"pooled d log lr / d log epochs over {trend['n_models']} model(s)"))
  else:
    notes.append(f"{family}: optimal-LR trend claim skipped: {why_not['lr_trend']}")
  return rows, notes


def _absolute_claims(family: str, entry: dict) -> tuple[list[Row], list[str]]:
  """The claims that hold only in TPU-v4 core hours at the paper's batch size."""
  rows, notes = [], []
  sweeps = [s for s in (entry.get("optimal_lr") or [])
            if s.get("batch_size") == PAPER_BATCH_SIZE]
  if sweeps:
    smallest = min(s["epochs"] for s in sweeps)
    lrs = [s["best_lr"] for s in sweeps if s["epochs"] == smallest]
    rows.append(_claim_row(published.get("claim.optimal_lr_small_epochs"), family,
                           math.exp(sum(math.log(v) for v in lrs) / len(lrs)),
                           f"geometric mean over {len(lrs)} model(s) at {smallest:g} epochs"))
  else:
    notes.append(f"{family}: optimal-LR value claim skipped: no LR sweeps at batch "
                 f"{PAPER_BATCH_SIZE}")
  crossing = _epochs_crossing(entry.get("optimal") or [])
  if crossing is not None:
    rows.append(_claim_row(published.get("claim.optimal_epochs_gt1_above_core_hours"), family,
                           crossing, "smallest compute above which every optimal run has > 1 "
                           "epoch"))
  else:
    notes.append(f"{family}: optimal-epochs > 1 claim skipped: optimal runs do not cross 1 "
                 "epoch")
  return rows, notes


def claim_rows(fits: dict, points: Sequence[Point] = ()) -> tuple[list[Row], list[str]]:
  """The paper's claims measured on each family's own fits (``fits["per_family"]``).

  Keys name the family: ``claim.nfnet.<quantity>`` are the paper's claims; every other
  family's rows (``claim.vit.<quantity>``) apply the same test for comparison, are marked
  "not a paper claim" and do not count in the verdict. The pooled frontier is never judged.
  """
  del points  # reserved for claims that need raw runs
  per_family = fits.get("per_family") or {}
  notes = [] if CLAIM_FAMILY in per_family else [
      f"no {CLAIM_FAMILY} runs: the paper's claims (about {CLAIM_FAMILY}) are not judged"]
  paper_units = fits["compute_unit"] == PAPER_COMPUTE_UNIT
  if not paper_units:
    notes.append(f"absolute claims (optimal LR 1.6, optimal epochs > 1 above 5k core hours) "
                 f"skipped: our compute is in {fits['compute_unit']}, not "
                 f"{PAPER_COMPUTE_UNIT}")
  rows = []
  for family in sorted(per_family, key=lambda f: (f != CLAIM_FAMILY, f)):
    made = [_family_claims(family, fits)]
    if paper_units:
      made.append(_absolute_claims(family, per_family[family]))
    for more_rows, more_notes in made:
      rows += more_rows
      notes += more_notes
  return rows, notes


def _epochs_crossing(optimal: Sequence[dict]) -> float | None:
  ordered = sorted(optimal, key=lambda o: o["compute"])
  above = [i for i, o in enumerate(ordered) if all(q["epochs"] > 1 for q in ordered[i:])]
  if not above or above[0] == 0:
    return None
  return ordered[above[0]]["compute"]


_PREDICTED = {"loss": ("held-out loss", "held-out loss of the best run"),
              "optimal_size": ("flops_per_image", "model size of the best run")}


def prediction_rows(predictions: dict) -> tuple[list[Row], list[str]]:
  """``prediction.<family>.<part>``: observed (ours) vs predicted (published column) at the
  largest budget (``prediction.predict_all``); PASS when inside the predicted interval (the
  tolerance is the interval's half on the observed side, plus for a size the half grid step
  the observed size stands for). Only NFNet rows count."""
  rows, notes = [], []
  for family in sorted(predictions, key=lambda f: (f != CLAIM_FAMILY, f)):
    record = predictions[family]
    for part, (unit, what) in _PREDICTED.items():
      made = record.get(part) or {}
      if made.get("inside") is None:
        notes.append(f"{family}: prediction of the {part.replace('_', ' ')} not judged: "
                     f"{made.get('note') or record.get('note') or 'no interval'}")
        continue
      lo, hi = made["interval"]
      below, above = made.get("observed_range") or (made["observed"], made["observed"])
      if made["observed"] >= made["predicted"]:  # the interval's half + the grid's half step
        side = hi - made["predicted"] + made["observed"] - (0.0 if below is None else below)
      else:
        side = made["predicted"] - lo + (math.inf if above is None else above) - made["observed"]
      note = (f"{what} at compute {record['compute']:.4g}: predicted "
              f"{made['predicted']:.4g} {cli.format_interval(made['interval'])} from "
              f"{len(record['budgets']) - 1} smaller budgets, observed {made['observed']:.4g} "
              f"({record['observed_run']}): {'inside' if made['inside'] else 'outside'}")
      rows.append(Row(key=f"prediction.{family}.{part}", kind="prediction", model=family,
                      quantity=part, ours=made["observed"], published=made["predicted"],
                      unit=unit, tolerance=side, source="law fitted on the smaller budgets",
                      note=note if family == CLAIM_FAMILY else f"{NOT_A_CLAIM}: {note}",
                      counted=family == CLAIM_FAMILY))
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
    dict: rows (list of Row.to_dict()), notes (why something was skipped), passed (every
    counted row passed and there is at least one), n_rows, n_pass, n_fail (counted rows),
    n_info (rows shown for comparison only: ``Row.counted`` False).
  """
  rows, notes = [], []
  for enabled, make in ((model_stats, lambda: model_stats_rows(models)),
                        (bool(points), lambda: finetune_rows(points)),
                        (fits is not None, lambda: claim_rows(fits, points)),
                        (predictions is not None, lambda: prediction_rows(predictions))):
    if enabled:
      more_rows, more_notes = make()
      rows += more_rows
      notes += more_notes
  counted = [r for r in rows if r.counted]
  n_fail = sum(not r.passed for r in counted)
  if not counted:
    notes.append("nothing comparable: no rows")
  if len(counted) < len(rows):
    notes.append(f"status in parentheses: {NOT_A_CLAIM}")
  return dict(rows=[r.to_dict() for r in rows], notes=notes,
              passed=bool(counted) and n_fail == 0, n_rows=len(counted),
              n_pass=len(counted) - n_fail, n_fail=n_fail, n_info=len(rows) - len(counted))


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
  lines.append(f"{result['n_pass']}/{result['n_rows']} PASS -> "
               f"{'PASS' if result['passed'] else 'FAIL'}")
  return "\n".join(lines)


def markdown_table(result: dict) -> str:
  lines = ["| " + " | ".join(_COLUMNS) + " | note |", "|" + "---|" * (len(_COLUMNS) + 1)]
  for cells, r in zip(table_rows(result), result["rows"]):
    lines.append("| " + " | ".join(cells) + f" | {r['note']} |")
  lines += [""] + [f"- {n}" for n in result["notes"]]
  lines.append(f"\n**{result['n_pass']}/{result['n_rows']} PASS -> "
               f"{'PASS' if result['passed'] else 'FAIL'}**")
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
