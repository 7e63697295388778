"""Released checkpoints -> this kit's weights: ``python -m reproduce.convert``.

  python -m reproduce.convert --source=deepmind --input=F0_haiku.npz --model=nfnet_f0 \
      --output=converted/nfnet_f0 [--check] [--check_image=cat.jpg]
  python -m reproduce.convert --source=timm --input=pytorch_model.bin --model=vit_b16 ...
  python -m reproduce.convert --source=big_vision --input=ViT-B_16.npz --model=vit_b16 ...

Sources: 'deepmind' (the released NFNet F0-F6 Haiku pickles, read without running their
code), 'timm' (NFNet, ViT and hybrid ViT state dicts, .pth/.bin) and 'big_vision' (ViT
.npz). Writes OUTPUT/model.json and OUTPUT/model.weights.h5 (``model_defs.weights_file``),
which ``reproduce.evaluate`` and ``reproduce.finetune`` read with --weights=OUTPUT. ``--check``
runs the converted model on a test image and prints its top-5 classes. Bad input, or a
checkpoint that does not fit the model (the first missing, unexpected or mis-shaped
parameter is named), is one line on stderr and exit 2.
"""

from __future__ import annotations

import importlib.util
import json
import os

from absl import app
from absl import flags
import numpy as np

from reproduce.core import cli

SOURCES = ("deepmind", "timm", "big_vision")

_SOURCE = flags.DEFINE_enum("source", None, list(SOURCES), "Checkpoint format.")
_INPUT = flags.DEFINE_string("input", None, "Checkpoint file.")
_MODEL = flags.DEFINE_string("model", None, "model_defs name, e.g. nfnet_f0 or vit_b16.")
_OUTPUT = flags.DEFINE_string("output", None, "Directory to write (replaced if it exists).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None,
                                    "Classifier outputs (default: read from the checkpoint).")
_RESOLUTION = flags.DEFINE_integer(
    "resolution", None, "Resolution the weights are for (ViTs: the position-embedding grid, "
    "resampled if it differs from the checkpoint's; default: the checkpoint's; NFNets: the "
    "variant's test resolution).")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "Model build option KEY=VALUE (VALUE parsed as JSON, else a string), "
    "e.g. timm_compat=true; repeatable.")
_INPUT_RANGE = flags.DEFINE_enum(
    "input_range", None, ["imagenet", "minus_one_one"], "Pixel range the weights expect "
    "(default: the source's: [-1, 1] for big_vision and timm ViTs, ImageNet mean/std for "
    "NFNets); written to model.json, read by evaluate and finetune.")
_CHECK = flags.DEFINE_bool("check", False, "Run the converted model on a test image and print "
                           "its top-5 classes.")
_CHECK_IMAGE = flags.DEFINE_string("check_image", None, "Image for --check (default: "
                                   "scikit-learn's sample photo china.jpg).")


def parse_overrides(items: list[str]) -> dict:
  """``KEY=VALUE`` strings as a dict (VALUE as JSON when it parses, else the string)."""
  overrides = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"--override={item}: expected KEY=VALUE")
    try:
      overrides[key.strip()] = json.loads(value)
    except json.JSONDecodeError:
      overrides[key.strip()] = value
  return overrides


def _check_flags() -> dict:
  """Flag problems found before TensorFlow starts; returns the parsed overrides."""
  for flag in (_SOURCE, _INPUT, _MODEL, _OUTPUT):
    if not flag.value:
      cli.fail(f"--{flag.name} is required")
  if not os.path.isfile(_INPUT.value):
    cli.fail(f"--input={_INPUT.value}: no such file")
  for flag in (_NUM_CLASSES, _RESOLUTION):
    if flag.value is not None and flag.value < 1:
      cli.fail(f"--{flag.name}={flag.value}: expected a positive integer")
  if _CHECK_IMAGE.value and not os.path.isfile(_CHECK_IMAGE.value):
    cli.fail(f"--check_image={_CHECK_IMAGE.value}: no such file")
  with cli.errors_as_one_line(also=(ValueError,)):
    return parse_overrides(_OVERRIDE.value)


def main(argv):
  cli.refuse_stray_arguments(argv)
  overrides = _check_flags()
  tf = cli.start_tensorflow()
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  from model_defs import converters
  from model_defs import weights_file
  try:
    # A checkpoint that does not fit, an unknown model, an unreadable file, no torch: one line.
    with cli.errors_as_one_line(also=(ValueError, OSError, ImportError)):
      model, info = converters.sources.convert_checkpoint(
          _SOURCE.value, _INPUT.value, _MODEL.value, num_classes=_NUM_CLASSES.value,
          overrides=overrides, resolution=_RESOLUTION.value, input_range=_INPUT_RANGE.value)
      top5 = None
      if _CHECK.value:
        top5 = describe_top5(model, read_check_image(_CHECK_IMAGE.value), info)
      weights_file.save(model, _OUTPUT.value, **info)
  except tf.errors.InvalidArgumentError:
    cli.fail(f"--check_image={_CHECK_IMAGE.value}: not an image TensorFlow decodes "
             f"(JPEG, PNG, GIF, BMP, WebP)")
  print(f"wrote {_OUTPUT.value}: {info['name']}, {info['num_classes']} classes, "
        f"{info['resolution']} px, from {info['source']}, input range {info['input_range']}"
        + (f", overrides {info['overrides']}" if info["overrides"] else ""))
  if _SOURCE.value == "deepmind":
    print(converters.deepmind.release_note(_INPUT.value))
  if top5:
    print(top5)


def read_check_image(path: str | None) -> bytes:
  """The encoded test image: ``path``, or scikit-learn's sample photo as a JPEG."""
  tf = cli.import_tensorflow()
  if path:
    return tf.io.read_file(path).numpy()
  from sklearn.datasets import load_sample_image  # after flags: see core/cli.py
  return tf.io.encode_jpeg(load_sample_image("china.jpg"), quality=95).numpy()


def check_logits(model, encoded: bytes, info: dict):
  """Logits of one image as ``reproduce.evaluate`` feeds these weights (``info``:
  ``converters.sources.convert_checkpoint``'s): their family's crop
  (``weights_file.source_eval_crop``) and ``input_range``, at their resolution, through
  the same ``data.eval_image``."""
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  import model_defs
  from model_defs import weights_file
  from reproduce import data
  crop = weights_file.source_eval_crop(model_defs.get_spec(info["name"]).family)
  image = np.asarray(data.eval_image(encoded, info["resolution"], crop=crop,
                                     input_range=info["input_range"]))
  return np.asarray(model(image[None], training=False))[0]


def imagenet_class_names() -> list[str] | None:
  """The 1000 ImageNet-1k class names in label order, from timm's data files when timm is
  installed (read as text; timm is not imported); None otherwise."""
  spec = importlib.util.find_spec("timm")
  if spec is None or not spec.submodule_search_locations:
    return None
  info = os.path.join(list(spec.submodule_search_locations)[0], "data", "_info")
  try:
    with open(os.path.join(info, "imagenet_synsets.txt"), encoding="utf-8") as f:
      synsets = f.read().split()
    with open(os.path.join(info, "imagenet_synset_to_lemma.txt"), encoding="utf-8") as f:
      lemmas = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
  except OSError:
    return None
  return [f"{s} {lemmas.get(s, '')}".strip() for s in synsets] if len(synsets) == 1000 else None


def describe_top5(model, encoded: bytes, info: dict) -> str:
  """The top-5 classes of the check image with their probabilities, one per line."""
  resolution = info["resolution"]
  logits = check_logits(model, encoded, info)
  probs = np.exp(logits - logits.max())
  probs /= probs.sum()
  names = imagenet_class_names() if len(logits) == 1000 else None
  lines = [f"top-5 of the check image at {resolution} px:"]
  for index in np.argsort(-logits)[:5]:
    name = f"  {names[index]}" if names else ""
    lines.append(f"  {int(index):5d}  p={probs[index]:.3f}{name}")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
