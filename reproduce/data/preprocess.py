"""Per-example preprocessing: decode + crop, bicubic resize, RandAugment, normalisation to a
model's input range (``INPUT_RANGES``), and the two eval crops (``EVAL_CROPS``).

Train preprocessing is a pure function of (encoded image, seed): all its randomness comes
from ``tf.random.stateless_*`` ops keyed by the seed. That is what makes resume exact: the
pipeline re-derives each example's seed from (seed, epoch, index) and gets the same pixels.
Keras' preprocessing layers (``RandomCrop``, ``RandomFlip``, ``RandAugment``) draw from a
stateful generator instead, so they are not used here.
"""

from __future__ import annotations

import tensorflow as tf

from reproduce.data.augment_defaults import AUGMENT_DEFAULTS
from reproduce.data.datasource import DataError, DataSource
from reproduce.data.randaugment import randaugment, randaugment_batch

# NFNet normalisation (ImageNet mean/std on the 0..255 scale).
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# The input range a model's weights expect, as (mean, std) on the 0..255 scale. It belongs to
# the weights (model.json's ``input_range``, a run's ``config.input_range``), set by where they
# come from: "imagenet" for NFNets (the NFNet code's dataset.py MEAN_RGB/STDDEV_RGB; timm's
# dm_nfnet configs) and for this kit's own runs; "minus_one_one" for big_vision ViTs
# (``value_range(-1, 1)``) and timm's AugReg ViTs (data config mean = std = 0.5).
INPUT_RANGES = {
    "imagenet": (MEAN_RGB, STDDEV_RGB),
    "minus_one_one": ((127.5,) * 3, (127.5,) * 3),
}
DEFAULT_INPUT_RANGE = "imagenet"


def resolve_augment(source: DataSource, augment: dict | None) -> dict:
  """``source.augment_defaults`` updated by ``augment``, validated and normalised."""
  settings = dict(source.augment_defaults)
  unknown = sorted(set(augment or {}) - set(AUGMENT_DEFAULTS))
  if unknown:
    raise DataError(f"augment has unknown key(s) {unknown}; known: {sorted(AUGMENT_DEFAULTS)}")
  settings.update({k: v for k, v in (augment or {}).items() if v is not None or k == "randaugment"})
  randaugment_setting = settings["randaugment"]
  if isinstance(randaugment_setting, str):
    if not (randaugment_setting.isdigit() and len(randaugment_setting) == 3):
      raise DataError(f"augment randaugment={randaugment_setting!r}: use 'LMM' (e.g. '405') "
                      "or (layers, magnitude)")
    randaugment_setting = (int(randaugment_setting[0]), int(randaugment_setting[1:]))
  if randaugment_setting is not None:
    layers, magnitude = randaugment_setting
    randaugment_setting = None if int(layers) == 0 else (int(layers), float(magnitude))
    if randaugment_setting and float(magnitude) < 0:
      raise DataError(f"augment randaugment level {magnitude} must be >= 0")
  settings["randaugment"] = randaugment_setting
  for key in ("mixup_alpha", "cutmix_alpha"):
    settings[key] = float(settings[key] or 0.0)
    if settings[key] < 0:
      raise DataError(f"augment {key}={settings[key]} must be >= 0")
  return settings


def _decode_and_crop(encoded: tf.Tensor, crop_box_fn) -> tf.Tensor:
  """Decodes only the crop of JPEGs (decode_and_crop_jpeg); other formats decode then crop."""

  def jpeg():
    box = crop_box_fn(tf.image.extract_jpeg_shape(encoded))
    return tf.io.decode_and_crop_jpeg(encoded, box, channels=3)

  def other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    y, x, h, w = tf.unstack(crop_box_fn(tf.shape(image)))
    return image[y:y + h, x:x + w]

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  return tf.ensure_shape(image, [None, None, 3])


def check_input_range(input_range: str | None) -> str:
  """``input_range`` (None: ``DEFAULT_INPUT_RANGE``), checked against ``INPUT_RANGES``."""
  input_range = input_range or DEFAULT_INPUT_RANGE
  if input_range not in INPUT_RANGES:
    raise DataError(f"input range {input_range!r}: use one of {sorted(INPUT_RANGES)}")
  return input_range


def normalise(image: tf.Tensor, dtype=tf.float32, input_range: str | None = None) -> tf.Tensor:
  """A 0..255 image mapped to the model's ``input_range`` (None: ImageNet mean/std), cast to
  ``dtype``. Every path that feeds a model (train, held-out, evaluate, fine-tune, convert
  --check) normalises here."""
  mean, std = INPUT_RANGES[check_input_range(input_range)]
  image = (tf.cast(image, tf.float32) - mean) / std
  return tf.cast(image, dtype)


def _resize(image: tf.Tensor, size) -> tf.Tensor:
  """Bicubic (no antialias, as the NFNet code), clipped to 0..255."""
  image = tf.image.resize(tf.cast(image, tf.float32), size, method="bicubic")
  return tf.clip_by_value(image, 0.0, 255.0)


def _example_seeds(seed: tf.Tensor) -> list[tf.Tensor]:
  """(crop, flip, RandAugment) seeds of one example."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num=3))


def crop_and_flip(encoded: tf.Tensor, seed: tf.Tensor, resolution: int,
                  settings: dict) -> tf.Tensor:
  """The per-image train geometry: a float32 [res, res, 3] image in 0..255.

  Inception crop (random area/aspect box via stateless_sample_distorted_bounding_box, decoded
  with decode_and_crop_jpeg), bicubic resize, optional flip. A pure function of
  (encoded, seed).
  """
  crop_seed, flip_seed, _ = _example_seeds(seed)

  def crop_box(shape):
    if not settings["crop"]:
      return tf.stack([0, 0, shape[0], shape[1]])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=settings["min_object_covered"],
        aspect_ratio_range=list(settings["aspect_ratio_range"]),
        area_range=list(settings["area_range"]), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])

  image = _resize(_decode_and_crop(encoded, crop_box), [resolution, resolution])
  if settings["flip"]:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return image


def augment(image: tf.Tensor, seed: tf.Tensor, settings: dict) -> tf.Tensor:
  """RandAugment (if ``settings`` asks for it) of one float 0..255 image, keyed by the seed
  of the example it belongs to (for a mixed image: the example at its batch position)."""
  if not settings["randaugment"]:
    return image
  layers, magnitude = settings["randaugment"]
  return randaugment(image, _example_seeds(seed)[2], layers, magnitude)


def augment_batch(images: tf.Tensor, seeds: tf.Tensor, settings: dict) -> tf.Tensor:
  """``augment`` of each image of a batch with its example's seed (``seeds`` [N, 2]): the
  same pixels, RandAugment's ops applied per op over the batch."""
  if not settings["randaugment"]:
    return images
  layers, magnitude = settings["randaugment"]
  randaugment_seeds = tf.map_fn(lambda seed: _example_seeds(seed)[2], seeds)
  return randaugment_batch(images, randaugment_seeds, layers, magnitude)


def train_image(encoded: tf.Tensor, seed: tf.Tensor, resolution: int, settings: dict,
                dtype=tf.float32, input_range: str | None = None) -> tf.Tensor:
  """Train preprocessing of one example without batch mixing; a pure function of
  (encoded, seed): ``crop_and_flip``, ``augment``, ``normalise``. With mixing on, the
  pipeline mixes between the first and the second step, as the NFNet code does."""
  image = crop_and_flip(encoded, seed, resolution, settings)
  return normalise(augment(image, seed, settings), dtype, input_range)


# big_vision's ImageNet transfer evaluation at 384 px: resize_small(448) | central_crop(384).
VIT_RESIZE_RATIO = 448 / 384


def eval_crop_padding(resolution: int, crop: str = "nfnet") -> int:
  """Pixels the eval crop adds before centre-cropping ``resolution``.

  nfnet (the NFNet code's ``resize_crop_32``): 32 px; below 224 px scaled to keep the
  224/256 crop fraction. vit (big_vision's transfer configs): the shorter side to
  ``round(res * 448 / 384)``, i.e. 448 for 384 and 560 for 480.
  """
  if check_eval_crop(crop) == "vit":
    return int(round(resolution * VIT_RESIZE_RATIO)) - int(resolution)
  return 32 if resolution >= 224 else int(round(32 * resolution / 224))


def _nfnet_crop(image: tf.Tensor, resolution: int, padding: int) -> tf.Tensor:
  """DM resize_crop_32: the whole image to (res+pad)^2 (bicubic), centre crop res^2.

  Not clipped: the NFNet code's dataset.py resizes "without clamping overshoots" on purpose.
  """
  size = resolution + padding
  offset = (padding + 1) // 2
  resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bicubic")
  return resized[offset:offset + resolution, offset:offset + resolution]


def _vit_crop(image: tf.Tensor, resolution: int, padding: int) -> tf.Tensor:
  """big_vision resize_small(res+pad) | central_crop(res): aspect kept, area resampling,
  then back to the decoded uint8 (clipped and truncated, as big_vision's resize casts to
  the input's dtype)."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  ratio = float(resolution + padding) / tf.reduce_min(shape)
  height, width = tf.unstack(tf.cast(tf.round(shape * ratio), tf.int32))
  resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], method="area")
  resized = tf.cast(tf.cast(tf.clip_by_value(resized, 0.0, 255.0), tf.uint8), tf.float32)
  top, left = (height - resolution) // 2, (width - resolution) // 2
  return resized[top:top + resolution, left:left + resolution]


EVAL_CROPS = {"nfnet": _nfnet_crop, "vit": _vit_crop}


def check_eval_crop(crop: str) -> str:
  if crop not in EVAL_CROPS:
    raise DataError(f"eval crop {crop!r}: use one of {sorted(EVAL_CROPS)}")
  return crop


def eval_pixels(encoded: tf.Tensor, resolution: int, padding: int | None = None,
                crop: str = "nfnet") -> tf.Tensor:
  """The ``crop`` protocol's float32 [res, res, 3] pixels on the 0..255 scale (before
  normalisation; see ``eval_image``)."""
  check_eval_crop(crop)
  padding = eval_crop_padding(resolution, crop) if padding is None else int(padding)
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = EVAL_CROPS[crop](image, resolution, padding)
  return tf.ensure_shape(image, [resolution, resolution, 3])


def eval_image(encoded: tf.Tensor, resolution: int, padding: int | None = None,
               dtype=tf.float32, crop: str = "nfnet", input_range: str | None = None) -> tf.Tensor:
  """Eval preprocessing: the ``crop`` protocol, then ``normalise`` to ``input_range``.

  ``crop="nfnet"`` (the NFNet code's ``resize_crop_32``): resize the whole image, aspect
  ratio ignored, to ``(res + padding)^2``, bicubic, unclipped, and centre-crop ``res``.
  ``crop="vit"`` (big_vision ``resize_small|central_crop``): resize the shorter side to
  ``res + padding`` keeping the aspect ratio (area, back to uint8), and centre-crop ``res``.
  ``padding`` defaults to ``eval_crop_padding(resolution, crop)``.
  """
  image = eval_pixels(encoded, resolution, padding, crop)
  return normalise(image, dtype, input_range)
