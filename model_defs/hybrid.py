"""Hybrid ConvNet-ViT family: variant table, Keras 3 builder, analytic counter.

A hybrid is a convolutional stem (``model_defs.hybrid_stems``), then the ``embedding`` conv
(``patch_size`` x ``patch_size`` patches of the stem's map, as timm's ``HybridEmbed``), then
``model_defs.vit``'s encoder unchanged (tokens, position embedding, class token, blocks,
pooling, head; the same layer names, so ``model_defs.converters.vit`` reads the ViT part). The
config is a ViT config plus a ``stem`` dict, and every ViT override applies (docs/hybrids.md).

Sources: V = Dosovitskiy et al. 2021 (ViT), Section 3.1 "Hybrid Architecture" and timm's
``vision_transformer_hybrid`` (AugReg weights, Steiner et al. 2021); X = Xiao et al. 2021,
arXiv:2106.14881, Table 1 and Section 3; this kit for the NF-stem hybrids.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras

from model_defs import hybrid_stems, registry, vit
from model_defs.stats import ModelStats, Tally
from model_defs.vit import ViTRow

FAMILY = "hybrid"

_RESNET_SRC = "V Section 3.1; timm {}"
_XIAO_SRC = "X Table 1 and Section 3 (ViT_C-{})"
# Xiao et al. Section 3: the 1GF/4GF stems are four stride-2 convs; 18GF (and 36GF, "the same
# stem as ViTC-18GF") six, stride 2 doubling the channels and stride 1 keeping them.
_XIAO_SMALL_STRIDES = (2, 2, 2, 2)
_XIAO_LARGE_STEM = dict(kind="conv", channels=(64, 128, 128, 256, 256, 512),
                        strides=(2, 2, 1, 2, 1, 2))


def _xiao(size, width, depth, mlp_ratio, heads, stem):
  return (ViTRow(f"vit_c{size.lower()}", 1, width, depth, mlp_ratio * width, heads,
                 _XIAO_SRC.format(size), test_resolution=224), stem)


# (ViT row: patch_size is the embedding's patch of the stem's map; stem)
HYBRID_TABLE: tuple[tuple[ViTRow, Mapping[str, Any]], ...] = (
    (ViTRow("vit_s_r26_s32", 1, 384, 12, 1536, 6, _RESNET_SRC.format("vit_small_r26_s32_224")),
     dict(kind="resnetv2", layers=(2, 2, 2, 2))),
    (ViTRow("vit_b_r50_s16", 1, 768, 12, 3072, 12, _RESNET_SRC.format("vit_base_r50_s16_224")),
     dict(kind="resnetv2", layers=(3, 4, 9))),
    (ViTRow("vit_b_r50_s16_384", 1, 768, 12, 3072, 12,
            _RESNET_SRC.format("vit_base_r50_s16_384"), train_resolution=384),
     dict(kind="resnetv2", layers=(3, 4, 9))),
    _xiao("1GF", 192, 11, 3, 3, dict(kind="conv", channels=(24, 48, 96, 192),
                                     strides=_XIAO_SMALL_STRIDES)),
    _xiao("4GF", 384, 11, 3, 6, dict(kind="conv", channels=(48, 96, 192, 384),
                                     strides=_XIAO_SMALL_STRIDES)),
    _xiao("18GF", 768, 11, 4, 12, _XIAO_LARGE_STEM),
    _xiao("36GF", 1024, 13, 4, 16, _XIAO_LARGE_STEM),
)


def nf_stem(nfnet_name: str) -> dict[str, Any]:
  """An NF stem: the stem and first stage of a registered NFNet (no stochastic depth)."""
  return dict(kind="nf", nfnet_name=nfnet_name,
              nfnet={**registry.get_spec(nfnet_name).config, "stochdepth_rate": 0.0})


# ViT-B on NFNet-F0's stem and stage 1 (stride 4, 256 channels): 4x4 patches of that map give
# ViT-B/16's 14x14 tokens at 224 px; one block fewer for the stem's compute, as Xiao et al.
_NF_SRC = "this kit: NF stem ({}: stem and stage 1) under a ViT, one block fewer"
NF_TABLE: tuple[tuple[ViTRow, Mapping[str, Any]], ...] = (
    (ViTRow("vit_b_nf_f0_s16", 4, 768, 11, 3072, 12, _NF_SRC.format("nfnet_f0")),
     nf_stem("nfnet_f0")),
)

# The study's third arm at 32 px: each rung is the NF stem of its ladder's narrow mini F0
# (stride 4: an 8x8 map, so 1x1 patches give the mini ViTs' 64 tokens) under its mini ViT with
# one block fewer (2); MACs within 15% of both ladders' (10 classes; docs/hybrids.md). The
# widest rung is wider than vit_mini_xs and the narrowest has a 3x MLP (Xiao et al.'s 1GF/4GF
# ratio): the stem's cost hardly shrinks with the ladder (its first three convs are fixed).
_MINI_SRC = "this kit: NF stem of {} under a 2-block mini ViT (1x1 patches @ 32 px)"
MINI_TABLE: tuple[tuple[ViTRow, Mapping[str, Any]], ...] = tuple(
    (ViTRow(name, 1, width, 2, mlp_dim, max(width // 16, 1), _MINI_SRC.format(nf),
            pool_type="gap", posemb="sincos2d", train_resolution=32, test_resolution=32,
            mini=True), nf_stem(nf))
    for name, nf, width, mlp_dim in (
        ("hybrid_mini_pico", "nfnet_mini_f0w25", 8, 24),    # 0.37M MACs @ 32 px, 10 classes
        ("hybrid_mini_nano", "nfnet_mini_f0w38", 12, 48),   # 0.61M
        ("hybrid_mini_mu", "nfnet_mini_f0w50", 16, 64),     # 0.91M
        ("hybrid_mini_xs", "nfnet_mini_f0w75", 28, 112),    # 2.08M
        ("hybrid_mini_ti", "nfnet_mini_f0", 36, 144),       # 3.21M
    )
)


# --------------------------------------------------------------------------------------
# Builder and counter
# --------------------------------------------------------------------------------------

def row_config(row: ViTRow, stem: Mapping[str, Any]) -> dict[str, Any]:
  """The ModelSpec config of a table row: the ViT's config plus the ``stem``."""
  return {**vit.row_config(row), "stem": stem}


def build_hybrid(config: Mapping[str, Any], num_classes: int, name: str = "hybrid",
                 **overrides) -> keras.Model:
  """Builds a hybrid ViT as a functional Keras model.

  Args:
    config: a row config (``row_config``).
    num_classes: classifier outputs; 0 = no ``head`` (pooled features out).
    name: model name.
    **overrides: any of ``model_defs.vit.OVERRIDABLE`` (they act on the ViT part).

  Returns:
    A keras.Model mapping (B, image_size, image_size, 3) images to (B, num_classes) logits.
  """
  cfg = vit.resolve_config(config, **overrides)
  images = keras.Input((cfg["image_size"], cfg["image_size"], 3), name="images")
  x = hybrid_stems.build_stem(images, cfg["stem"])
  return vit.build_encoder(images, vit.patch_embedding(cfg)(x), cfg, num_classes, name)


def count_hybrid(config: Mapping[str, Any], resolution: int, num_classes: int,
                 name: str = "hybrid", **overrides) -> ModelStats:
  """Exact parameter count (every Keras weight) and forward MACs per image of ``build_hybrid``.

  The stem's convs, then ``model_defs.vit.count_encoder``'s convention. Group/batch norms add
  parameters but no MACs; a batch norm's moving mean and variance count as parameters, as
  Keras' ``count_params`` does (``hybrid_stems.batch_norm_statistics`` says how many).
  """
  cfg = vit.resolve_counted_config(config, resolution, overrides)
  t = Tally()
  size, channels = hybrid_stems.count_stem(t, cfg["stem"], resolution)
  patch = cfg["patch_size"]
  grid = vit.grid_size(size, patch)
  t.conv(grid, grid, patch, channels, cfg["width"])
  vit.count_encoder(t, cfg, grid, num_classes)
  return t.result(name, resolution, num_classes)


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------

def _describe(row: ViTRow, stem: Mapping[str, Any]) -> str:
  if stem["kind"] == "resnetv2":
    what = f"ResNet-v2 stem, stages {list(stem['layers'])}"
  elif stem["kind"] == "conv":
    what = f"conv stem {list(stem['channels'])}, strides {list(stem['strides'])}"
  else:
    what = f"NF stem of {stem['nfnet_name']} (stem and stage 1)"
  return (f"{what}; embedding patch {row.patch}; ViT width {row.width}, depth {row.depth}, "
          f"mlp {row.mlp_dim}, heads {row.heads}, {row.pool_type} head, {row.posemb} posemb")


def variant_specs() -> list[registry.ModelSpec]:
  """One ModelSpec per row of ``HYBRID_TABLE``, ``NF_TABLE`` and ``MINI_TABLE``."""
  return [registry.ModelSpec(
      name=row.name, family=FAMILY, config=row_config(row, stem), builder=build_hybrid,
      counter=count_hybrid, train_resolution=row.train_resolution,
      test_resolution=row.test_resolution, source=row.source, mini=row.mini,
      description=_describe(row, stem)) for row, stem in HYBRID_TABLE + NF_TABLE + MINI_TABLE]


registry.register_family(FAMILY, variant_specs())
