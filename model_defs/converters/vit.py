"""Weights into the Keras ViT of ``model_defs.vit``: timm, big_vision, other resolutions.

Public functions:
  weights_dict(model)                          {variable path: numpy array}
  assign_weights(model, weights, ...)          strict load of such a dict, resampling pos-emb
  resample_posemb(posemb, new_grid, ...)       2-D interpolation of a learned pos-emb table
  load_weights_across_resolution(src, dst)     copy a ViT built at one image size into another
  timm_to_keras(state_dict, model)             timm ``VisionTransformer`` state dict -> weights dict
  load_timm_state_dict(model, state_dict)      ... and assign it
  load_timm_checkpoint(model, path)            .pth / .bin / .npz file of a timm state dict
  big_vision_to_keras(params, model)           big_vision / ViT-AugReg .npz params -> weights dict
  load_big_vision_npz(model, path_or_params)   ... and assign it

Conventions: the Keras model keeps a patch-only position table (1, N, D) and adds it
before prepending the class token (big_vision). timm (and the original ViT/AugReg
checkpoints) keep a (1, 1 + N, D) table added after the class token; its first row is
constant per model, so it is folded into the class token on import. That is exact.

Every mismatch between a checkpoint and the model raises ``ConversionError`` (a
ValueError, shared with ``model_defs.converters.nfnet``). No timm/torchvision import here;
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

def _model_layout(model) -> dict[str, Any]:
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


class _Source:
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


def _expect(value: np.ndarray, shape, key: str, kind: str) -> np.ndarray:
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
  src = _Source(state_dict, "timm")
  lay = _model_layout(model)
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


def _reject_unsupported_timm_features(src: "_Source") -> None:
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


def _timm_embeddings(src: "_Source", lay: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Patch embedding, class token and position table (its class row folded into ``cls``)."""
  out: dict[str, np.ndarray] = {}
  w = src.get("patch_embed.proj.weight")  # (D, 3, p, p) -> (p, p, 3, D)
  out["embedding/kernel"] = _expect(w.transpose(2, 3, 1, 0), lay["paths"]["embedding/kernel"],
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


def _timm_map_head(src: "_Source", lay: Mapping[str, Any], out: dict) -> None:
  """timm's ``attn_pool`` (separate q and kv projections) -> the Keras MAP head."""
  if not src.has("attn_pool.latent"):
    raise ConversionError("model has a MAP head but the timm checkpoint has no 'attn_pool.*'")
  out["map_probe/token"] = _expect(src.get("attn_pool.latent"), (1, 1, lay["width"]),
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


def _timm_linear(src: "_Source", out: dict, prefix: str, kernel_path: str,
                 bias_path: str | None) -> None:
  out[kernel_path] = src.get(f"{prefix}.weight").T  # torch Linear is (out, in)
  if bias_path is not None:
    out[bias_path] = src.get(f"{prefix}.bias")


def _timm_norm(src: "_Source", out: dict, prefix: str, name: str) -> None:
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


# --------------------------------------------------------------------------------------
# big_vision / ViT AugReg .npz
# --------------------------------------------------------------------------------------

# Pre-linen flax names (original ViT and AugReg .npz) -> linen names (big_vision).
_PRE_LINEN_BLOCK = {"LayerNorm_0": "LayerNorm_0", "MultiHeadDotProductAttention_1":
                    "MultiHeadDotProductAttention_0", "LayerNorm_2": "LayerNorm_1",
                    "MlpBlock_3": "MlpBlock_0"}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      flat.update(_flatten(v, key))
    else:
      flat[key] = v
  return flat


def normalize_big_vision_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Brings any known big_vision/ViT checkpoint layout to today's big_vision names.

  Handles nested dicts, a leading 'params/' prefix, pre-linen block names
  (MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3), the old position-table
  locations ('Transformer/posembed_input/pos_embedding', 'Transformer/pos_embedding'),
  scanned blocks ('Transformer/encoderblock/...' with a leading depth axis) and an
  inlined MAP head ('probe' at the top level). A (1, 1 + N, D) table keeps its
  class row as 'pos_embedding_cls' for the converter to fold into 'cls'.
  """
  flat = {k: to_numpy(v, dtype=None) for k, v in _flatten(params).items()}
  if flat and all(k.startswith("params/") for k in flat):
    flat = {k[len("params/"):]: v for k, v in flat.items()}
  out: dict[str, np.ndarray] = {}
  for k, v in flat.items():
    m = re.match(r"Transformer/encoderblock/(.*)$", k)
    if m:  # scanned: unstack the depth axis
      for i in range(v.shape[0]):
        out[f"Transformer/encoderblock_{i}/{m.group(1)}"] = v[i]
      continue
    m = re.match(r"(Transformer/encoderblock_\d+)/([^/]+)/(.*)$", k)
    if m and m.group(2) in _PRE_LINEN_BLOCK and not any(
        f"{m.group(1)}/{n}/" in kk for kk in flat for n in ("MultiHeadDotProductAttention_0",
                                                            "MlpBlock_0")):
      k = f"{m.group(1)}/{_PRE_LINEN_BLOCK[m.group(2)]}/{m.group(3)}"
    for old in ("Transformer/posembed_input/pos_embedding", "Transformer/pos_embedding"):
      if k == old:
        k = "pos_embedding"
    if re.match(r"(probe|MultiHeadDotProductAttention_0|MlpBlock_0|LayerNorm_0)(/|$)", k):
      k = f"MAPHead_0/{k}"
    out[k] = v
  if "pos_embedding" in out:
    cls_row, pe = split_posemb_class_row(out["pos_embedding"], "pos_embedding", "big_vision")
    out["pos_embedding"] = pe
    if cls_row is not None:
      out["pos_embedding_cls"] = cls_row
  return out


def big_vision_to_keras(params: Mapping[str, Any], model, *, strict: bool = True) -> dict:
  """Maps big_vision ViT params (flat '/'-joined or nested) onto ``model``'s variables.

  Raises:
    ConversionError: for missing keys, unused keys (``strict``), a head-count or shape
      mismatch, or a head type the model was not built with.
  """
  src = _Source(normalize_big_vision_params(params), "big_vision")
  lay = _model_layout(model)
  out = _big_vision_embeddings(src, lay)
  for i in range(lay["depth"]):
    b, k = f"Transformer/encoderblock_{i}", f"encoderblock_{i}"
    _bv_norm(src, out, f"{b}/LayerNorm_0", f"{k}_ln0")
    _bv_attention(src, out, lay, f"{b}/MultiHeadDotProductAttention_0", f"{k}_attn")
    _bv_norm(src, out, f"{b}/LayerNorm_1", f"{k}_ln1")
    _bv_dense(src, out, f"{b}/MlpBlock_0/Dense_0", f"{k}_mlp_fc1")
    _bv_dense(src, out, f"{b}/MlpBlock_0/Dense_1", f"{k}_mlp_fc2")
  if src.has(f"Transformer/encoderblock_{lay['depth']}/LayerNorm_0/scale"):
    raise ConversionError(f"big_vision checkpoint has more than the model's {lay['depth']} "
                          f"blocks")
  _bv_norm(src, out, "Transformer/encoder_norm", "encoder_norm")
  if lay["map"]:
    out["map_probe/token"] = src.get("MAPHead_0/probe", purpose="MAP head")
    _bv_attention(src, out, lay, "MAPHead_0/MultiHeadDotProductAttention_0", "map_attn")
    _bv_norm(src, out, "MAPHead_0/LayerNorm_0", "map_ln")
    _bv_dense(src, out, "MAPHead_0/MlpBlock_0/Dense_0", "map_mlp_fc1")
    _bv_dense(src, out, "MAPHead_0/MlpBlock_0/Dense_1", "map_mlp_fc2")
  elif src.has("MAPHead_0/probe"):
    raise ConversionError("big_vision checkpoint has a MAP head; build the model with "
                          "pool_type='map'")
  if lay["pre_logits"]:
    _bv_dense(src, out, "pre_logits", "pre_logits")
  _bv_dense(src, out, "head", "head")
  src.check_all_used(strict)
  return out


def _big_vision_embeddings(src: "_Source", lay: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Patch embedding, position table and class token (plus any old class row of the table)."""
  out: dict[str, np.ndarray] = {}
  out["embedding/kernel"] = _expect(src.get("embedding/kernel"), lay["paths"]["embedding/kernel"],
                                    "embedding/kernel", "big_vision")
  out["embedding/bias"] = src.get("embedding/bias")
  if src.has("cls") != lay["cls"]:
    raise ConversionError(f"big_vision checkpoint {'has' if src.has('cls') else 'has no'} "
                          f"'cls' token but the model {'has' if lay['cls'] else 'has no'} "
                          f"class token: build the model with a matching pool_type")
  if lay["learn_posemb"]:
    out[POSEMB_PATH] = src.get("pos_embedding", purpose="learned position embedding")
  elif src.has("pos_embedding"):
    raise ConversionError("big_vision checkpoint has a learned 'pos_embedding' but the model "
                          "was built with posemb='sincos2d'")
  if lay["cls"]:
    cls = src.get("cls")
    if src.has("pos_embedding_cls"):
      cls = cls + src.get("pos_embedding_cls")
    out[CLS_PATH] = cls
  elif src.has("pos_embedding_cls"):
    src.get("pos_embedding_cls")  # old layout without a class token: row unused, as big_vision
  return out


def _bv_attention(src: "_Source", out: dict, lay: Mapping[str, Any], prefix: str,
                  name: str) -> None:
  """flax (D, H, hd) query/key/value kernels -> one fused (D, 3D) kernel; out (H, hd, D)."""
  d, heads = lay["width"], lay["heads"]
  ws, bs = [], []
  for part in ("query", "key", "value"):
    k = src.get(f"{prefix}/{part}/kernel")
    if k.ndim != 3 or k.shape[0] != d or k.shape[1] != heads:
      raise ConversionError(f"big_vision key '{prefix}/{part}/kernel' has shape {k.shape}, "
                            f"expected ({d}, {heads}, {d // heads}) (width, heads, head dim)")
    ws.append(k.reshape(d, d))
    if lay["qkv_bias"]:
      bs.append(src.get(f"{prefix}/{part}/bias").reshape(d))
  out[f"{name}/qkv_kernel"] = np.concatenate(ws, axis=1)
  if lay["qkv_bias"]:
    out[f"{name}/qkv_bias"] = np.concatenate(bs)
  ok = src.get(f"{prefix}/out/kernel")
  out[f"{name}/out_kernel"] = _expect(ok, (heads, d // heads, d), f"{prefix}/out/kernel",
                                      "big_vision").reshape(d, d)
  out[f"{name}/out_bias"] = src.get(f"{prefix}/out/bias")


def _bv_dense(src: "_Source", out: dict, prefix: str, name: str) -> None:
  out[f"{name}/kernel"] = src.get(f"{prefix}/kernel")
  out[f"{name}/bias"] = src.get(f"{prefix}/bias")


def _bv_norm(src: "_Source", out: dict, prefix: str, name: str) -> None:
  out[f"{name}/gamma"] = src.get(f"{prefix}/scale")
  out[f"{name}/beta"] = src.get(f"{prefix}/bias")


def load_big_vision_npz(model, path_or_params, *, strict: bool = True,
                        method: str = "bicubic") -> None:
  """Loads a big_vision / ViT-AugReg .npz (path or dict) into ``model``.

  The position table is resampled to the model's grid when the resolution differs
  (big_vision itself uses bilinear ``scipy.ndimage.zoom`` for this; default here is
  timm's bicubic, pass method='bilinear' to get the half-pixel bilinear variant).
  """
  if isinstance(path_or_params, Mapping):
    params = path_or_params
  else:
    with np.load(path_or_params, allow_pickle=False) as f:
      params = {k: f[k] for k in f.files}
  assign_weights(model, big_vision_to_keras(params, model, strict=strict), method=method)
