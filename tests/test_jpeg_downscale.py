"""The opt-in ``jpeg_downscale`` augment setting: off (the default) is the official full-scale
decode_and_crop_jpeg + bicubic path, bit for bit; on, JPEG crops at least twice the output
are decoded at 1/2..1/8 scale in the DCT domain, close to the exact path; resume stays exact.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from reproduce import data
from reproduce.data import preprocess

HEIGHT, WIDTH = 375, 500  # ImageNet's most common shape
RES = 32
# Mean |difference| per image on 0..255, over a smooth photo-like image. The exact path
# resizes without antialiasing (it point-samples a crop up to 15x the output), the DCT decode
# averages each 8x8 block first, so they cannot agree exactly; measured: mean 3.0, worst 5.3.
MEAN_TOLERANCE, WORST_TOLERANCE = 4.0, 8.0


def _smooth_jpeg() -> tf.Tensor:
  """An upsampled noise field, as the benchmark's images (without their texture)."""
  coarse = np.random.default_rng(0).uniform(0, 255, (24, 32, 3)).astype(np.float32)
  image = tf.image.resize(coarse, (HEIGHT, WIDTH), method="bicubic")
  return tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90)


def _settings(**overrides) -> dict:
  return {**data.AUGMENT_DEFAULTS, **overrides}


def _official(encoded: tf.Tensor, seed: tf.Tensor, settings: dict) -> tf.Tensor:
  """The NFNet code's crop: the sampled box decoded with decode_and_crop_jpeg, bicubic."""
  crop_seed = tf.random.experimental.stateless_split(seed, num=3)[0]
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.image.extract_jpeg_shape(encoded), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=crop_seed, min_object_covered=settings["min_object_covered"],
      aspect_ratio_range=list(settings["aspect_ratio_range"]),
      area_range=list(settings["area_range"]), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  crop = tf.io.decode_and_crop_jpeg(encoded, tf.stack([begin[0], begin[1], size[0], size[1]]),
                                    channels=3)
  return tf.clip_by_value(tf.image.resize(tf.cast(crop, tf.float32), [RES, RES],
                                          method="bicubic"), 0.0, 255.0)


def test_off_is_the_official_decode_bit_for_bit():
  encoded = _smooth_jpeg()
  assert data.AUGMENT_DEFAULTS["jpeg_downscale"] is False
  for seed in range(4):
    seed = tf.constant([seed, 7], tf.int64)
    got = preprocess.crop_and_flip(encoded, seed, RES, _settings(flip=False))
    np.testing.assert_array_equal(got.numpy(), _official(encoded, seed, _settings()).numpy())


def test_on_is_close_to_the_exact_path_and_downscales_large_crops():
  encoded = _smooth_jpeg()
  differences, downscaled = [], 0
  for seed in range(24):
    seed = tf.constant([seed, 1], tf.int64)
    exact = preprocess.crop_and_flip(encoded, seed, RES, _settings())
    fast = preprocess.crop_and_flip(encoded, seed, RES, _settings(jpeg_downscale=True))
    difference = np.abs(exact.numpy() - fast.numpy()).mean()
    downscaled += difference > 0
    differences.append(difference)
  assert downscaled >= 20  # crops of 8-100% of 500x375 are mostly >= 64 px at 32 px out
  assert np.mean(differences) < MEAN_TOLERANCE and max(differences) < WORST_TOLERANCE


@pytest.mark.parametrize("box, scale", [((0, 0, 63, 200), 0), ((5, 9, 64, 64), 1),
                                        ((0, 0, 255, 300), 2), ((3, 1, 300, 256), 3)])
def test_scale_is_the_largest_keeping_the_crop_at_least_the_output(box, scale):
  assert int(preprocess._jpeg_scale_index(tf.constant(box), RES)) == scale


def test_other_formats_and_small_crops_take_the_exact_path(tmp_path):
  pixels = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
  for encoded in (tf.io.encode_png(pixels), tf.io.encode_jpeg(pixels)):
    for seed in range(3):
      seed = tf.constant([seed, 2], tf.int64)
      np.testing.assert_array_equal(
          preprocess.crop_and_flip(encoded, seed, RES, _settings(jpeg_downscale=True)),
          preprocess.crop_and_flip(encoded, seed, RES, _settings()))


def test_resume_with_downscale_gives_the_same_batches(tmp_path):
  for i in range(6):
    os.makedirs(tmp_path / f"c{i}")
    noise = np.random.default_rng(i).uniform(0, 255, (6, 8, 3)).astype(np.float32)
    image = tf.cast(tf.image.resize(noise, (96, 128)), tf.uint8)
    tf.io.write_file(str(tmp_path / f"c{i}" / "img.jpg"), tf.io.encode_jpeg(image))
  source = data.load_source(f"imagefolder:{tmp_path}", heldout_size=2, seed=0)
  augment = {"jpeg_downscale": True, "randaugment": "215", "mixup_alpha": 0.2,
             "cutmix_alpha": 1.0}

  def batches(start_step, count):
    dataset = data.train_dataset(source, global_batch_size=2, resolution=16, seed=5,
                                 start_step=start_step, augment=augment)
    return [images.numpy() for images, _ in dataset.take(count)]

  straight = batches(0, 3)
  for expected, resumed in zip(straight[1:], batches(1, 2)):
    np.testing.assert_array_equal(resumed, expected)
