"""Loads timm's hybrid ViTs (``vit_small_r26_s32_*``, ``vit_base_r50_s16_*``) into
``model_defs.hybrid`` models.

The ViT part (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks``, ``norm``,
``head``) has the plain ViT's names and goes through ``model_defs.converters.vit`` (class row
folded into the class token, position table resampled to the model's grid). The ResNet-v2
backbone's names map as (prefix ``patch_embed.backbone.``; weights OIHW -> HWIO):

  stem.conv.weight                            stem_conv/kernel
  stem.norm.{weight,bias}                     stem_norm/{gamma,beta}
  stages.{s}.blocks.{b}.conv{1,2,3}.weight    stage{s+1}_block{b+1}_conv{1,2,3}/kernel
  stages.{s}.blocks.{b}.norm{1,2,3}.*         stage{s+1}_block{b+1}_norm{1,2,3}/*
  stages.{s}.blocks.{b}.downsample.conv.*     stage{s+1}_block{b+1}_downsample_conv/kernel
  stages.{s}.blocks.{b}.downsample.norm.*     stage{s+1}_block{b+1}_downsample_norm/*

Every mismatch raises ``ConversionError`` (shared with the other converters). No timm or
torchvision import; ``torch`` only to read a .pth file.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from model_defs.converters import vit
from model_defs.converters.common import ConversionError, to_numpy

BACKBONE = "patch_embed.backbone."
_NORM_PARAM = {"weight": "gamma", "bias": "beta"}


def backbone_key_to_keras_path(key: str) -> str | None:
  """The Keras variable path of a timm backbone parameter (None if not recognised)."""
  key = key[len(BACKBONE):] if key.startswith(BACKBONE) else key
  match = re.fullmatch(r"stem\.(conv|norm)\.(weight|bias)", key)
  if match:
    layer, param = match.groups()
    return None if layer == "conv" and param == "bias" else (
        "stem_conv/kernel" if layer == "conv" else f"stem_norm/{_NORM_PARAM[param]}")
  match = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(conv\d|norm\d|downsample\.conv|"
                       r"downsample\.norm)\.(weight|bias)", key)
  if not match:
    return None
  stage, block, layer, param = match.groups()
  layer = f"stage{int(stage) + 1}_block{int(block) + 1}_{layer.replace('.', '_')}"
  if "conv" in layer:
    return f"{layer}/kernel" if param == "weight" else None
  return f"{layer}/{_NORM_PARAM[param]}"


def timm_to_keras(state_dict: Mapping[str, Any], model, *, strict: bool = True) -> dict:
  """Maps a timm hybrid ViT state dict onto the variables of ``model`` (not assigned).

  Raises:
    ConversionError: for an unrecognised backbone key (unless not ``strict``) or any problem
      of the ViT part (``vit.timm_to_keras``).
  """
  backbone = {k: v for k, v in state_dict.items() if k.startswith(BACKBONE)}
  out = vit.timm_to_keras(
      {k: v for k, v in state_dict.items() if k not in backbone}, model, strict=strict)
  unknown = []
  for key, value in backbone.items():
    path = backbone_key_to_keras_path(key)
    if path is None:
      unknown.append(key)
      continue
    value = to_numpy(value)
    out[path] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
  if unknown and strict:
    raise ConversionError(f"timm checkpoint has backbone keys the hybrid does not use (pass "
                          f"strict=False to ignore): {sorted(unknown)}")
  return out


def load_timm_state_dict(model, state_dict: Mapping[str, Any], *, strict: bool = True,
                         method: str = "bicubic") -> None:
  """Loads a timm hybrid ViT state dict (numpy arrays or torch tensors) into ``model``.

  Raises:
    ConversionError: naming the missing, unexpected or mis-shaped parameters; nothing is
      assigned then.
  """
  vit.assign_weights(model, timm_to_keras(state_dict, model, strict=strict),
                     method=method)


def load_timm_checkpoint(model, path: str, **kwargs) -> None:
  """Loads a timm hybrid ViT state dict from ``.npz`` or a torch ``.pth``/``.bin`` file."""
  load_timm_state_dict(model, vit.read_timm_file(path), **kwargs)
