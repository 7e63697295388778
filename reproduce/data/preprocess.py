"""Per-example preprocessing: decode + crop, bicubic resize, augmentation, normalisation.

``train_image`` is a pure function of (encoded image, seed): all its randomness comes from
``tf.random.stateless_*`` ops keyed by the seed. That is what makes resume exact: the
pipeline re-derives each example's seed from (seed, epoch, index) and gets the same pixels.
Keras' preprocessing layers (``RandomCrop``, ``RandomFlip``, ``RandAugment``) draw from a
stateful generator instead, so they are not used here.
"""

from __future__ import annotations

import tensorflow as tf

from reproduce.data.datasource import AUGMENT_DEFAULTS, DataError, DataSource
from reproduce.data.randaugment import randaugment

# NFNet normalisation (ImageNet mean/std on the 0..255 scale).
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


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


def _normalise(image: tf.Tensor, dtype) -> tf.Tensor:
  image = (tf.cast(image, tf.float32) - MEAN_RGB) / STDDEV_RGB
  return tf.cast(image, dtype)


def _resize(image: tf.Tensor, resolution: int) -> tf.Tensor:
  image = tf.image.resize(tf.cast(image, tf.float32), [resolution, resolution], method="bicubic")
  return tf.clip_by_value(image, 0.0, 255.0)


def train_image(encoded: tf.Tensor, seed: tf.Tensor, resolution: int, settings: dict,
                dtype=tf.float32) -> tf.Tensor:
  """Train preprocessing of one encoded image; a pure function of (encoded, seed).

  Inception crop (random area/aspect box via stateless_sample_distorted_bounding_box, decoded
  with decode_and_crop_jpeg), bicubic resize, optional flip and RandAugment, then ImageNet
  mean/std normalisation.
  """
  crop_seed, flip_seed, randaugment_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, num=3))

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

  image = _resize(_decode_and_crop(encoded, crop_box), resolution)
  if settings["flip"]:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  if settings["randaugment"]:
    layers, magnitude = settings["randaugment"]
    image = randaugment(tf.round(image), randaugment_seed, layers, magnitude)
  return _normalise(image, dtype)


def eval_crop_padding(resolution: int) -> int:
  """NFNet eval padding: 32 px; below 224 px scaled to keep the 224/256 crop fraction."""
  return 32 if resolution >= 224 else int(round(32 * resolution / 224))


def eval_image(encoded: tf.Tensor, resolution: int, padding: int | None = None,
               dtype=tf.float32) -> tf.Tensor:
  """NFNet eval preprocessing: centre crop res/(res+padding) of the shorter side, bicubic resize.

  Same geometry as resizing the shorter side to ``res + padding`` and centre-cropping ``res``
  (the official NFNet code crops first, which decodes less of each JPEG).
  """
  padding = eval_crop_padding(resolution) if padding is None else int(padding)
  fraction = resolution / (resolution + padding)

  def centre_box(shape):
    side = tf.cast(fraction * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])

  return _normalise(_resize(_decode_and_crop(encoded, centre_box), resolution), dtype)
