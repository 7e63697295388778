"""Loads timm ``dm_nfnet_f*`` (PyTorch) weights into a Keras NFNet from ``model_defs.nfnet``.

Only NumPy is needed to convert a state dict; reading a ``.pth`` file imports
``torch`` lazily (``model_defs.converters.common``; never timm or torchvision: importing
those after TensorFlow can crash the process).

To reproduce timm's outputs exactly, build the Keras model with timm's two numerical
conventions (exact GELU and timm's weight-standardisation epsilon)::

  model = model_defs.build("nfnet_f0", num_classes=1000, timm_compat=True)
  load_timm_checkpoint(model, "dm_nfnet_f0.pth")

Name mapping (timm -> Keras variable path):
  stem.conv{i}.{weight,gain,bias}                 stem_conv{i}/{kernel,gain,bias}
  stages.{s}.{b}.conv{1,2,2b,3}.*                 stage{s+1}_block{b+1}/conv{...}/*
  stages.{s}.{b}.downsample.conv.*                stage{s+1}_block{b+1}/shortcut_conv/*
  stages.{s}.{b}.attn_last.fc{1,2}.{weight,bias}  stage{s+1}_block{b+1}/se/fc{1,2}/{kernel,bias}
  stages.{s}.{b}.skipinit_gain                    stage{s+1}_block{b+1}/skip_gain
  final_conv.*                                    final_conv/*
  head.fc.{weight,bias}                           classifier/{kernel,bias}
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Mapping

import numpy as np

from model_defs.converters.common import assign_all, load_torch_state_dict, match_to_model, to_numpy
from model_defs.nfnet_layers import GammaActivation, ScaledWSConv2D


_CONV_PARAM = {"weight": "kernel", "gain": "gain", "bias": "bias"}


def load_timm_checkpoint(model, path: str, check_options: bool = True):
  """Loads a timm ``dm_nfnet_f*`` ``.pth`` file into ``model`` (``load_timm_state_dict``)."""
  return load_timm_state_dict(model, load_torch_state_dict(path), check_options=check_options)


def timm_key_to_keras_path(key: str) -> str | None:
  """The Keras variable path of a timm NFNet parameter name (None if not recognised)."""
  key = re.sub(r"^module\.", "", key)
  match = re.fullmatch(r"stem\.conv(\d+)\.(weight|gain|bias)", key)
  if match:
    return f"stem_conv{match[1]}/{_CONV_PARAM[match[2]]}"
  match = re.fullmatch(r"stages\.(\d+)\.(\d+)\.(.+)", key)
  if match:
    block = f"stage{int(match[1]) + 1}_block{int(match[2]) + 1}"
    rest = match[3]
    if rest == "skipinit_gain":
      return f"{block}/skip_gain"
    inner = re.fullmatch(r"(conv1|conv2|conv2b|conv3|downsample\.conv)\.(weight|gain|bias)", rest)
    if inner:
      layer = "shortcut_conv" if inner[1] == "downsample.conv" else inner[1]
      return f"{block}/{layer}/{_CONV_PARAM[inner[2]]}"
    inner = re.fullmatch(r"attn_last\.(fc1|fc2)\.(weight|bias)", rest)
    if inner:
      return f"{block}/se/{inner[1]}/{'kernel' if inner[2] == 'weight' else 'bias'}"
    return None
  match = re.fullmatch(r"final_conv\.(weight|gain|bias)", key)
  if match:
    return f"final_conv/{_CONV_PARAM[match[1]]}"
  match = re.fullmatch(r"head\.fc\.(weight|bias)", key)
  if match:
    return f"classifier/{'kernel' if match[1] == 'weight' else 'bias'}"
  return None


def _to_keras_layout(key: str, value: np.ndarray) -> np.ndarray:
  """Transposes one timm array to the Keras layout of the same parameter."""
  if key.endswith("skipinit_gain"):
    return value.reshape(())
  if value.ndim == 4:
    if key.endswith(".gain"):  # (out, 1, 1, 1) -> (out,)
      return value.reshape(-1)
    if ".attn_last." in key:   # 1x1 conv used as a dense layer: (out, in, 1, 1) -> (in, out)
      return value[:, :, 0, 0].T
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO (grouped: in = C / groups)
  if value.ndim == 2:          # Linear (out, in) -> Dense (in, out)
    return value.T
  return value


def convert_timm_state_dict(model, state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Maps a timm state dict onto the variables of ``model`` without assigning.

  Returns:
    {keras variable path: array in Keras layout} covering every model variable.

  Raises:
    ConversionError: naming the first missing, unexpected or mis-shaped parameter on its
      first line, and every problem on the next ones.
  """
  sources = [(key, timm_key_to_keras_path(key), _to_keras_layout(key, to_numpy(value)))
             for key, value in state_dict.items()]
  return match_to_model(model, sources, "timm")


def load_timm_state_dict(model, state_dict: Mapping[str, Any], check_options: bool = True):
  """Copies a timm ``dm_nfnet_f*`` state dict into a built Keras NFNet, in place.

  Args:
    model: a model from ``model_defs.build("nfnet_...")`` with the same variant and
      number of classes as the checkpoint.
    state_dict: {timm parameter name: torch tensor or array}.
    check_options: warn when the model does not use timm's numerics (exact GELU and
      ``ws_eps_mode='timm'``): its outputs would then differ slightly from timm's.

  Returns:
    ``model``.

  Raises:
    ConversionError: if any key, variable or shape does not match (nothing is assigned).
  """
  arrays = convert_timm_state_dict(model, state_dict)
  if check_options:
    _warn_if_not_timm_numerics(model)
  assign_all(model, arrays)
  return model


def _warn_if_not_timm_numerics(model) -> None:
  layers = list(model._flatten_layers(include_self=False, recursive=True))  # pylint: disable=protected-access
  official_ws = any(isinstance(l, ScaledWSConv2D) and l.ws_eps_mode != "timm" for l in layers)
  tanh_gelu = any(isinstance(l, GammaActivation) and l.activation == "gelu" and l.gelu_approximate
                  for l in layers)
  if official_ws or tanh_gelu:
    warnings.warn("loading timm weights into an NFNet built without timm_compat=True "
                  "(tanh GELU and/or official WS epsilon): outputs will differ slightly "
                  "from timm's", stacklevel=3)
