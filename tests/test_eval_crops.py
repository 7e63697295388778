"""The two eval crops against NumPy versions of the official formulas, at two resolutions:
the NFNet code's ``resize_crop_32`` (whole image to (res+32)^2, bicubic, not clipped;
offset ((size - res) + 1) // 2) and big_vision's ``resize_small(res * 448/384) |
central_crop(res)`` (area resize back to uint8; offset (size - res) // 2)."""

import numpy as np
import pytest
import tensorflow as tf

from reproduce import data


def _image(height, width, seed=0):
  """A high-contrast random image (bicubic overshoots past 0 and 255 on it)."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 2, size=(height, width, 3)) * 255).astype(np.uint8)


def _numpy_area_resize(image, height, width):
  """Area (box) resampling, as tf.image.resize(method='area') for downscaling: each output
  pixel the mean of the source over its footprint, partial pixels weighted."""
  def weights(n_in, n_out):
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
      start, stop = o * scale, (o + 1) * scale
      for i in range(int(np.floor(start)), int(np.ceil(stop))):
        w[o, i] = min(stop, i + 1) - max(start, i)
    return w / scale
  rows, cols = weights(image.shape[0], height), weights(image.shape[1], width)
  return np.einsum("oh,hwc,pw->opc", rows, image.astype(np.float64), cols)


@pytest.mark.parametrize("resolution", [24, 48])
def test_vit_crop_is_big_vision_resize_small_central_crop(resolution):
  image = _image(75, 100)
  encoded = tf.io.encode_png(image)
  small = int(round(resolution * 448 / 384))
  assert data.eval_crop_padding(resolution, "vit") == small - resolution
  factor = small / min(image.shape[:2])
  height, width = int(round(75 * factor)), int(round(100 * factor))
  resized = np.clip(_numpy_area_resize(image, height, width), 0, 255)
  top, left = (height - resolution) // 2, (width - resolution) // 2
  want = resized[top:top + resolution, left:left + resolution]
  got = data.eval_pixels(encoded, resolution, crop="vit").numpy()
  # Back to uint8 as big_vision's resize does: the floor of the area mean (within float
  # error of an integer either way).
  assert np.all(got == np.round(got)) and got.min() >= 0 and got.max() <= 255
  assert np.all(got <= want + 1e-3) and np.all(got > want - 1 - 1e-3)
  assert np.abs(got - want).mean() > 0.2  # truncated, not rounded to the float


@pytest.mark.parametrize("resolution", [24, 224])
def test_nfnet_crop_is_resize_crop_32_without_clipping(resolution):
  image = _image(40, 60, seed=1)
  encoded = tf.io.encode_png(image)
  padding = data.eval_crop_padding(resolution)
  assert padding == (32 if resolution >= 224 else int(round(32 * resolution / 224)))
  size = resolution + padding
  resized = tf.image.resize(tf.constant(image, tf.float32), [size, size],
                            method="bicubic").numpy()  # the NFNet code's own call
  offset = ((size - resolution) + 1) // 2
  want = resized[offset:offset + resolution, offset:offset + resolution]
  got = data.eval_pixels(encoded, resolution, crop="nfnet").numpy()
  np.testing.assert_allclose(got, want, atol=1e-3)
  assert got.min() < 0 and got.max() > 255  # the overshoots are kept, as the NFNet code does
