"""Vision Transformer (ViT) family: variant table, Keras 3 builder, analytic counter.

The architecture follows big_vision's ``models/vit.py`` (Zhai et al. 2022,
Alabdulmohsin et al. 2023) and timm's ``VisionTransformer`` (pre-norm blocks,
LayerNorm eps 1e-6, exact GELU, qkv bias), so that checkpoints of both load
exactly (see ``model_defs.converters.vit``).

Layout of the Keras model (layer names are part of the weight contract used by
the converters):

  embedding           Conv2D(patch x patch, stride patch, 'valid') -> (B, N, D)
  pos_embedding       learned (1, N, D) table or fixed 2-D sin-cos; added *before*
                      the class token is prepended (big_vision order; a timm
                      class-token position row is folded into ``cls`` on import)
  cls                 class token (pool_type 'token' only)
  encoderblock_{i}_*  ln0 -> attn -> (+) -> ln1 -> mlp_fc1 -> gelu -> mlp_fc2 -> (+)
  encoder_norm        final LayerNorm
  pooling             'token': x[:, 0]; 'gap': mean over tokens (after the final
                      norm, as big_vision); 'map': attention pooling with a
                      learned probe (map_probe, map_attn, map_ln, map_fc1/2)
  pre_logits          optional Dense(representation_size) + tanh
  head                Dense(num_classes)

All layers use keras.layers / keras.ops only (the ViT's own layers are in
``model_defs.vit_layers``), so the model runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import keras
from keras import layers

from model_defs import common, registry
from model_defs.common import StochasticDepth, conv_output_size
from model_defs.stats import ModelStats, Tally
from model_defs.vit_layers import (AddPositionEmbedding, Attention, Gelu, MeanTokens,
                                   PrependToken, TakeToken)

FAMILY = "vit"
POOL_TYPES = ("token", "gap", "map")
POSEMB_TYPES = ("learn", "sincos2d")

# Options a caller may override at build/count time (model_defs.build(name, **overrides)).
OVERRIDABLE = ("image_size", "pool_type", "posemb", "representation_size", "dropout_rate",
               "stochdepth_rate", "head_zeroinit", "qkv_bias", "layer_norm_eps",
               "gelu_approximate", "fused_attention")


# --------------------------------------------------------------------------------------
# Variant table (data). One row per size; adding a size is adding a row.
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ViTRow:
  """One ViT size: the numbers that define it and where they come from."""
  name: str
  patch: int
  width: int
  depth: int
  mlp_dim: int
  heads: int
  source: str
  pool_type: str = "token"
  posemb: str = "learn"
  train_resolution: int = 224
  test_resolution: int = 384
  mini: bool = False


# Z = Zhai et al. 2022 Table 2, S = Alabdulmohsin et al. 2023, BV = big_vision decode_variant,
# V = Dosovitskiy et al. 2021 (H/14). Test resolution: Z fine-tunes at 384 px below g and at
# 518 px for g and G; SoViT's headline ImageNet number (90.3%) is also at 518 px (S Table 1).
# Heads: Ti..H use the class token (ViT/AugReg/timm checkpoints); g, G (Z: "MAP head instead
# of a [class] token") and So400m (S) use MAP, as trained in big_vision.
VIT_TABLE: tuple[ViTRow, ...] = (
    ViTRow("vit_ti16", 16, 192, 12, 768, 3, "Z Table 2; BV 'Ti/16'; timm vit_tiny_patch16_224"),
    ViTRow("vit_s16", 16, 384, 12, 1536, 6, "Z Table 2; BV 'S/16'; timm vit_small_patch16_224"),
    ViTRow("vit_b16", 16, 768, 12, 3072, 12, "Z Table 2; BV 'B/16'; timm vit_base_patch16_224"),
    ViTRow("vit_b32", 32, 768, 12, 3072, 12, "Z Table 2; BV 'B/32'; timm vit_base_patch32_224"),
    ViTRow("vit_l16", 16, 1024, 24, 4096, 16, "Z Table 2; BV 'L/16'; timm vit_large_patch16_224"),
    ViTRow("vit_h14", 14, 1280, 32, 5120, 16, "V Table 1; BV 'H/14'; timm vit_huge_patch14_224"),
    ViTRow("vit_giant14", 14, 1408, 40, 6144, 16, "Z Table 2 (ViT-g/14); BV 'g/14'",
           pool_type="map", test_resolution=518),
    ViTRow("vit_gigantic14", 14, 1664, 48, 8192, 16, "Z Table 2 (ViT-G/14); BV 'G/14'",
           pool_type="map", test_resolution=518),
    ViTRow("vit_so400m14", 14, 1152, 27, 4304, 16, "S (SoViT-400m/14); BV 'So400m/14'",
           pool_type="map", test_resolution=518),
)

# CPU-scale family: 32 px, patch 4 (8x8 = 64 tokens), MLP ratio 4, head dim 16. GAP head and
# fixed sin-cos position embedding as in big_vision's short-schedule plain-ViT baseline
# (Beyer et al. 2022, "Better plain ViT baselines for ImageNet-1k"), which trains better than
# a class token with a learned table when data and steps are few. Sizes are chosen so the
# per-image MACs at 32 px (3.3M to 39.7M) span the mini NFNets' range (3.75M to 37.4M).
_MINI_SRC = "this kit: CPU-scale ViT (patch 4 @ 32 px, mlp 4x, head dim 16)"
VIT_MINI_TABLE: tuple[ViTRow, ...] = tuple(
    ViTRow(name, 4, width, depth, 4 * width, max(width // 16, 1), _MINI_SRC, pool_type="gap",
           posemb="sincos2d", train_resolution=32, test_resolution=32, mini=True)
    for name, width, depth in (
        # pico to xs: below Ti, matched to the narrow mini NFNets (the study's ladder).
        ("vit_mini_femto", 4, 3),  # ~0.15M MACs @ 32 px (10 classes); the long preset only
        ("vit_mini_pico", 8, 3),   # ~0.37M; one head
        ("vit_mini_nano", 12, 3),  # ~0.66M; one head
        ("vit_mini_mu", 16, 3),   # ~1.0M; one head
        ("vit_mini_xs", 24, 3),   # ~2.0M; one head of 24
        ("vit_mini_ti", 32, 3),   # ~3.3M MACs @ 32 px (1000 classes)
        ("vit_mini_s", 48, 3),    # ~6.7M
        ("vit_mini_m", 64, 4),    # ~15M
        ("vit_mini_b", 80, 4),    # ~23M
        ("vit_mini_l", 96, 5),    # ~40M
    )
)

_DEFAULTS = dict(
    representation_size=None,
    dropout_rate=0.0,
    stochdepth_rate=0.0,
    head_zeroinit=True,      # big_vision default; the logits start at 0.
    qkv_bias=True,
    layer_norm_eps=1e-6,     # timm and flax (big_vision) both use 1e-6.
    gelu_approximate=False,  # timm: exact erf GELU; flax nn.gelu (big_vision) is the tanh form.
    fused_attention=False,   # explicit matmul-softmax-matmul (fast on CPU); True: one fused op.
)


def row_config(row: ViTRow) -> dict[str, Any]:
  """The ModelSpec config of a table row (architecture + default options)."""
  return dict(patch_size=row.patch, width=row.width, depth=row.depth, mlp_dim=row.mlp_dim,
              num_heads=row.heads, pool_type=row.pool_type, posemb=row.posemb,
              image_size=row.train_resolution, **_DEFAULTS)


def resolve_config(config: Mapping[str, Any], **overrides) -> dict[str, Any]:
  """Merges overrides (any of ``OVERRIDABLE``; None keeps the default, except for
  ``representation_size`` where None turns the pre-logits layer off) into a config.

  Raises:
    ValueError: for an unknown override or an invalid option value.
  """
  return common.resolve_config(config, overrides, family="ViT", allowed=OVERRIDABLE,
                               normalise=_normalise_options,
                               none_overrides=("representation_size",))


def _normalise_options(cfg: dict[str, Any]) -> None:
  """Checks head, position embedding and sizes; spells options canonically, in place."""
  if cfg["pool_type"] == "tok":  # big_vision's spelling
    cfg["pool_type"] = "token"
  if cfg["pool_type"] not in POOL_TYPES:
    raise ValueError(f"pool_type must be one of {POOL_TYPES}, got {cfg['pool_type']!r}")
  if cfg["posemb"] not in POSEMB_TYPES:
    raise ValueError(f"posemb must be one of {POSEMB_TYPES}, got {cfg['posemb']!r}")
  if cfg["width"] % cfg["num_heads"]:
    raise ValueError(f"width {cfg['width']} is not divisible by num_heads {cfg['num_heads']}")
  if cfg["posemb"] == "sincos2d" and cfg["width"] % 4:
    raise ValueError(f"sincos2d position embedding needs width % 4 == 0, got {cfg['width']}")
  cfg["image_size"] = int(cfg["image_size"])
  if cfg["image_size"] < cfg["patch_size"]:
    raise ValueError(f"image_size {cfg['image_size']} is smaller than the patch "
                     f"size {cfg['patch_size']}")
  rep = cfg["representation_size"]
  if rep is True:  # big_vision: rep_size=True means the model width
    cfg["representation_size"] = cfg["width"]
  elif rep in (False, 0):
    cfg["representation_size"] = None


def grid_size(image_size: int, patch_size: int) -> int:
  """Patches per side; a 'valid' patch conv drops any remainder pixels."""
  return conv_output_size(int(image_size), int(patch_size), int(patch_size), padding="valid")


# --------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------

def _dense(units, name, zero_kernel=False):
  # big_vision's MlpBlock init: xavier-uniform kernel, N(0, 1e-6) bias.
  return layers.Dense(
      units, name=name,
      kernel_initializer="zeros" if zero_kernel else "glorot_uniform",
      bias_initializer=keras.initializers.RandomNormal(stddev=1e-6))


def _mlp(x, cfg, prefix, dropout_rate):
  y = _dense(cfg["mlp_dim"], f"{prefix}_fc1")(x)
  y = Gelu(cfg["gelu_approximate"], name=f"{prefix}_gelu")(y)
  if dropout_rate:
    y = layers.Dropout(dropout_rate, name=f"{prefix}_drop")(y)
  return _dense(cfg["width"], f"{prefix}_fc2")(y)


def _ln(cfg, name):
  return layers.LayerNormalization(epsilon=cfg["layer_norm_eps"], name=name)


def _encoder_block(x, cfg, prefix, drop, stochdepth_rate):
  """Pre-norm block: x + attn(ln0(x)), then + mlp(ln1(x)); each branch dropped, then drop-path."""
  for index, branch in enumerate(("attn", "mlp")):
    y = _ln(cfg, f"{prefix}_ln{index}")(x)
    if branch == "attn":
      y = Attention(cfg["num_heads"], cfg["qkv_bias"], cfg["fused_attention"],
                    name=f"{prefix}_attn")(y)
    else:
      y = _mlp(y, cfg, f"{prefix}_mlp", drop)
    if drop:
      y = layers.Dropout(drop, name=f"{prefix}_{branch}_out_drop")(y)
    if stochdepth_rate:
      y = StochasticDepth(stochdepth_rate, scale_by_keep=True, name=f"{prefix}_droppath{index}")(y)
    x = layers.Add(name=f"{prefix}_add{index}")([x, y])
  return x


def _pool(x, cfg):
  """(B, N, D) tokens -> (B, D) features: class token, mean, or big_vision's MAP head."""
  if cfg["pool_type"] == "token":
    return TakeToken(name="take_cls")(x)
  if cfg["pool_type"] == "gap":
    return MeanTokens(name="gap")(x)
  # 'map': big_vision MAPHead (no dropout inside, as there)
  lim = math.sqrt(6.0 / (1 + cfg["width"]))  # flax xavier-uniform on a (1, 1, D) param
  probe = PrependToken(keras.initializers.RandomUniform(-lim, lim), replace=True,
                       name="map_probe")(x)
  z = Attention(cfg["num_heads"], cfg["qkv_bias"], cfg["fused_attention"],
                name="map_attn")([probe, x])
  y = _ln(cfg, "map_ln")(z)
  y = _mlp(y, cfg, "map_mlp", 0.0)
  return TakeToken(name="map_take")(layers.Add(name="map_add")([z, y]))


def build_vit(config: Mapping[str, Any], num_classes: int, name: str = "vit",
              **overrides) -> keras.Model:
  """Builds a ViT as a functional Keras model.

  Args:
    config: a row config (``row_config``): patch_size, width, depth, mlp_dim,
      num_heads plus default options.
    num_classes: classifier outputs; 0 = no ``head`` (the pooled, pre-logits features out).
    name: model name.
    **overrides: any of ``OVERRIDABLE``: image_size (fixes the position-embedding
      grid), pool_type ('token' | 'gap' | 'map'), posemb ('learn' | 'sincos2d'),
      representation_size (pre-logits Dense + tanh; None/False off, True = width),
      dropout_rate, stochdepth_rate (linearly increasing over depth, 0 at block 0),
      head_zeroinit, qkv_bias, layer_norm_eps, gelu_approximate, fused_attention
      (``keras.ops.dot_product_attention``; same weights and results).

  Returns:
    A keras.Model mapping (B, image_size, image_size, 3) images to (B, num_classes) logits.
  """
  cfg = resolve_config(config, **overrides)
  images = keras.Input((cfg["image_size"], cfg["image_size"], 3), name="images")
  return build_encoder(images, patch_embedding(cfg)(images), cfg, num_classes, name)


def patch_embedding(cfg: Mapping[str, Any]) -> layers.Conv2D:
  """The ``embedding`` conv: ``patch_size`` x ``patch_size`` patches (of the image or, in a
  hybrid, of its stem's map) to ``width`` channels."""
  patch = cfg["patch_size"]
  return layers.Conv2D(cfg["width"], patch, strides=patch, padding="valid", name="embedding",
                       kernel_initializer="lecun_normal")


def build_encoder(images, x, cfg: Mapping[str, Any], num_classes: int,
                  name: str) -> keras.Model:
  """Everything after the stem: a (B, grid, grid, width) map of ``images`` -> the model.

  Tokens, position embedding, class token, encoder blocks, final norm, pooling and head; the
  hybrids (``model_defs.hybrid``) put their convolutional stems in front of it.
  """
  grid = int(x.shape[1])
  drop = float(cfg["dropout_rate"])
  x = layers.Reshape((grid * grid, cfg["width"]), name="to_tokens")(x)
  x = AddPositionEmbedding(grid, cfg["posemb"], name="pos_embedding")(x)
  if cfg["pool_type"] == "token":
    x = PrependToken("zeros", name="cls")(x)
  if drop:
    x = layers.Dropout(drop, name="embedding_drop")(x)
  rates = common.stochdepth_rates(float(cfg["stochdepth_rate"]), cfg["depth"],
                                  last_block_gets_rate=True)
  for i, rate in enumerate(rates):
    x = _encoder_block(x, cfg, f"encoderblock_{i}", drop, rate)
  x = _ln(cfg, "encoder_norm")(x)
  x = _pool(x, cfg)
  if cfg["representation_size"]:
    x = layers.Dense(cfg["representation_size"], activation="tanh", name="pre_logits")(x)
  if not num_classes:
    return keras.Model(images, x, name=name)
  logits = layers.Dense(num_classes, name="head",
                        kernel_initializer="zeros" if cfg["head_zeroinit"] else "glorot_uniform",
                        bias_initializer="zeros")(x)
  return keras.Model(images, logits, name=name)


# --------------------------------------------------------------------------------------
# Analytic counter
# --------------------------------------------------------------------------------------

def count_vit(config: Mapping[str, Any], resolution: int, num_classes: int,
              name: str = "vit", **overrides) -> ModelStats:
  """Exact parameter count and forward MACs per image of ``build_vit``.

  MACs count the patch-embedding conv, every dense projection (qkv, out, MLP,
  MAP head, pre-logits, classifier; none when ``num_classes`` is 0) and both attention
  matmuls (QK^T and AV);
  LayerNorm, softmax, GELU, additions and pooling are not counted.
  """
  cfg = resolve_counted_config(config, resolution, overrides)
  patch = cfg["patch_size"]
  grid = grid_size(resolution, patch)
  t = Tally()
  t.conv(grid, grid, patch, 3, cfg["width"])
  count_encoder(t, cfg, grid, num_classes)
  return t.result(name, resolution, num_classes)


def resolve_counted_config(config: Mapping[str, Any], resolution: int,
                           overrides: Mapping[str, Any]) -> dict[str, Any]:
  """``resolve_config`` at ``resolution``; an ``image_size`` override must agree with it."""
  if "image_size" in overrides and overrides["image_size"] is not None:
    if int(overrides["image_size"]) != int(resolution):
      raise ValueError(f"image_size={overrides['image_size']} conflicts with "
                       f"resolution={resolution}")
  return resolve_config(config, **{**overrides, "image_size": resolution})


def count_encoder(t: Tally, cfg: Mapping[str, Any], grid: int, num_classes: int) -> None:
  """Adds ``build_encoder``'s parameters and MACs on a ``grid x grid`` map to ``t``."""
  d, mlp = cfg["width"], cfg["mlp_dim"]
  n = grid * grid
  if cfg["posemb"] == "learn":
    t.add(params=n * d)
  tokens = n + (1 if cfg["pool_type"] == "token" else 0)
  if cfg["pool_type"] == "token":
    t.add(params=d)
  qkv_bias = bool(cfg["qkv_bias"])
  for _ in range(cfg["depth"]):
    t.add(params=2 * d)                                   # ln0
    t.dense(d, 3 * d, bias=qkv_bias, tokens=tokens)       # fused q, k, v
    t.add(macs=2 * tokens * tokens * d)                   # QK^T and AV over all heads
    t.dense(d, d, tokens=tokens)                          # output projection
    t.add(params=2 * d)                                   # ln1
    t.dense(d, mlp, tokens=tokens)
    t.dense(mlp, d, tokens=tokens)
  t.add(params=2 * d)                                     # encoder_norm
  feat = d
  if cfg["pool_type"] == "map":
    t.add(params=d)                                       # probe
    t.dense(d, d, bias=qkv_bias, tokens=1)                # query from the probe
    t.dense(d, 2 * d, bias=qkv_bias, tokens=n)            # keys and values from the tokens
    t.add(macs=2 * n * d)                                 # one query: QK^T and AV
    t.dense(d, d, tokens=1)                               # output projection
    t.add(params=2 * d)                                   # map_ln
    t.dense(d, mlp, tokens=1)
    t.dense(mlp, d, tokens=1)
  if cfg["representation_size"]:
    t.dense(d, cfg["representation_size"])
    feat = cfg["representation_size"]
  t.dense(feat, num_classes)


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------

def _describe(row: ViTRow) -> str:
  return (f"ViT patch {row.patch}, width {row.width}, depth {row.depth}, mlp {row.mlp_dim}, "
          f"heads {row.heads}, {row.pool_type} head, {row.posemb} posemb")


def variant_specs() -> list[registry.ModelSpec]:
  """One ModelSpec per row of ``VIT_TABLE`` and ``VIT_MINI_TABLE``."""
  return [registry.ModelSpec(
      name=row.name, family=FAMILY, config=row_config(row), builder=build_vit,
      counter=count_vit, train_resolution=row.train_resolution,
      test_resolution=row.test_resolution, source=row.source, mini=row.mini,
      description=_describe(row)) for row in VIT_TABLE + VIT_MINI_TABLE]


registry.register_family(FAMILY, variant_specs())
