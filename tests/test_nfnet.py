"""NFNet family: published counts, exact build/count agreement, layers, signal propagation,
grouped-conv implementations and the JAX backend."""

import dataclasses
import importlib
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import model_defs
from model_defs import common, nfnet, nfnet_variants, registry, vit
from model_defs import nfnet_layers
from model_defs.nfnet import block_plan, resolve_config
from reproduce.core import published

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALPHA = 0.2

# Published sizes (reproduce/published.py is the single source), 1000 classes: [N] Table 3
# params and "GFLOPs" (= MACs) at each variant's test resolution; F7/F3+/F7+ params derived
# from [C]; F4+ from [N] Table 5, counted with its entry's model_overrides.
PUBLISHED_PARAMS = {e.model: e for e in published.entries(quantity="params")
                    if e.model.startswith("nfnet_")}
PUBLISHED_GMACS_AT_TEST = {e.model: e for e in published.entries(quantity="gmacs")
                           if e.model.startswith("nfnet_")}
UNROUNDED = dict(bottleneck_rounding="unrounded")
MINI_NAMES = ["nfnet_mini_f0", "nfnet_mini_f1", "nfnet_mini_f3", "nfnet_mini_f3plus",
              "nfnet_mini_f7", "nfnet_mini_f7plus", "nfnet_mini_f0w12", "nfnet_mini_f0w25",
              "nfnet_mini_f0w38", "nfnet_mini_f0w50", "nfnet_mini_f0w75"]


# ----------------------------------------------------------------------------- registry


def test_registered_names():
  full = [f"nfnet_f{i}{p}" for i in range(8) for p in ("", "plus")]
  assert sorted(model_defs.names("nfnet", mini=False)) == sorted(full)
  assert model_defs.names("nfnet", mini=True) == MINI_NAMES
  for name in MINI_NAMES:
    spec = model_defs.get_spec(name)
    assert spec.mini and spec.train_resolution == spec.test_resolution == 32


def test_unknown_name_lists_known_models():
  with pytest.raises(model_defs.UnknownModelError) as error:
    model_defs.build("nfnet_f9")
  assert "nfnet_f0" in str(error.value) and "nfnet_mini_f7plus" in str(error.value)
  with pytest.raises(model_defs.UnknownModelError):
    model_defs.stats("nfnet_f9")


def test_unknown_override_rejected():
  with pytest.raises(ValueError, match="unknown NFNet override"):
    model_defs.stats("nfnet_f0", depth=3)


def test_variant_table():
  f7 = model_defs.get_spec("nfnet_f7").config
  assert f7["depths"] == (8, 16, 48, 24) and f7["dropout_rate"] == 0.5
  assert (f7["randaugment_layers"], f7["randaugment_magnitude"]) == (4, 15)
  assert model_defs.get_spec("nfnet_f3plus").config["widths"] == (384, 768, 2048, 2048)
  assert model_defs.get_spec("nfnet_mini_f3plus").config["widths"] == (48, 96, 256, 256)
  assert (model_defs.get_spec("nfnet_f4").train_resolution,
          model_defs.get_spec("nfnet_f4").test_resolution) == (384, 512)


# ----------------------------------------------------------------------------- counts


def test_every_published_variant_is_checked():
  assert len(PUBLISHED_PARAMS) == 11 and len(PUBLISHED_GMACS_AT_TEST) == 8


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_params_match_published(name):
  entry = PUBLISHED_PARAMS[name]
  params_m = model_defs.stats(name, num_classes=1000, **dict(entry.model_overrides)).params / 1e6
  assert abs(params_m - entry.value) <= entry.tolerance, params_m  # rounds to the print


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS_AT_TEST))
def test_macs_at_test_resolution_match_published(name):
  spec = model_defs.get_spec(name)
  entry = PUBLISHED_GMACS_AT_TEST[name]
  stats = model_defs.stats(name, spec.test_resolution, **dict(entry.model_overrides))
  assert f"{spec.test_resolution} px" in entry.convention
  assert abs(stats.gmacs - entry.value) <= entry.tolerance, stats.gmacs  # rounds to the print
  assert stats.flops == 2 * stats.macs


# Default (released-rounding) params and MACs at the training resolution of every variant,
# as counted before the bottleneck_rounding option existed: the default must not move.
DEFAULT_COUNTS = {
    "nfnet_f0": (71489284, 6977003520), "nfnet_f0plus": (118824516, 10999005184),
    "nfnet_f1": (132634256, 17437921280), "nfnet_f1plus": (220357008, 27210002432),
    "nfnet_f2": (193779228, 33139318784), "nfnet_f2plus": (321889500, 51508625408),
    "nfnet_f3": (254924200, 67944292352), "nfnet_f3plus": (423421992, 105382952960),
    "nfnet_f4": (316069172, 121122250752), "nfnet_f4plus": (524954484, 187619000320),
    "nfnet_f5": (377214144, 169498382336), "nfnet_f5plus": (626486976, 262327709696),
    "nfnet_f6": (438359116, 228292861952), "nfnet_f6plus": (728019468, 353101611008),
    "nfnet_f7": (499504088, 298476539904), "nfnet_f7plus": (829551960, 461436497920),
    "nfnet_mini_f0": (1466366, 3754496), "nfnet_mini_f1": (2432506, 6623744),
    "nfnet_mini_f3": (4364786, 12362240), "nfnet_mini_f3plus": (7124866, 19407360),
    "nfnet_mini_f7": (8229346, 23839232), "nfnet_mini_f7plus": (13528402, 37430784),
    "nfnet_mini_f0w12": (68004, 213056), "nfnet_mini_f0w25": (167858, 419840),
    "nfnet_mini_f0w38": (301016, 726336), "nfnet_mini_f0w50": (467478, 1132544),
    "nfnet_mini_f0w75": (900314, 2244096),
}


def test_default_bottleneck_rounding_is_the_released_codes():
  assert sorted(DEFAULT_COUNTS) == sorted(model_defs.names("nfnet"))
  for name, counts in DEFAULT_COUNTS.items():
    for options in ({}, dict(bottleneck_rounding="released")):
      stats = model_defs.stats(name, **options)
      assert (stats.params, stats.macs) == counts, (name, options)
    if "plus" not in name:  # base widths halve into whole groups: nothing to round
      assert model_defs.stats(name, **UNROUNDED) == model_defs.stats(name), name
  assert nfnet.bottleneck_width(384, 0.5, 128) == (128, 1)        # [C], timm
  assert nfnet.bottleneck_width(384, 0.5, 128, "unrounded") == (192, 1)
  assert nfnet.bottleneck_width(768, 0.5, 128, "unrounded") == (384, 3)
  with pytest.raises(ValueError, match="bottleneck_rounding"):
    model_defs.stats("nfnet_f0", bottleneck_rounding="nearest")


def test_f4plus_unrounded_counts_nfnet_table5_exactly():
  """[N] Table 5: F4+ 527M params, 367 GFLOPs (= MACs) at F4's 512 px test resolution."""
  unrounded = model_defs.stats("nfnet_f4plus", 512, **UNROUNDED)
  assert unrounded.params / 1e6 == pytest.approx(527.03, abs=0.01)
  assert unrounded.gmacs == pytest.approx(367.41, abs=0.01)
  released = model_defs.stats("nfnet_f4plus", 512)  # the released code's 128-channel stage 1
  assert released.params / 1e6 == pytest.approx(524.95, abs=0.01)
  assert released.gmacs == pytest.approx(333.39, abs=0.01)
  assert round(released.gmacs) != published.value("nfnet_f4plus.gmacs")
  assert dict(published.get("nfnet_f4plus.params").model_overrides) == UNROUNDED


def test_unrounded_f3plus_f7plus_cost_about_ten_percent_more():
  """docs/nfnet.md and docs/budget.md: what the option does to the paper's "+" models."""
  expected = {  # name: (released M params, GMACs at 224; unrounded M params, GMACs at 224)
      "nfnet_f3plus": (423.4, 51.72, 425.1, 56.92),
      "nfnet_f7plus": (829.6, 100.74, 832.9, 111.18),
  }
  for name, (params, gmacs, params_u, gmacs_u) in expected.items():
    released = model_defs.stats(name, 224)
    unrounded = model_defs.stats(name, 224, **UNROUNDED)
    assert (released.params / 1e6, released.gmacs) == pytest.approx((params, gmacs), abs=0.05)
    assert (unrounded.params / 1e6, unrounded.gmacs) == pytest.approx((params_u, gmacs_u),
                                                                      abs=0.05)
    assert 1.09 < unrounded.macs / released.macs < 1.11


@pytest.mark.parametrize("name,options", [
    ("nfnet_mini_f3plus", dict(num_classes=10, **UNROUNDED)),
    ("nfnet_f0plus", dict(num_classes=10, **UNROUNDED)),
    ("nfnet_mini_f0", dict(num_classes=0)),
    ("nfnet_mini_f7plus", dict(num_classes=10, include_top=False))])
def test_build_count_params_equals_stats_with_options(name, options):
  model = model_defs.build(name, **options)
  assert model.count_params() == model_defs.stats(name, **options).params
  config = model_defs.get_spec(name).config
  if "bottleneck_rounding" in options:  # "+" stage 1 keeps 0.5 x width, in one group
    block = model.get_layer("stage1_block1")
    assert block.mid_channels == config["widths"][0] // 2 and block.conv2.groups == 1
    assert block.get_config()["bottleneck_rounding"] == "unrounded"
  else:  # headless: pooled features out, no dropout or classifier
    assert tuple(model.output_shape) == (None, 2 * config["widths"][-1])
    assert model_defs.stats(name, num_classes=0) == model_defs.stats(name, include_top=False)
    assert model_defs.stats(name, num_classes=0).num_classes == 0


def test_any_resolution_and_output_shape():
  model = model_defs.build("nfnet_mini_f0", num_classes=7)
  assert tuple(model.input_shape) == (None, None, None, 3)
  for size in (32, 45):  # odd sizes exercise SAME padding and the ceil-mode avg-pool
    out = model(np.zeros((2, size, size, 3), "float32"))
    assert tuple(out.shape) == (2, 7)


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_and_its_gradient_equal_tensorflows_gelu_in_the_input_dtype(approximate):
  """``common.gelu``'s closed-form gradient against autodiff of ``tf.nn.gelu``, scaled as the
  NFNets' gamma scales it; bfloat16 in, bfloat16 out."""
  import tensorflow as tf
  from model_defs.common import gelu
  x = tf.constant(np.linspace(-6.0, 6.0, 481), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    ours, reference = gelu(x, approximate, 1.7), 1.7 * tf.nn.gelu(x, approximate=approximate)
  np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5)
  np.testing.assert_allclose(tape.gradient(ours, x).numpy(), tape.gradient(reference, x).numpy(),
                             atol=2e-5)
  assert gelu(tf.cast(x, tf.bfloat16), approximate).dtype == tf.bfloat16


def _standardize_by_autodiff(kernel, gain, fan_in, eps, mode):
  """The weight standardisation as plain ops: TensorFlow differentiates it itself."""
  import tensorflow as tf
  centered = kernel - tf.reduce_mean(kernel, axis=(0, 1, 2), keepdims=True)
  var = tf.reduce_mean(tf.square(centered), axis=(0, 1, 2), keepdims=True)
  if mode == "official":
    scale = tf.math.rsqrt(tf.maximum(var * fan_in, eps))
  else:
    scale = tf.math.rsqrt(var + eps) / np.sqrt(fan_in)
  return centered * scale * gain


@pytest.mark.parametrize("mode", nfnet_layers.WS_EPS_MODES)
def test_standardisation_gradients_equal_autodiff_of_the_formula(mode):
  """The closed-form gradient, for the kernel and the gain, on a kernel with a channel whose
  variance is clamped by eps (official mode: no gradient through its scale)."""
  import tensorflow as tf
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(3, 3, 4, 6)).astype("float32")
  kernel[..., 0] = 0.5 + 1e-4 * kernel[..., 0]  # fan_in * var far below eps
  gain = rng.uniform(0.5, 2.0, size=6).astype("float32")
  upstream = tf.constant(rng.normal(size=kernel.shape).astype("float32"))
  eps, fan_in = nfnet_layers.WS_DEFAULT_EPS[mode], 3 * 3 * 4
  found = []
  for fn in (nfnet_layers.scaled_standardize, _standardize_by_autodiff):
    k, g = tf.Variable(kernel), tf.Variable(gain)
    with tf.GradientTape() as tape:
      out = fn(k, g, fan_in, eps, mode)
    found.append([out, *tape.gradient(out, [k, g], output_gradients=upstream)])
  for ours, reference in zip(*found):
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=2e-4, atol=2e-5)
  assert np.abs(found[0][1].numpy()).max() > 0.1 and np.abs(found[0][2].numpy()).min() > 0


def test_scaled_ws_kernel_is_standardised():
  conv = nfnet_layers.ScaledWSConv2D(8, 3, groups=2)
  conv.build((None, 5, 5, 6))
  w = np.asarray(conv.standardized_kernel())  # gain 1
  fan_in = 3 * 3 * 3
  np.testing.assert_allclose(w.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
  np.testing.assert_allclose(fan_in * w.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)
  timm = nfnet_layers.ScaledWSConv2D(8, 3, groups=2, ws_eps_mode="timm")
  timm.build((None, 5, 5, 6))
  timm.kernel.assign(conv.kernel)
  assert timm.ws_eps == 1e-5 and conv.ws_eps == 1e-4
  assert not np.allclose(np.asarray(timm.standardized_kernel()), w, rtol=0, atol=1e-7)


@pytest.mark.parametrize("strides", [1, 2])
def test_grouped_conv_split_equals_native(strides):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 9, 9, 12)).astype("float32")
  split = nfnet_layers.ScaledWSConv2D(24, 3, strides, groups=4, grouped_impl="split")
  native = nfnet_layers.ScaledWSConv2D(24, 3, strides, groups=4, grouped_impl="native")
  split.build(x.shape)
  native.build(x.shape)
  for dst, src in zip(native.weights, split.weights):
    dst.assign(src.numpy() + rng.normal(0, 0.1, src.shape).astype("float32"))
    src.assign(dst.numpy())
  np.testing.assert_allclose(np.asarray(split(x)), np.asarray(native(x)), rtol=1e-5, atol=1e-5)


def _randomise_every_weight(model, seed):
  """Noise on every weight, and skip gains in [0.5, 1.5]: a fresh NFNet's skip gains are 0,
  which would multiply every residual branch (and its grouped convs) by 0."""
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    if variable.path.endswith("skip_gain"):
      variable.assign(rng.uniform(0.5, 1.5))
    else:
      variable.assign(variable.numpy() + rng.normal(0, 0.05, variable.shape).astype("float32"))


def test_grouped_conv_setting_and_whole_model():
  assert nfnet_layers.resolve_grouped_conv_impl("auto") in ("split", "native")
  if not nfnet_layers.accelerator_available():
    assert nfnet_layers.resolve_grouped_conv_impl("auto") == "split"
  with pytest.raises(ValueError):
    nfnet_layers.set_grouped_conv_impl("fast")
  model = model_defs.build("nfnet_mini_f0", num_classes=5)
  _randomise_every_weight(model, seed=2)
  assert all(np.all(v.numpy() != 0) for v in model.weights)
  x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype("float32")
  with nfnet_layers.grouped_conv_impl("split"):
    split_out = np.asarray(model(x))
    # Every block's residual branch reaches the logits: zeroing one skip gain changes them.
    gain = model.get_layer("stage4_block3").skip_gain
    kept = gain.numpy()
    gain.assign(0.0)
    without_last_branch = np.asarray(model(x))
    gain.assign(kept)
  assert np.abs(without_last_branch - split_out).max() > 1e-3 * np.abs(split_out).max()
  with nfnet_layers.grouped_conv_impl("native"):
    native_out = np.asarray(model(x))
  assert nfnet_layers.get_grouped_conv_impl() == "auto"
  np.testing.assert_allclose(split_out, native_out, rtol=1e-5, atol=1e-6)


def test_gamma_activation():
  assert nfnet_layers.ACTIVATION_GAMMAS["gelu"] == 1.7015043497085571
  assert nfnet_layers.ACTIVATION_GAMMAS["relu"] == 1.7139588594436646
  assert nfnet_layers.ACTIVATION_GAMMAS["silu"] == 1.7881293296813965
  z = np.random.default_rng(0).standard_normal(400_000).astype("float32")
  for name in ("gelu", "relu", "silu", "tanh", "elu"):  # gamma * act(N(0,1)) has unit variance
    out = np.asarray(nfnet_layers.GammaActivation(name)(z))
    assert abs(out.var() - 1.0) < 0.02, (name, out.var())
  x = np.array([-1.0, 0.5, 2.0], "float32")
  tanh_form = np.asarray(nfnet_layers.GammaActivation("gelu", gelu_approximate=True)(x))
  exact = np.asarray(nfnet_layers.GammaActivation("gelu", gelu_approximate=False)(x))
  assert 1e-5 < np.abs(tanh_form - exact).max() < 1e-2


def test_squeeze_excite_formula():
  se = nfnet_layers.SqueezeExcite(0.5)
  h = np.random.default_rng(0).standard_normal((2, 3, 3, 8)).astype("float32")
  out = np.asarray(se(h))
  assert se.fc1.units == 4
  w1, b1 = se.fc1.kernel.numpy(), se.fc1.bias.numpy()
  w2, b2 = se.fc2.kernel.numpy(), se.fc2.bias.numpy()
  gate = 1 / (1 + np.exp(-(np.maximum(h.mean(axis=(1, 2)) @ w1 + b1, 0) @ w2 + b2)))
  np.testing.assert_allclose(out, 2 * gate[:, None, None, :] * h, rtol=1e-5, atol=1e-6)


def test_stochastic_depth_per_example_without_rescaling():
  layer = common.StochasticDepth(0.5, seed=3)
  x = np.ones((256, 2, 2, 3), "float32")
  np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
  out = np.asarray(layer(x, training=True))
  per_example = out.reshape(256, -1)
  assert set(np.unique(per_example)) <= {0.0, 1.0}  # kept examples are not rescaled
  assert np.all(per_example.min(axis=1) == per_example.max(axis=1))  # whole example
  assert 0.35 < per_example[:, 0].mean() < 0.65


def test_block_stochdepth_rates_and_dropout():
  cfg = resolve_config(model_defs.get_spec("nfnet_f0").config, stochdepth_rate=0.25)
  plan = block_plan(cfg)
  assert [b["stochdepth_rate"] for b in plan] == [0.25 * i / 12 for i in range(12)]
  model = model_defs.build("nfnet_mini_f1", 10, dropout_rate=0.3, stochdepth_rate=0.2)
  assert model.get_layer("dropout").rate == 0.3
  assert model.get_layer("stage4_block6").stoch_depth.rate == pytest.approx(0.2 * 23 / 24)


# ----------------------------------------------------------------------------- signal propagation


def test_betas_follow_expected_variance_with_resets():
  model = model_defs.build("nfnet_mini_f3", 10)
  plan = block_plan(resolve_config(model_defs.get_spec("nfnet_mini_f3").config))
  depths = model_defs.get_spec("nfnet_mini_f3").config["depths"]
  for block in plan:
    stage, index = (int(part.lstrip("stageblock")) for part in block["name"].split("_"))
    if index > 1:    # within a stage: 1 + (k-1) alpha^2 since the reset
      expected_var_in = 1.0 + (index - 1) * ALPHA ** 2
    elif stage > 1:  # a transition sees the whole previous stage's growth ...
      expected_var_in = 1.0 + depths[stage - 2] * ALPHA ** 2
    else:            # ... except the first block, which sees the stem
      expected_var_in = 1.0
    assert model.get_layer(block["name"]).beta == pytest.approx(expected_var_in ** -0.5)
    # ... and the variance is reset after every transition block.
    k = index
    assert block["expected_var_out"] == pytest.approx(1.0 + k * ALPHA ** 2)


def test_signal_propagation_at_init():
  """Measured residual-stream variance at init, skip gains set to 1, N(0,1) input.

  Stage 1 (stride-1 transition, no pooling) must follow 1 + k alpha^2 to 25% in level and
  5% in shape. Strided transitions reset the variance: it never exceeds (1 + alpha^2) x 1.25
  and drops below the previous stage's final variance. (On white-noise input the 2x2
  average-pool of spatially uncorrelated features also quarters the shortcut's variance, so
  later stages sit below 1; within them the variance must never grow faster than the
  alpha^2 / expected_var budget, and must not shrink by more than 3% per block.)
  """
  keras.utils.set_random_seed(1)
  name = "nfnet_mini_f3"
  model = model_defs.build(name, 10)
  for variable in model.weights:
    if variable.path.endswith("skip_gain"):
      variable.assign(1.0)
  plan = block_plan(resolve_config(model_defs.get_spec(name).config))
  tap = keras.Model(model.inputs, [model.get_layer(b["name"]).output for b in plan])
  x = np.random.default_rng(1).standard_normal((64, 32, 32, 3)).astype("float32")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    outputs = tap(x, training=False)
  variances = [float(np.asarray(o).var(axis=(0, 1, 2)).mean()) for o in outputs]

  stage1 = [v / b["expected_var_out"] for v, b in zip(variances, plan)
            if b["name"].startswith("stage1_")]
  assert len(stage1) == 4
  assert all(0.75 < r < 1.25 for r in stage1), stage1
  assert max(stage1) / min(stage1) < 1.05, stage1

  for i in range(1, len(plan)):
    if plan[i]["name"].endswith("_block1"):  # transition: reset
      assert variances[i] < variances[i - 1]
      assert variances[i] < 1.25 * (1 + ALPHA ** 2)
    else:
      growth = variances[i] / variances[i - 1] - 1
      budget = ALPHA ** 2 / plan[i]["expected_var_in"]
      assert -0.03 < growth <= 1.2 * budget, (plan[i]["name"], growth, budget)


# ----------------------------------------------------------------------------- shared scaffolding


def test_family_modules_reload_without_duplicate_registration():
  before = model_defs.names()
  for module in (nfnet, nfnet_variants, vit):  # the builders, then their registration
    importlib.reload(module)
  assert model_defs.names() == before
  assert model_defs.get_spec("nfnet_f0").builder is nfnet.build_nfnet
  assert model_defs.get_spec("vit_b16").counter is vit.count_vit
  assert model_defs.stats("nfnet_f0", 256).params == 71_489_284
  spec = model_defs.get_spec("nfnet_mini_f0")
  with pytest.raises(ValueError, match="already registered by family 'nfnet'"):
    registry.register_family("vit", [dataclasses.replace(spec, family="vit")])


def test_conv_output_size():
  assert [common.conv_output_size(s, 3, 2) for s in (32, 33, None)] == [16, 17, None]
  assert common.conv_output_size(224, 16, 16, padding="valid") == 14
  assert common.conv_output_size(230, 16, 16, padding="valid") == 14
  with pytest.raises(ValueError, match="padding"):
    common.conv_output_size(8, 3, 1, padding="full")


def test_stochdepth_rates_follow_each_family():
  assert common.stochdepth_rates(0.3, 4, last_block_gets_rate=False) == pytest.approx(
      [0.0, 0.075, 0.15, 0.225])  # official NFNet: rate * i / num_blocks
  assert common.stochdepth_rates(0.3, 4, last_block_gets_rate=True) == pytest.approx(
      [0.0, 0.1, 0.2, 0.3])       # timm ViT: linspace(0, rate, num_blocks)
  vit_model = model_defs.build("vit_mini_ti", 10, stochdepth_rate=0.3)
  assert vit_model.get_layer("encoderblock_2_droppath1").rate == pytest.approx(0.3)
  assert vit_model.get_layer("encoderblock_2_droppath1").scale_by_keep
  nf_block = model_defs.build("nfnet_mini_f0", 10).get_layer("stage4_block3")
  assert not nf_block.stoch_depth.scale_by_keep


# ----------------------------------------------------------------------------- JAX backend


def test_jax_backend_forward_matches_tensorflow(tmp_path):
  keras.utils.set_random_seed(0)
  name = "nfnet_mini_f0"
  model = model_defs.build(name, 10)
  rng = np.random.default_rng(0)
  weights = [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()]
  model.set_weights(weights)  # non-zero skip gains so every block contributes
  images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
  tf_logits = np.asarray(model(images, training=False))
  np.savez(tmp_path / "in.npz", model=name, num_classes=10, images=images,
           **{f"w{i}": w for i, w in enumerate(weights)})
  env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "tests", "nfnet_jax_forward.py"),
       str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
      env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  assert str(out["backend"]) == "jax"
  rel = np.abs(out["logits"] - tf_logits).max() / np.abs(tf_logits).max()
  assert rel < 1e-4, rel
