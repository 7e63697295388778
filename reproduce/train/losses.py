"""Training losses and the divergence guard that compares the loss with a uniform guess."""

from __future__ import annotations

import math

import tensorflow as tf

LOSSES = ("softmax", "sigmoid")


class TrainingDiverged(RuntimeError):
  """The loss became NaN/inf or diverged; the last good checkpoint is kept."""


def per_example_loss(labels, logits, kind: str = "softmax", label_smoothing: float = 0.0):
  """Per-example loss of (one- or multi-hot) labels against logits (float32).

  softmax: cross-entropy against the labels normalised to sum 1 (multi-hot
    labels share the mass), smoothed as (1 - ls) * y + ls / C.
  sigmoid: sum over classes of binary cross-entropy (big_vision convention),
    targets smoothed towards 1/2 as (1 - ls) * y + ls / 2.
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.float32)
  num_classes = tf.cast(tf.shape(logits)[-1], tf.float32)
  if kind == "softmax":
    labels = labels / tf.maximum(tf.reduce_sum(labels, axis=-1, keepdims=True), 1e-8)
    if label_smoothing:
      labels = (1.0 - label_smoothing) * labels + label_smoothing / num_classes
    return -tf.reduce_sum(labels * tf.nn.log_softmax(logits), axis=-1)
  if kind == "sigmoid":
    if label_smoothing:
      labels = (1.0 - label_smoothing) * labels + 0.5 * label_smoothing
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits),
                         axis=-1)
  raise ValueError(f"unknown loss {kind!r}; use 'softmax' or 'sigmoid'")


def reference_loss(kind: str, num_classes: int) -> float:
  """Loss of a uniform predictor: the yardstick for divergence."""
  return math.log(num_classes) if kind == "softmax" else num_classes * math.log(2.0)


def check_divergence(step: int, loss: float, grad_norm: float, reference: float,
                     factor: float, last_checkpoint: str | None) -> None:
  """Raises ``TrainingDiverged`` for a NaN/inf loss or gradient norm, or a loss above
  ``factor`` x ``reference`` (0 disables the factor test); the message is one line."""
  kept = f"stopped without saving; last good checkpoint: {last_checkpoint or 'none'}"
  if not (math.isfinite(loss) and math.isfinite(grad_norm)):
    raise TrainingDiverged(f"loss is {loss} (gradient norm {grad_norm}) at step {step}: {kept}")
  if factor and loss > factor * reference:
    raise TrainingDiverged(
        f"loss {loss:.4g} at step {step} exceeds {factor:g} x the uniform-guess loss "
        f"{reference:.4g}: {kept}")
