"""The analysis's TensorBoard writer: figures, scalars, text and the hparams table.

``write_fits(logdir, points, fits)`` writes (docs/scaling.md lists every tag):

  <logdir>/fits/                 run "fits": figures (images), per-model loss vs compute
                                 (scalar series), the coefficients and notes (text). A
                                 fitted number is one value, so it is text, never a
                                 one-point scalar chart.
  <logdir>/hparams/              run "hparams": the hparams experiment config
  <logdir>/hparams/<run name>/   one hparams session per training run

``write_compare(logdir, result)`` adds run "compare" (the table and its verdict line, text);
``write_report_text(logdir, markdown)`` run "report" (the study's report.md).
fits.json and points.csv are written by ``reproduce.analysis.outputs``.
"""

from __future__ import annotations

import re
from typing import Sequence

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from reproduce.analysis import figures
from reproduce.analysis import versus_published
from reproduce.analysis.frontier import best_lr_points
from reproduce.analysis.runs import Point, single_unit
from reproduce.core import fileio
from reproduce.core import formatting

FITS_RUN = "fits"
HPARAMS_RUN = "hparams"
COMPARE_RUN = "compare"
REPORT_RUN = "report"

IMAGE_PREFIX = "figures/"  # + the name of each of figures.study_figures
TEXT_TAGS = ("summary/coefficients", "summary/frontier", "summary/notes")
HPARAM_METRICS = ("heldout_loss", "heldout_top1", "core_hours")


# ----------------------------------------------------------------------------------------
# What is logged: scalars and markdown text.


def _family_values(entry: dict) -> list[tuple[str, str, str, float | None, list | None]]:
  """(scalar name, table row, coefficient, value, CI) of one family's fits (those present)."""
  out = []
  law = entry.get("fit")
  if law:
    out.append(("loss_b", "loss vs compute (L = a*C^-b)", "b", law["b"], law["ci"]["b"]))
  floor = entry.get("floor")
  if floor:
    out.append(("floor_E", "floor diagnostic: E of L = E + a*C^-b (E / top loss "
                f"{floor['E_over_top_loss']:.2f})", "E", floor["E"], None))
  spread = entry.get("seeds") or {}
  if spread.get("sd") is not None:
    out.append(("seed_sd", f"seed SD of log loss ({spread['n_groups']} replicated runs)", "sd",
                spread["sd"], None))
  opt = entry.get("optimal_scaling")
  if opt:
    for part in ("size", "epochs"):
      out.append((f"optimal_{part}_exponent", f"optimal {part} ~ C^alpha (iso-compute "
                  f"vertices, {opt['n']} budgets)", "alpha", opt[part]["exponent"],
                  opt[part]["ci"]["exponent"]))
    out.append(("size_epochs_exponent_ratio", "size / epochs exponent ratio", "ratio",
                opt["ratio"]["value"], opt["ratio"]["ci"]))
  finetuned = entry.get("finetune_fit")
  if finetuned:
    out.append(("finetune_error_b", "fine-tuned top-1 error vs pre-training compute "
                "(err = a*C^-b)", "b", finetuned["b"], finetuned["ci"]["b"]))
  trend = entry.get("lr_trend")
  if trend:
    out.append(("lr_trend_slope", "optimal LR ~ epochs^s (pooled over models)", "s",
                trend["pooled_slope"], trend.get("ci")))
  return out


def coefficients_markdown(fits: dict) -> str:
  """Markdown table of every fitted coefficient with its CI."""
  level = f"{100 * fits['settings']['confidence']:g}%"
  lines = [f"Compute: {fits['compute_kind']} {fits['compute_unit']}; {fits['n_runs']} runs; "
           f"bootstrap {fits['settings']['bootstrap']} (seed {fits['settings']['seed']}); "
           f"model size = {fits.get('size_axis', 'params')}.", "",
           f"| fit | coefficient | value | {level} CI |", "|---|---|---|---|"]

  def add(fit_name, coef, value, ci):
    shown = "n/a" if value is None else f"{value:.4g}"
    lines.append(f"| {fit_name} | {coef} | {shown} | {formatting.interval(ci)} |")

  law = fits["loss_vs_compute"]
  for coef in ("a", "b", "E") if law["form"].startswith("L = E") else ("a", "b"):
    add(f"pooled loss vs compute ({law['form']})", coef, law[coef], law["ci"][coef])
  for family, entry in fits.get("per_family", {}).items():
    for _, row, coef, value, ci in _family_values(entry):
      add(f"{family}: {row}", coef, value, ci)
  top1 = (fits.get("top1_error") or {}).get("fit")
  if top1:
    add("top-1 error vs compute", "b", top1["b"], top1["ci"]["b"])
  return "\n".join(lines)


def frontier_markdown(fits: dict) -> str:
  lines = [f"| run | model | epochs | base_lr | compute ({fits['compute_unit']}) | loss |",
           "|---|---|---|---|---|---|"]
  for f in fits["frontier"]:
    lines.append(f"| {f['name']} | {f['model']} | {f['epochs']:g} | {f['base_lr']:g} | "
                 f"{f['compute']:.4g} | {f['heldout_loss']:.4f} |")
  return "\n".join(lines)


def notes_markdown(fits: dict) -> str:
  notes = fits.get("notes") or {}
  if not notes:
    return "All fits ran."
  return "\n".join(f"- **{name}**: {message}" for name, message in notes.items())


def loss_curves(points: Sequence[Point], fits: dict) -> dict:
  """Per-model and pooled frontier loss vs compute as scalar series {tag: [(step, value)]}.

  TensorBoard steps are integers, so step = rank of the run's compute among all distinct
  computes; the series ``compute/at_index`` maps step -> compute.
  """
  computes = sorted({p.compute for p in points})
  index = {c: i for i, c in enumerate(computes)}
  curves = {}
  for p in best_lr_points(points):
    curves.setdefault(f"loss_vs_compute/{p.model}", []).append((index[p.compute],
                                                                p.heldout_loss))
  for f in fits["frontier"]:
    curves.setdefault("loss_vs_compute/frontier", []).append((index[f["compute"]],
                                                              f["heldout_loss"]))
  curves["compute/at_index"] = list(enumerate(computes))
  return curves


# ----------------------------------------------------------------------------------------
# Writers.


def _image(fig) -> tf.Tensor:
  return tf.image.decode_png(figures.png_bytes(fig), channels=4)[tf.newaxis]


def write_fits(logdir: str, points: Sequence[Point], fits: dict) -> dict:
  """Writes figures, scalars, text (run ``fits``) and the hparams table for ``fits``.

  Args:
    logdir: output directory (local or gs://); created if needed.
    points: the runs the fits came from.
    fits: ``fits.fit_all(points, ...)``.

  Returns:
    dict: images, scalars (the loss-vs-compute series), text (tags written to run ``fits``),
    hparams_sessions (run dirs
    under ``hparams/``).
  """
  points = list(points)
  fileio.makedirs(logdir)
  images = {IMAGE_PREFIX + name: make
            for name, make in figures.study_figures(points, fits).items()}
  curves = loss_curves(points, fits)
  texts = dict(zip(TEXT_TAGS, (coefficients_markdown(fits), frontier_markdown(fits),
                               notes_markdown(fits))))
  writer = tf.summary.create_file_writer(fileio.join(logdir, FITS_RUN))
  with writer.as_default():
    for tag, make in images.items():
      tf.summary.image(tag, _image(make()), step=0)
    for tag, series in curves.items():
      for step, value in series:
        tf.summary.scalar(tag, float(value), step=int(step))
    for tag, text in texts.items():
      tf.summary.text(tag, text, step=0)
  writer.close()
  sessions = write_hparams(fileio.join(logdir, HPARAMS_RUN), points)
  return dict(images=list(images), scalars=sorted(curves),
              text=list(texts), hparams_sessions=sessions)


def _run_dir_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


def write_hparams(hparams_dir: str, points: Sequence[Point]) -> list[str]:
  """The hparams table: the experiment config in ``hparams_dir``, one session per run."""
  def discrete(values):
    return hp.Discrete(sorted(set(values)))

  unit = single_unit(points)
  hparams = {name: hp.HParam(name, discrete(getattr(p, name) for p in points))
             for name in ("model", "family", "epochs", "base_lr", "params")}
  metrics = [hp.Metric("heldout_loss", display_name="held-out loss"),
             hp.Metric("heldout_top1", display_name="held-out top-1"),
             hp.Metric("core_hours", display_name=f"compute ({unit})")]
  writer = tf.summary.create_file_writer(hparams_dir)
  with writer.as_default():
    hp.hparams_config(hparams=list(hparams.values()), metrics=metrics)
  writer.close()
  sessions = []
  for p in points:
    name = _run_dir_name(p.name)
    writer = tf.summary.create_file_writer(fileio.join(hparams_dir, name))
    with writer.as_default():
      hp.hparams({hparam: getattr(p, key) for key, hparam in hparams.items()}, trial_id=p.name)
      for metric, value in zip(HPARAM_METRICS, (p.heldout_loss, p.heldout_top1, p.compute)):
        tf.summary.scalar(metric, value, step=0)
    writer.close()
    sessions.append(f"{HPARAMS_RUN}/{name}")
  return sessions


def write_compare(logdir: str, result: dict, run: str = COMPARE_RUN) -> None:
  """The comparison table, its verdict line included, as text ``compare/table`` in ``run``
  (the counts are one number each: text, not one-point scalar charts)."""
  writer = tf.summary.create_file_writer(fileio.join(logdir, run))
  with writer.as_default():
    tf.summary.text("compare/table", versus_published.markdown_table(result), step=0)
  writer.close()


def write_report_text(logdir: str, markdown: str, run: str = REPORT_RUN) -> str:
  """The study's report as text ``report/markdown`` in ``run``; returns the run's directory."""
  run_dir = fileio.join(logdir, run)
  writer = tf.summary.create_file_writer(run_dir)
  with writer.as_default():
    tf.summary.text("report/markdown", markdown, step=0)
  writer.close()
  return run_dir
