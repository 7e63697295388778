"""RandAugment as the NFNet code defines it, made stateless: a pure function of (image, seed).

The reference is DeepMind's ``nfnets/autoaugment.py`` (``distort_image_with_randaugment``),
called by ``nfnets/dataset.py`` on uint8 images. Reproduced here:

- 16 ops, ``OP_NAMES``, no identity. Each of the ``num_layers`` layers picks one uniformly and
  applies it. The official code also draws a probability in [0.2, 0.8] per op, but discards
  it (``func, _, args = ...``) and applies the chosen op unconditionally; so does this one.
- The op arguments at level ``m`` (``level_args``; levels above 10 extrapolate, F3+ uses 15):
  enhance factor ``m/10*1.8+0.1`` (no random sign: 1.0, a no-op, at level 5); rotate
  ``+-30*m/10`` degrees; shear ``+-0.3*m/10``; translate ``+-100*m/10`` pixels, absolute,
  whatever the image size; posterize keeps ``int(m/10*4)`` bits; solarize threshold
  ``int(m/10*256)``; solarize-add ``+int(m/10*110)`` below 128; cutout a square of side
  ``2*int(m/10*40)`` at a uniformly drawn centre. Signs are random, 50/50.
- uint8 arithmetic, as the official ops: a float image is clipped to 0..255 and truncated;
  blends truncate. Python ints compared with uint8 pixels are converted by TensorFlow modulo
  256, so the solarize threshold 256 (level 10) becomes 0 (every pixel inverted) and 384
  (level 15) becomes 128 (pixels >= 128 inverted); TensorFlow clamps uint8 shifts to 0..7.
- Contrast blends towards a constant grey of ``H*W/256`` (the official code divides the grey
  histogram's total count by 256 where the mean grey level was meant); kept, as trained.
- Geometric ops sample nearest-neighbour; pixels from outside the image, and cutout, are 128.

Why hand-written: exact resume needs every example's augmentation to be recomputable from
(image, seed) alone, so that a run restarted at step ``s`` sees the very pixels the
interrupted run would have seen. The official ops draw from TensorFlow's global RNG, and
Keras' ``RandAugment`` from a stateful ``SeedGenerator``; neither can give that. Here all
randomness is ``tf.random.stateless_*`` keyed by the example's seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import tensorflow as tf

OP_NAMES = ("autocontrast", "equalize", "invert", "rotate", "posterize", "solarize", "color",
            "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x",
            "translate_y", "cutout", "solarize_add")
MAX_LEVEL = 10.0
REPLACE_VALUE = 128          # the official fill of geometric ops and cutout
SOLARIZE_ADD_THRESHOLD = 128
TRANSLATE_PIXELS = 100.0     # the official translate_const (RandAugment)
CUTOUT_PIXELS = 40           # the official cutout_const (RandAugment)


@dataclasses.dataclass(frozen=True)
class LevelArgs:
  """The official op arguments at one level, before the random sign."""
  enhance_factor: float
  rotate_degrees: float
  shear: float
  translate_pixels: float
  posterize_bits: int
  solarize_threshold: int
  solarize_addition: int
  cutout_pad: int

  @property
  def posterize_shift(self) -> int:
    """``8 - bits`` as a uint8 operand (modulo 256), clamped to 7 as TensorFlow does."""
    return min((8 - self.posterize_bits) % 256, 7)

  @property
  def solarize_uint8_threshold(self) -> int:
    """The threshold as the uint8 pixels see it: modulo 256."""
    return self.solarize_threshold % 256


def level_args(level: float) -> LevelArgs:
  """The official magnitude formulas at RandAugment level ``level`` (0-10 scale, may exceed)."""
  fraction = float(level) / MAX_LEVEL
  return LevelArgs(
      enhance_factor=fraction * 1.8 + 0.1, rotate_degrees=fraction * 30.0,
      shear=fraction * 0.3, translate_pixels=fraction * TRANSLATE_PIXELS,
      posterize_bits=int(fraction * 4), solarize_threshold=int(fraction * 256),
      solarize_addition=int(fraction * 110), cutout_pad=int(fraction * CUTOUT_PIXELS))


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Clips to 0..255 and truncates, as the official pipeline casts before RandAugment."""
  if image.dtype == tf.uint8:
    return image
  return tf.cast(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0), tf.uint8)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
  """``degenerate + factor * (image - degenerate)`` in float32, clipped and truncated."""
  low = tf.cast(degenerate, tf.float32)
  return to_uint8(low + factor * (tf.cast(image, tf.float32) - low))


def _autocontrast(image: tf.Tensor) -> tf.Tensor:

  def stretch(channel):
    low = tf.cast(tf.reduce_min(channel), tf.float32)
    high = tf.cast(tf.reduce_max(channel), tf.float32)
    scale = 255.0 / (high - low)
    stretched = to_uint8(tf.cast(channel, tf.float32) * scale - low * scale)
    return tf.where(high > low, stretched, channel)  # a flat channel stays as it is

  return tf.stack([stretch(image[..., c]) for c in range(3)], axis=-1)


def _equalize(image: tf.Tensor) -> tf.Tensor:
  """PIL's equalize per channel: a lookup table from the cumulative histogram."""

  def equalize_channel(channel):
    values = tf.cast(channel, tf.int32)
    histogram = tf.histogram_fixed_width(values, [0, 255], nbins=256)
    nonzero = tf.boolean_mask(histogram, histogram > 0)
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
    lut = (tf.cumsum(histogram) + step // 2) // tf.maximum(step, 1)
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, values), tf.uint8), channel)

  return tf.stack([equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
  """Blend with PIL's SMOOTH filter (centre 5 of 13) inside; border pixels kept."""
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel, [1, 1, 1, 1],
                                  "VALID")[0]
  paddings = [[1, 1], [1, 1], [0, 0]]
  smooth = to_uint8(smooth)
  inside = tf.pad(tf.ones_like(smooth), paddings) > 0
  return _blend(tf.where(inside, tf.pad(smooth, paddings), image), image, factor)


def _contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
  pixels = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], tf.float32)
  return _blend(tf.fill(tf.shape(image), to_uint8(pixels / 256.0)), image, factor)


def _transform(image: tf.Tensor, transform: list) -> tf.Tensor:
  """Output pixel (x, y) takes the input at (a0 x + a1 y + a2, b0 x + b1 y + b2), nearest."""
  transform = tf.cast(tf.stack(transform), tf.float32)[None]
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform, output_shape=tf.shape(image)[:2],
      fill_value=float(REPLACE_VALUE), interpolation="NEAREST", fill_mode="CONSTANT")[0]


def _rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Rotation about the image centre (tfa.image.rotate's transform)."""
  radians = degrees * (math.pi / 180.0)
  cos, sin = tf.cos(radians), tf.sin(radians)
  width = tf.cast(tf.shape(image)[1], tf.float32) - 1
  height = tf.cast(tf.shape(image)[0], tf.float32) - 1
  x_offset = (width - (cos * width - sin * height)) / 2.0
  y_offset = (height - (sin * width + cos * height)) / 2.0
  return _transform(image, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def _cutout(image: tf.Tensor, pad: int, seed: tf.Tensor) -> tf.Tensor:
  """A (2 pad)^2 square of REPLACE_VALUE, clipped by the border, at a uniform centre."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  centre_y = tf.random.stateless_uniform([], y_seed, 0, height, dtype=tf.int32)
  centre_x = tf.random.stateless_uniform([], x_seed, 0, width, dtype=tf.int32)
  rows, cols = tf.range(height), tf.range(width)
  in_rows = tf.logical_and(rows >= centre_y - pad, rows < centre_y + pad)
  in_cols = tf.logical_and(cols >= centre_x - pad, cols < centre_x + pad)
  box = tf.logical_and(in_rows[:, None, None], in_cols[None, :, None])
  return tf.where(box, tf.constant(REPLACE_VALUE, tf.uint8), image)


def _solarize_add(image: tf.Tensor, addition: int) -> tf.Tensor:
  added = tf.clip_by_value(tf.cast(image, tf.int64) + addition, 0, 255)
  return tf.where(image < SOLARIZE_ADD_THRESHOLD, tf.cast(added, tf.uint8), image)


def _branches(image: tf.Tensor, args: LevelArgs, sign: tf.Tensor, seed: tf.Tensor) -> list:
  """One callable per op, in ``OP_NAMES`` order."""
  factor = args.enhance_factor
  shear = sign * args.shear
  pixels = sign * args.translate_pixels
  shift = tf.constant(args.posterize_shift, tf.uint8)
  threshold = tf.constant(args.solarize_uint8_threshold, tf.uint8)
  grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  return [
      lambda: _autocontrast(image),
      lambda: _equalize(image),
      lambda: 255 - image,
      lambda: _rotate(image, sign * args.rotate_degrees),
      lambda: tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift),
      lambda: tf.where(image < threshold, image, 255 - image),
      lambda: _blend(grey, image, factor),
      lambda: _contrast(image, factor),
      lambda: _blend(tf.zeros_like(image), image, factor),
      lambda: _sharpness(image, factor),
      lambda: _transform(image, [1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda: _transform(image, [1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]),
      lambda: _transform(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda: _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0]),
      lambda: _cutout(image, args.cutout_pad, seed),
      lambda: _solarize_add(image, args.solarize_addition),
  ]


# One traced function per level, shared by all layers and pipelines (tracing the 16
# branches is the slow part of building a RandAugment pipeline).
@functools.lru_cache(maxsize=None)
def _op_function(level: float):
  args = level_args(level)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
                                tf.TensorSpec([2], tf.int64)])
  def apply(image, op_index, sign, seed):
    return tf.switch_case(op_index, _branches(image, args, sign, seed))

  return apply


def apply_op(image: tf.Tensor, op: str | int, level: float, sign: float = 1.0,
             seed=(0, 0)) -> tf.Tensor:
  """One official op (a name in ``OP_NAMES`` or its index) at ``level``.

  Args:
    image: [H, W, 3] uint8, or float in 0..255 (clipped and truncated to uint8).
    op: which op.
    level: RandAugment level (0-10 scale, may exceed).
    sign: +1 or -1, the random sign of rotate, shear and translate.
    seed: shape [2]; draws cutout's centre.

  Returns:
    The uint8 [H, W, 3] result.
  """
  index = OP_NAMES.index(op) if isinstance(op, str) else op
  return _op_function(float(level))(to_uint8(tf.convert_to_tensor(image)),
                                    tf.cast(index, tf.int32), tf.cast(sign, tf.float32),
                                    tf.cast(seed, tf.int64))


def randaugment(image: tf.Tensor, seed: tf.Tensor, num_layers: int,
                magnitude: float) -> tf.Tensor:
  """Applies ``num_layers`` uniformly chosen official ops at level ``magnitude``.

  Args:
    image: [H, W, 3] uint8 or float image with values in 0..255 (floats are clipped and
      truncated to uint8 first, as the official pipeline does).
    seed: int tensor of shape [2]; the output is a pure function of (image, seed).
    num_layers: ops applied one after another.
    magnitude: RandAugment level.

  Returns:
    The augmented image, float32 with integer values in 0..255, same shape.
  """
  apply = _op_function(float(magnitude))
  out = to_uint8(image)
  layer_seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num_layers)
  for layer in range(num_layers):
    op_seed, sign_seed, cutout_seed = tf.unstack(
        tf.random.experimental.stateless_split(layer_seeds[layer], num=3))
    op_index = tf.random.stateless_uniform([], op_seed, 0, len(OP_NAMES), dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    out = tf.ensure_shape(apply(out, op_index, sign, cutout_seed), image.shape)
  return tf.cast(out, tf.float32)
