"""Images/s of the full training preprocessing on real JPEGs, against the model's appetite.

Writes an ImageFolder of JPEGs (smooth random images at ImageNet's typical 500x375, encoded
with TensorFlow at quality 90) in a temporary directory, then reads it through
``reproduce.data.train_dataset`` with the ImageNet recipe's augmentation for the model (JPEG
decode, Inception random-resized crop, flip, RandAugment of the model's row, MixUp 0.2 /
CutMix 1.0) and times batches after a warm-up. Then times the engine's train step of the
same model (``reproduce.train.throughput.measure``, with the optimizer and XLA the kit trains
it with: ``peers.kit_config``) and prints pipeline/consumption.

  PYTHONPATH=$PWD python benchmarks/input_pipeline.py --models=nfnet_f0,vit_b16
  PYTHONPATH=$PWD python benchmarks/input_pipeline.py --models=nfnet_mini_f0 --dry

The two are timed one after the other, each with both cores: in training they share them
(the pipeline's threads run beside the step), so the ratio is what the input side can give,
and it needs to be >= 2 for the pipeline to stay out of the way.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

from reproduce.core import cli
from reproduce.core import cpu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # pylint: disable=g-import-not-at-top,wrong-import-position

_MODELS = flags.DEFINE_list("models", ["nfnet_f0", "vit_b16"], "models (recipe and resolution)")
_RESOLUTION = flags.DEFINE_integer("resolution", 128, "full models' resolution (minis: their own)")
_BATCH = flags.DEFINE_integer("batch", 16, "batch size")
_IMAGES = flags.DEFINE_integer("images", 400, "JPEGs written (10 classes)")
_BATCHES = flags.DEFINE_integer("batches", 40, "timed batches")
_STEPS = flags.DEFINE_integer("steps", 4, "timed train steps (consumption)")
_DRY = flags.DEFINE_bool("dry", False, "a few images and batches: checks it runs")
_CLASSES = 10
_JPEG_SIZE = flags.DEFINE_list("jpeg_size", ["375", "500"], "height,width of the JPEGs written "
                                "(default: ImageNet's most common shape; 64,85: a copy pre-resized to "
                                "a 64 px shorter side, for the 32 px minis)")


def write_imagefolder(root: str, count: int, size: tuple[int, int]) -> None:
  """``count`` smooth random JPEGs of ``size`` (height, width) in ``root/train/class_k/``
  (an upsampled noise field with texture)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = tf.random.Generator.from_seed(0)
  for i in range(count):
    directory = os.path.join(root, "train", f"class_{i % _CLASSES}")
    os.makedirs(directory, exist_ok=True)
    coarse = rng.uniform((24, 32, 3), 0, 255)
    image = tf.image.resize(coarse, size, method="bicubic")
    image += rng.normal(tuple(size) + (3,), stddev=8.0)  # texture: JPEG of real photos is not flat
    encoded = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90)
    tf.io.write_file(os.path.join(directory, f"{i:06d}.jpg"), encoded)


def _recipe(model: str) -> dict:
  """The ImageNet recipe's augmentation for ``model`` (NFNet's RandAugment row; ViT: 2x15)."""
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce.configs import pretrain_imagenet  # pylint: disable=g-import-not-at-top
  row = model_defs.get_spec(model).config
  layers, magnitude = row.get("randaugment_layers", 2), row.get("randaugment_magnitude", 15)
  return dict(randaugment=pretrain_imagenet.randaugment_spec(layers, magnitude),
              mixup_alpha=0.2, cutmix_alpha=1.0)


def pipeline_rate(root: str, model: str, resolution: int, batch: int,
                  batches: int) -> tuple[float, float]:
  """(images/s of ``train_dataset``, median over ``batches`` after 5 warm-up batches; this
  process's CPU seconds per image over them, which other jobs on the cores hardly change)."""
  from reproduce import data  # pylint: disable=g-import-not-at-top
  source = data.load_source(f"imagefolder:{root}", heldout_size=_CLASSES)
  dataset = data.train_dataset(source, global_batch_size=batch, resolution=resolution, seed=0,
                               augment=_recipe(model))
  iterator = iter(dataset)
  for _ in range(5):
    next(iterator)
  seconds = []
  cpu_start = time.process_time()
  for _ in range(batches):
    start = time.perf_counter()
    next(iterator)
    seconds.append(time.perf_counter() - start)
  cpu_per_image = (time.process_time() - cpu_start) / (batches * batch)
  return batch / statistics.median(seconds), cpu_per_image


def main(argv):
  cli.refuse_stray_arguments(argv)
  cli.import_tensorflow()
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce.train import throughput  # pylint: disable=g-import-not-at-top
  unknown = [name for name in _MODELS.value if name not in model_defs.names()]
  if unknown:
    cli.fail(f"--models: unknown {', '.join(unknown)} (python -m model_defs.summary lists "
             "the models)")
  images, batches, steps = _IMAGES.value, _BATCHES.value, _STEPS.value
  try:
    size = tuple(int(v) for v in _JPEG_SIZE.value)
  except ValueError:
    size = ()
  if len(size) != 2 or min(size) < 8:
    cli.fail(f"--jpeg_size: expected HEIGHT,WIDTH of at least 8 px, got {_JPEG_SIZE.value}")
  if _DRY.value:
    images, batches, steps = 40, 2, 1
  with tempfile.TemporaryDirectory() as root:
    write_imagefolder(root, images, size)
    print(f"cpu: {cpu.describe()}", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; {images} JPEGs "
          f"{size[1]}x{size[0]}; batch {_BATCH.value}", flush=True)
    for model in _MODELS.value:
      spec = model_defs.get_spec(model)
      resolution = spec.train_resolution if spec.mini else _RESOLUTION.value
      produced, cpu_per_image = pipeline_rate(root, model, resolution, _BATCH.value, batches)
      consumed = throughput.measure(model, _BATCH.value, resolution, steps=steps,
                                    warmup_steps=1, config=peers.kit_config(model)).median
      capacity = os.cpu_count() / cpu_per_image  # what idle cores would give
      print(f"{model:>14} {resolution:>4}px  augment {_recipe(model)}  pipeline "
            f"{produced:8.1f} img/s ({cpu_per_image * 1e6:5.0f} us CPU/img: {capacity:6.0f} "
            f"img/s on idle cores)  train step {consumed:7.2f} img/s  pipeline/consumption "
            f"{produced / consumed:6.1f}x (idle cores {capacity / consumed:5.1f}x)", flush=True)
  print(f"load {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
