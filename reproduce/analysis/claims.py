"""The paper's claims measured on each family's own fits, and the prediction rows.

``claim.<family>.<quantity>``: the loss-vs-compute slope falls, so does the fine-tuned top-1
error (Figure 1, when runs carry ``finetune_top1``), optimal size and epochs both grow with
compute at a ratio near 1, the optimal LR falls with the epoch budget; in TPU-v4 core hours
with the paper's batch size also the absolute claims. ``prediction.<family>.<part>``: the
law of the smaller budgets predicts the largest. Each row is PASS, FAIL or UNDECIDED by the
rules of ``verdicts``. The claims are the paper's for NFNets; other families' rows apply the
same test, are marked "not a paper claim" and are not counted.
"""

from __future__ import annotations

import math

from reproduce.analysis import verdicts
from reproduce.analysis.runs import PAPER_COMPUTE_UNIT
from reproduce.analysis.verdicts import UNDECIDED, Row
from reproduce.core import formatting
from reproduce.core import published

PAPER_BATCH_SIZE = published.PAPER_BATCH_SIZE
# The paper states its scaling claims for NFNets; rows of other families are shown, not judged.
CLAIM_FAMILY = published.get("claim.size_vs_epochs_exponent_ratio").model
NOT_A_CLAIM = "not a paper claim (the paper states it for NFNets only); not in the verdict"


def entry_row(entry: published.Published, kind: str, ours: float, note: str = "",
              status: str = "") -> Row:
  return Row(key=entry.key, kind=kind, model=entry.model, quantity=entry.quantity,
             ours=float(ours), published=entry.value, unit=entry.unit,
             tolerance=entry.tolerance, source=entry.source, note=note, status=status)


def _claim_row(key: str, family: str, ours: float, note: str, status: str = "") -> Row:
  """The claim ``key`` measured on ``family``, keyed ``claim.<family>.<quantity>``."""
  entry = published.get(key)
  row = entry_row(entry, "claim", ours, note, status)
  row.key = f"claim.{family}.{entry.key[len('claim.'):]}"
  row.model = family
  if family != entry.model:
    row.counted = False
    row.note = f"{NOT_A_CLAIM} for {family}: {note}"
  return row


def _sign_row(key: str, family: str, estimate, ci, what: str) -> Row:
  sign, status, why = verdicts.sign_status(published.get(key).value, estimate, ci)
  return _claim_row(key, family, sign, f"{what}: {why}", status)


def _undecided(key: str, family: str, why: str) -> Row:
  return _claim_row(key, family, math.nan, why, UNDECIDED)


def _slope_of(key: str, family: str, law: dict, what: str) -> Row:
  """The sign row of a law ``a*C^-b``: its log-log slope -b, judged on -b's interval."""
  lo, hi = law["ci"]["b"]
  return _sign_row(key, family, -law["b"], None if lo is None else [-hi, -lo], what)


def _law_rows(family: str, entry: dict, why_not: dict) -> list[Row]:
  """The loss slope (and, with fine-tuned runs, the fine-tuned error slope) rows."""
  rows = []
  key = "claim.loss_vs_compute_slope_sign"
  law = entry.get("fit")
  if law:
    rows.append(_slope_of(key, family, law,
                          f"log-log slope -b of the best run per budget ({law['n']} budgets)"))
  else:
    rows.append(_undecided(key, family, f"no loss law: {why_not['fit']}"))
  key = "claim.finetune_error_vs_compute_slope_sign"
  finetuned = entry.get("finetune_fit")
  if finetuned:
    rows.append(_slope_of(key, family, finetuned,
                          f"fine-tuned error ~ C^-b, best run of {finetuned['n']} budgets"))
  elif why_not.get("finetune_fit"):  # no fine-tuned runs at all: no row
    rows.append(_undecided(key, family, f"no fine-tuned error law: {why_not['finetune_fit']}"))
  return rows


def _scaling_rows(family: str, entry: dict, why_not: dict) -> list[Row]:
  """The optimal size, epochs and ratio rows (iso-compute optima, ``fits._optima``)."""
  opt = entry.get("optimal_scaling")
  keys = {"size": "claim.optimal_size_exponent_sign",
          "epochs": "claim.optimal_epochs_exponent_sign",
          "ratio": "claim.size_vs_epochs_exponent_ratio"}
  if not opt:
    return [_undecided(key, family, why_not["optimal_scaling"]) for key in keys.values()]
  rows = [_sign_row(keys[part], family, opt[part]["exponent"], opt[part]["ci"]["exponent"],
                    f"{part} ~ C^alpha over {opt['n']} interior optima of {opt['n_budgets']} "
                    "budgets") for part in ("size", "epochs")]
  ratio = opt["ratio"]
  entry_ratio = published.get(keys["ratio"])
  status, why = verdicts.band_status(entry_ratio.value, entry_ratio.tolerance,
                                     ratio.get("ci") if ratio["value"] is not None else None)
  rows.append(_claim_row(keys["ratio"], family,
                         math.nan if ratio["value"] is None else ratio["value"],
                         f"alpha_size / alpha_epochs, size = {opt['size_axis']}: {why}", status))
  return rows


def _lr_row(family: str, entry: dict, why_not: dict) -> Row:
  key = "claim.optimal_lr_vs_epochs_sign"
  trend = entry.get("lr_trend")
  if not trend:
    return _undecided(key, family, f"no LR trend: {why_not['lr_trend']}")
  return _sign_row(key, family, trend["pooled_slope"], trend.get("ci"),
                   f"d log lr_opt / d log epochs over {trend['n_models']} model(s), fitted "
                   f"vertices ({trend['n_edge']} edge sweeps left out)")


def _absolute_claims(family: str, entry: dict) -> tuple[list[Row], list[str]]:
  """The claims that hold only in TPU-v4 core hours at the paper's batch size."""
  rows, notes = [], []
  sweeps = [s for s in (entry.get("optimal_lr") or [])
            if s.get("batch_size") == PAPER_BATCH_SIZE]
  if sweeps:
    smallest = min(s["epochs"] for s in sweeps)
    lrs = [s["refined_lr"] for s in sweeps if s["epochs"] == smallest]
    rows.append(_claim_row("claim.optimal_lr_small_epochs", family,
                           math.exp(sum(math.log(v) for v in lrs) / len(lrs)),
                           f"geometric mean of the fitted optimal LRs of {len(lrs)} "
                           f"model(s) at {smallest:g} epochs"))
  else:
    notes.append(f"{family}: optimal-LR value claim skipped: no LR sweeps at batch "
                 f"{PAPER_BATCH_SIZE}")
  crossing = _epochs_crossing([o for o in entry.get("optimal") or [] if o.get("edge") is None])
  if crossing is not None:
    rows.append(_claim_row("claim.optimal_epochs_gt1_above_core_hours", family, crossing,
                           "smallest budget above which every interior optimum has > 1 "
                           "epoch"))
  else:
    notes.append(f"{family}: optimal-epochs > 1 claim skipped: interior optima do not "
                 "cross 1 epoch")
  return rows, notes


def _epochs_crossing(optimal) -> float | None:
  ordered = sorted(optimal, key=lambda o: o["compute"])
  above = [i for i, o in enumerate(ordered) if all(q["epochs"] > 1 for q in ordered[i:])]
  if not above or above[0] == 0:
    return None
  return ordered[above[0]]["compute"]


def claim_rows(fits: dict) -> tuple[list[Row], list[str]]:
  """The paper's claims measured on each family's own fits (``fits["per_family"]``)."""
  per_family = fits.get("per_family") or {}
  notes = [] if CLAIM_FAMILY in per_family else [
      f"no {CLAIM_FAMILY} runs: the paper's claims (about {CLAIM_FAMILY}) are not judged"]
  paper_units = fits["compute_unit"] == PAPER_COMPUTE_UNIT
  if not paper_units:
    notes.append(f"absolute claims (optimal LR 1.6, optimal epochs > 1 above 5k core hours) "
                 f"skipped: our compute is in {fits['compute_unit']}, not "
                 f"{PAPER_COMPUTE_UNIT}")
  rows = []
  all_notes = fits.get("notes") or {}
  for family in sorted(per_family, key=lambda f: (f != CLAIM_FAMILY, f)):
    entry = per_family[family]
    why_not = {part: all_notes.get(f"per_family.{family}.{part}", "no fit")
               for part in ("fit", "optimal_scaling", "lr_trend")}
    why_not["finetune_fit"] = all_notes.get(f"per_family.{family}.finetune_fit")
    rows += _law_rows(family, entry, why_not) + _scaling_rows(family, entry, why_not)
    rows.append(_lr_row(family, entry, why_not))
    if paper_units:
      more_rows, more_notes = _absolute_claims(family, entry)
      rows += more_rows
      notes += more_notes
  return rows, notes


_PREDICTED = {"loss": ("held-out loss", "held-out loss of the best run"),
              "optimal_size": ("flops_per_image", "iso-compute optimal size")}


def prediction_rows(predictions: dict) -> list[Row]:
  """``prediction.<family>.<part>``: observed (ours) vs predicted (published column) at the
  largest budget; PASS inside the prediction interval, FAIL outside, UNDECIDED without one
  (tolerance: the interval's half on the observed side). Only NFNet rows count."""
  rows = []
  for family in sorted(predictions, key=lambda f: (f != CLAIM_FAMILY, f)):
    record = predictions[family]
    for part, (unit, what) in _PREDICTED.items():
      made = record.get(part) or {}
      observed, predicted = made.get("observed"), made.get("predicted")
      status, why = verdicts.interval_status(observed, made.get("interval"))
      if made.get("inside") is None:
        status, why = UNDECIDED, made.get("note") or record.get("note") or "no interval"
      tolerance = math.nan
      if status != UNDECIDED:
        lo, hi = made["interval"]
        tolerance = (hi - predicted) if observed >= predicted else (predicted - lo)
      note = (f"{what} at the largest budget from the smaller ones: predicted "
              f"{formatting.interval(made.get('interval'))}: {why}")
      rows.append(Row(key=f"prediction.{family}.{part}", kind="prediction", model=family,
                      quantity=part, ours=math.nan if observed is None else observed,
                      published=math.nan if predicted is None else predicted, unit=unit,
                      tolerance=tolerance, source="law fitted on the smaller budgets",
                      note=note if family == CLAIM_FAMILY else f"{NOT_A_CLAIM}: {note}",
                      counted=family == CLAIM_FAMILY, status=status))
  return rows
