"""Eval preprocessing of one encoded image under a crop protocol.

  nfnet  the NFNet code's ``resize_crop_32``: the whole image resized (aspect ratio
         ignored, bicubic) to ``(res + pad)^2``, then the centre ``res^2`` crop.
  vit    big_vision ``resize_small(res + pad) | central_crop(res)``: the shorter side
         resized to ``res + pad`` keeping the aspect ratio (area), then the centre crop.

``pad`` is ``data.eval_crop_padding(res)`` (32 px from 224 px up). Then ImageNet mean/std.

Merge note: this mirrors ``data.eval_image(..., crop=...)`` of the augment branch; once
that is merged, ``eval_image`` here becomes a call to it.
"""

from __future__ import annotations

import tensorflow as tf

from reproduce import data

from reproduce.evaluation import specs


def _nfnet_crop(image: tf.Tensor, resolution: int, padding: int) -> tf.Tensor:
  size = resolution + padding
  offset = (padding + 1) // 2
  resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bicubic")
  return resized[offset:offset + resolution, offset:offset + resolution]


def _vit_crop(image: tf.Tensor, resolution: int, padding: int) -> tf.Tensor:
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  ratio = float(resolution + padding) / tf.reduce_min(shape)
  height, width = tf.unstack(tf.cast(tf.round(shape * ratio), tf.int32))
  resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], method="area")
  top, left = (height - resolution) // 2, (width - resolution) // 2
  return resized[top:top + resolution, left:left + resolution]


def eval_image(encoded: tf.Tensor, resolution: int, crop: str = "nfnet") -> tf.Tensor:
  """float32 [res, res, 3], normalised, of an encoded (JPEG/PNG/...) image."""
  specs.check_crop(crop)
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  cropper = _nfnet_crop if crop == "nfnet" else _vit_crop
  image = tf.clip_by_value(cropper(image, resolution, data.eval_crop_padding(resolution)),
                           0.0, 255.0)
  image = (tf.ensure_shape(image, [resolution, resolution, 3]) - data.MEAN_RGB) / data.STDDEV_RGB
  return image
