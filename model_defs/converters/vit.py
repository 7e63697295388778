"""Weights into the Keras ViT of ``model_defs.vit``: weight dicts, other resolutions, timm.

Public functions:
  weights_dict(model)                          {variable path: numpy array}
  assign_weights(model, weights, ...)          strict load of such a dict, resampling pos-emb
  resample_posemb(posemb, new_grid, ...)       2-D interpolation of a learned pos-emb table
  load_weights_across_resolution(src, dst)     copy a ViT built at one image size into another
  timm_to_keras(state_dict, model)             timm ``VisionTransformer`` state dict -> weights dict
  load_timm_state_dict(model, state_dict)      ... and assign it
  load_timm_checkpoint(model, path)            .pth / .bin / .npz file of a timm state dict
  model_layout(model), CheckpointParams        what a format's converter maps onto (and from)

big_vision and ViT-AugReg .npz checkpoints: ``model_defs.converters.big_vision``.

Conventions: the Keras model keeps a patch-only position table (1, N, D) and adds it
before prepending the class token (big_vision). timm (and the original ViT/AugReg
checkpoints) keep a (1, 1 + N, D) table added after the class token; its first row is
constant per model, so it is folded into the class token on import. That is exact.

Every mismatch between a checkpoint and the model raises ``ConversionError`` (a
ValueError, shared with the other converters). No timm/torchvision import here;
``torch`` is imported only to read a .pth file (``model_defs.converters.common``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from model_defs.converters.common import ConversionError, load_torch_state_dict, to_numpy
from model_defs.converters.posemb_resampling import (resample_posemb, split_posemb_class_row,
                                                    square_grid_side)


POSEMB_PATH = "pos_embedding/pos_embedding"
CLS_PATH = "cls/token"


# --------------------------------------------------------------------------------------
# Generic weight dictionaries
# --------------------------------------------------------------------------------------

def weights_dict(model) -> dict[str, np.ndarray]:
  """All variables of ``model`` as {variable path: numpy array}."""
  return {v.path: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in model.weights}


def assign_weights(model, weights: Mapping[str, Any], *, resample: bool = True,
                   method: str = "bicubic") -> None:
  """Assigns a full {path: array} dict to ``model``.

  The key sets must match exactly and every shape must match, except the learned
  position embedding, which is resampled to the model's grid when ``resample``.

  Raises:
    ConversionError: naming missing/unexpected paths or mismatched shapes.
  """
  variables = {v.path: v for v in model.weights}
  missing = sorted(set(variables) - set(weights))
  unexpected = sorted(set(weights) - set(variables))
  if missing or unexpected:
    raise ConversionError(f"weights do not match model {model.name!r}: missing {missing}, "
                     f"unexpected {unexpected}")
  values = {}
  for path, var in variables.items():
    value = to_numpy(weights[path], dtype=None)
    want = tuple(var.shape)
    if value.shape != want:
      if path.endswith(POSEMB_PATH) and resample and len(want) == 3:
        value = resample_posemb(value, square_grid_side(want[1], want, "model"), method=method)
      else:
        raise ConversionError(f"shape mismatch for {path!r}: weights {value.shape}, model {want}")
    values[path] = value
  for path, var in variables.items():  # assign only after every check passed
    var.assign(values[path].astype(var.dtype))


def load_weights_across_resolution(src_model, dst_model, *, method: str = "bicubic") -> None:
  """Copies every weight of ``src_model`` into ``dst_model``, resampling the pos-emb.

  Both must be the same ViT built at different ``image_size`` (same patch size,
  width, depth, head...). A fixed sin-cos embedding has no weight and is simply
  recomputed by the destination model.

  Raises:
    ConversionError: when the two models differ in anything but the position grid.
  """
  assign_weights(dst_model, weights_dict(src_model), resample=True, method=method)


# --------------------------------------------------------------------------------------
# Model introspection
# --------------------------------------------------------------------------------------

def model_layout(model) -> dict[str, Any]:
  """Structure of a Keras ViT, read from its variables (and attention layers)."""
  paths = {v.path: tuple(v.shape) for v in model.weights}
  if "embedding/kernel" not in paths:
    raise ConversionError(f"model {model.name!r} is not a model_defs.vit ViT "
                          f"(no 'embedding/kernel')")
  depth = 0
  while f"encoderblock_{depth}_ln0/gamma" in paths:
    depth += 1
  heads = model.get_layer("encoderblock_0_attn").num_heads if depth else None
  return dict(
      paths=paths, depth=depth, width=paths["embedding/kernel"][-1],
      patch=paths["embedding/kernel"][0], heads=heads,
      cls=CLS_PATH in paths, map="map_probe/token" in paths,
      learn_posemb=POSEMB_PATH in paths, pre_logits="pre_logits/kernel" in paths,
      qkv_bias="encoderblock_0_attn/qkv_bias" in paths if depth else True)


class CheckpointParams:
  """A flat checkpoint dict that records which keys were used, for strict checks."""

  def __init__(self, params: Mapping[str, Any], kind: str):
    self.params = {k: v for k, v in params.items()}
    self.kind = kind
    self.used: set[str] = set()

  def has(self, key: str) -> bool:
    return key in self.params

  def get(self, key: str, *, purpose: str = "") -> np.ndarray:
    if key not in self.params:
      raise ConversionError(f"{self.kind} checkpoint is missing key {key!r}"
                       f"{' (' + purpose + ')' if purpose else ''}")
    self.used.add(key)
    return to_numpy(self.params[key])

  def check_all_used(self, strict: bool) -> None:
    extra = sorted(set(self.params) - self.used)
    if extra and strict:
      raise ConversionError(f"{self.kind} checkpoint has keys the model does not use (pass "
                       f"strict=False to ignore): {extra}")


def expect_shape(value: np.ndarray, shape, key: str, kind: str) -> np.ndarray:
  if tuple(value.shape) != tuple(shape):
    raise ConversionError(f"{kind} key {key!r} has shape {tuple(value.shape)}, expected "
                     f"{tuple(shape)} for this model")
  return value


# --------------------------------------------------------------------------------------
# timm
# --------------------------------------------------------------------------------------

def timm_to_keras(state_dict: Mapping[str, Any], model, *, strict: bool = True) -> dict:
  """Maps a timm ``VisionTransformer`` state dict onto the variables of ``model``.

  Supports timm's plain ViT: class token ('token' pool) or attention pool ('map',
  ``attn_pool.*``), learned ``pos_embed`` with or without a class-token row, fused
  ``qkv``, pre-norm blocks. The position table is returned at the checkpoint's grid;
  ``assign_weights`` resamples it.

  Raises:
    ConversionError: for missing keys, unused keys (``strict``), mismatched shapes, or
      timm features this ViT does not have (fc_norm/avg pool, LayerScale, register
      tokens, qk-norm, ...).
  """
  src = CheckpointParams(state_dict, "timm")
  lay = model_layout(model)
  _reject_unsupported_timm_features(src)
  out = _timm_embeddings(src, lay)
  qb = lay["qkv_bias"]
  for i in range(lay["depth"]):
    b, k = f"blocks.{i}", f"encoderblock_{i}"
    _timm_norm(src, out, f"{b}.norm1", f"{k}_ln0")
    _timm_linear(src, out, f"{b}.attn.qkv", f"{k}_attn/qkv_kernel",
                 f"{k}_attn/qkv_bias" if qb else None)
    _timm_linear(src, out, f"{b}.attn.proj", f"{k}_attn/out_kernel", f"{k}_attn/out_bias")
    _timm_norm(src, out, f"{b}.norm2", f"{k}_ln1")
    _timm_linear(src, out, f"{b}.mlp.fc1", f"{k}_mlp_fc1/kernel", f"{k}_mlp_fc1/bias")
    _timm_linear(src, out, f"{b}.mlp.fc2", f"{k}_mlp_fc2/kernel", f"{k}_mlp_fc2/bias")
  if src.has(f"blocks.{lay['depth']}.norm1.weight"):
    raise ConversionError(f"timm checkpoint has more than the model's {lay['depth']} blocks")
  _timm_norm(src, out, "norm", "encoder_norm")
  if lay["map"]:
    _timm_map_head(src, lay, out)
  elif src.has("attn_pool.latent"):
    raise ConversionError("timm checkpoint has an attention pool ('attn_pool.*'); build the "
                          "model with pool_type='map'")
  if lay["pre_logits"]:
    _timm_linear(src, out, "pre_logits.fc", "pre_logits/kernel", "pre_logits/bias")
  _timm_linear(src, out, "head", "head/kernel", "head/bias")
  src.check_all_used(strict)
  return out


def _reject_unsupported_timm_features(src: "CheckpointParams") -> None:
  if src.has("fc_norm.weight"):
    raise ConversionError("timm checkpoint has 'fc_norm' (global_pool='avg' normalises after "
                          "pooling); model_defs.vit's 'gap' normalises before pooling as "
                          "big_vision, so it cannot be converted exactly")
  unsupported = sorted(k for k in src.params
                       if re.search(r"(^reg_token|\.ls[12]\.|norm_pre\.|q_norm|k_norm|"
                                    r"^patch_embed\.norm)", k))
  if unsupported:
    raise ConversionError(f"timm checkpoint uses features this ViT does not implement: "
                          f"{unsupported}")


def _timm_embeddings(src: "CheckpointParams", lay: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Patch embedding, class token and position table (its class row folded into ``cls``)."""
  out: dict[str, np.ndarray] = {}
  w = src.get("patch_embed.proj.weight")  # (D, 3, p, p) -> (p, p, 3, D)
  out["embedding/kernel"] = expect_shape(w.transpose(2, 3, 1, 0), lay["paths"]["embedding/kernel"],
                                    "patch_embed.proj.weight", "timm")
  out["embedding/bias"] = src.get("patch_embed.proj.bias")
  has_cls = src.has("cls_token")
  if has_cls != lay["cls"]:
    raise ConversionError(f"timm checkpoint {'has' if has_cls else 'has no'} cls_token but the "
                          f"model {'has' if lay['cls'] else 'has no'} class token: build the "
                          f"model with a matching pool_type")
  if lay["learn_posemb"]:
    cls_row, pe = split_posemb_class_row(src.get("pos_embed"), "pos_embed", "timm")
    out[POSEMB_PATH] = pe
    if has_cls:
      cls = src.get("cls_token")
      out[CLS_PATH] = cls + cls_row if cls_row is not None else cls
  elif has_cls:
    out[CLS_PATH] = src.get("cls_token")
  return out


def _timm_map_head(src: "CheckpointParams", lay: Mapping[str, Any], out: dict) -> None:
  """timm's ``attn_pool`` (separate q and kv projections) -> the Keras MAP head."""
  if not src.has("attn_pool.latent"):
    raise ConversionError("model has a MAP head but the timm checkpoint has no 'attn_pool.*'")
  out["map_probe/token"] = expect_shape(src.get("attn_pool.latent"), (1, 1, lay["width"]),
                                   "attn_pool.latent", "timm")
  q, kv = src.get("attn_pool.q.weight"), src.get("attn_pool.kv.weight")
  out["map_attn/qkv_kernel"] = np.concatenate([q.T, kv.T], axis=1)
  if lay["qkv_bias"]:
    out["map_attn/qkv_bias"] = np.concatenate(
        [src.get("attn_pool.q.bias"), src.get("attn_pool.kv.bias")])
  _timm_linear(src, out, "attn_pool.proj", "map_attn/out_kernel", "map_attn/out_bias")
  _timm_norm(src, out, "attn_pool.norm", "map_ln")
  _timm_linear(src, out, "attn_pool.mlp.fc1", "map_mlp_fc1/kernel", "map_mlp_fc1/bias")
  _timm_linear(src, out, "attn_pool.mlp.fc2", "map_mlp_fc2/kernel", "map_mlp_fc2/bias")


def _timm_linear(src: "CheckpointParams", out: dict, prefix: str, kernel_path: str,
                 bias_path: str | None) -> None:
  out[kernel_path] = src.get(f"{prefix}.weight").T  # torch Linear is (out, in)
  if bias_path is not None:
    out[bias_path] = src.get(f"{prefix}.bias")


def _timm_norm(src: "CheckpointParams", out: dict, prefix: str, name: str) -> None:
  out[f"{name}/gamma"] = src.get(f"{prefix}.weight")
  out[f"{name}/beta"] = src.get(f"{prefix}.bias")


def load_timm_state_dict(model, state_dict: Mapping[str, Any], *, strict: bool = True,
                         method: str = "bicubic") -> None:
  """Loads a timm ViT state dict (numpy arrays or torch tensors) into ``model``."""
  assign_weights(model, timm_to_keras(state_dict, model, strict=strict), method=method)


def load_timm_checkpoint(model, path: str, **kwargs) -> None:
  """Loads a timm ViT state dict from ``.npz`` or a torch ``.pth``/``.bin`` file."""
  load_timm_state_dict(model, read_timm_file(path), **kwargs)


def read_timm_file(path: str) -> dict[str, Any]:
  """A timm state dict from an ``.npz`` or a torch ``.pth``/``.bin`` file."""
  if str(path).endswith(".npz"):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  return load_torch_state_dict(path)
