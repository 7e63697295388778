"""One entry point for every checkpoint source ``reproduce.convert`` reads.

  model, info = convert_checkpoint("deepmind", "F0_haiku.npz", "nfnet_f0")
  weights_file.save(model, out_dir, **info)

Sources: 'deepmind' (the released NFNet Haiku pickles), 'timm' (NFNet, ViT or hybrid ViT
state dicts, ``.pth``/``.bin``, read with ``torch.load(weights_only=True)``) and 'big_vision'
(ViT ``.npz``). The number of classes and, for ViTs, the resolution the weights were built
for are read from the checkpoint unless given.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np

import model_defs
from model_defs import hybrid_stems, weights_file
from model_defs.converters import big_vision, deepmind, hybrid, nfnet, vit
from model_defs.converters.common import ConversionError, load_torch_state_dict

SOURCES = ("deepmind", "timm", "big_vision")
_FAMILIES = {"deepmind": ("nfnet",), "timm": ("nfnet", "vit", "hybrid"),
             "big_vision": ("vit",)}


def read_checkpoint(source: str, path: str) -> Mapping[str, Any]:
  """The raw parameters of a checkpoint file (a Haiku tree or a flat name -> array dict).

  Raises:
    ConversionError: an unknown source, a missing file, or an unreadable checkpoint.
  """
  if source not in SOURCES:
    raise ConversionError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
  if not os.path.isfile(path):
    raise ConversionError(f"checkpoint {path} does not exist")
  if source == "deepmind":
    return deepmind.load_haiku_file(path)
  if source == "timm":
    if path.endswith(".npz"):
      return _read_npz(path)
    return load_torch_state_dict(path)
  return big_vision.normalize_big_vision_params(_read_npz(path))


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except (ValueError, OSError) as e:
    raise ConversionError(f"{path} is not a NumPy .npz archive of arrays: {e}") from None


def _head_classes(source: str, family: str, params: Mapping[str, Any]) -> int:
  if source == "deepmind":
    return deepmind.head_classes(params)
  key = {("timm", "nfnet"): "head.fc.weight", ("timm", "vit"): "head.weight",
         ("timm", "hybrid"): "head.weight", ("big_vision", "vit"): "head/kernel"}[(source, family)]
  if key not in params:
    raise ConversionError(f"missing parameter {key!r} (the classifier) in the {source} "
                          f"checkpoint")
  shape = np.shape(params[key])
  return int(shape[0] if source == "timm" else shape[-1])


def _vit_resolution(source: str, params: Mapping[str, Any], patch: int) -> int | None:
  """The image size of a ViT checkpoint's learned position table (None without one)."""
  key = "pos_embed" if source == "timm" else "pos_embedding"
  if key not in params:
    return None
  tokens = np.shape(params[key])[-2]
  side = int(round(math.sqrt(tokens)))
  if side * side != tokens:  # a class-token row in front of the patch grid
    side = int(round(math.sqrt(tokens - 1)))
  return side * patch


def default_overrides(source: str, family: str) -> dict[str, Any]:
  """Build options that reproduce the source's numerics (timm NFNets: exact GELU, timm's
  WS epsilon; DeepMind's weights use the model's defaults, which are the official ones)."""
  return {"timm_compat": True} if (source, family) == ("timm", "nfnet") else {}


def convert_checkpoint(source: str, path: str, model_name: str, *,
                       num_classes: int | None = None,
                       overrides: Mapping[str, Any] | None = None,
                       resolution: int | None = None,
                       input_range: str | None = None) -> tuple[Any, dict[str, Any]]:
  """Builds ``model_name`` and loads a checkpoint into it.

  Returns:
    (keras.Model, the keyword arguments of ``weights_file.save`` apart from the model and
    directory: name, num_classes, overrides, resolution, source, input_range: the given one,
    else the source's, ``weights_file.source_input_range``).

  Raises:
    ConversionError: for a source/model mismatch or any checkpoint problem (the first
      line names the first missing, unexpected or mis-shaped parameter).
    model_defs.UnknownModelError / ValueError: an unknown model or bad override.
  """
  spec = model_defs.get_spec(model_name)
  if spec.family not in _FAMILIES.get(source, ()):
    raise ConversionError(f"--source={source} holds {' or '.join(_FAMILIES.get(source, ()))} "
                          f"weights, not {spec.family} ({model_name})")
  params = read_checkpoint(source, path)
  classes = _head_classes(source, spec.family, params) if num_classes is None else num_classes
  overrides = {**default_overrides(source, spec.family), **dict(overrides or {})}
  if model_defs.has_position_grid(model_name):
    pixels = spec.config["patch_size"] * (
        hybrid_stems.stride(spec.config["stem"]) if spec.family == "hybrid" else 1)
    resolution = (resolution or overrides.pop("image_size", None)
                  or _vit_resolution(source, params, pixels))
    model = model_defs.build(model_name, classes, **{**overrides,
                                                      "image_size": resolution or None})
    resolution = resolution or model.input_shape[1]
    loader = {("timm", "vit"): vit.load_timm_state_dict,
              ("timm", "hybrid"): hybrid.load_timm_state_dict,
              ("big_vision", "vit"): big_vision.load_big_vision_npz}[(source, spec.family)]
    loader(model, params)
  else:
    model = model_defs.build(model_name, classes, **overrides)
    if source == "deepmind":
      deepmind.load_deepmind_params(model, params)
    else:
      nfnet.load_timm_state_dict(model, params, check_options=False)
  info = dict(name=model_name, num_classes=int(classes),
              overrides={k: v for k, v in overrides.items() if k != "image_size"},
              resolution=int(resolution or spec.test_resolution),
              source=f"{source}:{os.path.basename(path)}",
              input_range=input_range or weights_file.source_input_range(source, spec.family))
  return model, info
