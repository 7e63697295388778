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


# The ops work on a batch [N, H, W, 3] uint8; ``signs`` [N] are the per-image random signs
# and ``centres`` [N, 2] the cutout centres.


def _autocontrast(images: tf.Tensor) -> tf.Tensor:
  """Each channel stretched to 0..255; a flat channel stays as it is."""
  low = tf.cast(tf.reduce_min(images, axis=[1, 2], keepdims=True), tf.float32)
  high = tf.cast(tf.reduce_max(images, axis=[1, 2], keepdims=True), tf.float32)
  scale = 255.0 / (high - low)
  stretched = to_uint8(tf.cast(images, tf.float32) * scale - low * scale)
  return tf.where(high > low, stretched, images)


def _equalize(images: tf.Tensor) -> tf.Tensor:
  """PIL's equalize per image and channel: a lookup table from the cumulative histogram."""
  shape = tf.shape(images)
  channels = tf.reshape(tf.transpose(tf.cast(images, tf.int32), [0, 3, 1, 2]),
                        [shape[0] * 3, shape[1] * shape[2]])
  histogram = tf.math.bincount(channels, minlength=256, maxlength=256, axis=-1)
  last = tf.reduce_max(tf.where(histogram > 0, tf.range(256), -1), axis=1)
  last_count = tf.gather(histogram, tf.maximum(last, 0), batch_dims=1)
  step = ((tf.reduce_sum(histogram, axis=1) - last_count) // 255)[:, None]
  lut = (tf.cumsum(histogram, axis=1) + step // 2) // tf.maximum(step, 1)
  lut = tf.clip_by_value(tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]], 1), 0, 255)
  equalized = tf.where(step > 0, tf.gather(lut, channels, batch_dims=1), channels)
  equalized = tf.reshape(equalized, [shape[0], 3, shape[1], shape[2]])
  return tf.cast(tf.transpose(equalized, [0, 2, 3, 1]), tf.uint8)


def _sharpness(images: tf.Tensor, factor: float) -> tf.Tensor:
  """Blend with PIL's SMOOTH filter (centre 5 of 13) inside; border pixels kept."""
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  # SAME, not VALID and padded: a VALID convolution of an empty batch has the input's shape.
  smooth = to_uint8(tf.nn.depthwise_conv2d(tf.cast(images, tf.float32), kernel, [1, 1, 1, 1],
                                           "SAME"))
  rows, cols = tf.range(tf.shape(images)[1]), tf.range(tf.shape(images)[2])
  inside_rows = tf.logical_and(rows > 0, rows < tf.shape(images)[1] - 1)
  inside_cols = tf.logical_and(cols > 0, cols < tf.shape(images)[2] - 1)
  inside = tf.logical_and(inside_rows[:, None, None], inside_cols[None, :, None])
  return _blend(tf.where(inside, smooth, images), images, factor)


def _contrast(images: tf.Tensor, factor: float) -> tf.Tensor:
  pixels = tf.cast(tf.shape(images)[1] * tf.shape(images)[2], tf.float32)
  return _blend(tf.fill(tf.shape(images), to_uint8(pixels / 256.0)), images, factor)


def _transform(images: tf.Tensor, rows: list) -> tf.Tensor:
  """Output pixel (x, y) takes the input at (a0 x + a1 y + a2, b0 x + b1 y + b2), nearest;
  ``rows``: the 8 coefficients, each a scalar or one per image."""
  count = tf.shape(images)[0]
  transforms = tf.stack([tf.broadcast_to(tf.cast(value, tf.float32), [count])
                         for value in rows], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
      fill_value=float(REPLACE_VALUE), interpolation="NEAREST", fill_mode="CONSTANT")


def _rotate(images: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Rotation about the image centre (tfa.image.rotate's transform); ``degrees`` [N]."""
  radians = degrees * (math.pi / 180.0)
  cos, sin = tf.cos(radians), tf.sin(radians)
  width = tf.cast(tf.shape(images)[2], tf.float32) - 1
  height = tf.cast(tf.shape(images)[1], tf.float32) - 1
  x_offset = (width - (cos * width - sin * height)) / 2.0
  y_offset = (height - (sin * width + cos * height)) / 2.0
  return _transform(images, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def cutout_centre(seed: tf.Tensor, height, width) -> tf.Tensor:
  """The (y, x) centre of cutout's square, uniform over the image, drawn from ``seed``."""
  y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  return tf.stack([tf.random.stateless_uniform([], y_seed, 0, height, dtype=tf.int32),
                   tf.random.stateless_uniform([], x_seed, 0, width, dtype=tf.int32)])


def _cutout(images: tf.Tensor, pad: int, centres: tf.Tensor) -> tf.Tensor:
  """A (2 pad)^2 square of REPLACE_VALUE, clipped by the border, at each image's centre."""
  rows, cols = tf.range(tf.shape(images)[1]), tf.range(tf.shape(images)[2])
  centre_y, centre_x = centres[:, :1], centres[:, 1:]
  in_rows = tf.logical_and(rows >= centre_y - pad, rows < centre_y + pad)
  in_cols = tf.logical_and(cols >= centre_x - pad, cols < centre_x + pad)
  box = tf.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])
  return tf.where(box, tf.constant(REPLACE_VALUE, tf.uint8), images)


def _solarize_add(images: tf.Tensor, addition: int) -> tf.Tensor:
  added = tf.clip_by_value(tf.cast(images, tf.int64) + addition, 0, 255)
  return tf.where(images < SOLARIZE_ADD_THRESHOLD, tf.cast(added, tf.uint8), images)


def _apply(index: int, images: tf.Tensor, args: LevelArgs, signs: tf.Tensor,
           centres: tf.Tensor) -> tf.Tensor:
  """Op ``OP_NAMES[index]`` on a batch."""
  factor = args.enhance_factor
  shear, pixels = signs * args.shear, signs * args.translate_pixels
  shift = tf.constant(args.posterize_shift, tf.uint8)
  threshold = tf.constant(args.solarize_uint8_threshold, tf.uint8)
  ops = [
      lambda: _autocontrast(images),
      lambda: _equalize(images),
      lambda: 255 - images,
      lambda: _rotate(images, signs * args.rotate_degrees),
      lambda: tf.bitwise.left_shift(tf.bitwise.right_shift(images, shift), shift),
      lambda: tf.where(images < threshold, images, 255 - images),
      lambda: _blend(tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images)), images,
                     factor),
      lambda: _contrast(images, factor),
      lambda: _blend(tf.zeros_like(images), images, factor),
      lambda: _sharpness(images, factor),
      lambda: _transform(images, [1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda: _transform(images, [1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]),
      lambda: _transform(images, [1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda: _transform(images, [1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0]),
      lambda: _cutout(images, args.cutout_pad, centres),
      lambda: _solarize_add(images, args.solarize_addition),
  ]
  return ops[index]()


# One traced layer per level, shared by all layers and pipelines (tracing the 16 ops is
# the slow part of building a RandAugment pipeline).
@functools.lru_cache(maxsize=None)
def _layer_function(level: float):
  args = level_args(level)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8),
                                tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32),
                                tf.TensorSpec([None, 2], tf.int32)])
  def layer(images, op_indices, signs, centres):
    """Each image through its op: the batch split by op, each part through its op at once
    (one kernel per op and batch, not a branch per image), and stitched back in order."""
    parts = functools.partial(tf.dynamic_partition, partitions=op_indices,
                              num_partitions=len(OP_NAMES))
    outputs = [_apply(index, inputs, args, part_signs, part_centres)
               for index, (inputs, part_signs, part_centres)
               in enumerate(zip(parts(images), parts(signs), parts(centres)))]
    return tf.dynamic_stitch(parts(tf.range(tf.shape(images)[0])), outputs)

  return layer


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
  image = to_uint8(tf.convert_to_tensor(image))
  centre = cutout_centre(tf.cast(seed, tf.int64), tf.shape(image)[0], tf.shape(image)[1])
  return _layer_function(float(level))(image[None], tf.constant([index], tf.int32),
                                       tf.constant([sign], tf.float32), centre[None])[0]


def _layer_draws(seed: tf.Tensor, num_layers: int, height, width):
  """(op indices [L], signs [L], cutout centres [L, 2]) of one image's layers."""
  layer_seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num_layers)
  op_indices, signs, centres = [], [], []
  for layer in range(num_layers):
    op_seed, sign_seed, cutout_seed = tf.unstack(
        tf.random.experimental.stateless_split(layer_seeds[layer], num=3))
    op_indices.append(tf.random.stateless_uniform([], op_seed, 0, len(OP_NAMES), dtype=tf.int32))
    signs.append(tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0))
    centres.append(cutout_centre(cutout_seed, height, width))
  return tf.stack(op_indices), tf.stack(signs), tf.stack(centres)


def randaugment_batch(images: tf.Tensor, seeds: tf.Tensor, num_layers: int,
                      magnitude: float) -> tf.Tensor:
  """``randaugment`` of each image of ``images`` [N, H, W, 3] with its seed (``seeds`` [N, 2]):
  the same pixels, each layer's ops applied per op over the batch."""
  out = to_uint8(images)
  height, width = tf.shape(out)[1], tf.shape(out)[2]
  draws = tf.map_fn(lambda seed: _layer_draws(seed, num_layers, height, width), seeds,
                    fn_output_signature=(tf.TensorSpec([num_layers], tf.int32),
                                         tf.TensorSpec([num_layers], tf.float32),
                                         tf.TensorSpec([num_layers, 2], tf.int32)))
  layer = _layer_function(float(magnitude))
  for index in range(num_layers):
    out = layer(out, *(draw[:, index] for draw in draws))
  return tf.cast(tf.ensure_shape(out, images.shape), tf.float32)


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
  image = tf.convert_to_tensor(image)
  return randaugment_batch(image[None], tf.cast(seed, tf.int64)[None], num_layers,
                           magnitude)[0]
