"""Helpers of the evaluation tests: the reference metrics written as plain loops, a
converted-weights directory writer, and an ImageFolder of PNGs."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import tensorflow as tf


def loop_metrics(logits, label_sets_per_row, num_bins=15):
  """Independent per-row loops: top-1/top-5 in the label set, NLL of the set, Guo ECE.

  Rows with an empty label set are left out (they are not scorable)."""
  rows = []
  for row, labels in zip(np.asarray(logits, np.float64), label_sets_per_row):
    if not labels:
      continue
    z = row - row.max()
    p = np.exp(z) / np.exp(z).sum()
    order = sorted(range(len(p)), key=lambda c: -p[c])
    rows.append((order[0] in labels, any(c in labels for c in order[:5]),
                 -math.log(sum(p[c] for c in labels)), p.max()))
  top1 = np.array([r[0] for r in rows], float)
  conf = np.array([r[3] for r in rows])
  ece = 0.0
  for k in range(num_bins):
    lo, hi = k / num_bins, (k + 1) / num_bins
    in_bin = (conf > lo) & (conf <= hi)
    if in_bin.any():
      ece += in_bin.mean() * abs(top1[in_bin].mean() - conf[in_bin].mean())
  return {"top1": top1.mean(), "top5": np.mean([r[1] for r in rows]),
          "nll": np.mean([r[2] for r in rows]), "ece": ece, "examples": len(rows)}


def write_converted(model, out_dir, *, name, num_classes, resolution, overrides=None,
                    ema=False):
  """The converted-weights directory format (model.json + model.weights.h5)."""
  os.makedirs(out_dir, exist_ok=True)
  model.save_weights(os.path.join(out_dir, "model.weights.h5"))
  with open(os.path.join(out_dir, "model.json"), "w", encoding="utf-8") as f:
    json.dump({"format": "nfnet-vit-scaling/weights/v1", "model": name,
               "num_classes": num_classes, "model_overrides": overrides or {},
               "resolution": resolution, "source": "test", "ema": ema}, f)
  return out_dir


def write_imagefolder(root, per_folder, folders=("a", "b", "c"), size=(20, 28), seed=0):
  """root/<folder>/<i>.png random images; returns root."""
  rng = np.random.default_rng(seed)
  for folder in folders:
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i in range(per_folder):
      pixels = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
      with open(os.path.join(root, folder, f"{i}.png"), "wb") as f:
        f.write(tf.io.encode_png(pixels).numpy())
  return root


def randomise(model, scale=1.0, seed=0):
  """Random normal weights (models with zero-initialised heads give uniform logits)."""
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(size=w.shape).astype(np.float32) * scale
                     for w in model.get_weights()])
