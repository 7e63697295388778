"""The converted-weights directory that ``reproduce.convert`` writes and others read.

A directory holds two files:

  model.json          {"format": FORMAT, "model": <model_defs name>, "num_classes": int,
                       "model_overrides": {...}, "resolution": int, "source": str,
                       "ema": bool, "input_range": str}
  model.weights.h5    ``model.save_weights`` of ``model_defs.build(model, num_classes,
                       **model_overrides)``; ViTs and hybrids (``has_position_grid``) are built with image_size=resolution
                       (the grid of their position embedding).

``input_range`` names the pixel range the weights expect (``reproduce.data.INPUT_RANGES``):
"imagenet" (ImageNet mean/std: NFNets from DeepMind or timm) or "minus_one_one" (big_vision
ViTs and timm's AugReg ViTs). A model.json written before the field existed gets the range
of its ``source`` (``source_input_range``). The eval crop follows the family
(``source_eval_crop``).

``save`` writes both into a temporary sibling directory and renames it into place, so a
reader never sees half a directory. (This module does the atomic write itself with
``os``: model_defs must not import ``reproduce``. Local paths only.)

  from model_defs import weights_file
  model, info = weights_file.load("converted/nfnet_f0")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Mapping

import model_defs
from model_defs import registry

FORMAT = "nfnet-vit-scaling/weights/v1"
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "model.weights.h5"
REQUIRED_FIELDS = ("format", "model", "num_classes", "model_overrides", "resolution", "source")
INPUT_RANGES = ("imagenet", "minus_one_one")


def source_input_range(source: str, family: str) -> str:
  """The input range of weights from ``source`` ('deepmind', 'timm', 'big_vision', or a
  model.json ``source`` such as 'timm:pytorch_model.bin'): [-1, 1] for ViTs and hybrid ViTs
  from big_vision and timm (AugReg), ImageNet mean/std otherwise."""
  kind = str(source).split(":", 1)[0]
  return ("minus_one_one" if family in registry.VIT_FAMILIES and kind in ("big_vision", "timm")
          else "imagenet")


def source_eval_crop(family: str) -> str:
  """The eval crop converted weights are scored with (``reproduce.data.EVAL_CROPS``): 'vit'
  (big_vision's ImageNet transfer eval, resize_small(448)|central_crop(384); timm's AugReg
  ViTs are big_vision's) for ViTs and the hybrid ViTs (timm's R26/R50 hybrids are AugReg
  ViTs), 'nfnet' (the NFNet code's resize_crop_32) otherwise."""
  return "vit" if family in registry.VIT_FAMILIES else "nfnet"


class WeightsFileError(ValueError):
  """Raised for a directory that is not a readable converted-weights directory."""


def build_overrides(info: Mapping[str, Any]) -> dict[str, Any]:
  """The ``model_defs.build`` overrides of a model.json (ViTs and hybrids: image_size=resolution)."""
  overrides = dict(info.get("model_overrides") or {})
  if model_defs.has_position_grid(info["model"]):
    overrides["image_size"] = int(info["resolution"])
  return overrides


def save(model, out_dir: str, *, name: str, num_classes: int, overrides: Mapping[str, Any],
         resolution: int, source: str, ema: bool = False,
         input_range: str | None = None) -> dict[str, Any]:
  """Writes ``model`` and its model.json into ``out_dir`` (replacing it); returns the info.

  ``overrides`` are the build options apart from a ViT's image_size, which is
  ``resolution``. ``input_range`` None: ``source_input_range`` of the source.
  """
  input_range = input_range or source_input_range(source, model_defs.get_spec(name).family)
  if input_range not in INPUT_RANGES:
    raise WeightsFileError(f"input range {input_range!r}: use one of {list(INPUT_RANGES)}")
  info = {"format": FORMAT, "model": name, "num_classes": int(num_classes),
          "model_overrides": {k: v for k, v in dict(overrides).items() if k != "image_size"},
          "resolution": int(resolution), "source": str(source), "ema": bool(ema),
          "input_range": input_range}
  out_dir = os.path.abspath(out_dir)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", dir=parent)
  os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the weights from other users
  try:
    model.save_weights(os.path.join(staging, WEIGHTS_FILE))
    with open(os.path.join(staging, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=2, sort_keys=True)
      f.write("\n")
    _replace_dir(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return info


def _replace_dir(staging: str, out_dir: str) -> None:
  """Renames ``staging`` to ``out_dir``; an existing ``out_dir`` is moved aside first."""
  old = None
  if os.path.lexists(out_dir):
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old.",
                           dir=os.path.dirname(out_dir))
    os.rename(out_dir, os.path.join(old, "previous"))
  os.rename(staging, out_dir)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def read_info(out_dir: str) -> dict[str, Any]:
  """The model.json of a converted-weights directory, checked.

  Raises:
    WeightsFileError: missing files, another format, or missing fields.
  """
  path = os.path.join(out_dir, CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except FileNotFoundError:
    raise WeightsFileError(f"{out_dir} is not a converted-weights directory (no "
                           f"{CONFIG_FILE}; write one with python -m reproduce.convert)") from None
  except json.JSONDecodeError as e:
    raise WeightsFileError(f"{path} is not valid JSON: {e}") from None
  if not isinstance(info, dict) or info.get("format") != FORMAT:
    found = info.get("format") if isinstance(info, dict) else type(info).__name__
    raise WeightsFileError(f"{path} has format {found!r}, expected {FORMAT!r}")
  missing = [k for k in REQUIRED_FIELDS if k not in info]
  if missing:
    raise WeightsFileError(f"{path} lacks field(s) {missing}")
  if not os.path.exists(os.path.join(out_dir, WEIGHTS_FILE)):
    raise WeightsFileError(f"{out_dir} has no {WEIGHTS_FILE}")
  info.setdefault("ema", False)
  try:
    family = model_defs.get_spec(info["model"]).family
  except ValueError:
    family = ""
  info.setdefault("input_range", source_input_range(info["source"], family))
  if info["input_range"] not in INPUT_RANGES:
    raise WeightsFileError(f"{path} has input_range {info['input_range']!r}, expected one of "
                           f"{list(INPUT_RANGES)}")
  return info


def load(out_dir: str, **extra_overrides):
  """Builds the model of a converted-weights directory and loads its weights.

  ``extra_overrides`` (e.g. dropout_rate for fine-tuning) are added to the build options
  that the weights were saved with.

  Returns:
    (keras.Model, info dict of model.json).
  """
  info = read_info(out_dir)
  overrides = {**build_overrides(info), **extra_overrides}
  model = model_defs.build(info["model"], num_classes=info["num_classes"], **overrides)
  model.load_weights(os.path.join(out_dir, WEIGHTS_FILE))
  return model, info
