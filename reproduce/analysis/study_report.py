"""The study's report: ``report.md`` with its figures beside it, and the same text in TensorBoard.

``write_report`` takes plain data (the runs, ``fits.fit_all``, ``versus_published.compare``,
``prediction.predict_all`` and the time breakdown the study measured) and writes, in the
study's work directory: report.md (a paragraph in plain words, the comparison table, every
fitted law with its interval, the figures, where the time went) and one PNG per figure.
"""

from __future__ import annotations

import math
from typing import Sequence

from reproduce.analysis import claims
from reproduce.analysis import figures
from reproduce.analysis import ranking
from reproduce.analysis import tensorboard
from reproduce.analysis import versus_published
from reproduce.analysis.runs import Point
from reproduce.core import fileio
from reproduce.core import formatting

REPORT_FILE = "report.md"
# File name (beside report.md) -> caption; the figures are ``figures.*``.
FIGURE_FILES = {
    "fig1_top1_error_vs_compute.png": "Figure 1: our top-1 error vs pre-training compute "
                                      "(fine-tuned where runs were fine-tuned) with each "
                                      "family's law; the paper's published models in their "
                                      "own panel (other data, models and compute unit).",
    "frontiers_loss_vs_compute.png": "Every family's frontier (best run per budget) and law "
                                     "on one axes: compute-matched models on the same data.",
    "fig2_loss_vs_compute.png": "Figure 2, one panel per family: held-out loss vs compute, "
                                "one curve per model across budgets (best LR), the best run "
                                "of each budget and the family's law.",
    "fig3_optimal_lr_vs_epochs.png": "Figure 3: the optimal base LR of each sweep (fitted "
                                     "vertex) vs the epoch budget (circled: grid edge).",
    "optimal_size_epochs_vs_compute.png": "Optimal model size (forward FLOPs per image) and "
                                          "epochs vs compute: iso-compute vertices; open "
                                          "markers are edge optima, not fitted.",
    "prediction_largest_budget.png": "The prediction: the law of the smaller budgets, its "
                                     "confidence band, the prediction interval at the "
                                     "largest budget and the best run there.",
}


def _figures(points: Sequence[Point], fits: dict, predictions: dict) -> dict:
  """report.md's figure files (the keys of ``FIGURE_FILES``) -> their makers."""
  return {f"{name}.png": make
          for name, make in figures.study_figures(points, fits, predictions).items()}


def _value(value, digits: int = 4) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  return f"{value:.{digits}g}"


def _law_rows(entry: dict) -> list[tuple[str, str, str, list | None]]:
  """(law, coefficient, value, CI) of one family's fitted laws (those present)."""
  rows = []
  law = entry.get("fit")
  if law:
    rows += [("frontier loss: L = a*C^-b", c, _value(law[c]), law["ci"][c]) for c in "ab"]
  floor = entry.get("floor")
  if floor:
    rows += [("floor diagnostic: L = E + a*C^-b", "E", _value(floor["E"]), None),
             ("floor diagnostic", "E / top-budget loss (want < 0.5)",
              _value(floor["E_over_top_loss"]), None)]
  spread = entry.get("seeds") or {}
  if spread.get("sd") is not None:
    rows.append((f"seed spread ({spread['n_groups']} replicated runs)", "SD of log loss",
                 _value(spread["sd"]), None))
  opt = entry.get("optimal_scaling")
  if opt:
    for part in ("size", "epochs"):
      what = f"optimal {part}: {part} = k*C^alpha (iso-compute, {opt['n']} budgets)"
      rows += [(what, "k", _value(opt[part]["k"]), opt[part]["ci"]["k"]),
               (what, "alpha", _value(opt[part]["exponent"]), opt[part]["ci"]["exponent"])]
    rows.append(("size / epochs exponent ratio (paper: ~1)", "ratio",
                 _value(opt["ratio"]["value"]), opt["ratio"]["ci"]))
  trend = entry.get("lr_trend")
  if trend:
    rows.append(("optimal LR trend (Figure 3): lr ~ epochs^s, pooled", "s",
                 _value(trend["pooled_slope"]), trend.get("ci")))
  finetuned = entry.get("finetune_fit")
  if finetuned:
    rows += [("fine-tuned top-1 error (Figure 1): err = a*C^-b", c, _value(finetuned[c]),
              finetuned["ci"][c]) for c in "ab"]
  return rows


def _prediction_lines(record: dict | None) -> list[str]:
  if not record:
    return []
  if record.get("status") != "ok":
    return [f"- prediction: not made: {record.get('note')}"]
  lines = [f"- prediction at the largest budget (compute {_value(record['compute'])}), law "
           f"fitted on the {len(record['budgets']) - 1} smaller budgets: "
           f"L = {_value(record['law']['a'])}*C^-{_value(record['law']['b'])}"]
  lines.append(f"  - seed SD used: {_value(record['seed_sd'])} ({record['seed_source']})")
  for part, what in (("loss", "held-out loss"), ("optimal_size", "optimal size (FLOPs/image)")):
    made = record[part]
    verdict = ("not judged" if made["inside"] is None else
               "inside" if made["inside"] else "outside")
    lines.append(f"  - {what}: predicted {_value(made['predicted'])} "
                 f"{formatting.interval(made['interval'])}, observed "
                 f"{_value(made['observed'])}: {verdict}"
                 + (f"; {made['note']}" if made.get("note") else ""))
  return lines


def laws_markdown(fits: dict, predictions: dict) -> str:
  """Every fitted law of every family with its interval, then its prediction and notes."""
  level = f"{100 * fits['settings']['confidence']:g}%"
  lines = [f"Compute in {fits['compute_kind']} {fits['compute_unit']}; intervals: {level}, "
           f"{fits['settings'].get('family_intervals', 'bootstrap')} "
           f"({fits['settings']['bootstrap']} resamples)."]
  notes = fits.get("notes") or {}
  for family, entry in sorted((fits.get("per_family") or {}).items()):
    lines += ["", f"### {family}", "", f"| law | coefficient | value | {level} CI |",
              "|---|---|---|---|"]
    lines += [f"| {law} | {coef} | {value} | {formatting.interval(ci)} |"
              for law, coef, value, ci in _law_rows(entry)]
    lines.append("")
    edges = [f"{_value(o['compute'])} ({o['edge']})" for o in entry.get("optimal") or []
             if o.get("edge")]
    if edges:
      lines.append(f"- budgets whose optimum is an edge (no interior vertex; not fitted): "
                   f"{', '.join(edges)}")
    lines += _prediction_lines(predictions.get(family))
    lines += [f"- note: {message}" for name, message in notes.items()
              if name.startswith(f"per_family.{family}.")]
  return "\n".join(lines)


def breakdown_markdown(breakdown: dict, wall_seconds: float, cores: int,
                       training_core_seconds: float) -> str:
  """The time breakdown: seconds and share of the wall time per category, then the totals."""
  wall_seconds = max(wall_seconds, 1e-9)  # a share of nothing is 0%, not an error
  lines = ["| category | seconds | share of wall time |", "|---|---|---|"]
  for category, seconds in breakdown.items():
    lines.append(f"| {category} | {seconds:.1f} | {100 * seconds / wall_seconds:.1f}% |")
  training_wall = training_core_seconds / cores
  overhead = wall_seconds - training_wall
  lines += ["", f"Wall time {wall_seconds:.1f} s on {cores} core(s); training "
                f"{training_core_seconds:.1f} core-seconds = {training_wall:.1f} s of wall time "
                f"on {cores} core(s); time not spent training {overhead:.1f} s "
                f"({100 * overhead / wall_seconds:.1f}% of the wall time)."]
  return "\n".join(lines)


def _claims_sentence(comparison: dict) -> str:
  claims = [r for r in comparison["rows"] if r["kind"] == "claim" and r["counted"]]
  if not claims:
    return "No NFNet claim could be judged."
  by_status = {v: [r["key"].split(".", 2)[-1] for r in claims if r["status"] == v]
               for v in ("PASS", "FAIL", "UNDECIDED")}
  text = (f"Of the paper's {len(claims)} NFNet claims {len(by_status['PASS'])} pass, "
          f"{len(by_status['FAIL'])} fail and {len(by_status['UNDECIDED'])} are undecided")
  details = [f"{v.lower()}: {', '.join(keys)}" for v, keys in by_status.items()
             if keys and v != "PASS"]
  return text + (f" ({'; '.join(details)})." if details else ".")


def _prediction_sentence(family: str, record: dict) -> str:
  if record.get("status") != "ok":
    return f"No {family} prediction was made ({record.get('note')})."
  loss, size = record["loss"], record["optimal_size"]
  text = (f"Fitted on the {len(record['budgets']) - 1} smaller budgets, the {family} law "
          f"predicted a held-out loss of {_value(loss['predicted'], 3)} "
          f"{formatting.interval(loss['interval'])} (prediction interval) at the largest "
          f"budget; the best run there "
          f"reached {_value(loss['observed'], 3)}, "
          f"{'inside' if loss['inside'] else 'outside'} the interval")
  if size["inside"] is not None:
    text += (f", and its iso-compute optimal size ({_value(size['observed'], 3)} FLOPs/image) was "
             f"{'inside' if size['inside'] else 'outside'} the predicted optimal-size interval")
  return text + "."


def _intervals_overlap(a: dict, b: dict) -> bool | None:
  """Whether two laws' intervals of b overlap (None when either is missing)."""
  (lo1, hi1), (lo2, hi2) = a["ci"]["b"], b["ci"]["b"]
  if None in (lo1, hi1, lo2, hi2):
    return None
  return lo1 <= hi2 and lo2 <= hi1


def _slopes_compared(laws: dict) -> str:
  """Which families' decay rates the intervals tell apart ('' for fewer than two laws)."""
  if len(laws) < 2:
    return ""
  apart, unknown = [], False
  families = list(laws)
  for i, first in enumerate(families):
    for second in families[i + 1:]:
      overlap = _intervals_overlap(laws[first], laws[second])
      unknown |= overlap is None
      if overlap is False:
        faster, slower = sorted((first, second), key=lambda f: -laws[f]["b"])
        apart.append(f"{faster} improves faster with compute than {slower}")
  if apart:
    return "; " + ", ".join(apart)
  if unknown:
    return "; without an interval for every law the miniature cannot compare the slopes"
  return "; the intervals overlap, so the miniature cannot tell the families' slopes apart"


def _figure1_sentence(fits: dict) -> str:
  laws = {family: entry["finetune_fit"] for family, entry in
          sorted((fits.get("per_family") or {}).items()) if entry.get("finetune_fit")}
  if not laws:
    return "No run was fine-tuned, so Figure 1 shows held-out top-1 only."
  parts = [f"{family} error ~ C^{-law['b']:.3f} (b {formatting.interval(law['ci']['b'])})"
           for family, law in laws.items()]
  return "On Figure 1 the fine-tuned top-1 error falls as " + " vs ".join(parts) + (
      _slopes_compared(laws) + ".")


def _relation(fits: dict, tops: dict, first: str, second: str) -> str:
  found = ranking.versus(fits, tops, first, second)
  if found["threshold"] is None:
    return f"not ranked against {second} (no seed replicates: the noise is unknown)"
  return (f"{found['relation']} {second} (log loss ratio {abs(found['log_ratio']):.3f}; "
          f"{100 * ranking.LEVEL:g}% seed-noise threshold {found['threshold']:.3f})")


def _families_sentence(fits: dict) -> str:
  """The families side by side at the largest budget (``analysis.ranking``), and what that
  says about the hybrids."""
  tops, missing = ranking.largest_budget(fits)
  absent = (f" ({', '.join(missing)}: no run at the largest budget, not compared)"
            if missing else "")
  if len(tops) < 2:
    return f"The families were not compared at the largest budget{absent}." if missing else ""
  ranked = sorted(tops, key=lambda f: tops[f]["heldout_loss"])
  parts = [f"{f} {tops[f]['heldout_loss']:.3f} ({tops[f]['model']})" for f in ranked]
  text = (f"At the largest budget the best held-out losses are {', '.join(parts)}{absent}; "
          f"{ranked[0]} is {_relation(fits, tops, ranked[0], ranked[1])}")
  if "hybrid" in tops:
    others = [f for f in ranked if f != "hybrid"]
    text += (f". The hybrids (an NF stem under a ViT, on the ViTs' recipe) are "
             f"{' and '.join(_relation(fits, tops, 'hybrid', f) for f in others)} at matched "
             f"compute: the miniature tells how the families rank at these budgets on this "
             f"data, not whether the ranking holds at the paper's scale")
  return text + "."


def plain_words(fits: dict, comparison: dict, predictions: dict) -> str:
  """One paragraph on what the miniature shows about the paper's claims."""
  sentences = [_claims_sentence(comparison)]
  sentences += [_prediction_sentence(f, predictions[f])
                for f in sorted(predictions, key=lambda f: (f != claims.CLAIM_FAMILY, f))]
  sentences.append(_figure1_sentence(fits))
  sentences.append(_families_sentence(fits))
  sentences.append(f"Caveats: the data set is small, the models are miniatures and "
                   f"compute is in {fits['compute_unit']}, not TPU-v4 core hours, so only signs, "
                   f"trends and predictions are compared, never absolute values; every interval "
                   f"is a {100 * fits['settings']['confidence']:g}% bootstrap over "
                   f"{fits['n_runs']} runs; a claim passes only when its interval agrees "
                   f"with the paper, fails only when it excludes the claim, and is "
                   f"undecided otherwise.")
  return " ".join(s for s in sentences if s)


def report_markdown(fits: dict, comparison: dict, predictions: dict, breakdown: dict, *,
                    wall_seconds: float, cores: int, training_core_seconds: float) -> str:
  """The text of report.md (figures referenced by their ``FIGURE_FILES`` names)."""
  figure_lines = [line for name, caption in FIGURE_FILES.items()
                  for line in (f"![{name}]({name})", "", caption, "")]
  return "\n".join([
      "# Miniature study: report", "", "## In plain words", "",
      plain_words(fits, comparison, predictions), "", "## Ours vs the paper", "",
      versus_published.markdown_table(comparison), "", "## Fitted laws", "",
      laws_markdown(fits, predictions), "", "## Figures", ""] + figure_lines + [
      "## Where the time went", "",
      breakdown_markdown(breakdown, wall_seconds, cores, training_core_seconds), ""])


def write_report(workdir: str, points: Sequence[Point], fits: dict, comparison: dict,
                 predictions: dict, breakdown: dict, *, wall_seconds: float, cores: int,
                 training_core_seconds: float, logdir: str | None = None) -> dict:
  """Writes ``workdir/report.md``, its figures beside it, and the text to TensorBoard.

  Args:
    workdir: the study's work directory (local or gs://).
    points: the runs (``runs.load_points``).
    fits: ``fits.fit_all(points)``.
    comparison: ``versus_published.compare(points, fits, predictions=predictions)``.
    predictions: ``prediction.predict_all(points)``.
    breakdown: {category: seconds} of the study's wall time.
    wall_seconds, cores, training_core_seconds: the study's totals.
    logdir: TensorBoard directory for the text summary (default: ``workdir``).

  Returns:
    dict: report (report.md's path), figures (PNG paths), tensorboard (the text's run dir).
  """
  points = list(points)
  fileio.makedirs(workdir)
  paths = []
  for name, make in _figures(points, fits, predictions).items():
    paths.append(fileio.join(workdir, name))
    fileio.write_bytes(paths[-1], figures.png_bytes(make()))
  text = report_markdown(fits, comparison, predictions, breakdown,
                         wall_seconds=wall_seconds, cores=cores,
                         training_core_seconds=training_core_seconds)
  report = fileio.join(workdir, REPORT_FILE)
  fileio.write_text(report, text)
  run_dir = tensorboard.write_report_text(logdir or workdir, text)
  return dict(report=report, figures=paths, tensorboard=run_dir)
