"""big_vision and ViT-AugReg ``.npz`` checkpoints into the Keras ViT of ``model_defs.vit``.

  normalize_big_vision_params(params)          any known layout -> today's big_vision names
  big_vision_to_keras(params, model)           big_vision params -> {variable path: array}
  load_big_vision_npz(model, path_or_params)   ... and assign it (pos-emb resampled)

Mismatches raise ``ConversionError`` (``model_defs.converters.common``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from model_defs.converters import vit
from model_defs.converters.common import ConversionError, to_numpy
from model_defs.converters.posemb_resampling import split_posemb_class_row


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
  src = vit.CheckpointParams(normalize_big_vision_params(params), "big_vision")
  lay = vit.model_layout(model)
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


def _big_vision_embeddings(src: vit.CheckpointParams,
                           lay: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Patch embedding, position table and class token (plus any old class row of the table)."""
  out: dict[str, np.ndarray] = {}
  out["embedding/kernel"] = vit.expect_shape(
      src.get("embedding/kernel"), lay["paths"]["embedding/kernel"], "embedding/kernel",
      "big_vision")
  out["embedding/bias"] = src.get("embedding/bias")
  if src.has("cls") != lay["cls"]:
    raise ConversionError(f"big_vision checkpoint {'has' if src.has('cls') else 'has no'} "
                          f"'cls' token but the model {'has' if lay['cls'] else 'has no'} "
                          f"class token: build the model with a matching pool_type")
  if lay["learn_posemb"]:
    out[vit.POSEMB_PATH] = src.get("pos_embedding", purpose="learned position embedding")
  elif src.has("pos_embedding"):
    raise ConversionError("big_vision checkpoint has a learned 'pos_embedding' but the model "
                          "was built with posemb='sincos2d'")
  if lay["cls"]:
    cls = src.get("cls")
    if src.has("pos_embedding_cls"):
      cls = cls + src.get("pos_embedding_cls")
    out[vit.CLS_PATH] = cls
  elif src.has("pos_embedding_cls"):
    src.get("pos_embedding_cls")  # old layout without a class token: row unused, as big_vision
  return out


def _bv_attention(src: vit.CheckpointParams, out: dict, lay: Mapping[str, Any], prefix: str,
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
  out[f"{name}/out_kernel"] = vit.expect_shape(ok, (heads, d // heads, d),
                                               f"{prefix}/out/kernel", "big_vision").reshape(d, d)
  out[f"{name}/out_bias"] = src.get(f"{prefix}/out/bias")


def _bv_dense(src: vit.CheckpointParams, out: dict, prefix: str, name: str) -> None:
  out[f"{name}/kernel"] = src.get(f"{prefix}/kernel")
  out[f"{name}/bias"] = src.get(f"{prefix}/bias")


def _bv_norm(src: vit.CheckpointParams, out: dict, prefix: str, name: str) -> None:
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
  vit.assign_weights(model, big_vision_to_keras(params, model, strict=strict), method=method)
