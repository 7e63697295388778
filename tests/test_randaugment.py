"""RandAugment against the NFNet code's definition (DeepMind ``nfnets/autoaugment.py``):
each op against a NumPy version of the official formula at F3+'s level 15 and at level 7,
the choice of ops per layer, and its place in the train pipeline (after MixUp/CutMix).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from reproduce import data
from reproduce.data import order, preprocess
from reproduce.data import randaugment as ra

LEVELS = (15, 7)  # F3+'s level; a mid level (at F0's 5 the enhance factor is exactly 1)
HEIGHT, WIDTH = 160, 208  # larger than level 15's translate (150 px) and cutout (120 px)
FILL = 128


def _test_image() -> np.ndarray:
  """A fixed non-square uint8 image in 20..235 (a colour gradient plus noise), no grey-128
  pixel (so cutout's box is exactly the changed pixels)."""
  rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
  noise = np.random.default_rng(0).integers(-20, 21, (HEIGHT, WIDTH, 3))
  base = np.stack([25 + rows, 30 + cols, 130 + (rows - cols) // 2], axis=-1)
  image = np.clip(base + noise, 20, 235).astype(np.uint8)
  image[np.all(image == FILL, axis=-1), 0] = FILL + 1
  return image


# --- NumPy versions of the official ops, written from autoaugment.py's formulas -----------


def _official_args(level):
  """level_to_arg of the official code (RandAugment: translate_const 100, cutout_const 40)."""
  fraction = level / 10
  return dict(factor=fraction * 1.8 + 0.1, degrees=fraction * 30, shear=fraction * 0.3,
              pixels=fraction * 100, bits=int(fraction * 4), threshold=int(fraction * 256),
              addition=int(fraction * 110), pad=int(fraction * 40))


def _truncate(values):
  """float -> uint8 as tf.cast after clipping: truncation."""
  return np.clip(values, 0, 255).astype(np.uint8)


def _blend(degenerate, image, factor):
  low = degenerate.astype(np.float32)
  return _truncate(low + np.float32(factor) * (image.astype(np.float32) - low))


def _sample(image, x_in, y_in):
  """Nearest-neighbour (C++ round: half away from zero); FILL outside the image."""
  x = (np.sign(x_in) * np.floor(np.abs(x_in) + 0.5)).astype(int)
  y = (np.sign(y_in) * np.floor(np.abs(y_in) + 0.5)).astype(int)
  inside = (x >= 0) & (x < WIDTH) & (y >= 0) & (y < HEIGHT)
  values = image[np.clip(y, 0, HEIGHT - 1), np.clip(x, 0, WIDTH - 1)]
  return np.where(inside[..., None], values, np.uint8(FILL))


def _warp(image, a, b):
  """Output (x, y) takes input (a0 x + a1 y + a2, b0 x + b1 y + b2), in float32."""
  y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
  a, b = np.float32(a), np.float32(b)
  return _sample(image, a[0] * x + a[1] * y + a[2], b[0] * x + b[1] * y + b[2])


def _rotate(image, degrees):
  """tfa.image.rotate: about the centre, through ((w-1)/2, (h-1)/2)."""
  radians = np.float32(degrees) * np.float32(math.pi / 180)
  cos, sin = np.cos(radians), np.sin(radians)
  w, h = np.float32(WIDTH - 1), np.float32(HEIGHT - 1)
  x_offset = (w - (cos * w - sin * h)) / 2
  y_offset = (h - (sin * w + cos * h)) / 2
  return _warp(image, [cos, -sin, x_offset], [sin, cos, y_offset])


def _equalize(image):
  """PIL's equalize per channel: a LUT from the cumulative histogram."""
  out = image.copy()
  for c in range(3):
    values = image[..., c].astype(int)
    histogram = np.bincount(values.ravel(), minlength=256)
    nonzero = histogram[histogram > 0]
    step = (nonzero.sum() - nonzero[-1]) // 255
    if step:
      lut = np.concatenate([[0], (np.cumsum(histogram) + step // 2) // step])[:256]
      out[..., c] = np.clip(lut, 0, 255)[values]
  return out


def _autocontrast(image):
  out = image.copy()
  for c in range(3):
    low, high = np.float32(image[..., c].min()), np.float32(image[..., c].max())
    scale = np.float32(255) / (high - low)
    out[..., c] = _truncate(image[..., c].astype(np.float32) * scale + (-low * scale))
  return out


def _grey(image):
  """tf.image.rgb_to_grayscale of uint8: x/255, ITU-R 601 weights, *255.5, truncated."""
  weights = np.array([0.2989, 0.5870, 0.1140], np.float32)
  grey = (image.astype(np.float32) * np.float32(1 / 255)) @ weights
  return np.repeat((grey * np.float32(255.5)).astype(np.uint8)[..., None], 3, -1)


def _sharpness_degenerates(image):
  """PIL's SMOOTH (1 1 1 / 1 5 1 / 1 1 1, over 13) inside, truncated; the border as it was.

  Exact in integers: (sum of the 3x3 + 4 centre) // 13. Where that division is exact, the
  float32 convolution may land just below the integer and truncate one lower, so the second
  degenerate is the first minus one there (and equal elsewhere)."""
  values = image.astype(int)
  total = sum(values[i:HEIGHT - 2 + i, j:WIDTH - 2 + j] for i in range(3) for j in range(3))
  total = total + 4 * values[1:-1, 1:-1]
  exact, lower = image.copy(), image.copy()
  exact[1:-1, 1:-1] = total // 13
  lower[1:-1, 1:-1] = total // 13 - (total % 13 == 0)
  return exact, lower


def _cutout(image, centre_y, centre_x, pad):
  out = image.copy()
  out[max(0, centre_y - pad):centre_y + pad, max(0, centre_x - pad):centre_x + pad] = FILL
  return out


def _official_op(image, name, level, sign):
  """The official op on a uint8 image; ``sign`` is the random sign of rotate/shear/translate."""
  args = _official_args(level)
  shear, pixels = sign * args["shear"], sign * args["pixels"]
  shift = 8 - args["bits"]
  # Python ints meet uint8 pixels: TensorFlow converts them modulo 256 (384 -> 128).
  threshold = args["threshold"] % 256
  return {
      "autocontrast": lambda: _autocontrast(image),
      "equalize": lambda: _equalize(image),
      "invert": lambda: 255 - image,
      "rotate": lambda: _rotate(image, sign * args["degrees"]),
      "posterize": lambda: (image >> shift) << shift,
      "solarize": lambda: np.where(image < threshold, image, 255 - image),
      "color": lambda: _blend(_grey(image), image, args["factor"]),
      # The official "mean" is the grey histogram's count / 256, i.e. H * W / 256.
      "contrast": lambda: _blend(np.full_like(image, min(HEIGHT * WIDTH // 256, 255)), image,
                                 args["factor"]),
      "brightness": lambda: _blend(np.zeros_like(image), image, args["factor"]),
      "shear_x": lambda: _warp(image, [1, shear, 0], [0, 1, 0]),
      "shear_y": lambda: _warp(image, [1, 0, 0], [shear, 1, 0]),
      "translate_x": lambda: _warp(image, [1, 0, pixels], [0, 1, 0]),
      "translate_y": lambda: _warp(image, [1, 0, 0], [0, 1, pixels]),
      "solarize_add": lambda: np.where(
          image < 128, np.minimum(image.astype(int) + args["addition"], 255), image),
  }[name]().astype(np.uint8)


def _cutout_box(image, out):
  """(top, bottom, left, right) of the changed pixels, checked to be one box of FILL."""
  changed = np.any(out != image, axis=-1)
  rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
  assert rows.size and cols.size, "cutout changed nothing"
  top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
  assert changed[top:bottom, left:right].all() and (out[changed] == FILL).all()
  return top, bottom, left, right


def _check_cutout(image, out, pad):
  """The box is (2 pad)^2 around some centre, clipped by the border; the rest untouched."""
  top, bottom, left, right = _cutout_box(image, out)
  centre_y = top + pad if top > 0 else bottom - pad
  centre_x = left + pad if left > 0 else right - pad
  np.testing.assert_array_equal(out, _cutout(image, centre_y, centre_x, pad))
  return centre_y, centre_x


_SIGNED_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_OP_CASES = [(name, level, sign) for name in ra.OP_NAMES for level in LEVELS
             for sign in ((1.0, -1.0) if name in _SIGNED_OPS else (1.0,))]


@pytest.mark.parametrize("name, level, sign", _OP_CASES)
def test_op_matches_the_official_formula(name, level, sign):
  image = _test_image()
  out = ra.apply_op(image, name, level, sign, seed=[level, 3]).numpy()
  assert out.dtype == np.uint8 and out.shape == image.shape
  assert np.any(out != image), f"{name} at level {level} left the test image unchanged"
  if name == "cutout":
    _check_cutout(image, out, _official_args(level)["pad"])
    return
  if name == "sharpness":
    exact, lower = (_blend(degenerate, image, _official_args(level)["factor"])
                    for degenerate in _sharpness_degenerates(image))
    np.testing.assert_array_equal(np.where(out == lower, exact, out), exact)
    assert np.mean(out != exact) < 0.01
    return
  expected = _official_op(image, name, level, sign)
  np.testing.assert_array_equal(out, expected, err_msg=f"{name} at level {level}")


def test_level_15_posterize_solarize_and_enhance_as_the_official_code():
  """F3+'s level: posterize keeps 6 bits (int(1.5 * 4)), not Keras' 2; solarize's threshold
  384 is 128 for uint8 pixels, so it inverts exactly the pixels >= 128 (not every pixel, and
  not none); at level 10 (threshold 256 -> 0) it inverts every pixel."""
  image = _test_image()
  np.testing.assert_array_equal(ra.apply_op(image, "posterize", 15).numpy(), image & 0b11111100)
  bright = image >= 128
  assert 0.2 < bright.mean() < 0.8
  solarized = ra.apply_op(image, "solarize", 15).numpy()
  np.testing.assert_array_equal(solarized[bright], 255 - image[bright])
  np.testing.assert_array_equal(solarized[~bright], image[~bright])
  np.testing.assert_array_equal(ra.apply_op(image, "solarize", 10).numpy(), 255 - image)
  args = ra.level_args(15)
  assert (args.posterize_bits, args.solarize_uint8_threshold) == (6, 128)
  assert (args.translate_pixels, args.cutout_pad) == (150.0, 60)
  assert args.enhance_factor == pytest.approx(2.8) and ra.level_args(5).enhance_factor == 1.0
  for name in ("color", "contrast", "brightness", "sharpness"):  # factor 1.0 at level 5
    np.testing.assert_array_equal(ra.apply_op(image, name, 5).numpy(), image)


def test_each_layer_applies_one_uniformly_chosen_op():
  """One layer = one of the 16 ops at the level, always applied (the official code draws a
  probability per op but never uses it); the seed picks the op, sign and cutout centre."""
  image = _test_image()
  level = 7
  candidates = {(name, sign): ra.apply_op(image, name, level, sign).numpy()
                for name in ra.OP_NAMES if name != "cutout" for sign in (1.0, -1.0)}
  chosen, centres = [], set()
  for seed in range(64):
    out = ra.randaugment(tf.constant(image, tf.float32), tf.constant([seed, 9]), 1, level)
    out = out.numpy().astype(np.uint8)
    matches = [name for (name, _), candidate in candidates.items()
               if np.array_equal(out, candidate)]
    if not matches:
      centres.add(_check_cutout(image, out, _official_args(level)["pad"]))
      matches = ["cutout"]
    # The pixels are those of the op the seed drew (some ops coincide at this level).
    drawn = ra._layer_draws(tf.constant([seed, 9]), 1, HEIGHT, WIDTH)[0][0]
    assert ra.OP_NAMES[int(drawn)] in matches, (seed, ra.OP_NAMES[int(drawn)], matches)
    chosen.append(matches[0])
  assert len(set(chosen)) >= 14, sorted(set(chosen))
  # Every op is drawn, the last included: 200 layers' draws cover all 16 indices.
  ops, _, _ = ra._layer_draws(tf.constant([3, 9]), 200, HEIGHT, WIDTH)
  assert sorted(set(ops.numpy().tolist())) == list(range(len(ra.OP_NAMES))) == list(range(16))
  assert len(centres) == chosen.count("cutout")
  again = ra.randaugment(tf.constant(image), tf.constant([5, 9]), 4, 15)
  np.testing.assert_array_equal(again, ra.randaugment(tf.constant(image), tf.constant([5, 9]),
                                                      4, 15))


def test_a_batch_gets_each_images_own_randaugment():
  """The pipeline's batched form (ops applied per op over the batch) gives every image the
  pixels of its own ``randaugment``, whatever ops its neighbours drew."""
  rng = np.random.default_rng(3)
  images = np.stack([_test_image()[:48, :40]] * 6 + [
      rng.integers(0, 256, (48, 40, 3)).astype(np.uint8) for _ in range(10)])
  seeds = rng.integers(0, 2**31, (16, 2))
  batch = ra.randaugment_batch(tf.constant(images), tf.constant(seeds), 3, 15)
  for image, seed, augmented in zip(images, seeds, batch.numpy()):
    np.testing.assert_array_equal(augmented, ra.randaugment(tf.constant(image),
                                                            tf.constant(seed), 3, 15))


# --- its place in the train pipeline ------------------------------------------------------


@pytest.fixture(scope="module")
def folder_source(tmp_path_factory):
  """8 distinct random 20x24 PNGs, each its own class."""
  root = tmp_path_factory.mktemp("folder")
  for i in range(8):
    os.makedirs(root / f"c{i}")
    pixels = np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    tf.io.write_file(str(root / f"c{i}" / "img.png"), tf.io.encode_png(pixels))
  return data.load_source(f"imagefolder:{root}", heldout_size=2, seed=0)


def test_randaugment_runs_after_mixup_and_cutmix(folder_source):
  """Batch 0 rebuilt by hand: crop/flip each example, MixUp the first half and CutMix the
  second, then RandAugment each mixed image with its example's seed, then normalise (the
  NFNet code, augment_before_mix=False). Augmenting before mixing gives other pixels."""
  source, seed, batch, resolution = folder_source, 3, 4, 16
  augment = {"randaugment": "215", "mixup_alpha": 0.2, "cutmix_alpha": 1.0}
  images, targets = next(iter(data.train_dataset(
      source, global_batch_size=batch, resolution=resolution, seed=seed, augment=augment)))
  settings = preprocess.resolve_augment(source, augment)
  indices = data.example_order(source, seed, epoch=0)[:batch]
  seeds = [order.fold_in(order.fold_in(order.base_seed(seed, order.AUGMENT_TAG), 0), index)
           for index in indices]
  examples = [source.read(tf.constant(source.train_records[index])) for index in indices]
  cropped = tf.stack([preprocess.crop_and_flip(encoded, example_seed, resolution, settings)
                      for (encoded, _), example_seed in zip(examples, seeds)])
  labels = tf.stack([target for _, target in examples])
  mix_seed = order.fold_in(order.base_seed(seed, order.MIX_TAG), 0)

  def mix(batch_images):
    return data.mix_batch(batch_images, labels, mix_seed, 0.2, 1.0)

  def augment_each(batch_images):
    return tf.stack([preprocess.augment(image, example_seed, settings)
                     for image, example_seed in zip(batch_images, seeds)])

  mixed, mixed_labels = mix(cropped)
  expected = preprocess.normalise(augment_each(mixed))
  np.testing.assert_allclose(images.numpy(), expected.numpy(), atol=1e-5)
  np.testing.assert_allclose(targets.numpy(), mixed_labels.numpy(), atol=1e-6)
  augmented_first = preprocess.normalise(mix(augment_each(cropped))[0])
  assert np.abs(augmented_first.numpy() - images.numpy()).max() > 0.5
