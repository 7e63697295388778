"""Hybrid ConvNet-ViT family: registry, exact counts (built models, Xiao et al.'s table, an
independent walk of the built graph), the mini family's compute match, the NF stem's reuse of
NFNet's layers, and the JAX backend. timm equivalence: tests/test_hybrid_equivalence.py."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import model_defs
from model_defs import hybrid, hybrid_stems, nfnet, nfnet_layers, vit_layers
from model_defs.hybrid_stems import StdConv2D
from model_defs.stats import Tally
from reproduce.core import published
from reproduce.miniature import grid

TIMM = ["vit_s_r26_s32", "vit_b_r50_s16", "vit_b_r50_s16_384"]
XIAO = ["vit_c1gf", "vit_c4gf", "vit_c18gf", "vit_c36gf"]
MINI = ["hybrid_mini_pico", "hybrid_mini_nano", "hybrid_mini_mu", "hybrid_mini_xs",
        "hybrid_mini_ti"]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registered_names():
  assert model_defs.names(family="hybrid") == TIMM + XIAO + ["vit_b_nf_f0_s16"] + MINI
  assert model_defs.names(family="hybrid", mini=True) == MINI
  for name in model_defs.names(family="hybrid"):
    spec = model_defs.get_spec(name)
    assert spec.source and spec.description
    assert spec.config["stem"]["kind"] in hybrid_stems.STEM_KINDS
  assert model_defs.get_spec("vit_b_r50_s16_384").train_resolution == 384


@pytest.mark.parametrize("name,opts", [
    ("vit_c1gf", {}),
    ("vit_b_nf_f0_s16", {}),
    ("hybrid_mini_pico", {}),
    ("hybrid_mini_ti", {}),
    ("hybrid_mini_xs", dict(pool_type="map", representation_size=True)),
    ("hybrid_mini_nano", dict(pool_type="token", posemb="learn", qkv_bias=False)),
    ("vit_s_r26_s32", dict(image_size=64)),
])
def test_stats_equal_the_built_model(name, opts):
  model = model_defs.build(name, num_classes=10, **opts)
  resolution = opts.get("image_size")
  stats = model_defs.stats(name, resolution, num_classes=10, **opts)
  assert stats.params == model.count_params()
  trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  assert stats.params - trainable == hybrid_stems.batch_norm_statistics(
      model_defs.get_spec(name).config["stem"])
  assert stats.macs == _walked_macs(model) + _nf_block_macs(name, resolution)
  headless = model_defs.stats(name, resolution, num_classes=0, **opts)
  assert model_defs.build(name, num_classes=0, **opts).count_params() == headless.params


def _walked_macs(model) -> int:
  """MACs read off the built graph (output shapes and kernels), independently of the counter:
  every conv and dense layer, and both attention matmuls."""
  macs = 0
  for layer in model.layers:
    out = layer.output.shape
    if isinstance(layer, (keras.layers.Conv2D, StdConv2D, nfnet_layers.ScaledWSConv2D)):
      macs += int(np.prod(layer.kernel.shape)) * out[1] * out[2]
    elif isinstance(layer, keras.layers.Dense):
      macs += int(np.prod(layer.kernel.shape)) * int(np.prod(out[1:-1]))
    elif isinstance(layer, vit_layers.Attention):  # q, k, v, out projections; QK^T and AV
      queries, width = out[1], out[2]
      keys = layer.input[1].shape[1] if isinstance(layer.input, list) else queries  # MAP
      macs += width * width * (2 * queries + 2 * keys) + 2 * queries * keys * width
  return macs


def _nf_block_macs(name, resolution) -> int:
  """An NF stem's blocks, counted by NFNet's own counter (tested against Brock et al.)."""
  stem = model_defs.get_spec(name).config["stem"]
  if stem["kind"] != "nf":
    return 0
  cfg, blocks = hybrid_stems.nf_stage1(stem)
  size = resolution or model_defs.get_spec(name).train_resolution
  with_blocks, stem_only = Tally(), Tally()
  nfnet.count_stem_and_blocks(with_blocks, cfg, size, blocks)
  nfnet.count_stem_and_blocks(stem_only, cfg, size, [])
  return with_blocks.macs - stem_only.macs


@pytest.mark.parametrize("name", XIAO)
def test_xiao_table1_counts(name):
  """Xiao et al. Table 1 (ViT_C): params (M) and flops (B; pycls counts multiply-adds), 224 px,
  1000 classes, each within half its last printed digit (reproduce/core/published.py)."""
  entries = {e.quantity: e for e in published.entries(model=name)}
  assert set(entries) == {"params", "gmacs"}
  stats = model_defs.stats(name, 224, 1000)
  assert abs(stats.params / 1e6 - entries["params"].value) <= entries["params"].tolerance
  assert abs(stats.gmacs - entries["gmacs"].value) <= entries["gmacs"].tolerance


def test_xiao_stems_cost_about_one_block():
  """Xiao et al. Section 3: each stem is about one transformer block's compute (which is why
  ViT_C has one block fewer); the 36GF model reuses the 18GF stem, so its stem is cheaper."""
  for name in XIAO:
    cfg = model_defs.get_spec(name).config
    stem = Tally()
    size, channels = hybrid_stems.count_stem(stem, cfg["stem"], 224)
    stem.conv(size, size, 1, channels, cfg["width"])  # the 1x1 conv that ends their stem
    full = model_defs.stats(name, 224, 1000).macs
    block = (full - stem.macs - cfg["width"] * 1000) / cfg["depth"]  # the rest, less the head
    assert 0.5 < stem.macs / block < (1.5 if name != "vit_c36gf" else 0.8), name


@pytest.mark.parametrize("preset", sorted(grid.PRESETS))
def test_mini_family_is_compute_matched_to_the_study_ladders(preset):
  """Each hybrid matches the NFNet and ViT of its rung, counted from the largest: the long
  preset's smallest rung has no hybrid (the NF stem alone costs more than its NFNet)."""
  ladders = grid.PRESETS[preset]
  assert len(ladders["nfnets"]) == len(ladders["vits"])
  below = len(ladders["nfnets"]) - len(ladders["hybrids"])
  assert below == (1 if preset == "long" else 0)
  for rung, name in enumerate(ladders["hybrids"], start=below):
    hybrid_macs = model_defs.stats(name, 32, 10).macs
    for ladder in (ladders["nfnets"], ladders["vits"]):
      other = model_defs.stats(ladder[rung], 32, 10).macs
      assert abs(hybrid_macs / other - 1) <= 0.15, (name, ladder[rung], hybrid_macs, other)
    # The stem is that rung's own narrow mini F0's stem and first stage.
    assert model_defs.get_spec(name).config["stem"]["nfnet_name"] == ladders["nfnets"][rung]


def test_nf_stem_is_the_nfnets_stem_and_first_stage():
  """With the NFNet's weights, the hybrid's stem computes exactly the NFNet's stage-1 output."""
  keras.utils.set_random_seed(1)
  nfnet = model_defs.build("nfnet_mini_f0w50", 10)
  model = model_defs.build("hybrid_mini_mu", 10)
  rng = np.random.default_rng(1)
  for layer in model.layers:
    if layer.name.startswith(("stem_", "stage1_")) and layer.weights:
      values = [w.numpy() + rng.normal(0, 0.1, w.shape).astype("float32")
                for w in nfnet.get_layer(layer.name).weights]  # non-zero skip gain too
      nfnet.get_layer(layer.name).set_weights(values)
      layer.set_weights(values)
  images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
  taps = [keras.Model(m.input, m.get_layer("stage1_block1").output) for m in (nfnet, model)]
  np.testing.assert_array_equal(*(np.asarray(t(images)) for t in taps))
  assert not any(l.name.startswith("stage2_") for l in model.layers)


_JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from model_defs import hybrid
    import hybrid_jax_configs
    import nfnet_jax_forward
    nfnet_jax_forward.skip_random_init()
    f = np.load(sys.argv[1])
    for i, (config, classes) in enumerate(hybrid_jax_configs.CONFIGS):
      model = hybrid.build_hybrid(config, classes, name=f"m{i}")
      model.set_weights([f[f"m{i}_w{j}"] for j in range(len(model.weights))])
      out = nfnet_jax_forward.jit_logits(model, f[f"x{i}"])
      err = np.abs(out - f[f"y{i}"]).max() / np.abs(f[f"y{i}"]).max()
      assert err < 1e-4, (i, err)
    print("JAX_OK")
""")


def test_jax_backend_forward(tmp_path):
  """Each stem kind (ResNet-v2, conv + batch norm, NF) gives the TensorFlow logits on JAX."""
  import hybrid_jax_configs
  rng = np.random.default_rng(4)
  arrays = {}
  for i, (config, classes) in enumerate(hybrid_jax_configs.CONFIGS):
    model = hybrid.build_hybrid(config, classes, name=f"m{i}")
    weights = [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()]
    weights = [np.abs(w) + 0.5 if "moving_variance" in v.path else w
               for w, v in zip(weights, model.weights)]
    model.set_weights(weights)
    x = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    arrays.update({f"m{i}_w{j}": w for j, w in enumerate(weights)}, **{
        f"x{i}": x, f"y{i}": np.asarray(model(x, training=False))})
  np.savez(tmp_path / "tf.npz", **arrays)
  env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, str(tmp_path / "tf.npz")],
                        capture_output=True, text=True, env=env, timeout=240, cwd=REPO_ROOT)
  assert proc.returncode == 0 and "JAX_OK" in proc.stdout, proc.stderr[-3000:]
