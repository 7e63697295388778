"""A stateless RandAugment for tf.data: the output is a pure function of (image, seed).

Why hand-written: exact resume needs every example's augmentation to be recomputable from
(image, seed) alone, so that a run restarted at step ``s`` sees the very pixels the
interrupted run would have seen. Keras' ``RandAugment`` (and keras-cv's) draw from a stateful
``SeedGenerator`` whose state depends on how many images came before; they cannot give that.
This version takes an explicit ``seed`` (shape [2] int) and uses only
``tf.random.stateless_*`` ops.

Magnitude. NFNets use RandAugment "levels" (F0: 4 layers at 5, F1/F2: 10, F3+: 15) on the
usual 0-10 scale, which 15 exceeds. We map a level ``m`` to ``strength = m / 10`` and scale
every op linearly with it (so 15 extrapolates, e.g. rotations up to 45 degrees):

  rotate       +-30 deg * strength        shear_x/y     +-0.3 * strength
  translate    +-0.45 * size * strength   solarize      threshold 256 - 256 * strength
  posterize    8 - round(4 * strength) bits (at least 1)
  color, contrast, brightness, sharpness: blend factor 1 +- 0.9 * strength (clipped at 0)
  identity, autocontrast, equalize: no magnitude

Written against Keras' ``RandAugment(factor=...)``: its ``factor`` is the same 0-1 strength,
i.e. ``factor = m / 10`` (level 15 would need ``factor = 1.5``, which Keras does not allow).
Each of the ``num_layers`` layers picks one op uniformly and applies it; signed magnitudes
get a random sign.
"""

from __future__ import annotations

import math

import tensorflow as tf

OP_NAMES = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
            "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x",
            "translate_y")
_FILL_VALUE = 128.0


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  factor = tf.maximum(factor, 0.0)
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
  return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _affine(image: tf.Tensor, transform: list) -> tf.Tensor:
  """Applies a projective transform mapping output (x, y) to input coordinates."""
  transform = tf.cast(tf.stack(transform), tf.float32)[None]
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform, output_shape=tf.shape(image)[:2],
      fill_value=_FILL_VALUE, interpolation="BILINEAR", fill_mode="CONSTANT")[0]


def _autocontrast(image: tf.Tensor) -> tf.Tensor:
  low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
  high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
  scale = 255.0 / tf.maximum(high - low, 1e-6)
  stretched = (image - low) * scale
  # Flat channels stay as they are.
  return tf.where(high > low, stretched, image)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
  values = tf.cast(channel, tf.int32)
  histogram = tf.histogram_fixed_width(values, [0, 255], nbins=256)
  nonzero = tf.boolean_mask(histogram, histogram > 0)
  step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

  def equalized():
    lut = (tf.cumsum(histogram) + step // 2) // tf.maximum(step, 1)
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.cast(tf.gather(lut, values), tf.float32)

  return tf.cond(step > 0, equalized, lambda: channel)


def _equalize(image: tf.Tensor) -> tf.Tensor:
  return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _sharpness_degenerate(image: tf.Tensor) -> tf.Tensor:
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]
  # PIL keeps the border pixels unchanged.
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  inner = tf.pad(tf.ones([height - 2, width - 2, 3]), [[1, 1], [1, 1], [0, 0]])
  return inner * smooth + (1.0 - inner) * image


# Traced once per process and shared by all layers and pipelines (tracing the 14 branches
# is the slow part of building a RandAugment pipeline).
@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                              tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
                              tf.TensorSpec([], tf.float32)])
def apply_op(image: tf.Tensor, op_index: tf.Tensor, strength: tf.Tensor,
              sign: tf.Tensor) -> tf.Tensor:
  """Op ``OP_NAMES[op_index]`` at ``strength`` (level / 10) and ``sign`` (+-1) on a float32
  [H, W, 3] image in 0..255."""
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  enhance = 1.0 + sign * 0.9 * strength
  angle = sign * math.radians(30.0) * strength
  shear = sign * 0.3 * strength
  bits = tf.maximum(1, 8 - tf.cast(tf.round(4 * strength), tf.int32))
  threshold = 256.0 - 256.0 * strength

  def rotate():
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return _affine(image, [cos, -sin, cx - cx * cos + cy * sin,
                           sin, cos, cy - cx * sin - cy * cos, 0.0, 0.0])

  def posterize():
    shift = 8 - bits
    quantised = tf.bitwise.left_shift(
        tf.bitwise.right_shift(tf.cast(image, tf.int32), shift), shift)
    return tf.cast(quantised, tf.float32)

  branches = [
      lambda: image,
      lambda: _autocontrast(image),
      lambda: _equalize(image),
      rotate,
      lambda: tf.where(image >= threshold, 255.0 - image, image),
      lambda: _blend(_grayscale(image), image, enhance),
      posterize,
      lambda: _blend(tf.fill(tf.shape(image), tf.reduce_mean(
          tf.image.rgb_to_grayscale(image))), image, enhance),
      lambda: _blend(tf.zeros_like(image), image, enhance),
      lambda: _blend(_sharpness_degenerate(image), image, enhance),
      lambda: _affine(image, [1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda: _affine(image, [1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]),
      lambda: _affine(image, [1.0, 0.0, sign * 0.45 * strength * width, 0.0, 1.0, 0.0,
                              0.0, 0.0]),
      lambda: _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, sign * 0.45 * strength * height,
                              0.0, 0.0]),
  ]
  return tf.switch_case(op_index, branches)


def randaugment(image: tf.Tensor, seed: tf.Tensor, num_layers: int,
                magnitude: float) -> tf.Tensor:
  """Applies ``num_layers`` random ops at NFNet level ``magnitude`` (0-10 scale, may exceed).

  Args:
    image: uint8 or float [H, W, 3] image with values in 0..255.
    seed: int32/int64 tensor of shape [2]; the output is a pure function of (image, seed).
    num_layers: ops applied one after another.
    magnitude: RandAugment level; strength = magnitude / 10.

  Returns:
    The augmented image, float32 in 0..255, same shape.
  """
  strength = float(magnitude) / 10.0
  out = tf.cast(image, tf.float32)
  layer_seeds = tf.random.experimental.stateless_split(seed, num=num_layers)
  for layer in range(num_layers):
    op_seed, sign_seed = tf.unstack(
        tf.random.experimental.stateless_split(layer_seeds[layer], num=2))
    op_index = tf.random.stateless_uniform([], op_seed, 0, len(OP_NAMES), dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    out = tf.ensure_shape(apply_op(out, op_index, strength, sign), image.shape)
  return out
