"""The paper's figures as matplotlib figures, from the runs and their fits.

Figures are on log axes with units; published points never share an axis with ours (Figure
1 draws them in their own panel), and every per-family figure has one panel per family.
``reproduce.analysis.tensorboard`` writes them as images (``png_bytes``).
"""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures only ever go to PNG
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402

from reproduce.analysis import seeds  # noqa: E402
from reproduce.analysis.fits import predict  # noqa: E402
from reproduce.analysis.frontier import best_lr_points, best_per_group  # noqa: E402
from reproduce.analysis.runs import PAPER_COMPUTE_UNIT, Point  # noqa: E402
from reproduce.core import formatting  # noqa: E402
from reproduce.core import published  # noqa: E402

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


_FAMILY_CMAPS = {"nfnet": "Blues", "vit": "Oranges", "hybrid": "Greens"}


def _family_color(family: str):
  """A family's colour (its laws): the dark end of the shades its models are drawn in."""
  return plt.get_cmap(_FAMILY_CMAPS.get(family, "Purples"))(0.8)


def _model_colors(points: Sequence[Point]) -> dict:
  """Each model's colour: shades of its family's colour (``_family_color``), light to
  dark from small to large, so a family's curves and its law read as one group."""
  families = {}
  for p in sorted(points, key=lambda p: (p.flops_per_image, p.model)):
    families.setdefault(p.family, [])
    if p.model not in families[p.family]:
      families[p.family].append(p.model)
  colors = {}
  for family, models in families.items():
    cmap = plt.get_cmap(_FAMILY_CMAPS.get(family, "Purples"))
    for i, model in enumerate(models):
      colors[model] = cmap(0.35 + 0.6 * i / max(len(models) - 1, 1))
  return colors


def _frontier(points: Sequence[Point], entry: dict) -> list[Point]:
  """A family's frontier as its law sees it: the replicate-averaged points it names (a
  budget's best run with two seeds is their geometric mean, not the first seed's loss)."""
  by_name = {p.name: p for p in seeds.average_replicates(points)}
  return [by_name[n] for n in entry.get("frontier") or [] if n in by_name]


def _marker(family: str) -> str:
  return _FAMILY_MARKERS.get(family, "^")


def _compute_label(fits: dict) -> str:
  unit = fits["compute_unit"]
  kind = fits.get("compute_kind", "planned")
  label = f"pre-training compute ({kind} {unit})"
  if unit != PAPER_COMPUTE_UNIT:
    label += " - not TPU-v4 core hours"
  return label


def _plain_log_axis(axis) -> None:
  """Log-axis tick labels as plain numbers (2.5, not 2.5x10^0): losses span < 1 decade."""
  formatter = ticker.FuncFormatter(lambda v, _: f"{v:g}")
  axis.set_major_formatter(formatter)
  axis.set_minor_formatter(formatter)


def _by_model(points: Sequence[Point]) -> dict:
  groups = {}
  for p in sorted(points, key=lambda p: p.compute):
    groups.setdefault(p.model, []).append(p)
  return groups


def _loss_panel(ax, family: str, points: Sequence[Point], entry: dict, fits: dict) -> None:
  """One family's Figure 2: loss vs compute per model (best LR), its frontier and law."""
  colors = _model_colors(points)
  tuned = best_lr_points(points)
  others = [p for p in points if p not in set(tuned)]
  if others:
    ax.scatter([p.compute for p in others], [p.heldout_loss for p in others], s=10,
               color="0.75", label="other LRs / seeds", zorder=1)
  for model, group in _by_model(tuned).items():
    ax.plot([p.compute for p in group], [p.heldout_loss for p in group],
            marker=_marker(family), color=colors[model], label=model, zorder=3)
  front = _frontier(points, entry)
  ax.plot([p.compute for p in front], [p.heldout_loss for p in front], "k--", marker="o",
          mfc="none", ms=10, lw=1, zorder=2, label="best run per budget (frontier)")
  law = entry.get("fit")
  if law and points:
    grid = np.geomspace(min(p.compute for p in points), max(p.compute for p in points), 100)
    ax.plot(grid, predict(law, grid), color="crimson", lw=2, alpha=0.8, zorder=4,
            label=f"L = {law['a']:.3g} C^-{law['b']:.3f}, b {formatting.interval(law['ci']['b'])}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(_compute_label(fits), fontsize=8)
  ax.set_ylabel("held-out loss")
  _plain_log_axis(ax.yaxis)
  ax.set_title(f"{family}: held-out loss vs compute", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6)


def figure_frontiers(points: Sequence[Point], fits: dict):
  """Every family's frontier (best run per budget) and law on one axes: the study's models are
  compute-matched and trained on the same data, so their held-out losses compare directly."""
  fig, ax = plt.subplots(figsize=(7.5, 5))
  computes = [p.compute for p in points] or [1.0]
  grid = np.geomspace(min(computes), max(computes), 100)
  for family, entry in sorted((fits.get("per_family") or {}).items()):
    color = _family_color(family)
    front = _frontier([p for p in points if p.family == family], entry)
    ax.plot([p.compute for p in front], [p.heldout_loss for p in front], ls="none",
            marker=_marker(family), color=color, label=f"{family}: best run per budget")
    law = entry.get("fit")
    if law:
      ax.plot(grid, predict(law, grid), color=color, lw=1.5,
              label=f"{family}: L = {law['a']:.3g} C^-{law['b']:.3f}, "
                    f"b {formatting.interval(law['ci']['b'])}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(_compute_label(fits), fontsize=8)
  ax.set_ylabel("held-out loss")
  _plain_log_axis(ax.yaxis)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)
  ax.set_title("Each family's frontier and law at matched compute", fontsize=9)
  fig.tight_layout()
  return fig


def figure_loss_vs_compute(points: Sequence[Point], fits: dict):
  """Figure 2 per family, side by side (the paper's Figure 2 is NFNets only): each family's
  models across budgets, its own frontier and law; never one pooled frontier or fit."""
  families = sorted(fits.get("per_family") or {}) or ["(no runs)"]
  fig, axes = plt.subplots(1, len(families), figsize=(7 * len(families), 5), squeeze=False)
  for family, ax in zip(families, axes[0]):
    _loss_panel(ax, family, [p for p in points if p.family == family],
                (fits.get("per_family") or {}).get(family, {}), fits)
  fig.suptitle("Held-out loss vs pre-training compute, per family (cf. paper Figure 2)")
  fig.tight_layout()
  return fig


def _published_panel(ax) -> None:
  """Figure 1's published points on their own axes (TPU-v4 core hours), never on ours."""
  for i, row in enumerate(published_figure1_points()):
    ax.scatter([row["compute"]], [row["top1_error"]], marker="*", s=160, zorder=5,
               color=plt.get_cmap("Dark2")(i), edgecolor="k", label=row["label"])
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(1e3, 1e6)  # the paper's Figure 1 decades
  ax.set_xlabel(f"pre-training compute ({PAPER_COMPUTE_UNIT})", fontsize=8)
  ax.set_ylabel("ImageNet top-1 error (%)", fontsize=8)
  _plain_log_axis(ax.yaxis)
  ax.set_title("published (the paper's Figure 1 points)", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)


def figure_top1_vs_compute(points: Sequence[Point], fits: dict):
  """Figure 1: our top-1 error vs compute (left) and the paper's published points (right,
  their own axes: the data sets, models and compute units differ)."""
  fig, (ax, pax) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw=dict(width_ratios=[3, 2]))
  colors = _model_colors(points)
  best = best_per_group(points, lambda p: p.sweep_key, lambda p: -p.top1)  # per LR sweep
  for model, group in _by_model(best.values()).items():
    ax.plot([p.compute for p in group], [100 * (1 - p.top1) for p in group],
            marker=_marker(group[0].family), color=colors[model], label=model)
  grid = np.geomspace(min(p.compute for p in points), max(p.compute for p in points), 100)
  for family, entry in sorted((fits.get("per_family") or {}).items()):
    finetuned = entry.get("finetune_fit")
    if finetuned:  # each family's own fine-tuned law, on its best run per budget
      ax.plot(grid, 100 * predict(finetuned, grid), ls=":", lw=2,
              color=_family_color(family),
              marker=_marker(family), markevery=20,
              label=f"{family} fine-tuned fit: err ~ C^-{finetuned['b']:.3f}, "
                    f"b {formatting.interval(finetuned['ci']['b'])}")
  source = fits.get("top1_error", {}).get("source", "heldout")
  what = {"finetune": "fine-tuned top-1 error (%)", "heldout": "held-out top-1 error (%)"}
  ax.set_ylabel(what.get(source, "top-1 error (%): fine-tuned where available, else held-out"))
  ax.set_xlabel("ours: " + _compute_label(fits), fontsize=8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  _plain_log_axis(ax.yaxis)
  ax.set_title("ours", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6)
  _published_panel(pax)
  fig.suptitle("Top-1 error vs pre-training compute (cf. paper Figure 1)")
  fig.tight_layout()
  return fig


def _family_panels(fits: dict, columns: int, width: float, height: float):
  """One row of ``columns`` axes per family of ``fits["per_family"]`` (at least one row)."""
  families = sorted(fits.get("per_family") or {}) or ["(no runs)"]
  fig, axes = plt.subplots(len(families), columns, figsize=(width, height * len(families)),
                           squeeze=False)
  return fig, list(zip(families, axes))


def _lr_panel(ax, family: str, entry: dict) -> None:
  """One family's optimal base LR vs epoch budget per model (open markers: grid edge)."""
  sweeps = entry.get("optimal_lr") or []
  cmap = plt.get_cmap("tab10")
  for i, model in enumerate(sorted({s["model"] for s in sweeps})):
    rows = sorted((s for s in sweeps if s["model"] == model), key=lambda s: s["epochs"])
    color = cmap(i % 10)
    ax.plot([s["epochs"] for s in rows], [s["refined_lr"] for s in rows], color=color,
            marker=_marker(family), label=model)
    edge = [s for s in rows if s["at_edge"]]
    ax.scatter([s["epochs"] for s in edge], [s["refined_lr"] for s in edge], s=120,
               facecolors="none", edgecolors=color)
  trend = entry.get("lr_trend")
  title = f"{family}: optimal LR vs epoch budget"
  if trend:
    title += (f"\npooled slope d log(lr) / d log(epochs) = {trend['pooled_slope']:.3f} "
              f"{formatting.interval(trend.get('ci'))}")
  ax.set_title(title, fontsize=9)
  if not sweeps:
    ax.text(0.5, 0.5, "no LR sweeps (runs differing only in base_lr)", ha="center",
            transform=ax.transAxes)
    return
  ax.set_xscale("log", base=2)
  ax.set_yscale("log", base=2)
  _plain_log_axis(ax.xaxis)
  _plain_log_axis(ax.yaxis)
  ax.legend(fontsize=7)


def figure_optimal_lr(fits: dict):
  """Figure 3 per family: optimal base LR vs epoch budget per model."""
  fig, panels = _family_panels(fits, 1, 7, 4.5)
  for family, (ax,) in panels:
    _lr_panel(ax, family, (fits.get("per_family") or {}).get(family, {}))
    ax.set_xlabel("epoch budget (epochs)")
    ax.set_ylabel("optimal base LR, fitted vertex (circled: grid edge)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
  fig.suptitle("Optimal learning rate vs epoch budget (cf. paper Figure 3)", fontsize=10)
  fig.tight_layout()
  return fig


def _scaling_panel(ax, fits: dict, family: str, part: str) -> None:
  """One family's iso-compute optimal size (or epochs) vs compute with its fitted law."""
  entry = (fits.get("per_family") or {}).get(family, {})
  optimal = entry.get("optimal") or []
  key = fits.get("size_axis", "flops_per_image") if part == "size" else "epochs"
  for at_edge, style in ((False, dict(color="k")),
                         (True, dict(facecolors="none", edgecolors="k", s=80))):
    shown = [o for o in optimal if bool(o.get("edge")) == at_edge]
    if shown:
      ax.scatter([o["compute"] for o in shown], [o[key] for o in shown], marker=_marker(family),
                 label=("edge optima: best size tried (not fitted)" if at_edge else
                        "iso-compute vertex (interior)"), **style)
  scaling = entry.get("optimal_scaling") or {}
  law = scaling.get(part)
  if law and optimal:
    grid = np.geomspace(min(o["compute"] for o in optimal), max(o["compute"] for o in optimal),
                        50)
    ax.plot(grid, law["k"] * grid ** law["exponent"], color="crimson",
            label=f"fit: ~ C^{law['exponent']:.3f} {formatting.interval(law['ci']['exponent'])}")
  ratio = scaling.get("ratio") or {}
  title = family
  if part == "size" and ratio.get("value") is not None:
    title += (f": size/epochs exponent ratio {ratio['value']:.3f} "
              f"{formatting.interval(ratio.get('ci'))} (paper: ~1)")
  ax.set_title(title, fontsize=9)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(_compute_label(fits), fontsize=8)
  ax.set_ylabel(f"optimal model size ({key})" if part == "size" else
                "optimal epoch budget (epochs)", fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  if optimal:
    ax.legend(fontsize=7)


def figure_optimal_scaling(fits: dict):
  """Per family: optimal model size (forward FLOPs per image) and epochs vs compute."""
  fig, panels = _family_panels(fits, 2, 11, 4.2)
  for family, axes in panels:
    for ax, part in zip(axes, ("size", "epochs")):
      _scaling_panel(ax, fits, family, part)
  fig.suptitle("Optimal model size and epoch budget vs compute, per family")
  fig.tight_layout()
  return fig


def _prediction_panel(ax, family: str, record: dict) -> None:
  """The law of the smaller budgets, its interval band out to the largest, the observed."""
  ax.set_title(f"{family}: predicted vs observed at the largest budget", fontsize=9)
  if record.get("status") != "ok":
    ax.text(0.5, 0.5, record.get("note") or "no prediction", ha="center", wrap=True,
            fontsize=8, transform=ax.transAxes)
    return
  band, law, loss = record["band"], record["law"], record["loss"]
  ax.plot(band["compute"], band["centre"], color="crimson",
          label=f"law of the smaller budgets: L = {law['a']:.3g} C^-{law['b']:.3f}")
  if band["lo"][0] is not None:
    ax.fill_between(band["compute"], band["lo"], band["hi"], color="crimson", alpha=0.15,
                    label=f"{100 * record['confidence']:g}% confidence band of the line")
  for runs, style in ((record["train_frontier"], dict(color="k", label="fitted frontier")),
                      (record["held_out"], dict(color="0.6", label="largest budget's runs"))):
    ax.scatter([r["compute"] for r in runs], [r["heldout_loss"] for r in runs], s=18, **style)
  observed = next(r for r in record["held_out"] if r["name"] == record["observed_run"])
  ax.scatter([observed["compute"]], [loss["observed"]], marker="*", s=200, color="gold",
             edgecolor="k", zorder=5, label=f"observed best: {observed['model']} "
             f"({'inside' if loss['inside'] else 'outside'} the interval)")
  ax.errorbar([record["compute"]], [loss["predicted"]], fmt="o", color="crimson",
              yerr=[[loss["predicted"] - (loss["interval"][0] or loss["predicted"])],
                    [(loss["interval"][1] or loss["predicted"]) - loss["predicted"]]],
              capsize=4, label="prediction interval (line + seed noise + selection)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  _plain_log_axis(ax.yaxis)
  ax.set_xlabel("pre-training compute (core hours)", fontsize=8)
  ax.set_ylabel("held-out loss", fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)


def figure_prediction(predictions: dict):
  """Per family: the loss law fitted on all budgets but the largest, extrapolated with its
  interval band, and the largest budget's observed best run (``prediction.predict_all``)."""
  families = sorted(predictions) or ["(no runs)"]
  fig, axes = plt.subplots(1, len(families), figsize=(6.5 * len(families), 4.5), squeeze=False)
  for family, ax in zip(families, axes[0]):
    _prediction_panel(ax, family, predictions.get(family, {}))
  fig.suptitle("A scaling law, tested: the largest budget predicted from the smaller ones")
  fig.tight_layout()
  return fig


def png_bytes(fig) -> bytes:
  """The figure as PNG bytes; the figure is closed."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  return buffer.getvalue()


def study_figures(points: Sequence[Point], fits: dict, predictions: dict | None = None) -> dict:
  """Every figure of a study by name (report.md's PNG file stem, TensorBoard's tag under
  ``figures/``) -> a function drawing it; the prediction's only with ``predictions``."""
  makers = {
      "fig1_top1_error_vs_compute": lambda: figure_top1_vs_compute(points, fits),
      "frontiers_loss_vs_compute": lambda: figure_frontiers(points, fits),
      "fig2_loss_vs_compute": lambda: figure_loss_vs_compute(points, fits),
      "fig3_optimal_lr_vs_epochs": lambda: figure_optimal_lr(fits),
      "optimal_size_epochs_vs_compute": lambda: figure_optimal_scaling(fits),
  }
  if predictions is not None:
    makers["prediction_largest_budget"] = lambda: figure_prediction(predictions)
  return makers
