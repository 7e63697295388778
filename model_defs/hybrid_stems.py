"""The convolutional stems of the hybrid ViTs (``model_defs.hybrid``): layers, builders, counts.

A stem maps images to a (B, H/s, W/s, C) feature map; the hybrid's ``embedding`` conv then
turns it into tokens for the ViT encoder of ``model_defs.vit``. Three kinds, each a dict
``stem`` in the variant's config with a ``kind`` key:

  resnetv2  Dosovitskiy et al. 2021 (Section 3.1, "Hybrid Architecture"): BiT's ResNet-v2
            (Kolesnikov et al. 2020) as timm's ``vit_*_r26/r50`` backbones: a 7x7/2 weight-
            standardised conv, group norm + ReLU and a 3x3/2 max-pool, then bottleneck stages
            of ``layers`` blocks (post-activation, as timm's ``preact=False``).
  conv      Xiao et al. 2021 ("Early convolutions help transformers see better"): 3x3 convs
            (no bias) with batch norm and ReLU; the 1x1 conv that ends their stem is the
            hybrid's ``embedding``.
  nf        This kit: the NFNet stem and its first stage (``model_defs.nfnet``'s own layers:
            scaled weight-standardised convs, no normalisation).

Layer names (the weight contract of ``model_defs.converters.hybrid``): ``stem_conv``,
``stem_norm``, ``stem_pool`` and ``stage{s}_block{b}_{conv1,norm1,...,downsample_conv,
downsample_norm}`` (resnetv2); ``stem_conv{i}``, ``stem_bn{i}`` (conv); NFNet's names (nf).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
from keras import layers, ops

from model_defs import nfnet
from model_defs.common import conv_output_size
from model_defs.nfnet_layers import kernel_moments
from model_defs.stats import Tally

STEM_KINDS = ("resnetv2", "conv", "nf")
# timm's hybrid backbones: StdConv2dSame(eps=1e-8) and GroupNormAct(32 groups, eps=1e-5).
RESNETV2_WS_EPS = 1e-8
RESNETV2_GROUPS = 32
RESNETV2_GN_EPS = 1e-5
RESNETV2_STEM_WIDTH = 64
# Xiao et al.'s stems are pycls' ``norm2d``: BatchNorm2d(eps=1e-5, momentum=0.1).
CONV_BN_EPS = 1e-5


@keras.saving.register_keras_serializable(package="hybrid")
class StdConv2D(layers.Layer):
  """BiT's weight-standardised conv (timm ``StdConv2dSame``), TF 'same' padding, no bias.

  Each output channel's kernel is ``(w - mean) / sqrt(var + eps)`` over its fan-in: unlike
  NFNet's ``ScaledWSConv2D`` there is no ``1/sqrt(fan_in)`` scale and no gain, because group
  norm follows every conv.
  """

  def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1,
               eps: float = RESNETV2_WS_EPS, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.kernel_size = int(filters), int(kernel_size)
    self.strides, self.eps = int(strides), float(eps)

  def build(self, input_shape):
    k = self.kernel_size
    self.kernel = self.add_weight(
        name="kernel", shape=(k, k, int(input_shape[-1]), self.filters),
        initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"))

  def call(self, x):
    centered, var = kernel_moments(self.kernel)
    kernel = ops.cast(centered * ops.rsqrt(var + self.eps), x.dtype)
    return ops.conv(x, kernel, strides=self.strides, padding="same")

  def compute_output_shape(self, input_shape):
    size = [conv_output_size(s, self.kernel_size, self.strides) for s in input_shape[1:3]]
    return (input_shape[0], *size, self.filters)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "eps": self.eps}


def build_stem(images, stem: Mapping[str, Any]):
  """The stem's feature map of ``images``."""
  return _KINDS[_kind(stem)][0](images, stem)


def count_stem(tally: Tally, stem: Mapping[str, Any], resolution: int) -> tuple[int, int]:
  """Adds the stem's parameters and MACs to ``tally``; returns (map size, channels)."""
  return _KINDS[_kind(stem)][1](tally, stem, int(resolution))


def stride(stem: Mapping[str, Any]) -> int:
  """Input pixels per step of the stem's map (per side)."""
  kind = _kind(stem)
  if kind == "resnetv2":
    return 4 * 2 ** (len(stem["layers"]) - 1)  # the stem's conv and pool, then stages 2..
  if kind == "conv":
    return int(math.prod(stem["strides"]))
  return int(math.prod(nfnet.STEM_STRIDES))  # NFNet's stage 1 keeps the stem's size


def _kind(stem: Mapping[str, Any]) -> str:
  if stem.get("kind") not in STEM_KINDS:
    raise ValueError(f"stem kind must be one of {STEM_KINDS}, got {stem.get('kind')!r}")
  return stem["kind"]


# ------------------------------------------------------------------------------ resnetv2

def resnetv2_stages(stem: Mapping[str, Any]) -> list[tuple[int, int, int, int]]:
  """(blocks, mid channels, out channels, stride) per stage: widths 256 x 2^s, bottleneck
  1/4, the first stage at stride 1 (after the stem's pool), the others at 2."""
  return [(depth, 64 * 2 ** s, 256 * 2 ** s, 1 if s == 0 else 2)
          for s, depth in enumerate(stem["layers"])]


def _group_norm(x, name, relu=True):
  x = layers.GroupNormalization(RESNETV2_GROUPS, epsilon=RESNETV2_GN_EPS, name=name)(x)
  return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _build_resnetv2(x, stem):
  x = _group_norm(StdConv2D(RESNETV2_STEM_WIDTH, 7, 2, name="stem_conv")(x), "stem_norm")
  x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
  for s, (depth, mid, out, stride) in enumerate(resnetv2_stages(stem), start=1):
    for b in range(1, depth + 1):
      p = f"stage{s}_block{b}"
      shortcut = x
      if b == 1:  # channels (and, after stage 1, the size) change: a projection
        shortcut = StdConv2D(out, 1, stride, name=f"{p}_downsample_conv")(x)
        shortcut = _group_norm(shortcut, f"{p}_downsample_norm", relu=False)
      y = _group_norm(StdConv2D(mid, 1, name=f"{p}_conv1")(x), f"{p}_norm1")
      y = StdConv2D(mid, 3, stride if b == 1 else 1, name=f"{p}_conv2")(y)
      y = _group_norm(y, f"{p}_norm2")
      y = _group_norm(StdConv2D(out, 1, name=f"{p}_conv3")(y), f"{p}_norm3", relu=False)
      x = layers.ReLU(name=f"{p}_out")(layers.Add(name=f"{p}_add")([y, shortcut]))
  return x


_CONV_GN = dict(bias=False, extra_params_per_out=2)  # a conv, then group norm's scale and offset


def _count_resnetv2(t, stem, size):
  size = conv_output_size(size, 7, 2)
  t.conv(size, size, 7, 3, RESNETV2_STEM_WIDTH, **_CONV_GN)
  size, channels = conv_output_size(size, 3, 2), RESNETV2_STEM_WIDTH
  for depth, mid, out, stride in resnetv2_stages(stem):
    for b in range(depth):
      out_size = conv_output_size(size, 3, stride if b == 0 else 1)
      if b == 0:
        t.conv(out_size, out_size, 1, channels, out, **_CONV_GN)
      t.conv(size, size, 1, channels, mid, **_CONV_GN)
      t.conv(out_size, out_size, 3, mid, mid, **_CONV_GN)
      t.conv(out_size, out_size, 1, mid, out, **_CONV_GN)
      size, channels = out_size, out
  return size, channels


# ---------------------------------------------------------------------------------- conv

def _build_conv(x, stem):
  for i, (width, stride) in enumerate(zip(stem["channels"], stem["strides"]), start=1):
    x = layers.Conv2D(width, 3, stride, padding="same", use_bias=False, name=f"stem_conv{i}")(x)
    x = layers.BatchNormalization(epsilon=CONV_BN_EPS, momentum=0.9, name=f"stem_bn{i}")(x)
    x = layers.ReLU(name=f"stem_relu{i}")(x)
  return x


def _count_conv(t, stem, size):
  channels = 3
  for width, stride in zip(stem["channels"], stem["strides"]):
    size = conv_output_size(size, 3, stride)
    # Batch norm: scale and offset, and its moving mean and variance (Keras weights too).
    t.conv(size, size, 3, channels, width, bias=False, extra_params_per_out=4)
    channels = width
  return size, channels


def batch_norm_statistics(stem: Mapping[str, Any]) -> int:
  """How many of a stem's counted weights are batch-norm moving statistics (not trained)."""
  return 2 * sum(stem["channels"]) if stem["kind"] == "conv" else 0


# ------------------------------------------------------------------------------------ nf

def nf_stage1(stem: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """The resolved NFNet config of an NF stem and the block plan of its first stage."""
  cfg = nfnet.resolve_config(stem["nfnet"])
  return cfg, [b for b in nfnet.block_plan(cfg) if b["name"].startswith("stage1_")]


def _build_nf(x, stem):
  cfg, blocks = nf_stage1(stem)
  return nfnet.build_stem_and_blocks(x, cfg, blocks)


def _count_nf(t, stem, size):
  cfg, blocks = nf_stage1(stem)
  return nfnet.count_stem_and_blocks(t, cfg, size, blocks)


_KINDS = {"resnetv2": (_build_resnetv2, _count_resnetv2), "conv": (_build_conv, _count_conv),
          "nf": (_build_nf, _count_nf)}
