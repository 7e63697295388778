"""What ``evaluate`` accepts, checked without TensorFlow: dataset specs, resolutions, crops.

Dataset specs (``--datasets`` is a comma-separated list of them):

  imagenet2012        ImageNet validation (50,000 images)
  imagenet2012_real   the same images scored against their ReaL label sets
  imagenet_v2         ImageNet-V2 (tfds' default config, matched-frequency), test split
  imagenet_a          ImageNet-A, test split; 1000-way logits restricted to its 200 classes
  imagenet_r          ImageNet-R, test split; likewise restricted to its 200 classes
  imagenet_sketch     ImageNet-Sketch, test split
  tfds:NAME[@SPLIT]   any prepared tfds dataset (split: validation, else test)
  imagefolder:DIR     DIR/<class folder>/<image files>
"""

from __future__ import annotations

# name: (tfds dataset, split, label feature, scored on the 200-class subset)
IMAGENET_SETS = {
    "imagenet2012": ("imagenet2012", "validation", "label", False),
    "imagenet2012_real": ("imagenet2012_real", "validation", "real_label", False),
    "imagenet_v2": ("imagenet_v2", "test", "label", False),
    "imagenet_a": ("imagenet_a", "test", "label", True),
    "imagenet_r": ("imagenet_r", "test", "label", True),
    "imagenet_sketch": ("imagenet_sketch", "test", "label", False),
}
SPEC_HELP = f"use {', '.join(IMAGENET_SETS)}, tfds:NAME[@SPLIT] or imagefolder:DIR"
CROPS = ("nfnet", "vit")  # data.EVAL_CROPS, spelled out to check flags before TensorFlow


class EvaluationError(ValueError):
  """Bad evaluation input (dataset, weights, class map, flags); the message is one line."""


def check_dataset(spec: str) -> str:
  """The spec, stripped; EvaluationError for one of no known form."""
  spec = spec.strip()
  kind, _, rest = spec.partition(":")
  if spec not in IMAGENET_SETS and not (kind in ("tfds", "imagefolder") and rest):
    raise EvaluationError(f"unknown dataset {spec!r}: {SPEC_HELP}")
  return spec


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
