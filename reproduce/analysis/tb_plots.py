"""TensorBoard output of the scaling fits: paper-style figures, scalars, hparams, text.

``write_tensorboard(logdir, points, fits)`` writes (docs/scaling.md lists every tag):

  <logdir>/fits.json, <logdir>/points.csv     the fits and the runs, for scripts
  <logdir>/fits/                              run "fits": figures (images), fitted
                                              coefficients and per-model loss vs compute
                                              (scalars), markdown summary (text)
  <logdir>/hparams/                           run "hparams": the hparams experiment config
  <logdir>/hparams/<run name>/                one hparams session per training run

Figures are matplotlib PNGs on log axes with units; compute in a unit other than TPU-v4 core
hours is never put on the paper's axis (Figure 1 then gets a second x-axis for the
published points).
"""

from __future__ import annotations

import io
import math
import re
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures only ever go to PNG
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.plugins.hparams import api as hp  # noqa: E402

from reproduce.core import published  # noqa: E402
from reproduce.analysis import scaling  # noqa: E402
from reproduce.analysis.scaling import Point  # noqa: E402

FITS_RUN = "fits"
HPARAMS_RUN = "hparams"

IMAGE_TAGS = {
    "fig1": "figures/fig1_top1_error_vs_compute",
    "fig2": "figures/fig2_loss_vs_compute",
    "fig3": "figures/fig3_optimal_lr_vs_epochs",
    "optimal": "figures/optimal_size_epochs_vs_compute",
}
TEXT_TAGS = ("summary/coefficients", "summary/frontier", "summary/notes")
HPARAM_METRICS = ("heldout_loss", "heldout_top1", "core_hours")

# The published points of the paper's Figure 1 (model key in published.py, legend label).
FIGURE1_PUBLISHED = (("vit_giant14", "ViT-g/14"), ("vit_gigantic14", "ViT-G/14"),
                     ("vit_so400m14", "SoViT-400m/14"), ("nfnet_f7plus", "NFNet-F7+ (paper)"))

_FAMILY_MARKERS = {"nfnet": "o", "vit": "s"}


def published_figure1_points() -> list[dict]:
  """Figure 1's published points: label, compute (TPU-v4 core hours), top-1 error (%)."""
  rows = []
  for model, label in FIGURE1_PUBLISHED:
    hours = published.get(f"{model}.pretrain_core_hours")
    top1 = published.get(f"{model}.imagenet_top1")
    rows.append(dict(model=model, label=label, compute=hours.value, compute_unit=hours.unit,
                     top1_error=100.0 - top1.value, source=f"{hours.source}; {top1.source}"))
  return rows


# ----------------------------------------------------------------------------------------
# Figures.


def _model_colors(points: Sequence[Point]) -> dict:
  models = sorted({p.model for p in points}, key=lambda m: (m.split("_")[0], m))
  cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
  return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _marker(family: str) -> str:
  return _FAMILY_MARKERS.get(family, "^")


def _ci_text(ci) -> str:
  if not ci or ci[0] is None:
    return "CI n/a"
  return f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def _compute_label(fits: dict) -> str:
  unit = fits["compute_unit"]
  kind = fits.get("compute_kind", "planned")
  label = f"pre-training compute ({kind} {unit})"
  if unit != scaling.PAPER_COMPUTE_UNIT:
    label += " - not TPU-v4 core hours"
  return label


def _plain_log_axis(axis) -> None:
  """Log-axis tick labels as plain numbers (2.5, not 2.5x10^0): losses span < 1 decade."""
  formatter = ticker.FuncFormatter(lambda v, _: f"{v:g}")
  axis.set_major_formatter(formatter)
  axis.set_minor_formatter(formatter)


def _legend_outside(ax, handles=None, labels=None) -> None:
  if handles is None:
    handles, labels = ax.get_legend_handles_labels()
  ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0)


def _by_model(points: Sequence[Point]) -> dict:
  groups = {}
  for p in sorted(points, key=lambda p: p.compute):
    groups.setdefault(p.model, []).append(p)
  return groups


def figure_loss_vs_compute(points: Sequence[Point], fits: dict):
  """Figure 2: held-out loss vs compute, one curve per model across epoch budgets."""
  fig, ax = plt.subplots(figsize=(11, 5.5))
  colors = _model_colors(points)
  tuned = scaling.best_lr_points(points)
  others = [p for p in points if p not in set(tuned)]
  if others:
    ax.scatter([p.compute for p in others], [p.heldout_loss for p in others], s=10,
               color="0.75", label="other LRs of a sweep", zorder=1)
  for model, group in _by_model(tuned).items():
    ax.plot([p.compute for p in group], [p.heldout_loss for p in group],
            marker=_marker(group[0].family), color=colors[model], label=model, zorder=3)
    for p in group:
      ax.annotate(f"{p.epochs:.2g} ep", (p.compute, p.heldout_loss), fontsize=6,
                  textcoords="offset points", xytext=(3, 3), color=colors[model])
  front = fits["frontier"]
  ax.plot([f["compute"] for f in front], [f["heldout_loss"] for f in front], "k--",
          marker="o", mfc="none", ms=10, lw=1, label="compute-efficient frontier", zorder=2)
  law = fits["loss_vs_compute"]
  grid = np.geomspace(min(p.compute for p in points), max(p.compute for p in points), 100)
  e_text = f"{law['E']:.3g} + " if law["form"].startswith("L = E") else ""
  ax.plot(grid, scaling.predict(law, grid), color="crimson", lw=2, alpha=0.8,
          label=f"fit: L = {e_text}{law['a']:.3g} C^-{law['b']:.3f}, "
                f"b {_ci_text(law['ci']['b'])}", zorder=4)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(_compute_label(fits))
  ax.set_ylabel("held-out loss")
  _plain_log_axis(ax.yaxis)
  ax.set_title("Held-out loss vs pre-training compute (cf. paper Figure 2)")
  ax.grid(True, which="both", alpha=0.3)
  _legend_outside(ax)
  fig.tight_layout()
  return fig


def figure_top1_vs_compute(points: Sequence[Point], fits: dict):
  """Figure 1: top-1 error vs compute, ours and the paper's published points."""
  fig, ax = plt.subplots(figsize=(11, 5.5))
  colors = _model_colors(points)
  best = {}
  for p in points:  # per LR sweep, the best top-1
    if p.sweep_key not in best or p.top1 > best[p.sweep_key].top1:
      best[p.sweep_key] = p
  for model, group in _by_model(best.values()).items():
    ax.plot([p.compute for p in group], [100 * (1 - p.top1) for p in group],
            marker=_marker(group[0].family), color=colors[model], label=f"{model} (ours)")
  law = (fits.get("top1_error") or {}).get("fit")
  if law:
    grid = np.geomspace(min(p.compute for p in points), max(p.compute for p in points), 100)
    ax.plot(grid, 100 * scaling.predict(law, grid), color="crimson", lw=1.5, alpha=0.8,
            label=f"fit (ours): err ~ C^-{law['b']:.3f}")
  source = fits.get("top1_error", {}).get("source", "heldout")
  what = {"finetune": "fine-tuned top-1 error (%)", "heldout": "held-out top-1 error (%)"}
  ax.set_ylabel(what.get(source, "top-1 error (%): fine-tuned where available, else held-out"))
  ax.set_xlabel("ours: " + _compute_label(fits))
  ax.set_xscale("log")
  ax.set_yscale("log")

  paper = published_figure1_points()
  same_axis = fits["compute_unit"] == scaling.PAPER_COMPUTE_UNIT
  pax = ax if same_axis else ax.twiny()
  for i, row in enumerate(paper):
    pax.scatter([row["compute"]], [row["top1_error"]], marker="*", s=160, zorder=5,
                color=plt.get_cmap("Dark2")(i), edgecolor="k",
                label=f"{row['label']} (published, {row['compute_unit']})")
  if not same_axis:
    pax.set_xscale("log")
    pax.set_xlim(1e3, 1e6)  # the paper's Figure 1 decades, so the stars keep their spacing
    pax.set_xlabel(f"published (stars): pre-training compute ({scaling.PAPER_COMPUTE_UNIT})")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = pax.get_legend_handles_labels()
    _legend_outside(ax, handles + more_handles, labels + more_labels)
  else:
    _legend_outside(ax)
  _plain_log_axis(ax.yaxis)
  ax.set_title("Top-1 error vs pre-training compute (cf. paper Figure 1)", pad=28)
  ax.grid(True, which="both", alpha=0.3)
  fig.tight_layout()
  return fig


def figure_optimal_lr(fits: dict):
  """Figure 3: optimal base LR vs epoch budget per model (open markers: grid edge)."""
  fig, ax = plt.subplots(figsize=(7, 5))
  sweeps = fits.get("optimal_lr") or []
  models = sorted({s["model"] for s in sweeps})
  cmap = plt.get_cmap("tab10")
  for i, model in enumerate(models):
    rows = sorted((s for s in sweeps if s["model"] == model), key=lambda s: s["epochs"])
    color = cmap(i % 10)
    ax.plot([s["epochs"] for s in rows], [s["best_lr"] for s in rows], color=color,
            marker=_marker(rows[0]["family"]), label=model)
    edge = [s for s in rows if s["at_edge"]]
    ax.scatter([s["epochs"] for s in edge], [s["best_lr"] for s in edge], s=120,
               facecolors="none", edgecolors=color)
  trend = fits.get("lr_trend")
  title = "Optimal learning rate vs epoch budget (cf. paper Figure 3)"
  if trend:
    title += f"\npooled slope d log(lr) / d log(epochs) = {trend['pooled_slope']:.3f}"
  if not sweeps:
    ax.text(0.5, 0.5, "no LR sweeps (runs differing only in base_lr)", ha="center",
            transform=ax.transAxes)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log", base=2)
  ax.set_xlabel("epoch budget (epochs)")
  ax.set_ylabel("optimal base learning rate (grid; circled: at grid edge)")
  _plain_log_axis(ax.xaxis)
  _plain_log_axis(ax.yaxis)
  ax.set_title(title, fontsize=10)
  ax.grid(True, which="both", alpha=0.3)
  if sweeps:
    ax.legend(fontsize=8)
  return fig


def figure_optimal_scaling(fits: dict):
  """Optimal model size and optimal epochs vs compute, with their fitted laws."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
  optimal = fits.get("optimal") or []
  law = fits.get("optimal_scaling")
  for ax, key, ylabel in ((axes[0], "params", "optimal model size (parameters)"),
                          (axes[1], "epochs", "optimal epoch budget (epochs)")):
    ax.scatter([o["compute"] for o in optimal], [o[key] for o in optimal], color="k",
               label=f"optimal runs ({fits['settings']['optimal']})")
    if law and optimal:
      grid = np.geomspace(min(o["compute"] for o in optimal),
                          max(o["compute"] for o in optimal), 50)
      part = law[key]
      ax.plot(grid, part["k"] * grid ** part["exponent"], color="crimson",
              label=f"fit: ~ C^{part['exponent']:.3f} {_ci_text(part['ci']['exponent'])}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_compute_label(fits), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  ratio = (law or {}).get("ratio") or {}
  if ratio.get("value") is not None:
    fig.suptitle(f"size/epochs exponent ratio = {ratio['value']:.3f} "
                 f"{_ci_text(ratio['ci'])} (paper: ~1)")
  else:
    fig.suptitle("optimal size and epochs vs compute")
  fig.tight_layout()
  return fig


def _png(fig) -> tf.Tensor:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  return tf.image.decode_png(buffer.getvalue(), channels=4)[tf.newaxis]


# ----------------------------------------------------------------------------------------
# Scalars and text.


def fit_scalars(fits: dict) -> dict:
  """The fitted numbers logged as scalars (tag -> value; missing fits are left out)."""
  out = {}
  law = fits["loss_vs_compute"]
  out.update({"fit/loss_b": law["b"], "fit/loss_a": law["a"], "fit/loss_E": law["E"]})
  if law["ci"]["b"][0] is not None:
    out["fit/loss_b_ci_lo"], out["fit/loss_b_ci_hi"] = law["ci"]["b"]
  for family, entry in fits.get("per_family", {}).items():
    if entry.get("fit"):
      out[f"fit/{family}/loss_b"] = entry["fit"]["b"]
  opt = fits.get("optimal_scaling")
  if opt:
    out["fit/optimal_params_exponent"] = opt["params"]["exponent"]
    out["fit/optimal_epochs_exponent"] = opt["epochs"]["exponent"]
    if opt["ratio"]["value"] is not None:
      out["fit/size_epochs_exponent_ratio"] = opt["ratio"]["value"]
  if fits.get("lr_trend"):
    out["fit/lr_trend_pooled_slope"] = fits["lr_trend"]["pooled_slope"]
  top1 = (fits.get("top1_error") or {}).get("fit")
  if top1:
    out["fit/top1_error_b"] = top1["b"]
  return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def _fmt(value) -> str:
  return "n/a" if value is None else f"{value:.4g}"


def coefficients_markdown(fits: dict) -> str:
  """Markdown table of every fitted coefficient with its CI."""
  level = f"{100 * fits['settings']['confidence']:g}%"
  lines = [f"Compute: {fits['compute_kind']} {fits['compute_unit']}; {fits['n_runs']} runs; "
           f"bootstrap {fits['settings']['bootstrap']} (seed {fits['settings']['seed']}).", "",
           f"| fit | coefficient | value | {level} CI |", "|---|---|---|---|"]

  def add(fit_name, coef, value, ci):
    lo, hi = ci if ci else (None, None)
    lines.append(f"| {fit_name} | {coef} | {_fmt(value)} | [{_fmt(lo)}, {_fmt(hi)}] |")

  law = fits["loss_vs_compute"]
  for coef in ("a", "b", "E") if law["form"].startswith("L = E") else ("a", "b"):
    add(f"loss vs compute ({law['form']})", coef, law[coef], law["ci"][coef])
  for family, entry in fits.get("per_family", {}).items():
    if entry.get("fit"):
      add(f"{family} loss vs compute", "b", entry["fit"]["b"], entry["fit"]["ci"]["b"])
  opt = fits.get("optimal_scaling")
  if opt:
    add("optimal params ~ C^alpha", "alpha", opt["params"]["exponent"],
        opt["params"]["ci"]["exponent"])
    add("optimal epochs ~ C^alpha", "alpha", opt["epochs"]["exponent"],
        opt["epochs"]["ci"]["exponent"])
    add("size / epochs exponent ratio", "ratio", opt["ratio"]["value"], opt["ratio"]["ci"])
  if fits.get("lr_trend"):
    add("optimal LR ~ epochs^s (pooled)", "s", fits["lr_trend"]["pooled_slope"], None)
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


# ----------------------------------------------------------------------------------------
# Writer.


def _run_dir_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


def _join(a: str, b: str) -> str:
  return a.rstrip("/") + "/" + b


def write_tensorboard(logdir: str, points: Sequence[Point], fits: dict) -> dict:
  """Writes figures, scalars, hparams and text for ``fits`` under ``logdir``.

  Args:
    logdir: output directory (local or gs://); created if needed.
    points: the runs the fits came from.
    fits: ``scaling.fit_all(points, ...)``.

  Returns:
    dict: images, scalars, text (tags written to run ``fits``), hparams_sessions (run dirs
    under ``hparams/``), files (fits.json and points.csv paths).
  """
  points = list(points)
  tf.io.gfile.makedirs(logdir)
  fits_path, csv_path = _join(logdir, "fits.json"), _join(logdir, "points.csv")
  with tf.io.gfile.GFile(fits_path, "w") as f:
    f.write(scaling.fits_to_json(fits))
  with tf.io.gfile.GFile(csv_path, "w") as f:
    f.write(scaling.points_to_csv(points))

  figures = {
      IMAGE_TAGS["fig2"]: lambda: figure_loss_vs_compute(points, fits),
      IMAGE_TAGS["fig1"]: lambda: figure_top1_vs_compute(points, fits),
      IMAGE_TAGS["fig3"]: lambda: figure_optimal_lr(fits),
      IMAGE_TAGS["optimal"]: lambda: figure_optimal_scaling(fits),
  }
  scalars = fit_scalars(fits)
  # Per-model loss vs compute as scalar curves: step = rank of the run's compute among all
  # distinct computes (TensorBoard steps are integers); compute/at_index maps step -> compute.
  computes = sorted({p.compute for p in points})
  index = {c: i for i, c in enumerate(computes)}
  curves = {}
  for p in scaling.best_lr_points(points):
    curves.setdefault(f"loss_vs_compute/{p.model}", []).append((index[p.compute],
                                                                p.heldout_loss))
  for f in fits["frontier"]:
    curves.setdefault("loss_vs_compute/frontier", []).append((index[f["compute"]],
                                                              f["heldout_loss"]))
  curves["compute/at_index"] = list(enumerate(computes))
  texts = {"summary/coefficients": coefficients_markdown(fits),
           "summary/frontier": frontier_markdown(fits),
           "summary/notes": notes_markdown(fits)}

  writer = tf.summary.create_file_writer(_join(logdir, FITS_RUN))
  with writer.as_default():
    for tag, make in figures.items():
      tf.summary.image(tag, _png(make()), step=0)
    for tag, value in scalars.items():
      tf.summary.scalar(tag, value, step=0)
    for tag, series in curves.items():
      for step, value in series:
        tf.summary.scalar(tag, float(value), step=int(step))
    for tag, text in texts.items():
      tf.summary.text(tag, text, step=0)
  writer.close()

  sessions = write_hparams(_join(logdir, HPARAMS_RUN), points)
  return dict(images=list(figures), scalars=sorted(scalars) + sorted(curves),
              text=list(texts), hparams_sessions=sessions, files=[fits_path, csv_path])


def write_hparams(hparams_dir: str, points: Sequence[Point]) -> list[str]:
  """The hparams table: the experiment config in ``hparams_dir``, one session per run."""
  def discrete(values):
    return hp.Discrete(sorted(set(values)))

  unit = scaling.single_unit(points)
  hparams = {
      "model": hp.HParam("model", discrete(p.model for p in points)),
      "family": hp.HParam("family", discrete(p.family for p in points)),
      "epochs": hp.HParam("epochs", discrete(p.epochs for p in points)),
      "base_lr": hp.HParam("base_lr", discrete(p.base_lr for p in points)),
      "params": hp.HParam("params", discrete(p.params for p in points)),
  }
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
    writer = tf.summary.create_file_writer(_join(hparams_dir, name))
    with writer.as_default():
      hp.hparams({hparams["model"]: p.model, hparams["family"]: p.family,
                  hparams["epochs"]: p.epochs, hparams["base_lr"]: p.base_lr,
                  hparams["params"]: p.params}, trial_id=p.name)
      tf.summary.scalar("heldout_loss", p.heldout_loss, step=0)
      tf.summary.scalar("heldout_top1", p.heldout_top1, step=0)
      tf.summary.scalar("core_hours", p.compute, step=0)
    writer.close()
    sessions.append(f"{HPARAMS_RUN}/{name}")
  return sessions
