"""Evaluation's outputs beside results.json (whose eval section ``rundir.RunDirectory.add_eval``
writes): TensorBoard, reliability-diagram PNGs and the summary line.

TensorBoard: scalars ``eval/<dataset>/<metric>`` and the image ``eval/<dataset>/reliability``
at step = resolution, so several resolutions draw a curve.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from reproduce.analysis import figures
from reproduce.evaluation import metrics

SCALARS = ("top1", "top5", "nll", "ece", "images_per_second")


def reliability_figure(table: metrics.Reliability, title: str):
  """Accuracy per confidence bin against the diagonal, with the gap shaded and bin counts."""
  centres = (table.edges[:-1] + table.edges[1:]) / 2
  width = table.edges[1] - table.edges[0]
  fig, ax = plt.subplots(figsize=(5, 5))
  filled = table.counts > 0
  ax.bar(centres[filled], table.accuracy[filled], width=width, edgecolor="black",
         label="accuracy")
  ax.bar(centres[filled], (table.confidence - table.accuracy)[filled], width=width,
         bottom=table.accuracy[filled], color="tab:red", alpha=0.3, label="gap to confidence")
  ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
  for x, count in zip(centres[filled], table.counts[filled]):
    ax.annotate(str(int(count)), (x, 0.01), ha="center", fontsize=6, rotation=90)
  ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max softmax probability)",
         ylabel="accuracy", title=title)
  ax.legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  return fig


def file_stem(dataset: str, resolution: int) -> str:
  """A file-name-safe ``reliability_<dataset>_<res>``."""
  return f"reliability_{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset).strip('_')}_{resolution}"


def reliability_png(table: metrics.Reliability, dataset: str, entry: dict) -> bytes:
  title = (f"{dataset} @{entry['resolution']} px: ECE {entry['ece']:.4f}"
           if entry["ece"] is not None else f"{dataset} @{entry['resolution']} px")
  fig = reliability_figure(table, title)
  try:
    return figures.png_bytes(fig)
  finally:
    plt.close(fig)


def write_tensorboard(writer, dataset: str, entry: dict, png: bytes) -> None:
  """Scalars and the reliability image of one entry, through a ``tf.summary`` writer."""
  step = int(entry["resolution"])
  with writer.as_default():
    for name in SCALARS:
      if entry.get(name) is not None:
        tf.summary.scalar(f"eval/{dataset}/{name}", float(entry[name]), step=step)
    tf.summary.image(f"eval/{dataset}/reliability",
                     tf.image.decode_png(png, channels=4)[tf.newaxis], step=step)
  writer.flush()


def summary_line(dataset: str, entry: dict) -> str:
  def number(key, digits=4):
    value = entry.get(key)
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else f"{value:.{digits}f}"
  speed = entry.get("images_per_second")
  return (f"{dataset} @{entry['resolution']} px ({entry['crop']} crop, {entry['weights']} "
          f"weights): top1 {number('top1')} top5 {number('top5')} nll {number('nll')} "
          f"ece {number('ece')} on {entry['examples']} images ({entry['excluded']} excluded), "
          f"{'n/a' if speed is None else f'{speed:.1f}'} images/s")
