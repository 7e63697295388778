"""NFNet family (Brock et al. 2021): variant table, Keras 3 builder, analytic counter.

The architecture follows the official DeepMind code (``nfnets/nfnet.py``, ``base.py``);
see ``docs/nfnet.md``. Layout of the Keras model (layer names are part of the weight
contract used by ``model_defs.converters.nfnet`` and by tests that tap block outputs):

  stem_conv1..stem_conv4   3x3 WS convs (16, 32, 64, width[0]/2; strides 2, 1, 1, 2),
  stem_act1..stem_act3     gamma activations between them (none after stem_conv4)
  stage{s}_block{b}        ``NFBlock`` (s = 1..4, b = 1..depth); its output is the
                           residual stream. Sub-layers: act, shortcut_pool,
                           shortcut_conv (transition blocks), conv1, conv2, conv2b,
                           conv3, se (fc1, fc2), stoch_depth, weight skip_gain.
  final_conv, final_act    1x1 WS conv to 2 x width[-1], gamma activation
  avg_pool, dropout, classifier

All layers use keras.layers / keras.ops only, so the model runs on TF and JAX.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import keras
from keras import ops

from model_defs import common
from model_defs.common import StochasticDepth, conv_output_size
from model_defs.nfnet_layers import (ACTIVATION_GAMMAS, WS_EPS_MODES, GammaActivation,
                                     ScaledWSConv2D, SqueezeExcite)
from model_defs.stats import ModelStats, Tally

FAMILY = "nfnet"

# Options a caller may override at build/count time (model_defs.build(name, **overrides)).
OVERRIDABLE = (
    "dropout_rate", "stochdepth_rate", "activation", "gelu_approximate", "ws_eps_mode",
    "ws_eps", "grouped_impl", "skip_gain_init", "image_size", "timm_compat",
    "bottleneck_rounding",
)

# Bottleneck (ratio x width) in groups of ``group_width``: 'released' rounds down to whole
# groups as [C] and timm do ("+" stage 1: 192 -> 128 channels); 'unrounded' keeps ratio x width
# in as many groups as fit (192 in one group), which gives [N] Table 5's F4+ exactly.
BOTTLENECK_ROUNDINGS = ("released", "unrounded")

# --------------------------------------------------------------------------------------
# Variant table (data). Sources: [N] Brock et al. 2021 Tables 1, 3 and App. A.3;
# [C] official nfnets/base.py ``nfnet_params`` (F7 and the "+" widths).
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NFNetRow:
  """One NFNet depth variant (F0..F7) and its per-variant training settings."""
  variant: str
  depths: tuple[int, int, int, int]
  dropout_rate: float
  train_resolution: int
  test_resolution: int
  randaugment_layers: int
  randaugment_magnitude: int
  source: str


NFNET_TABLE: tuple[NFNetRow, ...] = (
    NFNetRow("f0", (1, 2, 6, 3), 0.2, 192, 256, 4, 5, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f1", (2, 4, 12, 6), 0.3, 224, 320, 4, 10, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f2", (3, 6, 18, 9), 0.4, 256, 352, 4, 10, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f3", (4, 8, 24, 12), 0.4, 320, 416, 4, 15, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f4", (5, 10, 30, 15), 0.5, 384, 512, 4, 15, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f5", (6, 12, 36, 18), 0.5, 416, 544, 4, 15, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f6", (7, 14, 42, 21), 0.5, 448, 576, 4, 15, "[N] Tables 1, 3; [C] nfnet_params"),
    NFNetRow("f7", (8, 16, 48, 24), 0.5, 480, 608, 4, 15, "[C] nfnet_params (not in [N])"),
)

BASE_WIDTHS = (256, 512, 1536, 1536)
PLUS_WIDTHS = (384, 768, 2048, 2048)  # [C] "Minor variants FN+, slightly wider"
STEM_WIDTHS = (16, 32, 64)            # the 4th stem conv has width[0] // 2 channels
STEM_STRIDES = (2, 1, 1, 2)
GROUP_WIDTH = 128

# Mini (CPU-scale) family: real depth patterns, every channel width / 8, 32 px.
MINI_WIDTH_DIVISOR = 8
MINI_RESOLUTION = 32

# Architecture constants and default options shared by every variant ([N] section 3-5, [C]).
_DEFAULTS = dict(
    stage_strides=(1, 2, 2, 2),
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    final_conv_multiplier=2,
    stochdepth_rate=0.1,       # [C] NFNet default (and [N] A.5 fine-tuning); 0.25 for ImageNet from scratch
    activation="gelu",
    gelu_approximate=True,     # official JAX code: jax.nn.gelu (tanh form); timm: exact
    ws_eps_mode="official",    # rsqrt(max(fan_in*var, 1e-4)); 'timm': rsqrt(var+1e-5)/sqrt(fan_in)
    ws_eps=None,               # None = the mode's default
    grouped_impl=None,         # None = model_defs.nfnet_layers module setting ('auto')
    skip_gain_init=0.0,        # SkipInit
    image_size=None,           # None = any resolution
    timm_compat=False,         # shorthand for gelu_approximate=False, ws_eps_mode='timm'
    bottleneck_rounding="released",  # see BOTTLENECK_ROUNDINGS
)


def row_config(row: NFNetRow, plus: bool = False, mini: bool = False) -> dict[str, Any]:
  """The ModelSpec config of a table row (architecture + default options)."""
  widths = PLUS_WIDTHS if plus else BASE_WIDTHS
  stem_widths, group_width = STEM_WIDTHS, GROUP_WIDTH
  train_res, test_res = row.train_resolution, row.test_resolution
  if mini:
    widths = tuple(w // MINI_WIDTH_DIVISOR for w in widths)
    stem_widths = tuple(w // MINI_WIDTH_DIVISOR for w in stem_widths)
    group_width = GROUP_WIDTH // MINI_WIDTH_DIVISOR
    train_res = test_res = MINI_RESOLUTION
  return dict(
      variant=row.variant + ("plus" if plus else ""), depths=row.depths, widths=widths,
      stem_widths=stem_widths, group_width=group_width, dropout_rate=row.dropout_rate,
      train_resolution=train_res, test_resolution=test_res,
      randaugment_layers=row.randaugment_layers,
      randaugment_magnitude=row.randaugment_magnitude, **_DEFAULTS)


def resolve_config(config: Mapping[str, Any], **overrides) -> dict[str, Any]:
  """Merges overrides (any of ``OVERRIDABLE``; None keeps the default) into a config.

  Raises:
    ValueError: for an unknown override or an invalid option value.
  """
  return common.resolve_config(config, overrides, family="NFNet", allowed=OVERRIDABLE,
                               normalise=_normalise_options)


def _normalise_options(cfg: dict[str, Any]) -> None:
  """Expands ``timm_compat`` and checks the activation and WS epsilon mode, in place."""
  if cfg["timm_compat"]:
    cfg["gelu_approximate"] = False
    cfg["ws_eps_mode"] = "timm"
  if cfg["activation"] not in ACTIVATION_GAMMAS:
    raise ValueError(f"unknown activation {cfg['activation']!r}; known: {sorted(ACTIVATION_GAMMAS)}")
  if cfg["ws_eps_mode"] not in WS_EPS_MODES:
    raise ValueError(f"ws_eps_mode must be one of {WS_EPS_MODES}, got {cfg['ws_eps_mode']!r}")


def bottleneck_width(out_channels: int, bottleneck_ratio: float, group_width: int,
                     rounding: str = "released") -> tuple[int, int]:
  """(channels, groups) of a block's grouped 3x3 convs; ``rounding`` as BOTTLENECK_ROUNDINGS."""
  channels = int(out_channels * bottleneck_ratio)
  groups = channels // group_width
  if groups < 1:
    raise ValueError(f"bottleneck of {out_channels} x {bottleneck_ratio} is narrower than "
                     f"one group of {group_width}")
  if rounding == "released":
    return groups * group_width, groups
  if rounding != "unrounded":
    raise ValueError(f"bottleneck_rounding must be one of {BOTTLENECK_ROUNDINGS}, "
                     f"got {rounding!r}")
  if channels % groups:
    raise ValueError(f"unrounded bottleneck of {channels} channels does not split into "
                     f"{groups} equal groups")
  return channels, groups


def block_plan(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
  """Per-block settings (name, channels, stride, beta, stochastic-depth rate) in order.

  beta = 1 / expected_std of the block's input; the expected variance grows by alpha^2
  per block and is reset to 1 after each transition (first) block of a stage ([C]).
  """
  alpha = cfg["alpha"]
  rates = common.stochdepth_rates(cfg["stochdepth_rate"], sum(cfg["depths"]),
                                  last_block_gets_rate=False)
  in_ch = cfg["widths"][0] // 2
  expected_var = 1.0
  plan, index = [], 0
  for stage, (depth, width, stride) in enumerate(
      zip(cfg["depths"], cfg["widths"], cfg["stage_strides"]), start=1):
    for block in range(depth):
      plan.append(dict(
          name=f"stage{stage}_block{block + 1}", in_channels=in_ch, out_channels=width,
          stride=stride if block == 0 else 1, beta=1.0 / expected_var ** 0.5,
          expected_var_in=expected_var,
          stochdepth_rate=rates[index]))
      if block == 0:
        expected_var = 1.0
      expected_var += alpha ** 2
      plan[-1]["expected_var_out"] = expected_var
      in_ch, index = width, index + 1
  return plan


# --------------------------------------------------------------------------------------
# Keras model
# --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="nfnet")
class NFBlock(keras.layers.Layer):
  """Normalizer-free SE-ResNeXt-D bottleneck block (pre-activation).

  ``out = act(x) * beta``; shortcut = x, or (2x2 avg-pool if strided) + 1x1 WS conv of
  ``out`` on transition blocks; branch = conv1 1x1 -> act -> conv2 3x3 grouped (stride)
  -> act -> conv2b 3x3 grouped -> act -> conv3 1x1 -> SE (x2) -> stochastic depth;
  returns ``branch * skip_gain * alpha + shortcut``.
  """

  def __init__(self, out_channels: int, stride: int = 1, beta: float = 1.0, alpha: float = 0.2,
               group_width: int = 128, bottleneck_ratio: float = 0.5, se_ratio: float = 0.5,
               stochdepth_rate: float = 0.0, activation: str = "gelu",
               gelu_approximate: bool = True, ws_eps_mode: str = "official",
               ws_eps: float | None = None, grouped_impl: str | None = None,
               skip_gain_init: float = 0.0, bottleneck_rounding: str = "released", **kwargs):
    super().__init__(**kwargs)
    self.out_channels = int(out_channels)
    self.stride = int(stride)
    self.beta = float(beta)
    self.alpha = float(alpha)
    self.group_width = int(group_width)
    self.bottleneck_ratio = float(bottleneck_ratio)
    self.se_ratio = float(se_ratio)
    self.stochdepth_rate = float(stochdepth_rate)
    self.activation = activation
    self.gelu_approximate = bool(gelu_approximate)
    self.ws_eps_mode = ws_eps_mode
    self.ws_eps = ws_eps
    self.grouped_impl = grouped_impl
    self.skip_gain_init = float(skip_gain_init)
    self.bottleneck_rounding = bottleneck_rounding

    self.mid_channels, groups = bottleneck_width(self.out_channels, self.bottleneck_ratio,
                                                 self.group_width, bottleneck_rounding)

    def conv(filters, kernel, name, strides=1, groups=1):
      return ScaledWSConv2D(filters, kernel, strides, groups, ws_eps_mode=ws_eps_mode,
                            ws_eps=ws_eps, grouped_impl=grouped_impl, name=name)

    self.act = GammaActivation(activation, gelu_approximate, name="act")
    self.conv1 = conv(self.mid_channels, 1, "conv1")
    self.conv2 = conv(self.mid_channels, 3, "conv2", strides=self.stride, groups=groups)
    self.conv2b = conv(self.mid_channels, 3, "conv2b", groups=groups)
    self.conv3 = conv(self.out_channels, 1, "conv3")
    self.se = SqueezeExcite(se_ratio, name="se")
    self.stoch_depth = StochasticDepth(stochdepth_rate, name="stoch_depth")
    self._conv_factory = conv

  def build(self, input_shape):
    batch, height, width, in_channels = input_shape
    self.in_channels = int(in_channels)
    self.use_projection = self.stride > 1 or self.in_channels != self.out_channels
    self.shortcut_pool = None
    self.shortcut_conv = None
    if self.use_projection:
      if self.stride > 1:
        # hk.avg_pool(..., 'SAME') in [C]: padded cells are not counted.
        self.shortcut_pool = keras.layers.AveragePooling2D(
            self.stride, self.stride, padding="same", name="shortcut_pool")
      self.shortcut_conv = self._conv_factory(self.out_channels, 1, "shortcut_conv")
    self.skip_gain = self.add_weight(
        name="skip_gain", shape=(), initializer=keras.initializers.Constant(self.skip_gain_init))

    full = (batch, height, width)
    strided = (batch, conv_output_size(height, 3, self.stride),
               conv_output_size(width, 3, self.stride))
    self.act.build(input_shape)
    if self.shortcut_conv is not None:
      self.shortcut_conv.build(strided + (self.in_channels,))
    self.conv1.build(full + (self.in_channels,))
    self.conv2.build(full + (self.mid_channels,))
    self.conv2b.build(strided + (self.mid_channels,))
    self.conv3.build(strided + (self.mid_channels,))
    self.se.build(strided + (self.out_channels,))

  def call(self, x, training=None):
    out = self.act(x) * self.beta
    if self.shortcut_conv is None:
      shortcut = x
    else:
      pooled = out if self.shortcut_pool is None else self.shortcut_pool(out)
      shortcut = self.shortcut_conv(pooled)
    h = self.conv1(out)
    h = self.conv2(self.act(h))
    h = self.conv2b(self.act(h))
    h = self.conv3(self.act(h))
    h = self.se(h)
    h = self.stoch_depth(h, training=training)
    return h * (ops.cast(self.skip_gain, h.dtype) * self.alpha) + shortcut

  def compute_output_shape(self, input_shape):
    height, width = (conv_output_size(size, 3, self.stride) for size in input_shape[1:3])
    return (input_shape[0], height, width, self.out_channels)

  def get_config(self):
    return {**super().get_config(), "out_channels": self.out_channels, "stride": self.stride,
            "beta": self.beta, "alpha": self.alpha, "group_width": self.group_width,
            "bottleneck_ratio": self.bottleneck_ratio, "se_ratio": self.se_ratio,
            "stochdepth_rate": self.stochdepth_rate, "activation": self.activation,
            "gelu_approximate": self.gelu_approximate, "ws_eps_mode": self.ws_eps_mode,
            "ws_eps": self.ws_eps, "grouped_impl": self.grouped_impl,
            "skip_gain_init": self.skip_gain_init,
            "bottleneck_rounding": self.bottleneck_rounding}


def _ws_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
  return dict(ws_eps_mode=cfg["ws_eps_mode"], ws_eps=cfg["ws_eps"],
              grouped_impl=cfg["grouped_impl"])


def stem_channels(cfg: Mapping[str, Any]) -> tuple[int, ...]:
  """Output channels of the four stem convs (the last is half the first stage's width)."""
  return tuple(cfg["stem_widths"]) + (cfg["widths"][0] // 2,)


def build_stem_and_blocks(x, cfg: Mapping[str, Any], blocks) -> Any:
  """The stem convs, then one ``NFBlock`` per entry of ``blocks`` (a ``block_plan`` slice).

  NFNet's body, and the NF-stem hybrid's stem (``model_defs.hybrid_stems``).
  """
  ws_kwargs = _ws_options(cfg)
  channels = stem_channels(cfg)
  for i, (width, stride) in enumerate(zip(channels, STEM_STRIDES), start=1):
    x = ScaledWSConv2D(width, 3, stride, name=f"stem_conv{i}", **ws_kwargs)(x)
    if i < len(channels):  # no activation after the last stem conv
      x = GammaActivation(cfg["activation"], cfg["gelu_approximate"], name=f"stem_act{i}")(x)
  for block in blocks:
    x = NFBlock(block["out_channels"], block["stride"], block["beta"], cfg["alpha"],
                cfg["group_width"], cfg["bottleneck_ratio"], cfg["se_ratio"],
                block["stochdepth_rate"], cfg["activation"], cfg["gelu_approximate"],
                skip_gain_init=cfg["skip_gain_init"],
                bottleneck_rounding=cfg["bottleneck_rounding"], name=block["name"],
                **ws_kwargs)(x)
  return x


def build_nfnet(config: Mapping[str, Any], num_classes: int, name: str = "nfnet",
                **overrides) -> keras.Model:
  """Builds an NFNet as a functional Keras model (channels-last).

  Args:
    config: a variant config (``row_config`` / ``get_spec(name).config``).
    num_classes: classifier outputs; 0 = no dropout and classifier (pooled features out).
    name: model name.
    **overrides: any of ``OVERRIDABLE``: dropout_rate, stochdepth_rate, activation,
      gelu_approximate, ws_eps_mode ('official' | 'timm'), ws_eps, grouped_impl,
      skip_gain_init, image_size (None = any resolution), timm_compat (exact GELU +
      timm WS epsilon, to load timm ``dm_nfnet`` weights exactly), bottleneck_rounding
      ('released' | 'unrounded', see ``BOTTLENECK_ROUNDINGS``).

  Returns:
    A ``keras.Model`` mapping images (B, H, W, 3) to logits (B, num_classes), or to
    features (B, 2 x last width) when ``num_classes`` is 0.
  """
  cfg = resolve_config(config, **overrides)
  size = cfg["image_size"]
  inputs = keras.Input((size, size, 3), name="images")
  x = build_stem_and_blocks(inputs, cfg, block_plan(cfg))
  x = ScaledWSConv2D(cfg["final_conv_multiplier"] * cfg["widths"][-1], 1, name="final_conv",
                     **_ws_options(cfg))(x)
  x = GammaActivation(cfg["activation"], cfg["gelu_approximate"], name="final_act")(x)
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  if not num_classes:
    return keras.Model(inputs, x, name=name)
  if cfg["dropout_rate"] > 0:
    x = keras.layers.Dropout(cfg["dropout_rate"], name="dropout")(x)
  outputs = keras.layers.Dense(
      num_classes, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
      bias_initializer="zeros", name="classifier")(x)
  return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------
# Analytic counter
# --------------------------------------------------------------------------------------


_WS_COUNT = dict(bias=True, extra_params_per_out=1)  # every WS conv has a gain and a bias


def count_nfnet(config: Mapping[str, Any], resolution: int, num_classes: int,
                name: str = "nfnet", **overrides) -> ModelStats:
  """Exact parameter count and forward MACs per image at ``resolution``.

  Counts WS-conv kernels, gains and biases, SE and classifier weights and biases (no
  classifier when ``num_classes`` is 0), and the skip gains; MACs of convolutions and
  dense layers (stats.py convention).
  """
  cfg = resolve_config(config, **overrides)
  tally = Tally()
  size, in_ch = count_stem_and_blocks(tally, cfg, resolution, block_plan(cfg))
  features = cfg["final_conv_multiplier"] * cfg["widths"][-1]
  tally.conv(size, size, 1, in_ch, features, **_WS_COUNT)
  tally.dense(features, num_classes)  # nothing when headless (0 classes)
  return tally.result(name, resolution, num_classes)


def count_stem_and_blocks(tally: Tally, cfg: Mapping[str, Any], resolution: int,
                          blocks) -> tuple[int, int]:
  """Adds ``build_stem_and_blocks``' parameters and MACs; returns (output size, channels)."""
  ws = _WS_COUNT
  size, in_ch = resolution, 3
  for channels, stride in zip(stem_channels(cfg), STEM_STRIDES):
    size = conv_output_size(size, 3, stride)
    tally.conv(size, size, 3, in_ch, channels, **ws)
    in_ch = channels
  for block in blocks:
    out_ch, stride = block["out_channels"], block["stride"]
    mid, groups = bottleneck_width(out_ch, cfg["bottleneck_ratio"], cfg["group_width"],
                                   cfg["bottleneck_rounding"])
    out_size = conv_output_size(size, 3, stride)
    if stride > 1 or in_ch != out_ch:
      tally.conv(out_size, out_size, 1, in_ch, out_ch, **ws)  # shortcut after the avg-pool
    tally.conv(size, size, 1, in_ch, mid, **ws)
    tally.conv(out_size, out_size, 3, mid, mid, groups=groups, **ws)
    tally.conv(out_size, out_size, 3, mid, mid, groups=groups, **ws)
    tally.conv(out_size, out_size, 1, mid, out_ch, **ws)
    hidden = max(1, int(out_ch * cfg["se_ratio"]))
    tally.dense(out_ch, hidden)
    tally.dense(hidden, out_ch)
    tally.add(params=1)  # skip gain
    size, in_ch = out_size, out_ch
  return size, in_ch
