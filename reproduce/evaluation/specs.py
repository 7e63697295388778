"""What ``evaluate`` accepts, checked without TensorFlow: dataset specs, resolutions, crops.

Dataset specs (``--datasets`` is a comma-separated list of them):

  imagenet2012        ImageNet validation (50,000 images)
  imagenet2012_real   the same images scored against their ReaL label sets
  imagenet_v2         ImageNet-V2 (tfds' default config, matched-frequency), test split
  imagenet_a          ImageNet-A, test split; 1000-way logits restricted to its 200 classes
  imagenet_r          ImageNet-R, test split; likewise restricted to its 200 classes
  imagenet_sketch     ImageNet-Sketch, test split
  digits[@SPLIT]      the embedded digits: by default its held-out set (the last 20%, the set
                      a mini run's held-out top-1 is measured on); @train: the rest
  tfds:NAME[@SPLIT]   any prepared tfds dataset (split: validation, else test, else the
                      held-out set pre-training carves from train)
  imagefolder:DIR     every image of DIR/[train/]<class folder>/<image files>
  tfrecord:GLOB, arrayrecord:GLOB, NAME
                      pre-training's dataset specs; scored on their held-out set
  SPEC@heldout, SPEC@train
                      any of these: the held-out set / train examples pre-training uses

Every spec is read through ``reproduce.data``: the ImageNet names as the TFDS split and label
feature ``IMAGENET_SETS`` names (``data.load_tfds_split``), the others through
``data.load_eval_source`` (docs/data.md, "Evaluating").
"""

from __future__ import annotations

import re

from reproduce.core.errors import UserError

# name: (tfds dataset, split, label feature, scored on the 200-class subset)
IMAGENET_SETS = {
    "imagenet2012": ("imagenet2012", "validation", "label", False),
    "imagenet2012_real": ("imagenet2012_real", "validation", "real_label", False),
    "imagenet_v2": ("imagenet_v2", "test", "label", False),
    "imagenet_a": ("imagenet_a", "test", "label", True),
    "imagenet_r": ("imagenet_r", "test", "label", True),
    "imagenet_sketch": ("imagenet_sketch", "test", "label", False),
}
SPEC_HELP = (f"use {', '.join(IMAGENET_SETS)}, digits, tfds:NAME[@SPLIT], imagefolder:DIR, "
             "tfrecord:GLOB or arrayrecord:GLOB (each [@heldout|@train])")
_KINDS = ("tfds", "imagefolder", "tfrecord", "arrayrecord")
_NAME = re.compile(r"[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?(@[A-Za-z][\w.%:\[\]-]*)?")
CROPS = ("nfnet", "vit")  # data.EVAL_CROPS, spelled out to check flags before TensorFlow


class EvaluationError(UserError, ValueError):
  """Bad evaluation input (dataset, weights, class map, flags); the message is one line."""


def check_dataset(spec: str) -> str:
  """The spec, stripped; EvaluationError for one of no known form."""
  spec = spec.strip()
  kind, _, rest = spec.partition(":")
  if spec not in IMAGENET_SETS and not (kind in _KINDS and rest) and not _NAME.fullmatch(spec):
    raise EvaluationError(f"unknown dataset {spec!r}: {SPEC_HELP}")
  return spec


def check_usage(weights, datasets, resolutions, batch_size, max_examples):
  """Checks that need no TensorFlow; returns (dataset specs, resolutions)."""
  if not weights:
    raise EvaluationError("--weights is required (a run or converted-weights directory)")
  names = [check_dataset(d) for d in datasets or [] if d.strip()]
  if not names:
    raise EvaluationError(f"--datasets is empty: {SPEC_HELP}")
  if batch_size < 1:
    raise EvaluationError(f"--batch_size={batch_size} must be >= 1")
  if max_examples is not None and max_examples < 1:
    raise EvaluationError(f"--max_examples={max_examples} must be >= 1")
  return names, parse_resolutions(resolutions)


def parse_resolutions(values) -> list[int]:
  """``["256", "288"]`` -> [256, 288]; each a positive integer."""
  resolutions = []
  for value in values or []:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
      raise EvaluationError(f"--resolution={value!r}: use positive integers, e.g. 256,288")
    resolutions.append(int(text))
  return resolutions


def check_crop(crop: str) -> str:
  if crop not in CROPS:
    raise EvaluationError(f"eval crop {crop!r}: use one of {list(CROPS)}")
  return crop
