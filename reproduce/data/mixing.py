"""Batch mixing, NFNet style: MixUp and CutMix with the batch reversed as partners.

A pure function of (batch, seed), like the per-example preprocessing, so a resumed run
mixes its batches exactly as the interrupted one would have.
"""

from __future__ import annotations

import tensorflow as tf


def sample_beta(seed: tf.Tensor, alpha: float) -> tf.Tensor:
  """One stateless Beta(alpha, alpha) sample, as X / (X + Y) of two Gamma(alpha) draws."""
  first, second = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  x = tf.random.stateless_gamma([], first, alpha=alpha)
  y = tf.random.stateless_gamma([], second, alpha=alpha)
  return x / tf.maximum(x + y, 1e-12)


def mixup(images, labels, seed, alpha):
  """Mixes each example with the batch reversed, weight lam ~ Beta(alpha, alpha)."""
  lam = sample_beta(seed, alpha)
  mixed = lam * tf.cast(images, tf.float32) + (1 - lam) * tf.cast(images[::-1], tf.float32)
  return tf.cast(mixed, images.dtype), lam * labels + (1 - lam) * labels[::-1]


def cutmix(images, labels, seed, alpha):
  """Pastes a box of the reversed batch; labels mixed by the box's actual area."""
  beta_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
  lam = sample_beta(beta_seed, alpha)
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  cut = tf.sqrt(1.0 - lam)
  cut_h = tf.cast(cut * tf.cast(height, tf.float32), tf.int32)
  cut_w = tf.cast(cut * tf.cast(width, tf.float32), tf.int32)
  centre_y = tf.random.stateless_uniform([], y_seed, 0, height, dtype=tf.int32)
  centre_x = tf.random.stateless_uniform([], x_seed, 0, width, dtype=tf.int32)
  y0, y1 = tf.maximum(centre_y - cut_h // 2, 0), tf.minimum(centre_y + cut_h // 2, height)
  x0, x1 = tf.maximum(centre_x - cut_w // 2, 0), tf.minimum(centre_x + cut_w // 2, width)
  rows = tf.logical_and(tf.range(height) >= y0, tf.range(height) < y1)
  cols = tf.logical_and(tf.range(width) >= x0, tf.range(width) < x1)
  box = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
  mixed = tf.where(box, images[::-1], images)
  area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(height * width, tf.float32)
  return mixed, (1 - area) * labels + area * labels[::-1]


def mix_batch(images, labels, seed: tf.Tensor, mixup_alpha: float, cutmix_alpha: float):
  """NFNet mixing: MixUp on the first half, CutMix on the second (or one of them on all)."""
  mixup_seed, cutmix_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  if mixup_alpha > 0 and cutmix_alpha > 0:
    half = tf.shape(images)[0] // 2
    first = mixup(images[:half], labels[:half], mixup_seed, mixup_alpha)
    second = cutmix(images[half:], labels[half:], cutmix_seed, cutmix_alpha)
    return tf.concat([first[0], second[0]], 0), tf.concat([first[1], second[1]], 0)
  if mixup_alpha > 0:
    return mixup(images, labels, mixup_seed, mixup_alpha)
  return cutmix(images, labels, cutmix_seed, cutmix_alpha)
