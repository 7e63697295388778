"""Scores a model on one evaluation set at one resolution.

Logits come from the model in inference mode, batch by batch, in dataset order; they are
restricted to the set's scored classes (ImageNet-A/-R: 200), rows without a label in those
classes are excluded (ReaL images without a valid label), and the metrics are computed in
NumPy (``metrics``). Images/s counts the forward passes only, from the second batch on (the
first traces the model), or the only batch when there is one.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from reproduce import data
from reproduce.evaluation import datasets
from reproduce.evaluation import metrics


@dataclasses.dataclass
class SetResult:
  """The ``eval`` entry of one (dataset, resolution) and its reliability table."""
  entry: dict
  reliability: metrics.Reliability


def _predictor(model: keras.Model):
  @tf.function(reduce_retracing=True)
  def predict(images):
    return tf.cast(model(images, training=False), tf.float32)
  return predict


def evaluate_set(model: keras.Model, eval_set: datasets.EvalSet, *, resolution: int,
                 crop: str, batch_size: int, max_examples: int | None = None,
                 input_range: str | None = None) -> SetResult:
  """Top-1, top-5, NLL, ECE, counts and speed of ``model`` on ``eval_set``, its images
  normalised to the model's ``input_range`` (None: ImageNet mean/std)."""
  num_classes = int(model.outputs[0].shape[-1])
  predict = _predictor(model)
  parts, excluded, timings = [], 0, []
  scored = eval_set.scored_classes
  for images, targets in datasets.batches(eval_set, resolution, crop, batch_size, num_classes,
                                          max_examples, input_range):
    start = time.perf_counter()
    logits = predict(images).numpy()
    timings.append((time.perf_counter() - start, len(logits)))
    targets = targets.numpy()
    if scored is not None:
      logits, targets = logits[:, scored], targets[:, scored]
    keep = metrics.scorable(targets)
    excluded += int(np.sum(~keep))
    parts.append(metrics.per_example(logits[keep], targets[keep]))
  stats = metrics.concatenate(parts)
  timed = timings[1:] or timings
  seconds = sum(t for t, _ in timed)
  entry = metrics.summarize(stats)
  entry.update(excluded=excluded, resolution=int(resolution), crop=crop,
               input_range=input_range or data.DEFAULT_INPUT_RANGE,
               images_per_second=sum(n for _, n in timed) / seconds if seconds else None,
               scored_classes=int(len(scored)) if scored is not None else num_classes,
               data=eval_set.description)
  return SetResult(entry, metrics.reliability(stats["confidence"], stats["top1"]))
